/// What a QuaRot rotation does (../shared/specs/algorithms.md §4.6).
public struct RotationOptions: Sendable, Equatable {
    /// Seed of the residual rotation's random ±1 signs (SplitMix64, one draw per channel).
    public var seed: UInt64 = RotationOptions.defaultSeed
    /// Random signs on the residual rotation (`Q = diag(±1)·H/√d`); without them `Q = H/√d`.
    public var randomSigns = true
    /// The head-wise Hadamard between v_proj's output rows and o_proj's input columns (offline, free).
    public var headwise = true
    /// The online Hadamard of the FFN width before down_proj: down_proj's weights are multiplied by it and the
    /// runtime must transform down_proj's input (qkit's forward pass does when the config records it).
    public var onlineDown = false

    /// The seed used when none is given.
    public static let defaultSeed: UInt64 = 0x5175_6152_6F74   // "QuaRot"

    public init(seed: UInt64 = RotationOptions.defaultSeed, randomSigns: Bool = true, headwise: Bool = true, onlineDown: Bool = false) {
        self.seed = seed
        self.randomSigns = randomSigns
        self.headwise = headwise
        self.onlineDown = onlineDown
    }
}

/// A model that cannot be rotated.
public struct RotationError: QKitError, Equatable {
    public var message: String
    public var path: String?
    public var exitStatus: ExitStatus
    public init(_ message: String, path: String? = nil, exitStatus: ExitStatus = .dataError) {
        self.message = message
        self.path = path
        self.exitStatus = exitStatus
    }
    public var description: String { message }
}

/// QuaRot's offline rotation (arXiv 2404.00456 §4; ../shared/specs/algorithms.md §4.6) of a Llama, Mistral,
/// Qwen2 or Qwen3 model, computed lazily over another `WeightSource`:
///
/// 1. embeddings untied (`lm_head` exists, `tie_word_embeddings` false) and every RMSNorm weight folded into
///    the columns of its consumers, then set to 1: `input_layernorm` → q/k/v, `post_attention_layernorm` →
///    gate/up, `model.norm` → lm_head (Qwen3's q_norm/k_norm act per head after the projection and stay);
/// 2. the residual stream rotated by `Q = diag(s)·H/√d` (H Hadamard of order `hidden_size`, s random ±1 from
///    the seed): `embed ← embed·Q`; q/k/v/gate/up/lm_head `W ← W·Q`; o_proj/down_proj `W ← Qᵀ·W`, `b ← Qᵀ·b`;
/// 3. head-wise (`head_dim`): v_proj's rows of each head `← Hᵀ·W_h` (and its bias), o_proj's columns of each
///    head `← W_h·H`;
/// 4. optionally (`onlineDown`) down_proj `W ← W·H` with H of order `intermediate_size`; the runtime then
///    transforms down_proj's input `a ← a·H/√I` (recorded in the config as `qkit_rotation.online.down_proj`).
///
/// RMSNorm commutes with an orthogonal Q (`rms(x·Q) = rms(x)`), so the rotated model computes the same
/// function. Row-wise transforms (embeddings, q/k/gate/up, lm_head) are computed for the rows asked for;
/// the others (v_proj, o_proj, down_proj and their biases) a whole tensor at a time, the last few kept.
public final class RotatedWeights: WeightSource, @unchecked Sendable {
    public let base: any WeightSource
    public let model: DecoderConfig
    public let options: RotationOptions
    /// The residual rotation's Hadamard (order `hidden_size`).
    public let residual: Hadamard
    /// The head-wise Hadamard (order `head_dim`), when `options.headwise`.
    public let head: Hadamard?
    /// The online down_proj Hadamard (order `intermediate_size`), when `options.onlineDown`.
    public let down: Hadamard?
    /// The residual rotation's signs (all 1 without random signs).
    public let signs: [Float]
    /// The rotated model's `config.json`: untied, with `qkit_rotation` (the `record`).
    public let config: JSONValue?
    /// What was done, as `config.json` and the recipe record it (`man 5 qkit`).
    public let record: JSONValue
    public var label: String { base.label }
    public var directory: String? { base.directory }

