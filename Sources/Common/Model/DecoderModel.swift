/// A decoder-only language model run on the CPU in f32, weights streamed from a `WeightSource` one block at
/// a time. Drive it whole (`hiddenStates(_:)`) or block by block (`embed`, `loadBlock`, `BlockWeights.forward`,
/// `finalNorm`), which is what the calibration engine does; logits come from `LanguageModelHead` in slices.
public final class DecoderModel: @unchecked Sendable {
    public let source: any WeightSource
    public let config: DecoderConfig
    public let head: LanguageModelHead
    private let finalNormWeight: FloatBuffer
    /// The run-time quantization of the linears' inputs the checkpoint asks for (W8A8), applied to every block.
    public let activationQuantization: ActivationQuantization?
    /// The KV-cache quantization the checkpoint records (`kv_cache_format`, or compressed-tensors'
    /// `kv_cache_scheme`), applied to every block.
    public let kvCacheQuantization: KVCacheQuantization?
    /// Whether the activation scales are static, one per linear input, read from each block's `P.input_scale`.
    public let staticActivationScales: Bool
    /// The online Hadamard of down_proj's input a rotated checkpoint asks for (`qkit_rotation`), applied to every block.
    public let onlineDownHadamard: Hadamard?

    /// Opens the model in `source`, reading `config.json` through the family descriptors and checking the
    /// global tensors. Loads OpenBLAS.
    public init(source: any WeightSource) throws {
        guard let json = source.config else { throw ModelError.noConfig(source.label) }
        let c = try Architectures.configuration(json: json, path: source.label)
        self.source = source
        self.config = c
        let embedShape = [c.vocabularySize, c.hiddenSize]
        for (name, shape) in [("model.embed_tokens.weight", embedShape), ("model.norm.weight", [c.hiddenSize])] {
            let found = try source.shape(of: name)
            guard found == shape else { throw ModelError.shapeMismatch(path: source.label, tensor: name, expected: shape, found: found) }
        }
        let headName = c.tiedEmbeddings || !source.contains("lm_head.weight") ? "model.embed_tokens.weight" : "lm_head.weight"
        if !c.tiedEmbeddings && headName != "lm_head.weight" {
            throw WeightSourceError.missingTensor(source: source.label, name: "lm_head.weight")
        }
        let found = try source.shape(of: headName)
        guard found == embedShape else {
            throw ModelError.shapeMismatch(path: source.label, tensor: headName, expected: embedShape, found: found)
        }
        head = LanguageModelHead(source: source, tensor: headName, vocabulary: c.vocabularySize, hidden: c.hiddenSize)
        let norm = FloatBuffer(count: c.hiddenSize)
        try source.readFloat32("model.norm.weight", rows: 0..<c.hiddenSize, into: norm.buffer)
        finalNormWeight = norm
        kvCacheQuantization = Self.kvCacheQuantization(json)
        let activations = Self.activationQuantization(json)
        activationQuantization = activations?.quantization
        staticActivationScales = activations?.isStatic ?? false
        onlineDownHadamard = try Rotation.onlineDownHadamard(config: json, intermediateSize: c.intermediateSize, path: source.label)
        try BLAS.load()
    }

    /// Convenience: the model stored at `path` as a plain float checkpoint.
    public convenience init(path: String) throws {
        try self.init(source: CheckpointWeights(path: path))
    }

    /// The embeddings of `sequences`, laid end to end (`[tokens × hidden]`).
    public func embed(_ sequences: [[Int32]]) throws -> (hidden: Matrix, layout: SequenceLayout) {
        let layout = SequenceLayout(lengths: sequences.map(\.count))
        let h = config.hiddenSize
        let hidden = Matrix(rows: layout.tokenCount, columns: h)
        let ids = sequences.flatMap { $0 }
        for id in ids where id < 0 || Int(id) >= config.vocabularySize {
            throw ModelError.badTokenID(id: Int(id), vocabulary: config.vocabularySize)
        }
        nonisolated(unsafe) let p = hidden.pointer
        let source = self.source
        try parallelFor(ids.count, throwing: { r in
            let id = Int(ids[r])
            try source.readFloat32("model.embed_tokens.weight", rows: id..<(id + 1),
                                   into: UnsafeMutableBufferPointer(start: p + r * h, count: h))
        })
        return (hidden, layout)
    }

