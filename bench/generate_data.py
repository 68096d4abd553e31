#!/usr/bin/env python3
"""herd generate-data throughput, local and remote.

1. Local teacher (the embedded model, in process): samples/s with the whole
   prompt set in flight (continuous batching) vs one sequence at a time
   (`--concurrency 1 --samples 1`); the same sequences either way (same
   seeds), so the two files must be identical.
2. Remote teacher: the same model behind `herd serve` on 127.0.0.1, at
   concurrency 1, 8 and 32; samples/s, and bytes and requests per generated
   ("distilled") token from generate-data's own traffic counters. Then
   `herd teacher-cache --teacher-url` caches the generated records' top-20
   through the same server: requests and bytes per distilled token of the
   logit-distillation pass.

Usage: python3 bench/generate_data.py [path/to/herd] [--prompts N]
Build first: cargo build --release -p herd. Prints a markdown table.
"""
import os
import re
import subprocess
import sys
import tempfile
import time

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


def teacher_cache(url, data, cache):
    """Caches the generated records' top-20 through the server (herd teacher-cache
    --teacher-url); returns (requests, bytes sent + received, cached tokens)."""
    out = herd("teacher-cache", "--teacher-url", url, "--data", data, "-o", cache, "-k", "20")
    m = re.search(r"(\d+) sequences, (\d+) tokens, .* this run: (\d+) requests, (\d+) bytes sent, "
                  r"(\d+) bytes received", out.stdout)
    if not m:
        sys.exit(f"no summary in {out.stdout!r}")
    _, tokens, requests, sent, received = map(int, m.groups())
    return requests, sent + received, tokens


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
                sps, _, traffic, _ = generate(prompts, out, "--teacher-url", url, "--concurrency", str(c))
                # generate-data counts a remote sample's tokens only when it asks for
                # logprobs: divide by the local run's generated tokens (same prompts,
                # model, budget and temperature; an estimate of the remote ones).
                per_token = lambda x: f"{x / max(tokens, 1):.3g}"
                rows.append((f"remote herd serve, concurrency {c}", sps,
                             per_token(traffic["requests"]),
                             per_token((traffic["kib_sent"] + traffic["kib_received"]) * 1024), ""))
                last = out
            cache_requests, cache_bytes, cached = teacher_cache(url, last, os.path.join(d, "cache"))
        finally:
            proc.kill()
        print(f"prompts: {N_PROMPTS} shop prompts, 1 sample each, --max-tokens 48, temperature 0.8")
        print(f"full batch / sequential: {full / seq:.2f}x; files identical: {same}; "
              f"{tokens} generated tokens (local run; the per-token remote columns divide by it)")
        print()
        print("| teacher | samples/s | requests per generated token | bytes per generated token |")
        print("|---|---|---|---|")
        for name, sps, req, byt, _ in rows:
            print(f"| {name} | {sps:.2f} | {req or '–'} | {byt or '–'} |")
        print()
        print(f"caching the generated records' top-20 through the server (herd teacher-cache "
              f"--teacher-url, {cached} distilled tokens): {cache_requests / cached:.3g} requests and "
              f"{cache_bytes / cached:.0f} bytes per distilled token")


if __name__ == "__main__":
    main()
