/// The shape of a decoder-only transformer, read from `config.json` by an `Architecture`.
public struct DecoderConfig: Sendable, Equatable {
    public var family: String
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var layerCount: Int
    public var headCount: Int
    public var kvHeadCount: Int
    public var headDim: Int
    public var vocabularySize: Int
    public var rmsNormEpsilon: Float
    public var rope: RoPEScaling
    public var tiedEmbeddings: Bool
    /// q/k/v projections carry biases (Qwen2, `attention_bias`).
    public var attentionBias: Bool
    /// o_proj carries a bias (Llama with `attention_bias`).
    public var outputBias: Bool
    /// gate/up/down carry biases (`mlp_bias`).
    public var mlpBias: Bool
    /// Per-head RMSNorm of q and k before RoPE (Qwen3).
    public var qkNorm: Bool
    /// Keys further back than this many positions are masked (Mistral), per layer; nil = full attention.
    public var slidingWindow: [Int?]
    public var bosTokenID: Int?
    public var eosTokenID: Int?

    public var qDim: Int { headCount * headDim }
    public var kvDim: Int { kvHeadCount * headDim }
}

/// How rotary position embeddings are computed.
public struct RoPEScaling: Sendable, Equatable {
    public enum Kind: String, Sendable { case standard = "default", linear, dynamic, llama3 }
    public var kind: Kind
    public var theta: Double
    public var factor: Double = 1
    public var lowFrequencyFactor: Double = 1
    public var highFrequencyFactor: Double = 4
    /// The context the model was trained on (llama3: `original_max_position_embeddings`; dynamic:
    /// `max_position_embeddings`).
    public var originalContext: Int = 0
}

/// Errors of reading a model's configuration.
public enum ModelError: QKitError, Equatable {
    case noConfig(String)
    case unsupportedFamily(path: String, modelType: String, known: [String])
    case badConfig(path: String, key: String, why: String)
    case unsupportedFeature(path: String, feature: String)
    case shapeMismatch(path: String, tensor: String, expected: [Int], found: [Int])
    case badTokenID(id: Int, vocabulary: Int)

    public var exitStatus: ExitStatus {
        switch self {
        case .noConfig: .noInput
        case .unsupportedFamily, .unsupportedFeature: .unavailable
        default: .dataError
        }
    }

    public var description: String {
        switch self {
        case .noConfig(let p): "\(p): no config.json beside the weights (a model directory is needed)"
        case .unsupportedFamily(let p, let t, let known):
            "\(p): model_type '\(t)' is not supported (qkit runs \(known.joined(separator: ", ")))"
        case .badConfig(let p, let k, let why): "\(p): config.json: \(k): \(why)"
        case .unsupportedFeature(let p, let f): "\(p): \(f) is not supported"
        case .shapeMismatch(let p, let t, let e, let f): "\(p): \(t) has shape \(f), config.json implies \(e)"
        case .badTokenID(let id, let v): "token id \(id) is outside the vocabulary (0..<\(v))"
        }
    }
}

/// Reads the fields of `config.json` every family shares, with the checks of a strict reader.
struct ConfigReader {
    let path: String
    let json: JSONValue

    func int(_ key: String) throws -> Int {
        guard let v = json[key], v != .null else { throw ModelError.badConfig(path: path, key: key, why: "missing") }
        guard let i = v.intValue, i > 0 else { throw ModelError.badConfig(path: path, key: key, why: "not a positive integer") }
        return i
    }

    func int(_ key: String, default d: Int) throws -> Int {
        guard let v = json[key], v != .null else { return d }
        guard let i = v.intValue, i > 0 else { throw ModelError.badConfig(path: path, key: key, why: "not a positive integer") }
        return i
    }

    func optionalInt(_ key: String) -> Int? { json[key]?.intValue }

    func bool(_ key: String, default d: Bool) throws -> Bool {
        guard let v = json[key], v != .null else { return d }
        guard let b = v.boolValue else { throw ModelError.badConfig(path: path, key: key, why: "not a boolean") }
        return b
    }

