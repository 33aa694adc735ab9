"""Reference logits from transformers (f32, CPU) for qkit's forward pass.

Writes Tests/CommonTests/Fixtures/model/<family>/{config.json,model.safetensors,reference.safetensors}:
tiny random models of each supported family (fixed seeds) and the logits transformers computes for a
batch of two id sequences. Run with the peer venv (shared/tools/peers.sh):
    ~/.cache/qkit-peers/venv/bin/python Tests/peer-checks/model_reference.py
and, for the real model, `--smollm2 DIR` writes smollm2-reference.safetensors (selected columns only).
"""
import json, os, sys
import torch
from safetensors.torch import save_file
from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM,
                          Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM)

OUT = os.path.join(os.path.dirname(__file__), "..", "CommonTests", "Fixtures", "model")
torch.set_num_threads(1)

common = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, vocab_size=320, max_position_embeddings=256, rms_norm_eps=1e-5)

def families():
    yield "llama3", LlamaForCausalLM, LlamaConfig(**common, tie_word_embeddings=True, rope_parameters={
        "rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 16})
    yield "llama-linear", LlamaForCausalLM, LlamaConfig(**common, tie_word_embeddings=False, head_dim=32,
        rope_parameters={"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0})
    yield "llama-dynamic", LlamaForCausalLM, LlamaConfig(**{**common, "max_position_embeddings": 16},
        rope_parameters={"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0})
    yield "qwen2", Qwen2ForCausalLM, Qwen2Config(**common, tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})
    yield "qwen3", Qwen3ForCausalLM, Qwen3Config(**common, head_dim=16, tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})
    yield "mistral", MistralForCausalLM, MistralConfig(**common, sliding_window=8, tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0})

def ids(vocab, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (2, 40), generator=g)

def tiny():
    for i, (name, cls, cfg) in enumerate(families()):
        torch.manual_seed(1234 + i)
        cfg.attn_implementation = "eager"
        model = cls(cfg).float().eval()
        # Random init leaves norms at 1 and biases at 0: perturb them so they are really exercised.
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "norm" in n or n.endswith(".bias"):
                    p.add_(torch.randn_like(p) * 0.2)
                else:
                    p.mul_(2.5)
        d = os.path.join(OUT, name)
        os.makedirs(d, exist_ok=True)
        model.save_pretrained(d, safe_serialization=True)
        x = ids(cfg.vocab_size, 99 + i)
        with torch.no_grad():
            logits = model(x).logits.float()
        save_file({"input_ids": x.to(torch.int32).contiguous(), "logits": logits.contiguous()},
                  os.path.join(d, "reference.safetensors"))
        for f in os.listdir(d):
            if f not in ("config.json", "model.safetensors", "reference.safetensors"):
                os.remove(os.path.join(d, f))
        print(name, tuple(logits.shape), float(logits.abs().max()))

def smollm2(path):
    """Logits of SmolLM2 on the first 128 tokens of pydoc-tutorial.txt: per position the log-sum-exp over
    the vocabulary, the top-5 ids and logits, and 64 fixed columns; plus the NLL of each next token."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    torch.set_num_threads(2)
    tok = AutoTokenizer.from_pretrained(path)
    corpus = os.path.expanduser("~/.cache/qkit-assets/corpora/pydoc-tutorial.txt")
    text = open(corpus, encoding="utf-8").read()
    x = torch.tensor([tok(text, add_special_tokens=False)["input_ids"][:128]])
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").eval()
    with torch.no_grad():
        logits = model(x).logits[0].float()
    cols = torch.arange(0, 49152, 768)
    top = logits.topk(5, dim=-1)
    lse = torch.logsumexp(logits, dim=-1)
    nll = (lse[:-1] - logits[:-1].gather(1, x[0, 1:, None])[:, 0])
    save_file({"input_ids": x[0].to(torch.int32).contiguous(), "logsumexp": lse.contiguous(),
               "top_ids": top.indices.to(torch.int32).contiguous(), "top_logits": top.values.contiguous(),
               "columns": cols.to(torch.int32).contiguous(), "column_logits": logits[:, cols].contiguous(),
               "nll": nll.contiguous()},
              os.path.join(OUT, "smollm2-reference.safetensors"))
    print("smollm2 mean nll", float(nll.mean()))

if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--smollm2":
        smollm2(sys.argv[2])
    else:
        tiny()
