/// `mlc-chat-config.json` as `mlc_llm gen_config` writes it (mlc-ai/mlc-llm: interface/gen_config.py,
/// protocol/mlc_chat_config.py, the model families' config dataclasses), from the source's config.json,
/// generation_config.json and tokenizer files, with gen_config's defaults (max_batch_size 128, no overrides).
///
/// One deliberate difference: a transformers-5 config that keeps `rope_theta` inside `rope_parameters` gets that
/// value (MLC's config classes look for a top-level `rope_theta` only and would fall back to 10000).
public enum MLCChatConfig {
    /// The `version` field (mlc_llm/support/constants.py).
    public static let version = "0.1.0"
    /// gen_config's default `--max-batch-size`.
    public static let maxBatchSize = 128
    /// The tokenizer files gen_config copies when present (TOKENIZER_FILES), in its order.
    public static let tokenizerFiles = ["tokenizer.model", "tokenizer.json", "vocab.json", "merges.txt", "added_tokens.json", "tokenizer_config.json"]
    /// Conversation templates qpack knows (`--conv-template`).
    public static var templateNames: [String] { MLCConversationTemplates.json.keys.sorted() }

    /// The conversation template `name` as the JSON object mlc-chat-config.json holds.
    public static func conversationTemplate(_ name: String) -> JSONValue? {
        MLCConversationTemplates.json[name].flatMap { try? JSONParser.parse($0) }
    }

    /// The template for a model: from its chat template's markers (Llama 3 headers, ChatML, [INST]), else `LM`.
    public static func detectTemplate(family: MLCFamily, chatTemplate: String?) -> String {
        guard let t = chatTemplate, !t.isEmpty else { return "LM" }
        if t.contains("<|start_header_id|>") { return t.contains("<|eom_id|>") || t.contains("Cutting Knowledge") ? "llama-3_1" : "llama-3" }
        if t.contains("<|im_start|>") {
            switch family.modelType {
            case "qwen3": return "qwen3"
            case "qwen2": return "qwen2"
            default: return "chatml"
            }
        }
        if t.contains("[INST]") { return t.contains("<<SYS>>") ? "llama-2" : "mistral_default" }
        return "LM"
    }

    /// MLC's `TokenizerInfo` of a tokenizer.json (cpp/tokenizers/tokenizers.cc DetectTokenizerInfo): the decoder's
    /// ByteLevel/ByteFallback (the last found in a Sequence wins), a `Prepend "▁"` normalizer, a
    /// `Strip " " 1 0` decoder.
    public static func tokenizerInfo(_ tokenizer: JSONValue?) -> JSONValue {
        var method = "byte_fallback", prepend = false, strip = false
        func items(_ v: JSONValue?, _ key: String) -> [JSONValue] {
            guard let v else { return [] }
            return v["type"]?.stringValue == "Sequence" ? (v[key]?.arrayValue ?? []) : [v]
        }
        if let tokenizer {
            for d in items(tokenizer["decoder"], "decoders") {
                switch d["type"]?.stringValue {
                case "ByteLevel": method = "byte_level"
                case "ByteFallback": method = "byte_fallback"
                default: break
                }
            }
            for n in items(tokenizer["normalizer"], "normalizers") where n["type"]?.stringValue == "Prepend" && n["prepend"]?.stringValue == "\u{2581}" {
                prepend = true
                break
            }
            for d in items(tokenizer["decoder"], "decoders")
            where d["type"]?.stringValue == "Strip" && d["content"]?.stringValue == " " && d["start"]?.intValue == 1 && d["stop"]?.intValue == 0 {
                strip = true
                break
            }
        }
        return .object(JSONObject([("token_postproc_method", .string(method)), ("prepend_space_in_encode", .bool(prepend)),
                                   ("strip_space_in_decode", .bool(strip))]))
    }

    /// `len(AutoTokenizer)`: the model vocabulary plus added tokens not in it.
    public static func activeVocabSize(_ tokenizer: JSONValue?) -> Int? {
        guard let vocab = tokenizer?["model"]?["vocab"] else { return nil }
        var ids = Set<Int>()
        switch vocab {
        case .object(let o): for (_, v) in o.members { if let i = v.intValue { ids.insert(i) } }
        case .array(let a): ids = Set(0..<a.count)  // Unigram: [[piece, score], ...]
        default: return nil
        }
        for t in tokenizer?["added_tokens"]?.arrayValue ?? [] { if let i = t["id"]?.intValue { ids.insert(i) } }
        return ids.count
    }

