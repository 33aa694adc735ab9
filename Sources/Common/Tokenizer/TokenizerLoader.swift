/// Reads the parts of a `tokenizer.json` document, refusing anything malformed or not implemented.
struct TokenizerLoader {
    let path: String

    struct Parts {
        var model: BPEModel
        var normalizer: Normalizer?
        var preTokenizer: PreTokenizer?
        var decoder: Decoder?
        var added: AddedTokens
        var tokens: [String?]
        var prefix: [Int32]
        var suffix: [Int32]

        func id(_ text: String) -> Int32? { added.idOfContent[text] ?? model.vocab.get(Array(text.utf8)) }
    }

    func invalid(_ what: String) -> TokenizerError { .invalid(path: path, what) }
    func unsupported(_ what: String) -> TokenizerError { .unsupported(path: path, what) }

    func object(_ v: JSONValue?, _ name: String) throws(TokenizerError) -> JSONObject {
        guard let o = v?.objectValue else { throw invalid("\(name) is not an object") }
        return o
    }

    func string(_ o: JSONValue, _ key: String, in name: String) throws(TokenizerError) -> String {
        guard let s = o[key]?.stringValue else { throw invalid("\(name): '\(key)' is missing or not a string") }
        return s
    }

    func bool(_ o: JSONValue, _ key: String, default d: Bool, in name: String) throws(TokenizerError) -> Bool {
        guard let v = o[key], v != .null else { return d }
        guard let b = v.boolValue else { throw invalid("\(name): '\(key)' is not a boolean") }
        return b
    }

    func type(_ v: JSONValue, _ name: String) throws(TokenizerError) -> String {
        guard v.objectValue != nil else { throw invalid("\(name) is not an object") }
        return try string(v, "type", in: name)
    }

    func load(_ root: JSONValue) throws(TokenizerError) -> Parts {
        guard root.objectValue != nil else { throw invalid("the top level is not an object") }
        func present(_ key: String) -> JSONValue? {
            guard let v = root[key], v != .null else { return nil }
            return v
        }
        var normalizer: Normalizer?
        if let v = present("normalizer") { normalizer = try self.normalizer(v) }
        var pre: PreTokenizer?
        if let v = present("pre_tokenizer") { pre = try preTokenizer(v) }
        if let pre { try checkByteLevelLast(pre) }
        var decoder: Decoder?
        if let v = present("decoder") { decoder = try self.decoder(v) }
        guard let m = root["model"], m.objectValue != nil else { throw invalid("'model' is missing or not an object") }
        let (model, tokensOfModel) = try bpe(m, byteLevel: pre?.isByteLevel ?? false)

        var tokens = tokensOfModel
        var added = AddedTokens()
        // As HF does, the ids in the file are not used: an added token takes the id it already has (as an added
        // token, then in the model's vocabulary), else the next id after the vocabulary's entry count.
        var nextID = Int32(model.vocab.count)
        if let list = root["added_tokens"], list != .null {
            guard let items = list.arrayValue else { throw invalid("'added_tokens' is not an array") }
            for (k, t) in items.enumerated() {
                let name = "added_tokens[\(k)]"
                guard t.objectValue != nil else { throw invalid("\(name) is not an object") }
                guard let fileID = t["id"]?.intValue, fileID >= 0, fileID < Int(Int32.max) else { throw invalid("\(name): 'id' is missing or not a valid id") }
                let content = try string(t, "content", in: name)
                guard !content.isEmpty else { continue }
                let id: Int32
                if let known = added.idOfContent[content] ?? model.vocab.get(Array(content.utf8)) {
                    id = known
                } else {
                    guard nextID < Int32.max - 1 else { throw invalid("\(name): too many added tokens") }
                    id = nextID
                    nextID += 1
                }
                _ = fileID
                let special = try bool(t, "special", default: false, in: name)
                let token = AddedTokens.Token(
                    content: Array(content.utf8), id: id, special: special,
                    singleWord: try bool(t, "single_word", default: false, in: name), lstrip: try bool(t, "lstrip", default: false, in: name),
                    rstrip: try bool(t, "rstrip", default: false, in: name), normalized: try bool(t, "normalized", default: !special, in: name))
                added.add(token) { normalizer?.apply($0) ?? $0 }
                if Int(id) >= tokens.count { tokens += Array(repeating: nil, count: Int(id) + 1 - tokens.count) }
                tokens[Int(id)] = content
            }
        }
        var parts = Parts(model: model, normalizer: normalizer, preTokenizer: pre, decoder: decoder, added: added, tokens: tokens, prefix: [], suffix: [])
        if let p = root["post_processor"], p != .null {
            (parts.prefix, parts.suffix) = try postProcessor(p, parts)
        }
        return parts
    }

