#!/bin/sh
# qpack --to compressed-tensors against the real loader: each scheme of the tiny Llama fixture is quantized
# with qquant, packed, loaded with transformers + compressed-tensors on CPU (the peer venv), and its
# perplexity compared with qeval's on the source qkit checkpoint (and its weights with qquant --fake).
# Run from the package root after `swift build`; writes the table to stdout (committed as
# pack_compressed_tensors.out). Needs ~/.cache/qkit-peers/venv (torch, transformers, compressed-tensors).
set -eu
BIN=${QKIT_BIN:-.build/debug}
PY=${QKIT_PEER_PYTHON:-$HOME/.cache/qkit-peers/venv/bin/python}
MODEL=Tests/CommonTests/Fixtures/model/llama3
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
"$PY" -c "import random; random.seed(1); print(' '.join(str(random.randrange(3, 320)) for _ in range(256)))" > "$T/ids"
printf '%-22s %-22s %-18s %-18s %-10s %s\n' scheme ct-format qeval-qkit transformers-ct rel-diff max-weight-diff
for case in "int4:g32:sym:" "int4:g32:asym:" "int8:ch:sym:" "int4:ch:asym:" "int8:ch:sym:--w8a8" "fp8:" "fp8:tensor:" "nvfp4:"; do
    extra=${case##*:}
    scheme=${case%:*}
    "$BIN/qquant" "$MODEL" --algo rtn --rule "proj=$scheme" -q -o "$T/q" 
    "$BIN/qquant" "$MODEL" --algo rtn --rule "proj=$scheme" --fake --dtype f32 -q -o "$T/fake"
    "$BIN/qpack" "$T/q" --to compressed-tensors $extra -q -o "$T/ct"
    "$BIN/qpack" --verify "$T/ct" --source "$T/q" -q
    a=$("$BIN/qeval" "$T/q" --ids "$T/ids" --seqlen 64 --json -q | "$PY" -c "import json,sys; print(repr(json.load(sys.stdin)['perplexity']))")
    r=$("$PY" Tests/peer-checks/pack_compressed_tensors_ppl.py "$T/ct" "$T/ids" 64 "$T/fake" 2>/dev/null | tail -1)
    fmt=$("$PY" -c "import json; print(json.load(open('$T/ct/config.json'))['quantization_config']['format'])")
    "$PY" -c "
import json; r = json.loads('''$r'''); a = $a; b = r['perplexity']
print('%-22s %-22s %-18.12g %-18.12g %-10.2e %.3g' % ('$scheme $extra', '$fmt', a, b, abs(a - b) / a, r['max_weight_diff']))"
    rm -rf "$T/q" "$T/fake" "$T/ct"
done
"$PY" -c "import transformers, compressed_tensors, torch; print('transformers', transformers.__version__, 'compressed-tensors', compressed_tensors.__version__, 'torch', torch.__version__)"
