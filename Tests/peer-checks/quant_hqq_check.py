"""HQQ reference errors from the hqq package, on real SmolLM2-135M weight matrices.

Writes Tests/CommonTests/Fixtures/quant/hqq-reference.json: for each matrix, bit width and group (axis 1 =
groups of contiguous input columns, as qkit), the mean |W - dequant(quant(W))| of hqq's optimized
quantizer (optimize_weights_proximal: p = 0.7, beta 10, kappa 1.01, 20 iterations, float zero points) and of
its plain min/max RTN (optimize=False). qkit's HQQ must land within 1% of the optimized figure
(Tests/CommonTests/QuantHQQTests.swift).

usage: ~/.cache/qkit-peers/venv/bin/python Tests/peer-checks/quant_hqq_check.py
"""
import json, os
import torch
from safetensors import safe_open
from hqq.core.quantize import Quantizer

ASSETS = os.environ.get("QKIT_ASSETS", os.path.expanduser("~/.cache/qkit-assets"))
OUT = os.path.join(os.path.dirname(__file__), "../CommonTests/Fixtures/quant/hqq-reference.json")
MATRICES = ["model.layers.0.self_attn.q_proj.weight", "model.layers.0.mlp.down_proj.weight",
            "model.layers.15.self_attn.k_proj.weight", "model.layers.29.mlp.gate_proj.weight"]


def error(W, optimize, bits, group):
    Wq, meta = Quantizer.quantize(W, nbits=bits, channel_wise=True, group_size=group, optimize=optimize,
                                  axis=1, bitpack=False, compute_dtype=torch.float32, device="cpu")
    Wr = Quantizer.dequantize(Wq, meta).reshape(W.shape)
    return (W - Wr).abs().mean().item()


def main():
    f = safe_open(os.path.join(ASSETS, "smollm2-135m/model.safetensors"), "pt")
    rows = []
    for name in MATRICES:
        W = f.get_tensor(name).float()
        for bits, group in [(4, 64), (3, 64), (4, 128), (2, 32)]:
            rows.append({"tensor": name, "bits": bits, "group": group,
                         "hqq_mean_abs_error": error(W, True, bits, group),
                         "rtn_mean_abs_error": error(W, False, bits, group)})
            print(rows[-1])
    with open(OUT, "w") as o:
        json.dump({"generator": "Tests/peer-checks/quant_hqq_check.py", "hqq": __import__("hqq").__version__ if hasattr(__import__("hqq"), "__version__") else "0.2.8.post1",
                   "torch": torch.__version__, "model": "smollm2-135m (f32)", "rows": rows}, o, indent=1)


if __name__ == "__main__":
    main()
