/// The hidden states of the calibration tokens between decoder blocks (`[tokens × hidden]`, f32), cut into
/// batches of whole sequences so the temporaries of a block's forward pass stay within a budget.
public final class CalibrationActivations: @unchecked Sendable {
    /// One batch: its rows of `hidden` and the layout of its sequences.
    public struct Batch: Sendable {
        public let rows: Range<Int>
        public let layout: SequenceLayout
    }

    public let config: DecoderConfig
    public let hidden: Matrix
    public let batches: [Batch]
    public let rope: RotaryEmbedding

    /// Room for `lengths` sequences (uninitialized hidden states), batched so a batch holds at most
    /// `batchTokens` tokens (at least one sequence).
    public init(model: DecoderModel, lengths: [Int], batchTokens: Int) {
        config = model.config
        let layout = SequenceLayout(lengths: lengths)
        hidden = Matrix(rows: layout.tokenCount, columns: model.config.hiddenSize)
        var batches: [Batch] = []
        var start = 0, current: [Int] = []
        for l in lengths {
            if !current.isEmpty && current.reduce(0, +) + l > batchTokens {
                let n = current.reduce(0, +)
                batches.append(Batch(rows: start..<(start + n), layout: SequenceLayout(lengths: current)))
                start += n
                current = []
            }
            current.append(l)
        }
        if !current.isEmpty {
            batches.append(Batch(rows: start..<(start + current.reduce(0, +)), layout: SequenceLayout(lengths: current)))
        }
        self.batches = batches
        rope = model.rotaryEmbedding(for: layout)
    }

    /// The embeddings of `sequences` (the input of block 0).
    public convenience init(embedding sequences: [[Int32]], model: DecoderModel, batchTokens: Int) throws {
        self.init(model: model, lengths: sequences.map(\.count), batchTokens: batchTokens)
        var row = 0
        for s in sequences {
            let (e, _) = try model.embed([s])
            (hidden.pointer + row * config.hiddenSize).update(from: e.pointer, count: e.rows * e.columns)
            row += e.rows
        }
    }

    public var tokenCount: Int { hidden.rows }

    /// The rows of `batch` in `matrix` (a `[tokens × columns]` matrix laid out like `hidden`).
    public func view(_ matrix: Matrix, _ batch: Batch) -> Matrix {
        Matrix(rows: batch.rows.count, columns: matrix.columns, storage: matrix.storage,
               offset: (matrix.pointer - matrix.storage.pointer) + batch.rows.lowerBound * matrix.columns)
    }

    /// A copy of the hidden states.
    public func copyHidden() -> Matrix {
        let m = Matrix(rows: hidden.rows, columns: hidden.columns)
        m.pointer.update(from: hidden.pointer, count: hidden.rows * hidden.columns)
        return m
    }

    /// Runs `block` on every batch of `matrix` (the hidden states, or a copy), in place.
    public func forward(_ block: BlockWeights, on matrix: Matrix, observer: (any BlockObserver)? = nil) {
        for b in batches {
            block.forward(view(matrix, b), layout: b.layout, rope: rope, observer: observer)
        }
    }

    /// The mean over tokens of the cosine similarity between the rows of `a` and `b` (ShortGPT's block
    /// importance: how little a block changes the residual stream).
    public static func meanCosine(_ a: Matrix, _ b: Matrix) -> Double {
        var total = 0.0
        for r in 0..<a.rows {
            let x = a.row(r), y = b.row(r)
            var xy = 0.0, xx = 0.0, yy = 0.0
            for c in 0..<a.columns {
                xy += Double(x[c]) * Double(y[c])
                xx += Double(x[c]) * Double(x[c])
                yy += Double(y[c]) * Double(y[c])
            }
            total += xx > 0 && yy > 0 ? xy / (xx.squareRoot() * yy.squareRoot()) : 1
        }
        return total / Double(max(1, a.rows))
    }
}
