/// What a linear of a diffusion transformer block does (deepcompressor's module keys in brackets).
public enum DiTRole: String, Sendable, CaseIterable {
    /// Image-stream self-attention q, k or v (`attn_qkv_proj`).
    case attentionQKV = "attn-qkv"
    /// Image-stream attention output (`attn_out_proj`; FLUX `to_out.0`).
    case attentionOut = "attn-out"
    /// FLUX dual-stream added (text) q, k or v: `add_q_proj`… (`attn_add_qkv_proj`).
    case contextQKV = "context-qkv"
    /// FLUX dual-stream text output `to_add_out` (`attn_add_out_proj`).
    case contextOut = "context-out"
    /// Cross-attention query from the image tokens (PixArt, SANA `attn2.to_q`).
    case crossQuery = "cross-q"
    /// Cross-attention key or value from the text tokens (`attn2.to_k/to_v`, deepcompressor's `attn_add`).
    case crossKeyValue = "cross-kv"
    /// Cross-attention output (`attn2.to_out.0`).
    case crossOut = "cross-out"
    /// Feed-forward up projection (`ffn_up_proj`): `ff.net.0.proj`, FLUX single `proj_mlp`, SANA `ff.conv_inverted` (GLU).
    case feedForwardUp = "ffn-up"
    /// Feed-forward down projection (`ffn_down_proj`): `ff.net.2`, SANA `ff.conv_point`.
    case feedForwardDown = "ffn-down"
    /// FLUX dual-stream text feed-forward up/down (`ffn_add_*`).
    case contextFeedForwardUp = "context-ffn-up"
    case contextFeedForwardDown = "context-ffn-down"
    /// FLUX single-stream `proj_out`: attention output and MLP down projection side by side along K.
    case singleOut = "single-out"
    /// AdaLN modulation linear inside a block (`transformer_norm`): FLUX `norm1.linear`, `norm.linear`.
    case modulation = "adaln"
}

/// One linear (or 1×1 convolution) of a diffusion transformer block.
public struct DiTLinear: Sendable, Equatable {
    /// Module path, e.g. `transformer_blocks.0.attn.to_q` (the weight is `prefix + ".weight"`).
    public var prefix: String
    public var role: DiTRole
    /// The block it belongs to, e.g. `single_transformer_blocks.3`.
    public var block: String
    /// Output and input features.
    public var n: Int, k: Int
    /// Stored as a 1×1 convolution `[N, K, 1, 1]` (SANA's GLU feed-forward).
    public var convolution: Bool
    /// Quantized by default (deepcompressor's weight skips for the family leave it out otherwise).
    public var quantizedByDefault: Bool
    /// Weights only, activations stay 16-bit (AdaLN modulation): no smoothing, no low-rank branch.
    public var weightOnly: Bool
    /// Linears reading the same input that runtimes fuse into one (`…attn.qkv`), quantized together.
    public var fusion: String?
}

/// A diffusers transformer checkpoint described: its family, its blocks, its linears and what is left alone.
public struct DiTDescriptor: Sendable {
    /// `flux`, `sana` or `pixart`.
    public var family: String
    /// config.json's `_class_name`.
    public var className: String
    /// Block lists (`transformer_blocks`, `single_transformer_blocks`) and their lengths.
    public var blockLists: [(name: String, count: Int)]
    /// Every linear of every block, in checkpoint order.
    public var linears: [DiTLinear]
    /// Tensors that are not block linears, each with why it stays in float.
    public var kept: [(tensor: String, why: String)]
    /// Hidden size (heads × head dim).
    public var hidden: Int

    /// Total blocks.
    public var blockCount: Int { blockLists.reduce(0) { $0 + $1.count } }

    /// The linear whose weight is `name` (`P.weight`), if any.
    public func linear(weight name: String) -> DiTLinear? {
        guard name.hasSuffix(".weight") else { return nil }
        return byPrefix[String(name.dropLast(".weight".count))]
    }

    private var byPrefix: [String: DiTLinear] { Dictionary(uniqueKeysWithValues: linears.map { ($0.prefix, $0) }) }
}

/// A diffusers transformer family: the `_class_name` it claims and how its checkpoint reads.
public protocol DiffusionFamily: Sendable {
    /// Short family name (`flux`).
    static var family: String { get }
    /// `_class_name` values of the family.
    static var classNames: [String] { get }
    /// Reads config.json and the tensor names into a descriptor, checking block counts and shapes.
    static func describe(_ config: DiTConfig, _ ck: Checkpoint) throws -> DiTDescriptor
}

/// Errors of reading a diffusion transformer.
public enum DiffusionModelError: QKitError, Equatable {
    case unsupportedClass(path: String, className: String, known: [String])
    case badConfig(path: String, key: String, why: String)
    case missingTensor(path: String, tensor: String)
    case shapeMismatch(path: String, tensor: String, expected: [Int], found: [Int])

