#if canImport(Glibc)
import Glibc
#endif

/// SVDQuant for one linear (arXiv 2411.05007 §4; ../shared/specs/algorithms.md §4.9): smoothing, a 16-bit
/// low-rank branch and a 4-bit residual. Usable without a model (diffusion transformers call it with
/// statistics from a file, or data-free); `SVDQuant` runs it on the blocks of a decoder.
///
/// With λ the smoothing, `Ŵ = W·diag(λ)` (columns scaled), `L = up·down·diag(λ)` the rank-r branch and
/// `R̂ = Q(Ŵ − L)` the quantized residual, the layer computes
/// `y = Q_a(x / λ)·R̂ᵀ + (x·downᵀ)·upᵀ` — `down` acts on the *unsmoothed* input, as Nunchaku's kernel runs it
/// (its LoRA-down epilogue reads the input before the quantize epilogue divides it by `smooth_factor`).
///
/// 1. Smoothing (when per-channel input maxima are given): λ_j = a_j^α / w_j^β with a the input absmax, w the
///    weight's column absmax, over (α, 0) for α = i/grid, i = 0…grid, and (α, 1 − α) for 0 < i < grid (deepcompressor's
///    `alpha 0.5, beta -2` space), normalized by √(max λ · min λ). Each candidate is scored with its low-rank
///    branch `L = SVD_r(Ŵ)` and the 4-bit weights *and* activations in the loop.
/// 2. Refinement of the best λ: `L = SVD_r(Ŵ − R̂)`, `R̂ = Q(Ŵ − L)`, up to `iterations` times, keeping the best,
///    stopping at the first iteration that does not improve.
/// 3. Optionally GPTQ on the residual (Hessian of the smoothed input), kept when it lowers the loss.
///
/// The loss is the layer-output error: with token rows `samples`, the mean over tokens of ‖y − x·Wᵀ‖² computed
/// exactly (activations quantized as the run time does); with only a Gram matrix `G = mean xᵀx`, the weight part
/// `Σ_n ΔW_n G ΔW_nᵀ` (ΔW the effective weight error, as AWQ's search) plus the activation-rounding noise
/// modeled as uniform with the group step `absmax_group/qmax` (`step²/12` per element, times ‖R̂_{:,j}‖²);
/// data-free, ‖Ŵ − L − R̂‖²_F with smoothing off. The low-rank factors are rounded to their stored 16-bit type
/// before the residual is taken, so the residual absorbs that rounding.
public enum SVDQuantLinear {
    /// How a linear is decomposed.
    public struct Settings: Sendable {
        /// Rank of the low-rank branch.
        public var rank = 32
        /// Smoothing grid: α = i/grid.
        public var grid = 20
        /// Also search the (α, 1 − α) candidates (weight-magnitude in the denominator).
        public var betaVariants = true
        /// Most refinement iterations.
        public var iterations = 100
        /// The run-time activation quantization (W4A4), or `nil` for float activations (W4A16).
        public var activation: ActivationQuantization?
        /// GPTQ on the residual (needs a Gram matrix or samples).
        public var gptq: GPTQSolver.Settings?
        /// Stored type of `lora_down`/`lora_up` (BF16 or F16; F32 keeps them unrounded).
        public var lowRankDType: DType = .bf16

        public init(rank: Int = 32, grid: Int = 20, iterations: Int = 100, activation: ActivationQuantization? = nil,
                    gptq: GPTQSolver.Settings? = nil, lowRankDType: DType = .bf16) {
            self.rank = rank
            self.grid = grid
            self.iterations = iterations
            self.activation = activation
            self.gptq = gptq
            self.lowRankDType = lowRankDType
        }
    }

    /// What is known of the linear's inputs (all optional; nothing: data-free).
    public struct Statistics: @unchecked Sendable {
        /// Per-channel absolute maximum of the input `[K]` (enables smoothing).
        public var absmax: [Float]?
        /// `mean xᵀx` `[K, K]` over the calibration tokens.
        public var gram: FloatBuffer?
        /// Input token rows `[T, K]` (a subsample is enough): the exact loss with activation quantization.
        public var samples: Matrix?

        public init(absmax: [Float]? = nil, gram: FloatBuffer? = nil, samples: Matrix? = nil) {
            self.absmax = absmax
            self.gram = gram
            self.samples = samples
        }
    }

