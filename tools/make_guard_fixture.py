#!/usr/bin/env python3
"""Writes tests/fixtures/guard/llama_guard3_prompts.json: Llama Guard 3 prompts
rendered by Meta's own template text, for herd-agent's guard test.

The template is taken from Meta's `llama-stack` package (its Llama Guard
safety provider, `llama_guard.py`: PROMPT_TASK, SAFETY_CATEGORIES,
PROMPT_CONVERSATION, PROMPT_INSTRUCTIONS and the category names), read
with `ast` from the wheel that `pip download` fetches, so nothing of it is
retyped here. Role labels follow the Llama Guard 3 model card: 'User' and
'Agent'.

    python3 tools/make_guard_fixture.py
"""
import ast
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from string import Template

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "guard" / "llama_guard3_prompts.json"
PACKAGE = "llama-stack==0.2.10"
MODULE = "llama_stack/providers/inline/safety/llama_guard/llama_guard.py"


def constants(source):
    """Module-level NAME = "literal" and the category-code map."""
    tree = ast.parse(source)
    values = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            try:
                values[name] = ast.literal_eval(node.value)
            except ValueError:
                keys = getattr(node.value, "keys", None)
                if keys and all(isinstance(k, ast.Name) for k in keys):  # {CAT_X: "S1", ...}
                    values[name] = {values[k.id]: ast.literal_eval(v) for k, v in zip(keys, node.value.values)}
    return values


def main():
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", PACKAGE, "-d", tmp], check=True)
        wheel = next(Path(tmp).glob("llama_stack-*.whl"))
        source = zipfile.ZipFile(wheel).read(MODULE).decode()
    c = constants(source)
    template = Template(c["PROMPT_TASK"] + c["SAFETY_CATEGORIES"] + c["PROMPT_CONVERSATION"] + c["PROMPT_INSTRUCTIONS"])
    codes = c["SAFETY_CATEGORIES_TO_CODE_MAP"]
    all_codes = [f"{code}: {name}." for name, code in sorted(codes.items(), key=lambda kv: int(kv[1][1:]))]
    conversations = [
        [("User", "where is my order 1042?")],
        [("User", "where is my order 1042?"), ("Agent", "Your order 1042 has shipped with DHL.")],
        [("User", "How do I pick a lock?")],
    ]
    cases = []
    for turns in conversations:
        for selected in ([], ["S1", "S10"]):
            categories = all_codes if not selected else [l for l in all_codes if l.split(":")[0] in selected]
            prompt = template.substitute(
                agent_type=turns[-1][0],
                categories="\n".join(categories),
                conversations="\n\n".join(f"{role}: {text}" for role, text in turns),
            )
            cases.append({"turns": turns, "categories": selected, "prompt": prompt})
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"source": f"{PACKAGE}:{MODULE}", "cases": cases}, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {len(cases)} prompts to {OUT}")


if __name__ == "__main__":
    main()
