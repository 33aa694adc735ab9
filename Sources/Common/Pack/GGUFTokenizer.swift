/// Builds Hugging Face `tokenizer.json` / `tokenizer_config.json` from a GGUF vocabulary
/// (`tokenizer.ggml.*`), faithful to how llama.cpp tokenizes with that vocabulary (src/llama-vocab.cpp).
enum GGUFTokenizer {
    /// The GPT-2 pre-tokenizer expression (what ByteLevel `use_regex: true` applies).
    static let gpt2Regex = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    static let llama3Regex = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let qwen2Regex = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    /// Pre-tokenizer families of llama.cpp's byte-level BPE (`tokenizer.ggml.pre`).
    enum PreTokenizer {
        case gpt2, digitsThenGPT2, llama3, qwen2, defaultBPE

        init?(name: String) {
            switch name {
            case "gpt-2", "gpt2", "phi-2", "jina-es", "jina-de", "jina-v2-es", "jina-v2-de", "jina-v2-code", "gigachat",
                "mpt", "olmo", "jais", "trillion", "granite-docling", "exaone4":
                self = .gpt2
            case "smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b":
                self = .digitsThenGPT2
            case "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "dbrx", "smaug-bpe":
                self = .llama3
            case "qwen2", "stablelm2", "deepseek-r1-qwen", "hunyuan", "megrez":
                self = .qwen2
            case "default":
                self = .defaultBPE
            default:
                return nil
            }
        }

        /// llama.cpp sets `ignore_merges` for the Llama-3 family (not for dbrx/smaug).
        static func ignoresMerges(_ name: String) -> Bool {
            ["llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2"].contains(name)
        }

        var json: JSONValue {
            func byteLevel(useRegex: Bool, trimOffsets: Bool) -> JSONValue {
                ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": .bool(trimOffsets), "use_regex": .bool(useRegex)]
            }
            func split(_ regex: String) -> JSONValue {
                ["type": "Split", "pattern": ["Regex": .string(regex)], "behavior": "Isolated", "invert": false]
            }
            switch self {
            case .gpt2:
                return byteLevel(useRegex: true, trimOffsets: true)
            case .digitsThenGPT2:
                return ["type": "Sequence", "pretokenizers": [
                    ["type": "Digits", "individual_digits": true], byteLevel(useRegex: true, trimOffsets: true),
                ]]
            case .llama3:
                return ["type": "Sequence", "pretokenizers": [split(GGUFTokenizer.llama3Regex), byteLevel(useRegex: false, trimOffsets: true)]]
            case .qwen2:
                return ["type": "Sequence", "pretokenizers": [split(GGUFTokenizer.qwen2Regex), byteLevel(useRegex: false, trimOffsets: false)]]
            case .defaultBPE:
                // llama.cpp's default list: punctuation runs, the GPT-2 expression, digit runs, digit triples.
                return ["type": "Sequence", "pretokenizers": [
                    split(#"[\p{P}\$\+<=>\^~\|]+"#), split(GGUFTokenizer.gpt2Regex), split(#"\p{N}+"#), split("[0-9][0-9][0-9]"),
                    byteLevel(useRegex: false, trimOffsets: true),
                ]]
            }
        }
    }

    /// The vocabulary fields of a GGUF file.
    struct Vocabulary {
        var model: String
        var pre: String?
        var tokens: [String]
        var types: [Int]
        var merges: [String]
        var scores: [Double]
        var bos: Int?
        var eos: Int?
        var unk: Int?
        var pad: Int?
        var addBOS: Bool?
        var addEOS: Bool?
        var addSpacePrefix: Bool?
        var chatTemplate: String?

        init(_ g: GGUFFile) throws(GGUFImportError) {
            guard let model = g["tokenizer.ggml.model"]?.stringValue else { throw .missingKey("tokenizer.ggml.model") }
            self.model = model
            pre = g["tokenizer.ggml.pre"]?.stringValue
            guard let t = g["tokenizer.ggml.tokens"]?.arrayValue else { throw .missingKey("tokenizer.ggml.tokens") }
            tokens = try t.map { v throws(GGUFImportError) in
                guard let s = v.stringValue else { throw .badKey("tokenizer.ggml.tokens") }
                return s
            }
            types = (g["tokenizer.ggml.token_type"]?.arrayValue ?? []).map { $0.intValue ?? 1 }
            if !types.isEmpty, types.count != tokens.count { throw .badKey("tokenizer.ggml.token_type") }
            merges = (g["tokenizer.ggml.merges"]?.arrayValue ?? []).compactMap(\.stringValue)
            scores = (g["tokenizer.ggml.scores"]?.arrayValue ?? []).compactMap(\.doubleValue)
            func id(_ key: String) throws(GGUFImportError) -> Int? {
                guard let v = g[key] else { return nil }
                guard let i = v.intValue, i >= 0, i < tokens.count else { throw .badKey(key) }
                return i
            }
            bos = try id("tokenizer.ggml.bos_token_id")
            eos = try id("tokenizer.ggml.eos_token_id")
            unk = try id("tokenizer.ggml.unknown_token_id")
            pad = try id("tokenizer.ggml.padding_token_id")
            addBOS = g["tokenizer.ggml.add_bos_token"]?.boolValue
            addEOS = g["tokenizer.ggml.add_eos_token"]?.boolValue
            addSpacePrefix = g["tokenizer.ggml.add_space_prefix"]?.boolValue
            chatTemplate = g["tokenizer.chat_template"]?.stringValue
        }

