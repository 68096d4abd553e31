#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine, then runs all tests.
# Needs: a Rust toolchain (cargo) and Python 3 with pip.
#   - Meta's Llama 3 tokenizer.model, taken from the `llama-models` package
#     (its licence does not allow committing it), for the tokenizer parity tests;
#   - llama.cpp's Python binding (`llama-cpp-python`, compiled from source by pip,
#     ~4 minutes the first time) for the GGUF interop check;
#   - OpenMPI (Debian packages; libclang for the `mpi` crate's bindings) for the
#     multi-process tests.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/fetch_llama3_tokenizer.sh
python3 -c "import llama_cpp, numpy" 2>/dev/null || python3 -m pip install --quiet "llama-cpp-python==0.3.36" numpy
if ! dpkg -s libopenmpi-dev openmpi-bin libclang-dev >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null && apt-get install -y -q libopenmpi-dev openmpi-bin libclang-dev >/dev/null
fi
# mpirun as root in CI containers; on 2 cores ranks must yield or they starve each other.
# A clean clone gains nothing from incremental caches; they cost gigabytes of disk.
export CARGO_INCREMENTAL=0
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_mpi_yield_when_idle=1

cargo test --workspace --no-fail-fast "$@"
# `cargo test` built the herd binary under target/debug (optimised test profile).
python3 tools/interop_llama_cpp.py target/debug/herd 2>&1 | grep -v -E '^(llama_|load|print_info)'

# Every MPI collective across real processes (2 and 3 ranks on this machine).
# One MPI build for every multi-process test: the collectives check, the
# parallel-vs-single check, and herd itself with `--tp/--pp`.
cargo build --profile test -p herd-dist -p herd-parallel -p herd \
    --features herd-dist/mpi,herd-parallel/mpi,herd/mpi \
    --example comm_check --example parallel_check --bin herd
for n in 2 3; do
    timeout 120 mpirun -np "$n" --oversubscribe target/debug/examples/comm_check
done
# Tensor and pipeline parallelism: equivalence, bad input, failed ranks.
bash tools/test_parallel.sh target/debug
# TP 2 with the ranks in two network namespaces (skips where ip netns is not permitted).
bash tools/test_netns.sh target/debug
# herd serve: protocol tests with the official `openai` client, then the web
# chat page in headless Debian chromium driven by playwright-core (npm).
python3 -c "import openai" 2>/dev/null || python3 -m pip install --quiet "openai>=1.40"
python3 tests/server/test_openai_api.py target/debug/herd
command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
(cd tests/server/browser && npm ci --no-audit --no-fund --silent)
node tests/server/browser/chat_page.mjs target/debug/herd
# Agents: the API (openai client; restart of a killed server; 20 concurrent
# conversations) and the web page with the shop-support agent.
python3 tests/server/test_agents_api.py target/debug/herd
node tests/server/browser/agent_page.mjs target/debug/herd
