/// Which linears read a given activation inside a decoder block (see ../shared/specs/algorithms.md §1).
public enum LinearInput: String, Sendable, CaseIterable {
    /// `input_layernorm` output, read by q_proj, k_proj, v_proj.
    case attention
    /// The attention context, read by o_proj.
    case attentionOutput
    /// `post_attention_layernorm` output, read by gate_proj and up_proj.
    case mlp
    /// `silu(gate) · up`, read by down_proj.
    case mlpHidden

    /// The linears (short names) that consume this input.
    public var consumers: [String] {
        switch self {
        case .attention: ["q_proj", "k_proj", "v_proj"]
        case .attentionOutput: ["o_proj"]
        case .mlp: ["gate_proj", "up_proj"]
        case .mlpHidden: ["down_proj"]
        }
    }
}

/// Sees the inputs of a block's linears during a forward pass (calibration statistics, AWQ, GPTQ).
/// Called on the forward pass's thread, possibly several times per input with consecutive row ranges.
public protocol BlockObserver: AnyObject {
    /// `values` holds `rows.count × columns` floats: the input rows `rows` of the batch.
    func observe(_ input: LinearInput, layer: Int, rows: Range<Int>, values: UnsafePointer<Float>, columns: Int)
    /// Sees the keys (after q/k norms and RoPE) and values of rows `rows`: row `r` holds q, k, v at
    /// `qkv + r·stride`, k from `qDim`, v from `qDim + kvDim`. What a KV cache would store.
    func observeKeysAndValues(layer: Int, rows: Range<Int>, qkv: UnsafePointer<Float>, stride: Int, qDim: Int, kvDim: Int)
}

extension BlockObserver {
    public func observeKeysAndValues(layer: Int, rows: Range<Int>, qkv: UnsafePointer<Float>, stride: Int, qDim: Int, kvDim: Int) {}
}

/// The f32 weights of one decoder block, loaded from a `WeightSource`. The q/k/v and gate/up projections
/// are stored fused (one product each); `linear(_:)` gives a view of each one, which calibration
/// algorithms may change in place.
public final class BlockWeights: @unchecked Sendable {
    public let layer: Int
    public let config: DecoderConfig
    /// `[qDim + 2·kvDim, hidden]`: q_proj, k_proj, v_proj rows.
    public let qkv: Matrix
    /// q/k/v biases, fused like `qkv`, when the family has them.
    public let qkvBias: FloatBuffer?
    public let output: Matrix
    public let outputBias: FloatBuffer?
    /// `[2·intermediate, hidden]`: gate_proj then up_proj rows.
    public let gateUp: Matrix
    public let gateUpBias: FloatBuffer?
    public let down: Matrix
    public let downBias: FloatBuffer?
    public let inputNorm: FloatBuffer
    public let postAttentionNorm: FloatBuffer
    public let qNorm: FloatBuffer?
    public let kNorm: FloatBuffer?

    /// The tensor-name prefix of the block (`model.layers.N.`).
    public static func prefix(_ layer: Int) -> String { "model.layers.\(layer)." }

    /// Full names of the linears of a block, in execution order.
    public static func linearNames(_ layer: Int) -> [String] {
        let p = prefix(layer)
        return ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"].map { p + $0 }
    }