    /// ByteLevel must be the last step: the steps after it would see byte-table text, which qkit does not model.
    func checkByteLevelLast(_ p: PreTokenizer) throws(TokenizerError) {
        guard case .sequence(let steps) = p else { return }
        var flat: [PreTokenizer] = []
        func walk(_ s: [PreTokenizer]) { for x in s { if case .sequence(let inner) = x { walk(inner) } else { flat.append(x) } } }
        walk(steps)
        if let i = flat.firstIndex(where: { $0.isByteLevel }), i != flat.count - 1 {
            throw unsupported("pre-tokenizer steps after ByteLevel")
        }
    }

    func normalizer(_ v: JSONValue) throws(TokenizerError) -> Normalizer {
        let t = try type(v, "normalizer")
        switch t {
        case "Sequence":
            guard let list = v["normalizers"]?.arrayValue else { throw invalid("Sequence normalizer: 'normalizers' is not an array") }
            var out: [Normalizer] = []
            for x in list { out.append(try normalizer(x)) }
            return .sequence(out)
        case "NFC": return .nfc
        case "Lowercase": return .lowercase
        case "Prepend": return .prepend(Array(try string(v, "prepend", in: "Prepend normalizer").utf8))
        case "Replace":
            let (pattern, content) = try replacement(v, "Replace normalizer")
            return .replace(pattern: Array(pattern.utf8), content: Array(content.utf8))
        default:
            throw unsupported("normalizer '\(t)'")
        }
    }

    func replacement(_ v: JSONValue, _ name: String) throws(TokenizerError) -> (String, String) {
        let content = try string(v, "content", in: name)
        guard let p = v["pattern"], p.objectValue != nil else { throw invalid("\(name): 'pattern' is not an object") }
        if let s = p["String"]?.stringValue { return (s, content) }
        if let r = p["Regex"]?.stringValue { throw unsupported("\(name) with regex pattern '\(r)'") }
        throw invalid("\(name): 'pattern' has neither 'String' nor 'Regex'")
    }

    func preTokenizer(_ v: JSONValue) throws(TokenizerError) -> PreTokenizer {
        let t = try type(v, "pre_tokenizer")
        switch t {
        case "Sequence":
            guard let list = v["pretokenizers"]?.arrayValue else { throw invalid("Sequence pre-tokenizer: 'pretokenizers' is not an array") }
            var out: [PreTokenizer] = []
            for x in list { out.append(try preTokenizer(x)) }
            return .sequence(out)
        case "ByteLevel":
            return .byteLevel(addPrefixSpace: try bool(v, "add_prefix_space", default: true, in: "ByteLevel"),
                              useRegex: try bool(v, "use_regex", default: true, in: "ByteLevel"))
        case "Digits":
            return .digits(individual: try bool(v, "individual_digits", default: false, in: "Digits"))
        case "Metaspace":
            let r = try string(v, "replacement", in: "Metaspace")
            guard r.unicodeScalars.count == 1 else { throw invalid("Metaspace: 'replacement' is not one character") }
            let scheme: PreTokenizer.PrependScheme
            if let s = v["prepend_scheme"]?.stringValue {
                guard let p = PreTokenizer.PrependScheme(rawValue: s) else { throw invalid("Metaspace: unknown prepend_scheme '\(s)'") }
                scheme = p
            } else {
                scheme = try bool(v, "add_prefix_space", default: true, in: "Metaspace") ? .always : .never
            }
            return .metaspace(replacement: Array(r.utf8), prepend: scheme, split: try bool(v, "split", default: true, in: "Metaspace"))
        case "Split":
            guard let p = v["pattern"], p.objectValue != nil else { throw invalid("Split: 'pattern' is not an object") }
            let pattern: SplitPattern
            if let s = p["String"]?.stringValue {
                pattern = .literal(Array(s.utf8))
            } else if let r = p["Regex"]?.stringValue {
                guard let known = SplitPattern(regex: r) else { throw unsupported("Split regex '\(r)'") }
                pattern = known
            } else {
                throw invalid("Split: 'pattern' has neither 'String' nor 'Regex'")
            }
            let b = try string(v, "behavior", in: "Split")
            guard let behavior = SplitBehavior(rawValue: b) else { throw invalid("Split: unknown behavior '\(b)'") }
            return .split(pattern, behavior, invert: try bool(v, "invert", default: false, in: "Split"))
        default:
            throw unsupported("pre-tokenizer '\(t)'")
        }
    }

