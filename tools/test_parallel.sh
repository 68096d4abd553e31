#!/usr/bin/env bash
# Multi-process tests of tensor and pipeline parallelism (herd-parallel and
# `herd generate --tp --pp`) under mpirun on this machine. Called by
# tools/test-all.sh after the MPI build; takes the directory holding the
# `herd` binary and `examples/parallel_check` (default target/debug).
# Needs OMPI_ALLOW_RUN_AS_ROOT* as root and, on few cores,
# OMPI_MCA_mpi_yield_when_idle=1 (test-all.sh exports them).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-target/debug}")
herd=$bin/herd
check=$bin/examples/parallel_check
tiny=tests/fixtures/models/llama31-tiny   # 4 heads, 2 KV heads, 2 layers
tied=tests/fixtures/models/llama32-tied   # 6 heads, 2 KV heads, 3 layers, tied head
bf16=tests/fixtures/models/llama31-bf16   # tiny's shapes in bf16: another model
mpi() { timeout 120 mpirun --oversubscribe -np "$@"; }

echo "== logits within 1e-5 (x the largest logit) and identical greedy tokens vs one process"
mpi 2 "$check" "$tiny" 2 1
mpi 2 "$check" "$tiny" 1 2
mpi 4 "$check" "$tiny" 2 2
mpi 2 "$check" "$tied" 2 1
mpi 3 "$check" "$tied" 1 3
mpi 2 "$check" "$bf16" 2 1

echo "== herd generate --tp 2 --pp 2 prints what one process prints"
args=(generate -m "$tiny" -p "The herd crossed the river" --ids --greedy -n 24)
one=$("$herd" "${args[@]}" 2>/dev/null)
four=$(mpi 4 "$herd" "${args[@]}" --tp 2 --pp 2 2>/dev/null)
if [ "$one" != "$four" ]; then
    echo "FAIL: one process printed '$one', TP 2 × PP 2 printed '$four'"
    exit 1
fi

# Runs a command that must fail, with `message` printed by each of its ranks.
expect_error() {
    local what=$1 ranks=$2 message=$3 out
    shift 3
    if out=$("$@" 2>&1); then
        echo "FAIL ($what): the job succeeded"
        exit 1
    fi
    local reported
    reported=$(grep -o "$message" <<<"$out" | wc -l)
    if [ "$reported" -lt "$ranks" ]; then
        echo "FAIL ($what): $reported of $ranks ranks reported '$message'; output:"
        echo "$out"
        exit 1
    fi
    echo "ok: $what"
}
echo "== bad input: a clear error on every rank and a non-zero exit"
expect_error "TP not dividing the KV heads" 3 "TP 3 does not divide the model's 2 KV heads" \
    mpi 3 "$herd" generate -m "$tied" -p hi --tp 3
expect_error "PP larger than the layer count" 3 "PP 3 is more stages than the model's 2 layers" \
    mpi 3 "$herd" generate -m "$tiny" -p hi --pp 3
expect_error "ranks disagreeing on the model" 2 "opened a model other than rank 0's" \
    timeout 120 mpirun --oversubscribe -np 1 "$herd" generate -m "$tiny" -p hi --tp 2 \
    : -np 1 "$herd" generate -m "$bf16" -p hi --tp 2
expect_error "a rank without a model" 2 "cannot open the model\|opening the model failed on rank(s) \[1\]" \
    timeout 120 mpirun --oversubscribe -np 1 "$herd" generate -m "$tiny" -p hi --tp 2 \
    : -np 1 "$herd" generate -m /nonexistent -p hi --tp 2
expect_error "a layout that does not match the job" 2 "TP 2 × PP 2 needs 4 ranks, the job has 2" \
    mpi 2 "$herd" generate -m "$tiny" -p hi --tp 2 --pp 2

# A rank that dies or hangs mid-generation: the job must end with an error,
# not hang. Rank 1 is frozen (SIGSTOP) as soon as rank 0 prints a token, so
# generation cannot finish without it; then it is killed, or left frozen for
# rank 0's watchdog.
fail_rank_1() {
    local how=$1 out=$tmp/out.$1 start pid rank1=""
    start=$(date +%s)
    # The tied fixture's greedy continuation runs to its 2048-token context (seconds).
    timeout 60 mpirun --oversubscribe -np 2 "$herd" generate -m "$tied" -p "The herd crossed the river" \
        --greedy --ids -n 100000 --tp 2 --comm-timeout 3 >"$out" 2>&1 &
    local job=$!
    while [ -z "$rank1" ]; do
        for pid in $(pgrep -f "$herd generate" || true); do
            if tr '\0' '\n' </proc/"$pid"/environ 2>/dev/null | grep -qx OMPI_COMM_WORLD_RANK=1; then
                rank1=$pid
            fi
        done
        kill -0 "$job" 2>/dev/null || { echo "FAIL ($how): the job ended early"; cat "$out"; exit 1; }
    done
    until grep -q '[0-9] ' "$out"; do
        kill -0 "$job" 2>/dev/null || { echo "FAIL ($how): no token before the job ended"; cat "$out"; exit 1; }
    done
    kill -STOP "$rank1"
    [ "$how" = kill ] && kill -KILL "$rank1"
    local code=0
    wait "$job" || code=$?
    kill -KILL "$rank1" 2>/dev/null || true
    local took=$(($(date +%s) - start))
    if [ "$code" = 0 ] || [ "$code" = 124 ]; then
        echo "FAIL ($how): exit code $code after ${took}s (0: finished anyway, 124: hung)"
        cat "$out"
        exit 1
    fi
    [ "$how" = stop ] && ! grep -q "no progress for 3 s" "$out" && {
        echo "FAIL (stop): rank 0's watchdog did not report"
        cat "$out"
        exit 1
    }
    echo "ok: rank 1 ${how} mid-generation (kill: SIGKILL, stop: SIGSTOP): job ended with exit code $code after ${took}s"
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "== a failed rank ends the job"
fail_rank_1 kill
fail_rank_1 stop