    /// Reads block `layer` from `source`, checking every shape against `config`.
    public init(source: any WeightSource, config c: DecoderConfig, layer: Int) throws {
        self.layer = layer
        self.config = c
        let p = Self.prefix(layer)
        let h = c.hiddenSize, i = c.intermediateSize
        func load(_ name: String, _ shape: [Int], into buffer: FloatBuffer, offset: Int = 0) throws {
            let found = try source.shape(of: name)
            guard found == shape else {
                throw ModelError.shapeMismatch(path: source.label, tensor: name, expected: shape, found: found)
            }
            let count = shape.reduce(1, *)
            try source.readFloat32(name, rows: 0..<shape[0],
                                   into: UnsafeMutableBufferPointer(start: buffer.pointer + offset, count: count))
        }
        func vector(_ name: String, _ n: Int) throws -> FloatBuffer {
            let b = FloatBuffer(count: n)
            try load(name, [n], into: b)
            return b
        }
        let qkvRows = c.qDim + 2 * c.kvDim
        let qkvStorage = FloatBuffer(count: qkvRows * h)
        try load(p + "self_attn.q_proj.weight", [c.qDim, h], into: qkvStorage)
        try load(p + "self_attn.k_proj.weight", [c.kvDim, h], into: qkvStorage, offset: c.qDim * h)
        try load(p + "self_attn.v_proj.weight", [c.kvDim, h], into: qkvStorage, offset: (c.qDim + c.kvDim) * h)
        qkv = Matrix(rows: qkvRows, columns: h, storage: qkvStorage)
        if c.attentionBias {
            let b = FloatBuffer(count: qkvRows)
            try load(p + "self_attn.q_proj.bias", [c.qDim], into: b)
            try load(p + "self_attn.k_proj.bias", [c.kvDim], into: b, offset: c.qDim)
            try load(p + "self_attn.v_proj.bias", [c.kvDim], into: b, offset: c.qDim + c.kvDim)
            qkvBias = b
        } else {
            qkvBias = nil
        }
        output = Matrix(rows: h, columns: c.qDim)
        try load(p + "self_attn.o_proj.weight", [h, c.qDim], into: output.storage)
        outputBias = c.outputBias ? try vector(p + "self_attn.o_proj.bias", h) : nil
        let gu = FloatBuffer(count: 2 * i * h)
        try load(p + "mlp.gate_proj.weight", [i, h], into: gu)
        try load(p + "mlp.up_proj.weight", [i, h], into: gu, offset: i * h)
        gateUp = Matrix(rows: 2 * i, columns: h, storage: gu)
        if c.mlpBias {
            let b = FloatBuffer(count: 2 * i)
            try load(p + "mlp.gate_proj.bias", [i], into: b)
            try load(p + "mlp.up_proj.bias", [i], into: b, offset: i)
            gateUpBias = b
        } else {
            gateUpBias = nil
        }
        down = Matrix(rows: h, columns: i)
        try load(p + "mlp.down_proj.weight", [h, i], into: down.storage)
        downBias = c.mlpBias ? try vector(p + "mlp.down_proj.bias", h) : nil
        inputNorm = try vector(p + "input_layernorm.weight", h)
        postAttentionNorm = try vector(p + "post_attention_layernorm.weight", h)
        qNorm = c.qkNorm ? try vector(p + "self_attn.q_norm.weight", c.headDim) : nil
        kNorm = c.qkNorm ? try vector(p + "self_attn.k_norm.weight", c.headDim) : nil
        lowRank = try Self.loadLowRank(source: source, config: c, layer: layer)
    }

    /// A view of one linear's weight (`q_proj`, `k_proj`, `v_proj`, `o_proj`, `gate_proj`, `up_proj`,
    /// `down_proj`), `[out, in]`, sharing storage with the block.
    public func linear(_ name: String) -> Matrix? {
        let c = config, h = c.hiddenSize, i = c.intermediateSize
        switch name {
        case "q_proj": return Matrix(rows: c.qDim, columns: h, storage: qkv.storage)
        case "k_proj": return Matrix(rows: c.kvDim, columns: h, storage: qkv.storage, offset: c.qDim * h)
        case "v_proj": return Matrix(rows: c.kvDim, columns: h, storage: qkv.storage, offset: (c.qDim + c.kvDim) * h)
        case "o_proj": return output
        case "gate_proj": return Matrix(rows: i, columns: h, storage: gateUp.storage)
        case "up_proj": return Matrix(rows: i, columns: h, storage: gateUp.storage, offset: i * h)
        case "down_proj": return down
        default: return nil
        }
    }

    /// Rows of tokens the MLP processes at once (bounds the `[rows × 2·intermediate]` buffer).
    static let mlpChunk = 1024

