#!/usr/bin/env python3
"""Reference values for herd's trainer, under ``tests/fixtures/train/``.

What it writes:

* ``chat.jsonl`` -- a small chat dataset in OpenAI's ``messages`` shape
  (system/user/assistant, tool calls with a ``tools`` list, tool results,
  plain ``{"text": ...}`` records), deterministic, used by the Rust tests.
* ``tools.jsonl`` -- the tool-calling dialogs again, with a ``tools`` list.
* ``grads.safetensors`` -- for ``llama31-tiny`` (untied) and ``llama32-tied``:
  one 40-token sequence, its labels (the first 12 positions masked with
  -100, as a prompt would be), ``transformers``' mean loss and the gradients
  of a few parameters. The Rust test ``reference_grads`` requires herd's
  loss and gradients to agree within 1e-4.
* ``peft_adapter/`` -- a LoRA adapter made by HF PEFT on ``llama31-tiny``
  (r=4, alpha=8, q/v/down, ``init_lora_weights=False`` so B is nonzero), and
  ``peft_logits.safetensors`` -- PEFT's logits for every position of a
  prompt. herd must reproduce them when it loads the adapter (``--lora``).
* ``herd_adapter/`` -- an adapter *trained by herd* (``herd finetune``, run by
  this script when ``--herd BIN`` is given), and ``herd_adapter_peft.json`` +
  ``herd_adapter_logits.safetensors``: PEFT loads it (no missing or
  unexpected keys), and its logits are recorded; the Rust test
  ``herd_adapter_matches_peft`` requires herd's logits on the same adapter to
  agree within 1e-4.

Rerun from the repository root (torch, transformers and peft needed; CI
only reads the committed outputs):

    cargo build --release -p herd
    python3 tools/make_train_fixtures.py --herd target/release/herd

Versions used for the committed files: torch 2.15.0 (CPU), transformers
5.24.0, peft 0.21.2. One CPU thread, float32, eager attention.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "tests/fixtures/models"
OUT = ROOT / "tests/fixtures/train"

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "description": "Find an order by its number",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "integer"}},
                "required": ["order_id"],
            },
        },
    }
]


def chat_dataset() -> list[dict]:
    """About forty short shop dialogs in English and German."""
    rng = random.Random(5)
    items = ["mug", "teapot", "scarf", "lamp", "notebook"]
    records = []
    for i in range(36):
        item = items[i % len(items)]
        price = 5 + (i * 7) % 40
        kind = i % 4
        system = {"role": "system", "content": "You help customers of a small shop."}
        if kind == 0:
            records.append({"messages": [
                system,
                {"role": "user", "content": f"How much is the {item}?"},
                {"role": "assistant", "content": f"The {item} costs {price} euros."},
            ]})
        elif kind == 1:
            records.append({"messages": [
                {"role": "user", "content": f"Was kostet die {item}?"},
                {"role": "assistant", "content": f"Die {item} kostet {price} Euro."},
            ]})
        elif kind == 2:
            order = 1000 + rng.randrange(9000)
            records.append({"messages": [
                system,
                {"role": "user", "content": f"Where is order {order}?"},
                {"role": "assistant", "content": None, "tool_calls": [{
                    "id": f"call_{i}", "type": "function",
                    "function": {"name": "lookup_order",
                                 "arguments": json.dumps({"order_id": order})},
                }]},
                {"role": "tool", "tool_call_id": f"call_{i}",
                 "content": json.dumps({"status": "shipped", "days": i % 5 + 1})},
                {"role": "assistant", "content": f"Order {order} has shipped."},
            ]})
        else:
            records.append({"text": f"The shop sells a {item} for {price} euros."})
    return records


def grads_reference(tensors: dict) -> None:
    for name, params in [
        ("llama31-tiny", [
            "model.layers.0.self_attn.q_proj.weight",
            "model.layers.1.self_attn.k_proj.weight",
            "model.layers.1.mlp.down_proj.weight",
            "model.layers.0.input_layernorm.weight",
            "model.norm.weight",
        ]),
        ("llama32-tied", [
            "model.layers.2.self_attn.v_proj.weight",
            "model.layers.0.post_attention_layernorm.weight",
        ]),
    ]:
        model = AutoModelForCausalLM.from_pretrained(
            MODELS / name, torch_dtype=torch.float32, attn_implementation="eager")
        model.train()
        g = torch.Generator().manual_seed(11)
        ids = torch.randint(0, 373, (1, 40), generator=g)
        ids[0, 0] = 373  # <|begin_of_text|>
        labels = ids.clone()
        labels[0, :12] = -100
        out = model(input_ids=ids, labels=labels)
        out.loss.backward()
        named = dict(model.named_parameters())
        tensors[f"{name}.input_ids"] = ids[0].to(torch.int64)
        tensors[f"{name}.labels"] = labels[0].to(torch.int64)
        tensors[f"{name}.loss"] = out.loss.detach().reshape(1)
        for p in params:
            tensors[f"{name}.grad.{p}"] = named[p].grad.detach().clone()
        # The tied embedding's gradient gets both the input and the output
        # contributions; a slice of rows keeps the file small.
        emb = named["model.embed_tokens.weight"].grad
        tensors[f"{name}.grad.embed_rows_0_32"] = emb[:32].detach().clone()


def prompt_ids() -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(0, 373, (1, 24), generator=g)
    ids[0, 0] = 373
    return ids


def peft_adapter() -> None:
    base = AutoModelForCausalLM.from_pretrained(
        MODELS / "llama31-tiny", torch_dtype=torch.float32, attn_implementation="eager")
    torch.manual_seed(21)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                        lora_dropout=0.0, init_lora_weights=False, task_type="CAUSAL_LM")
    model = get_peft_model(base, config).eval()
    dest = OUT / "peft_adapter"
    shutil.rmtree(dest, ignore_errors=True)
    model.save_pretrained(dest)
    (dest / "README.md").unlink(missing_ok=True)
    config_path = dest / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = "tests/fixtures/models/llama31-tiny"
    config["target_modules"] = sorted(config["target_modules"])
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    ids = prompt_ids()
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0]
    save_file({"input_ids": ids[0], "logits": logits.contiguous()},
              OUT / "peft_logits.safetensors")


def herd_adapter(herd: str) -> None:
    dest = OUT / "herd_adapter"
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([str(Path(herd).resolve()), "--threads", "1", "finetune", "--model", "tests/fixtures/models/llama31-tiny",
                        "--data", "tests/fixtures/train/chat.jsonl", "--quiet", "--lora-rank", "4",
                        "--lora-alpha", "16", "--lora-targets", "q,k,v,o,gate,up,down",
                        "--steps", "12", "--lr", "3e-3", "--seq-len", "256",
                        "--out", tmp], check=True, cwd=ROOT)
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir()
        for f in ["adapter_config.json", "adapter_model.safetensors"]:
            shutil.copy(Path(tmp) / f, dest / f)
    base = AutoModelForCausalLM.from_pretrained(
        MODELS / "llama31-tiny", torch_dtype=torch.float32, attn_implementation="eager")
    model = PeftModel.from_pretrained(base, dest).eval()
    ids = prompt_ids()
    b_max = max(p.abs().max().item() for n, p in model.named_parameters() if "lora_B" in n)
    lora_modules = sum(1 for n, _ in model.named_modules() if n.endswith("lora_A"))
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0]
        merged = model.merge_and_unload()(input_ids=ids).logits[0]
    save_file({"input_ids": ids[0], "logits": logits.contiguous()},
              OUT / "herd_adapter_logits.safetensors")
    report = {
        "peft_loaded": True,
        "lora_modules": lora_modules,
        "max_abs_lora_B": b_max,
        "max_abs_diff_peft_vs_peft_merged": (logits - merged).abs().max().item(),
        "max_abs_logit_change_from_base": None,
    }
    base = AutoModelForCausalLM.from_pretrained(
        MODELS / "llama31-tiny", torch_dtype=torch.float32, attn_implementation="eager")
    with torch.no_grad():
        report["max_abs_logit_change_from_base"] = (
            logits - base(input_ids=ids).logits[0]).abs().max().item()
    (OUT / "herd_adapter_peft.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--herd", help="herd binary; also (re)make herd_adapter/")
    args = parser.parse_args()
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "chat.jsonl", "w") as f:
        for r in chat_dataset():
            f.write(json.dumps(r) + "\n")
    # Tool definitions make a dialog ~800 tiny-tokenizer tokens long: only
    # llama32-tied's 2048-token context holds them, so they get their own file.
    with open(OUT / "tools.jsonl", "w") as f:
        for r in chat_dataset()[2::8]:
            f.write(json.dumps({"tools": TOOLS, **r}) + "\n")
    tensors: dict = {}
    grads_reference(tensors)
    save_file({k: v.contiguous() for k, v in tensors.items()}, OUT / "grads.safetensors")
    peft_adapter()
    if args.herd:
        herd_adapter(args.herd)


if __name__ == "__main__":
    main()
