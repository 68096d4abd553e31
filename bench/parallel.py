#!/usr/bin/env python3
"""Tensor and pipeline parallelism on one machine: decode tokens/s of
`herd generate` in one process vs TP=2 and PP=2 under mpirun, and the bytes
each token moves according to the layout's formula.

Uses the random Llama 3.2 1B-shaped model of bench/decode_prefill.py (made
under bench/out/ with torch + transformers on first use). Every rank gets
--threads / ranks threads, so all runs use the same cores.

Bytes per generated token (f32 activations, as herd sends them):
  TP: per layer 2 all-reduces of hidden values (attention output, MLP down),
      one more for the embedding, and an all-gather of the vocabulary slices
      of the logits;
  PP: one hidden-size transfer per stage boundary, and the logits sent from
      the last stage to rank 0.

Usage:
    cargo build --release -p herd --features mpi
    python3 bench/parallel.py [--threads 2] [--tokens 32]
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


def decode_speed(cmd, env):
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if out.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed:\n{out.stderr[-2000:]}")
    found = SPEED.search(out.stderr)
    if not found:
        sys.exit(f"no speed line in:\n{out.stderr[-2000:]}")
    return float(found.group(2))


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
        cmd += common + ["--tp", str(tp), "--pp", str(pp)]
        rows.append((f"TP {tp} x PP {pp}", tp, pp, decode_speed(cmd, env)))
    base = rows[0][3]
    print(f"model: {model.name}, {args.tokens} tokens, {args.threads} threads in all")
    print("| layout | decode tok/s | vs single | bytes moved per token (formula) |")
    print("|---|---|---|---|")
    for name, tp, pp, speed in rows:
        moved = bytes_per_token(cfg, tp, pp)
        print(f"| {name} | {speed:.2f} | {speed / base:.2f}x | {moved / 1024:.1f} KiB |")


if __name__ == "__main__":
    main()
