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
        discussion: discussion)

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

    @Option(help: "Range search for rtn, and for gptq's static group parameters: none or mse (the range shrunk in 1% steps by up to 79%, least sum |error|^2.4).")
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
    @Option(name: .customLong("kv-cache"), help: "Static KV cache with calibrated scales: fp8 (E4M3, s = absmax/448) or intB (symmetric, B 2 to 8, s = absmax/(2^(B-1)-1)), from --data/--ids or --stats (with any algorithm but svdquant); written as self_attn.k_scale/v_scale.") var kvCache: String?
    @Option(name: .customLong("kv-granularity"), help: "--kv-cache scales: tensor (one per layer: vLLM's k_scale/v_scale; the default) or head (one per KV head).") var kvGranularity: String?

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
            let staticKV = try staticKVCache()
            if staticKV != nil && (svdquant || diffusionSVD) { throw UsageError("--kv-cache does not go with svdquant") }
            if staticKV != nil && DiffusionTransformers.isDiffusers(path: model) { throw UsageError("--kv-cache: a diffusion transformer has no KV cache") }
            if !isCalibrated {
                // Data-free algorithms take calibration data only for static KV-cache scales.
                let forKV = staticKV != nil
                for (flag, given) in [("--data", calibration.data != nil && !forKV), ("--ids", calibration.ids != nil && !forKV), ("--stats", stats != nil && !forKV),
                                      ("--act-order", actOrder), ("--static-activations", staticActivations), ("--chat", calibration.chat && !forKV), ("--resume", resume)] where given {
                    throw UsageError("\(flag) goes with a calibrated algorithm (--algo awq, gptq, smoothquant, qoq or svdquant), not \(algo)")
                }
                if forKV && !calibration.given && stats == nil {
                    throw UsageError("--kv-cache calibrates its scales: give --data FILE (text), --ids FILE (token ids) or --stats FILE from qcalib")
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
                let path = hiddenSibling(of: output, suffix: "qkit-rotated")
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
            if diffusionSVD { return try runDiffusionSVDQuant(options) }
            if let abits, !svdquant {   // svdquant's --abits picks its own W4A4 format
                options.activationQuantization = ActivationQuantization(bits: abits)
            }
            if let staticKV {
                options.kvCache = staticKV
                if !isCalibrated {
                    // Data-free algorithms: the float model's keys and values, from the statistics file or one forward pass.
                    let (scales, record) = try dataFreeKVScales(staticKV, model: source)
                    options.kvCacheScales = scales
                    options.recipe.record["kv_cache_calibration"] = .object(record)
                } else {
                    options.recipe.record["kv_cache_calibration"] = .object(JSONObject([("observed", .string(stats != nil
                        ? "float model (qcalib statistics file)" : "each block as stored, after \(algo.lowercased()), on its calibration input"))]))
                }
            } else {
                switch kvbits ?? (algo.lowercased() == "qoq" ? 4 : 16) {
                case 16: break
                case let b where b == 4 || b == 8: options.kvCache = KVCacheQuantization(bits: b)
                default: throw UsageError("--kvbits: \(kvbits!) is not 4, 8 or 16 (a float cache)")
                }
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

    /// The static KV cache `--kv-cache` and `--kv-granularity` ask for, or `nil`.
    func staticKVCache() throws -> KVCacheQuantization? {
        guard let kvCache else {
            if kvGranularity != nil { throw UsageError("--kv-granularity goes with --kv-cache") }
            return nil
        }
        if kvbits != nil { throw UsageError("--kv-cache (static, calibrated scales) and --kvbits (dynamic) exclude each other") }
        let granularity: KVCacheQuantization.ScaleGranularity
        switch (kvGranularity ?? "tensor").lowercased() {
        case "tensor": granularity = .tensor
        case "head": granularity = .head
        default: throw UsageError("--kv-granularity: '\(kvGranularity!)' is not tensor or head")
        }
        let name = kvCache.lowercased()
        if name == "fp8" { return .calibrated(element: .fp8, bits: 8, granularity: granularity) }
        guard name.hasPrefix("int"), let b = Int(name.dropFirst(3)), (2...8).contains(b) else {
            throw UsageError("--kv-cache: '\(kvCache)' is not fp8 or int2 to int8")
        }
        return .calibrated(element: .int, bits: b, granularity: granularity)
    }

    /// Static KV-cache scales for a data-free algorithm: from `--stats` (the float model's maxima qcalib
    /// recorded) or one float forward pass over `--data`/`--ids`; with the record of where they came from.
    func dataFreeKVScales(_ kv: KVCacheQuantization, model: String) throws -> ([KVCacheQuantization.StaticScales], JSONObject) {
        if let stats {
            guard !calibration.given else { throw UsageError("--stats replaces --data/--ids") }
            let scales = try KVCacheCalibration.scales(statistics: stats, model: model, kv: kv)
            return (scales, JSONObject([("observed", "float model (qcalib statistics file)"), ("statistics", .string(stats))]))
        }
        var (scales, record) = try KVCacheCalibration.scales(model: model, data: try calibration.request(), kv: kv, batchTokens: batchTokens,
                                                             log: { if !quiet && verbose { logLine("qquant: " + $0) } })
        record.members.insert(("observed", "float model"), at: 0)
        return (scales, record)
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
