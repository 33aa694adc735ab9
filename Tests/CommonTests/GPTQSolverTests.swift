#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import Common

/// Inputs and outputs of one GPTQ run in tests.
struct GPTQRun {
    var weight: [Float]
    var codes: [UInt8]
    var parameters: [GroupCodec.Parameters]
    var result: GPTQSolver.Result
}

/// Helpers shared by the GPTQ tests.
enum GPTQTesting {
    static func fixtureDirectory() -> String {
        let here = "\(#filePath)"
        return String(here[..<here.lastIndex(of: "/")!]) + "/Fixtures/gptq"
    }

    /// Runs the solver on copies of `w` and `h`.
    static func run(_ w: [Float], n: Int, k: Int, hessian h: [Float], scheme: QuantScheme,
                    settings: GPTQSolver.Settings = .init()) throws(GPTQError) -> GPTQRun {
        var w = w, h = h
        var codes = [UInt8](repeating: 0xEE, count: n * k)
        let count = scheme.granularity == .tensor ? 1 : n * (k / scheme.granularity.groupLength(k: k))
        var parameters = [GroupCodec.Parameters](repeating: .init(scale: .nan, storedScale: 0, zero: .nan), count: count)
        let result = try w.withUnsafeMutableBufferPointer { (wb) throws(GPTQError) -> GPTQSolver.Result in
            try h.withUnsafeMutableBufferPointer { (hb) throws(GPTQError) -> GPTQSolver.Result in
                try codes.withUnsafeMutableBufferPointer { (cb) throws(GPTQError) -> GPTQSolver.Result in
                    try parameters.withUnsafeMutableBufferPointer { (pb) throws(GPTQError) -> GPTQSolver.Result in
                        try GPTQSolver.quantize(weight: wb.baseAddress!, n: n, k: k, hessian: hb.baseAddress!, scheme: scheme,
                                                settings: settings, codes: cb.baseAddress!, parameters: pb.baseAddress!)
                    }
                }
            }
        }
        return GPTQRun(weight: w, codes: codes, parameters: parameters, result: result)
    }

    /// The parameters of element (row, column).
    static func parameters(_ p: [GroupCodec.Parameters], scheme: QuantScheme, k: Int, row: Int, column: Int) -> GroupCodec.Parameters {
        if scheme.granularity == .tensor { return p[0] }
        let g = scheme.granularity.groupLength(k: k)
        return p[row * (k / g) + column / g]
    }

    /// The values of `codes` under `p` (GroupCodec's dequantization).
    static func decode(_ codes: [UInt8], _ p: [GroupCodec.Parameters], scheme: QuantScheme, globalScale: Float, n: Int, k: Int) -> [Float] {
        let codec = GroupCodec(scheme: scheme, globalScale: globalScale)
        var out = [Float](repeating: .nan, count: n * k)
        for r in 0..<n {
            for c in 0..<k {
                var v: Float = 0
                codec.decode([codes[r * k + c]], count: 1, parameters(p, scheme: scheme, k: k, row: r, column: c), into: &v)
                out[r * k + c] = v
            }
        }
        return out
    }

    /// RTN with the same (static) parameters: codes and values.
    static func rtn(_ w: [Float], _ p: [GroupCodec.Parameters], scheme: QuantScheme, globalScale: Float, n: Int, k: Int) -> (codes: [UInt8], values: [Float]) {
        let codec = GroupCodec(scheme: scheme, globalScale: globalScale)
        var codes = [UInt8](repeating: 0, count: n * k)
        for r in 0..<n {
            for c in 0..<k {
                var code: UInt8 = 0
                codec.encode([w[r * k + c]], count: 1, parameters(p, scheme: scheme, k: k, row: r, column: c), into: &code)
                codes[r * k + c] = code
            }
        }
        return (codes, decode(codes, p, scheme: scheme, globalScale: globalScale, n: n, k: k))
    }

    /// The output error ‖(W − Q)X‖ up to a constant factor: sqrt(tr(E·H·Eᵀ)) with E = W − Q (H = 2/T·XᵀX).
    static func outputError(_ w: [Float], _ q: [Float], hessian h: [Float], n: Int, k: Int) -> Double {
        var total = 0.0
        for r in 0..<n {
            let e = (0..<k).map { Double(w[r * k + $0] - q[r * k + $0]) }
            for i in 0..<k where e[i] != 0 {
                var s = 0.0
                for j in 0..<k { s += Double(h[i * k + j]) * e[j] }
                total += e[i] * s
            }
        }
        return total.squareRoot()
    }

