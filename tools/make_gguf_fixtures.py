#!/usr/bin/env python3
"""Generate herd's GGUF test fixtures and llama.cpp reference outputs under
``tests/fixtures/gguf/`` (format: ``tests/fixtures/gguf/README.md``).

What it does
------------
1. Builds ONE new random-weight Hugging Face Llama 3.1 checkpoint,
   ``llama31-k256`` (hidden 256, intermediate 512, 2 layers, 4 heads / 2 KV
   heads, head_dim 64, vocab 384, untied, llama3 RoPE scaling with
   ``original_max_position_embeddings`` 64), in a temporary directory.  Every
   row length is a multiple of 256 so that llama.cpp's K-quants apply to every
   2-D tensor, and ``ffn_down`` rows (512) span two 256-super-blocks.  Same
   tokenizer (``tests/fixtures/tokenizer-tiny``) and init recipe as
   ``tools/make_fixtures.py``; seeds 4000, 4001, ... are tried until the
   margin criteria below hold.  The HF checkpoint is NOT committed (5.5 MB in
   f32; it is rebuilt bit-identically by this script).
2. Converts HF -> GGUF with llama.cpp's own ``convert_hf_to_gguf.py`` (run
   in-process from the llama-cpp-python sdist's ``vendor/llama.cpp``, with its
   bundled ``gguf-py``) and quantizes with llama.cpp's quantizer through the
   Python binding (``llama_cpp.llama_model_quantize`` with
   ``llama_model_quantize_default_params()``, only ``ftype`` and ``nthread``
   set):

     llama31-tiny-F32.gguf    tests/fixtures/models/llama31-tiny, --outtype f32
     llama31-tiny-F16.gguf    tests/fixtures/models/llama31-tiny, --outtype f16
     llama31-bf16-BF16.gguf   tests/fixtures/models/llama31-bf16, --outtype bf16
     llama31-k256-{Q8_0,Q4_0,Q4_K_M,Q5_K_M,Q6_K}.gguf
                              quantized from llama31-k256-F32.gguf
   Not committed (size budget), only used as baselines:
     llama31-k256-F32.gguf    (5.5 MB; its llama.cpp reference JSON -- greedy,
                              margins, differences -- is committed, its
                              logits are not)
     llama31-bf16-F32.gguf    (baseline of the BF16 file; numbers only)

3. Runs each GGUF through llama.cpp (``llama_cpp.Llama``, logits_all=True,
   n_threads=2, n_ctx=128, seed 1234, F32 K/V cache, flash attention off) on
   the three prompts of ``tests/fixtures/reference/llama31-tiny.json`` (token
   ids, BOS first, lengths 7/33/100) and writes ``<stem>.ref.safetensors``
   (``logits.{i}``, f32 ``[len_i, 384]``, every position) and
   ``<stem>.ref.json`` (20-token greedy continuation via llama.cpp's KV cache,
   margins, per-tensor ggml types, metadata checks, measured differences),
   plus ``index.json`` (summary of every file).  It also re-runs every file
   (bit-identical logits required) and once with llama.cpp's default F16 K/V
   cache (difference recorded).

4. Cross-checks every file with transformers (f32, eager) on the weights
   dequantized from the GGUF by gguf-py (q/k un-permuted): exact f32 math
   ("vs_dequantized_f32") and the same with llama.cpp's CPU activation
   rounding emulated before every matmul ("vs_emulated": F16 -> f16, BF16 ->
   bf16, Q8_0/Q4_0 -> Q8_0 blocks, K-quants -> Q8_K blocks).  Also checks the
   GGUF metadata: rope_freqs (llama3 factors), tokenizer.ggml.*, tokens ==
   tokenizer.json, chat template == tokenizer_config.json, and that
   llama.cpp tokenizes the prompt texts to the reference ids.

Margin criteria for ``llama31-k256`` (seed search from 4000): in transformers
f32 (as make_fixtures.py: greedy margins >= 0.05, prompt-position argmax
margins >= 0.01, >= 4 distinct greedy ids) and, in llama.cpp, for the F32
file and every quantized file: each greedy step has top1 - top2 >= 0.05 and
every continuation has >= 4 distinct ids.  Seed 4034 is the first to pass.

Rerun (from the repository root; outputs in tests/fixtures/gguf are
overwritten, README.md there is hand-written and left alone):

    pip install torch transformers safetensors tokenizers sentencepiece cmake ninja scikit-build-core
    pip download --no-deps --no-build-isolation --no-binary llama-cpp-python \\
        llama-cpp-python==0.3.36 -d /tmp/gg
    tar -C /tmp/gg -xzf /tmp/gg/llama_cpp_python-0.3.36.tar.gz
    CMAKE_ARGS="-DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_BLAS=OFF -DGGML_VULKAN=OFF \\
      -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" \\
      CMAKE_BUILD_PARALLEL_LEVEL=2 pip install /tmp/gg/llama_cpp_python-0.3.36.tar.gz
    python3 tools/make_gguf_fixtures.py --llama-cpp /tmp/gg/llama_cpp_python-0.3.36/vendor/llama.cpp

Versions used for the committed files: python 3.11.7, torch 2.15.0 (+cu132
wheel, CPU only), transformers 5.24.0, tokenizers 0.23.3, safetensors 0.8.0,
numpy 2.4.6, sentencepiece 0.2.3, llama-cpp-python 0.3.36 (CPU build, GCC,
OpenMP, GGML_NATIVE default) vendoring llama.cpp commit
0c1e57098bba43ac29e6e3b677cdceebdd22334f, gguf-py 0.19.0 (from that tree).
Runtime: a few minutes on 2 cores.

Determinism: weights come from seeded torch generators; conversion and
quantization are deterministic (the GGUF bytes, sha256 recorded in the JSON,
are reproducible with the same versions); llama.cpp's CPU logits are
deterministic for a given build/CPU (checked here by a second run), but other
CPUs / SIMD paths may change them in the last bits.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import math
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import safetensors
import safetensors.numpy
import tokenizers
import torch
import transformers
from tokenizers import Tokenizer
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
TOK_DIR = FIXTURES / "tokenizer-tiny"
MODELS_DIR = FIXTURES / "models"
REF_DIR = FIXTURES / "reference"
OUT_DIR = FIXTURES / "gguf"

VOCAB_SIZE = 384
GREEDY_TOKENS = 20
MIN_MARGIN = 0.05
MIN_PROMPT_MARGIN = 0.01
MIN_DISTINCT = 4
MAX_SEED_TRIES = 200
K256_BASE_SEED = 4000

# llama.cpp run settings (recorded in every JSON).
N_CTX = 128
N_THREADS = 2
LLAMA_SEED = 1234

# ggml_type ids (ggml.h) used for the K/V cache.
GGML_TYPE_F32 = 0

# llama_ftype ids (llama.h).
FTYPES = {
    "Q4_0": 2,
    "Q8_0": 7,
    "Q4_K_M": 15,
    "Q5_K_M": 17,
    "Q6_K": 18,
}
K256_QUANTS = ["Q8_0", "Q4_0", "Q4_K_M", "Q5_K_M", "Q6_K"]


def llama3_rope(factor: float, theta: float = 500000.0) -> dict:
    return {
        "rope_type": "llama3",
        "rope_theta": theta,
        "factor": factor,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64,
    }


K256_CONFIG = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=2, head_dim=64,
                   max_position_embeddings=512, tie_word_embeddings=False,
                   rope_parameters=llama3_rope(8.0))


# --------------------------------------------------------------------------
# llama.cpp tree (converter + gguf-py) and the compiled binding
# --------------------------------------------------------------------------

def setup_llama_cpp(llama_dir: Path):
    """Import gguf-py and the converter from the sdist's llama.cpp tree."""
    sys.path.insert(0, str(llama_dir))
    sys.path.insert(1, str(llama_dir / "gguf-py"))
    import gguf  # noqa: F401  (the tree's own gguf-py)
    assert Path(gguf.__file__).resolve().is_relative_to(llama_dir.resolve()), gguf.__file__
    import conversion.base as conv_base

    orig = conv_base.TextModel.get_vocab_base_pre

    def get_vocab_base_pre(self, tokenizer) -> str:
        # The tiny tokenizer uses Llama 3's pre-tokenizer (same regex and
        # ByteLevel settings) but a different vocabulary, so its check-hash is
        # unknown to llama.cpp; declare it as Llama 3's ("llama-bpe").
        try:
            return orig(self, tokenizer)
        except NotImplementedError:
            print("  (unknown BPE hash for the tiny tokenizer -> tokenizer.ggml.pre = 'llama-bpe')")
            return "llama-bpe"

    conv_base.TextModel.get_vocab_base_pre = get_vocab_base_pre
    import convert_hf_to_gguf
    return gguf, convert_hf_to_gguf