    func decoder(_ v: JSONValue) throws(TokenizerError) -> Decoder {
        let t = try type(v, "decoder")
        switch t {
        case "Sequence":
            guard let list = v["decoders"]?.arrayValue else { throw invalid("Sequence decoder: 'decoders' is not an array") }
            var out: [Decoder] = []
            for x in list { out.append(try decoder(x)) }
            return .sequence(out)
        case "ByteLevel": return .byteLevel
        case "ByteFallback": return .byteFallback
        case "Fuse": return .fuse
        case "Replace":
            let (pattern, content) = try replacement(v, "Replace decoder")
            return .replace(pattern: pattern, content: content)
        case "Strip":
            let c = try string(v, "content", in: "Strip decoder")
            guard c.unicodeScalars.count == 1, let start = v["start"]?.intValue, let stop = v["stop"]?.intValue, start >= 0, stop >= 0 else {
                throw invalid("Strip decoder: needs one 'content' character and non-negative 'start' and 'stop'")
            }
            return .strip(content: c.unicodeScalars.first!, start: start, stop: stop)
        case "Metaspace":
            let r = try string(v, "replacement", in: "Metaspace decoder")
            guard r.unicodeScalars.count == 1 else { throw invalid("Metaspace decoder: 'replacement' is not one character") }
            var scheme = PreTokenizer.PrependScheme.always
            if let s = v["prepend_scheme"]?.stringValue {
                guard let p = PreTokenizer.PrependScheme(rawValue: s) else { throw invalid("Metaspace decoder: unknown prepend_scheme '\(s)'") }
                scheme = p
            } else if v["add_prefix_space"]?.boolValue == false {
                scheme = .never
            }
            return .metaspace(replacement: r.unicodeScalars.first!, prependScheme: scheme)
        default:
            throw unsupported("decoder '\(t)'")
        }
    }