    /// Seeded data: a weight [n, k] and the Hessian 2/T·XᵀX of T correlated activations with log-normal channel
    /// magnitudes (computed on BLAS in f32).
    static func data(n: Int, k: Int, tokens: Int = 512, seed: UInt64) throws -> (weight: [Float], hessian: [Float]) {
        try BLAS.load()
        var g = SplitMix(seed: seed)
        func normal() -> Float {
            let u = max(g.nextDouble(), 1e-300), v = g.nextDouble()
            return Float((-2 * Glibc.log(u)).squareRoot() * cos(2 * Double.pi * v))
        }
        let w = (0..<(n * k)).map { _ in normal() * 0.05 }
        let mags = (0..<k).map { _ in Float(exp(Double(normal()) * 0.8)) }
        var z = (0..<(tokens * k)).map { _ in normal() }
        // X = Z·M with M = I + 0.1·N, then the channel magnitudes.
        var m = (0..<(k * k)).map { _ in normal() * 0.1 }
        for i in 0..<k { m[i * k + i] += 1 }
        var x = [Float](repeating: 0, count: tokens * k)
        BLAS.sgemm(m: tokens, n: k, k: k, a: z, lda: k, b: m, ldb: k, c: &x, ldc: k)
        for t in 0..<tokens { for c in 0..<k { x[t * k + c] *= mags[c] } }
        z = []
        var h = [Float](repeating: 0, count: k * k)
        BLAS.sgemm(transA: true, m: k, n: k, k: tokens, alpha: 2 / Float(tokens), a: x, lda: k, b: x, ldb: k, c: &h, ldc: k)
        return (w, h)
    }
}

@Suite("GPTQ solver")
struct GPTQSolverTests {
    // MARK: - Against llm-compressor

    /// One case of Fixtures/gptq/reference.safetensors (Tests/peer-checks/gptq_reference.py).
    struct ReferenceCase: Sendable, CustomStringConvertible {
        var name: String
        var scheme: QuantScheme
        var actOrder = false
        var dead: Int?
        var description: String { name }
    }

    static let referenceCases: [ReferenceCase] = [
        .init(name: "int4_g64_sym", scheme: QuantScheme(format: .int(bits: 4), granularity: .group(64), symmetric: true)),
        .init(name: "int4_g64_asym", scheme: QuantScheme(format: .int(bits: 4), granularity: .group(64), symmetric: false)),
        .init(name: "int8_ch_sym", scheme: QuantScheme(format: .int(bits: 8), granularity: .channel, symmetric: true)),
        .init(name: "int4_g64_sym_act", scheme: QuantScheme(format: .int(bits: 4), granularity: .group(64), symmetric: true), actOrder: true),
        .init(name: "int4_g64_asym_act", scheme: QuantScheme(format: .int(bits: 4), granularity: .group(64), symmetric: false), actOrder: true),
        .init(name: "int4_g64_sym_dead", scheme: QuantScheme(format: .int(bits: 4), granularity: .group(64), symmetric: true), dead: 7),
        .init(name: "fp8_ch", scheme: QuantScheme(format: .fp8E4M3, granularity: .channel)),
        .init(name: "nvfp4", scheme: QuantScheme(format: .nvfp4)),
    ]

    static func tensor<T: BitwiseCopyable>(_ file: SafetensorsFile, _ name: String, as: T.Type) throws -> [T] {
        let info = try #require(file.tensors.first { $0.name == name }, "no tensor \(name)")
        let raw = file.data(info)
        return (0..<(raw.count / MemoryLayout<T>.size)).map { raw.loadUnaligned(fromByteOffset: $0 * MemoryLayout<T>.size, as: T.self) }
    }

