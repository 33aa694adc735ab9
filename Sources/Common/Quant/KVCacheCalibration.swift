/// Static KV-cache scales from calibration (`qquant --kv-cache`; ../shared/specs/algorithms.md §4.8): per layer,
/// the absolute maximum of the keys (after the q/k norms and RoPE: what the cache stores) and of the values over
/// the calibration tokens, reduced over the layer or over each KV head, divided by the largest code
/// (`KVCacheQuantization.scales(keyAbsmax:valueAbsmax:headDim:)`). Three sources:
///
/// - a calibrated algorithm (`CalibrationEngine`): measured on **the block as stored**, after the algorithm
///   (quantized weights, smoothing and SmoothAttention folded), fed with the block input the algorithm
///   received, so the scales fit the keys the quantized model puts in its cache (QoQ's SmoothAttention divides
///   the keys: float-model scales would be wrong there);
/// - a qcalib statistics file (`k_proj.output.absmax`, `v_proj.output.absmax`): the float model's keys;
/// - calibration data with a data-free algorithm (rtn, hqq): one forward pass of the float model.
///
/// The scales are written as `model.layers.N.self_attn.k_scale` / `v_scale` (F32, `[1]` or `[kvHeads]`).
public enum KVCacheCalibration {
    /// Measures the keys and values of `block` as it will be stored (`quantized` weights dequantized into it)
    /// on `input` (the block's calibration input, laid out like `activations.hidden`) and sets the block's
    /// `kvCacheQuantization` to `kv` with the resulting scales.
    public static func measure(_ block: BlockWeights, quantized: [String: QuantizedWeight], input: Matrix,
                               activations: CalibrationActivations, kv: KVCacheQuantization) {
        for (name, q) in quantized {
            if let w = block.linear(name) { q.dequantize(into: w.pointer) }
        }
        let c = block.config
        let stats = BlockStatistics(config: c, observed: [], keysAndValues: true)
        block.kvCacheQuantization = nil
        for b in activations.batches {
            _ = block.attentionContext(activations.view(input, b), layout: b.layout, rope: activations.rope, observer: stats)
        }
        block.kvCacheQuantization = kv.with(scales: kv.scales(keyAbsmax: stats.keyAbsmax!.array, valueAbsmax: stats.valueAbsmax!.array,
                                                              headDim: c.headDim))
    }

    /// Every layer's scales from the qcalib statistics file at `path` for the model at `model`.
    public static func scales(statistics path: String, model: String, kv: KVCacheQuantization) throws -> [KVCacheQuantization.StaticScales] {
        let c = try DecoderModel(path: model).config
        let file = try Checkpoint(path: path)
        let meta = file.safetensorsMetadata.first.flatMap { $0 } ?? []
        guard meta.contains(where: { $0.key == "format" && $0.value == "qkit-statistics" }) else {
            throw CalibrationError("not a qcalib statistics file (no __metadata__ format qkit-statistics)", path: path)
        }
        return try scales(statistics: file, config: c, kv: kv)
    }

    /// Every layer's scales from a qcalib statistics file (the float model's keys and values).
    public static func scales(statistics file: Checkpoint, config c: DecoderConfig, kv: KVCacheQuantization) throws -> [KVCacheQuantization.StaticScales] {
        try (0..<c.layerCount).map { layer in
            let p = BlockWeights.prefix(layer) + "self_attn."
            return kv.scales(keyAbsmax: try StatisticsFile.vector(file, p + "k_proj.output.absmax", count: c.kvDim),
                             valueAbsmax: try StatisticsFile.vector(file, p + "v_proj.output.absmax", count: c.kvDim), headDim: c.headDim)
        }
    }

    /// Every layer's scales from one forward pass of the float model at `path` over the calibration data.
    /// Returns the scales and the calibration record (data hash, windows).
    public static func scales(model path: String, data request: CalibrationDataRequest, kv: KVCacheQuantization, batchTokens: Int = 16_384,
                              log: (String) -> Void = { _ in }) throws -> (scales: [KVCacheQuantization.StaticScales], calibration: JSONObject) {
        let model = try DecoderModel(source: CheckpointWeights(Checkpoint(path: path)))
        let c = model.config
        let data = try CalibrationData.load(request, model: model)
        let activations = try CalibrationActivations(embedding: data.sequences, model: model, batchTokens: max(request.sequenceLength, batchTokens))
        var out: [KVCacheQuantization.StaticScales] = []
        for layer in 0..<c.layerCount {
            let t0 = monotonicSeconds()
            let block = try model.loadBlock(layer)
            let stats = BlockStatistics(config: c, observed: [], keysAndValues: true)
            activations.forward(block, on: activations.hidden, observer: stats)
            out.append(kv.scales(keyAbsmax: stats.keyAbsmax!.array, valueAbsmax: stats.valueAbsmax!.array, headDim: c.headDim))
            log("kv-cache scales, block \(layer + 1)/\(c.layerCount): " + cFormat("%.2f s", monotonicSeconds() - t0))
        }
        let record = JSONObject([
            ("data", .string(request.ids != nil ? "ids" : (request.chat ? "text, chat template" : "text"))),
            ("data_hash", .string(XXH64.hex(data.inputHash))), ("samples", .int(data.sequences.count)),
            ("seqlen", .int(request.sequenceLength)), ("sampling", .string(request.sampling.rawValue)),
            ("seed", .int(Int(truncatingIfNeeded: request.seed))), ("tokens", .int(data.tokenCount)),
        ])
        return (out, record)
    }

    /// The two tensors of one layer's scales, with their bytes (F32 little-endian).
    static func tensors(layer: Int, scales s: KVCacheQuantization.StaticScales) -> [(TensorSpec, [UInt8])] {
        let names = KVCacheQuantization.scaleTensorNames(layer: layer)
        return [(names.key, s.key), (names.value, s.value)].map { name, values in
            (TensorSpec(name: name, dtype: .f32, shape: [values.count]), values.flatMap { v in withUnsafeBytes(of: v.bitPattern.littleEndian) { Array($0) } })
        }
    }
}
