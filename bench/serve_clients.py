#!/usr/bin/env python3
"""herd serve vs llama.cpp's server: N concurrent streaming clients.

Starts, one after the other on the same GGUF file and thread count,
  - herd:      `herd serve --model FILE` (continuous batching);
  - llama.cpp: `python3 -m llama_cpp.server` (llama-cpp-python[server]);
and for each client count sends that many streaming `/v1/completions`
requests at once (distinct prompts, greedy, `max_tokens` each). Reports the
aggregate generated tokens/s (all tokens / wall time from the first request
to the last token) and p50/p99 time to first token, with herd / llama.cpp
ratios from the same run.

Usage (`pip install "llama-cpp-python[server]"`):
    cargo build --release -p herd
    python3 bench/serve_clients.py [--model FILE.gguf] [--threads 2] [--clients 1,8,32] [--max-tokens 32]
Without --model it uses the random Llama 3.2 1B-shaped Q4_K_M file that
bench/gguf_decode.py builds under bench/out/.
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERD = ROOT / "target" / "release" / "herd"
# Servers (by base URL) that take `stream_options.include_usage`.
USAGE_IN_STREAM = {}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(base, proc, timeout=600):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(base + "/v1/models", timeout=5) as r:
                return json.load(r)["data"][0]["id"]
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("server did not start")


def start_herd(model, threads, port):
    cmd = [str(HERD), "--threads", str(threads), "serve", "--model", str(model), "--port", str(port)]
    return subprocess.Popen(cmd, stderr=subprocess.DEVNULL)


def start_llama_cpp(model, threads, port, ctx):
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--port", str(port),
           "--n_threads", str(threads), "--n_threads_batch", str(threads), "--n_ctx", str(ctx),
           # By default a new request interrupts the one being streamed;
           # queue them instead, so every client gets its answer.
           "--interrupt_requests", "False"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def one_client(base, model, prompt, max_tokens, start, out):
    """One streaming request. Tokens are counted from the usage chunk when
    the server sends one (herd), else one per chunk before the last
    (llama.cpp sends a chunk per token, also for tokens without text); the
    time to first token is the arrival of the first chunk."""
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
            "stream": True}
    if USAGE_IN_STREAM.get(base):
        body["stream_options"] = {"include_usage": True}
    req = urllib.request.Request(base + "/v1/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    first, chunks, usage = None, 0, None
    with urllib.request.urlopen(req, timeout=3600) as res:
        for raw in res:
            line = raw.decode().strip()
            if not line.startswith("data:") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[5:])
            if chunk.get("usage"):
                usage = chunk["usage"]["completion_tokens"]
            for choice in chunk.get("choices", []):
                if first is None:
                    first = time.perf_counter() - start
                if choice.get("finish_reason") is None:
                    chunks += 1
    out.append((first if first is not None else float("nan"), usage if usage is not None else chunks,
                time.perf_counter()))


def run_clients(base, model, n, max_tokens):
    results, threads = [], []
    start = time.perf_counter()
    for i in range(n):
        prompt = f"Client {i} asks: tell me everything you know about the number {i * 7 + 3}."
        t = threading.Thread(target=one_client, args=(base, model, prompt, max_tokens, start, results))
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    wall = max(end for _, _, end in results) - start
    ttfts = sorted(t * 1e3 for t, _, _ in results)
    p99 = ttfts[min(len(ttfts) - 1, int(round(0.99 * (len(ttfts) - 1))))]
    total = sum(tok for _, tok, _ in results)
    return dict(tok_s=total / wall, p50=statistics.median(ttfts), p99=p99, tokens=total, wall=wall)


def bench(name, proc, port, clients, max_tokens):
    base = f"http://127.0.0.1:{port}"
    USAGE_IN_STREAM[base] = name == "herd"
    try:
        model = wait_ready(base, proc)
        run_clients(base, model, 1, 4)  # warm up
        return {n: run_clients(base, model, n, max_tokens) for n in clients}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=ROOT / "bench" / "out" / "llama32-1b-random-q4_k_m.gguf")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--max-tokens", type=int, default=32)
    args = ap.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    port = free_port()
    herd = bench("herd", start_herd(args.model, args.threads, port), port, clients, args.max_tokens)
    port = free_port()
    ctx = 4096
    llama = bench("llama.cpp", start_llama_cpp(args.model, args.threads, port, ctx), port, clients,
                  args.max_tokens)
    print(f"model {args.model.name}, {args.threads} threads, {args.max_tokens} tokens per client, greedy")
    print("| clients | herd tok/s | llama.cpp tok/s | ratio | herd p50 / p99 TTFT ms | llama.cpp p50 / p99 TTFT ms |")
    print("|---|---|---|---|---|---|")
    for n in clients:
        h, l = herd[n], llama[n]
        print(f"| {n} | {h['tok_s']:.2f} | {l['tok_s']:.2f} | {h['tok_s'] / l['tok_s']:.2f}x "
              f"| {h['p50']:.0f} / {h['p99']:.0f} | {l['p50']:.0f} / {l['p99']:.0f} |")
    print(json.dumps({"herd": herd, "llama.cpp": llama}))


if __name__ == "__main__":
    main()