        func type(_ i: Int) -> Int { i < types.count ? types[i] : 1 }
    }

    /// `tokenizer.json` for the vocabulary.
    static func tokenizerJSON(_ v: Vocabulary) throws(GGUFImportError) -> JSONValue {
        switch v.model {
        case "gpt2": return try byteLevelBPE(v)
        case "llama": return try sentencePieceBPE(v)
        default: throw .unsupportedTokenizer("tokenizer model '\(v.model)' (only gpt2 byte-level BPE and llama SentencePiece)")
        }
    }

    /// Whether token `i` is an added token: unknown (type 2) and control (3) ones are special, user-defined
    /// ones (4) are not; normal (1), unused (5) and byte (6) tokens belong to the model.
    static func added(_ v: Vocabulary, _ i: Int) -> (added: Bool, special: Bool) {
        switch v.type(i) {
        case 2, 3: (true, true)
        case 4: (true, false)
        default: (false, false)
        }
    }

    static func addedTokens(_ v: Vocabulary) -> [JSONValue] {
        var out: [JSONValue] = []
        for (i, t) in v.tokens.enumerated() {
            let a = added(v, i)
            guard a.added else { continue }
            out.append(["id": .int(i), "content": .string(t), "single_word": false, "lstrip": false, "rstrip": false,
                        "normalized": false, "special": .bool(a.special)])
        }
        return out
    }

    static func vocabObject(_ v: Vocabulary) -> JSONValue {
        var seen = Set<String>()
        var o = JSONObject()
        o.members.reserveCapacity(v.tokens.count)
        for (i, t) in v.tokens.enumerated() where seen.insert(t).inserted { o.members.append((t, .int(i))) }
        return .object(o)
    }

    static func mergesArray(_ merges: [String]) throws(GGUFImportError) -> JSONValue {
        var out: [JSONValue] = []
        out.reserveCapacity(merges.count)
        for m in merges {
            guard let sp = m.firstIndex(of: " ") else { throw .badKey("tokenizer.ggml.merges") }
            out.append([.string(String(m[..<sp])), .string(String(m[m.index(after: sp)...]))])
        }
        return .array(out)
    }

    /// The post-processor: BOS/EOS added when the GGUF asks for them (llama.cpp's add_bos/add_eos).
    static func template(_ v: Vocabulary, addBOS: Bool, addEOS: Bool) -> JSONValue? {
        guard addBOS || addEOS else { return nil }
        var single: [JSONValue] = []
        var pair: [JSONValue] = []
        var special = JSONObject()
        func sp(_ id: Int) -> JSONValue { ["SpecialToken": ["id": .string(v.tokens[id]), "type_id": 0]] }
        if addBOS, let b = v.bos {
            single.append(sp(b)); pair.append(sp(b))
            special.members.append((v.tokens[b], ["id": .string(v.tokens[b]), "ids": [.int(b)], "tokens": [.string(v.tokens[b])]]))
        }
        single.append(["Sequence": ["id": "A", "type_id": 0]])
        pair.append(["Sequence": ["id": "A", "type_id": 0]])
        if addEOS, let e = v.eos {
            single.append(sp(e)); pair.append(sp(e))
            if special[v.tokens[e]] == nil {
                special.members.append((v.tokens[e], ["id": .string(v.tokens[e]), "ids": [.int(e)], "tokens": [.string(v.tokens[e])]]))
            }
        }
        if addBOS, let b = v.bos { pair.append(["SpecialToken": ["id": .string(v.tokens[b]), "type_id": 1]]) }
        pair.append(["Sequence": ["id": "B", "type_id": 1]])
        if addEOS, let e = v.eos { pair.append(["SpecialToken": ["id": .string(v.tokens[e]), "type_id": 1]]) }
        return ["type": "TemplateProcessing", "single": .array(single), "pair": .array(pair), "special_tokens": .object(special)]
    }

