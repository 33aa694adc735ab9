#if canImport(Glibc)
import Glibc
#endif

/// RTN with a clipping search (the GPTQ reference's `find_params(mse=True)`, llmc's `calib_algo: mse`):
/// for each group, the range is shrunk by p = 1 − i/100 for i = 0…79 (the asymmetric minimum and maximum
/// both, or the absolute maximum), and the p whose RTN reconstruction has the least Σ|w − ŵ|^2.4 is
/// kept (the largest p on ties). Data-free; 80 quantizations per group, integer grids fused with the error
/// sum eight values at a time.
public enum MSEClip {
    /// Grid steps (the shrink factor is 1 − i/`grid`).
    public static let grid = 100
    /// How far the range may shrink (i < `maxShrink`·`grid`).
    public static let maxShrink: Float = 0.8
    /// The error norm.
    public static let norm: Float = 2.4

    /// The chosen parameters of one group of `count` values; `scratch` holds `count` bytes.
    public static func searchParameters(_ x: UnsafePointer<Float>, count: Int, codec: GroupCodec,
                                        scratch: UnsafeMutablePointer<UInt8>) -> GroupCodec.Parameters {
        let r = RTN.range(x, count: count)
        var best = codec.parameters(minimum: r.minimum, maximum: r.maximum, absmax: r.absmax)
        var bestError = Float.infinity
        let integer: Bool
        if case .int = codec.scheme.format { integer = true } else { integer = false }
        let table = CodeTable.table(for: codec.scheme.codeDType, hasZeroPoint: !codec.scheme.symmetric)
        return withUnsafeTemporaryAllocation(of: Float.self, capacity: integer ? 0 : count) { values in
            table.withUnsafeBufferPointer { t in
                for i in 0..<Int(maxShrink * Float(grid)) {
                    let p = 1 - Float(i) / Float(grid)
                    let candidate = codec.parameters(minimum: p * r.minimum, maximum: p * r.maximum, absmax: p * r.absmax)
                    let e: Float
                    if integer {
                        e = integerError(x, count: count, candidate, codec: codec)
                    } else {
                        codec.encode(x, count: count, candidate, into: scratch)
                        for j in 0..<count { values[j] = (t[Int(scratch[j])] - candidate.zero) * candidate.scale }
                        e = error(values.baseAddress!, x, count: count)
                    }
                    if e < bestError {
                        bestError = e
                        best = candidate
                    }
                }
                return best
            }
        }
    }