    /// The `model_config` object: MLC's config dataclass of the family, filled from config.json and run through its
    /// `__post_init__`, with gen_config's `max_batch_size`.
    public static func modelConfig(_ family: MLCFamily, _ config: JSONValue, path: String) throws -> JSONObject {
        func fail(_ what: String) -> PackError { PackError.unsupported(path: path, backend: "mlc", what: what) }
        func value(_ key: String) -> JSONValue? { config[key].flatMap { $0 == .null ? nil : $0 } }
        func required(_ key: String) throws -> JSONValue {
            guard let v = value(key) else { throw PackError.malformed(path: path, what: "config.json has no '\(key)' (MLC's \(family.modelType) config needs it)") }
            return v
        }
        let hidden = try required("hidden_size"), heads = try required("num_attention_heads")
        guard let h = hidden.intValue, let nh = heads.intValue, nh > 0 else { throw PackError.malformed(path: path, what: "config.json: hidden_size or num_attention_heads is not an integer") }
        let ropeTheta = value("rope_theta") ?? value("rope_parameters")?["rope_theta"]
        var context = value("context_window_size") ?? .int(0)
        if context.intValue == 0 { context = value("max_position_embeddings") ?? value("max_sequence_length") ?? .int(0) }
        func contextRequired() throws -> Int {
            guard let c = context.intValue, c != 0 else {
                throw PackError.malformed(path: path, what: "config.json has no max_position_embeddings (MLC needs the context window size)")
            }
            return c
        }
        func prefill(_ cap: Int) throws -> JSONValue {
            let c = try contextRequired()
            if let p = value("prefill_chunk_size")?.intValue, p != 0, p <= c { return .int(p) }
            return .int(min(c, cap))
        }
        let kvHeads = value("num_key_value_heads") ?? heads
        let headDim = value("head_dim") ?? .int(h / nh)
        var o = JSONObject()
        switch family.modelType {
        case "llama", "mistral":
            var scaling: JSONValue = .null
            let rs = value("rope_scaling") ?? value("rope_parameters").flatMap { $0["rope_type"]?.stringValue == "default" ? nil : $0 }
            if let rs, let t = rs["rope_type"]?.stringValue {
                guard family.modelType == "llama", t == "llama3" else { throw fail("rope scaling '\(t)' (MLC's \(family.modelType) takes llama3 scaling only)") }
                scaling = rs
            }
            o["hidden_size"] = hidden
            o["intermediate_size"] = try required("intermediate_size")
            o["num_attention_heads"] = heads
            o["num_hidden_layers"] = try required("num_hidden_layers")
            o["rms_norm_eps"] = try required("rms_norm_eps")
            o["vocab_size"] = try required("vocab_size")
            if family.modelType == "llama" {
                o["tie_word_embeddings"] = value("tie_word_embeddings") ?? false
                o["position_embedding_base"] = ropeTheta ?? 10000
                o["rope_scaling"] = scaling
                o["context_window_size"] = .int(try contextRequired())
                o["prefill_chunk_size"] = try prefill(8192)
                o["num_key_value_heads"] = kvHeads
                o["head_dim"] = headDim
                o["tensor_parallel_shards"] = 1
                o["pipeline_parallel_stages"] = 1
                o["max_batch_size"] = .int(maxBatchSize)
                o["disaggregation"] = false
            } else {
                o["position_embedding_base"] = ropeTheta ?? 10000
                o["num_key_value_heads"] = kvHeads
                o["head_dim"] = headDim
                let sliding = value("sliding_window")?.intValue ?? -1
                let window = sliding == -1 ? try contextRequired() : -1
                o["context_window_size"] = .int(window)
                o["sliding_window_size"] = .int(sliding)
                let candidates = [sliding, window].filter { $0 != -1 }
                o["prefill_chunk_size"] = .int(min(candidates.min() ?? 8192, 8192))
                o["attention_sink_size"] = 4
                o["tensor_parallel_shards"] = 1
                o["max_batch_size"] = .int(maxBatchSize)
            }
        case "qwen2", "qwen3":
            guard let ropeTheta else { throw PackError.malformed(path: path, what: "config.json has no rope_theta (MLC's \(family.modelType) config needs it)") }
            o["hidden_act"] = try required("hidden_act")
            o["hidden_size"] = hidden
            o["intermediate_size"] = try required("intermediate_size")
            if family.modelType == "qwen3" { o["attention_bias"] = value("attention_bias") ?? false }
            o["num_attention_heads"] = heads
            o["num_hidden_layers"] = try required("num_hidden_layers")
            o["num_key_value_heads"] = try required("num_key_value_heads")
            o["rms_norm_eps"] = try required("rms_norm_eps")
            o["rope_theta"] = ropeTheta
            o["vocab_size"] = try required("vocab_size")
            o["tie_word_embeddings"] = value("tie_word_embeddings") ?? false
            o["context_window_size"] = .int(try contextRequired())
            o["prefill_chunk_size"] = try prefill(family.modelType == "qwen3" ? 2048 : 8192)
            o["tensor_parallel_shards"] = 1
            o["head_dim"] = headDim
            o["dtype"] = value("dtype") ?? "float32"
            o["max_batch_size"] = .int(maxBatchSize)
            if family.modelType == "qwen3" { o["weight_block_size"] = .null }
        default:
            throw fail("model_type '\(family.modelType)'")
        }
        return o
    }

