#!/usr/bin/env python3
"""Agent latency and throughput: `herd serve --agents` with the shop-support agent.

Creates the shop-support agent (`herd agent new`), serves it, and measures
  - latency of a one-tool-call answer: "where is my order N?" for N distinct
    orders, one request at a time (model -> lookup_order -> SQLite -> model);
    median and p95 over the requests that made exactly one tool call;
  - requests per second with 8 concurrent conversations (8 clients, each
    sending its requests back to back in its own conversation).
One column per model: the embedded teacher (default) and the distilled
student (`--student DIR`; it does not exist yet, so the column says so).

Usage:
    cargo build --release -p herd
    python3 bench/agent_latency.py [--requests 40] [--concurrent 8] [--per-client 5] [--student DIR]
Prints a markdown table to paste into bench/RESULTS.md.
"""
import argparse
import concurrent.futures
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "server"))
import herd_server  # noqa: E402  (the tests' `herd serve` starter)
HERD = ROOT / "target" / "release" / "herd"


def serve(agent_dir, model):
    return herd_server.start(str(HERD), ["--agents", str(agent_dir)] + (["--model", str(model)] if model else []))


def ask(base, text, conversation_id=None):
    body = {"model": "shop-support", "messages": [{"role": "user", "content": text}]}
    if conversation_id:
        body["conversation_id"] = conversation_id
    request = urllib.request.Request(base + "/v1/chat/completions", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=600) as response:
        reply = json.loads(response.read())
    return time.perf_counter() - start, reply


def measure(agent_dir, model, args):
    server, base = serve(agent_dir, model)
    try:
        failed = 0
        try:
            ask(base, "where is my order 1001?")  # warm-up
        except urllib.error.HTTPError:
            pass
        one_call = []
        for i in range(args.requests):
            try:
                seconds, reply = ask(base, f"where is my order {1100 + 7 * i}?")
            except urllib.error.HTTPError:
                failed += 1  # e.g. a model that rambles until its context is full
                continue
            if len(reply["agent_steps"]) == 1:
                one_call.append(seconds)
        def client(c):
            nonlocal failed
            conversation = None
            for k in range(args.per_client):
                try:
                    _, reply = ask(base, f"where is my order {1500 + 10 * c + k}?", conversation)
                except urllib.error.HTTPError:
                    failed += 1
                    conversation = None
                    continue
                conversation = reply["conversation_id"]
        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(args.concurrent) as pool:
            list(pool.map(client, range(args.concurrent)))
        wall = time.perf_counter() - start
    finally:
        server.terminate()
        server.wait(timeout=10)
    one_call.sort()
    p95 = one_call[min(len(one_call) - 1, int(0.95 * len(one_call)))] if one_call else float("nan")
    return {
        "one_call": len(one_call),
        "median_ms": 1000 * statistics.median(one_call) if one_call else float("nan"),
        "p95_ms": 1000 * p95,
        "rps": args.concurrent * args.per_client / wall,
        "failed": failed,
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--concurrent", type=int, default=8)
    parser.add_argument("--per-client", type=int, default=5)
    parser.add_argument("--student", help="the distilled student's model directory")
    args = parser.parse_args()
    tmp = tempfile.TemporaryDirectory()
    agent_dir = Path(tmp.name) / "support"
    subprocess.run([str(HERD), "agent", "new", str(agent_dir)], check=True, stdout=subprocess.DEVNULL)
    teacher = measure(agent_dir, None, args)
    student = None
    if args.student:
        toml = (agent_dir / "agent.toml").read_text()
        (agent_dir / "agent.toml").write_text(toml.replace('model = "embedded"', f'model = "{os.path.abspath(args.student)}"'))
        student = measure(agent_dir, args.student, args)
    cell = lambda r, key, fmt: (fmt.format(r[key]) if r else "n/a (no student yet)")
    print(f"| metric | embedded teacher | student |")
    print(f"|---|---|---|")
    print(f"| one-tool-call answers measured (of {args.requests}) | {teacher['one_call']} | {cell(student, 'one_call', '{}')} |")
    print(f"| median latency, one tool call (ms) | {teacher['median_ms']:.0f} | {cell(student, 'median_ms', '{:.0f}')} |")
    print(f"| p95 latency, one tool call (ms) | {teacher['p95_ms']:.0f} | {cell(student, 'p95_ms', '{:.0f}')} |")
    print(f"| requests/s, {args.concurrent} concurrent conversations | {teacher['rps']:.2f} | {cell(student, 'rps', '{:.2f}')} |")
    print(f"| requests that failed (HTTP error) | {teacher['failed']} | {cell(student, 'failed', '{}')} |")


if __name__ == "__main__":
    sys.exit(main())
