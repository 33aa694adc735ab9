/// GPTQ driven block by block (arXiv 2210.17323; ../shared/specs/algorithms.md §4.3), true-sequential and
/// passing the *quantized* block's output on (llmc `quant_out`):
///
/// 1. `n1 = input_layernorm(x)` over all calibration tokens → Hessian of q/k/v → q, k, v quantized;
/// 2. attention with the quantized q/k/v → Hessian of o_proj's input → o_proj quantized → `h = x + o_proj(ctx)`;
/// 3. `n2 = post_attention_layernorm(h)` → Hessian of gate/up → gate, up quantized;
/// 4. `silu(gate)·up` with the quantized gate/up → Hessian of down_proj → down quantized → `x' = h + down(act)`.
///
/// Every linear therefore sees inputs produced by the already-quantized linears before it, and each part of
/// the block is computed exactly once: one forward pass per block in all. The Hessians `H = 2/n Σ xᵀx` are
/// accumulated in f32 on BLAS tile by tile (`InputStatistics`); `GPTQSolver` does the rest.
public struct GPTQ: BlockAlgorithm {
    public var solver: GPTQSolver.Settings
    /// Keep the MLP's hidden activations between steps 4's Hessian pass and its output pass when they take at
    /// most this many bytes; above it, they are recomputed (one more gate/up product).
    public var keepActivationsBytes = 2 << 30

    public init(solver: GPTQSolver.Settings = GPTQSolver.Settings()) { self.solver = solver }

    public var name: String { "gptq" }
    public var settings: JSONObject {
        JSONObject([("dampening", .double(Double(solver.dampening))), ("block_size", .int(solver.blockSize)),
                    ("act_order", .string(solver.actOrder ? "static" : "none")), ("true_sequential", true), ("quantized_output", true)])
    }
    public var activationQuantization: ActivationQuantization? { nil }

