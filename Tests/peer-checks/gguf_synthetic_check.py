#!/usr/bin/env python3
"""Peer check of qpack's GGUF import on synthetic models that the real asset does not cover:
a qwen2 model (biases, no q/k permutation, Qwen2 pre-tokenizer) and a llama model with a SentencePiece
("llama") vocabulary that has scores but no merges. Both GGUFs are written here with gguf-py; transformers
loads the same GGUF (gguf_file=...) as the reference.
Usage: python gguf_synthetic_check.py QPACK CORPUS WORKDIR"""
import json, os, subprocess, sys
import numpy as np, torch, gguf
from tokenizers import Tokenizer, models, pre_tokenizers, trainers, decoders, Regex
from transformers import AutoModelForCausalLM, AutoTokenizer

qpack, corpus, work = sys.argv[1:4]
os.makedirs(work, exist_ok=True)
text = open(corpus, encoding="utf-8").read()
rng = np.random.default_rng(0)
failed = False
H, NH, NKV, FF, L = 64, 4, 2, 96, 2

def weights(w, arch, vocab, bias):
    def t(name, shape, qtype=gguf.GGMLQuantizationType.F32):
        a = (rng.standard_normal(shape) * 0.05).astype(np.float32)
        if qtype != gguf.GGMLQuantizationType.F32:
            a = gguf.quants.quantize(a, qtype)
        w.add_tensor(name, a, raw_dtype=qtype)
    Q8, Q4 = gguf.GGMLQuantizationType.Q8_0, gguf.GGMLQuantizationType.Q4_1
    t("token_embd.weight", (vocab, H), Q8)
    t("output_norm.weight", (H,))
    t("output.weight", (vocab, H), Q4)
    for l in range(L):
        t(f"blk.{l}.attn_norm.weight", (H,)); t(f"blk.{l}.ffn_norm.weight", (H,))
        t(f"blk.{l}.attn_q.weight", (H, H), Q4); t(f"blk.{l}.attn_k.weight", (H // NH * NKV, H), Q8)
        t(f"blk.{l}.attn_v.weight", (H // NH * NKV, H), Q4); t(f"blk.{l}.attn_output.weight", (H, H), Q8)
        if bias:
            t(f"blk.{l}.attn_q.bias", (H,)); t(f"blk.{l}.attn_k.bias", (H // NH * NKV,)); t(f"blk.{l}.attn_v.bias", (H // NH * NKV,))
        t(f"blk.{l}.ffn_gate.weight", (FF, H), Q4); t(f"blk.{l}.ffn_up.weight", (FF, H), Q8); t(f"blk.{l}.ffn_down.weight", (H, FF), Q4)

def header(w, arch, vocab):
    w.add_name("synthetic"); w.add_block_count(L); w.add_context_length(512); w.add_embedding_length(H)
    w.add_feed_forward_length(FF); w.add_head_count(NH); w.add_head_count_kv(NKV); w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-6); w.add_vocab_size(vocab)

def qwen2():
    tok = Tokenizer(models.BPE())
    qre = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(qre), "isolated"), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.train_from_iterator([text], trainers.BpeTrainer(vocab_size=1200, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    j = json.loads(tok.to_str())
    vocab = sorted(j["model"]["vocab"].items(), key=lambda kv: kv[1])
    tokens = [k for k, _ in vocab] + ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    merges = [" ".join(m) if isinstance(m, list) else m for m in j["model"]["merges"]]
    path = f"{work}/qwen2.gguf"
    w = gguf.GGUFWriter(path, "qwen2")
    header(w, "qwen2", len(tokens))
    w.add_tokenizer_model("gpt2"); w.add_tokenizer_pre("qwen2"); w.add_token_list(tokens)
    w.add_token_types([1] * (len(tokens) - 3) + [3, 3, 3]); w.add_token_merges(merges)
    w.add_eos_token_id(len(tokens) - 1); w.add_bos_token_id(len(tokens) - 3); w.add_pad_token_id(len(tokens) - 3)
    w.add_add_bos_token(False); w.add_chat_template("{% for m in messages %}<|im_start|>{{ m['content'] }}<|im_end|>{% endfor %}")
    weights(w, "qwen2", len(tokens), bias=True)
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    return path

def llama_spm():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.train_from_iterator([text], trainers.BpeTrainer(vocab_size=900, show_progress=False))
    j = json.loads(tok.to_str())
    learned = [k for k, _ in sorted(j["model"]["vocab"].items(), key=lambda kv: kv[1])]
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + learned
    scores = [0.0] * 259 + [-float(i) for i in range(len(learned))]
    types = [2, 3, 3] + [6] * 256 + [1] * len(learned)
    path = f"{work}/llama-spm.gguf"
    w = gguf.GGUFWriter(path, "llama")
    header(w, "llama", len(tokens)); w.add_rope_dimension_count(H // NH)
    w.add_tokenizer_model("llama"); w.add_token_list(tokens); w.add_token_scores(scores); w.add_token_types(types)
    w.add_bos_token_id(1); w.add_eos_token_id(2); w.add_unk_token_id(0); w.add_add_bos_token(True); w.add_add_space_prefix(True)
    weights(w, "llama", len(tokens), bias=False)
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    return path

for make in (qwen2, llama_spm):
    path = make()
    out = path[:-5] + "-hf"
    subprocess.run(["rm", "-rf", out]); subprocess.run([qpack, path, "--to", "safetensors", "-o", out], check=True)
    print(f"== {os.path.basename(path)}")
    ref = AutoModelForCausalLM.from_pretrained(work, gguf_file=os.path.basename(path), dtype=torch.float32)
    ours = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    sa, sb = ours.state_dict(), ref.state_dict()
    same = sum(1 for k in sb if k in sa and sa[k].shape == sb[k].shape and torch.equal(sa[k], sb[k]))
    print(f"  state_dict tensors bit-identical to transformers' GGUF load: {same}/{len(sb)}", "" if same == len(sb) else
          [k for k in sb if not (k in sa and torch.equal(sa[k], sb[k]))][:5])
    failed |= same != len(sb)
    rt = AutoTokenizer.from_pretrained(work, gguf_file=os.path.basename(path))
    ot = Tokenizer.from_file(f"{out}/tokenizer.json")
    sample = text[:60000]
    a, b = ot.encode(sample, add_special_tokens=False).ids, rt(sample, add_special_tokens=False).input_ids
    print(f"  tokenizer (no special tokens): ours {len(a)} ids, transformers {len(b)} ids, identical: {a == b}")
    print(f"  with special tokens, first ids: ours {ot.encode('Hi').ids}, transformers {rt('Hi').input_ids}"
          " (the GGUF's add_bos_token is honoured by qpack, as llama.cpp does)")
    if a != b:
        i = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        print("   first difference at", i, a[max(0, i - 3):i + 5], b[max(0, i - 3):i + 5])
    failed |= a != b
    ids = torch.tensor([b[:24]])
    with torch.no_grad():
        d = (ours(ids).logits - ref(ids).logits).abs().max().item()
    print(f"  logits max |ours - transformers| = {d}")
    failed |= d != 0.0
print("RESULT:", "FAIL" if failed else "PASS")
sys.exit(1 if failed else 0)