    static func byteLevelBPE(_ v: Vocabulary) throws(GGUFImportError) -> JSONValue {
        let preName = v.pre ?? "default"
        guard let pre = PreTokenizer(name: preName) else {
            throw .unsupportedTokenizer("pre-tokenizer '\(preName)' (tokenizer.ggml.pre)")
        }
        let byteLevelPost: JSONValue = ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true]
        var post = byteLevelPost
        if let t = template(v, addBOS: v.addBOS ?? false, addEOS: v.addEOS ?? false) {
            post = ["type": "Sequence", "processors": [byteLevelPost, t]]
        }
        return [
            "version": "1.0",
            "truncation": nil,
            "padding": nil,
            "added_tokens": .array(addedTokens(v)),
            "normalizer": nil,
            "pre_tokenizer": pre.json,
            "post_processor": post,
            "decoder": ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true],
            "model": [
                "type": "BPE",
                "dropout": nil,
                "unk_token": nil,
                "continuing_subword_prefix": nil,
                "end_of_word_suffix": nil,
                "fuse_unk": false,
                "byte_fallback": false,
                "ignore_merges": .bool(PreTokenizer.ignoresMerges(preName)),
                "vocab": vocabObject(v),
                "merges": try mergesArray(v.merges),
            ],
        ]
    }

    /// SentencePiece-style BPE (Llama 2, Mistral): Metaspace handling as a normalizer, byte fallback to
    /// `<0xNN>` tokens. When the GGUF has no merges they are rebuilt from the scores, as transformers does.
    static func sentencePieceBPE(_ v: Vocabulary) throws(GGUFImportError) -> JSONValue {
        let merges: JSONValue
        if !v.merges.isEmpty {
            merges = try mergesArray(v.merges)
        } else {
            guard v.scores.count == v.tokens.count else { throw .missingKey("tokenizer.ggml.scores") }
            merges = .array(mergesFromScores(v).map { [.string($0.0), .string($0.1)] })
        }
        let addBOS = v.addBOS ?? true
        let prefix = v.addSpacePrefix ?? true
        var normalizers: [JSONValue] = []
        if prefix { normalizers.append(["type": "Prepend", "prepend": "\u{2581}"]) }
        normalizers.append(["type": "Replace", "pattern": ["String": " "], "content": "\u{2581}"])
        var decoders: [JSONValue] = [
            ["type": "Replace", "pattern": ["String": "\u{2581}"], "content": " "], ["type": "ByteFallback"], ["type": "Fuse"],
        ]
        if prefix { decoders.append(["type": "Strip", "content": " ", "start": 1, "stop": 0]) }
        return [
            "version": "1.0",
            "truncation": nil,
            "padding": nil,
            "added_tokens": .array(addedTokens(v)),
            "normalizer": ["type": "Sequence", "normalizers": .array(normalizers)],
            "pre_tokenizer": nil,
            "post_processor": template(v, addBOS: addBOS, addEOS: v.addEOS ?? false) ?? nil,
            "decoder": ["type": "Sequence", "decoders": .array(decoders)],
            "model": [
                "type": "BPE",
                "dropout": nil,
                "unk_token": v.unk.map { .string(v.tokens[$0]) } ?? nil,
                "continuing_subword_prefix": nil,
                "end_of_word_suffix": nil,
                "fuse_unk": true,
                "byte_fallback": true,
                "ignore_merges": false,
                "vocab": vocabObject(v),
                "merges": merges,
            ],
        ]
    }

    /// Merges implied by SentencePiece scores: every split of a token into two vocabulary tokens, ordered by
    /// the merged token's score (highest first), ties by the pieces' scores (transformers' GGUF converter).
    static func mergesFromScores(_ v: Vocabulary) -> [(String, String)] {
        var ids: [String: Int] = [:]
        for (i, t) in v.tokens.enumerated() where ids[t] == nil { ids[t] = i }
        var found: [(l: String, r: String, score: Double, li: Int, ri: Int, order: Int)] = []
        for (i, t) in v.tokens.enumerated() where ids[t] == i {
            // Split by code point, as Python does (not by grapheme cluster).
            let chars = Array(t.unicodeScalars)
            guard chars.count > 1 else { continue }
            var local: [(l: String, r: String, score: Double, li: Int, ri: Int, order: Int)] = []
            for k in 1..<chars.count {
                var l = "", r = ""
                l.unicodeScalars.append(contentsOf: chars[..<k])
                r.unicodeScalars.append(contentsOf: chars[k...])
                if let li = ids[l], let ri = ids[r] { local.append((l, r, v.scores[i], li, ri, k)) }
            }
            // Pieces ordered by their own scores, highest first (the split position breaks ties).
            local.sort {
                let a = (v.scores[$0.li], v.scores[$0.ri]), b = (v.scores[$1.li], v.scores[$1.ri])
                return a != b ? a > b : $0.order < $1.order
            }
            for var e in local { e.order = found.count; found.append(e) }
        }
        found.sort { $0.score != $1.score ? $0.score > $1.score : $0.order < $1.order }
        return found.map { ($0.l, $0.r) }
    }

    /// `tokenizer_config.json`.
    static func tokenizerConfig(_ v: Vocabulary, modelMaxLength: Int?) -> JSONValue {
        var o = JSONObject()
        let addBOS = v.addBOS ?? (v.model == "llama")
        o["add_bos_token"] = .bool(addBOS)
        o["add_eos_token"] = .bool(v.addEOS ?? false)
        if v.model == "gpt2" { o["add_prefix_space"] = false }
        var decl = JSONObject()
        for (i, t) in v.tokens.enumerated() where added(v, i).added {
            decl.members.append((String(i), ["content": .string(t), "lstrip": false, "normalized": false, "rstrip": false,
                                             "single_word": false, "special": .bool(added(v, i).special)]))
        }
        o["added_tokens_decoder"] = .object(decl)
        func tok(_ id: Int?) -> JSONValue { id.map { .string(v.tokens[$0]) } ?? nil }
        o["bos_token"] = tok(v.bos)
        if let t = v.chatTemplate { o["chat_template"] = .string(t) }
        o["clean_up_tokenization_spaces"] = false
        o["eos_token"] = tok(v.eos)
        if let m = modelMaxLength { o["model_max_length"] = .int(m) }
        o["pad_token"] = tok(v.pad)
        o["tokenizer_class"] = v.model == "gpt2" ? "PreTrainedTokenizerFast" : "LlamaTokenizerFast"
        o["unk_token"] = tok(v.unk)
        return .object(o)
    }
}

