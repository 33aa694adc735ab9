"""Loads an MLC directory written by `qpack --to mlc` with apache-tvm's two tensor-cache loaders and compares every
parameter with what MLC-LLM's own quantizer makes of the source model.

usage: python mlc_tensor_cache_check.py MLC_LLM_GIT_DIR SOURCE_HF_DIR QPACK_MLC_DIR
       (venv: bash ../shared/tools/peers.sh tvm → ~/.cache/qkit-peers/venv-tvm; the source is a float model)

1. tvm.contrib.tvmjs.load_tensor_cache (Python) and vm.builtin.tensor_cache.load + param_array_from_cache_by_name
   (the C++ loader MLC's runtime uses) both load the directory, and give the same arrays.
2. For each parameter of MLC's model (read from mlc-chat-config.json: family, preset, layers, tying), the source's
   Hugging Face tensors are fused as MLC's loader does (q,k,v and gate,up concatenated on axis 0), cast to the model
   dtype, and quantized by MLC's GroupQuantize.quantize_weight (python/mlc_llm/quantization/group_quantization.py at
   the mlc-llm checkout, compiled for CPU with TVM; the package __init__ files, which need MLC's compiled library,
   are bypassed with stubs of four names). q_weight words and q_scale values must equal the loaded ones bit for bit
   (float32 values as the f32-to-bf16 encoding stores them); float parameters must equal the source cast to the model
   dtype.
Nothing of mlc-llm is kept; it is read with `git show` into a temporary directory.
"""
import importlib.util, json, logging, os, struct, subprocess, sys, tempfile, types, pathlib

import numpy as np
import tvm
import tvm_ffi
from tvm.contrib import tvmjs

git_dir, source, ours = sys.argv[1], sys.argv[2], sys.argv[3]

# --- MLC's quantizer, loaded from source with stubs for what it imports but does not use here
tmp = pathlib.Path(tempfile.mkdtemp())
def module(name, **attrs):
    m = types.ModuleType(name); m.__dict__.update(attrs); m.__path__ = [str(tmp / name.replace(".", "/"))]; sys.modules[name] = m; return m
