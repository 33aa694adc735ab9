#if canImport(Glibc)
import Glibc
#endif

/// What `qeval` is asked to do.
public struct EvaluationRequest: Sendable {
    public var model: String
    public var reference: String?
    /// Text to tokenize with the model's tokenizer (`-` = stdin).
    public var data: String?
    /// Pre-tokenized ids, whitespace-separated (the output of `qeval --tokenize`; `-` = stdin).
    public var ids: String?
    public var sequenceLength: Int
    public var windowLimit: Int?
    public var bos: Bool
    public var quiet: Bool

    public init(model: String, reference: String? = nil, data: String? = nil, ids: String? = nil,
                sequenceLength: Int = 512, windowLimit: Int? = nil, bos: Bool = false, quiet: Bool = false) {
        self.model = model
        self.reference = reference
        self.data = data
        self.ids = ids
        self.sequenceLength = sequenceLength
        self.windowLimit = windowLimit
        self.bos = bos
        self.quiet = quiet
    }
}

/// Errors of reading evaluation input.
public enum EvaluationInputError: QKitError, Equatable {
    case badID(path: String, token: String)
    case noBOS(String)

    public var exitStatus: ExitStatus { .dataError }
    public var path: String? {
        switch self {
        case .badID(let p, _): p
        case .noBOS(let p): p
        }
    }
    public var description: String {
        switch self {
        case .badID(_, let t): "'\(t.prefix(40))' is not a token id"
        case .noBOS: "--bos: the model names no bos_token_id (config.json or tokenizer)"
        }
    }
}

/// The whole of a `qeval` run: opening the models, reading and tokenizing the data, evaluating, and the
/// record of the protocol, printable as a table or JSON.
public struct EvaluationReport: Sendable {
    public var request: EvaluationRequest
    public var result: EvaluationResult
    public var modelHash: String
    public var referenceHash: String?
    public var dataHash: String
    public var dataTokens: Int
    public var windows: Int
    public var modelDType: String
    public var referenceDType: String?

    /// Runs the evaluation `request` describes. `progress(done, total)` counts model blocks.
    public static func run(_ request: EvaluationRequest, progress: ((Int, Int) -> Void)? = nil) throws -> EvaluationReport {
        guard request.sequenceLength >= 2 else { throw UsageError("--seqlen must be at least 2") }
        let source = try openWeights(path: request.model)
        let model = try DecoderModel(source: source)
        let refSource = try request.reference.map { try openWeights(path: $0) }
        let reference = try refSource.map { try DecoderModel(source: $0) }
        let (tokens, dataHash) = try readTokens(request, model: model, source: source)
        let bos: Int32?
        if request.bos {
            guard let b = model.config.bosTokenID ?? (try? tokenizer(for: source))?.bosTokenID.map(Int.init) else {
                throw EvaluationInputError.noBOS(request.model)
            }
            bos = Int32(b)
        } else {
            bos = nil
        }
        let windows = EvaluationWindows(tokens: tokens, length: request.sequenceLength, limit: request.windowLimit, bos: bos)
        guard !windows.windows.isEmpty else { throw EvaluationError.tooFewTokens(tokens: tokens.count, length: request.sequenceLength) }
        let result = try Evaluator.run(model: model, reference: reference, windows: windows, progress: progress)
        return EvaluationReport(
            request: request, result: result, modelHash: XXH64.hex(fingerprint(source)),
            referenceHash: refSource.map { XXH64.hex(fingerprint($0)) }, dataHash: XXH64.hex(dataHash),
            dataTokens: tokens.count, windows: windows.windows.count, modelDType: describeDType(source),
            referenceDType: refSource.map(describeDType))
    }

    /// The ids `--tokenize` prints: the text of `data` tokenized with the model's tokenizer, no special tokens.
    public static func tokenize(model path: String, data: String) throws -> [Int32] {
        let source = try openWeights(path: path)
        let text = try readText(data)
        return try tokenizer(for: source).encode(text.text, addSpecialTokens: false)
    }

    static func tokenizer(for source: any WeightSource) throws -> Tokenizer {
        guard let dir = source.directory else { throw ModelError.noConfig(source.label) }
        return try Tokenizer(directory: dir)
    }

    static func readText(_ path: String) throws -> (text: String, hash: UInt64) {
        let file = try MappedFile.located(path)
        return (String(decoding: file.bytes, as: UTF8.self), XXH64.hash(file.bytes))
    }

    static func readTokens(_ r: EvaluationRequest, model: DecoderModel, source: any WeightSource) throws -> ([Int32], UInt64) {
        if let idsPath = r.ids {
            let (ids, hash) = try readIDs(idsPath, vocabulary: model.config.vocabularySize)
            return (ids, hash)
        }
        guard let data = r.data else { throw UsageError("give --data FILE (text) or --ids FILE (token ids)") }
        let (text, hash) = try readText(data)
        return (try tokenizer(for: source).encode(text, addSpecialTokens: false), hash)
    }

