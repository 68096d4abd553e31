#!/usr/bin/env python3
"""herd vs llama.cpp: decode and 512-token prefill on GGUF files of Llama 3.2 1B's shape.

Uses the random-weight bf16 model that bench/decode_prefill.py builds under
bench/out/ (built here if missing), converts it with `herd quantize` to each
type, and times, in one run with the same thread count:
  - herd:      `herd generate` (time to first token, decode tok/s from stderr);
  - llama.cpp: llama-cpp-python (`pip install llama-cpp-python`) on the same
               file: one eval of the prompt, then greedy single-token evals.
Also measures streaming-read bandwidth, and prints herd / llama.cpp ratios and
each engine's share of the bandwidth ceiling (file bytes per token).

Usage:
    cargo build --release -p herd
    python3 bench/gguf_decode.py [--threads 2] [--types q8_0,q4_k_m] [--decode-tokens 32]
"""
import argparse
import json
import re
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import decode_prefill as dp  # noqa: E402

HERD = dp.ROOT / "target" / "release" / "herd"


def herd_quantize(src, qtype):
    out = dp.OUT / f"llama32-1b-random-{qtype}.gguf"
    if not out.exists():
        subprocess.run([str(HERD), "quantize", "--model", str(src), "--type", qtype, "-o", str(out)], check=True)
    return out


def last_logits(llm):
    """The last evaluated position's logits (only those are kept without logits_all)."""
    import numpy as np
    return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))


def run_llama_cpp(path, ids, threads, decode_tokens):
    """llama.cpp in its own process under GNU time, so that the peak RSS is its own."""
    ids_file = dp.OUT / "prompt_ids.json"
    ids_file.write_text(json.dumps(ids))
    cmd = ["/usr/bin/time", "-f", "peak_rss_kb %M", sys.executable, __file__, "--llama-cpp-child",
           str(path), str(ids_file), str(threads), str(decode_tokens)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    result = json.loads(res.stdout.strip().splitlines()[-1])
    result["peak_rss_mb"] = int(re.search(r"peak_rss_kb (\d+)", res.stderr).group(1)) / 1024
    return result


def llama_cpp_child(path, ids, threads, decode_tokens):
    from llama_cpp import Llama
    llm = Llama(model_path=str(path), n_ctx=len(ids) + decode_tokens + 8, n_threads=threads,
                n_threads_batch=threads, n_batch=512, logits_all=False, verbose=False)
    t0 = time.perf_counter()
    llm.eval(ids)
    prefill_s = time.perf_counter() - t0
    token = int(last_logits(llm).argmax())
    t0 = time.perf_counter()
    for _ in range(decode_tokens - 1):
        llm.eval([token])
        token = int(last_logits(llm).argmax())
    decode_s = time.perf_counter() - t0
    return dict(prefill_tok_s=len(ids) / prefill_s, decode_tok_s=(decode_tokens - 1) / decode_s)


def best(runs):
    """Each metric's best value over the rounds (the least disturbed by other load)."""
    return {k: (min if k == "peak_rss_mb" else max)(r[k] for r in runs) for k in runs[0]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--types", default="q8_0,q4_k_m")
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--decode-tokens", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=1,
                    help="alternate herd and llama.cpp this many times; keep each one's best")
    args = ap.parse_args()
    dp.OUT.mkdir(parents=True, exist_ok=True)
    src = dp.make_model("bf16")
    text, ids = dp.prompt_text(args.prompt_tokens)
    bandwidth = dp.read_bandwidth(args.threads)
    print(f"streaming read bandwidth ({args.threads} threads): {bandwidth:.1f} GB/s", flush=True)
    results = {}
    for qtype in args.types.split(","):
        path = herd_quantize(src, qtype)
        gb = path.stat().st_size / 1e9
        herd_runs, cpp_runs = [], []
        for _ in range(args.rounds):
            herd_runs.append(dp.run_herd(path, text, args.threads, args.decode_tokens))
            cpp_runs.append(run_llama_cpp(path, ids, args.threads, args.decode_tokens))
        herd, cpp = best(herd_runs), best(cpp_runs)
        results[qtype] = dict(file_gb=gb, herd=herd, llama_cpp=cpp)
        print(f"{qtype}: prefill {len(ids)} tokens: herd {herd['prefill_tok_s']:.1f} tok/s, "
              f"llama.cpp {cpp['prefill_tok_s']:.1f} tok/s, ratio {herd['prefill_tok_s'] / cpp['prefill_tok_s']:.2f}x")
        print(f"{qtype}: decode: herd {herd['decode_tok_s']:.2f} tok/s ({herd['decode_tok_s'] * gb / bandwidth:.0%} of bandwidth), "
              f"llama.cpp {cpp['decode_tok_s']:.2f} tok/s ({cpp['decode_tok_s'] * gb / bandwidth:.0%}), "
              f"ratio {herd['decode_tok_s'] / cpp['decode_tok_s']:.2f}x; ceiling {bandwidth / gb:.1f} tok/s", flush=True)
        print(f"{qtype}: peak RSS: herd {herd['peak_rss_mb']:.0f} MB, llama.cpp {cpp['peak_rss_mb']:.0f} MB "
              f"(file {gb * 1e3:.0f} MB)", flush=True)
    print(json.dumps(dict(threads=args.threads, bandwidth_gb_s=bandwidth, results=results), indent=1))


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--llama-cpp-child":
        _, _, model, ids_path, n_threads, n_decode = sys.argv
        print(json.dumps(llama_cpp_child(model, json.loads(Path(ids_path).read_text()),
                                         int(n_threads), int(n_decode))))
        sys.exit(0)
    sys.exit(main())
