#!/usr/bin/env bash
# Remakes the embedded student (models/student) and its report from the
# embedded teacher: `herd distill` with no arguments (distilled student,
# CE-only baseline, untrained student, report), then a copy into models/.
#
#   cargo build --release -p herd
#   bash tools/make_student.sh [RUN_DIR]        # default runs/student; about 25 min on 2 cores
#   cargo build --release -p herd               # embeds the new student
#
# Extra arguments after RUN_DIR go to `herd distill` (e.g. --steps 100).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-runs/student}
shift || true
HERD=${HERD:-target/release/herd}
if [ -e "$RUN" ]; then
    echo "$RUN exists: choose another RUN_DIR (or remove it)" >&2
    exit 1
fi
"$HERD" distill -o "$RUN" --quiet "$@"
DEST=models/student
mkdir -p "$DEST"
for f in config.json generation_config.json model.safetensors tokenizer.json \
    tokenizer_config.json special_tokens_map.json summary.json metrics.jsonl loss.png \
    exact_match.png tool_call_validity.png perplexity.png tokens_per_second.png parameters.png; do
    if [ -f "$RUN/$f" ]; then cp "$RUN/$f" "$DEST/$f"; fi
done
cp "$RUN/ce-only/metrics.jsonl" "$DEST/metrics-ce-only.jsonl"
cp "$RUN/ce-only/loss.png" "$DEST/loss-ce-only.png"
# The report names the run directory; the committed copy names the default one.
sed "s#$RUN#runs/student#g" "$RUN/report.md" > "$DEST/REPORT.md"
echo "copied the student and $DEST/REPORT.md from $RUN; rebuild herd to embed it"