    @Test("llm-compressor's quantize_weight: same scales, codes within float-order flips, output error as low",
          arguments: referenceCases)
    func againstLLMCompressor(_ c: ReferenceCase) throws {
        let file = try SafetensorsFile(path: GPTQTesting.fixtureDirectory() + "/reference.safetensors")
        let (n, k) = (64, 256)
        let w = try Self.tensor(file, "weight", as: Float.self)
        var h = try Self.tensor(file, "hessian", as: Float.self)
        if let d = c.dead { for i in 0..<k { h[d * k + i] = 0; h[i * k + d] = 0 } }
        let run = try GPTQTesting.run(w, n: n, k: k, hessian: h, scheme: c.scheme, settings: .init(actOrder: c.actOrder))
        let s = c.scheme

        // Scales, zero points, global scale: the same bits.
        let scales: [UInt32] = s.format == .nvfp4
            ? try Self.tensor(file, "\(c.name).scale", as: UInt8.self).map { UInt32($0) }
            : try Self.tensor(file, "\(c.name).scale", as: Float.self).map(\.bitPattern)
        #expect(run.parameters.map(\.storedScale) == scales)
        if !s.symmetric {
            #expect(run.parameters.map { UInt8($0.zero) } == (try Self.tensor(file, "\(c.name).zero", as: UInt8.self)))
        }
        if s.format == .nvfp4 {
            #expect(run.result.globalScale == (try Self.tensor(file, "\(c.name).global_scale", as: Float.self))[0])
        }
        #expect(run.result.deadColumns == (c.dead.map { [$0] } ?? []))
        if let d = c.dead { for r in 0..<n { #expect(run.weight[r * k + d] == 0) } }

        // Codes. Both sides compute U in f32 by different routes (LAPACK potrf+trtri here, torch's
        // cholesky/cholesky_inverse/cholesky there) and sum the updates in different orders, so the running
        // weights differ by ~1e-6 relative; a value within that of a rounding boundary would flip to the
        // neighbouring code. On this data all 8 × 16384 codes agree; the bound (0.2%, one grid step) leaves room
        // for such a flip on another CPU's OpenBLAS kernels.
        let reference = try Self.tensor(file, "\(c.name).codes", as: UInt8.self)
        let table = CodeTable.table(for: s.codeDType, hasZeroPoint: !s.symmetric)
        var differ = 0, far = 0
        for i in 0..<(n * k) where run.codes[i] != reference[i] {
            differ += 1
            let a = table[Int(run.codes[i])], b = table[Int(reference[i])]
            // One step of the grid: adjacent integers, or adjacent values of the float element set.
            let between = table.filter { ($0 > min(a, b) && $0 < max(a, b)) }
            if s.format.isFloat ? !between.isEmpty : abs(a - b) != 1 { far += 1 }
        }
        let fraction = Double(differ) / Double(n * k)
        print("gptq \(c.name): \(differ) of \(n * k) codes differ from llm-compressor (\(fraction)), \(far) by more than one step")
        #expect(fraction <= 0.002, "\(c.name): \(differ) codes differ")
        #expect(far <= differ / 4, "\(c.name): \(far) codes differ by more than one step")

        // The output is on the grid of the returned parameters, and RTN-encodable back to the same codes.
        let decoded = GPTQTesting.decode(run.codes, run.parameters, scheme: s, globalScale: run.result.globalScale, n: n, k: k)
        #expect(decoded == run.weight)

        // Output error ‖(W − Q)X‖ relative to RTN's: below it, and as low as llm-compressor's.
        let rtn = GPTQTesting.rtn(w, run.parameters, scheme: s, globalScale: run.result.globalScale, n: n, k: k)
        let ours = GPTQTesting.outputError(w, run.weight, hessian: h, n: n, k: k)
        let baseline = GPTQTesting.outputError(w, rtn.values, hessian: h, n: n, k: k)
        let peer = try Self.tensor(file, "\(c.name).error", as: Double.self)
        let ratio = ours / baseline, peerRatio = peer[0] / peer[1]
        print("gptq \(c.name): output error / RTN's = \(ratio) (llm-compressor \(peerRatio)); loss \(run.result.loss)")
        #expect(ratio < 0.9)
        #expect(abs(ratio - peerRatio) <= 0.001 * peerRatio)
        let peerLoss = try Self.tensor(file, "\(c.name).loss", as: Double.self)[0]
        #expect(abs(run.result.loss - peerLoss) <= 0.001 * peerLoss, "loss \(run.result.loss) vs \(peerLoss)")
        #expect(run.result.retries == 0 && run.result.dampening == 0.01)
    }
}

@Suite("GPTQ solver: hand-checked cases, retries, bad input, every format")
struct GPTQSolverCaseTests {
    /// A worked example (no damping). k = 3, int4 symmetric per channel: column 2 holds the absolute maximum 0.75,
    /// so s = 2·0.75/15 = 0.1. H couples columns 0 and 1 only: H = [[1, ½, 0], [½, 1, 0], [0, 0, 1]], so
    /// H⁻¹ = [[4/3, −2/3, 0], [−2/3, 4/3, 0], [0, 0, 1]] and U = [[2/√3, −1/√3, 0], [0, 1, 0], [0, 0, 1]].
    /// Column 0: 0.33/0.1 = 3.3 → code 3, q = 0.3, err = 0.03/(2/√3) = 0.025981; column 1 becomes
    /// 0.14 − err·(−1/√3) = 0.14 + 0.015 = 0.155 → 1.55 → code 2 (RTN: 1.4 → 1); err = (0.155 − 0.2)/1 = −0.045.
    /// Column 2: 7.5 clamps to code 7, err = 0.05. Loss = (0.000675 + 0.002025 + 0.0025)/2 = 0.0026.
    @Test func handWorked() throws {
        let scheme = QuantScheme(format: .int(bits: 4), granularity: .channel, symmetric: true)
        let h: [Float] = [1, 0.5, 0, 0.5, 1, 0, 0, 0, 1]
        let run = try GPTQTesting.run([0.33, 0.14, 0.75], n: 1, k: 3, hessian: h, scheme: scheme, settings: .init(dampening: 0))
        #expect(run.parameters[0].scale == 0.1)
        #expect(run.codes == [3, 2, 7])
        #expect(run.weight == [3 * Float(0.1), 2 * Float(0.1), 7 * Float(0.1)])
        #expect(abs(run.result.loss - 0.0026) < 1e-6, "loss \(run.result.loss)")
        let rtn = GPTQTesting.rtn([0.33, 0.14, 0.75], run.parameters, scheme: scheme, globalScale: 1, n: 1, k: 3)
        #expect(rtn.codes == [3, 1, 7])
        // tr(E·H·Eᵀ): RTN E = [0.03, 0.04, 0.05] → 0.0062; GPTQ E = [0.03, −0.06, 0.05] → 0.0052.
        let (g, r) = (GPTQTesting.outputError([0.33, 0.14, 0.75], run.weight, hessian: h, n: 1, k: 3),
                      GPTQTesting.outputError([0.33, 0.14, 0.75], rtn.values, hessian: h, n: 1, k: 3))
        #expect(abs(g * g - 0.0052) < 1e-6 && abs(r * r - 0.0062) < 1e-6, "\(g * g) \(r * r)")
    }

    /// With a diagonal Hessian U is diagonal: no error is propagated and GPTQ is RTN exactly.
    @Test func diagonalHessianIsRTN() throws {
        let (n, k) = (20, 96)
        let (w, full) = try GPTQTesting.data(n: n, k: k, seed: 11)
        var h = [Float](repeating: 0, count: k * k)
        for i in 0..<k { h[i * k + i] = full[i * k + i] }
        for scheme in [QuantScheme(format: .int(bits: 3), granularity: .group(32), symmetric: false),
                       QuantScheme(format: .fp4, granularity: .group(32))] {
            for actOrder in [false, true] {
                let run = try GPTQTesting.run(w, n: n, k: k, hessian: h, scheme: scheme, settings: .init(blockSize: 40, actOrder: actOrder))
                let rtn = GPTQTesting.rtn(w, run.parameters, scheme: scheme, globalScale: 1, n: n, k: k)
                #expect(run.codes == rtn.codes && run.weight == rtn.values, "\(scheme) actOrder \(actOrder)")
                // And RTN's own parameters (RTN.quantizeRow) are the static ones.
                var codes = [UInt8](repeating: 0, count: k), p = [GroupCodec.Parameters](repeating: .init(scale: 0, storedScale: 0, zero: 0), count: k / 32)
                RTN.quantizeRow(w, k: k, groupLength: 32, codec: GroupCodec(scheme: scheme), fixed: nil, codes: &codes, parameters: &p)
                #expect(Array(run.parameters[0..<(k / 32)]) == p && Array(run.codes[0..<k]) == codes)
            }
        }
    }

    /// H = [[1, 2], [2, 1]] has eigenvalues 3 and −1: the damped matrix is positive definite once the damping
    /// exceeds 1 · mean(diag). The schedule 0.01, 0.02, …, 0.64, 1.28 gets there on the 7th retry.
    @Test func choleskyFailureRetries() throws {
        let scheme = QuantScheme(format: .int(bits: 8), granularity: .channel, symmetric: true)
        let run = try GPTQTesting.run([0.5, -0.25], n: 1, k: 2, hessian: [1, 2, 2, 1], scheme: scheme)
        #expect(run.result.retries == 7)
        #expect(run.result.dampening == 1.28)
        let finite = run.weight.allSatisfy { $0.isFinite }
        #expect(finite)
        #expect(throws: GPTQError.notPositiveDefinite(retries: 6, dampening: 0.64)) {
            _ = try GPTQTesting.run([0.5, -0.25], n: 1, k: 2, hessian: [1, 2, 2, 1], scheme: scheme, settings: .init(maxRetries: 6))
        }
        #expect(GPTQError.notPositiveDefinite(retries: 6, dampening: 0.64).exitStatus == .dataError)
        // A rank-deficient Hessian (fewer tokens than inputs) needs no retry: 1% damping makes it definite.
        let (w, h) = try GPTQTesting.data(n: 8, k: 64, tokens: 16, seed: 4)
        let deficient = try GPTQTesting.run(w, n: 8, k: 64, hessian: h, scheme: scheme)
        #expect(deficient.result.retries == 0)
    }

    @Test func badInput() throws {
        let scheme = QuantScheme(format: .int(bits: 4), granularity: .group(16), symmetric: true)
        let (n, k) = (4, 32)
        let (w, h) = try GPTQTesting.data(n: n, k: k, seed: 2)
        var bad = w
        bad[1 * k + 3] = .nan
        #expect(throws: GPTQError.nonFinite(matrix: "weight", row: 1, column: 3)) { _ = try GPTQTesting.run(bad, n: n, k: k, hessian: h, scheme: scheme) }
        var hb = h
        hb[2 * k + 5] = .infinity
        #expect(throws: GPTQError.nonFinite(matrix: "Hessian", row: 2, column: 5)) { _ = try GPTQTesting.run(w, n: n, k: k, hessian: hb, scheme: scheme) }
        hb = h
        hb[9 * k + 9] = .nan
        #expect(throws: GPTQError.nonFinite(matrix: "Hessian", row: 9, column: 9)) { _ = try GPTQTesting.run(w, n: n, k: k, hessian: hb, scheme: scheme) }
        hb = h
        hb[3 * k + 3] = -1
        #expect(throws: GPTQError.negativeDiagonal(column: 3, value: -1)) { _ = try GPTQTesting.run(w, n: n, k: k, hessian: hb, scheme: scheme) }
        #expect(throws: GPTQError.invalidShape("group 16 does not divide K = 24")) { _ = try GPTQTesting.run(Array(w[0..<96]), n: 4, k: 24, hessian: Array(h[0..<576]), scheme: scheme) }
        #expect(throws: GPTQError.invalidSettings("block size 0 must be positive")) { _ = try GPTQTesting.run(w, n: n, k: k, hessian: h, scheme: scheme, settings: .init(blockSize: 0)) }
        #expect(throws: GPTQError.self) { _ = try GPTQTesting.run(w, n: n, k: k, hessian: h, scheme: scheme, settings: .init(dampening: .nan)) }
        #expect(throws: GPTQError.self) { _ = try GPTQTesting.run(w, n: n, k: k, hessian: h, scheme: QuantScheme(format: .nvfp4, granularity: .group(32))) }
        for e: GPTQError in [.nonFinite(matrix: "weight", row: 0, column: 0), .negativeDiagonal(column: 0, value: -1)] {
            #expect(e.exitStatus == .dataError && !e.description.contains("\n"))
        }
        #expect(GPTQError.invalidShape("x").exitStatus == .usage)
        // Only the upper triangle is read: garbage below the diagonal changes nothing.
        hb = h
        for i in 0..<k { for j in 0..<i { hb[i * k + j] = .nan } }
        let clean = try GPTQTesting.run(w, n: n, k: k, hessian: h, scheme: scheme, settings: .init(actOrder: true))
        let upper = try GPTQTesting.run(w, n: n, k: k, hessian: hb, scheme: scheme, settings: .init(actOrder: true))
        #expect(clean.codes == upper.codes && clean.weight == upper.weight)
    }

    /// Rows are split into blocks of `GPTQSolver.rowBlock` by shape: the rows of a block quantized alone give the
    /// same bytes as inside the whole matrix, and two runs give the same bytes.
    @Test func rowsAreIndependentAndDeterministic() throws {
        let (n, k) = (300, 160)
        let (w, h) = try GPTQTesting.data(n: n, k: k, seed: 8)
        let scheme = QuantScheme(format: .int(bits: 4), granularity: .group(32), symmetric: false)
        let settings = GPTQSolver.Settings(blockSize: 64, actOrder: true)
        let full = try GPTQTesting.run(w, n: n, k: k, hessian: h, scheme: scheme, settings: settings)
        let again = try GPTQTesting.run(w, n: n, k: k, hessian: h, scheme: scheme, settings: settings)
        #expect(full.codes == again.codes && full.weight == again.weight && full.result.loss == again.result.loss)
        for rows in [128..<256, 256..<300] {
            let part = try GPTQTesting.run(Array(w[(rows.lowerBound * k)..<(rows.upperBound * k)]), n: rows.count, k: k, hessian: h,
                                           scheme: scheme, settings: settings)
            #expect(part.codes == Array(full.codes[(rows.lowerBound * k)..<(rows.upperBound * k)]))
            #expect(part.weight == Array(full.weight[(rows.lowerBound * k)..<(rows.upperBound * k)]))
        }
    }

    /// Linears that share an input share a factorization: factorized once, each weight quantizes to the same bytes
    /// as with its own copy of the Hessian.
    @Test func sharedFactorization() throws {
        let k = 96
        let (q, h) = try GPTQTesting.data(n: 40, k: k, seed: 12)
        let (v, _) = try GPTQTesting.data(n: 16, k: k, seed: 13)
        let scheme = QuantScheme(format: .int(bits: 4), granularity: .group(32), symmetric: true)
        let settings = GPTQSolver.Settings(actOrder: true)
        var shared = h
        try shared.withUnsafeMutableBufferPointer { (hb) throws(GPTQError) in
            let f = try GPTQSolver.factorize(hessian: hb.baseAddress!, k: k, settings: settings)
            #expect(f.permutation.sorted() == Array(0..<k) && f.permutation != Array(0..<k))
            for (w, n) in [(q, 40), (v, 16)] {
                var w2 = w, codes = [UInt8](repeating: 0, count: n * k)
                var p = [GroupCodec.Parameters](repeating: .init(scale: 0, storedScale: 0, zero: 0), count: n * k / 32)
                let r = try w2.withUnsafeMutableBufferPointer { (wb) throws(GPTQError) in
                    try GPTQSolver.quantize(weight: wb.baseAddress!, n: n, k: k, factorization: f, scheme: scheme, settings: settings,
                                            codes: &codes, parameters: &p)
                }
                let alone = try GPTQTesting.run(w, n: n, k: k, hessian: h, scheme: scheme, settings: settings)
                #expect(codes == alone.codes && w2 == alone.weight && p == alone.parameters && r.loss == alone.result.loss)
            }
            var w3 = Array(q[0..<(4 * 64)]), codes = [UInt8](repeating: 0, count: 4 * 64)
            var p = [GroupCodec.Parameters](repeating: .init(scale: 0, storedScale: 0, zero: 0), count: 8)
            #expect(throws: GPTQError.invalidShape("the factorization is for K = 96, the weight has K = 64")) {
                _ = try GPTQSolver.quantize(weight: &w3, n: 4, k: 64, factorization: f, scheme: scheme, settings: settings,
                                            codes: &codes, parameters: &p)
            }
        }
    }

