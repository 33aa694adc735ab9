#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import Common

/// The MSE clipping search: its vectorized |d|^2.4 and its choice, against the scalar definition with `powf`.
@Suite struct MSEClipTests {
    /// The search as the doc comment defines it, with `powf` and the codec's own encode/decode.
    static func reference(_ x: [Float], codec: GroupCodec) -> (parameters: GroupCodec.Parameters, errors: [Float]) {
        let r = x.withUnsafeBufferPointer { RTN.range($0.baseAddress!, count: x.count) }
        var best = codec.parameters(minimum: r.minimum, maximum: r.maximum, absmax: r.absmax), bestError = Float.infinity
        var errors: [Float] = []
        var codes = [UInt8](repeating: 0, count: x.count), values = [Float](repeating: 0, count: x.count)
        for i in 0..<80 {
            let p = 1 - Float(i) / 100
            let c = codec.parameters(minimum: p * r.minimum, maximum: p * r.maximum, absmax: p * r.absmax)
            codec.encode(x, count: x.count, c, into: &codes)
            codec.decode(codes, count: x.count, c, into: &values)
            let e = zip(values, x).reduce(Float(0)) { $0 + ($1.0 == $1.1 ? 0 : powf(abs($1.0 - $1.1), 2.4)) }
            errors.append(e)
            if e < bestError { bestError = e; best = c }
        }
        return (best, errors)
    }

    /// A standard normal value (Box–Muller).
    func gaussian(_ rng: inout SplitMix64) -> Float {
        let u = Float.random(in: Float.ulpOfOne..<1, using: &rng), v = Float.random(in: 0..<1, using: &rng)
        return (-2 * logf(u)).squareRoot() * cosf(2 * Float.pi * v)
    }

    @Test func powerMatchesPowf() {
        var worst: Float = 0
        var d: Float = 1e-12
        while d < 1e6 {
            for sign: Float in [1, -1] {
                let v = sign * d
                let got = MSEClip.power(SIMD8(repeating: v))[3]
                let want = powf(abs(v), 2.4)
                worst = max(worst, abs(got - want) / want)
            }
            d *= 1.0137
        }
        #expect(worst < 2e-6, "worst relative error \(worst)")
        #expect(MSEClip.power(SIMD8(repeating: 0))[0] == 0)
        #expect(MSEClip.power(SIMD8(repeating: -1e-20))[0] == 0)
        #expect(MSEClip.power(SIMD8(repeating: 2))[0] == powf(2, 2.4) || abs(MSEClip.power(SIMD8(repeating: 2))[0] - powf(2, 2.4)) < 1e-6)
    }

    /// Every format, group lengths with and without a tail of fewer than eight: the choice is the reference's,
    /// or one whose reference error is within 1e-5 of the best (a near tie the two error sums may order apart).
    @Test(arguments: ["int4:g64:sym", "int4:g64:asym", "int3:g32:asym", "int8:ch:sym", "int2:g16:asym", "fp4:g32", "fp8:ch"])
    func choiceMatchesReference(_ spec: String) throws {
        let scheme = try #require(try QuantScheme.parse(spec))
        let codec = GroupCodec(scheme: scheme)
        var rng = SplitMix64(seed: 7)
        for count in [scheme.granularity.groupLength(k: 64), 37] {
            for trial in 0..<40 {
                // Gaussian-ish values with an outlier in half the groups: clipping then pays.
                var x = (0..<count).map { _ in gaussian(&rng) * 0.02 }
                if trial % 2 == 0 { x[trial % count] = 0.3 }
                let ref = Self.reference(x, codec: codec)
                var scratch = [UInt8](repeating: 0, count: count)
                let got = MSEClip.searchParameters(x, count: count, codec: codec, scratch: &scratch)
                let shrink = (0..<80).first { i in
                    let p = 1 - Float(i) / 100
                    let r = x.withUnsafeBufferPointer { RTN.range($0.baseAddress!, count: count) }
                    return codec.parameters(minimum: p * r.minimum, maximum: p * r.maximum, absmax: p * r.absmax) == got
                }
                let i = try #require(shrink, "\(spec): the chosen parameters are not on the grid")
                let best = ref.errors.min()!
                #expect(ref.errors[i] <= best * (1 + 1e-5), "\(spec) count \(count) trial \(trial): error \(ref.errors[i]) vs best \(best)")
            }
        }
    }

    /// A hand-worked group (int4 sym, 16 values, absmax 1.17): unclipped, s = 1.17/7.5 = 0.156 and
    /// Σ|ŵ − w|^2.4 = 0.01584; at p = 0.93 (grid step 7), s = 1.17·0.93/7.5 = 0.14508 and the error is 0.00596,
    /// the least of the 80 (numpy, float64 sums).
    @Test func outlierIsClipped() throws {
        let codec = GroupCodec(scheme: try #require(try QuantScheme.parse("int4:g16:sym")))
        let x: [Float] = [1.0, 0.13, 0.5, -0.14, -1.17, -0.56, -0.49, -0.06, 0.39, -0.55, 0.54, 0.12, -0.18, -0.55, 0.89, 0.03]
        var scratch = [UInt8](repeating: 0, count: 16)
        let got = MSEClip.searchParameters(x, count: 16, codec: codec, scratch: &scratch)
        #expect(abs(got.scale - 0.14508) < 1e-6)
        #expect(got == Self.reference(x, codec: codec).parameters)
        let errors = Self.reference(x, codec: codec).errors
        #expect(abs(errors[0] - 0.015838) < 1e-5 && abs(errors[7] - 0.005962) < 1e-5)
    }
}