    /// The decomposition of one linear.
    public struct Result: Sendable {
        /// λ `[K]` (all ones when smoothing is off).
        public var smooth: [Float]
        /// `[rank, K]` row-major, acting on the unsmoothed input; values exactly representable in `lowRankDType`.
        public var loraDown: [Float]
        /// `[N, rank]` row-major; values exactly representable in `lowRankDType`.
        public var loraUp: [Float]
        public var rank: Int
        /// The 4-bit residual `Q(Ŵ − L)` of the smoothed weight.
        public var residual: QuantizedWeight
        /// The chosen smoothing exponents (0, 0 when off).
        public var alpha: Float
        public var beta: Float
        /// The loss of the result (see the type's documentation), and of plain RTN without branch or smoothing.
        public var loss: Double
        public var baselineLoss: Double
        /// Refinement iterations run, and whether GPTQ's residual was kept.
        public var iterations: Int
        public var gptqUsed: Bool
    }

    /// Decomposes the row-major `[n, k]` weight `weight`: smoothing, low-rank branch and quantized residual.
    /// - Throws: `SchemeError` when the scheme does not fit K, `BLASError` without OpenBLAS/LAPACK, `GPTQError`.
    public static func quantize(weight: UnsafePointer<Float>, rows n: Int, columns k: Int, scheme: QuantScheme,
                                statistics: Statistics = Statistics(), settings: Settings = Settings()) throws -> Result {
        try scheme.check(tensor: "weight", k: k)
        try BLAS.load()
        let problem = try Problem(weight: weight, n: n, k: k, scheme: scheme, statistics: statistics, settings: settings)
        let baseline = problem.loss(smooth: [Float](repeating: 1, count: k),
                                    branch: Branch(up: [], down: [], effective: nil, rank: 0),
                                    residual: problem.quantize(problem.smoothed([Float](repeating: 1, count: k)), minus: nil))

        // 1. The smoothing search, one-shot branch per candidate.
        var candidates: [(Float, Float)] = [(0, 0)]
        if let a = statistics.absmax, a.count == k, settings.grid > 0 {
            candidates = []
            for i in 0...settings.grid {
                let alpha = Float(i) / Float(settings.grid)
                candidates.append((alpha, 0))
                if settings.betaVariants && i > 0 && i < settings.grid { candidates.append((alpha, 1 - alpha)) }
            }
        }
        var best: Attempt?
        for (alpha, beta) in candidates {
            let lambda = problem.smoothing(alpha: alpha, beta: beta)
            let w = problem.smoothed(lambda)
            let branch = try problem.branch(of: w, smooth: lambda)
            let r = problem.quantize(w, minus: branch.effective)
            let loss = problem.loss(smooth: lambda, branch: branch, residual: r)
            if best == nil || loss < best!.loss {
                best = Attempt(alpha: alpha, beta: beta, smooth: lambda, smoothed: w, branch: branch, residual: r, loss: loss)
            }
        }
        var kept = best!

        // 2. Refinement: L = SVD_r(Ŵ − R̂), R̂ = Q(Ŵ − L).
        var iterations = 1
        while iterations < settings.iterations {
            let dequantized = FloatBuffer(count: n * k)
            kept.residual.dequantize(into: dequantized.pointer)
            let target = FloatBuffer(count: n * k)
            for i in 0..<(n * k) { target.pointer[i] = kept.smoothed.pointer[i] - dequantized.pointer[i] }
            let branch = try problem.branch(of: target, smooth: kept.smooth)
            let r = problem.quantize(kept.smoothed, minus: branch.effective)
            let loss = problem.loss(smooth: kept.smooth, branch: branch, residual: r)
            iterations += 1
            guard loss < kept.loss else { break }
            kept.branch = branch
            kept.residual = r
            kept.loss = loss
        }

        // 3. GPTQ on the residual.
        var gptqUsed = false
        if let g = settings.gptq, let h = problem.smoothedHessian(kept.smooth) {
            let target = FloatBuffer(count: n * k)
            let e = kept.branch.effective!
            for i in 0..<(n * k) { target.pointer[i] = kept.smoothed.pointer[i] - e.pointer[i] }
            var codes = [UInt8](repeating: 0, count: n * k)
            let gl = scheme.granularity.groupLength(k: k)
            let gpr = scheme.granularity == .tensor ? 0 : k / gl
            var params = [GroupCodec.Parameters](repeating: GroupCodec.Parameters(scale: 0, storedScale: 0, zero: 0), count: max(1, n * gpr))
            let result = try codes.withUnsafeMutableBufferPointer { c in
                try params.withUnsafeMutableBufferPointer { p in
                    try GPTQSolver.quantize(weight: target.pointer, n: n, k: k, hessian: h.pointer, scheme: scheme, settings: g,
                                            codes: c.baseAddress!, parameters: p.baseAddress!)
                }
            }
            let r = problem.roundScales(QuantizedWeight(scheme: scheme, rows: n, columns: k, codes: codes, parameters: params, globalScale: result.globalScale),
                                        values: nil)
            let loss = problem.loss(smooth: kept.smooth, branch: kept.branch, residual: r)
            if loss < kept.loss {
                kept.residual = r
                kept.loss = loss
                gptqUsed = true
            }
        }
        return Result(smooth: kept.smooth, loraDown: kept.branch.down, loraUp: kept.branch.up, rank: kept.branch.rank,
                      residual: kept.residual, alpha: kept.alpha, beta: kept.beta, loss: kept.loss, baselineLoss: baseline,
                      iterations: iterations, gptqUsed: gptqUsed)
    }

