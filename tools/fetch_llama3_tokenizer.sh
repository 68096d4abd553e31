#!/usr/bin/env bash
# Puts Meta's Llama 3 tiktoken tokenizer at target/llama3-tokenizer/tokenizer.model,
# where the herd-tokenizer tests expect it.
#
# The file ships inside Meta's `llama-models` wheel (llama_models/llama3/tokenizer.model).
# It is under the Llama 3 Community License, so it is fetched here and never committed
# (target/ is git-ignored). The wheel is downloaded with pip from the package registry,
# without its dependencies, and only that one member is extracted.
set -euo pipefail

VERSION="0.3.0"
MEMBER="llama_models/llama3/tokenizer.model"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST_DIR="$ROOT/target/llama3-tokenizer"
DEST="$DEST_DIR/tokenizer.model"
# SHA-256 of the file in llama-models 0.3.0; a changed file would silently
# change every expected id, so it is checked.
SHA256="82e9d31979e92ab929cd544440f129d9ecd797b69e327f80f17e1c50d5551b55"

if [[ -f "$DEST" ]] && echo "$SHA256  $DEST" | sha256sum --check --status; then
    echo "already present: $DEST"
    exit 0
fi

PYTHON="${PYTHON:-python3}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: -d "$TMP" "llama-models==$VERSION"
WHEEL="$(ls "$TMP"/llama_models-"$VERSION"-*.whl)"

mkdir -p "$DEST_DIR"
# A wheel is a zip file; Python's zipfile avoids depending on `unzip`.
"$PYTHON" - "$WHEEL" "$MEMBER" "$DEST" <<'PY'
import shutil, sys, zipfile
wheel, member, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(dest + ".part", "wb") as out:
    shutil.copyfileobj(src, out)
PY
echo "$SHA256  $DEST.part" | sha256sum --check --status || {
    echo "error: $MEMBER in llama-models $VERSION does not have the expected SHA-256" >&2
    sha256sum "$DEST.part" >&2
    exit 1
}
mv "$DEST.part" "$DEST"
echo "wrote $DEST"
