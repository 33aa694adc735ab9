/// How calibration windows are drawn from the token stream.
public enum CalibrationSampling: String, Sendable, CaseIterable {
    /// The first N non-overlapping windows (what reference comparisons use).
    case first
    /// N windows at uniformly random starts, drawn with the seed (windows may overlap, as the peers' do).
    case random
}

/// What `--data`/`--ids`, `--samples`, `--seqlen`, `--sampling`, `--seed` and `--chat` ask for.
public struct CalibrationDataRequest: Sendable, Equatable {
    /// Text file (or `-`), tokenized with the model's tokenizer without special tokens.
    public var data: String?
    /// Pre-tokenized ids (what `qeval --tokenize` prints), or `-`.
    public var ids: String?
    public var samples = 128
    public var sequenceLength = 512
    public var sampling = CalibrationSampling.random
    public var seed: UInt64 = 0
    /// Render each line (or JSONL record) of the text through the model's chat template first.
    public var chat = false

    public init(data: String? = nil, ids: String? = nil) {
        self.data = data
        self.ids = ids
    }

    /// The request the command-line options describe (`sampling` by name: random or first).
    public init(data: String?, ids: String?, samples: Int, sequenceLength: Int, sampling: String, seed: UInt64, chat: Bool) throws {
        guard let s = CalibrationSampling(rawValue: sampling.lowercased()) else {
            throw UsageError("--sampling: '\(sampling)' is not random or first")
        }
        self.init(data: data, ids: ids)
        self.samples = samples
        self.sequenceLength = sequenceLength
        self.sampling = s
        self.seed = seed
        self.chat = chat
    }

    /// The request in words, for logs and the recipe.
    public var summary: String {
        "\(samples) × \(sequenceLength) tokens, \(sampling.rawValue)\(sampling == .random ? " (seed \(seed))" : "")\(chat ? ", chat" : "")"
    }
}

/// Calibration data that cannot be used.
public struct CalibrationDataError: QKitError, Equatable {
    public var message: String
    public var path: String?
    public var exitStatus: ExitStatus
    public init(_ message: String, path: String?, exitStatus: ExitStatus = .dataError) {
        self.message = message
        self.path = path
        self.exitStatus = exitStatus
    }
    public var description: String { message }
}

/// The calibration sequences: `samples` windows of `sequenceLength` tokens, and the hash of the input they
/// came from (recorded in the recipe and the statistics file).
public struct CalibrationData: Sendable {
    public let request: CalibrationDataRequest
    public let sequences: [[Int32]]
    /// XXH64 of the input file's bytes (text or ids).
    public let inputHash: UInt64
    /// Tokens in the whole stream the windows were cut from.
    public let streamTokens: Int

    public var tokenCount: Int { sequences.reduce(0) { $0 + $1.count } }

    /// Reads and tokenizes the input of `request` for `model` (its tokenizer, its vocabulary) and cuts the windows.
    public static func load(_ request: CalibrationDataRequest, model: DecoderModel) throws -> CalibrationData {
        guard request.samples >= 1 else { throw UsageError("--samples must be at least 1") }
        guard request.sequenceLength >= 2 else { throw UsageError("--seqlen must be at least 2") }
        let tokens: [Int32], hash: UInt64, path: String
        if let ids = request.ids {
            guard request.data == nil else { throw UsageError("give one of --data FILE and --ids FILE, not both") }
            guard !request.chat else { throw UsageError("--chat renders text; it cannot apply to --ids") }
            (tokens, hash) = try EvaluationReport.readIDs(ids, vocabulary: model.config.vocabularySize)
            path = ids
        } else if let data = request.data {
            let (text, h) = try EvaluationReport.readText(data)
            let tokenizer = try EvaluationReport.tokenizer(for: model.source)
            if request.chat {
                // Each line or JSONL record rendered through the model's chat template; the documents are tokenized
                // one by one (special-token text such as <|im_start|> becomes its added token) and laid end to end.
                guard let dir = model.source.directory else { throw ModelError.noConfig(model.source.label) }
                let template = try ChatTemplate.load(modelDirectory: dir)
                var all: [Int32] = []
                for document in try template.renderCalibrationDocuments(text, path: data) {
                    all += tokenizer.encode(document, addSpecialTokens: false)
                }
                tokens = all
            } else {
                tokens = tokenizer.encode(text, addSpecialTokens: false)
            }
            (hash, path) = (h, data)
        } else {
            throw UsageError("give --data FILE (text) or --ids FILE (token ids) for calibration")
        }
        return try CalibrationData(request: request, tokens: tokens, inputHash: hash, path: path)
    }

    /// Cuts the windows of `request` from `tokens`.
    public init(request: CalibrationDataRequest, tokens: [Int32], inputHash: UInt64, path: String) throws {
        let n = request.samples, l = request.sequenceLength
        switch request.sampling {
        case .first:
            guard tokens.count >= n * l else {
                throw CalibrationDataError("holds \(tokens.count) tokens; \(n) windows of \(l) need \(n * l) (lower --samples or --seqlen)", path: path)
            }
            sequences = (0..<n).map { Array(tokens[($0 * l)..<(($0 + 1) * l)]) }
        case .random:
            guard tokens.count >= l else {
                throw CalibrationDataError("holds \(tokens.count) tokens, fewer than one window of \(l) (lower --seqlen)", path: path)
            }
            var rng = SplitMix64(seed: request.seed)
            let span = UInt64(tokens.count - l + 1)
            sequences = (0..<n).map { _ in
                let start = Int(rng.next() % span)
                return Array(tokens[start..<(start + l)])
            }
        }
        self.request = request
        self.inputHash = inputHash
        self.streamTokens = tokens.count
    }

    /// A hash of the windows themselves (what the resume key and the recipe depend on).
    public var sequencesHash: UInt64 {
        sequences.flatMap { $0 }.withUnsafeBytes { XXH64.hash($0) }
    }
}