    /// How the inputs of the linears are quantized at run time (W8A8 checkpoints), `nil` for float activations.
    public var activationQuantization: ActivationQuantization?
    /// SVDQuant's smoothing and low-rank branch per input (W4A4 checkpoints; `LowRankBranch.swift`).
    public var lowRank: [LinearInput: LowRankBranch] = [:]

    /// Runs the block on `hidden` (`[tokens × hidden]`, updated in place: the residual stream).
    public func forward(_ hidden: Matrix, layout: SequenceLayout, rope: RotaryEmbedding, observer: (any BlockObserver)? = nil) {
        let context = attentionContext(hidden, layout: layout, rope: rope, observer: observer)
        applyOutput(context, to: hidden, observer: observer)
        mlp(hidden, observer: observer)
    }

    /// The attention context of `hidden` (`[tokens × qDim]`): input norm, q/k/v projections (observed as
    /// `.attention`), q/k norms, RoPE (keys and values then observed), causal attention.
    public func attentionContext(_ hidden: Matrix, layout: SequenceLayout, rope: RotaryEmbedding,
                                 observer: (any BlockObserver)? = nil) -> Matrix {
        let c = config, t = hidden.rows, h = c.hiddenSize
        let positions = layout.positions
        let normed = Matrix(rows: t, columns: h)
        Kernels.rmsNorm(hidden.pointer, weight: inputNorm.pointer, into: normed.pointer, rows: t, n: h, epsilon: c.rmsNormEpsilon)
        observer?.observe(.attention, layer: layer, rows: 0..<t, values: normed.pointer, columns: h)
        let branch = lowRankEnter(normed.pointer, rows: t, columns: h, input: .attention)
        activationQuantization?.apply(normed.pointer, rows: t, columns: h, input: .attention)
        let q = Matrix(rows: t, columns: qkv.rows)
        BLAS.linear(normed.pointer, m: t, k: h, weight: qkv.pointer, n: qkv.rows, into: q.pointer)
        lowRankLeave(branch, input: .attention, into: q.pointer, ldc: qkv.rows)
        if let b = qkvBias { Kernels.addBias(b.pointer, to: q.pointer, rows: t, n: qkv.rows) }
        let ld = qkv.rows
        nonisolated(unsafe) let qp = q.pointer
        Kernels.parallelChunks(t, minimum: 32) { range in
            for r in range {
                let row = qp + r * ld
                if let qn = self.qNorm, let kn = self.kNorm {
                    Kernels.rmsNorm(row, weight: qn.pointer, into: row, rows: c.headCount, n: c.headDim, epsilon: c.rmsNormEpsilon, serial: true)
                    Kernels.rmsNorm(row + c.qDim, weight: kn.pointer, into: row + c.qDim, rows: c.kvHeadCount, n: c.headDim,
                                    epsilon: c.rmsNormEpsilon, serial: true)
                }
                rope.apply(row, heads: c.headCount, position: positions[r])
                rope.apply(row + c.qDim, heads: c.kvHeadCount, position: positions[r])
            }
        }
        observer?.observeKeysAndValues(layer: layer, rows: 0..<t, qkv: q.pointer, stride: ld, qDim: c.qDim, kvDim: c.kvDim)
        let context = Matrix(rows: t, columns: c.qDim)
        Attention.compute(qkv: q, config: c, layout: layout, window: c.slidingWindow[layer], into: context)
        return context
    }

    /// `hidden += o_proj(context)`; `context` is observed as `.attentionOutput` (and quantized in place when
    /// activations are).
    public func applyOutput(_ context: Matrix, to hidden: Matrix, observer: (any BlockObserver)? = nil) {
        let t = hidden.rows, h = config.hiddenSize
        observer?.observe(.attentionOutput, layer: layer, rows: 0..<t, values: context.pointer, columns: config.qDim)
        let branch = lowRankEnter(context.pointer, rows: t, columns: config.qDim, input: .attentionOutput)
        activationQuantization?.apply(context.pointer, rows: t, columns: config.qDim, input: .attentionOutput)
        BLAS.linear(context.pointer, m: t, k: config.qDim, weight: output.pointer, n: h, into: hidden.pointer, accumulate: true)
        lowRankLeave(branch, input: .attentionOutput, into: hidden.pointer, ldc: h)
        if let b = outputBias { Kernels.addBias(b.pointer, to: hidden.pointer, rows: t, n: h) }
    }