def llama_cpp_commit(llama_dir: Path) -> str:
    """Commit of the vendored llama.cpp (the sdist keeps its submodule git dir)."""
    git = llama_dir / ".git"
    try:
        gitdir = git
        if git.is_file():
            gitdir = (llama_dir / git.read_text().split(":", 1)[1].strip()).resolve()
        head = (gitdir / "HEAD").read_text().strip()
        if head.startswith("ref:"):
            head = (gitdir / head.split()[1]).read_text().strip()
        return head
    except OSError:
        return "unknown"


def convert(conv_mod, hf_dir: Path, outtype: str, out: Path, name: str) -> None:
    argv = sys.argv
    sys.argv = ["convert_hf_to_gguf.py", str(hf_dir), "--outtype", outtype,
                "--outfile", str(out), "--model-name", name]
    try:
        conv_mod.main()
    finally:
        sys.argv = argv
    assert out.is_file(), out


def quantize(llama_cpp, src: Path, dst: Path, ftype: str) -> None:
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[ftype]
    params.nthread = N_THREADS
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
    assert rc == 0, (src, dst, ftype, rc)


# --------------------------------------------------------------------------
# HF model (same recipe as tools/make_fixtures.py)
# --------------------------------------------------------------------------

def make_config(cfg_kwargs: dict, tok: Tokenizer) -> LlamaConfig:
    bos = tok.token_to_id("<|begin_of_text|>")
    eos = [tok.token_to_id(t) for t in ("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>")]
    cfg = LlamaConfig(vocab_size=VOCAB_SIZE, rms_norm_eps=1e-5, hidden_act="silu",
                      attention_bias=False, mlp_bias=False, bos_token_id=bos,
                      eos_token_id=eos, pad_token_id=None, initializer_range=0.02,
                      **cfg_kwargs)
    cfg._attn_implementation = "eager"
    return cfg


