#!/usr/bin/env python3
"""Tensor and pipeline parallelism on one machine: decode tokens/s of
`herd generate` in one process vs TP=2 and PP=2 under mpirun; per decoded
token, the time rank 0 spends inside collectives and the bytes it moves, as
counted by the communicator (the `[communication per decoded token ...]`
line), next to the bytes the layout's formula predicts.

Uses the random Llama 3.2 1B-shaped model of bench/decode_prefill.py (made
under bench/out/ with torch + transformers on first use). Every rank gets
--threads / ranks threads, so all runs use the same cores.

Bytes per generated token (f32 activations, as herd sends them):
  TP: per layer 2 all-reduces of hidden values (attention output, MLP down),
      one more for the embedding, and an all-gather of the vocabulary slices
      of the logits;
  PP: one hidden-size transfer per stage boundary, and the logits sent from
      the last stage to rank 0.

Rank 0's count equals the formula: in TP it takes part in every all-reduce
and the all-gather, in PP 2 it sends the boundary state and receives the
logits. Its time includes waiting for its peers (in PP: the other stage's
compute), so it bounds the communication cost from above.

Usage:
    cargo build --release -p herd --features mpi
    python3 bench/parallel.py [--threads 2] [--tokens 32] [--comm mpi|nccl]
"""
import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from decode_prefill import make_model  # noqa: E402

HERD = ROOT / "target" / "release" / "herd"
SPEED = re.compile(r"generated (\d+) tokens at ([0-9.]+) tok/s")
COMM = re.compile(r"communication per decoded token .*?: data (\d+) bytes in (\d+) calls, ([0-9.]+) ms")


def decode_speed(cmd, env):
    """Decode tok/s, and rank 0's (bytes, calls, ms) per decoded token if parallel."""
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if out.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed:\n{out.stderr[-2000:]}")
    found = SPEED.search(out.stderr)
    if not found:
        sys.exit(f"no speed line in:\n{out.stderr[-2000:]}")
    comm = COMM.search(out.stderr)
    traffic = (int(comm.group(1)), int(comm.group(2)), float(comm.group(3))) if comm else None
    return float(found.group(2)), traffic


def bytes_per_token(cfg, tp, pp):
    h, v, layers = cfg["hidden_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
    tp_bytes = (2 * layers + 1) * h * 4 + v * 4 if tp > 1 else 0
    pp_bytes = (pp - 1) * h * 4 + v * 4 if pp > 1 else 0
    return tp_bytes + pp_bytes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--comm", default="mpi", choices=["mpi", "nccl"])
    args = ap.parse_args()
    model = make_model(args.dtype)
    cfg = json.loads((model / "config.json").read_text())
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_mpi_yield_when_idle="1")
    common = ["generate", "-m", str(model), "-p", "The herd", "--greedy", "--ids",
              "-n", str(args.tokens)]
    rows = [("single process", 1, 1,
             decode_speed([HERD, "--threads", str(args.threads)] + common, env))]
    for tp, pp in [(2, 1), (1, 2)]:
        ranks = tp * pp
        threads = max(1, args.threads // ranks)
        cmd = ["mpirun", "--oversubscribe", "-np", str(ranks), HERD, "--threads", str(threads)]
        cmd += common + ["--tp", str(tp), "--pp", str(pp), "--comm", args.comm]
        rows.append((f"TP {tp} x PP {pp}", tp, pp, decode_speed(cmd, env)))
    base = rows[0][3][0]
    print(f"model: {model.name}, {args.tokens} tokens, {args.threads} threads in all, "
          f"--comm {args.comm}")
    print("| layout | decode tok/s | vs single | comm ms/token (rank 0) | share of token time "
          "| bytes/token measured (calls) | bytes/token formula |")
    print("|---|---|---|---|---|---|---|")
    for name, tp, pp, (speed, traffic) in rows:
        formula = bytes_per_token(cfg, tp, pp)
        if traffic is None:
            comm = "- | - | -"
        else:
            moved, calls, ms = traffic
            comm = f"{ms:.2f} | {ms * speed / 10:.0f}% | {moved:,} ({calls})"
        print(f"| {name} | {speed:.2f} | {speed / base:.2f}x | {comm} | {formula:,} |")


if __name__ == "__main__":
    main()