    /// The MLP half on `hidden` (updated in place), `mlpChunk` tokens at a time.
    public func mlp(_ hidden: Matrix, observer: (any BlockObserver)? = nil) {
        let t = hidden.rows, h = config.hiddenSize
        let chunk = min(t, Self.mlpChunk)
        let act = Matrix(rows: chunk, columns: config.intermediateSize)
        var r0 = 0
        while r0 < t {
            let rows = min(chunk, t - r0)
            let x = hidden.pointer + r0 * h
            mlpActivation(x, rows: r0..<(r0 + rows), into: act.pointer, observer: observer)
            applyDown(act.pointer, rows: r0..<(r0 + rows), to: x, observer: observer)
            r0 += rows
        }
    }

    /// `silu(gate_proj(n2)) · up_proj(n2)` with `n2 = post_attention_layernorm(x)` for the `rows.count` rows at
    /// `x` (rows `rows` of the batch: what the observer is told), written to `act` (`rows.count × intermediate`).
    /// `n2` is observed as `.mlp`.
    public func mlpActivation(_ x: UnsafePointer<Float>, rows: Range<Int>, into act: UnsafeMutablePointer<Float>,
                              observer: (any BlockObserver)? = nil) {
        let c = config, h = c.hiddenSize, i = c.intermediateSize, n = rows.count
        let n2 = Matrix(rows: n, columns: h)
        let gu = Matrix(rows: n, columns: 2 * i)
        Kernels.rmsNorm(x, weight: postAttentionNorm.pointer, into: n2.pointer, rows: n, n: h, epsilon: c.rmsNormEpsilon)
        observer?.observe(.mlp, layer: layer, rows: rows, values: n2.pointer, columns: h)
        let branch = lowRankEnter(n2.pointer, rows: n, columns: h, input: .mlp)
        activationQuantization?.apply(n2.pointer, rows: n, columns: h, input: .mlp)
        BLAS.linear(n2.pointer, m: n, k: h, weight: gateUp.pointer, n: 2 * i, into: gu.pointer)
        lowRankLeave(branch, input: .mlp, into: gu.pointer, ldc: 2 * i)
        if let b = gateUpBias { Kernels.addBias(b.pointer, to: gu.pointer, rows: n, n: 2 * i) }
        nonisolated(unsafe) let (gp, ap) = (gu.pointer, act)
        Kernels.parallelChunks(n, minimum: 8) { range in
            for r in range {
                let a = ap + r * i
                a.update(from: gp + r * 2 * i, count: i)
                Kernels.siluMultiply(gate: a, up: gp + r * 2 * i + i, count: i, serial: true)
            }
        }
    }

    /// `x += down_proj(act)` for `rows.count` rows; `act` is observed as `.mlpHidden` (and quantized in place
    /// when activations are).
    public func applyDown(_ act: UnsafeMutablePointer<Float>, rows: Range<Int>, to x: UnsafeMutablePointer<Float>,
                          observer: (any BlockObserver)? = nil) {
        let c = config, h = c.hiddenSize, i = c.intermediateSize, n = rows.count
        observer?.observe(.mlpHidden, layer: layer, rows: rows, values: act, columns: i)
        let branch = lowRankEnter(act, rows: n, columns: i, input: .mlpHidden)
        activationQuantization?.apply(act, rows: n, columns: i, input: .mlpHidden)
        BLAS.linear(act, m: n, k: i, weight: down.pointer, n: h, into: x, accumulate: true)
        lowRankLeave(branch, input: .mlpHidden, into: x, ldc: h)
        if let b = downBias { Kernels.addBias(b.pointer, to: x, rows: n, n: h) }
    }
}
