/// A tokenizer loaded from a Hugging Face `tokenizer.json` (model type BPE), producing the same ids as the
/// Hugging Face `tokenizers` library.
///
/// Supported: byte-level BPE (GPT-2, Llama-3, Qwen2, SmolLM: `ByteLevel`, `Split` with those families'
/// expressions, `Digits`, `Sequence`, `ignore_merges`) and SentencePiece-style BPE (Llama-2, Mistral:
/// `Prepend`/`Replace`/`NFC` normalizers, `Metaspace`, byte fallback to `<0xNN>`, `unk`); added tokens with
/// their `single_word`/`lstrip`/`rstrip`/`normalized` flags; the `TemplateProcessing`, `ByteLevel`,
/// `RobertaProcessing`/`BertProcessing` and `Sequence` post-processors; the `ByteLevel`, `Replace`,
/// `ByteFallback`, `Fuse`, `Strip`, `Metaspace` and `Sequence` decoders. Anything else is refused when the
/// file is loaded, with ``TokenizerError/unsupported(path:_:)`` naming it.
///
/// Encoding is thread-safe; large texts are encoded on all cores, with the same result as on one.
public final class Tokenizer: Sendable {
    let model: BPEModel
    let normalizer: Normalizer?
    let preTokenizer: PreTokenizer?
    let decoder: Decoder?
    let added: AddedTokens
    /// Token text by id (model vocabulary and added tokens).
    let tokens: [String?]
    /// Ids put before and after the text when special tokens are asked for.
    let prefixIDs: [Int32], suffixIDs: [Int32]

    /// The number of ids: one more than the largest id of the vocabulary and the added tokens.
    public var vocabularySize: Int { tokens.count }
    /// The beginning-of-sequence token, from `tokenizer_config.json` or else the post-processor's first special token.
    public let bosTokenID: Int32?
    /// The end-of-sequence token, from `tokenizer_config.json` when it names one.
    public let eosTokenID: Int32?

    /// Loads `tokenizer.json` at `path`.
    /// - Throws: ``TokenizerError``.
    public convenience init(path: String) throws(TokenizerError) {
        try self.init(json: try Self.read(path), path: path, config: nil)
    }

    /// Loads `tokenizer.json` from a model directory, with `tokenizer_config.json` when present: its
    /// `bos_token`/`eos_token` give ``bosTokenID``/``eosTokenID``, and its `add_bos_token`/`add_eos_token`
    /// decide what `encode(_:addSpecialTokens: true)` adds (as transformers does), instead of the post-processor.
    /// - Throws: ``TokenizerError``.
    public convenience init(directory: String) throws(TokenizerError) {
        let path = directory + "/tokenizer.json"
        let json = try Self.read(path)
        let configPath = directory + "/tokenizer_config.json"
        var config: JSONValue?
        if let bytes = try? MappedFile(path: configPath) {
            do {
                config = try JSONParser.parse(bytes.bytes, rejectDuplicateKeys: false)
            } catch {
                throw .malformedJSON(path: configPath, error)
            }
            guard config?.objectValue != nil else { throw .invalid(path: configPath, "not a JSON object") }
        }
        try self.init(json: json, path: path, config: config.map { ($0, configPath) })
    }

    static func read(_ path: String) throws(TokenizerError) -> JSONValue {
        let file: MappedFile
        do { file = try MappedFile(path: path) } catch { throw .unreadable(path: path, error) }
        do {
            return try JSONParser.parse(file.bytes, rejectDuplicateKeys: false)
        } catch {
            throw .malformedJSON(path: path, error)
        }
    }

    /// Builds the tokenizer from the parsed `tokenizer.json` (`path` names it in errors) and, optionally,
    /// a parsed `tokenizer_config.json` with its path.
    /// - Throws: ``TokenizerError``.
    public init(json: JSONValue, path: String, config: (JSONValue, String)? = nil) throws(TokenizerError) {
        let loader = TokenizerLoader(path: path)
        let parts = try loader.load(json)
        model = parts.model
        normalizer = parts.normalizer
        preTokenizer = parts.preTokenizer
        decoder = parts.decoder
        added = parts.added
        tokens = parts.tokens
        var prefix = parts.prefix, suffix = parts.suffix
        var bos = parts.prefix.first, eos: Int32?
        if let (c, configPath) = config {
            func tokenID(_ key: String) throws(TokenizerError) -> Int32? {
                guard let v = c[key], v != .null else { return nil }
                guard let text = v.stringValue ?? v["content"]?.stringValue else {
                    throw .invalid(path: configPath, "'\(key)' is neither a string nor an object with 'content'")
                }
                guard let id = parts.id(text) else { throw .invalid(path: configPath, "'\(key)' \(text) is not a token") }
                return id
            }
            if let b = try tokenID("bos_token") { bos = b }
            eos = try tokenID("eos_token")
            let addBOS = c["add_bos_token"]?.boolValue, addEOS = c["add_eos_token"]?.boolValue
            if addBOS != nil || addEOS != nil {
                prefix = addBOS == true ? bos.map { [$0] } ?? [] : []
                suffix = addEOS == true ? eos.map { [$0] } ?? [] : []
            }
        }
        prefixIDs = prefix
        suffixIDs = suffix
        bosTokenID = bos
        eosTokenID = eos
    }

