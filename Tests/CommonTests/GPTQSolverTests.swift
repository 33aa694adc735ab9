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
