#if canImport(Glibc)
import Glibc
#endif

/// How text is cut into evaluation windows (the GPTQ/AWQ protocol): the whole text tokenized once without
/// special tokens, cut into consecutive non-overlapping windows of `length` tokens (a shorter tail is
/// dropped), the first `limit` of them kept. With a BOS id, each window is BOS followed by `length − 1`
/// text tokens. Every position but the last predicts the next token.
public struct EvaluationWindows: Sendable {
    public let length: Int
    public let windows: [[Int32]]
    public let bos: Int32?

    public init(tokens: [Int32], length: Int, limit: Int?, bos: Int32?) {
        self.length = length
        self.bos = bos
        let step = bos == nil ? length : length - 1
        var w: [[Int32]] = []
        var start = 0
        while start + step <= tokens.count && (limit.map { w.count < $0 } ?? true) {
            let text = Array(tokens[start..<(start + step)])
            w.append(bos.map { [$0] + text } ?? text)
            start += step
        }
        windows = w
    }

    /// Next-token predictions scored per window.
    public var predictionsPerWindow: Int { max(0, length - 1) }
}

/// What one evaluation measured.
public struct EvaluationResult: Sendable {
    /// Mean next-token NLL of each window (nats).
    public var windowNLL: [Double]
    public var predictedTokens: Int
    public var forwardTokens: Int
    public var seconds: Double
    /// Against a reference model, when one was given.
    public var comparison: Comparison?

    public struct Comparison: Sendable {
        public var referenceWindowNLL: [Double]
        /// KL(reference ‖ model) per predicted token, nats.
        public var divergences: [Double]
        public var top1Agreements: Int
    }

    public var meanNLL: Double { windowNLL.reduce(0, +) / Double(max(1, windowNLL.count)) }
    public var perplexity: Double { exp(meanNLL) }
    public var perplexityInterval: ClosedRange<Double> { bootstrapPerplexityInterval(windowNLL: windowNLL) }
    public var tokensPerSecond: Double { Double(forwardTokens) / max(seconds, 1e-9) }
}

extension EvaluationResult.Comparison {
    public var referencePerplexity: Double { exp(referenceWindowNLL.reduce(0, +) / Double(max(1, referenceWindowNLL.count))) }
    public var meanDivergence: Double { divergences.reduce(0, +) / Double(max(1, divergences.count)) }
    public var divergence99: Double { percentile(divergences.sorted(), 0.99) }
    public var top1Agreement: Double { Double(top1Agreements) / Double(max(1, divergences.count)) }
}

/// Errors of an evaluation.
public enum EvaluationError: QKitError, Equatable {
    case tooFewTokens(tokens: Int, length: Int)
    case vocabularyMismatch(model: Int, reference: Int)
    case badLength(Int)

    public var exitStatus: ExitStatus { self == .badLength(0) ? .usage : .dataError }

    public var description: String {
        switch self {
        case .tooFewTokens(let t, let l): "the data has \(t) tokens, fewer than one window of \(l)"
        case .vocabularyMismatch(let m, let r): "the models' vocabularies differ (\(m) and \(r) tokens): KL needs the same tokenizer"
        case .badLength(let l): "window length \(l) is too short (at least 2 tokens)"
        }
    }
}

/// Perplexity and, against a reference, KL divergence and top-1 agreement, with both models streamed side
/// by side: a batch of windows goes through every block of the model, then of the reference; then the
/// output heads are applied one vocabulary slice at a time and folded into per-token online statistics.
public enum Evaluator {
    /// Rows of logits computed at once per slice.
    static let logitRows = 256

