#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine, then runs all tests.
# Needs: a Rust toolchain (cargo) and Python 3 with pip.
#   - Meta's Llama 3 tokenizer.model, taken from the `llama-models` package
#     (its licence does not allow committing it), for the tokenizer parity tests.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/fetch_llama3_tokenizer.sh
cargo test --workspace --no-fail-fast "$@"
