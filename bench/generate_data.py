#!/usr/bin/env python3
"""herd generate-data throughput, local and remote.

1. Local teacher (the embedded model, in process): samples/s with the whole
   prompt set in flight (continuous batching) vs one sequence at a time
   (`--concurrency 1 --samples 1`); the same sequences either way (same
   seeds), so the two files must be identical.
2. Remote teacher: the same model behind `herd serve` on 127.0.0.1, at
   concurrency 1, 8 and 32; samples/s, and bytes and requests per generated
   ("distilled") token from generate-data's own traffic counters. Then the
   bytes per token of scoring the generated text at k = 20 with
   /v1/completions echo + logprobs (what a remote teacher cache transfers).

Usage: python3 bench/generate_data.py [path/to/herd] [--prompts N]
Build first: cargo build --release -p herd. Prints a markdown table.
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

HERD = next((a for a in sys.argv[1:] if not a.startswith("--") and not a.isdigit()), "target/release/herd")
N_PROMPTS = int(sys.argv[sys.argv.index("--prompts") + 1]) if "--prompts" in sys.argv else 32
COMMON = ["--max-tokens", "48", "--temperature", "0.8", "--seed", "1", "--keep-truncated"]


def herd(*args, env=None):
    out = subprocess.run([HERD, *args], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"herd {' '.join(args)} failed:\n{out.stderr}")
    return out


def generate(prompts, output, *extra):
    """Runs generate-data; returns (samples/s, tokens, traffic dict)."""
    t0 = time.perf_counter()
    out = herd("generate-data", "--prompts", prompts, "-o", output, *COMMON, *extra)
    wall = time.perf_counter() - t0
    m = re.search(r"this run: (\d+) samples, (\d+) tokens in ([\d.]+) s \(([\d.]+) samples/s\)", out.stdout)
    if not m:
        sys.exit(f"no summary in {out.stdout!r}")
    traffic = {}
    t = re.search(r"(\d+) requests \((\d+) retries\), (\d+) KiB sent, (\d+) KiB received", out.stderr)
    if t:
        traffic = dict(zip(["requests", "retries", "kib_sent", "kib_received"], map(int, t.groups())))
    return float(m.group(4)), int(m.group(2)), traffic, wall


def start_server():
    proc = subprocess.Popen([HERD, "serve", "--port", "0", "--max-num-seqs", "64"],
                            stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if "listening on http://" in line:
            return proc, "http://" + line.split("listening on http://")[1].strip() + "/v1"
    sys.exit("herd serve did not start")


def score_bytes(url, records, k=20):
    """Bytes received per scored token for echo + logprobs=k over the records' assistant text."""
    received, tokens = 0, 0
    for r in records:
        text = json.dumps(r["messages"][-1])
        body = json.dumps({"model": "herd-embedded", "prompt": text, "max_tokens": 1,
                           "echo": True, "logprobs": k}).encode()
        req = urllib.request.Request(url + "/completions", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req) as resp:
            data = resp.read()
        received += len(data)
        tokens += json.loads(data)["usage"]["prompt_tokens"]
    return received / max(tokens, 1)


def main():
    with tempfile.TemporaryDirectory() as d:
        herd("data", "shop", "--prompts-only", "--dialogues", "100", "-o", d)
        lines = open(os.path.join(d, "prompts.jsonl")).read().splitlines()[:N_PROMPTS]
        prompts = os.path.join(d, "p.jsonl")
        open(prompts, "w").write("\n".join(lines) + "\n")
        rows = []
        seq, _, _, _ = generate(prompts, os.path.join(d, "seq.jsonl"), "--concurrency", "1")
        full, tokens, _, _ = generate(prompts, os.path.join(d, "full.jsonl"), "--concurrency", str(N_PROMPTS))
        same = open(os.path.join(d, "seq.jsonl")).read() == open(os.path.join(d, "full.jsonl")).read()
        rows.append(("local, one sequence at a time", seq, "", "", ""))
        rows.append((f"local, all {N_PROMPTS} in flight", full, "", "", ""))
        proc, url = start_server()
        try:
            records = []
            for c in (1, 8, 32):
                out = os.path.join(d, f"remote{c}.jsonl")
                sps, tokens, traffic, _ = generate(prompts, out, "--teacher-url", url, "--concurrency", str(c))
                per_token = lambda x: f"{x / max(tokens, 1):.3g}"
                rows.append((f"remote herd serve, concurrency {c}", sps,
                             per_token(traffic["requests"]),
                             per_token((traffic["kib_sent"] + traffic["kib_received"]) * 1024), ""))
                records = [json.loads(l) for l in open(out)]
            scored = score_bytes(url, records)
        finally:
            proc.kill()
        print(f"prompts: {N_PROMPTS} shop prompts, 1 sample each, --max-tokens 48, temperature 0.8")
        print(f"full batch / sequential: {full / seq:.2f}x; files identical: {same}")
        print()
        print("| teacher | samples/s | requests per generated token | bytes per generated token |")
        print("|---|---|---|---|")
        for name, sps, req, byt, _ in rows:
            print(f"| {name} | {sps:.2f} | {req or '–'} | {byt or '–'} |")
        print()
        print(f"scoring the generated answers at k = 20 (/v1/completions echo + logprobs): "
              f"{scored:.0f} bytes received per scored token")


if __name__ == "__main__":
    main()