    /// The output `y = Q_a(x/λ)·R̂ᵀ + (x·downᵀ)·upᵀ` of a decomposed linear on the token rows `x` `[t, k]`, into
    /// `y` `[t, n]` (what the decoder computes at run time; a reference for tests and other runtimes).
    public static func apply(_ r: Result, to x: UnsafePointer<Float>, rows t: Int, activation: ActivationQuantization?,
                             into y: UnsafeMutablePointer<Float>) {
        let n = r.residual.rows, k = r.residual.columns
        let w = FloatBuffer(count: n * k)
        r.residual.dequantize(into: w.pointer)
        let xs = FloatBuffer(count: t * k)
        for i in 0..<t { for j in 0..<k { xs.pointer[i * k + j] = x[i * k + j] / r.smooth[j] } }
        if let a = activation { for i in 0..<t { a.applyRow(xs.pointer + i * k, count: k) } }
        BLAS.linear(xs.pointer, m: t, k: k, weight: w.pointer, n: n, into: y)
        guard r.rank > 0 else { return }
        let mid = FloatBuffer(count: t * r.rank)
        r.loraDown.withUnsafeBufferPointer { d in BLAS.linear(x, m: t, k: k, weight: d.baseAddress!, n: r.rank, into: mid.pointer) }
        r.loraUp.withUnsafeBufferPointer { u in BLAS.linear(mid.pointer, m: t, k: r.rank, weight: u.baseAddress!, n: n, into: y, accumulate: true) }
    }

    struct Branch {
        var up: [Float]
        var down: [Float]
        /// `up·down·diag(λ)` `[n, k]`: the branch in the smoothed space (`nil` for rank 0).
        var effective: FloatBuffer?
        var rank: Int
    }

    struct Attempt {
        var alpha: Float, beta: Float
        var smooth: [Float]
        var smoothed: FloatBuffer
        var branch: Branch
        var residual: QuantizedWeight
        var loss: Double
    }

    /// One linear's fixed data: the weight, the statistics, the reference outputs.
    struct Problem {
        let weight: UnsafePointer<Float>
        let n: Int, k: Int
        let scheme: QuantScheme
        let statistics: Statistics
        let settings: Settings
        /// Column absmax of W.
        let columnMax: [Float]
        /// `samples·Wᵀ` `[T, n]` when samples are given.
        let reference: FloatBuffer?

        init(weight: UnsafePointer<Float>, n: Int, k: Int, scheme: QuantScheme, statistics: Statistics, settings: Settings) throws {
            self.weight = weight
            self.n = n
            self.k = k
            self.scheme = scheme
            self.statistics = statistics
            self.settings = settings
            var cm = [Float](repeating: 0, count: k)
            for r in 0..<n { for j in 0..<k { cm[j] = max(cm[j], abs(weight[r * k + j])) } }
            columnMax = cm
            if let x = statistics.samples {
                guard x.columns == k else { throw SchemeError("svdquant: samples have \(x.columns) columns, the weight K = \(k)", exitStatus: .dataError) }
                let ref = FloatBuffer(count: x.rows * n)
                BLAS.linear(x.pointer, m: x.rows, k: k, weight: weight, n: n, into: ref.pointer)
                reference = ref
            } else {
                reference = nil
            }
        }

