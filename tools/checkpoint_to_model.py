"""Turn a training checkpoint (RUN/checkpoint.safetensors: parameters under
`param.`, AdamW moments under `adam_*`) into a Hugging Face model directory
that herd loads, taking config and tokenizer files from a model directory.

Used by tools/make_teacher.sh for the runs it stops at a saved step (the
checkpoint taken by --save-every) instead of at the end of their schedule.

    python3 tools/checkpoint_to_model.py RUN/checkpoint.safetensors OUT_DIR --like models/teacher
"""

import argparse
import os
import shutil

from safetensors.numpy import load_file, save_file

FILES = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
         "special_tokens_map.json"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("out")
    ap.add_argument("--like", required=True, help="model directory with config and tokenizer")
    args = ap.parse_args()
    tensors = load_file(args.checkpoint)
    params = {k[len("param."):]: v for k, v in tensors.items() if k.startswith("param.")}
    if not params:
        raise SystemExit(f"{args.checkpoint}: no param.* tensors (not a herd checkpoint?)")
    os.makedirs(args.out, exist_ok=True)
    save_file(params, os.path.join(args.out, "model.safetensors"), metadata={"format": "pt"})
    for name in FILES:
        src = os.path.join(args.like, name)
        if os.path.exists(src):
            shutil.copy(src, args.out)
    print(f"{len(params)} tensors -> {args.out}")


if __name__ == "__main__":
    main()