    /// The rotary tables a batch of this layout needs.
    public func rotaryEmbedding(for layout: SequenceLayout) -> RotaryEmbedding {
        RotaryEmbedding(config.rope, headDim: config.headDim, positions: max(1, layout.longest))
    }

    /// Loads block `layer`'s weights (with the checkpoint's activation quantization).
    public func loadBlock(_ layer: Int) throws -> BlockWeights {
        let b = try BlockWeights(source: source, config: config, layer: layer)
        b.activationQuantization = activationQuantization
        if staticActivationScales {
            let p = BlockWeights.prefix(layer)
            for input in LinearInput.allCases {
                // q/k/v (and gate/up) share their input and so their scale: the first consumer's is used.
                let name = p + (input == .attention || input == .attentionOutput ? "self_attn." : "mlp.") + input.consumers[0] + ".input_scale"
                guard source.contains(name) else { throw WeightSourceError.missingTensor(source: source.label, name: name) }
                let (values, _) = try source.float32(name)
                guard values.count == 1, values[0] > 0, values[0].isFinite else {
                    throw ModelError.badConfig(path: source.label, key: name, why: "a static activation scale is one positive finite number")
                }
                b.activationQuantization?.staticScales[input] = values[0]
            }
        }
        b.onlineDownHadamard = onlineDownHadamard
        if var kv = kvCacheQuantization {
            if !kv.isDynamic && kv.scales == nil {
                // Static scales are per layer: `self_attn.k_scale`, `v_scale`, one value or one per KV head.
                let n = kv.granularity == .tensor ? 1 : config.kvHeadCount
                func read(_ part: String) throws -> [Float] {
                    let name = BlockWeights.prefix(layer) + "self_attn." + part
                    let found = try source.shape(of: name)
                    guard found.reduce(1, *) == n else { throw ModelError.shapeMismatch(path: source.label, tensor: name, expected: [n], found: found) }
                    var v = [Float](repeating: 0, count: n)
                    try v.withUnsafeMutableBufferPointer { try source.readFloat32(name, rows: 0..<(found.first ?? 1), into: $0) }
                    return v
                }
                kv = kv.with(scales: KVCacheQuantization.StaticScales(key: try read("k_scale"), value: try read("v_scale")))
                do { try kv.validate(kvHeads: config.kvHeadCount) } catch {
                    throw ModelError.badConfig(path: source.label, key: "layer \(layer) k_scale/v_scale", why: error.message)
                }
            }
            b.kvCacheQuantization = kv
        }
        return b
    }

    /// The KV-cache quantization `config.json` records: qkit's `kv_cache_format` (also in a fake-quantized
    /// model's recipe) or compressed-tensors' `kv_cache_scheme`.
    static func kvCacheQuantization(_ config: JSONValue) -> KVCacheQuantization? { KVCacheQuantization.recorded(in: config) }

    /// The activation quantization `config.json` records: qkit's `activation_format` (also in a fake-quantized
    /// model's recipe), or compressed-tensors' integer `input_activations` (per token, or static per tensor from
    /// each linear's `input_scale`).
    static func activationQuantization(_ config: JSONValue) -> (quantization: ActivationQuantization, isStatic: Bool)? {
        // Nunchaku (qpack --to nunchaku): W4A4 activations as its kernels quantize them.
        if config["quantization_config"]?["quant_method"]?.stringValue == "svdquant",
           let dt = config["quantization_config"]?["activation"]?["dtype"]?.stringValue {
            return (dt == "fp4_e2m1_all" ? .nvfp4 : .int4Group64, false)
        }
        for key in ["quantization_config", QKitConfig.fakeKey] {
            if let a = ActivationQuantization.parse(config[key]?["activation_format"]) { return a }
        }
        if let groups = config["quantization_config"]?["config_groups"]?.objectValue {
            for (_, g) in groups.members {
                if let a = g["input_activations"], a["type"]?.stringValue == "int", let bits = a["num_bits"]?.intValue,
                   (2...8).contains(bits) {
                    switch (a["strategy"]?.stringValue, a["dynamic"]?.boolValue) {
                    case ("token"?, _): return (ActivationQuantization(bits: bits), false)
                    case ("tensor"?, false?): return (ActivationQuantization(bits: bits), true)
                    default: continue
                    }
                }
            }
        }
        return nil
    }

