#!/usr/bin/env python3
"""Peer check of `qpack X.gguf --to safetensors` against transformers' own GGUF conversion.

Usage: python gguf_import_check.py OURS_DIR REFERENCE_DIR CORPUS [--write-fixture FIXTURE.json]
  OURS_DIR       qpack's output (qpack SmolLM2-135M-Instruct.Q4_1.gguf --to safetensors --dtype f32 -o OURS_DIR)
  REFERENCE_DIR  the transformers conversion made by get-assets.sh (smollm2-135m)
  CORPUS         a text file (pydoc-tutorial.txt)
Checks: (1) every tensor bit for bit, (2) config.json keys, (3) tokenizer.json encodings of the corpus,
(4) logits of AutoModelForCausalLM on a short input. Exits 1 if a check fails.
"""
import hashlib, json, re, sys, zlib
import numpy as np
from safetensors.numpy import load_file

ours, ref, corpus = sys.argv[1:4]
fixture = sys.argv[sys.argv.index("--write-fixture") + 1] if "--write-fixture" in sys.argv else None
failed = False

# (1) tensors
a, b = load_file(f"{ours}/model.safetensors"), load_file(f"{ref}/model.safetensors")
print(f"tensors: ours {len(a)}, reference {len(b)}")
if set(a) != set(b):
    print("  name sets differ:", sorted(set(a) ^ set(b))[:10]); failed = True
same = 0
for k in sorted(set(a) & set(b)):
    x, y = a[k], b[k]
    if x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes():
        same += 1
    else:
        failed = True
        print(f"  DIFF {k}: {x.dtype}{list(x.shape)} vs {y.dtype}{list(y.shape)}",
              "max|d| =", float(np.max(np.abs(x.astype(np.float64) - y.astype(np.float64)))) if x.shape == y.shape else "")
print(f"  bit-identical: {same}/{len(b)}")
if fixture:
    out = {k: {"dtype": str(b[k].dtype).upper().replace("FLOAT", "F"), "shape": list(b[k].shape),
               "sha256": hashlib.sha256(b[k].tobytes()).hexdigest(),
               "crc32": zlib.crc32(b[k].tobytes())} for k in sorted(b)}
    cfg = json.load(open(f"{ref}/config.json"))
    keys = ["architectures", "model_type", "hidden_size", "intermediate_size", "num_hidden_layers",
            "num_attention_heads", "num_key_value_heads", "head_dim", "max_position_embeddings", "rms_norm_eps",
            "vocab_size", "bos_token_id", "eos_token_id", "pad_token_id", "tie_word_embeddings", "hidden_act",
            "attention_bias", "mlp_bias"]
    json.dump({"tensors": out, "config": {k: cfg[k] for k in keys},
               "rope_theta": cfg.get("rope_theta", cfg.get("rope_parameters", {}).get("rope_theta"))},
              open(fixture, "w"), indent=1, sort_keys=True)
    print(f"  wrote {fixture}")

# (2) config
ca, cb = json.load(open(f"{ours}/config.json")), json.load(open(f"{ref}/config.json"))
skip = {"_model_name_or_path", "transformers_version", "dtype", "torch_dtype", "rope_parameters", "rope_theta", "rope_scaling"}
diff = {k: (ca.get(k), cb.get(k)) for k in set(cb) - skip if ca.get(k) != cb.get(k)}
ta = ca.get("rope_theta", ca.get("rope_parameters", {}).get("rope_theta"))
tb = cb.get("rope_theta", cb.get("rope_parameters", {}).get("rope_theta"))
if ta != tb: diff["rope_theta"] = (ta, tb)
print("config: differing keys (ours, reference):", diff or "none")
failed |= bool(diff)

# (3) tokenizer
from tokenizers import Tokenizer
ta, tb = Tokenizer.from_file(f"{ours}/tokenizer.json"), Tokenizer.from_file(f"{ref}/tokenizer.json")
text = open(corpus, encoding="utf-8").read()
ea, eb = ta.encode(text, add_special_tokens=False), tb.encode(text, add_special_tokens=False)
print(f"tokenizer: {len(text)} chars -> ours {len(ea.ids)} tokens, reference {len(eb.ids)} tokens")
# Compare line by line: lines where the two differ must all have digits right after a whitespace run.
lines = text.split("\n")
bad, digit = 0, 0
for line in lines:
    la, lb = ta.encode(line, add_special_tokens=False).ids, tb.encode(line, add_special_tokens=False).ids
    if la != lb:
        if re.search(r"\s\s+\d|\s\d", line): digit += 1
        else:
            bad += 1
            if bad <= 5: print("  unexplained difference on line:", repr(line[:100]))
print(f"  lines: {len(lines)}, identical: {len(lines) - bad - digit}, differing with digits after whitespace: {digit}, other: {bad}")
digits_re = re.compile(r"\s(\d)")
masked = digits_re.sub(lambda m: m.group(0)[0] + "x", text)
ma, mb = ta.encode(masked, add_special_tokens=False).ids, tb.encode(masked, add_special_tokens=False).ids
print(f"  whole corpus with digits after whitespace masked: {'identical' if ma == mb else 'DIFFERENT'} ({len(ma)} tokens)")
failed |= bad > 0 or ma != mb
s = "The answer is 42.\n\n1. First\n  2 items"
print("  example", repr(s), "\n    ours", ta.encode(s).tokens, "\n    ref ", tb.encode(s).tokens)
dec = ta.decode(ta.encode(text[:2000]).ids)
print("  decode(encode(first 2000 chars)) round trip:", dec == text[:2000])
failed |= dec != text[:2000]

# (4) transformers load + logits
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
tok = AutoTokenizer.from_pretrained(ours)
ids = tok("The capital of France is", return_tensors="pt").input_ids
print("transformers: AutoTokenizer(ours) ids", ids.tolist()[0],
      "| chat template:", repr(tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)[:60]))
with torch.no_grad():
    la = AutoModelForCausalLM.from_pretrained(ours, dtype=torch.float32)(ids).logits
    lb = AutoModelForCausalLM.from_pretrained(ref, dtype=torch.float32)(ids).logits
d = (la - lb).abs().max().item()
print(f"  logits shape {list(la.shape)}, max |ours - reference| = {d}, argmax next token ours {la[0, -1].argmax().item()} reference {lb[0, -1].argmax().item()}")
failed |= d != 0.0
print("RESULT:", "FAIL" if failed else "PASS")
sys.exit(1 if failed else 0)
