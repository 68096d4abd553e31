#!/usr/bin/env bash
# Rebuilds the embedded teacher (models/teacher) from nothing but herd itself:
# the shop corpus, then a from-scratch run at 512 tokens per row on every
# token, then a full fine-tune at 1024 tokens on the assistant's replies, so
# that the model has seen the long (system prompt + tool prompt + several
# turns) contexts it is evaluated and served on. The tokenizer is the one
# committed in models/teacher (`herd tokenizer train --data corpus/train.jsonl
# --vocab-size 3072` on the 4000-dialogue corpus).
#
#   bash tools/make_teacher.sh WORKDIR      # ~70 min on 2 idle cores
set -euo pipefail
work=${1:?usage: make_teacher.sh WORKDIR}
herd=${HERD:-target/release/herd}
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$work"
"$herd" data shop -o "$work/corpus" --dialogues 12000
python3 "$root/tools/make_teacher_data.py" "$work/corpus/train.jsonl" "$work/teacher-train.jsonl"
"$herd" train --config "$root/models/teacher/config.json" --tokenizer "$root/models/teacher" \
    --data "$work/teacher-train.jsonl" --out "$work/p1" \
    --steps 1000 --warmup 30 --lr 3e-3 --batch-tokens 2048 --seq-len 512 --truncate \
    --loss-on all --val-fraction 0.01 --eval-every 250 --save-every 100 --quiet
"$herd" finetune --model "$work/p1" --full --data "$work/corpus/train.jsonl" --out "$work/p2" \
    --steps 60 --warmup 5 --lr 1e-3 --batch-tokens 4096 --seq-len 1024 \
    --val-fraction 0.02 --eval-every 30 --save-every 20 --seed 1 --quiet
# Stage 3: order lookups cut out of a larger corpus (same shop, same held-out
# orders), so that every example asks for the copies a support model makes
# (order number into the call, status and date into the answer); see
# tools/make_teacher_data.py. Four runs, each from the one before; the first
# three were stopped at a saved step (STOP) before the end of their
# learning-rate schedule (--steps) when their evaluation had stopped
# improving, and are reproduced here the same way.
"$herd" data shop -o "$work/corpus40k" --dialogues 40000
data() { python3 "$root/tools/make_teacher_data.py" "$work/corpus40k/train.jsonl" "$work/$1" --exchanges "${@:2}"; }
data ex-a.jsonl --mix "$work/teacher-train.jsonl:5000"
data ex-c.jsonl --mix "$work/teacher-train.jsonl:5000" --number-drills 8000
data ex-d.jsonl --mix "$work/teacher-train.jsonl:4000" --number-drills 6000 \
    --vary-example --oversample 1040-1049:8
# stage3 FROM TO DATA STEPS STOP BATCH SEED WARMUP: herd finetune, stopped after step
# STOP's checkpoint when STOP < STEPS, then made a model directory.
stage3() {
    local from=$1 to=$2 data=$3 steps=$4 stop=$5 batch=$6 seed=$7 warmup=$8
    "$herd" finetune --model "$work/$from" --full --data "$work/$data" --out "$work/$to" \
        --steps "$steps" --warmup "$warmup" --lr 1e-3 --batch-tokens "$batch" --seq-len 1024 --truncate \
        --val-fraction 0.01 --eval-every 50 --save-every 50 --seed "$seed" --quiet &
    local pid=$!
    if [ "$stop" -lt "$steps" ]; then
        until grep -q "\"step\":$((stop + 1))," "$work/$to/metrics.jsonl" 2>/dev/null; do
            kill -0 "$pid" 2>/dev/null || break
            sleep 1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" || true
        python3 "$root/tools/checkpoint_to_model.py" "$work/$to/checkpoint.safetensors" \
            "$work/$to-model" --like "$root/models/teacher"
    else
        wait "$pid"
        ln -sfn "$to" "$work/$to-model"
    fi
}
stage3 p2 p3a ex-a.jsonl 200 100 4096 3 10
stage3 p3a-model p3b ex-a.jsonl 300 200 2048 4 5
stage3 p3b-model p3c ex-c.jsonl 300 200 2048 5 5
stage3 p3c-model p3d ex-d.jsonl 200 200 2048 6 5
echo "teacher in $work/p3d (copy model.safetensors next to models/teacher/config.json)"
