#!/usr/bin/env bash
# Tensor and pipeline parallelism over NCCL (`--comm nccl`) on a machine with
# at least two NVIDIA GPUs, the NVIDIA driver, NCCL (libnccl.so.2) and
# OpenMPI. Not part of CI (no GPU there); run it by hand:
#   bash tools/test_nccl.sh            # builds target/release/herd --features cuda
#   bash tools/test_nccl.sh DIR        # uses DIR/herd, built with --features cuda
# Each rank drives the GPU of its index on its host (rank 0: GPU 0, ...).
# Checks that TP 2, PP 2 and data-parallel fine-tuning over NCCL give what
# one process gives: the same greedy tokens, the same loss curve.
set -euo pipefail
cd "$(dirname "$0")/.."
gpus=$(nvidia-smi -L 2>/dev/null | wc -l || true)
if [ "${gpus:-0}" -lt 2 ]; then
    echo "tools/test_nccl.sh needs 2 NVIDIA GPUs; this machine has ${gpus:-0}" >&2
    exit 2
fi
if [ -n "${1:-}" ]; then
    herd=$(realpath "$1")/herd
else
    cargo build --release -p herd --features cuda
    herd=target/release/herd
fi
tiny=tests/fixtures/models/llama31-tiny
mpi() { timeout 300 mpirun --oversubscribe -np "$@"; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

args=(generate -m "$tiny" -p "The herd crossed the river" --ids --greedy -n 24)
one=$("$herd" "${args[@]}" 2>/dev/null)
for layout in "--tp 2" "--pp 2"; do
    # shellcheck disable=SC2086 # two words: flag and value
    many=$(mpi 2 "$herd" "${args[@]}" $layout --comm nccl 2>"$tmp/log") || { cat "$tmp/log"; exit 1; }
    if [ "$one" != "$many" ]; then
        echo "FAIL: one process printed '$one', $layout over NCCL printed '$many'"
        exit 1
    fi
    grep -q "comm nccl" "$tmp/log" || { echo "FAIL: no NCCL traffic reported"; cat "$tmp/log"; exit 1; }
    echo "ok: $layout --comm nccl gave one process's 24 greedy tokens"
    grep "communication per decoded token" "$tmp/log"
done

finetune=(finetune --model "$tiny" --data tests/fixtures/train/chat.jsonl --full --steps 4
    --lr 1e-2 --seq-len 256 --batch-tokens 1024 --grad-accum 2 --val-fraction 0 --quiet)
"$herd" "${finetune[@]}" --out "$tmp/one" 2>/dev/null
mpi 2 "$herd" "${finetune[@]}" --out "$tmp/two" --comm nccl 2>"$tmp/log" || { cat "$tmp/log"; exit 1; }
python3 - "$tmp/one/metrics.jsonl" "$tmp/two/metrics.jsonl" <<'PY'
import json, sys
one, two = ([json.loads(l)["loss"] for l in open(p) if '"loss"' in l] for p in sys.argv[1:])
worst = max(abs(x - y) / abs(x) for x, y in zip(one, two))
assert len(one) == len(two) == 4 and worst <= 1e-5, (one, two)
print(f"ok: data-parallel finetune over NCCL: losses {two}, largest relative difference {worst:.1e}")
PY
