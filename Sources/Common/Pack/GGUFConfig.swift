/// Why a GGUF file cannot be imported as a Hugging Face checkpoint.
public enum GGUFImportError: QKitError, Equatable {
    case unsupportedArchitecture(String)
    case missingKey(String)
    case badKey(String)
    case unknownTensor(String)
    case missingTensor(String)
    case badTensorShape(String)
    case unsupportedTokenizer(String)
    case unsupportedDType(String)
    case unsupportedRoPE(String)

    public var exitStatus: ExitStatus {
        switch self {
        case .unsupportedDType: .usage
        default: .dataError
        }
    }

    public var description: String {
        switch self {
        case .unsupportedArchitecture(let a): "GGUF architecture '\(a)' cannot be imported yet (supported: llama, qwen2)"
        case .missingKey(let k): "GGUF metadata key '\(k)' is missing"
        case .badKey(let k): "GGUF metadata key '\(k)' has an unexpected type or value"
        case .unknownTensor(let n): "GGUF tensor '\(n)' has no Hugging Face equivalent for this architecture"
        case .missingTensor(let n): "GGUF tensor '\(n)' is missing"
        case .badTensorShape(let n): "GGUF tensor '\(n)' has a shape that does not match the metadata"
        case .unsupportedTokenizer(let what): "cannot convert the GGUF tokenizer: unsupported \(what)"
        case .unsupportedDType(let d): "output dtype \(d) is not supported (use f32, f16 or bf16)"
        case .unsupportedRoPE(let what): "cannot convert the GGUF RoPE: \(what)"
        }
    }
}

/// The architecture-level facts of a GGUF model and the Hugging Face `config.json` made from them.
struct GGUFModelConfig {
    enum Family: String { case llama, qwen2 }

    let family: Family
    let architecture: String
    let layers: Int
    let hidden: Int
    let intermediate: Int
    let heads: Int
    let kvHeads: Int
    let headDim: Int
    let contextLength: Int
    let eps: Double
    let ropeTheta: Double
    /// Llama 3's RoPE scaling, recovered from the `rope_freqs.weight` factors llama.cpp stores for it.
    let ropeScaling: RoPEScaling?
    let vocabSize: Int
    let tied: Bool
    let attentionBias: Bool