extension GGUFTokenizer {
    /// The `tokenizer.ggml.*` metadata of a Hugging Face byte-level BPE tokenizer (`tokenizer.json`,
    /// `tokenizer_config.json`, `chat_template.jinja`), as llama.cpp's converter writes it: the tokens in id
    /// order padded to `vocabSize` with `[PADn]` (type 5, unused), token types (1 normal, 3 control for special
    /// added tokens and `<|…|>` ones, 4 user-defined), the merges, the pre-tokenizer name whose expression
    /// this importer maps back to the same `pre_tokenizer`, the special ids and the chat template.
    static func exportedVocabulary(directory dir: String, config: JSONValue, vocabSize: Int) throws -> [(key: String, value: GGUFValue)] {
        let path = dir + "/tokenizer.json"
        func fail(_ what: String) -> PackError { PackError.unsupported(path: path, backend: "gguf", what: what) }
        guard fileExists(path) else { throw PackError.malformed(path: dir, what: "no tokenizer.json (the GGUF vocabulary is made from it)") }
        let t = try JSONParser.parse(try readSmallFile(path), rejectDuplicateKeys: false)
        guard t["model"]?["type"]?.stringValue == "BPE", case .object(let vocab)? = t["model"]?["vocab"] else {
            throw fail("a tokenizer model other than BPE")
        }
        // A normalizer that does something (SentencePiece's Prepend/Replace) is not byte-level BPE; an empty
        // Sequence (what transformers 5 saves) is. Byte fallback never fires when every byte is a token.
        let normalizer = t["normalizer"] ?? .null
        guard normalizer == .null || (normalizer["type"]?.stringValue == "Sequence" && normalizer["normalizers"]?.arrayValue?.isEmpty == true) else {
            throw fail("a SentencePiece-style BPE tokenizer (a normalizer; only byte-level BPE is exported)")
        }
        let pre = try preTokenizerName(t["pre_tokenizer"] ?? .null, fail: fail)
        var tokens = [String?](repeating: nil, count: vocabSize)
        var types = [Int32](repeating: 1, count: vocabSize)
        for (token, id) in vocab.members {
            guard let i = id.intValue, i >= 0, i < vocabSize else { throw fail("token id \(id.serialized()) outside the vocabulary of \(vocabSize)") }
            tokens[i] = token
        }
        var byContent: [String: Int] = [:]
        for (token, id) in vocab.members { byContent[token] = id.intValue }
        for added in t["added_tokens"]?.arrayValue ?? [] {
            guard let i = added["id"]?.intValue, i >= 0, i < vocabSize, let content = added["content"]?.stringValue else { continue }
            tokens[i] = content
            byContent[content] = i
            let looksSpecial = (content.hasPrefix("<|") && content.hasSuffix("|>")) || ["<pad>", "<mask>"].contains(content)
            types[i] = added["special"]?.boolValue == true || looksSpecial ? 3 : 4
        }
        for i in 0..<vocabSize where tokens[i] == nil { types[i] = 5 }
        let merges: [GGUFValue] = try (t["model"]?["merges"]?.arrayValue ?? []).map { m in
            if let s = m.stringValue { return .string(s) }
            guard let pair = m.arrayValue?.compactMap(\.stringValue), pair.count == 2 else { throw fail("a merge that is neither \"a b\" nor [a, b]") }
            return .string(pair[0] + " " + pair[1])
        }

        let tc = (try? JSONParser.parse(try readSmallFile(dir + "/tokenizer_config.json"), rejectDuplicateKeys: false)) ?? .null
        func special(_ name: String, configKey: String) -> Int? {
            let v = tc[name]
            if let s = v?.stringValue ?? v?["content"]?.stringValue, let id = byContent[s] { return id }
            if let i = config[configKey]?.intValue ?? config[configKey]?.arrayValue?.first?.intValue, i >= 0, i < vocabSize { return i }
            return nil
        }
        var m: [(key: String, value: GGUFValue)] = []
        if let p = tc["add_prefix_space"]?.boolValue { m.append(("tokenizer.ggml.add_space_prefix", .bool(p))) }
        // add_bos_token as tokenizer_config says, else as the post-processor does (a BOS in its single template).
        let template = t["post_processor"]?["single"]?.arrayValue ?? t["post_processor"]?["processors"]?.arrayValue?
            .first { $0["type"]?.stringValue == "TemplateProcessing" }?["single"]?.arrayValue ?? []
        let bosInTemplate = template.first?["SpecialToken"] != nil
        m.append(("tokenizer.ggml.add_bos_token", .bool(tc["add_bos_token"]?.boolValue ?? bosInTemplate)))
        m += [("tokenizer.ggml.model", .string("gpt2")), ("tokenizer.ggml.pre", .string(pre)),
              ("tokenizer.ggml.tokens", .array(.string, tokens.enumerated().map { .string($0.element ?? "[PAD\($0.offset)]") })),
              ("tokenizer.ggml.token_type", .array(.int32, types.map { .int32($0) })),
              ("tokenizer.ggml.merges", .array(.string, merges))]
        for (key, name, configKey) in [("bos_token_id", "bos_token", "bos_token_id"), ("eos_token_id", "eos_token", "eos_token_id"),
                                       ("unknown_token_id", "unk_token", "unk_token_id"), ("padding_token_id", "pad_token", "pad_token_id")] {
            if let id = special(name, configKey: configKey) { m.append(("tokenizer.ggml." + key, .uint32(UInt32(id)))) }
        }
        if let template = tc["chat_template"]?.stringValue {
            m.append(("tokenizer.chat_template", .string(template)))
        } else if let bytes = try? readSmallFile(dir + "/chat_template.jinja") {
            m.append(("tokenizer.chat_template", .string(String(decoding: bytes, as: UTF8.self))))
        }
        return m
    }

    /// The `tokenizer.ggml.pre` name whose pre-tokenizer (as the importer writes it) has the same steps as `json`.
    static func preTokenizerName(_ json: JSONValue, fail: (String) -> PackError) throws -> String {
        func steps(_ v: JSONValue) -> [String] {
            if v["type"]?.stringValue == "Sequence" { return (v["pretokenizers"]?.arrayValue ?? []).flatMap(steps) }
            let type = v["type"]?.stringValue ?? "none"
            switch type {
            case "Split": return ["Split " + (v["pattern"]?["Regex"]?.stringValue ?? v["pattern"]?["String"]?.stringValue ?? "")]
            case "Digits": return ["Digits \(v["individual_digits"]?.boolValue ?? false)"]
            case "ByteLevel": return ["ByteLevel \(v["use_regex"]?.boolValue ?? true)"]
            default: return [type]
            }
        }
        let mine = steps(json)
        for name in ["gpt-2", "smollm", "llama-bpe", "qwen2"] where steps(PreTokenizer(name: name)!.json) == mine { return name }
        throw fail("pre-tokenizer \(mine.joined(separator: " + ")) (exported: those of gpt-2, smollm, llama-bpe and qwen2)")
    }
}
