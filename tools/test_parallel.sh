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

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

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

# `herd serve` on `ranks` ranks (1: one plain process; more: mpirun with the
# given layout flags): waits for the address, lets the server idle for 5 s
# (longer than --comm-timeout 4: the followers' watchdogs must be kept quiet
# by rank 0's heartbeats), then prints the greedy answers to a completion
# and a chat request made with Python's urllib, as any OpenAI client would.
serve_answers() {
    local ranks=$1 log pid addr=""
    log=$(mktemp -p "$tmp" serve.XXXX)
    shift
    if [ "$ranks" = 1 ]; then
        timeout 120 "$herd" serve -m "$tiny" --port 0 "$@" 2>"$log" &
    else
        timeout 120 mpirun --oversubscribe -np "$ranks" "$herd" serve -m "$tiny" --port 0 \
            --comm-timeout 4 "$@" 2>"$log" &
    fi
    pid=$!
    for _ in $(seq 600); do
        addr=$(grep -o 'listening on http://[0-9.:]*' "$log" | sed 's|.*http://||') || true
        [ -n "$addr" ] && break
        kill -0 "$pid" 2>/dev/null || { echo "FAIL: herd serve ($ranks ranks $*) exited"; cat "$log"; exit 1; }
        sleep 0.1
    done
    [ -n "$addr" ] || { echo "FAIL: herd serve ($ranks ranks $*) never listened"; cat "$log"; exit 1; }
    sleep 5
    python3 - "$addr" <<'PY' || { cat "$log"; kill "$pid"; exit 1; }
import json, sys, urllib.request

def post(path, body):
    req = urllib.request.Request(
        f"http://{sys.argv[1]}{path}", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)

common = {"model": "llama31-tiny", "max_tokens": 24, "temperature": 0}
text = post("/v1/completions", {**common, "prompt": "The herd crossed the river"})
chat = post("/v1/chat/completions",
            {**common, "messages": [{"role": "user", "content": "Where is my order?"}]})
print(json.dumps([text["choices"][0]["text"], chat["choices"][0]["message"]["content"],
                  text["usage"], chat["usage"]]))
PY
    kill "$pid"
    wait "$pid" 2>/dev/null || true
}
echo "== herd serve --tp 2 / --pp 2 under mpirun answers HTTP requests like one process"
one=$(serve_answers 1)
for layout in "--tp 2" "--pp 2"; do
    # shellcheck disable=SC2086 # two words: flag and value
    many=$(serve_answers 2 $layout)
    if [ "$one" != "$many" ]; then
        echo "FAIL: one process answered $one, $layout answered $many"
        exit 1
    fi
    echo "ok: $layout gave one process's completion and chat answers (24 greedy tokens each)"
done

# Compares the loss curves in two runs' metrics.jsonl: the same steps, each
# loss within 1e-5 (relative), and falling.
same_curve() {
    python3 - "$1/metrics.jsonl" "$2/metrics.jsonl" "$3" <<'PY'
import json, sys
one, two = ([json.loads(l) for l in open(p)] for p in sys.argv[1:3])
losses = lambda rs: [(r["step"], r["loss"]) for r in rs if "loss" in r]
a, b = losses(one), losses(two)
assert [s for s, _ in a] == [s for s, _ in b] and len(a) >= 3, (a, b)
worst = max(abs(x - y) / abs(x) for (_, x), (_, y) in zip(a, b))
assert worst <= 1e-5, f"{sys.argv[3]}: loss curves differ by {worst:.2e} (relative): {a} vs {b}"
assert a[-1][1] < a[0][1], f"{sys.argv[3]}: the loss did not fall: {a}"
print(f"ok: {sys.argv[3]}: {len(b)} steps, losses {[round(x, 4) for _, x in b]}, "
      f"largest relative difference {worst:.1e}")
PY
}
# Runs `herd ARGS --out DIR` in one process and on 2 data-parallel ranks
# (OUT/dp1, OUT/dp2) and compares the curves.
dp_matches() {
    local name=$1
    shift
    "$herd" "$@" --out "$tmp/$name.dp1" >/dev/null 2>"$tmp/$name.dp1.log" || { cat "$tmp/$name.dp1.log"; exit 1; }
    mpi 2 "$herd" "$@" --out "$tmp/$name.dp2" >/dev/null 2>"$tmp/$name.dp2.log" || { cat "$tmp/$name.dp2.log"; exit 1; }
    grep -q "on 2 data-parallel ranks" "$tmp/$name.dp2.log" || { echo "FAIL: no data-parallel run"; cat "$tmp/$name.dp2.log"; exit 1; }
    same_curve "$tmp/$name.dp1" "$tmp/$name.dp2" "$name"
}
echo "== data-parallel training: 2 ranks give one process's loss curve (same global batch)"
# 4 rows of 256 positions per micro-batch, 2 micro-batches per step: each
# rank computes 2 rows of each; the all-reduced gradients are the batch's.
batch=(--data tests/fixtures/train/chat.jsonl --seq-len 256 --batch-tokens 1024 --grad-accum 2
    --val-fraction 0 --quiet)
dp_matches finetune finetune --model "$tiny" --full --steps 4 --lr 1e-2 "${batch[@]}"
# Distillation into a fresh student (tiny's shapes, random weights), with the
# teacher online, then from a top-8 teacher cache into an existing student.
dp_matches distill-online distill --teacher "$tiny" \
    --student-config "$tiny/config.json" --steps 4 --lr 3e-3 "${batch[@]}"
"$herd" teacher-cache --teacher "$tiny" --data tests/fixtures/train/chat.jsonl --seq-len 256 \
    -k 8 -o "$tmp/cache" >/dev/null 2>&1
dp_matches distill-cache distill --cache "$tmp/cache" --student "$bf16" --steps 4 \
    --lr 1e-3 "${batch[@]}"
[ -f "$tmp/distill-cache.dp2/summary.json" ] || { echo "FAIL: rank 0 wrote no summary"; exit 1; }

echo "== --comm nccl on a herd without NCCL (or without a GPU): an error on every rank"
nccl_error="needs a herd built with NCCL support\|communication backend unavailable"
expect_error "--comm nccl, tensor parallel" 2 "$nccl_error" \
    mpi 2 "$herd" generate -m "$tiny" -p hi --tp 2 --comm nccl
expect_error "--comm nccl, data parallel" 2 "$nccl_error" \
    mpi 2 "$herd" finetune --model "$tiny" --full --steps 1 "${batch[@]}" --out "$tmp/nccl" --comm nccl
expect_error "--comm nccl in one process" 1 "$nccl_error" "$herd" generate -m "$tiny" -p hi --comm nccl

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
echo "== a failed rank ends the job"
fail_rank_1 kill
fail_rank_1 stop