        func smoothing(alpha: Float, beta: Float) -> [Float] {
            guard let a = statistics.absmax, alpha != 0 || beta != 0 else { return [Float](repeating: 1, count: k) }
            var s = (0..<k).map { j in max(powf(max(a[j], 1e-5), alpha) / powf(max(columnMax[j], 1e-5), beta), 1e-5) }
            var lo = Float.infinity, hi: Float = 0
            for v in s { lo = min(lo, v); hi = max(hi, v) }
            let norm = (lo * hi).squareRoot()
            if norm > 0 && norm.isFinite { for j in 0..<k { s[j] /= norm } }
            // Nunchaku stores smooth in the model dtype: keep values it represents exactly.
            return s.map { max(round($0), Float.leastNormalMagnitude) }
        }

        func smoothed(_ lambda: [Float]) -> FloatBuffer {
            let w = FloatBuffer(count: n * k)
            for r in 0..<n { for j in 0..<k { w.pointer[r * k + j] = weight[r * k + j] * lambda[j] } }
            return w
        }

        func round(_ x: Float) -> Float {
            switch settings.lowRankDType {
            case .bf16: Conversion.float(fromBFloat16Bits: Conversion.bfloat16Bits(x))
            case .f16: Float(Float16(x))
            default: x
            }
        }

        /// The rank-r branch of `target` (smoothed space), stored-type rounded, and its effective matrix.
        func branch(of target: FloatBuffer, smooth lambda: [Float]) throws -> Branch {
            let r = min(settings.rank, n, k)
            guard r > 0 else { return Branch(up: [], down: [], effective: nil, rank: 0) }
            let a = (0..<(n * k)).map { Double(target.pointer[$0]) }
            let f = try LowRank.truncated(a, rows: n, columns: k, rank: r)
            let up = f.up.map { round(Float($0)) }
            var down = [Float](repeating: 0, count: r * k)
            for i in 0..<r { for j in 0..<k { down[i * k + j] = round(Float(f.down[i * k + j]) / lambda[j]) } }
            let e = FloatBuffer(count: n * k)
            up.withUnsafeBufferPointer { u in
                down.withUnsafeBufferPointer { d in
                    BLAS.sgemm(m: n, n: k, k: r, a: u.baseAddress!, lda: r, b: d.baseAddress!, ldb: k, c: e.pointer, ldc: k)
                }
            }
            for row in 0..<n { for j in 0..<k { e.pointer[row * k + j] *= lambda[j] } }
            return Branch(up: up, down: down, effective: e, rank: r)
        }

        /// `Q(w − minus)`.
        func quantize(_ w: FloatBuffer, minus: FloatBuffer?) -> QuantizedWeight {
            guard let minus else { return roundScales(QuantizedWeight.quantize(w.pointer, rows: n, columns: k, scheme: scheme), values: w.pointer) }
            let t = FloatBuffer(count: n * k)
            for i in 0..<(n * k) { t.pointer[i] = w.pointer[i] - minus.pointer[i] }
            return roundScales(QuantizedWeight.quantize(t.pointer, rows: n, columns: k, scheme: scheme), values: t.pointer)
        }

        /// INT scales rounded to the 16-bit type Nunchaku stores them in (`wscales` in the model dtype), and the
        /// codes re-encoded from `values` with them (`values == nil`: codes kept, GPTQ's), so a packed checkpoint
        /// computes exactly what the qkit one does.
        func roundScales(_ q: QuantizedWeight, values: UnsafePointer<Float>?) -> QuantizedWeight {
            guard case .int = scheme.format, settings.lowRankDType != .f32, scheme.symmetric else { return q }
            var q = q
            let codec = GroupCodec(scheme: scheme)
            let gl = q.groupLength, gpr = q.groupsPerRow
            for i in 0..<q.parameters.count {
                let s = round(q.parameters[i].scale)
                q.parameters[i] = GroupCodec.Parameters(scale: s, storedScale: s.bitPattern, zero: 0)
            }
            if let values, gpr > 0 {
                q.codes.withUnsafeMutableBufferPointer { c in
                    for r in 0..<n { for g in 0..<gpr {
                        codec.encode(values + r * k + g * gl, count: gl, q.parameters[r * gpr + g], into: c.baseAddress! + r * k + g * gl)
                    } }
                }
            }
            return q
        }