    func double(_ key: String, default d: Double) throws -> Double {
        guard let v = json[key], v != .null else { return d }
        guard let x = v.doubleValue, x.isFinite else { throw ModelError.badConfig(path: path, key: key, why: "not a number") }
        return x
    }

    /// The fields common to every Llama-like family.
    func decoderConfig(family: String) throws -> DecoderConfig {
        let hidden = try int("hidden_size")
        let heads = try int("num_attention_heads")
        let kvHeads = try int("num_key_value_heads", default: heads)
        guard heads % kvHeads == 0 else {
            throw ModelError.badConfig(path: path, key: "num_key_value_heads", why: "\(kvHeads) does not divide \(heads) heads")
        }
        let headDim = try int("head_dim", default: hidden / heads)
        if let act = json["hidden_act"]?.stringValue, act != "silu" {
            throw ModelError.unsupportedFeature(path: path, feature: "hidden_act '\(act)' (only silu)")
        }
        let layers = try int("num_hidden_layers")
        let eps = try double("rms_norm_eps", default: 1e-6)
        return DecoderConfig(
            family: family, hiddenSize: hidden, intermediateSize: try int("intermediate_size"), layerCount: layers,
            headCount: heads, kvHeadCount: kvHeads, headDim: headDim, vocabularySize: try int("vocab_size"),
            rmsNormEpsilon: Float(eps), rope: try rope(), tiedEmbeddings: try bool("tie_word_embeddings", default: false),
            attentionBias: false, outputBias: false, mlpBias: try bool("mlp_bias", default: false), qkNorm: false,
            slidingWindow: Array(repeating: nil, count: layers),
            bosTokenID: optionalInt("bos_token_id"), eosTokenID: optionalInt("eos_token_id"))
    }

    /// RoPE parameters: transformers ≥ 5 writes `rope_parameters`; older configs `rope_theta` + `rope_scaling`.
    func rope() throws -> RoPEScaling {
        // A member that is absent or JSON null means "not given".
        func given(_ k: String) -> JSONValue? {
            guard let v = json[k] else { return nil }
            if case .null = v { return nil }
            return v
        }
        let params: JSONValue? = given("rope_parameters") ?? given("rope_scaling")
        let key = given("rope_parameters") != nil ? "rope_parameters" : "rope_scaling"
        let theta = try params?["rope_theta"]?.doubleValue ?? double("rope_theta", default: 10000)
        guard theta > 0 else { throw ModelError.badConfig(path: path, key: "rope_theta", why: "not positive") }
        guard let params else { return RoPEScaling(kind: .standard, theta: theta) }
        guard params.objectValue != nil else { throw ModelError.badConfig(path: path, key: key, why: "not an object") }
        let typeName = params["rope_type"]?.stringValue ?? params["type"]?.stringValue ?? "default"
        guard let kind = RoPEScaling.Kind(rawValue: typeName) else {
            throw ModelError.unsupportedFeature(path: path, feature: "\(key).rope_type '\(typeName)' (qkit computes default, linear, dynamic and llama3)")
        }
        var r = RoPEScaling(kind: kind, theta: theta)
        func number(_ k: String, _ d: Double? = nil) throws -> Double {
            if let v = params[k]?.doubleValue, v.isFinite { return v }
            if let d { return d }
            throw ModelError.badConfig(path: path, key: "\(key).\(k)", why: "missing for rope_type \(typeName)")
        }
        switch kind {
        case .standard: break
        case .linear: r.factor = try number("factor")
        case .dynamic:
            r.factor = try number("factor")
            r.originalContext = Int(try number("original_max_position_embeddings", Double(try int("max_position_embeddings"))))
        case .llama3:
            r.factor = try number("factor")
            r.lowFrequencyFactor = try number("low_freq_factor")
            r.highFrequencyFactor = try number("high_freq_factor")
            r.originalContext = Int(try number("original_max_position_embeddings"))
        }
        guard r.factor > 0 else { throw ModelError.badConfig(path: path, key: "\(key).factor", why: "not positive") }
        return r
    }
}
