import ArgumentParser
import Common

@main
struct Qpack: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qpack",
        abstract: "Pack, import and convert checkpoints between backend layouts.",
        usage: """
            qpack IN --to vllm-awq|vllm-gptq|compressed-tensors|tinychat|lightllm [--scheme SCHEME] [--gptq-v2] [--w8a8] -o OUT
            qpack IN --to mlc [--quantization \(MLCPreset.all.map(\.name).joined(separator: "|"))] [--conv-template NAME] [--ndarray-cache] -o OUT
            qpack IN --to nunchaku -o OUT
            qpack IN --to gguf [--gguf-type q4_0|q4_1|q8_0|q4_k|q6_k|f16|bf16|f32] -o OUT.gguf
            qpack IN.gguf --to safetensors [--dtype f32|f16|bf16] -o OUT
            qpack --verify OUT [--source IN]
            """,
        discussion: """
            IN is a qkit checkpoint (written by qquant: its codes are re-encoded exactly), a packed checkpoint of \
            any layout qpack reads (unpacked and repacked without requantizing) or a float model (quantized first \
            with RTN in the backend's default scheme, or --scheme). vllm-awq: AutoAWQ GEMM \
            (int4, groups, asym or sym; default int4:g128:asym). vllm-gptq: GPTQ v1 (z - 1) or v2 with --gptq-v2 \
            (int2/3/4/8, groups or per channel, act-order; default int4:g128:sym). compressed-tensors: \
            pack-quantized (int4/int8), int-quantized W8A8 (int8 with --w8a8), float-quantized (fp8), \
            nvfp4-pack-quantized (nvfp4); default int4:g128:sym. tinychat: llm-awq's W4A16 v2 layout (int16 \
            interleaved qweight, scales, scaled_zeros; int4, groups 32, 64 or >= 128; default int4:g128:asym). lightllm: \
            what LightLLM loads pre-quantized: int4 as AutoAWQ GEMM (W4A16, the vllm-awq files), fp8:tensor as \
            block-128 FP8 (W8A8, quant_method fp8); default int4:g128:asym. A combination the backend cannot express is \
            refused with exit status 65 and nothing is written. The output directory appears only when \
            everything succeeded.

            mlc: MLC-LLM's weight directory (tensor-cache.json + params_shard_*.bin + mlc-chat-config.json + tokenizer \
            files) for llama, mistral, qwen2 and qwen3, with fused qkv and gate_up and MLC's group quantization \
            (--quantization, default q4f16_1). A float model is quantized with MLC's own rounding; a qkit checkpoint's \
            int4:g32 (int3:g40) codes are kept when they fit MLC's fixed zero point; the embedding and lm_head are \
            quantized as MLC does.

            --to gguf writes a llama.cpp GGUF v3 file (llama, mistral and qwen2 models with a byte-level BPE \
            tokenizer.json). A qkit or packed linear in int4:g32:sym, int4:g32:asym or int8:g32:sym keeps its codes as \
            Q4_0, Q4_1 or Q8_0 (the scale in F16); other weights are quantized with ggml's reference quantizer of \
            --gguf-type (default: the type the quantized linears map to, Q4_K for a float model); a quantized input \
            is requantized from its dequantized weights only when --gguf-type asks for it. Norms and biases are F32, \
            the output matrix Q6_K (Q8_0 when its rows are not whole 256-blocks), as llama-quantize does.

            --to safetensors imports a GGUF file (llama and qwen2): every tensor is dequantized (F32, F16, BF16, \
            Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K to Q6_K) and written as a Hugging Face directory.

            --verify reads OUT back: config keys, tensor names and shapes, every linear unpacked; with --source, \
            codes, zero points and act-order indices equal the source's bit for bit and scales equal the \
            source's rounded to the stored dtype. Exit status 65 on any difference.

            nunchaku: Nunchaku's SVDQuant W4A4 layout (MMA-tiled qweight, wscales, smooth, lora_down/lora_up tiles, \
            padded to 128) from a qkit checkpoint whose linears are int4:g64:sym or nvfp4 with P.smooth, P.lora_down \
            and P.lora_up; anything else is refused. A qkit checkpoint of a diffusers transformer (FLUX.1, SANA) is \
            written as Nunchaku's single-file model, diffusion_pytorch_model.safetensors with config, model_class \
            and quantization_config metadata, under the block names of Nunchaku's C++ models: FLUX qkv_proj \
            (to_q|to_k|to_v), qkv_proj_context, out_proj, out_proj_context, mlp_fc1/2, mlp_context_fc1/2, \
            norm1.linear and norm1_context.linear (W4A16 GEMV: qweight, wscales, wzeros, bias), norm_q/norm_k/\
            norm_added_q/norm_added_k, and per single block norm.linear, qkv_proj, mlp_fc1 (proj_mlp), out_proj and \
            mlp_fc2 (proj_out split along K); SANA attn.qkv_proj (q/k/v each padded to 128), attn.out_proj, \
            cross_attn.q_linear, cross_attn.kv_linear (16-bit), cross_attn.out_proj, ff.inverted_conv, ff.depth_conv \
            ([C, 3, 3, 1]), ff.point_conv. Linears without a low-rank branch (plain RTN) get rank 0. PixArt-Sigma \
            has no Nunchaku model: exit 69 (EX_UNAVAILABLE), and nothing is written.

            A GGUF file is an input like a float model for every --to: it is imported first (every tensor \
            dequantized to f32, as --to safetensors does) into a hidden directory beside OUT, .OUT.qkit-gguf-PID, \
            which is removed afterwards (disk: 4 bytes per parameter while qpack runs), then quantized in the \
            layout's scheme. Standard input (-) is a GGUF stream for --to safetensors only.
            """)

    @Argument(help: "Input: a qkit checkpoint, packed checkpoint or float model directory, a .gguf file (imported first), or - (a GGUF stream, for --to safetensors); with --verify, the packed output.")
    var input: String

    @Option(name: .customLong("to"), help: "Output format: vllm-awq, vllm-gptq, compressed-tensors, tinychat, lightllm, mlc, nunchaku, gguf, safetensors.")
    var format: PackFormat?

    @Option(help: "RTN scheme for a float input (e.g. int4:g32:asym; default: the backend's).")
    var scheme: String?

    @Flag(name: .customLong("gptq-v2"), help: "vllm-gptq: store exact zero points (checkpoint_format gptq_v2) instead of z - 1.")
    var gptqV2 = false

    @Flag(help: "compressed-tensors: write int8 weights as W8A8 int-quantized (dynamic per-token int8 activations).")
    var w8a8 = false

    @Option(help: "mlc: the MLC quantization preset: q4f16_1 (default), q4f16_0 (KN), q4f16_2 (embedding and lm_head in float16), q4f32_1, q4bf16_1, q4bf16_0 (KN), q3f16_1 or q3f16_0 (KN).")
    var quantization: String?

    @Option(name: .customLong("conv-template"), help: "mlc: the conversation template of mlc-chat-config.json (default: detected from the chat template).")
    var convTemplate: String?

    @Flag(name: .customLong("ndarray-cache"), help: "mlc: also write ndarray-cache.json (runtimes from before TVM's NDArray → Tensor rename).")
    var ndarrayCache = false

    @Option(name: .customLong("gguf-type"), help: "--to gguf: q4_0, q4_1, q8_0, q4_k, q6_k, f16, bf16 or f32 (default: from the schemes; q4_k for a float model).")
    var ggufType: String?

    @Flag(help: "Read IN as a packed output and check it (see --source).")
    var verify = false

    @Option(help: "With --verify: the checkpoint OUT was packed from; codes, scales and zeros must match it.")
    var source: String?

    @Option(help: "Element type of the written tensors (--to safetensors): f32, f16 or bf16.")
    var dtype: OutputDType = .f32

    @Option(name: .customLong("max-shard-size"), help: "Largest shard, e.g. 5GB, 500MB, 2GiB (default: one file for --to safetensors, 5GB otherwise).")
    var maxShardSize: String?

    @Option(name: .shortAndLong, help: "Output directory.")
    var output: String?

    @Flag(name: .shortAndLong, help: "Print one line per tensor on standard error.")
    var verbose = false

    @Flag(name: .shortAndLong, help: "Print nothing but errors.")
    var quiet = false

    func run() throws {
        AllocatorTuning.keepFreedBlocks()
        try runTool("qpack") {
            let log: ((String) -> Void)? = verbose && !quiet ? { logLine("qpack: " + $0) } : nil
            let parsedScheme = try scheme.map { s throws -> QuantScheme in
                guard let q = try QuantScheme.parse(s) else { throw UsageError("--scheme keep quantizes nothing") }
                return q
            }
            if verify {
                guard format == nil, output == nil else { throw UsageError("--verify takes OUT and optionally --source IN, not --to or -o") }
                let r = try PackVerifier.verify(output: input, source: source, scheme: parsedScheme)
                if !quiet {
                    print("\(input): ok: \(r.layout), \(r.packedLinears) packed linears, \(r.otherTensors) other tensors" +
                          (!r.comparedWithSource ? "" : r.layout == "gguf" ? "; every tensor's bytes equal the export of \(source!)"
                            : "; codes, zero points and scales equal to \(source!)"))
                }
                return
            }
            guard let format else { throw UsageError("--to FORMAT is required (or --verify)") }
            guard let output else { throw UsageError("-o OUT is required") }
            guard source == nil else { throw UsageError("--source goes with --verify") }
            let shard = try maxShardSize.map { s throws(UsageError) in
                guard let n = parseByteSize(s) else { throw UsageError("--max-shard-size: cannot read '\(s)' (use e.g. 5GB or 500MB)") }
                return n
            }
            if format == .safetensors {
                guard input == "-" || input.lowercased().hasSuffix(".gguf") || (fileExists(input) && !isDirectory(input) && looksLikeGGUF(input)) else {
                    throw UsageError("--to safetensors needs a .gguf file as input")
                }
                try GGUFImport.run(gguf: input, output: output, dtype: dtype.dtype, maxShardSize: shard, progress: log)
                return
            }
            try checkFlags(format, scheme: parsedScheme)
            try GGUFImport.withModelDirectory(input, beside: output, log: log) { model in
                try pack(model, to: format, output: output, shard: shard, scheme: parsedScheme, log: log)
            }
        }
    }

    /// The flag combinations `--to FORMAT` refuses, checked before any work (a GGUF input's import included).
    func checkFlags(_ format: PackFormat, scheme: QuantScheme?) throws {
        guard format == .mlc || (quantization == nil && convTemplate == nil && !ndarrayCache) else {
            throw UsageError("--quantization, --conv-template and --ndarray-cache go with --to mlc")
        }
        if scheme != nil {
            switch format {
            case .nunchaku: throw UsageError("--scheme does not go with --to nunchaku (it packs a qkit W4A4 checkpoint as it is)")
            case .mlc: throw UsageError("--scheme does not go with --to mlc (use --quantization)")
            case .gguf: throw UsageError("--scheme does not apply to --to gguf (use --gguf-type)")
            default: break
            }
        }
        guard format == .gguf || ggufType == nil else { throw UsageError("--gguf-type goes with --to gguf") }
        guard format == .vllmGPTQ || !gptqV2 else { throw UsageError("--gptq-v2 goes with --to vllm-gptq") }
        guard format == .compressedTensors || !w8a8 else { throw UsageError("--w8a8 goes with --to compressed-tensors") }
        if let quantization, MLCPreset.named(quantization) == nil {
            throw UsageError("--quantization: unknown MLC preset '\(quantization)' (\(MLCPreset.names))")
        }
        if let convTemplate, !MLCChatConfig.templateNames.contains(convTemplate) {
            throw UsageError("--conv-template: unknown template '\(convTemplate)' (\(MLCChatConfig.templateNames.joined(separator: ", ")))")
        }
        if let ggufType, GGUFExport.types[ggufType.lowercased()] == nil {
            throw UsageError("--gguf-type: '\(ggufType)' is not one of \(GGUFExport.types.keys.sorted().joined(separator: ", "))")
        }
    }

    /// Packs the model directory or checkpoint `input` (a GGUF input arrives here already imported).
    func pack(_ input: String, to format: PackFormat, output: String, shard: Int?, scheme parsedScheme: QuantScheme?,
              log: ((String) -> Void)?) throws {
        if [.nunchaku, .mlc, .gguf].contains(format) { try Packer.refuseStaticKVCache(input: input, backend: format.rawValue) }
        if format == .nunchaku {
            let r = try NunchakuDiffusionPacker.handles(input) ? NunchakuDiffusionPacker.run(input: input, output: output, log: log)
                : NunchakuPacker.run(input: input, output: output, log: log)
            if !quiet {
                logLine("qpack: \(output): nunchaku, \(r.packed) linears packed, \(r.copied) tensors copied, \(r.bytesWritten / 1_000_000) MB in \(fixedDecimals(r.seconds, 2)) s")
            }
            return
        }
        if format == .mlc {
            var o = MLCPacker.Options()
            if let quantization { o.preset = MLCPreset.named(quantization)! }   // names checked by checkFlags
            if let convTemplate { o.template = convTemplate }
            o.legacyCache = ndarrayCache
            if let shard { o.shardCap = shard }
            let r = try MLCPacker.run(input: input, output: output, options: o, log: log)
            if !quiet {
                logLine("qpack: \(output): mlc \(o.preset), \(r.packed) linears packed, \(r.copied) tensors copied, " +
                        "\(r.bytesWritten / 1_000_000) MB in \(fixedDecimals(r.seconds, 2)) s" + (r.quantizedFirst ? " (float input quantized with mlc's rounding)" : ""))
            }
            return
        }
        if format == .gguf {
            let type = ggufType.map { GGUFExport.types[$0.lowercased()]! }   // checked by checkFlags
            let start = monotonicSeconds()
            let r = try GGUFExport.run(input: input, output: output, type: type, log: log)
            if !quiet {
                logLine("qpack: \(output): gguf \(r.type.name), \(r.tensors) tensors (\(r.kept) linears with their codes kept, \(r.quantized) quantized), " +
                        "\(r.bytes / 1_000_000) MB in \(fixedDecimals(monotonicSeconds() - start, 2)) s")
            }
            return
        }
        var options = PackOptions(layout: Packer.layout(named: format.rawValue, gptqV2: gptqV2, w8a8: w8a8)!)
        options.scheme = parsedScheme
        if let shard { options.maxShardSize = shard }
        let r = try Packer.run(input: input, output: output, options: options, log: log)
        if !quiet {
            logLine("qpack: \(output): \(format.rawValue), \(r.packed) linears packed, \(r.copied) tensors copied, " +
                    "\(r.bytesWritten / 1_000_000) MB in \(fixedDecimals(r.seconds, 2)) s" + (r.quantizedFirst ? " (float input quantized with rtn)" : ""))
        }
    }
}

