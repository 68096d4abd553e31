"""Training data of the embedded teacher (models/teacher).

Writes every dialogue of the shop corpus's train.jsonl twice: as generated
(system prompt with the shop's facts, the tool prompt) and stripped of the
system message and the tools. The shop is the same in every dialogue, so the
stripped copies teach the model the shop's facts by heart: the embedded
model then answers a bare `herd generate --chat --prompt "..."` too, and a
stripped copy costs a third of the tokens of a full one.

With `--copy-drills N` it also writes N plain-text copy drills: a random
list of the corpus's kinds of values (order numbers, dates, product names,
carriers, statuses), a separator, and the same list again. Half the tokens
of a drill can only be predicted by copying from earlier in the context,
the skill a support model needs to put the customer's order number into
its tool call and the tool's status into its answer, and one that a small
model does not pick up from the dialogues alone within a short run (the
first teacher wrote well-formed calls with memorised order numbers). The
drills carry no facts about any order.

    python3 tools/make_teacher_data.py corpus/train.jsonl OUT.jsonl \
        [--copy-drills N --shop corpus/shop.json] [--stripped-only]
"""

import argparse
import json
import random


def drill_values(shop: dict) -> list:
    """Value generators: each returns one random item."""
    products = [p["name_en"] for p in shop["products"]] + [p["name_de"] for p in shop["products"]]
    skus = [p["sku"] for p in shop["products"]]
    words = ["shipped", "delivered", "processing", "cancelled", "returned",
             "versandt", "zugestellt", "storniert", "DHL", "UPS", "DPD", "Hermes"]
    return [
        lambda r: str(r.randint(1000, 1999)),
        lambda r: str(r.randint(1000, 1999)),
        lambda r: f"2024-{r.randint(5, 7):02d}-{r.randint(1, 28):02d}",
        lambda r: r.choice(products),
        lambda r: r.choice(skus),
        lambda r: r.choice(words),
        lambda r: f"{r.randint(1, 99)}.{r.randint(0, 99):02d} EUR",
    ]


def drill(rng: random.Random, values: list) -> str:
    items = [rng.choice(values)(rng) for _ in range(rng.randint(4, 16))]
    sep = rng.choice([", ", " ", "; ", " | "])
    text = sep.join(items)
    return f"{text}\n{rng.choice(['again:', 'repeat:', 'noch einmal:', '=>'])} {text}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("train")
    ap.add_argument("out")
    ap.add_argument("--copy-drills", type=int, default=0)
    ap.add_argument("--shop", help="shop.json of the corpus (for the drills' values)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stripped-only", action="store_true",
                    help="leave out the full copies (system prompt and tools)")
    args = ap.parse_args()
    with open(args.train, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    lines = []
    for record in records:
        if not args.stripped_only:
            lines.append(record)
        lines.append({"messages": [m for m in record["messages"] if m["role"] != "system"]})
    if args.copy_drills:
        if not args.shop:
            ap.error("--copy-drills needs --shop")
        with open(args.shop, encoding="utf-8") as f:
            values = drill_values(json.load(f)["shop"])
        rng = random.Random(args.seed)
        drills = [{"text": drill(rng, values)} for _ in range(args.copy_drills)]
        # Spread the drills evenly through the file (the trainer shuffles
        # too, but an even spread keeps the mixture right in any prefix).
        step = max(1, len(lines) // max(1, len(drills)))
        mixed = []
        for i, line in enumerate(lines):
            mixed.append(line)
            if i % step == step - 1 and drills:
                mixed.append(drills.pop())
        mixed.extend(drills)
        lines = mixed
    with open(args.out, "w", encoding="utf-8") as out:
        for line in lines:
            out.write(json.dumps(line, ensure_ascii=False) + "\n")
    print(f"{len(records)} dialogues -> {len(lines)} records in {args.out}")


if __name__ == "__main__":
    main()
