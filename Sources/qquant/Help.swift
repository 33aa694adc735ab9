/// `qquant --help`'s long text (also the DESCRIPTION of man/qquant.1, generated from it).
extension Qquant {
    static let discussion = """
            Algorithms: the data-free rtn (round to nearest, optionally with an MSE clipping search, --clip mse) \
            and hqq (half-quadratic, float zero points); the calibrated awq, gptq, smoothquant, qoq and \
            svdquant, which run calibration text through the model on the CPU, one decoder block at a time (omniquant exits \
            with status 69 until it lands).

            CALIBRATION: --data FILE (text, tokenized with the model's tokenizer; with --chat each line or JSONL \
            record is rendered through the model's chat template first) or --ids FILE (as qeval --tokenize \
            prints), cut into --samples windows of --seqlen tokens (default 128 x 512): the first ones \
            (--sampling first) or at random starts drawn with --seed. Block by block: the block's weights are \
            read, the algorithm observes the inputs of its linears over all calibration tokens, transforms and \
            quantizes it, and the hidden states move on to the next block. Memory is one block's weights plus \
            the calibration activations (tokens x hidden f32, and a batch's temporaries, --batch-tokens). A line \
            per block with its time and an ETA goes to standard error (not with -q).

            awq (default int4, asymmetric, g128): per block one full-precision forward gathers mean |x| and the \
            Gram matrix sum(x^T x)/T of every linear input; for q/k/v, o_proj, gate/up and down_proj a 20-point \
            grid of scales s = mean|x|^r (r = i/20, --duo-scaling: mean|x|^r / mean|w|^(1-r)), normalized by \
            sqrt(max s * min s), is searched for the least output error of Q(W*s)/s, computed exactly over every \
            token from the Gram matrix; the scale is folded into input_layernorm, v_proj (one scale per value \
            channel under grouped-query attention), post_attention_layernorm and up_proj (biases too). Then a \
            clipping search (ranges shrunk by up to 50%, least partial-product error; q_proj and k_proj \
            skipped; --no-clip-search) and the weights are quantized. The next block sees the full-precision \
            output.

            gptq (default int4, symmetric, g128): true-sequential within each block, every linear's Hessian \
            H = 2/n sum x^T x taken from the inputs the already-quantized linears before it produce (q/k/v, then \
            o_proj, then gate/up, then down_proj); dampening --damp times the mean diagonal (raised \
            automatically when the Cholesky factorization fails), lazy batch updates of --block-size columns, \
            --act-order (columns by decreasing diag H, static groups: no g_idx); the next block sees the \
            quantized block's output. The group scales are fixed before the column loop from the original \
            weight: its range (llm-compressor's minmax, the default) or, with --clip mse, the MSE clipping \
            search's (better perplexity for a few seconds more per block).

            smoothquant (default int8 per channel, W8A8): s = max|x|^alpha / max|W|^(1-alpha) (--alpha, 0.5) \
            folded into input_layernorm (q/k/v) and post_attention_layernorm (gate/up); the recipe records \
            per-token dynamic int8 activations (--abits), which qeval simulates; --static-activations instead \
            stores one scale per linear input, P.input_scale = 2*max|x|/(2^abits - 1) over the calibration \
            tokens of the (smoothed) input. With --stats FILE (a qcalib statistics file, - for a pipe) it needs \
            no calibration data.

            ROTATION (QuaRot): --rotate first rewrites the model into an equivalent rotated one and then \
            quantizes that with any algorithm (rtn, hqq, gptq, awq, smoothquant; --fake too): RMSNorm weights \
            folded into the linears they feed and set to 1, tied embeddings untied (lm_head written), the \
            residual stream rotated by Q = diag(s) H / sqrt(hidden) (H Hadamard, s random signs from \
            --rotate-seed), a Hadamard per head between v_proj and o_proj. All of it is free at run time (an \
            ordinary model). --rotate-online also multiplies down_proj by a Hadamard of the FFN width, which the \
            runtime must apply to down_proj's input (recorded in config.json as qkit_rotation.online; qeval \
            does it; not with awq). The rotated float model is staged in .DIR.qkit-rotated beside the output \
            (the linears to quantize in f32) and removed at the end; --algo none writes just the rotated model \
            (in its dtype or --dtype). Hadamard orders are 2^k times 1 or a Paley order (12, 20, 28, 36, 40, \
            52, 60, 108, 140, ...); a size without one (e.g. 156, 172) exits 69 naming its factorization. \
            Rotation is what makes low-bit activations (--abits 4) usable.

            qoq (QServe's W4A8KV4; default int4, asymmetric, g128 on the progressive grid int4:g128:asym:prog, \
            --group channel for int4 per channel): per block one full-precision forward gathers the post-RoPE \
            key maxima and the input maxima of o_proj and down_proj; SmoothAttention scales every key channel \
            by 1/sqrt(max|K|) and the matching query channels by sqrt(max|K|) (RoPE pairs and the query heads of \
            a KV group share one; Qwen3's q_norm/k_norm take it); the input channels of down_proj (with \
            gate/up rows) and of o_proj (within heads, with v_proj rows) are reordered by decreasing maximum; \
            down_proj is smoothed (s = max|x|^0.3 / max|W|^0.7, per channel 0.1/0.9) into up_proj; then GPTQ \
            (--damp, --block-size, --act-order) on the grid. Every transform is exact in float. The recipe \
            records int8 per-token activations (--abits) and a KV4 cache (--kvbits; 16 for a float cache), \
            which qeval simulates. The progressive grid: a per-row F32 scale to the int8 range [-119, 119], \
            then uint4 per group with integer (I8) scales and U8 zeros whose grid dequantizes into int8 (man 5 \
            qkit). With --rotate, QServe's residual-stream rotation comes first.

            --abits B and --kvbits 4|8 go with any algorithm: they only record activation_format (int B per \
            token, dynamic) and kv_cache_format (asymmetric int per head per token, dynamic), which qeval \
            simulates.

            --kv-cache fp8|intB (B 2 to 8) calibrates a static KV cache instead: per layer the absolute maximum \
            of the keys (after the q/k norms and RoPE, as the cache stores them) and of the values over the \
            calibration tokens, over the layer (--kv-granularity tensor, vLLM's k_scale/v_scale) or each KV head \
            (head), gives s = absmax/448 for FP8 E4M3 (llm-compressor's and vLLM's rule) or absmax/(2^(B-1)-1) \
            for symmetric INT; written as model.layers.N.self_attn.k_scale and v_scale (F32, [1] or [kv_heads]) \
            with a static kv_cache_format record, which qeval simulates and qpack --to compressed-tensors exports \
            (fp8) as kv_cache_scheme. With awq, gptq, smoothquant and qoq (--data/--ids) the keys and values are \
            measured on each block as stored, after the algorithm (quantized weights, smoothing, QoQ's \
            SmoothAttention, which changes the keys) and on the calibration input that block received; with \
            --stats (smoothquant, rtn, hqq) and with --data/--ids for the data-free rtn and hqq they are the float \
            model's (one extra forward pass). Not with svdquant; excludes --kvbits.

            svdquant (W4A4: int4 symmetric g64, or --format nvfp4; --abits 4, or 16 for float activations): \
            per block one full-precision forward gathers max|x| per channel and --loss-tokens subsampled \
            token rows of every linear input; q/k/v, o_proj, gate/up and down_proj are decomposed (q/k/v and \
            gate/up together: one smoothing, one lora_down). Smoothing lambda = max|x|^a / max|W|^b over \
            (a, 0) and (a, 1-a), a = i/--grid, each scored by the layer-output error with its rank --rank \
            branch L = SVD_r(W*lambda) (LAPACK, f64; randomized above 256) and 4-bit weights and activations \
            in the loop; then L = SVD_r(W*lambda - R), R = Q(W*lambda - L) up to --iterations times, stopping \
            at the first that does not improve; --gptq runs GPTQ on the residual (kept when better). The \
            output stores P.smooth (F32), P.lora_down [R, K] and P.lora_up [N, R] (BF16, F16 for a float16 \
            model) beside the residual's codes, and the activation format; qeval computes \
            Q_a(x/smooth)*R^T + (x*lora_down^T)*lora_up^T. Without --data it runs data-free (smoothing off, \
            the weight error as loss). qpack --to nunchaku packs it.

            DIFFUSION TRANSFORMERS: a diffusers transformer (MODEL is its directory, config.json with _class_name \
            FluxTransformer2DModel, SanaTransformer2DModel or PixArtTransformer2DModel beside \
            diffusion_pytorch_model.safetensors or its index, or a pipeline root with model_index.json and \
            transformer/) is quantized on the weight side only, no forward pass: rtn, hqq (any format) or svdquant. \
            The family's block linears are selected as deepcompressor's configurations do: FLUX.1 every linear of \
            the dual- and single-stream blocks (attention q/k/v, added q/k/v, outputs, feed-forwards, proj_mlp, \
            proj_out, and the AdaLN modulation norm1.linear, norm1_context.linear, norm.linear); SANA and \
            PixArt-Sigma the self-attention q/k/v and output, the cross-attention query and output, the \
            feed-forward up and down (SANA's 1x1 convolutions conv_inverted/conv_point as [N, K] linears); \
            embedders, proj_in/proj_out, norms, the cross-attention k/v (text side) and SANA's depthwise \
            convolution stay in float (--rule may select them). q/k/v (FLUX's added q/k/v too) are quantized \
            together: one NVFP4 global scale, one smoothing and one low-rank branch. svdquant here is per linear: \
            smoothing from --stats FILE (per-channel input maxima P.input.absmax for every selected linear, P the \
            diffusers module name; a missing one exits 65) over --grid, or none without --stats (data-free); a \
            rank --rank branch refined up to --iterations times; INT4 g64 or NVFP4 residual; the AdaLN linears \
            get RTN only (weight-only in Nunchaku). The output is a diffusers directory: config.json with \
            quantization_config (diffusion family and class, weight_shapes of quantized 1x1 convolutions) and \
            diffusion_pytorch_model.safetensors. An unknown _class_name exits 69 naming the supported ones; a \
            config.json that does not match the tensors exits 65; awq, gptq and smoothquant exit 69.

            RESUME: after each block its tensors, the hidden states entering the next block and the command's \
            key are kept in .DIR.qkit-progress beside the output. Rerunning the same command after a kill \
            continues after the last finished block and writes the same bytes as an uninterrupted run (a \
            changed command starts over; --restart forces it; --resume fails unless there is progress to \
            continue). Results do not depend on the number of threads (QKIT_THREADS=1 gives the same bytes).

            By default every linear weight inside the decoder blocks (model.layers.N.*_proj.weight, MoE \
            experts too) is quantized with the scheme the options describe; embeddings, norms and lm_head \
            are copied unchanged. --rule REGEX=SCHEME overrides the scheme of the tensors whose name \
            contains a match (first matching rule wins; it may also select other tensors, e.g. lm_head); \
            --skip REGEX keeps matching tensors whatever the rules say.

            SCHEME is keep, or FORMAT[:OPTION]... with FORMAT one of int2..int8, fp8, fp8e5m2, fp4, nvfp4, \
            mxfp4, mxfp8 and OPTIONs gN (groups of N along the input dimension), ch (per output channel), \
            tensor, sym, asym, rtn, mse, hqq, prog (QServe's progressive grid, int2..int4 asym groups). \
            Examples: int4:g64:asym, int8:ch, int3:g64:hqq, fp8, nvfp4, int4:g128:prog.

            The output is a qkit checkpoint (man 5 qkit): P.weight becomes P.weight_q (codes, one per \
            element), P.weight_scale and, as the format needs, P.weight_zero_point and \
            P.weight_global_scale; every other tensor and file is copied byte for byte; config.json gains \
            quantization_config (quant_method qkit). With --fake the weights are written dequantized, in \
            their source dtype or --dtype: a plain model any tool loads. The output directory is staged \
            under a hidden name beside DIR and renamed into place at the end: a failed or killed run leaves \
            no DIR.

            Formats (stored codes, scale, default granularity): int2..int8 sym: I8 codes in [-2^(b-1), \
            2^(b-1)-1], F32 scale 2*absmax/(2^b-1), g128 (the GPTQ reference and compressed-tensors \
            convention); int2..int8 asym: U8 codes in [0, 2^b-1], F32 scale (max-min)/(2^b-1), U8 zero point; \
            fp8 (E4M3) and fp8e5m2: FP8 codes, F32 scale absmax/448 or absmax/57344, per channel; fp4: E2M1 \
            codes (U8), F32 scale absmax/6, g32; nvfp4: E2M1 codes, g16, F8_E4M3 scales, F32 global scale \
            448*6/amax(tensor) that divides (compressed-tensors); mxfp4, mxfp8: E2M1 or E4M3 codes, g32, \
            E8M0 scales 2^(floor(log2 amax) - 2 or 8) (OCP MX v1.0). Rounding is to nearest, ties to even. \
            hqq is asymmetric with F32 zero points (p = 0.7, beta 10, kappa 1.01, 20 iterations, stops when \
            the mean |W - W'| of the tensor stops improving).

            Examples:
              qquant model/ --group 64 -o model-w4g64/
              qquant model/ --algo hqq --wbits 3 --group 64 -o model-hqq3/
              qquant model/ --format nvfp4 --rule 'down_proj=fp8' -o model-nvfp4/
              qquant model/ --group channel --clip mse --fake --dtype bf16 -o fake/
              qquant model/ --rules rules.txt --skip 'layers\\.0\\.' -o mixed/ --json
              qquant model/ --algo gptq --group 64 --act-order --data howto.txt --samples 32 --sampling first -o model-gptq/
              qquant model/ --algo awq --group 64 --data pile.txt -o model-awq/
              qcalib model/ --data pile.txt -o - | qquant model/ --algo smoothquant --stats - -o model-w8a8/
              qquant model/ --rotate --group channel --abits 8 -o model-rot-w4a8/
              qquant model/ --algo gptq --rotate-online --group 64 --data howto.txt -o model-rot-gptq/
              qquant model/ --algo none --rotate -o model-rotated/
              qquant model/ --algo qoq --data howto.txt --samples 32 --sampling first -o model-w4a8kv4/
              qquant model/ --group 128 --rule '_proj=int4:g128:prog' --abits 8 --kvbits 4 -o model-rtn-w4a8kv4/
              qquant model/ --algo gptq --group 64 --data howto.txt --kv-cache fp8 -o model-gptq-fp8kv/ && qpack model-gptq-fp8kv/ --to compressed-tensors -o ct/
              qquant model/ --group 64 --kv-cache int8 --kv-granularity head --stats stats.safetensors -o model-rtn-kv8/
              qquant model/ --algo svdquant --data howto.txt --samples 32 --sampling first -o model-svdq/
              qquant model/ --algo svdquant --format nvfp4 --gptq --data howto.txt -o model-svdq-fp4/
              qquant FLUX.1-dev/ --algo svdquant -o flux-svdq/ && qpack flux-svdq/ --to nunchaku -o flux-nunchaku/
              qquant sana/transformer/ --algo svdquant --stats sana-stats.safetensors --format nvfp4 -o sana-svdq/
              qeval model-w4g64/ --data text.txt --ref model/

            A rules file holds one REGEX=SCHEME per line (split at the last '='); blank lines and lines \
            starting with # are ignored; a bad line is reported as FILE:LINE and exits 64.

            Exit status: 0 done; 64 usage (unknown format or algorithm, a group that does not divide K, a \
            bad rule, a calibrated option without a calibrated algorithm, --rotate-online with awq); 65 bad input (a selected weight that \
            is not floating point, an input that is already a qkit checkpoint, a malformed checkpoint, too few \
            calibration tokens, a model already rotated); 66 no input (or nothing to --resume); 69 not available \
            yet, unsupported model family, or no Hadamard matrix of a size --rotate needs; 73 cannot create \
            the output; 74 read or write failure (e.g. a full disk). See man 5 qkit for the output layout.
            """
}