enum PackFormat: String, CaseIterable, ExpressibleByArgument {
    case safetensors
    case vllmAWQ = "vllm-awq"
    case vllmGPTQ = "vllm-gptq"
    case compressedTensors = "compressed-tensors"
    case lightllm
    case mlc
    case tinychat
    case nunchaku
    case gguf
}

enum OutputDType: String, CaseIterable, ExpressibleByArgument {
    case f32, f16, bf16
    var dtype: DType {
        switch self {
        case .f32: .f32
        case .f16: .f16
        case .bf16: .bf16
        }
    }
}

/// Whether a file starts with the GGUF magic.
func looksLikeGGUF(_ path: String) -> Bool {
    guard let f = try? MappedFile(path: path), f.count >= 4 else { return false }
    return f.bytes.loadUnaligned(as: UInt32.self) == GGUFFile.magic
}

/// "5GB" → 5·10⁹, "2GiB" → 2·2³⁰, "500MB", "123" (bytes). `nil` if unreadable or not positive.
func parseByteSize(_ text: String) -> Int? {
    let s = text.trimmingCharacters(in: " ").uppercased()
    let units: [(String, Int)] = [("KIB", 1 << 10), ("MIB", 1 << 20), ("GIB", 1 << 30), ("TIB", 1 << 40),
                                  ("KB", 1_000), ("MB", 1_000_000), ("GB", 1_000_000_000), ("TB", 1_000_000_000_000), ("B", 1)]
    var number = s
    var scale = 1
    for (u, m) in units where s.hasSuffix(u) {
        number = String(s.dropLast(u.count))
        scale = m
        break
    }
    guard let v = Double(number.trimmingCharacters(in: " ")), v > 0, v.isFinite else { return nil }
    let bytes = v * Double(scale)
    guard bytes >= 1, bytes < 9.0e18 else { return nil }
    return Int(bytes)
}

extension String {
    fileprivate func trimmingCharacters(in c: Character) -> String {
        var s = Substring(self)
        while s.first == c { s.removeFirst() }
        while s.last == c { s.removeLast() }
        return String(s)
    }
}
