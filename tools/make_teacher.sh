#!/usr/bin/env bash
# Rebuilds the embedded teacher (models/teacher) from nothing but herd itself:
# the shop corpus, then a from-scratch run at 512 tokens per row on every
# token, then a full fine-tune at 1024 tokens on the assistant's replies, so
# that the model has seen the long (system prompt + tool prompt + several
# turns) contexts it is evaluated and served on. The tokenizer is the one
# committed in models/teacher (`herd tokenizer train --data corpus/train.jsonl
# --vocab-size 3072` on the 4000-dialogue corpus).
#
#   bash tools/make_teacher.sh WORKDIR      # ~30 min on 2 idle cores
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
echo "teacher in $work/p2 (copy model.safetensors next to models/teacher/config.json)"