def init_weights(model: LlamaForCausalLM, seed: int) -> None:
    """tools/make_fixtures.py's untied init: linear N(0, 1/fan_in), lm_head and
    embeddings N(0, 1), RMSNorm weights 1 + 0.1 N(0, 1); sorted-name order."""
    gen = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name in sorted(params):
            p = params[name]
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if name.endswith("norm.weight"):
                val = 1.0 + 0.1 * noise
            elif name in ("model.embed_tokens.weight", "lm_head.weight"):
                val = noise
            else:
                val = noise / p.shape[1] ** 0.5
            p.copy_(val)


@torch.no_grad()
def hf_logits(model: LlamaForCausalLM, ids: list[int]) -> torch.Tensor:
    return model(input_ids=torch.tensor([ids]), use_cache=False).logits[0].float()


@torch.no_grad()
def hf_greedy(model: LlamaForCausalLM, ids: list[int], n: int) -> tuple[list[int], list[float]]:
    seq, new, margins = list(ids), [], []
    for _ in range(n):
        last = hf_logits(model, seq)[-1]
        top2 = torch.topk(last, 2).values
        nxt = int(torch.argmax(last))
        new.append(nxt)
        margins.append(float(top2[0] - top2[1]))
        seq.append(nxt)
    return new, margins


def min_argmax_margin(logits: np.ndarray) -> float:
    s = np.sort(logits, axis=-1)
    return float((s[:, -1] - s[:, -2]).min())


def save_hf(model: LlamaForCausalLM, cfg: LlamaConfig, out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    model.generation_config = GenerationConfig(bos_token_id=cfg.bos_token_id, eos_token_id=cfg.eos_token_id,
                                               do_sample=True, temperature=0.6, top_p=0.9)
    model.save_pretrained(out)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(TOK_DIR / f, out / f)


def load_hf(d: Path) -> LlamaForCausalLM:
    return LlamaForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()


# --------------------------------------------------------------------------
# GGUF inspection
# --------------------------------------------------------------------------

HF_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output.weight": "lm_head.weight",
    "output_norm.weight": "model.norm.weight",
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}


def hf_name(gguf_name: str) -> str | None:
    if gguf_name == "rope_freqs.weight":
        return None
    if gguf_name.startswith("blk."):
        _, n, rest = gguf_name.split(".", 2)
        return f"model.layers.{n}.{HF_NAMES[rest]}"
    return HF_NAMES[gguf_name]


def unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of convert_hf_to_gguf's LlamaModel.permute (rotate_half -> interleaved)."""
    d = w.shape[0]
    return w.reshape(n_head, d // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def field_value(gguf, field):
    types = field.types
    if types and types[0] == gguf.GGUFValueType.ARRAY:
        return {"array_of": types[-1].name, "len": len(field.data)}
    v = field.contents()
    if isinstance(v, float):
        v = float(np.float32(v))  # exact f32 value, printed shortest
    return v


def inspect_gguf(gguf, path: Path, hf_cfg: dict, tok_cfg: dict, tok: Tokenizer) -> tuple[dict, dict]:
    """Returns (info for the JSON, dequantized tensors as HF-named f32 arrays)."""
    r = gguf.GGUFReader(str(path))
    meta = {k: field_value(gguf, f) for k, f in r.fields.items() if not k.startswith("GGUF.")}
    tensors, counts, deq = [], {}, {}
    n_head, n_kv = hf_cfg["num_attention_heads"], hf_cfg["num_key_value_heads"]
    for t in r.tensors:
        ty = t.tensor_type.name
        shape = [int(x) for x in t.shape]  # GGUF order: ne0 (contiguous / input dim) first
        tensors.append({"name": t.name, "type": ty, "shape": shape, "bytes": int(t.n_bytes)})
        counts[ty] = counts.get(ty, 0) + 1
        w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(shape[::-1])
        if t.name == "rope_freqs.weight":
            rope_freqs = w.copy()
            continue
        if t.name.endswith("attn_q.weight"):
            w = unpermute(w, n_head)
        elif t.name.endswith("attn_k.weight"):
            w = unpermute(w, n_kv)
        deq[hf_name(t.name)] = w

    # --- checks -----------------------------------------------------------
    tokens = r.fields["tokenizer.ggml.tokens"].contents()
    vocab = tok.get_vocab()
    by_id = sorted(vocab, key=vocab.get)
    token_type = r.fields["tokenizer.ggml.token_type"].contents()
    rope = hf_cfg.get("rope_parameters") or {**hf_cfg["rope_scaling"], "rope_theta": hf_cfg["rope_theta"]}
    head_dim = hf_cfg.get("head_dim") or hf_cfg["hidden_size"] // n_head
    want_rope = llama3_factors(rope, head_dim)
    checks = {
        "rope_freqs_present": "rope_freqs.weight" in [t.name for t in r.tensors],
        "rope_freqs_type": next(t.tensor_type.name for t in r.tensors if t.name == "rope_freqs.weight"),
        "rope_freqs": [float(x) for x in rope_freqs],
        "rope_freqs_expected": want_rope,
        "rope_freqs_match_expected": bool(np.allclose(rope_freqs, want_rope, rtol=1e-6, atol=0)),
        "tokenizer_keys": sorted(k for k in meta if k.startswith("tokenizer.ggml.")),
        "tokenizer_ggml_model": meta.get("tokenizer.ggml.model"),
        "tokenizer_ggml_pre": meta.get("tokenizer.ggml.pre"),
        "tokens_match_tokenizer_json": tokens == by_id,
        "token_type_counts": {str(k): token_type.count(k) for k in sorted(set(token_type))},
        "merges_count": len(r.fields["tokenizer.ggml.merges"].data),
        "chat_template_present": "tokenizer.chat_template" in meta,
        "chat_template_matches_tokenizer_config": meta.get("tokenizer.chat_template") == tok_cfg["chat_template"],
    }
    assert checks["rope_freqs_present"] and checks["rope_freqs_type"] == "F32", checks
    assert checks["rope_freqs_match_expected"], (rope_freqs, want_rope)
    assert checks["tokens_match_tokenizer_json"] and checks["chat_template_matches_tokenizer_config"], checks
    assert meta["tokenizer.ggml.model"] == "gpt2" and meta["tokenizer.ggml.pre"] == "llama-bpe", meta
    info = {"metadata": meta, "checks": checks, "tensors": tensors,
            "tensor_type_counts": dict(sorted(counts.items()))}
    return info, deq


def llama3_factors(rope: dict, head_dim: int) -> list[float]:
    """Per-frequency divisors implied by the HF llama3 rope config (float64 math)."""
    out = []
    for i in range(0, head_dim, 2):
        freq = 1.0 / rope["rope_theta"] ** (i / head_dim)
        wavelen = 2 * math.pi / freq
        lo = rope["original_max_position_embeddings"] / rope["low_freq_factor"]
        hi = rope["original_max_position_embeddings"] / rope["high_freq_factor"]
        if wavelen < hi:
            out.append(1.0)
        elif wavelen > lo:
            out.append(float(rope["factor"]))
        else:
            smooth = (rope["original_max_position_embeddings"] / wavelen - rope["low_freq_factor"]) / (
                rope["high_freq_factor"] - rope["low_freq_factor"])
            out.append(1.0 / ((1 - smooth) / rope["factor"] + smooth))
    return out


# --------------------------------------------------------------------------
# llama.cpp runs
# --------------------------------------------------------------------------

def run_llama(llama_cpp, path: Path, prompts: list[list[int]], texts: list[str] | None,
              f32_kv: bool = True, greedy: bool = True) -> dict:
    kw = dict(type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32) if f32_kv else {}
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=N_CTX, n_batch=N_CTX, n_ubatch=N_CTX,
                          n_threads=N_THREADS, n_threads_batch=N_THREADS, seed=LLAMA_SEED,
                          logits_all=True, flash_attn=False, n_gpu_layers=0, verbose=False, **kw)
    assert llm.n_vocab() == VOCAB_SIZE
    out = {"logits": [], "greedy": [], "greedy_margins": []}
    if texts is not None:
        out["tokenization_matches"] = [
            llm.tokenize(t.encode(), add_bos=True, special=True) == p for t, p in zip(texts, prompts)]
        out["detokenization_matches"] = [
            llm.detokenize(p[1:], special=True).decode() == t for t, p in zip(texts, prompts)]
    for p in prompts:
        llm.reset()
        llm.eval(p)
        out["logits"].append(np.array(llm.scores[: len(p)], dtype=np.float32))
        if not greedy:
            continue
        new, margins = [], []
        for step in range(GREEDY_TOKENS):
            last = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
            nxt = int(np.argmax(last))  # ties -> lowest id
            top2 = np.sort(last)[-2:]
            new.append(nxt)
            margins.append(float(top2[1] - top2[0]))
            if step + 1 < GREEDY_TOKENS:
                llm.eval([nxt])
        out["greedy"].append(new)
        out["greedy_margins"].append(margins)
    if hasattr(llm, "close"):
        llm.close()
    del llm
    return out


def max_abs(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())


