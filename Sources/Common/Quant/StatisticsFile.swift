#if canImport(Glibc)
import Glibc
#endif

/// The statistics file `qcalib` writes and `qquant --stats` reads (DESIGN.md; `man 5 qkit`): a safetensors file
/// with, for every linear `P` of every block (`model.layers.N.self_attn.q_proj`…), its input's per-channel
/// `P.input.absmax`, `P.input.absmean`, `P.input.sqmean` ([K] F32) and with `--hessian` `P.input.hessian`
/// ([K, K] F32, GPTQ's `2/n Σ xᵀx`); for k_proj and v_proj `P.output.absmax` ([kv_dim] F32: keys after RoPE,
/// values; what KV-cache scales come from); per block `model.layers.N.cosine` ([1] F32: the mean over tokens
/// of the cosine between the block's input and output hidden states). `__metadata__` records the model, the
/// data, the windows and the tool. The file is written block by block as the forward pass goes, so it
/// streams to standard output.
public enum StatisticsFile {
    /// What `qcalib` did.
    public struct Report: Sendable {
        public var tokens = 0
        public var tensors = 0
        public var bytes = 0
        public var seconds = 0.0
        public var cosines: [Double] = []
    }

    /// The tensors of block `layer`, in the order they are written.
    static func specs(layer: Int, config c: DecoderConfig, hessian: Bool) -> [TensorSpec] {
        var out: [TensorSpec] = []
        for full in BlockWeights.linearNames(layer) {
            let short = String(full.split(separator: ".").last!)
            let input = LinearInput.allCases.first { $0.consumers.contains(short) }!
            let k = BlockStatistics.columns(of: input, c)
            for s in ["absmax", "absmean", "sqmean"] { out.append(TensorSpec(name: "\(full).input.\(s)", dtype: .f32, shape: [k])) }
            if hessian { out.append(TensorSpec(name: "\(full).input.hessian", dtype: .f32, shape: [k, k])) }
            if short == "k_proj" || short == "v_proj" { out.append(TensorSpec(name: "\(full).output.absmax", dtype: .f32, shape: [c.kvDim])) }
        }
        out.append(TensorSpec(name: BlockWeights.prefix(layer) + "cosine", dtype: .f32, shape: [1]))
        return out
    }

    /// Runs the model on the calibration data and writes the statistics to `output` (`-`: standard output).
    public static func run(model path: String, data request: CalibrationDataRequest, hessian: Bool, output: String,
                           batchTokens: Int = 16_384, log: (String) -> Void = { _ in }) throws -> Report {
        let start = monotonicSeconds()
        let ck = try Checkpoint(path: path)
        let model = try DecoderModel(source: CheckpointWeights(ck))
        let c = model.config
        let data = try CalibrationData.load(request, model: model)
        let specs = (0..<c.layerCount).flatMap { Self.specs(layer: $0, config: c, hessian: hessian) }
        let metadata: [(key: String, value: String)] = [
            ("format", "qkit-statistics"), ("version", "1"), ("model", path), ("model_type", c.family),
            ("data_hash", XXH64.hex(data.inputHash)), ("data", request.ids != nil ? "ids" : (request.chat ? "text, chat template" : "text")),
            ("samples", String(data.sequences.count)), ("seqlen", String(request.sequenceLength)),
            ("sampling", request.sampling.rawValue), ("seed", String(request.seed)), ("tokens", String(data.tokenCount)),
            ("hessian", hessian ? "2/n sum x^T x" : "none"), ("tool", "qcalib"), ("tool_version", QuantRecipe.toolVersion),
        ]
        let writer = try SafetensorsWriter(path: output, tensors: specs, metadata: metadata)
        var report = Report()
        report.tokens = data.tokenCount
        report.tensors = specs.count
        let activations = try CalibrationActivations(embedding: data.sequences, model: model, batchTokens: batchTokens)
        let all = Set(LinearInput.allCases)
        for layer in 0..<c.layerCount {
            let t0 = monotonicSeconds()
            let block = try model.loadBlock(layer)
            let stats = BlockStatistics(config: c, observed: all, gram: hessian ? all : [], keysAndValues: true)
            let before = activations.copyHidden()
            activations.forward(block, on: activations.hidden, observer: stats)
            let cosine = CalibrationActivations.meanCosine(before, activations.hidden)
            report.cosines.append(cosine)
            for full in BlockWeights.linearNames(layer) {
                let short = String(full.split(separator: ".").last!)
                let input = LinearInput.allCases.first { $0.consumers.contains(short) }!
                let s = stats[input]!
                try writer.write(s.absmax.array)
                try writer.write(s.absoluteMean)
                try writer.write(s.squareMean)
                if hessian { try writer.write(s.hessian()!.array) }
                if short == "k_proj" { try writer.write(stats.keyAbsmax!.array) }
                if short == "v_proj" { try writer.write(stats.valueAbsmax!.array) }
            }
            try writer.write([Float(cosine)])
            log("block \(layer + 1)/\(c.layerCount): " + cFormat("%.2f s", monotonicSeconds() - t0) + ", cosine " + cFormat("%.4f", cosine))
        }
        try writer.finish()
        report.bytes = specs.reduce(0) { $0 + ($1.byteCount ?? 0) }
        report.seconds = monotonicSeconds() - start
        return report
    }

