"""transformers f32 on torch CPU: tokens/s of the perplexity forward pass (logits + NLL) on the same
windows qeval uses. Prints one JSON line per window length. Used by scripts/bench-forward.sh."""
import json, sys, time, os
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

model_dir, text_path = sys.argv[1], sys.argv[2]
lengths = [int(x) for x in sys.argv[3].split(",")]
windows = int(sys.argv[4])
reps = int(sys.argv[5]) if len(sys.argv) > 5 else 1
torch.set_num_threads(int(os.environ.get("THREADS", os.cpu_count())))
tok = AutoTokenizer.from_pretrained(model_dir)
ids = tok(open(text_path, encoding="utf-8").read(), add_special_tokens=False, return_tensors="pt").input_ids
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
for L in lengths:
    n = min(windows, ids.shape[1] // L)
    with torch.inference_mode():
        model(ids[:, :L])  # warm-up
        dt = 1e9
        for _ in range(reps):  # best of reps
            t0 = time.perf_counter()
            nll = 0.0
            for i in range(n):
                x = ids[:, i * L:(i + 1) * L]
                logits = model(x).logits.float()
                nll += torch.nn.functional.cross_entropy(logits[0, :-1], x[0, 1:]).item()
            dt = min(dt, time.perf_counter() - t0)
    print(json.dumps({"seqlen": L, "windows": n, "seconds": dt, "tokens_per_second": n * L / dt,
                      "ppl": float(torch.exp(torch.tensor(nll / n))), "attn": model.config._attn_implementation}), flush=True)
