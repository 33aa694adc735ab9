import Testing
@testable import Common

/// SVDQuant: the truncated SVDs, the per-linear core, the W4A4 activation formats.
@Suite struct SVDQuantTests {
    /// A deterministic pseudo-random generator (SplitMix64) for test data.
    struct Noise {
        var state: UInt64
        mutating func next() -> Float {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            return Float(z >> 40) / Float(1 << 24) * 2 - 1
        }
    }

    static func matrix(_ rows: Int, _ cols: Int, seed: UInt64) -> [Float] {
        var g = Noise(state: seed)
        return (0..<(rows * cols)).map { _ in g.next() }
    }

    @Test func exactSVDReconstructsAndRanksMatch() throws {
        let (m, n) = (40, 30)
        let a = Self.matrix(m, n, seed: 1).map(Double.init)
        let full = try LowRank.truncated(a, rows: m, columns: n, rank: 30, randomized: false)
        let back = try LowRank.multiply(transA: false, transB: false, m: m, n: n, k: 30, a: full.up, lda: 30, b: full.down, ldb: n)
        for i in 0..<(m * n) { #expect(abs(back[i] - a[i]) < 1e-10) }
        // Rows of down are orthonormal; singular values descend.
        for i in 0..<30 { for j in 0..<30 {
            var d = 0.0
            for c in 0..<n { d += full.down[i * n + c] * full.down[j * n + c] }
            #expect(abs(d - (i == j ? 1 : 0)) < 1e-10)
        } }
        #expect(zip(full.singularValues, full.singularValues.dropFirst()).allSatisfy { $0 >= $1 })
    }

    @Test func randomizedSVDMatchesExact() throws {
        // A matrix of decaying spectrum: low rank plus small noise.
        let (m, n, r) = (600, 320, 32)
        let u = Self.matrix(m, 48, seed: 2), v = Self.matrix(48, n, seed: 3), e = Self.matrix(m, n, seed: 4)
        var a = [Double](repeating: 0, count: m * n)
        for i in 0..<m { for j in 0..<n {
            var s = 0.0, decay = 1.0
            for t in 0..<48 {
                s += Double(u[i * 48 + t] * v[t * n + j]) * decay
                decay *= 0.85
            }
            a[i * n + j] = s + 0.01 * Double(e[i * n + j])
        } }
        let exact = try LowRank.truncated(a, rows: m, columns: n, rank: r, randomized: false)
        let approx = try LowRank.truncated(a, rows: m, columns: n, rank: r, randomized: true)
        for i in 0..<r { #expect(abs(approx.singularValues[i] - exact.singularValues[i]) <= 1e-3 * exact.singularValues[0]) }
        func residual(_ f: LowRank.Factors) throws -> Double {
            let b = try LowRank.multiply(transA: false, transB: false, m: m, n: n, k: r, a: f.up, lda: r, b: f.down, ldb: n)
            return zip(a, b).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }
        }
        let (re, ra) = (try residual(exact), try residual(approx))
        #expect(ra <= re * 1.01)
        // Deterministic: the same call gives the same factors.
        let again = try LowRank.truncated(a, rows: m, columns: n, rank: r, randomized: true)
        #expect(again.up == approx.up && again.down == approx.down)
    }

    @Test func e2m1RoundingMatchesTheFormat() {
        var v: Float = -7
        while v <= 7 {
            let expected = MinifloatFormat.e2m1.decode(MinifloatFormat.e2m1.encode(min(max(v, -6), 6)))
            #expect(ActivationQuantization.e2m1(v) == expected, "\(v)")
            v += 0.03125
        }
    }

    @Test func groupedActivationFormats() {
        var x: [Float] = (0..<64).map { Float($0) - 20 }
        ActivationQuantization.int4Group64.applyRow(&x, count: 64)
        // absmax 43 → scale 43/7 (F16): every value is a multiple of it within [−8, 7]·s.
        let s = Float(Float16(Float(43) / 7))
        for v in x { #expect(abs(v / s - (v / s).rounded()) < 1e-4 && v / s >= -8 && v / s <= 7) }
        var y: [Float] = (0..<16).map { Float($0) * 0.37 - 2 }
        let orig = y
        ActivationQuantization.nvfp4.applyRow(&y, count: 16)
        for (a, b) in zip(y, orig) { #expect(abs(a - b) <= 0.37 * 4) }
        // The JSON round trip of each format.
        for a in [ActivationQuantization.int4Group64, .nvfp4, ActivationQuantization(bits: 8)] {
            #expect(ActivationQuantization(json: a.json) == a)
        }
    }

    /// A linear with outlier input channels: SVDQuant W4A4 beats RTN W4A4 clearly.
    static func outlierProblem() -> (w: [Float], x: Matrix, n: Int, k: Int) {
        let (n, k, t) = (96, 128, 256)
        var w = matrix(n, k, seed: 5).map { $0 * 0.05 }
        // A few large weight directions (low-rank structure).
        let a = matrix(n, 2, seed: 6), b = matrix(2, k, seed: 7)
        for i in 0..<n { for j in 0..<k { w[i * k + j] += 0.3 * (a[i * 2] * b[j] + a[i * 2 + 1] * b[k + j]) } }
        let xs = matrix(t, k, seed: 8)
        let x = Matrix(rows: t, columns: k)
        for i in 0..<t { for j in 0..<k { x.pointer[i * k + j] = xs[i * k + j] * (j % 16 == 3 ? 30 : 1) } }
        return (w, x, n, k)
    }

    @Test func svdquantLowersW4A4ErrorAndApplyAgrees() throws {
        let (w, x, n, k) = Self.outlierProblem()
        var absmax = [Float](repeating: 0, count: k)
        for i in 0..<x.rows { for j in 0..<k { absmax[j] = max(absmax[j], abs(x.pointer[i * k + j])) } }
        let scheme = try QuantScheme.parse("int4:g64:sym")!
        let settings = SVDQuantLinear.Settings(rank: 8, grid: 10, activation: .int4Group64)
        let r = try w.withUnsafeBufferPointer { p in
            try SVDQuantLinear.quantize(weight: p.baseAddress!, rows: n, columns: k, scheme: scheme,
                                        statistics: .init(absmax: absmax, samples: x), settings: settings)
        }
        #expect(r.loss < 0.5 * r.baselineLoss)
        #expect(r.alpha > 0)
        #expect(r.loraDown.count == 8 * k && r.loraUp.count == n * 8 && r.smooth.count == k)
        // The run-time formula gives the recorded loss.
        let y = FloatBuffer(count: x.rows * n), ref = FloatBuffer(count: x.rows * n)
        SVDQuantLinear.apply(r, to: x.pointer, rows: x.rows, activation: .int4Group64, into: y.pointer)
        w.withUnsafeBufferPointer { BLAS.linear(x.pointer, m: x.rows, k: k, weight: $0.baseAddress!, n: n, into: ref.pointer) }
        var sum = 0.0
        for i in 0..<(x.rows * n) { let d = Double(y.pointer[i] - ref.pointer[i]); sum += d * d }
        #expect(abs(sum / Double(x.rows) - r.loss) <= 1e-3 * r.loss)
        // Values are what BF16 stores.
        for v in r.loraUp { #expect(Conversion.float(fromBFloat16Bits: Conversion.bfloat16Bits(v)) == v) }
    }

    @Test func gramLossAndGPTQAndDataFree() throws {
        let (w, x, n, k) = Self.outlierProblem()
        let scheme = try QuantScheme.parse("nvfp4")!
        let gram = FloatBuffer(count: k * k)
        BLAS.sgemm(transA: true, m: k, n: k, k: x.rows, alpha: 1 / Float(x.rows), a: x.pointer, lda: k, b: x.pointer, ldb: k, c: gram.pointer, ldc: k)
        var absmax = [Float](repeating: 0, count: k)
        for i in 0..<x.rows { for j in 0..<k { absmax[j] = max(absmax[j], abs(x.pointer[i * k + j])) } }
        var settings = SVDQuantLinear.Settings(rank: 8, grid: 5, activation: .nvfp4)
        settings.gptq = GPTQSolver.Settings()
        let r = try w.withUnsafeBufferPointer { p in
            try SVDQuantLinear.quantize(weight: p.baseAddress!, rows: n, columns: k, scheme: scheme,
                                        statistics: .init(absmax: absmax, gram: gram), settings: settings)
        }
        #expect(r.loss < r.baselineLoss)
        // Data-free: no smoothing, the branch still lowers the weight error.
        let d = try w.withUnsafeBufferPointer { p in
            try SVDQuantLinear.quantize(weight: p.baseAddress!, rows: n, columns: k, scheme: scheme, settings: .init(rank: 8))
        }
        #expect(d.smooth.allSatisfy { $0 == 1 } && d.alpha == 0)
        #expect(d.loss < 0.7 * d.baselineLoss)
    }
}