    init(_ g: GGUFFile) throws(GGUFImportError) {
        guard let arch = g["general.architecture"]?.stringValue else { throw .missingKey("general.architecture") }
        guard let family = Family(rawValue: arch) else { throw .unsupportedArchitecture(arch) }
        self.family = family
        architecture = arch
        func int(_ k: String) throws(GGUFImportError) -> Int {
            guard let v = g["\(arch).\(k)"] else { throw .missingKey("\(arch).\(k)") }
            guard let i = v.intValue, i > 0 else { throw .badKey("\(arch).\(k)") }
            return i
        }
        func optionalInt(_ k: String) throws(GGUFImportError) -> Int? {
            guard let v = g["\(arch).\(k)"] else { return nil }
            guard let i = v.intValue, i > 0 else { throw .badKey("\(arch).\(k)") }
            return i
        }
        layers = try int("block_count")
        hidden = try int("embedding_length")
        intermediate = try int("feed_forward_length")
        heads = try int("attention.head_count")
        kvHeads = try optionalInt("attention.head_count_kv") ?? heads
        contextLength = try int("context_length")
        guard heads % kvHeads == 0 else { throw .badKey("\(arch).attention.head_count_kv") }
        if let k = try optionalInt("attention.key_length") {
            headDim = k
        } else {
            guard hidden % heads == 0 else { throw .badKey("\(arch).attention.head_count") }
            headDim = hidden / heads
        }
        guard let e = g["\(arch).attention.layer_norm_rms_epsilon"]?.doubleValue else {
            throw .missingKey("\(arch).attention.layer_norm_rms_epsilon")
        }
        eps = e
        ropeTheta = g["\(arch).rope.freq_base"]?.doubleValue ?? (family == .qwen2 ? 1_000_000 : 10_000)
        if let t = g.tensor(named: "rope_freqs.weight") {
            guard t.type == .f32, t.dimensions == [headDim / 2] else { throw .badTensorShape("rope_freqs.weight") }
            let raw = g.data(t)
            let factors = (0..<(headDim / 2)).map { raw.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) }
            if factors.allSatisfy({ $0 == 1 }) {
                ropeScaling = nil
            } else if let r = RotaryEmbedding.llama3Scaling(fromFactors: factors, theta: ropeTheta, headDim: headDim) {
                ropeScaling = r
            } else {
                throw .unsupportedRoPE("rope_freqs.weight holds factors that are not Llama 3's scaling")
            }
        } else {
            ropeScaling = nil
        }
        if let v = try optionalInt("vocab_size") {
            vocabSize = v
        } else if let t = g["tokenizer.ggml.tokens"]?.arrayValue {
            vocabSize = t.count
        } else if let e = g.tensor(named: "token_embd.weight"), e.dimensions.count == 2 {
            vocabSize = e.dimensions[1]
        } else {
            throw .missingKey("\(arch).vocab_size")
        }
        tied = g.tensor(named: "output.weight") == nil
        attentionBias = g.tensor(named: "blk.0.attn_q.bias") != nil
    }

    /// `config.json` as transformers writes it for this architecture.
    func json(dtype: DType, bos: Int?, eos: Int?, pad: Int?, unk: Int?) -> JSONValue {
        var o = JSONObject()
        o["architectures"] = [.string(family == .llama ? "LlamaForCausalLM" : "Qwen2ForCausalLM")]
        if family == .llama { o["attention_bias"] = .bool(attentionBias) }
        o["attention_dropout"] = 0.0
        o["bos_token_id"] = bos.map { .int($0) } ?? nil
        o["eos_token_id"] = eos.map { .int($0) } ?? nil
        if family == .llama { o["head_dim"] = .int(headDim) }
        o["hidden_act"] = "silu"
        o["hidden_size"] = .int(hidden)
        o["initializer_range"] = 0.02
        o["intermediate_size"] = .int(intermediate)
        o["max_position_embeddings"] = .int(contextLength)
        if family == .qwen2 { o["max_window_layers"] = .int(layers) }
        if family == .llama { o["mlp_bias"] = false }
        o["model_type"] = .string(family.rawValue)
        o["num_attention_heads"] = .int(heads)
        o["num_hidden_layers"] = .int(layers)
        o["num_key_value_heads"] = .int(kvHeads)
        if let pad { o["pad_token_id"] = .int(pad) }
        if family == .llama { o["pretraining_tp"] = 1 }
        o["rms_norm_eps"] = .double(eps)
        if let r = ropeScaling {
            let fields: [(String, JSONValue)] = [
                ("factor", .double(r.factor)), ("high_freq_factor", .double(r.highFrequencyFactor)),
                ("low_freq_factor", .double(r.lowFrequencyFactor)), ("original_max_position_embeddings", .int(r.originalContext)),
                ("rope_type", "llama3"),
            ]
            o["rope_parameters"] = .object(JSONObject(fields + [("rope_theta", .double(ropeTheta))]))
            o["rope_scaling"] = .object(JSONObject(fields))
        } else {
            o["rope_parameters"] = ["rope_theta": .double(ropeTheta), "rope_type": "default"]
            o["rope_scaling"] = nil
        }
        o["rope_theta"] = .double(ropeTheta)
        if family == .qwen2 {
            o["sliding_window"] = nil
            o["use_sliding_window"] = false
        }
        o["tie_word_embeddings"] = .bool(tied)
        o["torch_dtype"] = .string(dtype == .f32 ? "float32" : dtype == .f16 ? "float16" : "bfloat16")
        if let unk { o["unk_token_id"] = .int(unk) }
        o["use_cache"] = true
        o["vocab_size"] = .int(vocabSize)
        return .object(o)
    }

    /// llama.cpp's names of the per-block tensors (`blk.N.<gguf>.weight|bias`) and the Hugging Face modules
    /// they hold (`model.layers.N.<hf>.weight|bias`), shared by the importer and the exporter.
    static let blockTensors: [(gguf: String, hf: String)] = [
        ("attn_q", "self_attn.q_proj"), ("attn_k", "self_attn.k_proj"), ("attn_v", "self_attn.v_proj"), ("attn_output", "self_attn.o_proj"),
        ("ffn_gate", "mlp.gate_proj"), ("ffn_up", "mlp.up_proj"), ("ffn_down", "mlp.down_proj"),
        ("attn_norm", "input_layernorm"), ("ffn_norm", "post_attention_layernorm"),
    ]
    /// The tensors outside the blocks.
    static let globalTensors: [(gguf: String, hf: String)] = [
        ("token_embd.weight", "model.embed_tokens.weight"), ("output_norm.weight", "model.norm.weight"), ("output.weight", "lm_head.weight"),
    ]

    /// llama.cpp's name of a Hugging Face tensor, or `nil` when llama.cpp has none.
    static func ggufName(ofHF name: String) -> String? {
        if let g = globalTensors.first(where: { $0.hf == name }) { return g.gguf }
        let parts = name.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count >= 5, parts[0] == "model", parts[1] == "layers", let layer = Int(parts[2]), String(layer) == parts[2],
            let kind = parts.last, kind == "weight" || kind == "bias"
        else { return nil }
        let module = parts[3..<(parts.count - 1)].joined(separator: ".")
        guard let b = blockTensors.first(where: { $0.hf == module }) else { return nil }
        return "blk.\(layer).\(b.gguf).\(kind)"
    }

    /// How a GGUF tensor maps to Hugging Face: its name, and the head count whose row permutation
    /// (llama.cpp's convert_hf_to_gguf `permute`) must be undone, if any. `nil` = not carried over.
    func hfTensor(_ name: String) throws(GGUFImportError) -> (name: String, permuteHeads: Int?)? {
        switch name {
        case "rope_freqs.weight": return nil  // derived from the rope parameters; transformers recomputes it
        default: break
        }
        if let g = Self.globalTensors.first(where: { $0.gguf == name }) { return (g.hf, nil) }
        let parts = name.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "blk", let layer = Int(parts[1]), layer >= 0, layer < layers,
            String(layer) == parts[1], parts[3] == "weight" || parts[3] == "bias"
        else { throw .unknownTensor(name) }
        let kind = parts[3]
        let prefix = "model.layers.\(layer)."
        guard let b = Self.blockTensors.first(where: { $0.gguf == parts[2] }), kind == "weight" || !b.gguf.hasSuffix("norm") else {
            throw .unknownTensor(name)
        }
        return (prefix + b.hf + "." + kind, permutedHeads(b.gguf))
    }

    /// The head count of the q/k row permutation llama.cpp's converter applies to a Llama block tensor, if any.
    func permutedHeads(_ ggufModule: String) -> Int? {
        guard family == .llama else { return nil }
        return ggufModule == "attn_q" ? heads : ggufModule == "attn_k" ? kvHeads : nil
    }

    /// The HF shape each tensor must have (a malformed GGUF with consistent-looking metadata is refused).
    func expectedShape(_ hfName: String) -> [Int]? {
        let q = heads * headDim, kv = kvHeads * headDim
        if hfName == "model.embed_tokens.weight" || hfName == "lm_head.weight" { return [vocabSize, hidden] }
        if hfName == "model.norm.weight" { return [hidden] }
        let table: [(String, [Int])] = [
            ("self_attn.q_proj.weight", [q, hidden]), ("self_attn.k_proj.weight", [kv, hidden]),
            ("self_attn.v_proj.weight", [kv, hidden]), ("self_attn.o_proj.weight", [hidden, q]),
            ("self_attn.q_proj.bias", [q]), ("self_attn.k_proj.bias", [kv]), ("self_attn.v_proj.bias", [kv]),
            ("mlp.gate_proj.weight", [intermediate, hidden]), ("mlp.up_proj.weight", [intermediate, hidden]),
            ("mlp.down_proj.weight", [hidden, intermediate]),
            ("input_layernorm.weight", [hidden]), ("post_attention_layernorm.weight", [hidden]),
        ]
        for (suffix, shape) in table where hfName.hasSuffix("." + suffix) { return shape }
        return nil
    }
}