    private let lock = Lock()
    private var cache: [(String, FloatBuffer)] = []
    /// Whole tensors kept (a block's v_proj, o_proj and down_proj are read one after the other).
    static let cacheSize = 3

    /// The config key of the rotation record.
    public static let configKey = "qkit_rotation"

    init(base: any WeightSource, options: RotationOptions) throws {
        guard let json = base.config else { throw ModelError.noConfig(base.label) }
        if json[Self.configKey] != nil {
            throw RotationError("\(base.label): already rotated (config.json has \(Self.configKey)); rotate the original model", path: base.label)
        }
        if let method = json["quantization_config"]?["quant_method"]?.stringValue {
            throw RotationError("\(base.label): quantized (\(method)); rotate the float model", path: base.label)
        }
        let c = try Architectures.configuration(json: json, path: base.label)
        self.base = base
        self.model = c
        self.options = options
        residual = try Hadamard(order: c.hiddenSize, role: "hidden_size")
        head = options.headwise ? try Hadamard(order: c.headDim, role: "head_dim") : nil
        down = options.onlineDown ? try Hadamard(order: c.intermediateSize, role: "intermediate_size") : nil
        var rng = SplitMix64(seed: options.seed)
        signs = (0..<c.hiddenSize).map { _ in options.randomSigns ? (rng.next() & 1 == 0 ? 1 : -1) : 1 }

        var online = JSONObject()
        if let down { online["down_proj"] = .object(JSONObject([("size", .int(down.order)), ("hadamard", .string(down.description))])) }
        let record: JSONValue = .object(JSONObject([
            ("method", "quarot"),
            ("residual", .object(JSONObject([("size", .int(residual.order)), ("hadamard", .string(residual.description)),
                                             ("signs", options.randomSigns ? "splitmix64" : "none"),
                                             ("seed", options.randomSigns ? .int(Int(truncatingIfNeeded: options.seed)) : .null)]))),
            ("head", head.map { .object(JSONObject([("size", .int($0.order)), ("hadamard", .string($0.description))])) } ?? .null),
            ("online", .object(online)),
            ("norms_folded", true), ("untied_embeddings", .bool(c.tiedEmbeddings)),
        ]))
        self.record = record
        var o = json.objectValue ?? JSONObject()
        o["tie_word_embeddings"] = false
        o[Self.configKey] = record
        config = .object(o)
    }

    /// How a tensor is rotated.
    enum Kind {
        /// Rows of `source` times `diag(norm)·Q` (embeddings, q/k/gate/up, lm_head).
        case rows(source: String, norm: String?)
        /// All ones (a folded RMSNorm).
        case ones
        /// Computed whole (v_proj, o_proj, down_proj, their biases).
        case whole
    }

    /// The rotation of `name`, `nil` when it passes through unchanged.
    func kind(_ name: String) -> Kind? {
        switch name {
        case "model.embed_tokens.weight": return .rows(source: name, norm: nil)
        case "lm_head.weight":
            return .rows(source: base.contains(name) ? name : "model.embed_tokens.weight", norm: "model.norm.weight")
        case "model.norm.weight": return .ones
        default: break
        }
        guard name.hasPrefix("model.layers.") else { return nil }
        let rest = name.dropFirst("model.layers.".count)
        guard let dot = rest.firstIndex(of: "."), let layer = Int(rest[..<dot]), layer < model.layerCount else { return nil }
        let prefix = BlockWeights.prefix(layer)
        switch String(rest[rest.index(after: dot)...]) {
        case "input_layernorm.weight", "post_attention_layernorm.weight": return .ones
        case "self_attn.q_proj.weight", "self_attn.k_proj.weight": return .rows(source: name, norm: prefix + "input_layernorm.weight")
        case "mlp.gate_proj.weight", "mlp.up_proj.weight": return .rows(source: name, norm: prefix + "post_attention_layernorm.weight")
        case "self_attn.v_proj.weight", "self_attn.o_proj.weight", "self_attn.o_proj.bias", "mlp.down_proj.weight", "mlp.down_proj.bias":
            return .whole
        case "self_attn.v_proj.bias": return head == nil ? nil : .whole
        default: return nil
        }
    }

