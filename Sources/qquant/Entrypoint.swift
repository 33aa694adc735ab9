#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Common

@main
struct Qquant: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qquant",
        abstract: "Quantize a checkpoint's weights into a qkit checkpoint (or fake-quantize them).",
        discussion: """
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
            quantized block's output.

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
            """)

    @Argument(help: "Model directory (Hugging Face layout, float safetensors).")
    var model: String

    @Option(help: "Algorithm: rtn, hqq, awq, gptq, smoothquant, qoq, svdquant, or none (with --rotate: the rotated float model only).")
    var algo: String = "rtn"

    @Option(help: "Weight bits for --format int (2 to 8; default 4).")
    var wbits: Int?

    @Option(help: "Group size along the input dimension: N, channel, or tensor (default: the format's, 128 for int).")
    var group: String?

    @Flag(name: .customLong("sym"), help: "Symmetric integers (the default for rtn).")
    var symmetric = false

    @Flag(name: .customLong("asym"), help: "Asymmetric integers with a zero point (the default for hqq).")
    var asymmetric = false

    @Option(help: "Number format: int, fp8, fp8e5m2, fp4, nvfp4, mxfp4, mxfp8.")
    var format: String = "int"

    @Option(help: "Range search for rtn: none or mse (shrink the range by up to 20%, least |error|^2.4).")
    var clip: String = "none"

    @Option(name: .customLong("rule"), help: "REGEX=SCHEME: the scheme of the tensors whose name matches (repeatable).")
    var rules: [String] = []

    @Option(name: .customLong("rules"), help: "A file of REGEX=SCHEME lines (# comments), applied after the --rule options.")
    var rulesFile: String?

    @Option(name: .customLong("skip"), help: "Keep the tensors whose name matches REGEX unquantized (repeatable).")
    var skips: [String] = []

    @Flag(help: "Write dequantized weights (a plain float model) instead of codes and scales.")
    var fake = false

    @Option(help: "Element type of --fake weights: f32, f16 or bf16 (default: the source dtype).")
    var dtype: String?

    @Option(name: .customLong("max-shard-size"), help: "Largest output shard in bytes of tensor data (e.g. 5GB, 500MB).")
    var maxShardSize: String = "5GB"

    @Option(help: "Activation bits, recorded for qeval to simulate: per-token dynamic symmetric INT, 2 to 8, with any algorithm (smoothquant and qoq: 8 by default); svdquant 4 (the default: INT4 groups of 64, or NVFP4 with --format nvfp4) or 16 (float activations).") var abits: Int?
    @Option(help: "KV-cache bits: 4 or 8 (asymmetric INT per head per token, dynamic, recorded for qeval to simulate), 16 for a float cache (qoq: 4 by default).") var kvbits: Int?

    @OptionGroup var calibration: CalibrationDataOptions
    @Option(help: "Statistics file from qcalib (- for standard input): smoothquant then needs no --data.") var stats: String?

    @Flag(name: .customLong("act-order"), help: "gptq, qoq: process columns by decreasing Hessian diagonal (static groups: no g_idx).") var actOrder = false
    @Option(help: "gptq, qoq: dampening, as a fraction of the Hessian's mean diagonal.") var damp: Float = 0.01
    @Option(name: .customLong("block-size"), help: "gptq, qoq: columns per lazy-update block.") var blockSize = 128
    @Option(help: "smoothquant: migration strength alpha.") var alpha: Float = 0.5
    @Flag(name: .customLong("static-activations"), help: "smoothquant: one calibrated activation scale per linear input (P.input_scale) instead of per-token dynamic scales.") var staticActivations = false
    @Flag(name: .customLong("duo-scaling"), help: "awq: scale by mean|x|^r / mean|w|^(1-r) (AutoAWQ's duo_scaling) instead of mean|x|^r.") var duoScaling = false
    @Flag(name: .customLong("no-clip-search"), help: "awq: skip the clipping search.") var noClipSearch = false
    @Option(help: "svdquant: rank of the 16-bit low-rank branch (0: none; with --grid 0, plain RTN W4A4).") var rank = 32
    @Option(help: "svdquant: smoothing grid, alpha = i/N (0: no smoothing).") var grid = 20
    @Option(help: "svdquant: most SVD/quantization refinement iterations.") var iterations = 100
    @Option(name: .customLong("loss-tokens"), help: "svdquant: calibration tokens (subsampled) scoring each candidate.") var lossTokens = 1024
    @Flag(help: "svdquant: GPTQ on the 4-bit residual (--damp, --block-size, --act-order apply).") var gptq = false
    @Option(name: .customLong("batch-tokens"), help: "Calibration tokens per forward batch (bounds the temporaries of a block).") var batchTokens = 16384
    @Flag(help: "Rotate the model first (QuaRot, offline and free at run time): RMSNorm weights folded, embeddings untied, a randomized Hadamard on the residual stream, a Hadamard per head between v_proj and o_proj.") var rotate = false
    @Option(name: .customLong("rotate-seed"), help: "Seed of the residual rotation's random signs (default: a fixed seed).") var rotateSeed: UInt64?
    @Flag(name: .customLong("rotate-online"), help: "--rotate plus the online Hadamard before down_proj: its weights multiplied by H, its input transformed at run time (recorded in config.json; qeval does it, other runtimes must).") var rotateOnline = false
    @Flag(help: "Fail unless an interrupted run of this command left progress to continue.") var resume = false
    @Flag(help: "Discard the progress of an interrupted run of this command and start over.") var restart = false

    @Option(name: .shortAndLong, help: "Output directory.")
    var output: String

    @Flag(name: .long, help: "Print a JSON summary of what was done on standard output.")
    var json = false

    @Flag(name: .shortAndLong, help: "Print one line per quantized tensor on standard error.")
    var verbose = false

    @Flag(name: .shortAndLong, help: "Print nothing but errors.")
    var quiet = false

    /// The calibrated algorithms (`--algo` names).
    static let calibrated = ["awq", "gptq", "smoothquant", "qoq", "svdquant"]

    var isCalibrated: Bool { Self.calibrated.contains(algo.lowercased()) }

    var rotating: Bool { rotate || rotateOnline }

    func run() throws {
        // SVDQuant's weight side on a diffusers transformer (FLUX.1, SANA, PixArt-Σ): per linear, no forward pass.
        let diffusionSVD = algo.lowercased() == "svdquant" && DiffusionTransformers.isDiffusers(path: model)
        if ["omniquant", "quarot"].contains(algo.lowercased()) {
            throw notAvailableYet("qquant", "--algo \(algo) is not available yet; use rtn, hqq, awq, gptq, smoothquant, qoq or svdquant (--rotate for QuaRot)")
        }
        if isCalibrated && !diffusionSVD && DiffusionTransformers.isDiffusers(path: model) {
            writeStandardError("qquant: \(model): --algo \(algo) runs the decoder forward pass; a diffusion transformer takes rtn, hqq or svdquant (weight side)\n")
            throw ExitCode(69)
        }
        // A file-size limit must fail the write (exit 74, output removed), not kill the process.
        signal(SIGXFSZ, SIG_IGN)
        try runTool("qquant") {
            let svdquant = algo.lowercased() == "svdquant"
            if let abits, !(2...8).contains(abits), !(svdquant && abits == 16) { throw UsageError("--abits: integer activations are 2 to 8 bits") }
            if rotateSeed != nil && !rotating { throw UsageError("--rotate-seed goes with --rotate") }
            if !svdquant && gptq { throw UsageError("--gptq goes with --algo svdquant (use --algo gptq)") }
            if algo.lowercased() == "none" { return try writeRotated() }
            if !isCalibrated {
                for (flag, given) in [("--data", calibration.data != nil), ("--ids", calibration.ids != nil), ("--stats", stats != nil),
                                      ("--act-order", actOrder), ("--static-activations", staticActivations), ("--chat", calibration.chat), ("--resume", resume)] where given {
                    throw UsageError("\(flag) goes with a calibrated algorithm (--algo awq, gptq, smoothquant, qoq or svdquant), not \(algo)")
                }
            }
            var options = QuantizeOptions(recipe: try recipe())
            options.fake = fake
            // Rotation: the rotated float model is written beside the output (quantized linears in f32, the rest
            // in its dtype) and quantized like any model; the recipe records the rotation.
            var source = model
            var staging: String?
            defer { if let staging { removeTree(staging) } }
            if rotating {
                if stats != nil { throw UsageError("--stats holds statistics of the unrotated model; calibrate the rotated one with --data/--ids") }
                if rotateOnline && algo.lowercased() == "awq" {
                    throw UsageError("--rotate-online does not go with awq (its down_proj scales cannot be folded through the online Hadamard); use --rotate")
                }
                let original = try Checkpoint(path: model)
                if fake && dtype == nil, let d = original.tensors.first(where: { QuantRecipe.isDecoderLinear($0.name) })?.encoding,
                   case .dtype(let t) = d { options.fakeDType = t }
                let path = Self.hiddenPath(beside: output, suffix: "qkit-rotated")
                removeTree(path)
                staging = path
                let recipe = options.recipe
                let (rotated, seconds) = try rotateModel(original, to: path) { name, d, shape in recipe.scheme(for: name, shape: shape) != nil ? .f32 : d }
                options.recipe.record["rotation"] = rotated.record
                if !quiet { logLine("qquant: rotated \(model) (hidden \(rotated.residual.order) = \(rotated.residual.description)) in \(fixedDecimals(seconds, 2)) s") }
                source = path
            }
            if let dtype {
                guard fake else { throw UsageError("--dtype applies to --fake output only") }
                guard let d = ["f32": DType.f32, "f16": .f16, "bf16": .bf16][dtype.lowercased()] else {
                    throw UsageError("--dtype: '\(dtype)' is not f32, f16 or bf16")
                }
                options.fakeDType = d
            }
            guard let shard = parseByteSize(maxShardSize) else { throw UsageError("--max-shard-size: cannot read '\(maxShardSize)'") }
            options.maxShardSize = shard
            if diffusionSVD {
                if calibration.given || gptq || abits != nil {
                    throw UsageError("a diffusion transformer's svdquant is per linear: --stats FILE or data-free (no --data/--ids, --gptq, --abits)")
                }
                guard rank >= 0, grid >= 0, iterations >= 1 else { throw UsageError("--rank and --grid must not be negative, --iterations positive") }
                var svd = DiffusionSVDQuant.Options()
                svd.rank = rank
                svd.grid = grid
                svd.iterations = iterations
                svd.statistics = stats
                let report = try DiffusionSVDQuant.run(model: model, output: output, options: options, svd: svd,
                                                       log: verbose && !quiet ? { logLine("qquant: " + $0) } : nil)
                if json { print(report.json.serialized(indent: 2)) } else if !quiet {
                    print("\(output): svdquant rank \(rank)\(stats == nil ? " (data-free, no smoothing)" : ", smoothing from \(stats!)"), "
                          + "quantized \(report.quantized.count) weights, copied \(report.copied) tensors in \(fixedDecimals(report.seconds, 2)) s")
                }
                return
            }
            if let abits, !svdquant {   // svdquant's --abits picks its own W4A4 format
                options.activationQuantization = ActivationQuantization(bits: abits)
            }
            switch kvbits ?? (algo.lowercased() == "qoq" ? 4 : 16) {
            case 16: break
            case let b where b == 4 || b == 8: options.kvCache = KVCacheQuantization(bits: b)
            default: throw UsageError("--kvbits: \(kvbits!) is not 4, 8 or 16 (a float cache)")
            }
            if isCalibrated {
                let report = try runCalibrated(options, model: source)
                if json {
                    var o = report.quantize.json.objectValue!
                    o["algorithm"] = .string(algo.lowercased())
                    o["calibration_tokens"] = .int(report.tokens)
                    o["data_hash"] = .string(report.dataHash)
                    o["resumed_at_block"] = .int(report.resumedAt)
                    o["block_seconds"] = .array(report.blockSeconds.map { .double(($0 * 1000).rounded() / 1000) })
                    if let r = options.recipe.record["rotation"] { o["rotation"] = r }
                    print(JSONValue.object(o).serialized(indent: 2))
                } else if !quiet {
                    print("\(output): \(algo.lowercased()) on \(report.tokens) calibration tokens, quantized \(report.quantize.quantized.count) weights, "
                          + "copied \(report.quantize.copied) tensors in \(fixedDecimals(report.quantize.seconds, 1)) s")
                }
                return
            }
            let progress = quiet || isatty(2) == 0 ? nil : ProgressLine()
            let report = try QKitQuantizer.run(model: source, output: output, options: options,
                                               progress: progress.map { p in { p.update($0, $1) } },
                                               log: verbose && !quiet ? { logLine("qquant: " + $0) } : nil)
            progress?.finish()
            if json {
                var o = report.json.objectValue!
                if let r = options.recipe.record["rotation"] { o["rotation"] = r }
                print(JSONValue.object(o).serialized(indent: 2))
            } else if !quiet {
                var counts: [String: Int] = [:]
                for q in report.quantized { counts[q.scheme.description, default: 0] += 1 }
                let schemes = counts.sorted { $0.key < $1.key }.map { "\($0.value) × \($0.key)" }.joined(separator: ", ")
                print("\(output): quantized \(report.quantized.count) weights (\(schemes.isEmpty ? "none" : schemes)), copied \(report.copied) tensors")
                print("read \(humanBytes(report.bytesRead)), wrote \(humanBytes(report.bytesWritten)) in \(fixedDecimals(report.seconds, 2)) s "
                      + "(\(fixedDecimals(Double(report.bytesRead) / max(report.seconds, 1e-9) / 1e9, 2)) GB/s read)")
            }
        }
    }

    /// Runs awq, gptq or smoothquant through the block-wise engine.
    func runCalibrated(_ quantize: QuantizeOptions, model: String) throws -> CalibrationEngine.Report {
        if algo.lowercased() == "svdquant" { return try runSVDQuant(quantize, model: model) }
        if !calibration.given && stats == nil {
            throw UsageError("--algo \(algo) calibrates: give --data FILE (text) or --ids FILE (token ids)"
                             + (algo.lowercased() == "smoothquant" ? ", or --stats FILE from qcalib" : ""))
        }
        let request = try calibration.request()
        var options = CalibratedOptions(quantize: quantize, data: request)
        options.batchTokens = max(calibration.seqlen, batchTokens)
        options.restart = restart
        options.requireResume = resume
        if resume && restart { throw UsageError("--resume and --restart exclude each other") }
        let algorithm: any BlockAlgorithm
        switch algo.lowercased() {
        case "awq":
            var a = AWQ()
            a.duoScaling = duoScaling
            if noClipSearch { a.clipGrid = 0 }
            algorithm = a
        case "gptq":
            guard damp > 0, damp < 1 else { throw UsageError("--damp must be in (0, 1)") }
            guard blockSize >= 1 else { throw UsageError("--block-size must be positive") }
            algorithm = GPTQ(solver: GPTQSolver.Settings(dampening: damp, blockSize: blockSize, actOrder: actOrder))
        case "qoq":
            guard damp > 0, damp < 1 else { throw UsageError("--damp must be in (0, 1)") }
            guard blockSize >= 1 else { throw UsageError("--block-size must be positive") }
            var q = QoQ(gptq: GPTQSolver.Settings(dampening: damp, blockSize: blockSize, actOrder: actOrder),
                        perChannel: quantize.recipe.defaultScheme.granularity == .channel)
            let bits = abits ?? 8
            guard (2...8).contains(bits) else { throw UsageError("--abits: integer activations are 2 to 8 bits") }
            q.activationBits = bits
            algorithm = q
        default:
            guard alpha >= 0, alpha <= 1 else { throw UsageError("--alpha must be in [0, 1]") }
            algorithm = SmoothQuant(alpha: alpha, activationBits: abits ?? 8, staticActivations: staticActivations)
        }
        if algo.lowercased() != "smoothquant" && staticActivations { throw UsageError("--static-activations goes with smoothquant") }
        if !["gptq", "qoq"].contains(algo.lowercased()) && actOrder { throw UsageError("--act-order goes with gptq or qoq") }
        if let stats {
            guard algo.lowercased() == "smoothquant" else { throw UsageError("--stats: \(algo) needs the block forward passes; only smoothquant runs from statistics") }
            guard !calibration.given else { throw UsageError("--stats replaces --data/--ids") }
            return try StatisticsQuantizer.run(model: model, statistics: stats, output: output, algorithm: algorithm as! SmoothQuant,
                                               options: quantize, log: { if !quiet { logLine("qquant: " + $0) } })
        }
        return try CalibrationEngine.run(model: model, output: output, algorithm: algorithm, options: options,
                                         log: { if !quiet { logLine("qquant: " + $0) } })
    }

    /// The rotation the options ask for.
    var rotationOptions: RotationOptions {
        RotationOptions(seed: rotateSeed ?? RotationOptions.defaultSeed, onlineDown: rotateOnline)
    }

    /// Writes the rotated float model of `original` into `path`; returns the rotation and the seconds it took.
    func rotateModel(_ original: Checkpoint, to path: String, dtype: (String, DType, [Int]) -> DType) throws -> (RotatedWeights, Double) {
        let rotated = try Rotation.apply(to: CheckpointWeights(original), options: rotationOptions)
        guard let shard = parseByteSize(maxShardSize) else { throw UsageError("--max-shard-size: cannot read '\(maxShardSize)'") }
        let report = try Rotation.write(rotated, checkpoint: original, to: path, dtype: dtype, maxShardSize: shard)
        return (rotated, report.seconds)
    }

    /// `--algo none`: only the rotation, written as a float model (its dtype, or --dtype).
    func writeRotated() throws {
        guard rotating else { throw UsageError("--algo none writes the rotated float model: give --rotate (or --rotate-online)") }
        for (flag, given) in [("--wbits", wbits != nil), ("--group", group != nil), ("--abits", abits != nil), ("--data", calibration.data != nil),
                              ("--ids", calibration.ids != nil), ("--stats", stats != nil), ("--fake", fake), ("--rule", !rules.isEmpty),
                              ("--rules", rulesFile != nil), ("--skip", !skips.isEmpty), ("--act-order", actOrder), ("--resume", resume)] where given {
            throw UsageError("\(flag) does not go with --algo none (no quantization)")
        }
        var target: DType?
        if let dtype {
            guard let d = ["f32": DType.f32, "f16": .f16, "bf16": .bf16][dtype.lowercased()] else {
                throw UsageError("--dtype: '\(dtype)' is not f32, f16 or bf16")
            }
            target = d
        }
        let original = try Checkpoint(path: model)
        let (rotated, seconds) = try rotateModel(original, to: output) { _, d, _ in target ?? d }
        if json {
            print(JSONValue.object(JSONObject([("rotation", rotated.record), ("seconds", .double((seconds * 1000).rounded() / 1000))])).serialized(indent: 2))
        } else if !quiet {
            print("\(output): rotated float model (hidden \(rotated.residual.order) = \(rotated.residual.description)"
                  + "\(rotated.down.map { ", online down_proj \($0.order) = \($0.description)" } ?? "")) in \(fixedDecimals(seconds, 2)) s")
        }
    }

    /// `DIR/.NAME.SUFFIX` beside `output`.
    static func hiddenPath(beside output: String, suffix: String) -> String {
        var p = output
        while p.count > 1, p.hasSuffix("/") { p.removeLast() }
        let slash = p.lastIndex(of: "/")
        let dir = slash.map { String(p[..<$0]) } ?? "."
        let base = slash.map { String(p[p.index(after: $0)...]) } ?? p
        return "\(dir.isEmpty ? "/" : dir)/.\(base).\(suffix)"
    }

    /// Runs svdquant: calibrated with --data/--ids, data-free (smoothing off) without.
    func runSVDQuant(_ quantize: QuantizeOptions, model: String) throws -> CalibrationEngine.Report {
        guard !quantize.fake else { throw UsageError("--fake: svdquant's smoothing and low-rank branch cannot be folded into a float weight") }
        guard stats == nil else { throw UsageError("--stats: svdquant needs the block forward passes (give --data or --ids)") }
        guard rank >= 0 else { throw UsageError("--rank must not be negative (0: no low-rank branch)") }
        guard grid >= 0, iterations >= 1, lossTokens >= 1 else { throw UsageError("--grid must be ≥ 0, --iterations and --loss-tokens ≥ 1") }
        let d = quantize.recipe.defaultScheme
        let nvfp4 = d.format == .nvfp4
        guard nvfp4 || (d.format == .int(bits: 4) && d.symmetric) else {
            throw UsageError("--algo svdquant: 4-bit weights, --format int (INT4 symmetric, group 64 by default) or nvfp4")
        }
        var activation: ActivationQuantization?
        switch abits ?? 4 {
        case 4: activation = nvfp4 ? .nvfp4 : .int4Group64
        case 16: activation = nil
        default: throw UsageError("--abits: svdquant runs 4-bit (W4A4) or 16-bit (W4A16) activations")
        }
        var checkpointDType = DType.bf16
        if let ck = try? Checkpoint(path: model),
           (ck.config?["torch_dtype"]?.stringValue ?? ck.config?["dtype"]?.stringValue) == "float16" { checkpointDType = .f16 }
        var settings = SVDQuantLinear.Settings(rank: rank, grid: grid, iterations: iterations, activation: activation, lowRankDType: checkpointDType)
        if gptq {
            guard damp > 0, damp < 1 else { throw UsageError("--damp must be in (0, 1)") }
            guard blockSize >= 1 else { throw UsageError("--block-size must be positive") }
            settings.gptq = GPTQSolver.Settings(dampening: damp, blockSize: blockSize, actOrder: actOrder)
        } else if actOrder {
            throw UsageError("--act-order goes with gptq (or svdquant --gptq)")
        }
        var algorithm = SVDQuant(linear: settings)
        algorithm.samples = lossTokens
        let log: (String) -> Void = { if !quiet && verbose { logLine("qquant: " + $0) } else if !quiet && $0.hasPrefix("block ") { logLine("qquant: " + $0) } }
        if !calibration.given {
            return try algorithm.runDataFree(model: model, output: output, options: quantize, log: log)
        }
        var options = CalibratedOptions(quantize: quantize, data: try calibration.request())
        options.batchTokens = max(calibration.seqlen, batchTokens)
        options.restart = restart
        options.requireResume = resume
        if resume && restart { throw UsageError("--resume and --restart exclude each other") }
        return try CalibrationEngine.run(model: model, output: output, algorithm: algorithm, options: options, log: log)
    }

    /// The recipe the options describe.
    func recipe() throws -> QuantRecipe {
        let name = algo.lowercased()
        let base = isCalibrated || name == "svdquant" ? "rtn" : name
        guard let algorithm = QuantAlgorithm(rawValue: base), algorithm != .mse else {
            throw UsageError("--algo: unknown algorithm '\(algo)' (rtn, hqq, awq, gptq, smoothquant, qoq, svdquant, none with --rotate)")
        }
        let defaultBits = name == "smoothquant" ? 8 : 4
        guard let f = format.lowercased() == "int" ? QuantFormat.int(bits: wbits ?? defaultBits) : QuantFormat(name: format) else {
            throw UsageError("--format: unknown format '\(format)' (int, fp8, fp8e5m2, fp4, nvfp4, mxfp4, mxfp8)")
        }
        if let wbits, wbits != f.info.elementBits {
            throw UsageError("--wbits \(wbits) does not go with --format \(format) (\(f.info.elementBits)-bit elements)")
        }
        if symmetric && asymmetric { throw UsageError("--sym and --asym exclude each other") }
        var granularity: QuantGranularity? = name == "smoothquant" ? .channel : (name == "svdquant" && f == .int(bits: 4) ? .group(64) : nil)
        if let group {
            switch group.lowercased() {
            case "channel", "ch", "-1": granularity = .channel
            case "tensor", "0": granularity = .tensor
            default:
                guard let g = Int(group), g > 0 else { throw UsageError("--group: '\(group)' is not a positive size, channel or tensor") }
                granularity = .group(g)
            }
        }
        let clipAlgorithm: QuantAlgorithm
        switch clip.lowercased() {
        case "none": clipAlgorithm = algorithm
        case "mse":
            guard algorithm == .rtn && name != "awq" else { throw UsageError("--clip mse goes with --algo rtn or gptq (awq has its own clipping search)") }
            clipAlgorithm = .mse
        default: throw UsageError("--clip: '\(clip)' is not none or mse")
        }
        // AWQ's reference setting is asymmetric (zero points); everything else defaults to symmetric.
        let defaultSymmetric: Bool? = name == "awq" && f.info.allowsAsymmetric ? false : nil
        // QoQ: asymmetric; with groups of a 2-4 bit integer format, QServe's progressive grid.
        var progressive = false
        if name == "qoq" {
            if case .int(let b) = f, b <= 4, case .group = granularity ?? f.info.defaultGranularity { progressive = true }
        }
        let scheme = QuantScheme(format: f, granularity: granularity,
                                 symmetric: symmetric ? true : (asymmetric ? false : (name == "qoq" ? false : defaultSymmetric)),
                                 algorithm: clipAlgorithm, progressive: progressive && clipAlgorithm == .rtn)
        try scheme.validate()
        var all: [QuantRule] = []
        for r in rules { all.append(try QuantRule(parsing: r)) }
        if let rulesFile {
            let bytes = try readSmallFile(rulesFile, limit: 16 << 20)
            all += try QuantRule.parseFile(String(decoding: bytes, as: UTF8.self), path: rulesFile)
        }
        return try QuantRecipe(defaultScheme: scheme, rules: all, skipPatterns: skips)
    }
}