    public var exitStatus: ExitStatus {
        switch self {
        case .unsupportedClass: .unavailable
        default: .dataError
        }
    }

    public var path: String? {
        switch self {
        case .unsupportedClass(let p, _, _), .badConfig(let p, _, _), .missingTensor(let p, _), .shapeMismatch(let p, _, _, _): p
        }
    }

    public var description: String {
        switch self {
        case .unsupportedClass(_, let c, let known):
            "diffusers class '\(c)' is not supported (qkit reads \(known.joined(separator: ", ")))"
        case .badConfig(_, let k, let why): "config.json: \(k): \(why)"
        case .missingTensor(_, let t): "no tensor \(t), which config.json implies"
        case .shapeMismatch(_, let t, let e, let f): "\(t) has shape \(f), config.json implies \(e)"
        }
    }
}

/// Strict reads of a diffusers `config.json`.
public struct DiTConfig: Sendable {
    public let json: JSONValue
    /// The config file (for messages).
    public let path: String

    public init(json: JSONValue, path: String) {
        self.json = json
        self.path = path
    }

    /// A positive integer member.
    public func int(_ key: String) throws -> Int {
        guard let v = json[key], v != .null else { throw DiffusionModelError.badConfig(path: path, key: key, why: "missing") }
        guard let i = v.intValue, i > 0 else { throw DiffusionModelError.badConfig(path: path, key: key, why: "not a positive integer") }
        return i
    }

    /// A positive integer member, or `d` when absent or null.
    public func int(_ key: String, default d: Int) throws -> Int {
        guard let v = json[key], v != .null else { return d }
        guard let i = v.intValue, i > 0 else { throw DiffusionModelError.badConfig(path: path, key: key, why: "not a positive integer") }
        return i
    }

    /// A positive number member, or `d`.
    public func double(_ key: String, default d: Double) throws -> Double {
        guard let v = json[key], v != .null else { return d }
        guard let x = v.doubleValue, x.isFinite, x > 0 else { throw DiffusionModelError.badConfig(path: path, key: key, why: "not a positive number") }
        return x
    }

    /// A boolean member, or `d`.
    public func bool(_ key: String, default d: Bool) throws -> Bool {
        guard let v = json[key], v != .null else { return d }
        guard let b = v.boolValue else { throw DiffusionModelError.badConfig(path: path, key: key, why: "not a boolean") }
        return b
    }
}

/// The diffusion transformer families qkit reads, one descriptor each.
public enum DiffusionTransformers {
    public static let all: [any DiffusionFamily.Type] = [FluxTransformer.self, SanaTransformer.self, PixArtTransformer.self]

    /// Every supported `_class_name`.
    public static var classNames: [String] { all.flatMap { $0.classNames } }

    /// Whether the checkpoint is a diffusers model (its config.json has `_class_name`, or is unreadable beside
    /// `diffusion_pytorch_model*.safetensors`).
    public static func isDiffusers(_ ck: Checkpoint) -> Bool {
        if ck.config?["_class_name"] != nil { return true }
        guard let dir = ck.directory, ck.config == nil, fileExists(dir + "/config.json") else { return false }
        return ck.filePaths.contains { $0.hasSuffix("/" + Checkpoint.diffusersWeightsName) || $0.contains("/diffusion_pytorch_model-") }
    }

    /// Whether the checkpoint at `path` is a diffusers model (false when it cannot be opened).
    public static func isDiffusers(path: String) -> Bool {
        guard path != "-", let ck = try? Checkpoint(path: path) else { return false }
        return isDiffusers(ck)
    }

    /// The descriptor of a diffusers transformer checkpoint: 69 for a class qkit does not read, 65 for a
    /// malformed config or tensors that do not match it.
    public static func describe(_ ck: Checkpoint) throws -> DiTDescriptor {
        let path = (ck.directory ?? Checkpoint.parentDirectory(ck.path)) + "/config.json"
        guard let json = ck.config else {
            if fileExists(path) { throw DiffusionModelError.badConfig(path: path, key: "(file)", why: "not valid JSON") }
            throw ModelError.noConfig(ck.path)
        }
        guard json.objectValue != nil else { throw DiffusionModelError.badConfig(path: path, key: "(file)", why: "not a JSON object") }
        guard let v = json["_class_name"] else { throw DiffusionModelError.badConfig(path: path, key: "_class_name", why: "missing") }
        guard let name = v.stringValue else { throw DiffusionModelError.badConfig(path: path, key: "_class_name", why: "not a string") }
        guard let family = all.first(where: { $0.classNames.contains(name) }) else {
            throw DiffusionModelError.unsupportedClass(path: path, className: name, known: classNames)
        }
        return try family.describe(DiTConfig(json: json, path: path), ck)
    }
}