    /// Token ids from a file (or `-`) of whitespace-separated decimal integers (what `--tokenize` prints), each
    /// checked against the vocabulary, and the XXH64 of the file.
    static func readIDs(_ idsPath: String, vocabulary: Int) throws -> ([Int32], UInt64) {
        let file = try MappedFile.located(idsPath)
        var ids: [Int32] = []
        var current: Int64 = -1
        var start = 0
        for (i, b) in file.bytes.enumerated() {
            if b >= 48 && b <= 57 {
                if current < 0 { current = 0; start = i }
                current = current * 10 + Int64(b - 48)
                if current > Int64(Int32.max) {
                    throw EvaluationInputError.badID(path: idsPath, token: String(decoding: file.bytes[start...min(i, start + 20)], as: UTF8.self))
                }
            } else if b == 32 || b == 10 || b == 9 || b == 13 {
                if current >= 0 { ids.append(Int32(current)); current = -1 }
            } else {
                var end = i
                while end < file.bytes.count && ![32, 10, 9, 13].contains(file.bytes[end]) { end += 1 }
                throw EvaluationInputError.badID(path: idsPath, token: String(decoding: file.bytes[(current >= 0 ? start : i)..<end], as: UTF8.self))
            }
        }
        if current >= 0 { ids.append(Int32(current)) }
        for id in ids where Int(id) >= vocabulary {
            throw LocatedError(ModelError.badTokenID(id: Int(id), vocabulary: vocabulary), path: idsPath)
        }
        return (ids, XXH64.hash(file.bytes))
    }

    /// The model's hash: its files when it is a checkpoint on disk.
    static func fingerprint(_ source: any WeightSource) -> UInt64 {
        if let c = source as? CheckpointWeights { return XXH64.model(c.checkpoint) }
        if let c = try? Checkpoint(path: source.label) { return XXH64.model(c) }
        return 0
    }

    /// The stored dtype of the first linear weight, or the quantization method.
    static func describeDType(_ source: any WeightSource) -> String {
        if let q = source.config?["quantization_config"]?["quant_method"]?.stringValue { return q }
        if let c = source as? CheckpointWeights, let t = c.checkpoint["model.layers.0.self_attn.q_proj.weight"] {
            return t.encoding.description.lowercased()
        }
        return "unknown"
    }

    // MARK: - Output

    /// The report as JSON.
    public var json: JSONValue {
        let r = result
        let ci = r.perplexityInterval
        var o = JSONObject()
        o["model"] = .string(request.model)
        o["model_xxh64"] = .string(modelHash)
        o["model_dtype"] = .string(modelDType)
        o["data"] = .string(request.data ?? request.ids ?? "-")
        o["data_xxh64"] = .string(dataHash)
        o["data_kind"] = .string(request.ids != nil ? "ids" : "text")
        o["data_tokens"] = .int(dataTokens)
        o["seqlen"] = .int(request.sequenceLength)
        o["windows"] = .int(windows)
        o["bos"] = .bool(request.bos)
        o["predicted_tokens"] = .int(r.predictedTokens)
        o["nll"] = .double(r.meanNLL)
        o["perplexity"] = .double(r.perplexity)
        o["perplexity_ci95"] = .array([.double(ci.lowerBound), .double(ci.upperBound)])
        o["seconds"] = .double(r.seconds)
        o["tokens_per_second"] = .double(r.tokensPerSecond)
        if let c = r.comparison, let ref = request.reference {
            var x = JSONObject()
            x["model"] = .string(ref)
            x["model_xxh64"] = .string(referenceHash ?? "")
            x["model_dtype"] = .string(referenceDType ?? "")
            x["perplexity"] = .double(c.referencePerplexity)
            x["delta_perplexity"] = .double(r.perplexity - c.referencePerplexity)
            x["kl_mean"] = .double(c.meanDivergence)
            x["kl_p99"] = .double(c.divergence99)
            x["top1_agreement"] = .double(c.top1Agreement)
            o["reference"] = .object(x)
        }
        return .object(o)
    }

    /// The report as an aligned table.
    public var table: String {
        let r = result
        let ci = r.perplexityInterval
        var rows: [[String]] = [
            ["model", "\(request.model)  (\(modelDType), xxh64 \(modelHash))"],
            ["data", "\(request.data ?? request.ids ?? "-")  (\(dataTokens) tokens, xxh64 \(dataHash))"],
            ["protocol", "\(windows) windows × \(request.sequenceLength) tokens, \(request.bos ? "BOS first" : "no BOS"), \(r.predictedTokens) predicted tokens"],
            ["perplexity", cFormat("%.4f", r.perplexity) + "  (95% CI " + cFormat("%.3f", ci.lowerBound) + "–" + cFormat("%.3f", ci.upperBound) + ", bootstrap over windows)"],
            ["speed", cFormat("%.0f", r.tokensPerSecond) + " tokens/s (" + cFormat("%.2f", r.seconds) + " s)"],
        ]
        if let c = r.comparison, let ref = request.reference {
            rows.append(["reference", "\(ref)  (\(referenceDType ?? ""), xxh64 \(referenceHash ?? ""))"])
            rows.append(["ref ppl", cFormat("%.4f", c.referencePerplexity) + "  (Δppl " + cFormat("%+.4f", r.perplexity - c.referencePerplexity) + ")"])
            rows.append(["KL", cFormat("%.5f", c.meanDivergence) + " nats mean, " + cFormat("%.5f", c.divergence99) + " p99"])
            rows.append(["top-1", cFormat("%.2f", 100 * c.top1Agreement) + "% agreement"])
        }
        let width = rows.map { $0[0].count }.max() ?? 0
        return rows.map { $0[0] + String(repeating: " ", count: width - $0[0].count + 2) + $0[1] }.joined(separator: "\n") + "\n"
    }
}
