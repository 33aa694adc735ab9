"""Checks qpack's tinychat output against llm-awq's own packer.

Runs mit-han-lab/llm-awq's `WQLinear.from_linear` (awq/quantize/qmodule.py, with its CUDA extension
stubbed: packing is plain torch/numpy) on the codes, zero points and scales of a qkit checkpoint, and
compares the qweight / scales / scaled_zeros it builds with what `qpack --to tinychat` wrote.

usage: python tinychat_check.py QKIT_DIR TINYCHAT_DIR PATH/TO/llm-awq/awq/quantize/qmodule.py
"""
import json, sys, types
import torch
from safetensors.torch import load_file

qkit_dir, out_dir, qmodule_path = sys.argv[1:4]
sys.modules["awq_inference_engine"] = types.ModuleType("awq_inference_engine")  # CUDA kernels, unused here
qmodule = types.ModuleType("qmodule")
exec(compile(open(qmodule_path).read(), qmodule_path, "exec"), qmodule.__dict__)

src = load_file(qkit_dir + "/model.safetensors")
out = load_file(out_dir + "/model.safetensors")
group = json.load(open(out_dir + "/config.json"))["quantization_config"]["q_group_size"]
prefixes = sorted(k[: -len(".weight_q")] for k in src if k.endswith(".weight_q"))
mismatches = 0
for p in prefixes:
    q = src[p + ".weight_q"]
    s = src[p + ".weight_scale"].to(torch.float16)
    if q.dtype == torch.int8:  # symmetric qkit codes -> unsigned with zero 8
        codes, zeros = q.to(torch.int32) + 8, torch.full(s.shape, 8, dtype=torch.int32)
    else:
        codes, zeros = q.to(torch.int32), src[p + ".weight_zero_point"].to(torch.int32)
    n, k = codes.shape
    g = k // s.shape[1]
    w = (codes - zeros.repeat_interleave(g, dim=1)).to(torch.float32) * s.to(torch.float32).repeat_interleave(g, dim=1)
    linear = torch.nn.Linear(k, n, bias=False)
    linear.weight.data = w
    ref = qmodule.WQLinear.from_linear(linear, 4, group, scales=s, zeros=zeros)
    same = {name: torch.equal(getattr(ref, name), out[p + "." + name]) for name in ("qweight", "scales", "scaled_zeros")}
    if not all(same.values()):
        mismatches += 1
    print(f"{p} [{n}, {k}] g{group}: " + " ".join(f"{name} {'equal' if ok else 'DIFFERS'}" for name, ok in same.items()))
print(f"{len(prefixes)} linears, {mismatches} differing from llm-awq WQLinear.from_linear")
sys.exit(1 if mismatches else 0)
