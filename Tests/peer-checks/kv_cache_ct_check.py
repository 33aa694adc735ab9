"""Loads a compressed-tensors checkpoint whose config has a kv_cache_scheme (qquant --kv-cache fp8, then
qpack --to compressed-tensors) with transformers + compressed-tensors on CPU, checks that every attention
module got the file's k_scale/v_scale (and that the scheme was applied: the attention modules carry a
quantization scheme), and prints its perplexity with qeval's protocol (consecutive non-overlapping windows of
SEQLEN tokens, tail dropped, no BOS). Usage: python kv_cache_ct_check.py MODEL IDS SEQLEN"""
import json
import math
import sys

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, CompressedTensorsConfig

model_dir, ids_path, seqlen = sys.argv[1], sys.argv[2], int(sys.argv[3])
config = json.load(open(model_dir + "/config.json"))["quantization_config"]
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                             quantization_config=CompressedTensorsConfig(run_compressed=False))
model.eval()
files = {}
import glob
for f in glob.glob(model_dir + "/*.safetensors"):
    files.update(load_file(f))
loaded, max_diff, schemes = 0, 0.0, 0
for name, module in model.named_modules():
    if not name.endswith("self_attn"):
        continue
    schemes += getattr(module, "quantization_scheme", None) is not None
    for part in ("k_scale", "v_scale"):
        p = getattr(module, part, None)
        f = files.get(name + "." + part)
        if p is None or f is None:
            continue
        assert tuple(p.shape) == tuple(f.shape), (name, part, p.shape, f.shape)
        max_diff = max(max_diff, (p.float() - f.float()).abs().max().item())
        loaded += 1
ids = [int(t) for t in open(ids_path).read().split()]
total, count = 0.0, 0
with torch.no_grad():
    for w in range(len(ids) // seqlen):
        x = torch.tensor([ids[w * seqlen:(w + 1) * seqlen]])
        logits = model(x).logits[0, :-1].double()
        total += torch.nn.functional.cross_entropy(logits, x[0, 1:], reduction="sum").item()
        count += seqlen - 1
import compressed_tensors, transformers
print(json.dumps({"kv_cache_scheme": config["kv_cache_scheme"]["strategy"], "attention_modules_with_scheme": schemes,
                  "scales_loaded": loaded, "scales_in_file": sum(n.endswith(("k_scale", "v_scale")) for n in files),
                  "max_scale_diff": max_diff, "perplexity": math.exp(total / count), "tokens": count,
                  "transformers": transformers.__version__, "compressed_tensors": compressed_tensors.__version__}))