    public func process(_ block: BlockWeights, plan: [String: QuantScheme], activations: CalibrationActivations,
                        log: (String) -> Void) throws -> [String: QuantizedWeight] {
        let c = block.config
        let x = activations.hidden
        var out: [String: QuantizedWeight] = [:]
        func quantize(_ input: LinearInput, _ stats: InputStatistics) throws {
            // One factorization of the shared input's Hessian serves every linear reading it.
            let h = stats.hessian()!
            let name = BlockWeights.prefix(block.layer) + input.consumers.joined(separator: "/")
            let factorization: GPTQSolver.Factorization
            do { factorization = try GPTQSolver.factorize(hessian: h.pointer, k: stats.columns, settings: solver) } catch {
                throw CalibrationError("\(name): \(error)")
            }
            if factorization.retries > 0 {
                log("\(name): Hessian damped to \(factorization.dampening) after \(factorization.retries) failed factorizations")
            }
            for linear in input.consumers {
                guard let scheme = plan[linear], let w = block.linear(linear) else { continue }
                out[linear] = try withExtendedLifetime(h) {
                    try Self.solve(w, factorization: factorization, scheme: scheme, settings: solver, name: BlockWeights.prefix(block.layer) + linear)
                }
            }
        }
        func needs(_ input: LinearInput) -> Bool { input.consumers.contains { plan[$0] != nil } }

        // The Hessian of a normed input: RMSNorm of the hidden states, 4096 rows at a time.
        func normedStatistics(_ norm: FloatBuffer) -> InputStatistics {
            let s = InputStatistics(columns: c.hiddenSize, gram: true, channels: false)
            let t = min(x.rows, 4096)
            let normed = Matrix(rows: t, columns: c.hiddenSize)
            var r = 0
            while r < x.rows {
                let n = min(t, x.rows - r)
                Kernels.rmsNorm(x.row(r), weight: norm.pointer, into: normed.pointer, rows: n, n: c.hiddenSize, epsilon: c.rmsNormEpsilon)
                s.add(normed.pointer, count: n)
                r += n
            }
            return s
        }

        // 1. q/k/v.
        if needs(.attention) { try quantize(.attention, normedStatistics(block.inputNorm)) }
        // 2. Attention with the quantized q/k/v, then o_proj.
        let context = Matrix(rows: x.rows, columns: c.qDim)
        for b in activations.batches {
            let ctx = block.attentionContext(activations.view(x, b), layout: b.layout, rope: activations.rope)
            activations.view(context, b).pointer.update(from: ctx.pointer, count: ctx.rows * ctx.columns)
        }
        if needs(.attentionOutput) {
            let s = InputStatistics(columns: c.qDim, gram: true, channels: false)
            s.add(context.pointer, count: context.rows)
            try quantize(.attentionOutput, s)
        }
        for b in activations.batches { block.applyOutput(activations.view(context, b), to: activations.view(x, b)) }
        // 3. gate/up.
        if needs(.mlp) { try quantize(.mlp, normedStatistics(block.postAttentionNorm)) }
        // 4. down_proj: the activations of the quantized gate/up, kept (or recomputed) for the output pass.
        let i = c.intermediateSize
        let keep = x.rows * i * 4 <= keepActivationsBytes
        let chunk = keep ? x.rows : min(x.rows, BlockWeights.mlpChunk)
        let act = Matrix(rows: chunk, columns: i)
        if needs(.mlpHidden) {
            let s = InputStatistics(columns: i, gram: true, channels: false)
            var r = 0
            while r < x.rows {
                let n = min(BlockWeights.mlpChunk, x.rows - r)
                let a = keep ? act.row(r) : act.pointer
                block.mlpActivation(x.row(r), rows: r..<(r + n), into: a)
                if !keep { s.add(a, count: n) }
                r += n
            }
            // Kept activations go into the Hessian in one pass: fewer, larger products.
            if keep { s.add(act.pointer, count: x.rows) }
            try quantize(.mlpHidden, s)
        }
        var r = 0
        while r < x.rows {
            let n = min(BlockWeights.mlpChunk, x.rows - r)
            let a = keep ? act.row(r) : act.pointer
            if !keep || !needs(.mlpHidden) { block.mlpActivation(x.row(r), rows: r..<(r + n), into: a) }
            block.applyDown(a, rows: r..<(r + n), to: x.row(r))
            r += n
        }
        return out
    }

    /// GPTQ on one linear: its weight becomes the dequantized result (what the next steps compute with).
    static func solve(_ w: Matrix, factorization: GPTQSolver.Factorization, scheme: QuantScheme, settings: GPTQSolver.Settings,
                      name: String) throws -> QuantizedWeight {
        let n = w.rows, k = w.columns
        let gpr = scheme.granularity == .tensor ? 0 : k / scheme.granularity.groupLength(k: k)
        var codes = [UInt8](repeating: 0, count: n * k)
        var params = [GroupCodec.Parameters](repeating: GroupCodec.Parameters(scale: 0, storedScale: 0, zero: 0), count: max(1, n * gpr))
        // A progressive grid's level-0 row scales, from the original weight as the solver's static parameters.
        let rowScales = scheme.progressive ? (0..<n).map { ProgressiveQuantization.rowScale(w.row($0), count: k) } : nil
        let result: GPTQSolver.Result
        do {
            result = try codes.withUnsafeMutableBufferPointer { cb in
                try params.withUnsafeMutableBufferPointer { pb in
                    try GPTQSolver.quantize(weight: w.pointer, n: n, k: k, factorization: factorization, scheme: scheme, settings: settings,
                                            codes: cb.baseAddress!, parameters: pb.baseAddress!)
                }
            }
        } catch {
            throw CalibrationError("\(name): \(error)")
        }
        return QuantizedWeight(scheme: scheme, rows: n, columns: k, codes: codes, parameters: params, globalScale: result.globalScale,
                               rowScales: rowScales)
    }
}
