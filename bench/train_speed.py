#!/usr/bin/env python3
"""Training speed and peak memory: herd vs PyTorch on the CPU.

Both train the same random Llama (about 13M parameters: vocab 8192, hidden
384, 6 layers, 6 query / 2 KV heads, MLP 1024, tied embeddings) on the same
batches shape (rows of 256 tokens, 2048 tokens per step), with the same
thread count, for full fine-tuning and for LoRA (rank 8 on q,k,v,o). Each
side runs in its own process; peak RSS is that process's maximum resident
set (getrusage of the child). Tokens/s is measured after one warm-up step.

    cargo build --release -p herd
    python3 bench/train_speed.py --threads 2 --steps 6

Needs torch, transformers, peft.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 8192,
    "hidden_size": 384, "intermediate_size": 1024, "num_hidden_layers": 6,
    "num_attention_heads": 6, "num_key_value_heads": 2, "head_dim": 64,
    "max_position_embeddings": 1024, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
    "tie_word_embeddings": True, "hidden_act": "silu", "torch_dtype": "float32",
    "bos_token_id": 373, "eos_token_id": [374, 381, 382],
}
SEQ, BATCH_TOKENS = 256, 2048


def make_model(dir: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**CONFIG))
    model.save_pretrained(dir)
    (dir / "config.json").write_text(json.dumps(CONFIG, indent=2))
    tok = ROOT / "tests/fixtures/models/llama31-tiny"
    for f in ["tokenizer.json", "tokenizer_config.json"]:
        (dir / f).write_bytes((tok / f).read_bytes())


def make_data(path: Path) -> None:
    words = "the shop sells mugs teapots scarves lamps and notebooks to customers every day".split()
    with open(path, "w") as f:
        for i in range(400):
            text = " ".join(words[(i * 7 + j) % len(words)] for j in range(40))
            f.write(json.dumps({"text": text}) + "\n")


WRAPPER = (
    "import resource, subprocess, sys; "
    "p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
    "sys.stderr.write(p.stderr); print(p.stdout); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(p.returncode)"
)


def measured(cmd: list[str]) -> tuple[str, float]:
    """Runs `cmd` under a fresh wrapper process; returns its stdout and its
    own peak RSS in MiB (the wrapper's only child is `cmd`)."""
    out = subprocess.run([sys.executable, "-c", WRAPPER, *cmd], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{cmd[0]} failed:\n{out.stderr}")
    lines = out.stdout.strip().splitlines()
    return "\n".join(lines[:-1]), int(lines[-1]) / 1024


def run_herd(herd: str, model: Path, data: Path, mode: str, threads: int, steps: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        flags = ["--full"] if mode == "full" else ["--lora-rank", "8", "--lora-targets", "q,k,v,o"]
        cmd = [herd, "--threads", str(threads), "finetune", "--model", str(model),
               "--data", str(data), "--out", out, "--steps", str(steps), "--seq-len", str(SEQ),
               "--batch-tokens", str(BATCH_TOKENS), "--loss-on", "all", "--val-fraction", "0",
               "--quiet", *flags]
        _, rss = measured(cmd)
        rows = [json.loads(l) for l in open(Path(out) / "metrics.jsonl")]
    # tokens/s after the first (warm-up) step.
    first, last = rows[0], rows[-1]
    elapsed = last["tokens"] / last["tokens_per_s"] - first["tokens"] / first["tokens_per_s"]
    return {"tokens_per_s": (last["tokens"] - first["tokens"]) / elapsed,
            "peak_rss_mib": rss}


TORCH_CHILD = r"""
import json, sys, time, torch
from transformers import LlamaForCausalLM
model_dir, mode, threads, steps, seq, batch_tokens = sys.argv[1:7]
threads, steps, seq, batch_tokens = int(threads), int(steps), int(seq), int(batch_tokens)
torch.set_num_threads(threads)
model = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa")
if mode == "lora":
    from peft import LoraConfig, get_peft_model
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], lora_dropout=0.0))
model.train()
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
g = torch.Generator().manual_seed(0)
rows = batch_tokens // seq
times = []
for step in range(steps):
    ids = torch.randint(0, 373, (rows, seq + 1), generator=g)
    t0 = time.perf_counter()
    out = model(input_ids=ids[:, :-1], labels=ids[:, 1:].clone())
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step(); opt.zero_grad()
    times.append(time.perf_counter() - t0)
print(json.dumps({"tokens_per_s": rows * seq * (steps - 1) / sum(times[1:])}))
"""


def run_torch(model: Path, mode: str, threads: int, steps: int) -> dict:
    stdout, rss = measured([sys.executable, "-c", TORCH_CHILD, str(model), mode, str(threads),
                            str(steps), str(SEQ), str(BATCH_TOKENS)])
    result = json.loads(stdout.strip().splitlines()[-1])
    result["peak_rss_mib"] = rss
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--herd", default=str(ROOT / "target/release/herd"))
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model, data = Path(tmp) / "model", Path(tmp) / "data.jsonl"
        make_model(model)
        make_data(data)
        print(f"threads {args.threads}, {args.steps} steps of {BATCH_TOKENS} tokens (rows of {SEQ})")
        print("| mode | herd tokens/s | PyTorch tokens/s | herd / PyTorch | herd peak RSS MiB | PyTorch peak RSS MiB |")
        print("|---|---|---|---|---|---|")
        for mode in ["lora", "full"]:
            h = run_herd(args.herd, model, data, mode, args.threads, args.steps)
            t = run_torch(model, mode, args.threads, args.steps)
            ratio = h["tokens_per_s"] / t["tokens_per_s"]
            print(f"| {mode} | {h['tokens_per_s']:.0f} | {t['tokens_per_s']:.0f} | {ratio:.2f}x "
                  f"| {h['peak_rss_mib']:.0f} | {t['peak_rss_mib']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
