/// Round to nearest (RTN): each group's scale comes from its full range — the absolute maximum
/// (symmetric and float formats) or the minimum and maximum with zero included (asymmetric INT) — and
/// every value is rounded to the nearest code. The reference data-free quantizer.
public enum RTN {
    /// The range of `count` values: minimum, maximum, absolute maximum (NaN is ignored).
    @inline(__always)
    public static func range(_ x: UnsafePointer<Float>, count: Int) -> (minimum: Float, maximum: Float, absmax: Float) {
        var lo = SIMD8<Float>(repeating: .infinity), hi = SIMD8<Float>(repeating: -.infinity)
        var i = 0
        let raw = UnsafeRawPointer(x)
        while i + 8 <= count {
            let v = raw.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self)
            lo = lo.replacing(with: v, where: v .< lo)
            hi = hi.replacing(with: v, where: v .> hi)
            i += 8
        }
        var mn = lo.min(), mx = hi.max()
        while i < count {
            let v = x[i]
            if v < mn { mn = v }
            if v > mx { mx = v }
            i += 1
        }
        if count == 0 { return (0, 0, 0) }
        return (mn, mx, max(abs(mn), abs(mx)))
    }

    /// Quantizes one row of `k` values group by group.
    /// - Parameters:
    ///   - fixed: the parameters of a per-tensor scheme (computed once from the whole tensor); `nil` for
    ///     per-channel and per-group schemes, whose parameters are computed here.
    ///   - codes: `k` code bytes.
    ///   - parameters: one entry per group of the row (none written when `fixed` is given).
    @inline(__always)
    public static func quantizeRow(_ x: UnsafePointer<Float>, k: Int, groupLength: Int, codec: GroupCodec,
                                   fixed: GroupCodec.Parameters?, codes: UnsafeMutablePointer<UInt8>,
                                   parameters: UnsafeMutablePointer<GroupCodec.Parameters>) {
        var g = 0
        var start = 0
        while start < k {
            let p: GroupCodec.Parameters
            if let fixed {
                p = fixed
            } else {
                let r = range(x + start, count: groupLength)
                p = codec.parameters(minimum: r.minimum, maximum: r.maximum, absmax: r.absmax)
                parameters[g] = p
            }
            codec.encode(x + start, count: groupLength, p, into: codes + start)
            start += groupLength
            g += 1
        }
    }
}
