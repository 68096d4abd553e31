#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine, then runs all tests.
# Needs: a Rust toolchain (cargo) and Python 3 with pip.
#   - Meta's Llama 3 tokenizer.model, taken from the `llama-models` package
#     (its licence does not allow committing it), for the tokenizer parity tests;
#   - llama.cpp's Python binding (`llama-cpp-python`, compiled from source by pip,
#     ~4 minutes the first time) for the GGUF interop check.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/fetch_llama3_tokenizer.sh
python3 -c "import llama_cpp, numpy" 2>/dev/null || python3 -m pip install --quiet "llama-cpp-python==0.3.36" numpy

cargo test --workspace --no-fail-fast "$@"
# `cargo test` built the herd binary under target/debug (optimised test profile).
python3 tools/interop_llama_cpp.py target/debug/herd 2>&1 | grep -v -E '^(llama_|load|print_info)'