        /// The Hessian of the smoothed input for GPTQ, `diag(1/λ)·G·diag(1/λ)` (from the Gram matrix or the samples).
        func smoothedHessian(_ lambda: [Float]) -> FloatBuffer? {
            let h = FloatBuffer(count: k * k, zeroed: true)
            if let g = statistics.gram {
                for i in 0..<k { for j in 0..<k { h.pointer[i * k + j] = g.pointer[i * k + j] / (lambda[i] * lambda[j]) } }
                return h
            }
            guard let x = statistics.samples else { return nil }
            let xs = FloatBuffer(count: x.rows * k)
            for t in 0..<x.rows { for j in 0..<k { xs.pointer[t * k + j] = x.pointer[t * k + j] / lambda[j] } }
            BLAS.ssyrkTransposed(n: k, k: x.rows, alpha: 1 / Float(max(1, x.rows)), a: xs.pointer, lda: k, beta: 0, c: h.pointer, ldc: k)
            return h
        }

        func loss(smooth lambda: [Float], branch: Branch, residual: QuantizedWeight) -> Double {
            let rhat = FloatBuffer(count: n * k)
            residual.dequantize(into: rhat.pointer)
            if let x = statistics.samples, let ref = reference {
                let t = x.rows
                let xs = FloatBuffer(count: t * k)
                for i in 0..<t { for j in 0..<k { xs.pointer[i * k + j] = x.pointer[i * k + j] / lambda[j] } }
                if let a = settings.activation {
                    nonisolated(unsafe) let p = xs.pointer
                    let kk = k
                    parallelFor((t + 63) / 64) { c in
                        for i in (c * 64)..<min(t, (c + 1) * 64) { a.applyRow(p + i * kk, count: kk) }
                    }
                }
                let y = FloatBuffer(count: t * n)
                BLAS.linear(xs.pointer, m: t, k: k, weight: rhat.pointer, n: n, into: y.pointer)
                if branch.rank > 0 {
                    let mid = FloatBuffer(count: t * branch.rank)
                    branch.down.withUnsafeBufferPointer { d in
                        BLAS.linear(x.pointer, m: t, k: k, weight: d.baseAddress!, n: branch.rank, into: mid.pointer)
                    }
                    branch.up.withUnsafeBufferPointer { u in
                        BLAS.linear(mid.pointer, m: t, k: branch.rank, weight: u.baseAddress!, n: n, into: y.pointer, accumulate: true)
                    }
                }
                var sum = 0.0
                for i in 0..<(t * n) { let d = Double(y.pointer[i] - ref.pointer[i]); sum += d * d }
                return sum / Double(max(1, t))
            }
            // ΔW in the unsmoothed space: W − (R̂ + L)·diag(1/λ).
            let dw = FloatBuffer(count: n * k)
            for r in 0..<n {
                for j in 0..<k {
                    let i = r * k + j
                    dw.pointer[i] = weight[i] - (rhat.pointer[i] + (branch.effective?.pointer[i] ?? 0)) / lambda[j]
                }
            }
            guard let g = statistics.gram else {
                var sum = 0.0
                for i in 0..<(n * k) { let d = Double(dw.pointer[i]); sum += d * d }
                return sum
            }
            let dg = FloatBuffer(count: n * k)
            BLAS.linear(dw.pointer, m: n, k: k, weight: g.pointer, n: k, into: dg.pointer)
            var sum = 0.0
            for i in 0..<(n * k) { sum += Double(dw.pointer[i]) * Double(dg.pointer[i]) }
            if let a = settings.activation, let absmax = statistics.absmax {
                // Uniform rounding noise of step absmax_group/qmax on each smoothed channel.
                let gs = a.groupSize ?? k
                let qmax: Float = a.format == .nvfp4 ? 6 : Float((1 << (a.bits - 1)) - 1)
                var colNorm = [Double](repeating: 0, count: k)
                for r in 0..<n { for j in 0..<k { let v = Double(rhat.pointer[r * k + j]); colNorm[j] += v * v } }
                var g0 = 0
                while g0 < k {
                    let g1 = min(k, g0 + gs)
                    var m: Float = 0
                    for j in g0..<g1 { m = max(m, absmax[j] / lambda[j]) }
                    let step = Double(m / qmax)
                    for j in g0..<g1 { sum += step * step / 12 * colNorm[j] }
                    g0 = g1
                }
            }
            return sum
        }
    }
}
