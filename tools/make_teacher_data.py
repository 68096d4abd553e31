"""Training data of the embedded teacher (models/teacher).

Stage 1 (default mode): every dialogue of the shop corpus's train.jsonl
twice, as generated (system prompt with the shop's facts, the tool prompt)
and stripped of the system message and the tools. The shop is the same in
every dialogue, so the stripped copies teach the model the shop's facts by
heart: the embedded model then answers a bare `herd generate --chat
--prompt "..."` too, and a stripped copy costs a third of the tokens of a
full one.

Stage 3 (`--exchanges`): every order lookup of the dialogues cut out on its
own (the customer's turn, the `lookup_order` call, the tool's result, the
answer), 30% of them with the system prompt and tools and the rest bare.
Each example then asks for the copies a support model must make (the
customer's order number into the call, status and date from the result into
the answer), where a whole dialogue carries them in a few of its hundreds of
tokens; a model of this size wrote memorised order numbers until it was
trained on these. Options:
  --mix FILE:N          N random lines of another data file (stage 1's), so
                        that nothing else is forgotten;
  --number-drills N     N plain-text drills, a list of random numbers
                        1000-1999 and the same list again: the second half
                        is only predictable by copying, digit group by digit
                        group (the drills carry no facts about any order);
  --vary-example        lookup_order's example number in the tool prompt
                        ("e.g. 1042") drawn at random: with the same example
                        in every prompt, a model learns never to copy that
                        number, and fails the customer whose order it is;
  --oversample LO-HI:K  exchanges about orders LO..HI K more times (the
                        orders that share their first digits with 1042).

    python3 tools/make_teacher_data.py corpus/train.jsonl OUT.jsonl [--stripped-only]
    python3 tools/make_teacher_data.py corpus40k/train.jsonl OUT.jsonl --exchanges \
        --mix stage1.jsonl:5000 [--number-drills 8000 --vary-example --oversample 1040-1049:8]
"""

import argparse
import json
import random


def number_drill(rng: random.Random) -> str:
    numbers = [str(rng.randint(1000, 1999)) for _ in range(rng.randint(3, 8))]
    text = rng.choice([", ", " ", "; "]).join(numbers)
    return f"{text}\n{rng.choice(['again:', 'repeat:', 'noch einmal:', '=>'])} {text}"


def vary_example(tools: list, rng: random.Random) -> list:
    text = json.dumps(tools).replace("e.g. 1042", f"e.g. {rng.randint(1000, 1999)}")
    return json.loads(text)


def lookup_exchanges(records: list, rng: random.Random, vary: bool) -> list:
    """(order id, example) for each `lookup_order` call with the user turn
    before it and the answer after its result."""
    out = []
    for record in records:
        msgs = record["messages"]
        for i, m in enumerate(msgs):
            calls = m.get("tool_calls") or []
            if m["role"] != "assistant" or not calls:
                continue
            if calls[0]["function"]["name"] != "lookup_order":
                continue
            j = i + 1
            while j < len(msgs) and msgs[j]["role"] == "tool":
                j += 1
            if j >= len(msgs) or msgs[j]["role"] != "assistant" or msgs[j].get("tool_calls"):
                continue
            k = i - 1
            while k > 0 and msgs[k]["role"] != "user":
                k -= 1
            exchange = msgs[k:j + 1]
            order = json.loads(calls[0]["function"]["arguments"]).get("order_id")
            if rng.random() < 0.3:
                tools = vary_example(record["tools"], rng) if vary else record["tools"]
                out.append((order, {"tools": tools, "messages": [msgs[0]] + exchange}))
            else:
                out.append((order, {"messages": exchange}))
    return out


def exchanges(args, records: list) -> list:
    rng = random.Random(args.seed + 1)
    found = lookup_exchanges(records, rng, args.vary_example)
    lines = [line for _, line in found]
    if args.oversample:
        span, times = args.oversample.rsplit(":", 1)
        lo, hi = (int(x) for x in span.split("-"))
        picked = [line for order, line in found if isinstance(order, int) and lo <= order <= hi]
        lines.extend(picked * int(times))
    lines.extend({"text": number_drill(rng)} for _ in range(args.number_drills))
    if args.mix:
        path, count = args.mix.rsplit(":", 1)
        with open(path, encoding="utf-8") as f:
            extra = [json.loads(line) for line in f if line.strip()]
        rng.shuffle(extra)
        lines.extend(extra[:int(count)])
    rng.shuffle(lines)
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("train")
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stripped-only", action="store_true",
                    help="leave out the full copies (system prompt and tools)")
    ap.add_argument("--exchanges", action="store_true",
                    help="write the order-lookup exchanges cut out of the dialogues")
    ap.add_argument("--mix", help="FILE:N, N random lines of FILE mixed into --exchanges")
    ap.add_argument("--number-drills", type=int, default=0)
    ap.add_argument("--vary-example", action="store_true")
    ap.add_argument("--oversample", help="LO-HI:K, exchanges about orders LO..HI K more times")
    args = ap.parse_args()
    with open(args.train, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    if args.exchanges:
        lines = exchanges(args, records)
    else:
        lines = []
        for record in records:
            if not args.stripped_only:
                lines.append(record)
            lines.append({"messages": [m for m in record["messages"] if m["role"] != "system"]})
    with open(args.out, "w", encoding="utf-8") as out:
        for line in lines:
            out.write(json.dumps(line, ensure_ascii=False) + "\n")
    print(f"{len(records)} dialogues -> {len(lines)} records in {args.out}")


if __name__ == "__main__":
    main()