module("mlc_llm"); module("mlc_llm.loader", QuantizeMapping=type("QuantizeMapping", (), {}))
module("mlc_llm.nn", MixtralExperts=type("MixtralExperts", (), {}))
module("mlc_llm.support", logging=logging); module("mlc_llm.support.logging", getLogger=logging.getLogger)
module("mlc_llm.support.tensor_parallel", ShardSingleDim=type("ShardSingleDim", (), {}))
sys.modules["mlc_llm.support"].tensor_parallel = sys.modules["mlc_llm.support.tensor_parallel"]
module("mlc_llm.quantization")
rev = subprocess.run(["git", "--git-dir", git_dir, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
for f in ["utils", "group_quantization"]:
    src = subprocess.run(["git", "--git-dir", git_dir, "show", f"HEAD:python/mlc_llm/quantization/{f}.py"], capture_output=True, text=True).stdout
    p = tmp / f"{f}.py"; p.write_text(src)
    spec = importlib.util.spec_from_file_location(f"mlc_llm.quantization.{f}", p)
    m = importlib.util.module_from_spec(spec); sys.modules[spec.name] = m; spec.loader.exec_module(m)
GroupQuantize = sys.modules["mlc_llm.quantization.group_quantization"].GroupQuantize
PRESETS = {"q4f16_1": ("int4", 32, "float16"), "q4f32_1": ("int4", 32, "float32"), "q3f16_1": ("int3", 40, "float16")}

# --- the source model (safetensors read with numpy: header + little-endian data)
def read_safetensors(directory):
    out = {}
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".safetensors"): continue
        raw = open(os.path.join(directory, name), "rb").read()
        n = struct.unpack("<Q", raw[:8])[0]
        header = json.loads(raw[8:8 + n])
        for k, v in header.items():
            if k == "__metadata__": continue
            a, b = v["data_offsets"]
            buf = raw[8 + n + a: 8 + n + b]
            dt = v["dtype"]
            if dt == "BF16":
                arr = (np.frombuffer(buf, np.uint16).astype(np.uint32) << 16).view(np.float32)
            else:
                arr = np.frombuffer(buf, {"F32": np.float32, "F16": np.float16}[dt]).astype(np.float32)
            out[k] = arr.reshape(v["shape"])
    return out

src = read_safetensors(source)
chat = json.load(open(os.path.join(ours, "mlc-chat-config.json")))
preset = chat["quantization"]
qdtype, group, model_dtype = PRESETS[preset]
gq = GroupQuantize(name=preset, kind="group-quant", group_size=group, quantize_dtype=qdtype, storage_dtype="uint32",
                   model_dtype=model_dtype, linear_weight_layout="NK")
mc = chat["model_config"]
family = chat["model_type"]
attn = "c_attn" if family in ("qwen2", "qwen3") else "qkv_proj"
tied = mc.get("tie_word_embeddings", False)

# --- 1. both loaders
cpu = tvm.cpu(0)
py_params, meta = tvmjs.load_tensor_cache(ours, cpu)
tvm_ffi.get_global_func("vm.builtin.tensor_cache.load")(ours, 1, 0)
names = sorted(py_params)
cpp = tvm_ffi.get_global_func("vm.builtin.param_array_from_cache_by_name")(names)
same = all(np.array_equal(py_params[n].numpy().view(np.uint8), cpp[i].numpy().view(np.uint8)) for i, n in enumerate(names))
print(f"mlc-llm {rev[:12]}, apache-tvm {tvm.__version__}: {ours}: {preset} {family}, {len(names)} parameters, "
      f"metadata {meta}; python and C++ loaders agree: {same}")

# --- 2. MLC's quantizer on the source, compared with what was loaded
def bf16_stored(a):  # what the f32-to-bf16 encoding keeps of a float32 array, decoded
    return tvmjs._convert_bf16_to_f32(tvmjs._convert_f32_to_bf16(np.ascontiguousarray(a, np.float32)))

def fused(parts):
    return np.concatenate([src[p] for p in parts], axis=0)

params = [("model.embed_tokens", ["model.embed_tokens.weight"], True)]
for i in range(mc["num_hidden_layers"]):
    l = f"model.layers.{i}"
    params.append((f"{l}.self_attn.{attn}", [f"{l}.self_attn.{x}_proj.weight" for x in "qkv"], True))
    if family == "qwen2" or (family == "qwen3" and mc.get("attention_bias")):
        params.append((f"{l}.self_attn.{attn}.bias", [f"{l}.self_attn.{x}_proj.bias" for x in "qkv"], False))
    params.append((f"{l}.self_attn.o_proj", [f"{l}.self_attn.o_proj.weight"], True))
    if family == "qwen3":
        params += [(f"{l}.self_attn.{n}.weight", [f"{l}.self_attn.{n}.weight"], False) for n in ("q_norm", "k_norm")]
    params.append((f"{l}.mlp.gate_up_proj", [f"{l}.mlp.gate_proj.weight", f"{l}.mlp.up_proj.weight"], True))
    params.append((f"{l}.mlp.down_proj", [f"{l}.mlp.down_proj.weight"], True))
    params += [(f"{l}.{n}.weight", [f"{l}.{n}.weight"], False) for n in ("input_layernorm", "post_attention_layernorm")]
params.append(("model.norm.weight", ["model.norm.weight"], False))
if not tied:
    params.append(("lm_head", ["lm_head.weight"], True))

expected_names = set()
word_mismatch = scale_mismatch = float_mismatch = 0
words = 0
for name, parts, quantized in params:
    w = fused(parts).astype(model_dtype)
    if quantized:
        expected_names |= {name + ".q_weight", name + ".q_scale"}
        qw, qs = gq.quantize_weight(tvm.runtime.tensor(w, cpu))
        qw, qs = qw.numpy(), qs.numpy()
        got_w, got_s = py_params[name + ".q_weight"].numpy(), py_params[name + ".q_scale"].numpy()
        if model_dtype == "float32":
            qs = bf16_stored(qs)
        words += qw.size
        if qw.shape != got_w.shape or not np.array_equal(qw, got_w):
            word_mismatch += 1
            print(f"  {name}.q_weight differs: {int((qw != got_w).sum()) if qw.shape == got_w.shape else 'shape'}")
        if qs.shape != got_s.shape or not np.array_equal(qs.view(np.uint8), got_s.view(np.uint8)):
            scale_mismatch += 1
            print(f"  {name}.q_scale differs")
    else:
        expected_names.add(name)
        want = bf16_stored(w) if model_dtype == "float32" else w
        got = py_params[name].numpy()
        if want.shape != got.shape or not np.array_equal(want.view(np.uint8), got.view(np.uint8)):
            float_mismatch += 1
            print(f"  {name} differs")
extra = set(names) - expected_names
missing = expected_names - set(names)
print(f"MLC's GroupQuantize on the source: {len([p for p in params if p[2]])} quantized parameters ({words} words), "
      f"{len([p for p in params if not p[2]])} float; q_weight mismatches {word_mismatch}, q_scale mismatches {scale_mismatch}, "
      f"float mismatches {float_mismatch}, missing {sorted(missing)}, unexpected {sorted(extra)}")
ok = same and word_mismatch == scale_mismatch == float_mismatch == 0 and not extra and not missing
print("OK" if ok else "FAILED")
sys.exit(0 if ok else 1)
