"""Checks `qpack --to nunchaku` against deepcompressor's NunchakuWeightPacker (the packer Nunchaku's models were
converted with) on synthetic qkit W4A4 checkpoints (INT4 g64 and NVFP4; N, K, R not multiples of the tiles).

usage: python nunchaku_pack_check.py DEEPCOMPRESSOR_GIT_DIR QPACK_BINARY
       (the main peer venv: torch, safetensors, numpy)

For each linear the script takes the qkit codes, scales, bias, smooth and low-rank tensors it wrote, runs them through
deepcompressor's own pad_weight/pack_weight, pad_scale/pack_scale (micro-scales for NVFP4), pad_lowrank_weight/
pack_lowrank_weight — the steps of convert_to_nunchaku_w4x4y16_linear_weight after quantization — loaded from
deepcompressor/backend/{utils.py,nunchaku/utils.py} at the given checkout, and compares every byte with qpack's
output. NVFP4's per-tensor wtscale is compared as 1 / qkit's global scale (deepcompressor stores the first-level scale
in the model dtype; qpack stores it as F32). Nothing of deepcompressor is kept; it is read with `git show`.
"""
import importlib.util, json, os, subprocess, sys, tempfile, types, pathlib

import numpy as np
import torch
from safetensors.torch import load_file, save_file

git_dir, qpack = sys.argv[1], sys.argv[2]
tmp = pathlib.Path(tempfile.mkdtemp())
rev = subprocess.run(["git", "--git-dir", git_dir, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
for pkg in ["deepcompressor", "deepcompressor.backend", "deepcompressor.backend.nunchaku", "deepcompressor.backend.tinychat"]:
    m = types.ModuleType(pkg); m.__path__ = [str(tmp / pkg.replace(".", "/"))]; sys.modules[pkg] = m
sys.modules["deepcompressor.backend.tinychat.utils"] = types.ModuleType("deepcompressor.backend.tinychat.utils")
sys.modules["deepcompressor.backend.tinychat.utils"].convert_to_tinychat_w4x16y16_linear_weight = None
def load(name, path):
    src = subprocess.run(["git", "--git-dir", git_dir, "show", f"HEAD:{path}"], capture_output=True, text=True).stdout
    f = tmp / path; f.parent.mkdir(parents=True, exist_ok=True); f.write_text(src)
    spec = importlib.util.spec_from_file_location(name, f)
    m = importlib.util.module_from_spec(spec); sys.modules[name] = m; spec.loader.exec_module(m); return m
load("deepcompressor.backend.utils", "deepcompressor/backend/utils.py")
NunchakuWeightPacker = load("deepcompressor.backend.nunchaku.utils", "deepcompressor/backend/nunchaku/utils.py").NunchakuWeightPacker

E2M1 = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]
def synthetic(path, nvfp4, rank=20, seed=3):
    g = torch.Generator().manual_seed(seed)
    def u(*shape, lo=-1.0, hi=1.0): return lo + (hi - lo) * torch.rand(*shape, generator=g)
    tensors, modules = {"model.embed_tokens.weight": u(8, 192).to(torch.bfloat16)}, {}
    for p, n, k in [("model.layers.0.self_attn.q_proj", 200, 192), ("model.layers.0.mlp.down_proj", 64, 256)]:
        if nvfp4:
            tensors[p + ".weight_q"] = torch.randint(0, 16, (n, k), generator=g, dtype=torch.uint8)
            tensors[p + ".weight_scale"] = u(n, k // 16, lo=0.01, hi=400).to(torch.float8_e4m3fn)
            tensors[p + ".weight_global_scale"] = torch.tensor([37.5])
        else:
            tensors[p + ".weight_q"] = torch.randint(-8, 8, (n, k), generator=g, dtype=torch.int8)
            tensors[p + ".weight_scale"] = u(n, k // 64, lo=0.001, hi=0.05)
        tensors[p + ".smooth"] = u(k, lo=0.2, hi=5)
        tensors[p + ".lora_down"] = u(rank, k, lo=-0.5, hi=0.5).to(torch.bfloat16)
        tensors[p + ".lora_up"] = u(n, rank, lo=-0.5, hi=0.5).to(torch.bfloat16)
        if p.endswith("q_proj"):
            tensors[p + ".bias"] = u(n).to(torch.bfloat16)
        modules[p] = "nvfp4:g16" if nvfp4 else "int4:g64:sym"
    os.makedirs(path)
    save_file(tensors, os.path.join(path, "model.safetensors"))
    json.dump({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "torch_dtype": "bfloat16",
               "quantization_config": {"quant_method": "qkit", "version": 1, "algorithm": "svdquant", "modules": modules}},
              open(os.path.join(path, "config.json"), "w"))
    return tensors, modules

def same(a, b):
    return a.shape == b.shape and a.contiguous().view(torch.uint8).equal(b.contiguous().view(torch.uint8))

ok = True
print(f"deepcompressor {rev[:12]}, torch {torch.__version__}")
for nvfp4 in (False, True):
    src = tmp / ("nvfp4" if nvfp4 else "int4")
    tensors, modules = synthetic(str(src), nvfp4)
    out = tmp / ((src.name) + "-nunchaku")
    r = subprocess.run([qpack, str(src), "--to", "nunchaku", "-q", "-o", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    ours = load_file(os.path.join(out, "model.safetensors"))
    packer = NunchakuWeightPacker(bits=4)
    for p in modules:
        q = tensors[p + ".weight_q"].to(torch.int32)
        n, k = q.shape
        dt = torch.bfloat16
        ref = {"qweight": packer.pack_weight(packer.pad_weight(q))}
        gs = 16 if nvfp4 else 64
        scale = tensors[p + ".weight_scale"].to(torch.float32).to(dt).view(n, 1, k // gs, 1)
        ref["wscales"] = packer.pack_scale(packer.pad_scale(scale, group_size=gs), group_size=gs)
        bias = tensors.get(p + ".bias", torch.zeros(n, dtype=dt)).to(dt).view(-1, 1)
        ref["bias"] = packer.pack_scale(packer.pad_scale(bias, group_size=-1), group_size=-1)
        smooth = tensors[p + ".smooth"].to(dt).view(-1, 1)
        ref["smooth"] = ref["smooth_orig"] = packer.pack_scale(packer.pad_scale(smooth, group_size=-1), group_size=-1)
        ref["lora_down"] = packer.pack_lowrank_weight(packer.pad_lowrank_weight(tensors[p + ".lora_down"], down=True), down=True)
        ref["lora_up"] = packer.pack_lowrank_weight(packer.pad_lowrank_weight(tensors[p + ".lora_up"], down=False), down=False)
        results = {key: same(ours[f"{p}.{key}"], value) for key, value in ref.items()}
        if nvfp4:
            results["wtscale"] = ours[p + ".wtscale"].item() == np.float32(1) / np.float32(tensors[p + ".weight_global_scale"].item())
        shapes = {key: list(ours[f"{p}.{key}"].shape) for key in ref}
        print(f"{'nvfp4' if nvfp4 else 'int4 '} {p} [{n}, {k}] rank 20: " + ", ".join(f"{key} {shapes.get(key, [1])} {'equal' if v else 'DIFFERENT'}" for key, v in results.items()))
        ok = ok and all(results.values())
print("OK" if ok else "FAILED")
sys.exit(0 if ok else 1)