    public func contains(_ name: String) -> Bool { name == "lm_head.weight" ? true : base.contains(name) }

    public func shape(of name: String) throws -> [Int] {
        if name == "lm_head.weight" && !base.contains(name) { return try base.shape(of: "model.embed_tokens.weight") }
        return try base.shape(of: name)
    }

    public func readFloat32(_ name: String, rows: Range<Int>, into destination: UnsafeMutableBufferPointer<Float>) throws {
        guard let kind = kind(name) else { return try base.readFloat32(name, rows: rows, into: destination) }
        let shape = try shape(of: name)
        let count = shape.first ?? 1
        guard rows.lowerBound >= 0, rows.upperBound <= count else {
            throw WeightSourceError.badRows(source: label, name: name, rows: rows, count: count)
        }
        let perRow = shape.count <= 1 ? 1 : shape.dropFirst().reduce(1, *)
        precondition(destination.count == rows.count * perRow, "destination holds \(destination.count) values, not \(rows.count * perRow)")
        switch kind {
        case .ones:
            destination.update(repeating: 1)
        case .rows(let source, let norm):
            try base.readFloat32(source, rows: rows, into: destination)
            guard rows.count > 0 else { return }
            let d = model.hiddenSize
            guard perRow == d else { throw ModelError.shapeMismatch(path: label, tensor: name, expected: [count, d], found: shape) }
            if let norm {
                let g = try base.float32(norm).values
                guard g.count == d else { throw ModelError.shapeMismatch(path: label, tensor: norm, expected: [d], found: [g.count]) }
                let p = destination.baseAddress!
                for r in 0..<rows.count { for j in 0..<d { p[r * d + j] *= g[j] } }
            }
            residual.transformRows(destination.baseAddress!, rows: rows.count, signs: signs)
        case .whole:
            let whole = try wholeTensor(name, shape: shape)
            destination.baseAddress!.update(from: whole.pointer + rows.lowerBound * perRow, count: rows.count * perRow)
        }
    }

    /// A whole transformed tensor, from the cache or computed.
    private func wholeTensor(_ name: String, shape: [Int]) throws -> FloatBuffer {
        try lock.withLock {
            if let hit = cache.first(where: { $0.0 == name }) { return hit.1 }
            let values = try compute(name, shape: shape)
            cache.append((name, values))
            if cache.count > Self.cacheSize { cache.removeFirst() }
            return values
        }
    }

