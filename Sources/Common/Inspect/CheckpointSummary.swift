/// The architecture a checkpoint's config describes.
public struct ArchitectureSummary: Sendable, Equatable {
    public var family: String?
    public var architecture: String?
    public var layers: Int?
    public var hidden: Int?
    public var intermediate: Int?
    public var heads: Int?
    public var kvHeads: Int?
    public var headDim: Int?
    public var vocab: Int?
    public var tiedEmbeddings: Bool?
    public var contextLength: Int?
    public var dtype: String?

    /// Reads a Hugging Face config.json.
    public init(config c: JSONValue) {
        family = c["model_type"]?.stringValue
        architecture = c["architectures"]?.arrayValue?.first?.stringValue
        layers = c["num_hidden_layers"]?.intValue ?? c["n_layer"]?.intValue ?? c["num_layers"]?.intValue
        hidden = c["hidden_size"]?.intValue ?? c["n_embd"]?.intValue ?? c["d_model"]?.intValue
        intermediate = c["intermediate_size"]?.intValue ?? c["ffn_dim"]?.intValue ?? c["n_inner"]?.intValue
        heads = c["num_attention_heads"]?.intValue ?? c["n_head"]?.intValue
        kvHeads = c["num_key_value_heads"]?.intValue ?? heads
        headDim = c["head_dim"]?.intValue ?? ((hidden != nil && heads != nil && heads! > 0) ? hidden! / heads! : nil)
        vocab = c["vocab_size"]?.intValue
        tiedEmbeddings = c["tie_word_embeddings"]?.boolValue ?? (family.map { ["llama", "mistral", "qwen2", "qwen3"].contains($0) } == true ? false : nil)
        contextLength = c["max_position_embeddings"]?.intValue
        dtype = c["torch_dtype"]?.stringValue ?? c["dtype"]?.stringValue
        if let cls = c["_class_name"]?.stringValue {
            // A diffusers model: the family from the class, blocks from num_layers (+ FLUX's num_single_layers).
            architecture = cls
            family = DiffusionTransformers.all.first { $0.classNames.contains(cls) }.map { $0.family } ?? "diffusers"
            if let l = c["num_layers"]?.intValue { layers = l + (c["num_single_layers"]?.intValue ?? 0) }
            headDim = c["attention_head_dim"]?.intValue ?? headDim
            if let h = heads, let hd = c["attention_head_dim"]?.intValue { hidden = h * hd }
            kvHeads = heads
        }
    }

    /// Reads an MLC mlc-chat-config.json: `model_type` and the Hugging Face style `model_config` MLC keeps
    /// (its `context_window_size` is the context; the weights' dtype comes from the quantization preset).
    public init(mlcChatConfig m: JSONValue) {
        self.init(config: m["model_config"] ?? .object(JSONObject()))
        family = m["model_type"]?.stringValue ?? family
        contextLength = m["model_config"]?["context_window_size"]?.intValue ?? m["context_window_size"]?.intValue ?? contextLength
        vocab = vocab ?? m["vocab_size"]?.intValue
        if let q = m["quantization"]?.stringValue, let preset = MLCPreset.named(q) { dtype = preset.tvmModelDType }
    }

    public init() {}
}

/// Parameters and bytes of one group of tensors (embeddings, attention, MLP, norms, lm_head, other).
public struct ParameterGroupSummary: Sendable, Equatable {
    public var name: String
    public var tensors = 0
    public var parameters = 0
    public var bytes = 0
    /// Stored bits per logical parameter.
    public var bitsPerParameter: Double { parameters > 0 ? Double(bytes) * 8 / Double(parameters) : 0 }
}

/// Everything `qinspect --summary` reports.
public struct CheckpointSummary: Sendable {
    public var kind: CheckpointKind
    public var files: Int
    public var fileBytes: Int
    public var tensors: Int
    public var parameters: Int
    public var dataBytes: Int
    public var architecture: ArchitectureSummary?
    public var groups: [ParameterGroupSummary]
    /// (dtype or ggml type, tensors, bytes), largest first.
    public var bytesByType: [(type: String, tensors: Int, bytes: Int)]
    public var format: String
    public var settings: [(String, String)]
    /// Bits per weight over the quantized weights (codes, scales, zeros and indices included).
    public var quantizedBitsPerWeight: Double?
    public var quantizedParameters: Int
    /// `__metadata__` of the first file.
    public var metadata: [(key: String, value: String)]
    /// A diffusers transformer's blocks and block linears (nil for other checkpoints).
    public var diffusion: DiffusionSummary?