    func bpe(_ m: JSONValue, byteLevel: Bool) throws(TokenizerError) -> (BPEModel, [String?]) {
        let t = m["type"]?.stringValue ?? (m["merges"] != nil ? "BPE" : "?")
        guard t == "BPE" else { throw unsupported("model type '\(t)' (only BPE)") }
        if let d = m["dropout"], d != .null {
            guard let x = d.doubleValue else { throw invalid("model: 'dropout' is not a number") }
            if x > 0 { throw unsupported("BPE dropout \(x)") }
        }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let v = m[key], v != .null {
                guard let s = v.stringValue else { throw invalid("model: '\(key)' is not a string") }
                if !s.isEmpty { throw unsupported("BPE \(key) '\(s)'") }
            }
        }
        guard let vocabObject = m["vocab"]?.objectValue else { throw invalid("model: 'vocab' is missing or not an object") }
        var vocab = ByteStringTable(capacity: vocabObject.members.count)
        var tokens: [String?] = []
        tokens.reserveCapacity(vocabObject.members.count)
        for (token, idValue) in vocabObject.members {
            guard let id = idValue.intValue, id >= 0, id < Int(Int32.max) else { throw invalid("model: vocab entry '\(token)' has no valid id") }
            vocab.set(Array(token.utf8), Int32(id))
            if id >= tokens.count {
                guard id < 16 * vocabObject.members.count + 1_000_000 else { throw invalid("model: vocab id \(id) is far beyond the vocabulary size") }
                tokens += Array(repeating: nil, count: id + 1 - tokens.count)
            }
            tokens[id] = token
        }
        guard let mergeList = m["merges"]?.arrayValue else { throw invalid("model: 'merges' is missing or not an array") }
        var merges: [UInt64: UInt64] = [:]
        merges.reserveCapacity(mergeList.count)
        for (rank, item) in mergeList.enumerated() {
            let a: String, b: String
            if let s = item.stringValue {
                let parts = s.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false)
                guard parts.count == 2 else { throw invalid("model: merge \(rank) '\(s)' is not two tokens separated by a space") }
                (a, b) = (String(parts[0]), String(parts[1]))
            } else if let pair = item.arrayValue, pair.count == 2, let x = pair[0].stringValue, let y = pair[1].stringValue {
                (a, b) = (x, y)
            } else {
                throw invalid("model: merge \(rank) is neither a string nor a pair of strings")
            }
            guard let ia = vocab.get(Array(a.utf8)) else { throw invalid("model: merge \(rank) names '\(a)', which is not in the vocabulary") }
            guard let ib = vocab.get(Array(b.utf8)) else { throw invalid("model: merge \(rank) names '\(b)', which is not in the vocabulary") }
            guard let merged = vocab.get(Array((a + b).utf8)) else { throw invalid("model: merge \(rank) makes '\(a + b)', which is not in the vocabulary") }
            merges[UInt64(UInt32(ia)) << 32 | UInt64(UInt32(ib))] = UInt64(rank) << 32 | UInt64(UInt32(merged))
        }
        var unknownID: Int32?
        if let u = m["unk_token"], u != .null {
            guard let s = u.stringValue else { throw invalid("model: 'unk_token' is not a string") }
            guard let id = vocab.get(Array(s.utf8)) else { throw invalid("model: unk_token '\(s)' is not in the vocabulary") }
            unknownID = id
        }
        let model = BPEModel(
            vocab: vocab, tokens: tokens, merges: merges, unknownID: unknownID,
            fuseUnknown: try bool(m, "fuse_unk", default: false, in: "model"), byteFallback: try bool(m, "byte_fallback", default: false, in: "model"),
            ignoreMerges: try bool(m, "ignore_merges", default: false, in: "model"), byteLevel: byteLevel)
        return (model, tokens)
    }

    /// The ids the post-processor puts before and after a single sequence.
    func postProcessor(_ v: JSONValue, _ parts: Parts) throws(TokenizerError) -> ([Int32], [Int32]) {
        let t = try type(v, "post_processor")
        func tokenPair(_ key: String) throws(TokenizerError) -> Int32 {
            guard let pair = v[key]?.arrayValue, pair.count == 2, let id = pair[1].intValue, id >= 0, id < Int(Int32.max) else {
                throw invalid("\(t) post-processor: '\(key)' is not a [token, id] pair")
            }
            return Int32(id)
        }
        switch t {
        case "ByteLevel":
            return ([], [])
        case "Sequence":
            guard let list = v["processors"]?.arrayValue else { throw invalid("Sequence post-processor: 'processors' is not an array") }
            var prefix: [Int32] = [], suffix: [Int32] = []
            for p in list {
                let (a, b) = try postProcessor(p, parts)
                prefix = a + prefix
                suffix += b
            }
            return (prefix, suffix)
        case "RobertaProcessing", "BertProcessing":
            return ([try tokenPair("cls")], [try tokenPair("sep")])
        case "TemplateProcessing":
            guard let single = v["single"]?.arrayValue else { throw invalid("TemplateProcessing: 'single' is not an array") }
            let specials = v["special_tokens"]?.objectValue ?? JSONObject()
            var prefix: [Int32] = [], suffix: [Int32] = []
            var seenSequence = false
            for piece in single {
                if piece["Sequence"] != nil {
                    guard !seenSequence else { throw invalid("TemplateProcessing: 'single' has two sequences") }
                    seenSequence = true
                } else if let s = piece["SpecialToken"] {
                    guard let name = s["id"]?.stringValue else { throw invalid("TemplateProcessing: a SpecialToken has no 'id'") }
                    var ids: [Int32] = []
                    if let entry = specials[name] {
                        guard let list = entry["ids"]?.arrayValue else { throw invalid("TemplateProcessing: special token '\(name)' has no 'ids'") }
                        for x in list {
                            guard let i = x.intValue, i >= 0, i < Int(Int32.max) else { throw invalid("TemplateProcessing: special token '\(name)' has a bad id") }
                            ids.append(Int32(i))
                        }
                    } else {
                        throw invalid("TemplateProcessing: special token '\(name)' is not in 'special_tokens'")
                    }
                    if seenSequence { suffix += ids } else { prefix += ids }
                } else {
                    throw invalid("TemplateProcessing: a piece of 'single' is neither Sequence nor SpecialToken")
                }
            }
            return (prefix, suffix)
        default:
            throw unsupported("post-processor '\(t)'")
        }
    }
}
