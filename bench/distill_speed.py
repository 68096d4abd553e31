#!/usr/bin/env python3
"""Distillation speed: herd vs PyTorch doing the same forward-KL step, and
the teacher cache's size.

Both sides distil the embedded teacher (models/teacher) into the same fresh
student (the one `herd distill` sizes at 1/8 of the teacher; PyTorch loads
the config.json herd wrote), on the same batch shape (rows of 256 tokens,
2048 tokens per step, plain-text records so every position counts), with
the same thread count. A step is: teacher forward (no gradient), student
forward, forward KL(teacher ‖ student) at temperature 1 over every
position, backward, gradient clipping, AdamW. Tokens/s is measured after
one warm-up step. The cache line runs `herd teacher-cache -k 64` on the
same data and reports its bytes per token.

    cargo build --release -p herd
    python3 bench/distill_speed.py --threads 2 --steps 6

Needs torch and transformers.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEQ, BATCH_TOKENS = 256, 2048


def make_data(path: Path) -> None:
    words = "the shop sells mugs teapots scarves lamps and notebooks to customers every day".split()
    with open(path, "w") as f:
        for i in range(400):
            text = " ".join(words[(i * 7 + j) % len(words)] for j in range(40))
            f.write(json.dumps({"text": text}) + "\n")


def run_herd(herd: str, data: Path, out: Path, threads: int, steps: int) -> dict:
    cmd = [herd, "--threads", str(threads), "distill", "--data", str(data), "--out", str(out),
           "--steps", str(steps), "--seq-len", str(SEQ), "--batch-tokens", str(BATCH_TOKENS),
           "--val-fraction", "0", "--quiet"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"herd distill failed:\n{p.stderr}")
    rows = [json.loads(l) for l in open(out / "metrics.jsonl") if '"loss"' in l and '"lr"' in l]
    first, last = rows[0], rows[-1]
    elapsed = last["tokens"] / last["tokens_per_s"] - first["tokens"] / first["tokens_per_s"]
    return {"tokens_per_s": (last["tokens"] - first["tokens"]) / elapsed}


TORCH_CHILD = r"""
import json, sys, time, torch
from transformers import LlamaConfig, LlamaForCausalLM
teacher_dir, student_config, threads, steps, seq, batch_tokens = sys.argv[1:7]
threads, steps, seq, batch_tokens = int(threads), int(steps), int(seq), int(batch_tokens)
torch.set_num_threads(threads)
teacher = LlamaForCausalLM.from_pretrained(teacher_dir, dtype=torch.float32, attn_implementation="sdpa").eval()
cfg = LlamaConfig(**json.load(open(student_config)))
torch.manual_seed(0)
student = LlamaForCausalLM(cfg).train()
opt = torch.optim.AdamW(student.parameters(), lr=1e-3)
g = torch.Generator().manual_seed(0)
rows = batch_tokens // seq
times = []
for step in range(steps):
    ids = torch.randint(0, 2800, (rows, seq), generator=g)
    t0 = time.perf_counter()
    with torch.no_grad():
        t_logp = torch.log_softmax(teacher(input_ids=ids).logits, -1)
    s_logp = torch.log_softmax(student(input_ids=ids).logits, -1)
    loss = torch.nn.functional.kl_div(s_logp, t_logp, log_target=True, reduction="sum") / ids.numel()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
    opt.step(); opt.zero_grad()
    times.append(time.perf_counter() - t0)
print(json.dumps({"tokens_per_s": rows * seq * (steps - 1) / sum(times[1:])}))
"""


def run_torch(student_config: Path, threads: int, steps: int) -> dict:
    p = subprocess.run([sys.executable, "-c", TORCH_CHILD, str(ROOT / "models/teacher"),
                        str(student_config), str(threads), str(steps), str(SEQ), str(BATCH_TOKENS)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"PyTorch failed:\n{p.stderr}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def cache_bytes_per_token(herd: str, data: Path, out: Path, threads: int) -> float:
    p = subprocess.run([herd, "--threads", str(threads), "teacher-cache", "--data", str(data),
                        "-o", str(out), "-k", "64"], capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"herd teacher-cache failed:\n{p.stderr}")
    return float(re.search(r"([0-9.]+) bytes/token", p.stdout).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--herd", default=str(ROOT / "target/release/herd"))
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "data.jsonl"
        make_data(data)
        h = run_herd(args.herd, data, tmp / "student", args.threads, args.steps)
        t = run_torch(tmp / "student/config.json", args.threads, args.steps)
        cache = cache_bytes_per_token(args.herd, data, tmp / "cache", args.threads)
        print(f"threads {args.threads}, {args.steps} steps of {BATCH_TOKENS} tokens (rows of {SEQ})")
        print("| herd tokens/s | PyTorch tokens/s | herd / PyTorch | cache bytes/token (k = 64) |")
        print("|---|---|---|---|")
        print(f"| {h['tokens_per_s']:.0f} | {t['tokens_per_s']:.0f} "
              f"| {h['tokens_per_s'] / t['tokens_per_s']:.2f}x | {cache:.1f} |")


if __name__ == "__main__":
    main()
