import CKernels

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
        var (mn, mx) = lanes(lo, hi)
        while i < count {
            let v = x[i]
            if v < mn { mn = v }
            if v > mx { mx = v }
            i += 1
        }
        if count == 0 { return (0, 0, 0) }
        return (mn, mx, max(abs(mn), abs(mx)))
    }

    /// The least lane of `lo` and the greatest of `hi`, written out: the generic SIMD `min()`/`max()` are not
    /// inlined and cost more than the loops that call this.
    @inline(__always)
    static func lanes(_ lo: SIMD8<Float>, _ hi: SIMD8<Float>) -> (Float, Float) {
        var mn = lo[0], mx = hi[0]
        for j in 1..<8 {
            mn = Swift.min(mn, lo[j])
            mx = Swift.max(mx, hi[j])
        }
        return (mn, mx)
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

    /// `quantizeRow` for an integer format on a row read straight from the checkpoint in its stored type
    /// (`kind`: `TensorEncoding.kernelKind`), with C kernels: the groups' ranges in one pass, the parameters
    /// here, the codes in a second pass over the row (in L1/L2 by then). The codes and parameters equal
    /// `quantizeRow`'s on the widened values: the encoder divides by reciprocal and one FMA correction, which
    /// gives exactly x/s here (integer zero points, scales from the group's own range).
    /// Requires `groupLength % 8 == 0`, per-group or per-channel parameters, and `scratch` of `4 * k / groupLength`
    /// floats. `ahead`, the row to be quantized next, is prefetched while this one is encoded (never read).
    @inline(__always)
    public static func quantizeStoredRow(_ src: UnsafeRawPointer, kind: Int32, k: Int, groupLength: Int, codec: GroupCodec,
                                         scratch: UnsafeMutablePointer<Float>, codes: UnsafeMutablePointer<UInt8>,
                                         parameters: UnsafeMutablePointer<GroupCodec.Parameters>, ahead: UnsafeRawPointer? = nil) {
        let groups = k / groupLength
        let (mins, maxs, scales, zeros) = (scratch, scratch + groups, scratch + 2 * groups, scratch + 3 * groups)
        qkit_group_range(kind, src, k, groupLength, mins, maxs)
        for g in 0..<groups {
            let p = codec.parameters(minimum: mins[g], maximum: maxs[g], absmax: Swift.max(abs(mins[g]), abs(maxs[g])))
            parameters[g] = p
            scales[g] = p.scale
            zeros[g] = p.zero
        }
        qkit_encode_int(kind, src, k, groupLength, scales, zeros, codec.minCode, codec.maxCode, codes, ahead)
    }
}