    /// Reads `name` (a [K] F32 statistic) from a statistics file, checking its shape.
    static func vector(_ file: Checkpoint, _ name: String, count: Int) throws -> [Float] {
        guard let t = file[name] else { throw CalibrationError("has no \(name) (not a qcalib statistics file of this model?)", path: file.path) }
        guard t.shape == [count], case .dtype(.f32) = t.encoding else {
            throw CalibrationError("\(name) is \(t.encoding) \(t.shape), not F32 [\(count)]", path: file.path)
        }
        return try CheckpointWeights(file).float32(name).values
    }
}

/// Algorithms that need only the statistics file (SmoothQuant: per-channel input maxima; static KV-cache
/// scales from the key and value maxima): no calibration forward pass, one block of weights at a time.
public enum StatisticsQuantizer {
    public static func run(model path: String, statistics: String, output: String, algorithm: SmoothQuant, options: QuantizeOptions,
                           log: (String) -> Void = { _ in }) throws -> CalibrationEngine.Report {
        let start = monotonicSeconds()
        let ck = try Checkpoint(path: path)
        guard ck.kind != .gguf, ck.directory != nil else { throw QuantizeError.unsupportedInput(path: path, kind: "GGUF or standard") }
        if ck.config?["quantization_config"]?["quant_method"]?.stringValue == "qkit" { throw QuantizeError.alreadyQuantized(path: path) }
        let model = try DecoderModel(source: CheckpointWeights(ck))
        let c = model.config
        let stats = try Checkpoint(path: statistics)
        let meta = stats.safetensorsMetadata.first.flatMap { $0 } ?? []
        guard meta.contains(where: { $0.key == "format" && $0.value == "qkit-statistics" }) else {
            throw CalibrationError("not a qcalib statistics file (no __metadata__ format qkit-statistics)", path: statistics)
        }
        let plans = try CalibrationEngine.plan(ck, layers: c.layerCount, recipe: options.recipe, algorithm: algorithm.name)
        let progress = ProgressDirectory(output: output)
        try progress.reset(key: "statistics")
        var report = CalibrationEngine.Report()
        report.blocks = c.layerCount
        // Static KV-cache scales from the float model's key and value maxima the file holds.
        let staticKV = options.kvCache.flatMap { $0.isStatic ? $0 : nil }
        let kvScales = try staticKV.map { try KVCacheCalibration.scales(statistics: stats, config: c, kv: $0) }
        for layer in 0..<c.layerCount {
            let block = try model.loadBlock(layer)
            if let staticKV, let kvScales { block.kvCacheQuantization = staticKV.with(scales: kvScales[layer]) }
            let p = BlockWeights.prefix(layer)
            let attention = try StatisticsFile.vector(stats, p + "self_attn.q_proj.input.absmax", count: c.hiddenSize)
            let mlp = try StatisticsFile.vector(stats, p + "mlp.gate_proj.input.absmax", count: c.hiddenSize)
            var outputMax: [Float]?, downMax: [Float]?
            if algorithm.staticActivations {
                outputMax = try StatisticsFile.vector(stats, p + "self_attn.o_proj.input.absmax", count: c.qDim)
                downMax = try StatisticsFile.vector(stats, p + "mlp.down_proj.input.absmax", count: c.intermediateSize)
            }
            let quantized = algorithm.smooth(block, plan: plans[layer], attentionMax: attention, mlpMax: mlp,
                                             outputMax: outputMax, downMax: downMax)
            try progress.writeBlock(layer, block: block, quantized: quantized, checkpoint: ck, options: options)
            log("block \(layer + 1)/\(c.layerCount)")
        }
        var calibration = algorithm.settings
        calibration["statistics"] = .string(statistics)
        for key in ["data_hash", "samples", "seqlen", "sampling", "seed", "tokens"] {
            if let v = meta.first(where: { $0.key == key })?.value { calibration[key] = Int(v).map { .int($0) } ?? .string(v) }
        }
        report.dataHash = meta.first { $0.key == "data_hash" }?.value ?? ""
        report.tokens = Int(meta.first { $0.key == "tokens" }?.value ?? "") ?? 0
        report.quantize = try CalibrationEngine.assemble(ck, plans: plans, progress: progress, output: output, algorithm: algorithm,
                                                         options: options, calibration: calibration)
        progress.remove()
        report.quantize.seconds = monotonicSeconds() - start
        return report
    }
}