    /// Evaluates `model` (and `reference`) on `windows`. `progress(done, total)` counts blocks run.
    public static func run(model: DecoderModel, reference: DecoderModel? = nil, windows: EvaluationWindows,
                           progress: ((Int, Int) -> Void)? = nil) throws -> EvaluationResult {
        guard windows.length >= 2 else { throw EvaluationError.badLength(windows.length) }
        if let reference, reference.config.vocabularySize != model.config.vocabularySize {
            throw EvaluationError.vocabularyMismatch(model: model.config.vocabularySize, reference: reference.config.vocabularySize)
        }
        let start = monotonicSeconds()
        let budget = min(model.tokenBudget(), reference?.tokenBudget() ?? Int.max)
        let perBatch = max(1, budget / windows.length)
        let batches = stride(from: 0, to: windows.windows.count, by: perBatch).map {
            Array(windows.windows[$0..<min(windows.windows.count, $0 + perBatch)])
        }
        let stepsPerBatch = model.config.layerCount + (reference?.config.layerCount ?? 0) + 1
        let totalSteps = batches.count * stepsPerBatch
        var done = 0
        var result = EvaluationResult(windowNLL: [], predictedTokens: 0, forwardTokens: 0, seconds: 0,
                                      comparison: reference == nil ? nil : .init(referenceWindowNLL: [], divergences: [], top1Agreements: 0))
        for batch in batches {
            let (hidden, layout) = try model.hiddenStates(batch, progress: { _ in done += 1; progress?(done, totalSteps) })
            let refHidden = try reference?.hiddenStates(batch, progress: { _ in done += 1; progress?(done, totalSteps) }).hidden
            let t = layout.tokenCount
            var targets = [Int32](repeating: -1, count: t)
            for (s, w) in batch.enumerated() {
                for i in 0..<(w.count - 1) { targets[layout.offsets[s] + i] = w[i + 1] }
            }
            var acc = [TokenAccumulator](repeating: .init(), count: t)
            var div = [DivergenceAccumulator](repeating: .init(), count: refHidden == nil ? 0 : t)
            try accumulate(model: model, hidden: hidden, reference: reference, referenceHidden: refHidden,
                           targets: targets, into: &acc, &div)
            done += 1
            progress?(done, totalSteps)
            for (s, w) in batch.enumerated() {
                let rows = layout.offsets[s]..<(layout.offsets[s] + w.count - 1)
                result.windowNLL.append(rows.reduce(0.0) { $0 + acc[$1].negativeLogLikelihood } / Double(rows.count))
                result.predictedTokens += rows.count
                result.forwardTokens += w.count
                if refHidden != nil {
                    result.comparison!.referenceWindowNLL.append(rows.reduce(0.0) { $0 + div[$1].reference.negativeLogLikelihood } / Double(rows.count))
                    for r in rows {
                        result.comparison!.divergences.append(div[r].divergence(model: acc[r]))
                        if div[r].reference.argmax == acc[r].argmax { result.comparison!.top1Agreements += 1 }
                    }
                }
            }
        }
        result.seconds = monotonicSeconds() - start
        return result
    }

    /// Applies the heads slice by slice and folds the logits into the accumulators.
    static func accumulate(model: DecoderModel, hidden: Matrix, reference: DecoderModel?, referenceHidden: Matrix?,
                           targets: [Int32], into acc: inout [TokenAccumulator], _ div: inout [DivergenceAccumulator]) throws {
        let t = hidden.rows
        let sliceRows = model.head.sliceRows
        let chunk = min(t, logitRows)
        let logits = Matrix(rows: chunk, columns: sliceRows)
        let refLogits = referenceHidden.map { _ in Matrix(rows: chunk, columns: sliceRows) }
        for slice in model.head.slices {
            let w = try model.head.weights(slice)
            let rw = try reference?.head.weights(slice)
            var r0 = 0
            while r0 < t {
                let rows = r0..<min(t, r0 + chunk)
                model.head.logits(hidden, rows: rows, weights: w, into: logits.pointer)
                if let reference, let referenceHidden, let rw, let refLogits {
                    reference.head.logits(referenceHidden, rows: rows, weights: rw, into: refLogits.pointer)
                }
                let n = slice.count
                acc.withUnsafeMutableBufferPointer { a in
                    div.withUnsafeMutableBufferPointer { d in
                        nonisolated(unsafe) let (a, d) = (a, d)
                        let lp = logits.pointer, rp = refLogits?.pointer
                        nonisolated(unsafe) let (lpu, rpu) = (lp, rp)
                        Kernels.parallelChunks(rows.count, minimum: 16) { range in
                            for i in range {
                                let r = rows.lowerBound + i
                                a[r].add(lpu + i * n, count: n, first: slice.lowerBound, targetID: targets[r])
                                if let rpu {
                                    d[r].add(reference: rpu + i * n, model: lpu + i * n, count: n,
                                             first: slice.lowerBound, targetID: targets[r])
                                }
                            }
                        }
                    }
                }
                r0 = rows.upperBound
            }
        }
    }
}