    /// Σ |ŵ − w|^`norm` of an integer grid's round trip, `ŵ = (clamp(round(w/s + z)) − z)·s`: the values
    /// `GroupCodec.encode` then `decode` give, computed eight at a time without storing codes.
    @inline(__always)
    static func integerError(_ x: UnsafePointer<Float>, count: Int, _ p: GroupCodec.Parameters, codec: GroupCodec) -> Float {
        let magic: Float = 12_582_912   // 1.5·2^23: adding and subtracting it rounds ties to even
        let s = SIMD8<Float>(repeating: p.scale), z = SIMD8<Float>(repeating: p.zero)
        let lo = SIMD8<Float>(repeating: codec.minCode), hi = SIMD8<Float>(repeating: codec.maxCode)
        var sum = SIMD8<Float>()
        var i = 0
        let raw = UnsafeRawPointer(x)
        while i + 8 <= count {
            let v = raw.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self)
            var q = v / s + z
            q = q.replacing(with: lo, where: q .< lo).replacing(with: hi, where: q .> hi)
            q = (q + SIMD8(repeating: magic)) - SIMD8(repeating: magic)
            sum += power((q - z) * s - v)
            i += 8
        }
        var e = sum.sum()
        while i < count {
            var q = x[i] / p.scale + p.zero
            q = q < codec.minCode ? codec.minCode : (q > codec.maxCode ? codec.maxCode : q)
            q = (q + magic) - magic
            e += power(SIMD8(repeating: (q - p.zero) * p.scale - x[i]))[0]
            i += 1
        }
        return e
    }

    /// Σ |a − b|^`norm` over `count` values.
    @inline(__always)
    static func error(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) -> Float {
        var sum = SIMD8<Float>()
        var i = 0
        let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b)
        while i + 8 <= count {
            sum += power(ra.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self)
                         - rb.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self))
            i += 8
        }
        var e = sum.sum()
        while i < count {
            e += power(SIMD8(repeating: a[i] - b[i]))[0]
            i += 1
        }
        return e
    }

    /// |d|^2.4 (`norm`) lane by lane, as d² · exp(0.4 · ln|d|) with ln from the exponent bits and an atanh
    /// series on the mantissa in [√½, √2) (terms to t⁹, |t| ≤ 0.172) and exp from 2^n times a degree-7 Taylor
    /// polynomial on |r| ≤ ln2/2: within 1.3e-6 relative of `powf` over 1e-12…1e6 (the rounding of ln|d|
    /// for large exponents), far below the differences the search compares, and many times faster. |d| below
    /// 1e-18 counts 0 (its power underflows in `Float` anyway).
    /// Integer ↔ float moves go through the bits (magic constants), not through SIMD conversions, which Swift
    /// does lane by lane.
    @inline(__always)
    static func power(_ d: SIMD8<Float>) -> SIMD8<Float> {
        typealias V = SIMD8<Float>
        let bits = unsafeBitCast(d, to: SIMD8<UInt32>.self) & 0x7FFF_FFFF
        let a = unsafeBitCast(bits, to: V.self)
        // The biased exponent E as a float: the bits of 2^23 + E, minus 2^23.
        var e = unsafeBitCast((bits &>> 23) | 0x4B00_0000, to: V.self) - (8_388_608 + 127)
        var m = unsafeBitCast((bits & 0x007F_FFFF) | 0x3F80_0000, to: V.self)
        let high = m .> 1.41421356
        m = m.replacing(with: m * 0.5, where: high)
        e = e.replacing(with: e + 1, where: high)
        // ln m = 2·atanh(t) = 2t·(1 + t²/3 + t⁴/5 + t⁶/7), t = (m − 1)/(m + 1).
        let t = (m - 1) / (m + 1), t2 = t * t
        var series = t2 * (1.0 / 7) + 1.0 / 5
        series = series * t2 + 1.0 / 3
        series = series * t2 + 1
        let y = (e * 0.693147181 + 2 * t * series) * (norm - 2)
        // exp(y) = 2^n · exp(r): n = round(y / ln 2) through 1.5·2^23 (the low bits of the sum are n in two's
        // complement), r = y − n·ln 2, exp(r) to r⁶/6!.
        let magic: Float = 12_582_912
        let shifted = y * 1.44269504 + magic
        let r = y - (shifted - magic) * 0.693147181
        var p = r * (1.0 / 720) + 1.0 / 120
        p = p * r + 1.0 / 24
        p = p * r + 1.0 / 6
        p = p * r + 0.5
        p = p * r + 1
        p = p * r + 1
        let scale = unsafeBitCast((unsafeBitCast(shifted, to: SIMD8<UInt32>.self) &- magic.bitPattern &+ 127) &<< 23, to: V.self)
        let result = a * a * p * scale
        return result.replacing(with: 0, where: a .< 1e-18)
    }

    /// Quantizes one row of `k` values group by group (see `RTN.quantizeRow`; no per-tensor form).
    /// `scratch` holds `groupLength` bytes.
    public static func quantizeRow(_ x: UnsafePointer<Float>, k: Int, groupLength: Int, codec: GroupCodec,
                                   codes: UnsafeMutablePointer<UInt8>, parameters: UnsafeMutablePointer<GroupCodec.Parameters>,
                                   scratch: UnsafeMutablePointer<UInt8>) {
        var g = 0
        var start = 0
        while start < k {
            let p = searchParameters(x + start, count: groupLength, codec: codec, scratch: scratch)
            parameters[g] = p
            codec.encode(x + start, count: groupLength, p, into: codes + start)
            start += groupLength
            g += 1
        }
    }
}