    /// The id of a token (added tokens first, then the model's vocabulary), or `nil`.
    public func id(of token: String) -> Int32? {
        if let a = added.idOfContent[token] { return a }
        return model.vocab.get(Array(token.utf8))
    }

    /// The text of a token as the vocabulary spells it (byte-level tokens use the GPT-2 byte table), or `nil`.
    public func token(of id: Int32) -> String? {
        id >= 0 && Int(id) < tokens.count ? tokens[Int(id)] : nil
    }

    /// The ids of `text`.
    /// - Parameter addSpecialTokens: add what the post-processor (or `tokenizer_config.json`) adds, e.g. BOS.
    public func encode(_ text: String, addSpecialTokens: Bool = false) -> [Int32] {
        var out = addSpecialTokens ? prefixIDs : []
        var text = text
        text.withUTF8 { encodeBody(Array($0), into: &out) }
        if addSpecialTokens { out += suffixIDs }
        return out
    }

    /// Texts of at least this many pieces are encoded on all cores.
    static let parallelPieces = 20_000

    func encodeBody(_ raw: [UInt8], into out: inout [Int32]) {
        var jobs: [(ids: Int32?, pieces: Pieces?)] = []
        for (range, id) in added.split(raw, normalized: false) {
            if let id { jobs.append((id, nil)); continue }
            var bytes = Array(raw[range])
            if let n = normalizer { bytes = n.apply(bytes) }
            let atOrigin = range.lowerBound == 0
            for (sub, nid) in added.split(bytes, normalized: true) {
                if let nid { jobs.append((nid, nil)); continue }
                var p = Pieces(bytes: sub == bytes.indices ? bytes : Array(bytes[sub]), atOrigin: atOrigin && sub.lowerBound == 0)
                if let pre = preTokenizer { p = pre.apply(p) }
                jobs.append((nil, model.cutAtMetaspace(p)))
            }
        }
        for job in jobs {
            if let id = job.ids { out.append(id); continue }
            guard let p = job.pieces else { continue }
            encodePieces(p, into: &out)
        }
    }

    func encodePieces(_ p: Pieces, into out: inout [Int32]) {
        let n = p.ranges.count
        let threads = n >= Self.parallelPieces ? min(8, max(1, sysconfNumberOfCores())) : 1
        p.bytes.withUnsafeBufferPointer { b in
            if threads == 1 {
                var scratch = BPEScratch()
                for r in p.ranges { model.encode(UnsafeBufferPointer(rebasing: b[r]), into: &out, scratch: &scratch) }
                return
            }
            var parts = [[Int32]](repeating: [], count: threads)
            parts.withUnsafeMutableBufferPointer { partsBuffer in
                nonisolated(unsafe) let partsBuffer = partsBuffer
                parallelFor(threads) { t in
                    var scratch = BPEScratch()
                    var local = [Int32]()
                    local.reserveCapacity(p.bytes.count / threads / 3)
                    for k in (n * t / threads)..<(n * (t + 1) / threads) {
                        model.encode(UnsafeBufferPointer(rebasing: b[p.ranges[k]]), into: &local, scratch: &scratch)
                    }
                    partsBuffer[t] = local
                }
            }
            for part in parts { out += part }
        }
    }

    /// The text of `ids`, through the tokenizer's decoder (ids that are no token are left out).
    /// - Parameter skipSpecialTokens: leave out special added tokens (BOS, EOS, chat markers).
    public func decode(_ ids: [Int32], skipSpecialTokens: Bool = false) -> String {
        var pieces = [String]()
        pieces.reserveCapacity(ids.count)
        for id in ids {
            guard let t = token(of: id) else { continue }
            if skipSpecialTokens && added.specialContents.contains(t) { continue }
            pieces.append(t)
        }
        guard let decoder else { return pieces.joined(separator: " ") }
        return decoder.chain(pieces).joined()
    }
}
