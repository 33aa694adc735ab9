#if canImport(Glibc)
import Glibc
#endif

/// RTN with a clipping search (the GPTQ reference's `find_params(mse=True)`, llmc's `calib_algo: mse`):
/// for each group, the range is shrunk by p = 1 − i/100 for i = 0…79 (the asymmetric minimum and maximum
/// both, or the absolute maximum), and the p whose RTN reconstruction has the least Σ|w − ŵ|^2.4 is
/// kept (the largest p on ties). Data-free; 80 quantizations per group.
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
        let table = CodeTable.table(for: codec.scheme.codeDType, hasZeroPoint: !codec.scheme.symmetric)
        var best = codec.parameters(minimum: r.minimum, maximum: r.maximum, absmax: r.absmax)
        var bestError = Float.infinity
        return table.withUnsafeBufferPointer { t in
            for i in 0..<Int(maxShrink * Float(grid)) {
                let p = 1 - Float(i) / Float(grid)
                let candidate = codec.parameters(minimum: p * r.minimum, maximum: p * r.maximum, absmax: p * r.absmax)
                codec.encode(x, count: count, candidate, into: scratch)
                var e: Float = 0
                for j in 0..<count {
                    let d = abs((t[Int(scratch[j])] - candidate.zero) * candidate.scale - x[j])
                    if d > 0 { e += powf(d, norm) }
                }
                if e < bestError {
                    bestError = e
                    best = candidate
                }
            }
            return best
        }
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