    /// The whole mlc-chat-config.json object for a model directory (`directory` holds config.json and the tokenizer
    /// files), and the tokenizer files to copy beside it.
    public static func make(directory: String?, config: JSONValue, family: MLCFamily, preset: MLCPreset, template: String?,
                            path: String) throws -> (config: JSONObject, tokenizerFiles: [String]) {
        let model = try modelConfig(family, config, path: path)
        func readJSON(_ name: String) -> JSONValue? {
            guard let directory, let b = try? readSmallFile(directory + "/" + name, limit: 512 << 20) else { return nil }
            return try? JSONParser.parse(b, rejectDuplicateKeys: false)
        }
        let names = directory.map(listDirectory) ?? []
        let files = tokenizerFiles.filter { names.contains($0) }
        let tokenizer = readJSON("tokenizer.json")
        var chatTemplate = readJSON("tokenizer_config.json")?["chat_template"]?.stringValue
        if chatTemplate == nil, let directory, let b = try? readSmallFile(directory + "/chat_template.jinja", limit: 16 << 20) {
            chatTemplate = String(decoding: b, as: UTF8.self)
        }
        let templateName = template ?? detectTemplate(family: family, chatTemplate: chatTemplate)
        guard let conv = conversationTemplate(templateName) else {
            throw PackError.usage("--conv-template: unknown template '\(templateName)' (known: \(templateNames.joined(separator: ", ")))")
        }
        let vocab = model["vocab_size"] ?? .null
        var o = JSONObject([("version", .string(version)), ("model_type", .string(family.modelType)), ("quantization", .string(preset.name)),
                            ("model_config", .object(model)), ("vocab_size", vocab),
                            ("context_window_size", model["context_window_size"] ?? -1), ("sliding_window_size", model["sliding_window_size"] ?? -1),
                            ("prefill_chunk_size", model["prefill_chunk_size"] ?? .null), ("attention_sink_size", model["attention_sink_size"] ?? -1),
                            ("tensor_parallel_shards", model["tensor_parallel_shards"] ?? 1),
                            ("pipeline_parallel_stages", model["pipeline_parallel_stages"] ?? 1),
                            ("active_vocab_size", tokenizer.flatMap(activeVocabSize).map { .int($0) } ?? vocab),
                            ("temperature", .null), ("presence_penalty", .null), ("frequency_penalty", .null), ("repetition_penalty", .null),
                            ("top_p", .null), ("tokenizer_files", .array(files.map { .string($0) })), ("tokenizer_info", tokenizerInfo(tokenizer)),
                            ("conv_template", conv), ("pad_token_id", .null), ("bos_token_id", .null), ("eos_token_id", .null),
                            ("model_task", "chat"), ("embedding_metadata", .null)])
        // generation_config.json, then config.json, fill the fields still unset; then MLC's system defaults.
        let fillable = ["temperature", "presence_penalty", "frequency_penalty", "repetition_penalty", "top_p", "pad_token_id", "bos_token_id",
                        "eos_token_id", "embedding_metadata"]
        for source in [readJSON("generation_config.json"), config] {
            guard case .object(let s)? = source else { continue }
            for (key, v) in s.members where fillable.contains(key) && o[key] == .null { o[key] = v }
        }
        let defaults: [(String, JSONValue)] = [("pad_token_id", 0), ("bos_token_id", 1), ("eos_token_id", 2), ("temperature", 1.0),
                                               ("presence_penalty", 0.0), ("frequency_penalty", 0.0), ("repetition_penalty", 1.0), ("top_p", 1.0)]
        for (key, v) in defaults where o[key] == .null { o[key] = v }
        return (o, files)
    }

    /// A Hugging Face config.json for qkit's forward pass, rebuilt from mlc-chat-config.json's `model_config`.
    public static func huggingFaceConfig(_ chat: JSONValue) -> JSONValue? {
        guard let type = chat["model_type"]?.stringValue, let m = chat["model_config"]?.objectValue else { return nil }
        var o = JSONObject([("model_type", .string(type))])
        for key in ["hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers", "num_key_value_heads", "head_dim", "rms_norm_eps",
                    "vocab_size", "tie_word_embeddings", "hidden_act", "attention_bias", "rope_scaling"] {
            if let v = m[key] { o[key] = v }
        }
        if let t = m["rope_theta"] ?? m["position_embedding_base"] { o["rope_theta"] = t }
        if let c = m["context_window_size"], (c.intValue ?? -1) > 0 { o["max_position_embeddings"] = c }
        if let s = m["sliding_window_size"], (s.intValue ?? -1) > 0 { o["sliding_window"] = s }
        for key in ["bos_token_id", "eos_token_id", "pad_token_id"] { if let v = chat[key] { o[key] = v } }
        return .object(o)
    }
}