    /// v_proj (rows `W·diag(g)·Q`, then each head's rows `Hᵀ·W_h`), its bias, o_proj (`Qᵀ·W·blockdiag(H)`),
    /// down_proj (`Qᵀ·W`, `·H` first when online), their biases (`Qᵀ·b`).
    private func compute(_ name: String, shape: [Int]) throws -> FloatBuffer {
        let c = model
        let count = shape.reduce(1, *)
        let out = FloatBuffer(count: count)
        let short = name.split(separator: ".").suffix(2).joined(separator: ".")
        if short == "v_proj.weight" {
            // Rows as q/k: the input norm folded, the residual rotation.
            let layerPrefix = String(name.dropLast("self_attn.v_proj.weight".count))
            try read(name, shape: shape, into: out)
            let d = c.hiddenSize
            guard shape == [c.kvDim, d] else { throw ModelError.shapeMismatch(path: label, tensor: name, expected: [c.kvDim, d], found: shape) }
            let g = try base.float32(layerPrefix + "input_layernorm.weight").values
            guard g.count == d else { throw ModelError.shapeMismatch(path: label, tensor: layerPrefix + "input_layernorm.weight", expected: [d], found: [g.count]) }
            for r in 0..<c.kvDim { for j in 0..<d { out.pointer[r * d + j] *= g[j] } }
            residual.transformRows(out.pointer, rows: c.kvDim, signs: signs)
            if let head {
                for h in 0..<c.kvHeadCount { head.transformColumns(out.pointer + h * c.headDim * d, columns: d) }
            }
        } else if short == "v_proj.bias" {
            try read(name, shape: shape, into: out)
            if let head { for h in 0..<c.kvHeadCount { head.transformColumns(out.pointer + h * c.headDim, columns: 1) } }
        } else if short == "o_proj.weight" {
            try read(name, shape: shape, into: out)
            guard shape == [c.hiddenSize, c.qDim] else {
                throw ModelError.shapeMismatch(path: label, tensor: name, expected: [c.hiddenSize, c.qDim], found: shape)
            }
            if let head { head.transformRows(out.pointer, rows: c.hiddenSize * c.headCount) }
            residual.transformColumns(out.pointer, columns: c.qDim, signs: signs)
        } else if short == "down_proj.weight" {
            try read(name, shape: shape, into: out)
            guard shape == [c.hiddenSize, c.intermediateSize] else {
                throw ModelError.shapeMismatch(path: label, tensor: name, expected: [c.hiddenSize, c.intermediateSize], found: shape)
            }
            if let down { down.transformRows(out.pointer, rows: c.hiddenSize) }
            residual.transformColumns(out.pointer, columns: c.intermediateSize, signs: signs)
        } else {
            // o_proj.bias, down_proj.bias: Qᵀ·b.
            try read(name, shape: shape, into: out)
            guard shape == [c.hiddenSize] else { throw ModelError.shapeMismatch(path: label, tensor: name, expected: [c.hiddenSize], found: shape) }
            residual.transformColumns(out.pointer, columns: 1, signs: signs)
        }
        return out
    }

    private func read(_ name: String, shape: [Int], into out: FloatBuffer) throws {
        try base.readFloat32(name, rows: 0..<(shape.first ?? 1), into: out.buffer)
    }
}

/// QuaRot rotations: build a `RotatedWeights` over a model, write the rotated float model.
public enum Rotation {
    /// The rotated view of `source` (a float Llama, Mistral, Qwen2 or Qwen3 model): see `RotatedWeights`.
    /// Throws `HadamardError` (exit 69) when a needed Hadamard order cannot be built, `RotationError` for a
    /// model already rotated or quantized, and the model errors of an unsupported family.
    public static func apply(to source: any WeightSource, options: RotationOptions = RotationOptions()) throws -> RotatedWeights {
        try RotatedWeights(base: source, options: options)
    }

    /// What `write` did.
    public struct Report: Sendable {
        public var tensors = 0
        public var bytesWritten = 0
        public var seconds = 0.0
    }