    /// Applies the final RMSNorm in place.
    public func finalNorm(_ hidden: Matrix) {
        Kernels.rmsNorm(hidden.pointer, weight: finalNormWeight.pointer, into: hidden.pointer, rows: hidden.rows,
                        n: config.hiddenSize, epsilon: config.rmsNormEpsilon)
    }

    /// The final hidden states (after the last norm) of `sequences`: every block in turn, each block's
    /// weights loaded, used for the whole batch, and freed. `progress` is called after each block.
    public func hiddenStates(_ sequences: [[Int32]], observer: (any BlockObserver)? = nil,
                             progress: ((Int) -> Void)? = nil) throws -> (hidden: Matrix, layout: SequenceLayout) {
        let (hidden, layout) = try embed(sequences)
        let rope = rotaryEmbedding(for: layout)
        for layer in 0..<config.layerCount {
            let block = try loadBlock(layer)
            block.forward(hidden, layout: layout, rope: rope, observer: observer)
            progress?(layer + 1)
        }
        finalNorm(hidden)
        return (hidden, layout)
    }

    /// Tokens a batch may hold so its activations stay near `budget` bytes.
    public func tokenBudget(bytes budget: Int = 512 << 20) -> Int {
        let c = config
        let perToken = 4 * (2 * c.hiddenSize + 2 * (c.qDim + 2 * c.kvDim) + c.qDim)
        return max(1, budget / perToken)
    }
}

/// The output projection (`lm_head`, or the embeddings when tied), read a slice of the vocabulary at a time
/// so a 150k-token head is never held whole in f32.
public final class LanguageModelHead: @unchecked Sendable {
    public let source: any WeightSource
    public let tensor: String
    public let vocabulary: Int
    public let hidden: Int

    init(source: any WeightSource, tensor: String, vocabulary: Int, hidden: Int) {
        self.source = source
        self.tensor = tensor
        self.vocabulary = vocabulary
        self.hidden = hidden
    }

    /// Vocabulary rows per slice: about 64 MB of f32 weights.
    public var sliceRows: Int { min(vocabulary, max(1024, (64 << 20) / (4 * hidden))) }

    /// The vocabulary cut into slices of `sliceRows`.
    public var slices: [Range<Int>] {
        stride(from: 0, to: vocabulary, by: sliceRows).map { $0..<min(vocabulary, $0 + sliceRows) }
    }

    /// The f32 weights of vocabulary rows `rows`.
    public func weights(_ rows: Range<Int>) throws -> Matrix {
        let m = Matrix(rows: rows.count, columns: hidden)
        try source.readFloat32(tensor, rows: rows, into: m.values)
        return m
    }

    /// `logits[r, v] = hidden[r] · W[v]` for the rows `rows` of `hiddenStates` and the slice `weights`
    /// (`[rows.count × weights.rows]`, written into `into`).
    public func logits(_ hiddenStates: Matrix, rows: Range<Int>, weights: Matrix, into: UnsafeMutablePointer<Float>) {
        BLAS.linear(hiddenStates.row(rows.lowerBound), m: rows.count, k: hidden, weight: weights.pointer, n: weights.rows, into: into)
    }
}

extension DecoderModel {
    /// All logits of `sequences` (`[tokens × vocabulary]`), materialized: for tests and small inputs only;
    /// evaluation streams them by vocabulary slice instead.
    public func logits(_ sequences: [[Int32]]) throws -> Matrix {
        let (hidden, _) = try hiddenStates(sequences)
        let out = Matrix(rows: hidden.rows, columns: config.vocabularySize)
        let scratch = Matrix(rows: hidden.rows, columns: head.sliceRows)
        for slice in head.slices {
            let w = try head.weights(slice)
            head.logits(hidden, rows: 0..<hidden.rows, weights: w, into: scratch.pointer)
            for r in 0..<hidden.rows {
                (out.row(r) + slice.lowerBound).update(from: scratch.pointer + r * slice.count, count: slice.count)
            }
        }
        return out
    }
}