    /// Stored bits per logical parameter over the whole checkpoint.
    public var bitsPerParameter: Double { parameters > 0 ? Double(dataBytes) * 8 / Double(parameters) : 0 }

    /// Summarizes an opened checkpoint (reads headers and a few tiny tensors only).
    public init(_ ck: Checkpoint) {
        kind = ck.kind
        files = ck.files.count
        fileBytes = ck.fileBytes
        tensors = ck.tensors.count
        dataBytes = ck.dataBytes
        metadata = ck.safetensorsMetadata.first.flatMap { $0 } ?? []
        let weights = FormatDetector.weightGroups(ck)
        parameters = weights.reduce(0) { $0 + $1.parameters }
        if let c = ck.config {
            architecture = ArchitectureSummary(config: c)
        } else if let m = FormatDetector.mlcChatConfig(ck) {
            architecture = ArchitectureSummary(mlcChatConfig: m)
        } else {
            architecture = Self.ggufArchitecture(ck)
        }
        var groups = ["embeddings", "attention", "mlp", "norms", "lm_head", "other"].map { ParameterGroupSummary(name: $0) }
        for w in weights {
            let i = Self.groupIndex(w.prefix)
            groups[i].tensors += w.tensorNames.count
            groups[i].parameters += w.parameters
            groups[i].bytes += w.bytes
        }
        self.groups = groups.filter { $0.tensors > 0 }
        var byType: [String: (Int, Int)] = [:]
        for t in ck.tensors {
            let k = t.encoding.description
            byType[k] = ((byType[k]?.0 ?? 0) + 1, (byType[k]?.1 ?? 0) + t.byteCount)
        }
        bytesByType = byType.map { (type: $0.key, tensors: $0.value.0, bytes: $0.value.1) }
            .sorted { ($0.bytes, $1.type) > ($1.bytes, $0.type) }
        (format, settings) = FormatDetector.describe(ck, groups: weights)
        let q = weights.filter { $0.scheme != .float }
        quantizedParameters = q.reduce(0) { $0 + $1.parameters }
        quantizedBitsPerWeight = quantizedParameters > 0 ? Double(q.reduce(0) { $0 + $1.bytes }) * 8 / Double(quantizedParameters) : nil
        diffusion = DiffusionTransformers.isDiffusers(ck) ? DiffusionSummary(ck, groups: weights) : nil
    }

    /// Which parameter group a tensor or module name falls in (index into the fixed group list).
    static func groupIndex(_ name: String) -> Int {
        let n = name.lowercased()
        let parts = n.split(separator: ".").map(String.init)
        func has(_ words: [String]) -> Bool { parts.contains { p in words.contains { p == $0 || p.hasPrefix($0) } } }
        if has(["embed_tokens", "token_embd", "wte", "wpe", "word_embeddings", "embed_positions", "tok_embeddings"]) { return 0 }
        if has(["lm_head", "embed_out"]) || n == "output.weight" || n == "output" { return 4 }
        if parts.contains(where: { $0.contains("norm") || $0.hasPrefix("ln_") || $0 == "ln" }) { return 3 }
        if has(["self_attn", "attn", "attention", "attn_q", "attn_k", "attn_v", "attn_output", "attn_qkv"]) { return 1 }
        if has(["mlp", "ffn", "feed_forward", "experts", "block_sparse_moe", "ffn_gate", "ffn_up", "ffn_down"]) { return 2 }
        return 5
    }

    /// Architecture facts from GGUF metadata (`{arch}.block_count` and friends).
    static func ggufArchitecture(_ ck: Checkpoint) -> ArchitectureSummary? {
                guard let g = ck.gguf, let arch = g["general.architecture"]?.stringValue else { return nil }
        var a = ArchitectureSummary()
        a.family = arch
        a.layers = g["\(arch).block_count"]?.intValue
        a.hidden = g["\(arch).embedding_length"]?.intValue
        a.intermediate = g["\(arch).feed_forward_length"]?.intValue
        a.heads = g["\(arch).attention.head_count"]?.intValue
        a.kvHeads = g["\(arch).attention.head_count_kv"]?.intValue ?? a.heads
        a.headDim = g["\(arch).attention.key_length"]?.intValue ?? ((a.hidden != nil && (a.heads ?? 0) > 0) ? a.hidden! / a.heads! : nil)
        a.vocab = g["\(arch).vocab_size"]?.intValue ?? g["tokenizer.ggml.tokens"]?.arrayValue?.count
        a.tiedEmbeddings = ck["output.weight"] == nil
        a.contextLength = g["\(arch).context_length"]?.intValue
        return a
            }
}