/// A progress line with an ETA on standard error, redrawn at most five times a second.
final class ProgressLine {
    let start = Date.now
    var last = 0.0
    func update(_ done: Int, _ total: Int) {
        let t = Date.now - start
        guard t - last >= 0.2 || done == total else { return }
        last = t
        let fraction = total > 0 ? Double(done) / Double(total) : 1
        let eta = fraction > 0 ? t / fraction - t : 0
        writeStandardError("\rqquant: \(Int(fraction * 100))% of \(humanBytes(total)), \(fixedDecimals(Double(done) / max(t, 1e-9) / 1e9, 2)) GB/s, ETA \(Int(eta.rounded())) s   ")
    }
    func finish() { writeStandardError("\r\u{1B}[K") }
}

/// Seconds since an arbitrary origin (monotonic).
enum Date {
    static var now: Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }
}

/// "5GB" → 5·10⁹, "2GiB" → 2·2³⁰, "500MB", "123" (bytes); `nil` if unreadable or not positive.
func parseByteSize(_ text: String) -> Int? {
    let s = text.uppercased()
    let units: [(String, Double)] = [("KIB", 1024), ("MIB", 1_048_576), ("GIB", 1_073_741_824), ("KB", 1e3), ("MB", 1e6), ("GB", 1e9), ("TB", 1e12), ("B", 1)]
    for (u, m) in units where s.hasSuffix(u) {
        guard let v = Double(s.dropLast(u.count)), v > 0, v * m < 9e18 else { return nil }
        return max(1, Int(v * m))
    }
    guard let v = Int(s), v > 0 else { return nil }
    return v
}