/// Collects the linears of a diffusers checkpoint for a family descriptor, checking each against the shape
/// config.json implies.
struct DiTBuilder {
    let ck: Checkpoint
    let config: DiTConfig
    var linears: [DiTLinear] = []

    init(_ ck: Checkpoint, _ config: DiTConfig) {
        self.ck = ck
        self.config = config
    }

    /// Adds linear `prefix` of `block`, expected `[n, k]` (or `[n, k, 1, 1]` when `convolution`).
    mutating func add(_ prefix: String, block: String, role: DiTRole, n: Int, k: Int, convolution: Bool = false,
                      quantized: Bool = true, weightOnly: Bool = false, fusion: String? = nil) throws {
        let name = prefix + ".weight"
        if let q = ck[prefix + ".weight_q"], ck[name] == nil {
            // A qkit checkpoint: codes [N, K] (also for a 1×1 convolution).
            guard q.shape == [n, k] else { throw DiffusionModelError.shapeMismatch(path: ck.path, tensor: q.name, expected: [n, k], found: q.shape) }
        } else {
            guard let t = ck[name] else { throw DiffusionModelError.missingTensor(path: ck.path, tensor: name) }
            let expected = convolution ? [n, k, 1, 1] : [n, k]
            guard t.shape == expected else { throw DiffusionModelError.shapeMismatch(path: ck.path, tensor: name, expected: expected, found: t.shape) }
        }
        linears.append(DiTLinear(prefix: prefix, role: role, block: block, n: n, k: k, convolution: convolution,
                                 quantizedByDefault: quantized, weightOnly: weightOnly, fusion: fusion))
    }

    /// The attention linears of a PixArt/SANA-style block `p` (width `d`): self-attention `attn1` (q/k/v fused
    /// as `attn1.qkv`, to_out.0) and cross-attention `attn2` of inner width `crossInner` over conditions of width
    /// `cross` (to_q; to_k/to_v fused as `attn2.kv` and kept 16-bit by default, as Nunchaku keeps them; to_out.0).
    mutating func addSelfAndCrossAttention(block p: String, d: Int, crossInner: Int, cross: Int) throws {
        for x in ["to_q", "to_k", "to_v"] { try add(p + ".attn1." + x, block: p, role: .attentionQKV, n: d, k: d, fusion: p + ".attn1.qkv") }
        try add(p + ".attn1.to_out.0", block: p, role: .attentionOut, n: d, k: d)
        try add(p + ".attn2.to_q", block: p, role: .crossQuery, n: crossInner, k: d)
        for x in ["to_k", "to_v"] {
            try add(p + ".attn2." + x, block: p, role: .crossKeyValue, n: crossInner, k: cross, quantized: false, fusion: p + ".attn2.kv")
        }
        try add(p + ".attn2.to_out.0", block: p, role: .crossOut, n: d, k: crossInner)
    }

    /// The number of blocks named `list.N.…` in the checkpoint, checked against config.json's `key`.
    func blockCount(_ list: String, key: String) throws -> Int {
        let expected = try config.int(key)
        var seen = Set<Int>()
        for t in ck.tensors where t.name.hasPrefix(list + ".") {
            let rest = t.name.dropFirst(list.count + 1)
            guard let dot = rest.firstIndex(of: "."), let i = Int(rest[..<dot]) else { continue }
            seen.insert(i)
        }
        guard seen == Set(0..<expected) else {
            throw DiffusionModelError.badConfig(path: config.path, key: key, why: "says \(expected) blocks, the checkpoint has \(seen.count) \(list)")
        }
        return expected
    }

    /// The descriptor: every tensor that is not a block linear's weight is listed as kept, with `why(name)`.
    func descriptor(family: String, className: String, blockLists: [(String, Int)], hidden: Int, why: (String) -> String) -> DiTDescriptor {
        let owned = Set(linears.map(\.prefix))
        let kept = ck.tensors.filter { t in
            guard let dot = t.name.lastIndex(of: "."), owned.contains(String(t.name[..<dot])) else { return true }
            return t.name.hasSuffix(".bias")
        }.map { (tensor: $0.name, why: why($0.name)) }
        return DiTDescriptor(family: family, className: className, blockLists: blockLists.map { (name: $0.0, count: $0.1) },
                             linears: linears, kept: kept, hidden: hidden)
    }

    /// The common reasons a non-linear tensor stays in float.
    static func commonReason(_ name: String) -> String {
        if name.hasSuffix(".bias") { return "bias" }
        if name.contains("norm") { return "norm" }
        if name.hasSuffix("scale_shift_table") { return "modulation table" }
        if name.contains("embed") || name.hasPrefix("caption_projection") || name.hasPrefix("adaln_single") || name.hasPrefix("time_") {
            return "embedder"
        }
        if name.hasPrefix("proj_out") || name.hasPrefix("norm_out") { return "final layer" }
        return "not a block linear"
    }
}