def median_pos(a: np.ndarray, b: np.ndarray) -> float:
    """Median over positions of the per-position max |a - b|."""
    return float(np.median(np.abs(a.astype(np.float64) - b.astype(np.float64)).max(-1)))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def dump_json(obj, indent: int = 0) -> str:
    """Indented JSON with every list of scalars kept on one line (as make_fixtures.py)."""
    pad, inner = "  " * indent, "  " * (indent + 1)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        if all(not isinstance(v, (dict, list)) for v in obj.values()) and len(obj) <= 4:
            return json.dumps(obj, ensure_ascii=False)
        items = [f"{inner}{json.dumps(k)}: {dump_json(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list) and any(isinstance(x, (dict, list)) for x in obj):
        return "[\n" + ",\n".join(inner + dump_json(x, indent + 1) for x in obj) + "\n" + pad + "]"
    return json.dumps(obj, ensure_ascii=False)


@contextlib.contextmanager
def quiet():
    """Silence the converter's progress output (Python-level only)."""
    buf_o, buf_e = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(buf_o), contextlib.redirect_stderr(buf_e):
        yield


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

class Ctx:
    pass


# Activation rounding llama.cpp's CPU backend applies to the input of a
# matmul whose weight has the given ggml type (its "vec_dot_type"): F16 -> f16,
# BF16 -> bf16, Q8_0/Q4_0 -> Q8_0 (blocks of 32, int8, f16 scale amax/127),
# K-quants -> Q8_K (blocks of 256, int8, f32 scale max/-127).
def _round_f16(x: torch.Tensor) -> torch.Tensor:
    return x.half().float()


def _round_bf16(x: torch.Tensor) -> torch.Tensor:
    return x.bfloat16().float()


def _fake_q8_0(x: torch.Tensor) -> torch.Tensor:
    xb = x.reshape(*x.shape[:-1], -1, 32)
    d = xb.abs().amax(-1, keepdim=True) / 127.0
    inv = torch.where(d > 0, 1.0 / d, torch.zeros_like(d))
    q = torch.round(xb * inv)
    return (q * d.half().float()).reshape(x.shape)


def _fake_q8_k(x: torch.Tensor) -> torch.Tensor:
    xb = x.reshape(*x.shape[:-1], -1, 256)
    idx = xb.abs().argmax(-1, keepdim=True)
    mx = torch.gather(xb, -1, idx)
    iscale = torch.where(mx != 0, -127.0 / mx, torch.zeros_like(mx))
    q = torch.clamp(torch.round(iscale * xb), max=127.0)
    d = torch.where(mx != 0, 1.0 / iscale, torch.zeros_like(mx))
    return (q * d).reshape(x.shape)


ACT_ROUNDING = {"F32": None, "F16": _round_f16, "BF16": _round_bf16, "Q8_0": _fake_q8_0, "Q4_0": _fake_q8_0,
                "Q4_K": _fake_q8_k, "Q5_K": _fake_q8_k, "Q6_K": _fake_q8_k}
ACT_ROUNDING_NAME = {"F32": "none (f32)", "F16": "f16", "BF16": "bf16", "Q8_0": "Q8_0", "Q4_0": "Q8_0",
                     "Q4_K": "Q8_K", "Q5_K": "Q8_K", "Q6_K": "Q8_K"}


def evaluate_file(c: Ctx, spec: dict) -> dict:
    """Inspect + run one GGUF, plus two transformers (f32, eager) runs on the
    weights dequantized from the file: exact f32 math ("deq") and the same
    with llama.cpp's activation rounding emulated before every matmul
    ("emu")."""
    path = spec["path"]
    info, deq = inspect_gguf(c.gguf, path, spec["hf_cfg"], c.tok_cfg, c.tok)
    run = run_llama(c.llama_cpp, path, c.prompts, c.texts)
    assert all(run["tokenization_matches"]), (path, run["tokenization_matches"])

    model = c.hf_models[spec["model"]]
    dq = LlamaForCausalLM(model.config).eval()
    sd = {k: torch.from_numpy(v) for k, v in deq.items()}
    missing, unexpected = dq.load_state_dict(sd, strict=False)
    assert not unexpected and all("rotary" in m for m in missing), (missing, unexpected)
    if spec["exact_weights"]:
        for k, v in model.state_dict().items():
            if k in sd:
                assert torch.equal(sd[k], v.float()), (path, k)
    out = {"info": info, "run": run}
    out["deq_logits"] = [hf_logits(dq, p).numpy() for p in c.prompts]
    out["deq_greedy"] = [hf_greedy(dq, p, GREEDY_TOKENS)[0] for p in c.prompts]

    types = {hf_name(t["name"]): t["type"] for t in info["tensors"]}
    hooks = []
    for name, mod in dq.named_modules():
        if isinstance(mod, torch.nn.Linear):
            fn = ACT_ROUNDING[types[name + ".weight"]]
            if fn is not None:
                hooks.append(mod.register_forward_pre_hook(lambda m, a, fn=fn: (fn(a[0]),)))
    out["emu_logits"] = [hf_logits(dq, p).numpy() for p in c.prompts]
    out["emu_greedy"] = [hf_greedy(dq, p, GREEDY_TOKENS)[0] for p in c.prompts]
    for h in hooks:
        h.remove()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--llama-cpp", default=os.environ.get("LLAMA_CPP_DIR"), required=not os.environ.get("LLAMA_CPP_DIR"),
                    help="the llama-cpp-python sdist's vendor/llama.cpp directory")
    args = ap.parse_args()
    llama_dir = Path(args.llama_cpp).resolve()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.utils.logging.disable_progress_bar()
    c = Ctx()
    c.gguf, c.conv = setup_llama_cpp(llama_dir)
    import llama_cpp
    c.llama_cpp = llama_cpp
    llama_cpp.llama_backend_init()

    pkg_info = (llama_dir.parent.parent / "PKG-INFO")
    if pkg_info.is_file():
        sdist_version = next(l.split(":", 1)[1].strip() for l in pkg_info.read_text().splitlines()
                             if l.startswith("Version:"))
        assert sdist_version == llama_cpp.__version__, (sdist_version, llama_cpp.__version__)
    gguf_py_version = next(l.split("=", 1)[1].strip().strip('"')
                           for l in (llama_dir / "gguf-py" / "pyproject.toml").read_text().splitlines()
                           if l.startswith("version"))
    import sentencepiece
    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "safetensors": safetensors.__version__,
        "numpy": np.__version__,
        "sentencepiece": sentencepiece.__version__,
        "llama_cpp_python": llama_cpp.__version__,
        "llama_cpp_commit": llama_cpp_commit(llama_dir),
        "gguf_py": gguf_py_version,
    }
    print("versions:", versions)
    system_info = llama_cpp.llama_print_system_info().decode().strip()
    print("llama.cpp system info:", system_info)

    c.tok = Tokenizer.from_file(str(TOK_DIR / "tokenizer.json"))
    c.tok_cfg = json.loads((TOK_DIR / "tokenizer_config.json").read_text())
    ref_tiny = json.loads((REF_DIR / "llama31-tiny.json").read_text())
    c.prompts, c.texts = ref_tiny["prompts"], ref_tiny["prompt_texts"]
    for t, p in zip(c.texts, c.prompts):
        assert c.tok.encode(t).ids == p
    print("prompt lengths:", [len(p) for p in c.prompts])

    work = Path(tempfile.mkdtemp(prefix="herd-gguf-"))
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for f in OUT_DIR.iterdir():
        if f.name != "README.md":
            f.unlink()

    # --- existing fixture models --------------------------------------------
    c.hf_models = {name: load_hf(MODELS_DIR / name) for name in ("llama31-tiny", "llama31-bf16")}
    hf_cfgs = {name: json.loads((MODELS_DIR / name / "config.json").read_text())
               for name in ("llama31-tiny", "llama31-bf16")}
    tf_ref = {name: safetensors.numpy.load_file(str(REF_DIR / f"{name}.safetensors"))
              for name in ("llama31-tiny", "llama31-bf16")}

    def spec(model, kind, path, committed, source, baseline=None, exact=False):
        return {"model": model, "kind": kind, "path": path, "committed": committed, "source": source,
                "baseline": baseline, "exact_weights": exact, "hf_cfg": None}

    specs = []
    with quiet():
        convert(c.conv, MODELS_DIR / "llama31-tiny", "f32", OUT_DIR / "llama31-tiny-F32.gguf", "llama31-tiny")
        convert(c.conv, MODELS_DIR / "llama31-tiny", "f16", OUT_DIR / "llama31-tiny-F16.gguf", "llama31-tiny")
        convert(c.conv, MODELS_DIR / "llama31-bf16", "bf16", OUT_DIR / "llama31-bf16-BF16.gguf", "llama31-bf16")
        convert(c.conv, MODELS_DIR / "llama31-bf16", "f32", work / "llama31-bf16-F32.gguf", "llama31-bf16")
    specs += [
        spec("llama31-tiny", "F32", OUT_DIR / "llama31-tiny-F32.gguf", True,
             {"hf_dir": "models/llama31-tiny", "convert_outtype": "f32"}, exact=True),
        spec("llama31-tiny", "F16", OUT_DIR / "llama31-tiny-F16.gguf", True,
             {"hf_dir": "models/llama31-tiny", "convert_outtype": "f16"}, baseline="llama31-tiny-F32"),
        spec("llama31-bf16", "F32", work / "llama31-bf16-F32.gguf", False,
             {"hf_dir": "models/llama31-bf16", "convert_outtype": "f32"}, exact=True),
        spec("llama31-bf16", "BF16", OUT_DIR / "llama31-bf16-BF16.gguf", True,
             {"hf_dir": "models/llama31-bf16", "convert_outtype": "bf16"}, baseline="llama31-bf16-F32", exact=True),
    ]
    for s in specs:
        s["hf_cfg"] = hf_cfgs[s["model"]]

    # --- llama31-k256: seed search ------------------------------------------
    cfg = make_config(K256_CONFIG, c.tok)
    hf_dir = work / "llama31-k256"
    for seed in range(K256_BASE_SEED, K256_BASE_SEED + MAX_SEED_TRIES):
        model = LlamaForCausalLM(cfg).eval()
        init_weights(model, seed)
        ok = True
        for p in c.prompts:
            g, m = hf_greedy(model, p, GREEDY_TOKENS)
            if (min(m) < MIN_MARGIN or len(set(g)) < MIN_DISTINCT
                    or min_argmax_margin(hf_logits(model, p).numpy()) < MIN_PROMPT_MARGIN):
                ok = False
                break
        if not ok:
            continue
        save_hf(model, cfg, hf_dir)
        k_f32 = work / "llama31-k256-F32.gguf"
        with quiet():
            convert(c.conv, hf_dir, "f32", k_f32, "llama31-k256")
        k_specs = [spec("llama31-k256", "F32", k_f32, False,
                        {"hf_dir": None, "convert_outtype": "f32"}, exact=True)]
        for q in K256_QUANTS:
            dst = work / f"llama31-k256-{q}.gguf"
            quantize(llama_cpp, k_f32, dst, q)
            k_specs.append(spec("llama31-k256", q, dst, True,
                                {"hf_dir": None, "convert_outtype": "f32", "quantized_from": "llama31-k256-F32.gguf",
                                 "llama_ftype": FTYPES[q]}, baseline="llama31-k256-F32"))
        c.hf_models["llama31-k256"] = load_hf(hf_dir)
        hf_cfg = json.loads((hf_dir / "config.json").read_text())
        for s in k_specs:
            s["hf_cfg"] = hf_cfg
        results = {}
        for s in k_specs:
            results[s["kind"]] = evaluate_file(c, s)
        bad = []
        for kind, r in results.items():
            gm = [x for m in r["run"]["greedy_margins"] for x in m]
            if min(gm) < MIN_MARGIN or any(len(set(g)) < MIN_DISTINCT for g in r["run"]["greedy"]):
                bad.append(f"{kind}: min greedy margin {min(gm):.4f}")
        if bad:
            print(f"  llama31-k256 seed {seed} rejected:", "; ".join(bad))
            continue
        print(f"  llama31-k256: seed {seed} accepted")
        break
    else:
        raise SystemExit("no llama31-k256 seed met the criteria")
    k256_seed = seed
    for s in k_specs:
        if s["committed"]:
            dst = OUT_DIR / s["path"].name
            shutil.copy(s["path"], dst)
            s["path"] = dst
    specs += k_specs

    # --- evaluate everything --------------------------------------------------
    evals = {}
    for s in specs:
        stem = s["path"].stem
        r = results[s["kind"]] if s["model"] == "llama31-k256" else evaluate_file(c, s)
        # Determinism (second run) and llama.cpp's default F16 K/V cache.
        again = run_llama(llama_cpp, s["path"], c.prompts, None, greedy=False)
        assert all(np.array_equal(a, b) for a, b in zip(again["logits"], r["run"]["logits"])), stem
        kv16 = run_llama(llama_cpp, s["path"], c.prompts, None, f32_kv=False)
        r["kv16"] = kv16
        evals[stem] = (s, r)
        print(f"  evaluated {stem}")

    # Transformers f32 logits of each source model (llama31-k256: computed
    # here, not stored; the others: the committed reference files).
    tf_logits = {
        "llama31-tiny": [tf_ref["llama31-tiny"][f"logits.{i}"] for i in range(len(c.prompts))],
        "llama31-bf16": [tf_ref["llama31-bf16"][f"logits.{i}"] for i in range(len(c.prompts))],
        "llama31-k256": [hf_logits(c.hf_models["llama31-k256"], p).numpy() for p in c.prompts],
    }
    tf_greedy = {
        "llama31-tiny": json.loads((REF_DIR / "llama31-tiny.json").read_text())["greedy"],
        "llama31-bf16": json.loads((REF_DIR / "llama31-bf16.json").read_text())["greedy"],
        "llama31-k256": [hf_greedy(c.hf_models["llama31-k256"], p, GREEDY_TOKENS)[0] for p in c.prompts],
    }
    for name in ("llama31-tiny", "llama31-bf16"):  # the committed references are what we recompute
        for i, p in enumerate(c.prompts):
            assert max_abs(tf_logits[name][i], hf_logits(c.hf_models[name], p).numpy()) == 0.0, name

    index = {"versions": versions, "llama_cpp_system_info": system_info, "files": []}
    for stem, (s, r) in evals.items():
        run, info = r["run"], r["info"]
        n = len(c.prompts)
        logits = run["logits"]
        rec = {
            "file": s["path"].name,
            "gguf_committed": s["committed"],
            "gguf_bytes": s["path"].stat().st_size,
            "gguf_sha256": sha256(s["path"]),
            "model": s["model"],
            "type": s["kind"],
            "source": s["source"],
            "seed": k256_seed if s["model"] == "llama31-k256" else None,
            "versions": versions,
            "llama_cpp_system_info": system_info,
            "run_params": {"api": "llama_cpp.Llama", "n_ctx": N_CTX, "n_batch": N_CTX, "n_ubatch": N_CTX,
                           "n_threads": N_THREADS, "seed": LLAMA_SEED, "logits_all": True,
                           "type_k": "f32", "type_v": "f32", "flash_attn": False, "n_gpu_layers": 0,
                           "cpu_repack_extra_buffers": "default (enabled)",
                           "greedy": "argmax of the last logits row (ties -> lowest id), one token per llama_decode "
                                     "with the KV cache, no EOS stop"},
            "vocab_size": VOCAB_SIZE,
            "prompts": c.prompts,
            "prompt_lengths": [len(p) for p in c.prompts],
            "tokenization_matches": run["tokenization_matches"],
            "detokenization_matches": run["detokenization_matches"],
            "logits_tensors": [f"logits.{i}" for i in range(n)],
            "greedy_new_tokens": GREEDY_TOKENS,
            "greedy": run["greedy"],
            "greedy_margins": [[round(x, 6) for x in m] for m in run["greedy_margins"]],
            "min_greedy_margin": min(min(m) for m in run["greedy_margins"]),
            "min_prompt_argmax_margin": [min_argmax_margin(l) for l in logits],
            "max_abs_logit": [float(np.abs(l).max()) for l in logits],
            "diff": {},
            **info,
        }
        d = rec["diff"]
        if s["baseline"]:
            base = evals[s["baseline"]][1]["run"]
            d["vs_f32_gguf"] = {
                "file": s["baseline"] + ".gguf",
                "max_abs_diff": [max_abs(a, b) for a, b in zip(logits, base["logits"])],
                "median_position_max_abs_diff": [median_pos(a, b) for a, b in zip(logits, base["logits"])],
                "greedy_equal": [a == b for a, b in zip(run["greedy"], base["greedy"])],
            }
        d["vs_transformers_f32"] = {
            "reference": (f"reference/{s['model']}.safetensors logits.N" if s["model"] != "llama31-k256"
                          else "transformers f32 eager on the original f32 HF weights (computed by the script, not stored)"),
            "max_abs_diff": [max_abs(a, b) for a, b in zip(logits, tf_logits[s["model"]])],
            "median_position_max_abs_diff": [median_pos(a, b) for a, b in zip(logits, tf_logits[s["model"]])],
            "greedy_equal": [a == b for a, b in zip(run["greedy"], tf_greedy[s["model"]])],
        }
        if s["model"] == "llama31-bf16":
            tb = [tf_ref["llama31-bf16"][f"logits_bf16.{i}"] for i in range(n)]
            d["vs_transformers_bf16_compute"] = {
                "reference": "reference/llama31-bf16.safetensors logits_bf16.N",
                "max_abs_diff": [max_abs(a, b) for a, b in zip(logits, tb)],
            }
        act = sorted({ACT_ROUNDING_NAME[t["type"]] for t in info["tensors"]
                      if t["name"] not in ("token_embd.weight", "rope_freqs.weight") and len(t["shape"]) == 2})
        d["vs_emulated"] = {
            "reference": ("transformers f32 eager on this file's weights dequantized with gguf-py, with llama.cpp's "
                          "activation rounding before every matmul emulated (not stored)"),
            "activation_rounding": act,
            "max_abs_diff": [max_abs(a, b) for a, b in zip(logits, r["emu_logits"])],
            "median_position_max_abs_diff": [median_pos(a, b) for a, b in zip(logits, r["emu_logits"])],
            "greedy_equal": [a == b for a, b in zip(run["greedy"], r["emu_greedy"])],
        }
        d["vs_dequantized_f32"] = {
            "reference": "transformers f32 eager on this file's weights dequantized with gguf-py, no activation rounding (not stored)",
            "max_abs_diff": [max_abs(a, b) for a, b in zip(logits, r["deq_logits"])],
            "median_position_max_abs_diff": [median_pos(a, b) for a, b in zip(logits, r["deq_logits"])],
            "greedy_equal": [a == b for a, b in zip(run["greedy"], r["deq_greedy"])],
        }
        d["kv_cache_f16"] = {
            "what": "same file, llama.cpp's default F16 K/V cache instead of F32",
            "max_abs_diff": [max_abs(a, b) for a, b in zip(r["kv16"]["logits"], logits)],
            "greedy_equal": [a == b for a, b in zip(r["kv16"]["greedy"], run["greedy"])],
        }
        # Size budget: logits only for committed GGUFs; llama31-k256-F32 (not
        # committed) gets its JSON (greedy, margins, differences) only.
        write_logits = s["committed"]
        write_json = s["committed"] or s["model"] == "llama31-k256"
        if not write_logits:
            rec["logits_tensors"] = []
        if write_logits:
            tensors = {f"logits.{i}": np.ascontiguousarray(l, dtype=np.float32) for i, l in enumerate(logits)}
            safetensors.numpy.save_file(tensors, str(OUT_DIR / f"{stem}.ref.safetensors"), metadata={"format": "pt"})
        if write_json:
            (OUT_DIR / f"{stem}.ref.json").write_text(dump_json(rec) + "\n")
        index["files"].append({
            "stem": stem, "gguf_committed": s["committed"], "ref_json_committed": write_json,
            "ref_logits_committed": write_logits,
            "model": s["model"], "type": s["kind"],
            "gguf_bytes": rec["gguf_bytes"], "tensor_type_counts": rec["tensor_type_counts"],
            "min_greedy_margin": rec["min_greedy_margin"],
            **{f"{k}_max_abs_diff": max(v["max_abs_diff"]) for k, v in d.items()},
        })
        print(stem, json.dumps(index["files"][-1]))

    (OUT_DIR / "index.json").write_text(dump_json(index) + "\n")
    shutil.rmtree(work)
    total = sum(p.stat().st_size for p in OUT_DIR.iterdir() if p.is_file())
    print(f"total bytes in {OUT_DIR.relative_to(ROOT)}: {total}")


if __name__ == "__main__":
    main()
