#!/usr/bin/env python3
"""A real peer as the remote teacher: llama.cpp's OpenAI-compatible server.

The embedded teacher is written as a GGUF file (`herd quantize --type f32`),
served by llama-cpp-python's server (`python3 -m llama_cpp.server`,
`logits_all` on so that `/v1/completions` can echo prompt log-probabilities),
and `herd teacher-cache --teacher-url` scores the training fixture through it
at k = 20. The same data is cached by herd's local teacher at k = 20, and the
two caches are compared position by position:

- top-1 agreement: the most likely token is the same;
- top-20 overlap: the share of the 20 ids both caches hold;
- |Δ log p| over the ids both hold (the cache stores log p in 0.001-nat steps);
- |Δ tail|: the mass outside the top 20.

llama-cpp-python's server takes text prompts only and names every special
token (and every lone UTF-8 byte) "" in its log-probabilities, so those
alternatives cannot be placed in the local vocabulary: their mass stays in
the tail. The agreement is therefore also reported over the positions whose
local top-1 is a plain token (and not the first position, which that server
does not score).

Not run in CI (it needs llama-cpp-python's server extras:
`pip install 'llama-cpp-python[server]'`). Prints a markdown table.

Usage: python3 bench/remote_teacher_llama_cpp.py [path/to/herd]
"""
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from safetensors import safe_open

ROOT = Path(__file__).resolve().parent.parent
HERD = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "target/release/herd")
DATA = str(ROOT / "tests/fixtures/train/chat.jsonl")
K = 20


def herd(*args):
    out = subprocess.run([HERD, "--threads", "2", *args], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"herd {' '.join(args)} failed:\n{out.stderr}")
    return out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_llama_cpp(gguf, port):
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--port", str(port),
         "--host", "127.0.0.1", "--logits_all", "true", "--n_ctx", "1024", "--n_threads", "2",
         "--model_alias", "teacher"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=1)
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    sys.exit("llama_cpp.server did not start")


def read_cache(directory):
    """Per sequence key: (ids (n, k), logprobs (n, k), tail (n))."""
    out = {}
    for shard in sorted(Path(directory).glob("shard-*.safetensors")):
        with safe_open(str(shard), "np") as f:
            meta = f.metadata()
            bits, step = int(meta["id_bits"]), float(meta["logprob_step"])
            entries, tail = f.get_tensor("entries"), f.get_tensor("tail")
            lengths, keys = f.get_tensor("lengths"), f.get_tensor("keys")
        ids = entries & ((1 << bits) - 1)
        logprobs = -(entries >> bits).astype(np.float64) * step
        start = 0
        for key, n in zip(keys, lengths):
            out[int(key)] = (ids[start:start + n], logprobs[start:start + n], tail[start:start + n])
            start += n
    return out, meta


def special_ids():
    """Ids of the tokenizer's special tokens (llama.cpp names them "" one by one)."""
    tok = json.load(open(ROOT / "models/teacher/tokenizer.json"))
    return {a["id"] for a in tok["added_tokens"] if a.get("special")}


def compare(local, remote, skip=None):
    """Agreement over all positions, or over those `skip(ids, i)` keeps."""
    top1, overlap, dlogp, dtail, positions = 0, [], [], [], 0
    for key, (lid, llp, ltail) in local.items():
        rid, rlp, rtail = remote[key]
        for i in range(len(lid)):
            if skip and skip(lid, i):
                continue
            positions += 1
            top1 += int(lid[i][0] == rid[i][0])
            common = set(lid[i]) & set(rid[i])
            overlap.append(len(common) / len(lid[i]))
            lmap = dict(zip(lid[i], llp[i]))
            rmap = dict(zip(rid[i], rlp[i]))
            # Padding entries (ids llama.cpp named ambiguously) sit at the -32 floor.
            dlogp.extend(abs(lmap[t] - rmap[t]) for t in common if rmap[t] > -31)
            dtail.append(abs(float(ltail[i]) - float(rtail[i])))
    return positions, top1 / positions, float(np.mean(overlap)), np.array(dlogp), np.array(dtail)


def main():
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        herd("quantize", "-m", str(ROOT / "models/teacher"), "--type", "f32", "-o", str(d / "teacher.gguf"))
        t0 = time.perf_counter()
        herd("teacher-cache", "--data", DATA, "-o", str(d / "local"), "-k", str(K), "--seq-len", "256")
        local_s = time.perf_counter() - t0
        port = free_port()
        proc = serve_llama_cpp(d / "teacher.gguf", port)
        try:
            t0 = time.perf_counter()
            out = herd("teacher-cache", "--data", DATA, "-o", str(d / "remote"), "-k", str(K),
                       "--seq-len", "256", "--teacher-url", f"http://127.0.0.1:{port}/v1",
                       "--teacher-concurrency", "1")
            remote_s = time.perf_counter() - t0
        finally:
            proc.kill()
        local, _ = read_cache(d / "local")
        remote, meta = read_cache(d / "remote")
    special = special_ids()
    # The first position (after BOS) and positions whose local top-1 is a
    # special token: what llama.cpp's server cannot name (see the docstring).
    unnameable = lambda ids, i: i == 0 or int(ids[i][0]) in special
    rows = [("all positions", compare(local, remote)),
            ("top-1 not a special token, not the first position", compare(local, remote, unnameable))]
    print(f"herd teacher-cache --teacher-url against llama-cpp-python {llama_cpp_version()} "
          f"(GGUF f32 of the embedded teacher), {len(local)} sequences")
    print(f"remote cache header: k = {meta['k']} (asked {meta.get('k_asked')}, "
          f"limited by: {meta.get('k_limited_by')}); source: {meta['source']}")
    print(f"summary: {out.stdout.strip()}")
    print(f"time: local {local_s:.1f} s, through llama.cpp's server {remote_s:.1f} s")
    print()
    print(f"| positions | n | top-1 agreement | top-{K} overlap | \\|Δ log p\\| shared ids: mean / p99 / max (nats) "
          "| \\|Δ tail\\|: mean / max |")
    print("|---|---|---|---|---|---|")
    for name, (n, top1, overlap, dlogp, dtail) in rows:
        print(f"| {name} | {n} | {100 * top1:.2f} % | {100 * overlap:.2f} % | {dlogp.mean():.4f} / "
              f"{np.percentile(dlogp, 99):.4f} / {dlogp.max():.4f} | {dtail.mean():.2e} / {dtail.max():.2e} |")


def llama_cpp_version():
    import llama_cpp
    return llama_cpp.__version__


if __name__ == "__main__":
    main()
