#!/usr/bin/env bash
# TP=2 across a real network interface: two network namespaces joined by a
# veth pair stand for two hosts (10.77.0.1 and 10.77.0.2). mpirun runs in the
# first, reads a hostfile naming both, and starts the second host's daemon
# through a stand-in for ssh (`ip netns exec`); MPI is told to use only the
# veth addresses, so every all-reduce and all-gather crosses the interface.
# Checks that `herd generate --tp 2` prints what one process prints and that
# the veth pair carried the traffic. Skips (exit 0, with a message) where
# network namespaces cannot be made (not root, no CAP_NET_ADMIN, no `ip`).
# Called by tools/test-all.sh after the MPI build; takes the directory
# holding the `herd` binary (default target/debug).
set -euo pipefail
cd "$(dirname "$0")/.."
herd=$(realpath "${1:-target/debug}")/herd
tiny=tests/fixtures/models/llama31-tiny
a=herd-a-$$ b=herd-b-$$

skip() {
    echo "SKIP: TP=2 across network namespaces: $1"
    exit 0
}
command -v ip >/dev/null || skip "the ip command is missing"
ip netns add "$a" 2>/dev/null || skip "ip netns add is not permitted here (needs root / CAP_NET_ADMIN)"
tmp=$(mktemp -d)
cleanup() {
    ip netns delete "$a" 2>/dev/null || true
    ip netns delete "$b" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
ip netns add "$b"
ip link add veth-herd-a netns "$a" type veth peer name veth-herd-b netns "$b" ||
    skip "veth pairs cannot be made here"
ip -n "$a" addr add 10.77.0.1/24 dev veth-herd-a
ip -n "$b" addr add 10.77.0.2/24 dev veth-herd-b
for ns in "$a" "$b"; do
    ip -n "$ns" link set lo up
done
ip -n "$a" link set veth-herd-a up
ip -n "$b" link set veth-herd-b up

# The hostfile of a two-host job, and the "ssh" that reaches each host.
cat >"$tmp/hosts" <<HOSTS
10.77.0.1 slots=1
10.77.0.2 slots=1
HOSTS
cat >"$tmp/netns-ssh" <<AGENT
#!/bin/sh
# Called by mpirun as: netns-ssh [options] HOST COMMAND...
while [ "\${1#-}" != "\$1" ]; do shift; done
case "\$1" in
    10.77.0.1) ns=$a ;;
    10.77.0.2) ns=$b ;;
    *) echo "netns-ssh: unknown host \$1" >&2; exit 1 ;;
esac
shift
exec ip netns exec "\$ns" /bin/sh -c "\$*"
AGENT
chmod +x "$tmp/netns-ssh"

received() {
    ip -n "$b" -s -j link show veth-herd-b |
        python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["stats64"]["rx"]["bytes"])'
}
args=(generate -m "$tiny" -p "The herd crossed the river" --ids --greedy -n 24)
one=$("$herd" "${args[@]}" 2>/dev/null)
before=$(received)
two=$(timeout 120 ip netns exec "$a" mpirun -np 2 --hostfile "$tmp/hosts" --map-by node \
    --mca plm_rsh_agent "$tmp/netns-ssh" \
    --mca btl tcp,self --mca btl_tcp_if_include 10.77.0.0/24 \
    --mca oob_tcp_if_include 10.77.0.0/24 \
    -x OMPI_MCA_mpi_yield_when_idle -x PATH -x LD_LIBRARY_PATH \
    "$herd" "${args[@]}" --tp 2 2>"$tmp/log") || {
    echo "FAIL: herd generate --tp 2 across namespaces failed:"
    cat "$tmp/log"
    exit 1
}
crossed=$(($(received) - before))
if [ "$one" != "$two" ]; then
    echo "FAIL: one process printed '$one', TP 2 across namespaces printed '$two'"
    exit 1
fi
# 25 steps × 2 layers × 2 all-reduces of 64 floats, plus the vocabulary
# all-gathers, in both directions: several kB at least.
if [ "$crossed" -lt 4096 ]; then
    echo "FAIL: only $crossed bytes crossed the veth pair"
    exit 1
fi
echo "ok: TP 2 across two network namespaces printed what one process prints; $crossed bytes crossed the veth pair"