    /// Block size 1 (every update through the sgemm) and block size K (every update inside the block) are the same
    /// algorithm: the same loss to float accuracy and almost all the same codes.
    @Test func lazyBatchMatchesInBlockUpdates() throws {
        let (n, k) = (32, 192)
        let (w, h) = try GPTQTesting.data(n: n, k: k, seed: 9)
        let scheme = QuantScheme(format: .int(bits: 4), granularity: .group(64), symmetric: true)
        let a = try GPTQTesting.run(w, n: n, k: k, hessian: h, scheme: scheme, settings: .init(blockSize: 1))
        let b = try GPTQTesting.run(w, n: n, k: k, hessian: h, scheme: scheme, settings: .init(blockSize: k))
        let c = try GPTQTesting.run(w, n: n, k: k, hessian: h, scheme: scheme, settings: .init(blockSize: 50))
        for other in [b, c] {
            let differ = zip(a.codes, other.codes).filter { $0 != $1 }.count
            #expect(differ <= n * k / 500, "\(differ) codes differ")
            #expect(abs(a.result.loss - other.result.loss) <= 1e-3 * a.result.loss)
        }
    }

    static let formats: [QuantScheme] = {
        var s: [QuantScheme] = []
        for b in 2...8 {
            s.append(QuantScheme(format: .int(bits: b), granularity: .group(32), symmetric: true))
            s.append(QuantScheme(format: .int(bits: b), granularity: .group(32), symmetric: false))
        }
        s += [QuantScheme(format: .int(bits: 4), granularity: .channel, symmetric: false),
              QuantScheme(format: .int(bits: 8), granularity: .tensor, symmetric: true),
              QuantScheme(format: .int(bits: 6), granularity: .tensor, symmetric: false),
              QuantScheme(format: .fp8E4M3, granularity: .channel), QuantScheme(format: .fp8E4M3, granularity: .tensor),
              QuantScheme(format: .fp8E5M2, granularity: .group(32)), QuantScheme(format: .fp4, granularity: .group(32)),
              QuantScheme(format: .nvfp4), QuantScheme(format: .mxfp4), QuantScheme(format: .mxfp8),
              QuantScheme(format: .int(bits: 3), granularity: .group(32), symmetric: false, algorithm: .mse),
              QuantScheme(format: .fp4, granularity: .channel, algorithm: .mse),
              QuantScheme(format: .int(bits: 4), granularity: .group(32), algorithm: .hqq)]
        return s
    }()