    /// Writes the rotated model of the float checkpoint `ck` into the directory `output` (staged and renamed
    /// into place): every tensor of `ck` in its order (`lm_head.weight` added at the end when the embeddings
    /// were tied), each tensor in `dtype(name, source dtype, shape)`, a row block at a time; `config.json` from
    /// `rotated.config`; the other files of the model directory copied.
    public static func write(_ rotated: RotatedWeights, checkpoint ck: Checkpoint, to output: String,
                             dtype: (String, DType, [Int]) -> DType = { _, d, _ in d }, maxShardSize: Int = 5_000_000_000) throws -> Report {
        let start = monotonicSeconds()
        guard ck.kind != .gguf, let dir = ck.directory else { throw QuantizeError.unsupportedInput(path: ck.path, kind: ck.kind == .gguf ? "GGUF" : "standard") }
        var plan: [(name: String, tensor: CheckpointTensor?, spec: TensorSpec)] = []
        for t in ck.tensors {
            guard case .dtype(let d) = t.encoding else { throw QuantizeError.unsupportedInput(path: ck.path, kind: "GGUF") }
            if rotated.kind(t.name) != nil || d.isFloatingPoint {
                guard d.isFloatingPoint else { throw QuantizeError.notFloat(path: ck.path, tensor: t.name, encoding: t.encoding.description) }
                plan.append((t.name, nil, TensorSpec(name: t.name, dtype: dtype(t.name, d, t.shape), shape: t.shape)))
            } else {
                plan.append((t.name, t, TensorSpec(name: t.name, dtype: d, shape: t.shape)))
            }
        }
        if ck["lm_head.weight"] == nil, let e = ck["model.embed_tokens.weight"], case .dtype(let d) = e.encoding {
            plan.append(("lm_head.weight", nil, TensorSpec(name: "lm_head.weight", dtype: dtype("lm_head.weight", d, e.shape), shape: e.shape)))
        }
        let out = try OutputDirectory(path: output)
        let writer = try ShardedSafetensorsWriter(directory: out.stagingPath, tensors: plan.map(\.spec), metadata: [("format", "pt")],
                                                  maxShardSize: maxShardSize)
        var report = Report()
        for item in plan {
            if let t = item.tensor {
                try QKitQuantizer.copyTensor(t, ck: ck, writer: writer)
                continue
            }
            let shape = item.spec.shape
            let n = shape.first ?? 1
            let perRow = shape.count <= 1 ? 1 : shape.dropFirst().reduce(1, *)
            let step = max(1, min(n, (16 << 20) / max(1, 4 * perRow)))
            let f = FloatBuffer(count: step * perRow)
            var bytes = [UInt8](repeating: 0, count: item.spec.dtype.byteCount(elements: step * perRow)!)
            var r = 0
            while r < n || (n == 0 && r == 0) {
                let rows = r..<min(n, r + step)
                let values = UnsafeMutableBufferPointer(start: f.pointer, count: rows.count * perRow)
                try rotated.readFloat32(item.name, rows: rows, into: values)
                let size = item.spec.dtype.byteCount(elements: values.count)!
                try bytes.withUnsafeMutableBytes { raw in
                    Conversion.encode(UnsafeBufferPointer(values), as: item.spec.dtype, into: UnsafeMutableRawBufferPointer(rebasing: raw[0..<size]))
                    try writer.write(UnsafeRawBufferPointer(rebasing: raw[0..<size]))
                }
                if n == 0 { break }
                r = rows.upperBound
            }
        }
        try writer.finish()
        report.tensors = plan.count
        report.bytesWritten = plan.reduce(0) { $0 + ($1.spec.byteCount ?? 0) }
        try writeSmallFile(out.stagedPath("config.json"), (rotated.config ?? .object(JSONObject())).serialized(indent: 2) + "\n")
        try QKitQuantizer.copyModelFiles(from: dir, to: out)
        try out.commit()
        report.seconds = monotonicSeconds() - start
        return report
    }

    /// The online down_proj Hadamard a model's `config.json` asks the runtime for (`qkit_rotation.online.down_proj`),
    /// `nil` when none; throws when the recorded order is not the model's `intermediate_size` or cannot be built.
    public static func onlineDownHadamard(config: JSONValue, intermediateSize: Int, path: String) throws -> Hadamard? {
        guard let d = config[RotatedWeights.configKey]?["online"]?["down_proj"], d != .null else { return nil }
        guard let size = d["size"]?.intValue, size == intermediateSize else {
            throw RotationError("\(RotatedWeights.configKey).online.down_proj.size is not intermediate_size \(intermediateSize)", path: path)
        }
        return try Hadamard(order: size, role: "online down_proj")
    }
}
