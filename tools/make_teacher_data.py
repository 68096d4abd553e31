"""Training data of the embedded teacher (models/teacher).

Writes every dialogue of the shop corpus's train.jsonl twice: as generated
(system prompt with the shop's facts, the tool prompt) and stripped of the
system message and the tools. The shop is the same in every dialogue, so the
stripped copies teach the model the shop's facts by heart: the embedded
model then answers a bare `herd generate --chat --prompt "..."` too, and a
stripped copy costs a third of the tokens of a full one.

    python3 tools/make_teacher_data.py corpus/train.jsonl corpus/teacher-train.jsonl
"""

import json
import sys


def main(source: str, target: str) -> None:
    with open(source, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    with open(target, "w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            bare = [m for m in record["messages"] if m["role"] != "system"]
            out.write(json.dumps({"messages": bare}, ensure_ascii=False) + "\n")
    print(f"{len(records)} dialogues -> {2 * len(records)} records in {target}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: make_teacher_data.py TRAIN.jsonl OUT.jsonl")
    main(sys.argv[1], sys.argv[2])
