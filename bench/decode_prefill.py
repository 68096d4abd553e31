#!/usr/bin/env python3
"""herd vs Hugging Face transformers: 512-token prefill and decode speed.

Builds a random-weight model of Llama 3.2 1B's exact shape (never committed;
written under bench/out/), then, in one run on the same machine with the same
thread count, times:
  - herd:         `herd generate` (release build), reading the time to first
                  token and decode tokens/s it prints on stderr;
  - transformers: one forward over the 512-token prompt, then a greedy decode
                  loop with its KV cache.
for bf16 and f32 weights, and prints herd / transformers ratios.

Usage (needs `pip install torch transformers tokenizers`):
    cargo build --release -p herd
    python3 bench/decode_prefill.py [--threads 2] [--decode-tokens 32] [--dtypes bf16,f32]
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
TOKENIZER_DIR = ROOT / "tests" / "fixtures" / "tokenizer-tiny"

LLAMA_32_1B = dict(
    vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
    num_attention_heads=32, num_key_value_heads=8, head_dim=64, rms_norm_eps=1e-5,
    max_position_embeddings=131072, tie_word_embeddings=True, bos_token_id=128000,
    eos_token_id=[128001, 128008, 128009],
    rope_theta=500000.0,
    rope_scaling=dict(rope_type="llama3", factor=32.0, low_freq_factor=1.0,
                      high_freq_factor=4.0, original_max_position_embeddings=8192),
)


def make_model(dtype_name):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    path = OUT / f"llama32-1b-random-{dtype_name}"
    if (path / "config.json").exists():
        return path
    torch.manual_seed(0)
    dtype = {"bf16": torch.bfloat16, "f32": torch.float32}[dtype_name]
    cfg = LlamaConfig(**LLAMA_32_1B)
    model = LlamaForCausalLM(cfg).to(dtype)
    model.save_pretrained(path, max_shard_size="20GB")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(TOKENIZER_DIR / f, path / f)
    return path


def prompt_text(n_tokens):
    """A text the tiny tokenizer turns into exactly n_tokens - 1 tokens (+ BOS)."""
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(TOKENIZER_DIR / "tokenizer.json"))
    words = ("the model reads a long prompt about rivers, mountains and "
             "numbers 12 345 6789 before it answers ").split()
    count = lambda t: len(tok.encode(t, add_special_tokens=False).ids)
    text = " ".join(words * (n_tokens // len(words) + 2))
    # Trim characters until the count is exact (BPE merges make it jumpy).
    while count(text) > n_tokens - 1:
        text = text[:-1]
    ids = tok.encode(text, add_special_tokens=False).ids
    return text, [LLAMA_32_1B["bos_token_id"]] + ids


def run_herd(path, text, threads, decode_tokens):
    """One `herd generate` run under GNU time: speeds from herd's stderr, peak RSS from time."""
    exe = ROOT / "target" / "release" / "herd"
    cmd = ["/usr/bin/time", "-f", "peak_rss_kb %M", str(exe), "--threads", str(threads), "generate",
           "--model", str(path), "--prompt", text, "--greedy", "-n", str(decode_tokens)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    stats = res.stderr
    prompt = int(re.search(r"prompt (\d+) tokens", stats).group(1))
    ttft_ms = float(re.search(r"time to first token ([\d.]+) ms", stats).group(1))
    generated = int(re.search(r"generated (\d+) tokens", stats).group(1))
    decode = float(re.search(r"at ([\d.]+) tok/s", stats).group(1))
    peak_kb = int(re.search(r"peak_rss_kb (\d+)", stats).group(1))
    return dict(prompt_tokens=prompt, prefill_tok_s=prompt / (ttft_ms / 1e3),
                decode_tok_s=decode, generated=generated, peak_rss_mb=peak_kb / 1024)


def run_transformers(path, ids, threads, decode_tokens):
    import torch
    from transformers import LlamaForCausalLM
    torch.set_num_threads(threads)
    model = LlamaForCausalLM.from_pretrained(path, dtype="auto")
    model.eval()
    x = torch.tensor([ids])
    with torch.inference_mode():
        t0 = time.perf_counter()
        out = model(x, use_cache=True)
        prefill_s = time.perf_counter() - t0
        past = out.past_key_values
        token = out.logits[:, -1].argmax(-1, keepdim=True)
        t0 = time.perf_counter()
        for _ in range(decode_tokens - 1):
            out = model(token, past_key_values=past, use_cache=True)
            past = out.past_key_values
            token = out.logits[:, -1].argmax(-1, keepdim=True)
        decode_s = time.perf_counter() - t0
    del model
    return dict(prompt_tokens=len(ids), prefill_tok_s=len(ids) / prefill_s,
                decode_tok_s=(decode_tokens - 1) / decode_s)


def read_bandwidth(threads):
    """Streaming-read bandwidth (GB/s): torch summing a 2 GiB buffer, best of 5."""
    import torch
    torch.set_num_threads(threads)
    x = torch.ones(512 * 1024 * 1024, dtype=torch.float32)
    best = 0.0
    for _ in range(5):
        t0 = time.perf_counter()
        x.sum()
        best = max(best, x.numel() * 4 / (time.perf_counter() - t0) / 1e9)
    return best


def weight_bytes(path):
    return sum(f.stat().st_size for f in Path(path).glob("*.safetensors"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--decode-tokens", type=int, default=32)
    ap.add_argument("--dtypes", default="bf16,f32")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    text, ids = prompt_text(args.prompt_tokens)
    results = {}
    bandwidth = read_bandwidth(args.threads)
    print(f"streaming read bandwidth ({args.threads} threads): {bandwidth:.1f} GB/s", flush=True)
    for dtype in args.dtypes.split(","):
        path = make_model(dtype)
        gb = weight_bytes(path) / 1e9
        herd = run_herd(path, text, args.threads, args.decode_tokens)
        assert herd["prompt_tokens"] == len(ids), (herd, len(ids))
        hf = run_transformers(path, ids, args.threads, args.decode_tokens)
        results[dtype] = dict(herd=herd, transformers=hf)
        print(f"{dtype}: prefill {len(ids)} tokens: herd {herd['prefill_tok_s']:.1f} tok/s, "
              f"transformers {hf['prefill_tok_s']:.1f} tok/s, ratio {herd['prefill_tok_s'] / hf['prefill_tok_s']:.2f}x")
        print(f"{dtype}: decode: herd {herd['decode_tok_s']:.2f} tok/s, "
              f"transformers {hf['decode_tok_s']:.2f} tok/s, ratio {herd['decode_tok_s'] / hf['decode_tok_s']:.2f}x; "
              f"weights {gb:.2f} GB/token: herd {herd['decode_tok_s'] * gb:.1f} GB/s "
              f"({herd['decode_tok_s'] * gb / bandwidth:.0%} of measured bandwidth), "
              f"transformers {hf['decode_tok_s'] * gb:.1f} GB/s; bandwidth ceiling {bandwidth / gb:.2f} tok/s",
              flush=True)
    print(json.dumps(dict(threads=args.threads, bandwidth_gb_s=bandwidth, results=results), indent=1))


if __name__ == "__main__":
    sys.exit(main())