    /// Every format on its own grid: the output is the decoding of the codes with the returned parameters, the
    /// codes are what `GroupCodec.encode` gives for the output, the static parameters are the data-free
    /// quantizer's, and the output error is below RTN's with the same parameters.
    @Test(arguments: formats)
    func everyFormat(_ scheme: QuantScheme) throws {
        let (n, k) = (24, 128)
        let (w, h) = try GPTQTesting.data(n: n, k: k, seed: 21)
        let run = try GPTQTesting.run(w, n: n, k: k, hessian: h, scheme: scheme, settings: .init(blockSize: 48, actOrder: true))
        let g = run.result.globalScale
        #expect(GPTQTesting.decode(run.codes, run.parameters, scheme: scheme, globalScale: g, n: n, k: k) == run.weight)
        #expect(GPTQTesting.rtn(run.weight, run.parameters, scheme: scheme, globalScale: g, n: n, k: k).codes == run.codes)
        if scheme.algorithm == .rtn, scheme.granularity != .tensor {
            let gl = scheme.granularity.groupLength(k: k)
            let codec = GroupCodec(scheme: scheme, globalScale: g)
            for r in [0, n - 1] {
                var codes = [UInt8](repeating: 0, count: k), p = [GroupCodec.Parameters](repeating: .init(scale: 0, storedScale: 0, zero: 0), count: k / gl)
                RTN.quantizeRow(Array(w[(r * k)..<((r + 1) * k)]), k: k, groupLength: gl, codec: codec, fixed: nil, codes: &codes, parameters: &p)
                #expect(Array(run.parameters[(r * k / gl)..<((r + 1) * k / gl)]) == p)
            }
        }
        let rtn = GPTQTesting.rtn(w, run.parameters, scheme: scheme, globalScale: g, n: n, k: k)
        let ours = GPTQTesting.outputError(w, run.weight, hessian: h, n: n, k: k)
        let baseline = GPTQTesting.outputError(w, rtn.values, hessian: h, n: n, k: k)
        #expect(ours < 0.95 * baseline, "\(scheme): \(ours) vs RTN \(baseline)")
    }
}
