"""Loads a compressed-tensors checkpoint written by `qpack --to compressed-tensors` with transformers +
compressed-tensors on CPU and prints its perplexity on whitespace-separated token ids, with qeval's
protocol: consecutive non-overlapping windows of SEQLEN tokens (tail dropped), no BOS, exp of the mean
next-token NLL over all predicted tokens. Usage: python pack_compressed_tensors_ppl.py MODEL IDS SEQLEN [FAKE]

With FAKE (the `qquant --fake --dtype f32` twin of the source), also prints the largest difference between
each linear weight transformers decompressed and the qkit dequantization."""
import json
import math
import sys

import torch
from transformers import AutoModelForCausalLM

model_dir, ids_path, seqlen = sys.argv[1], sys.argv[2], int(sys.argv[3])
ids = [int(t) for t in open(ids_path).read().split()]
from transformers import CompressedTensorsConfig
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                             quantization_config=CompressedTensorsConfig(run_compressed=False))
model.eval()
# NVFP4 decompresses to bf16 weights whatever the model dtype: run those linears in f32 (the values stay bf16).
for module in model.modules():
    w = getattr(module, "weight", None)
    if isinstance(module, torch.nn.Linear) and w is not None and w.dtype != torch.float32:
        module.weight.data = module.weight.data.float()
# The linears must really be quantized modules (not silently loaded as dense weights).
kinds = sorted({type(m).__name__ for n, m in model.named_modules() if n.endswith("_proj")})
total, count = 0.0, 0
with torch.no_grad():
    for w in range(len(ids) // seqlen):
        x = torch.tensor([ids[w * seqlen:(w + 1) * seqlen]])
        logits = model(x).logits[0, :-1].double()
        nll = torch.nn.functional.cross_entropy(logits, x[0, 1:], reduction="sum")
        total += nll.item()
        count += seqlen - 1
import compressed_tensors, transformers
max_diff = None
if len(sys.argv) > 4:
    from safetensors.torch import load_file
    fake = load_file(sys.argv[4] + "/model.safetensors")
    state = model.state_dict()
    max_diff = max((state[n].float() - t.float()).abs().max().item() for n, t in fake.items() if n.endswith("_proj.weight"))
print(json.dumps({"perplexity": math.exp(total / count), "tokens": count, "max_weight_diff": max_diff, "linear_modules": kinds,
                  "transformers": transformers.__version__, "compressed_tensors": compressed_tensors.__version__}))
