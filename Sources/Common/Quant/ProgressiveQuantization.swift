/// QServe's progressive group quantization (arXiv 2405.04532 §4.1; ../shared/specs/algorithms.md §4.8): a
/// two-level grid whose 4-bit codes dequantize into int8 with integer arithmetic, so a W4A8 GEMM runs on int8.
///
/// - Level 0, per output row `r`: a float scale `s0[r] = absmax(W[r]) / 119` maps the row into the *protective*
///   int8 range [−119, 119] (the intermediate `W[r]/s0[r]`).
/// - Level 1, per group of `G` intermediate values with range [m, M] (widened to contain 0, as every asymmetric
///   INT in qkit): an integer scale `s1 = clamp(round((M − m)/(2^b − 1)), 1, …)` (at most 16 for 4 bits, stored
///   as I8) and an integer zero point `z = round(−m/s1)`, clamped into [0, 2^b − 1] and further into
///   [2^b − 1 − ⌊127/s1⌋, ⌊128/s1⌋] so that *every* grid point `(q − z)·s1` lies in [−128, 127] (the protective
///   range alone bounds the values that round to nearest, |·| ≤ 119 + s1/2 ≤ 127; the zero clamp bounds the
///   whole grid, which GPTQ's error feedback can reach).
///
/// Dequantization (`man 5 qkit`): `W[r, k] = ((q − z)·s1) · s0[r]`, the parenthesized product an exact integer
/// in [−128, 127]. Codes are rounded to nearest (ties to even) directly on that final grid, which is the
/// nearest of its points (no separate rounding to the int8 intermediate).
///
/// Stored as `P.weight_q` U8 codes, `P.weight_scale` I8 `[N, K/G]` (s1), `P.weight_zero_point` U8 `[N, K/G]`
/// (z) and `P.weight_scale_2` F32 `[N, 1]` (s0); the scheme string carries `:prog` (`int4:g128:asym:prog`).
public enum ProgressiveQuantization {
    /// The bound of the int8 intermediate (QServe's protective range).
    public static let protectiveRange: Float = 119

    /// The level-0 scale of a row: `absmax / 119` (1 for an all-zero row).
    public static func rowScale(_ row: UnsafePointer<Float>, count: Int) -> Float {
        let a = RTN.range(row, count: count).absmax
        let s = a / protectiveRange
        return s > 0 && s.isFinite ? s : 1
    }

    /// The parameters of one group whose values lie in [`minimum`, `maximum`], on a row of level-0 scale `s0`:
    /// `scale` = s1·s0 (what values are divided by), `storedScale` = s1 (an integer), `zero` = z.
    @inline(__always)
    public static func groupParameters(minimum: Float, maximum: Float, rowScale s0: Float, bits: Int) -> GroupCodec.Parameters {
        let levels = Float((1 << bits) - 1)
        let lo = min(minimum / s0, 0), hi = max(maximum / s0, 0)
        let s1 = min(max(((hi - lo) / levels).rounded(.toNearestOrEven), 1), 127)
        var z = min(max((-lo / s1).rounded(.toNearestOrEven), 0), levels)
        // Every grid point (q − z)·s1, q ∈ [0, levels], within [−128, 127].
        let zLow = max(0, levels - (127 / s1).rounded(.down)), zHigh = min(levels, (128 / s1).rounded(.down))
        z = min(max(z, zLow), zHigh)
        return GroupCodec.Parameters(scale: s1 * s0, storedScale: UInt32(s1), zero: z)
    }

    /// The parameters of every group of the `n × k` weight `w` (row-major `n · k/groupLength`), and the
    /// level-0 scale of every row.
    public static func parameters(_ w: UnsafePointer<Float>, n: Int, k: Int, groupLength: Int, bits: Int,
                                  into parameters: UnsafeMutablePointer<GroupCodec.Parameters>) -> [Float] {
        let gpr = k / groupLength
        var rowScales = [Float](repeating: 1, count: n)
        rowScales.withUnsafeMutableBufferPointer { rb in
            nonisolated(unsafe) let (w, p, s) = (w, parameters, rb.baseAddress!)
            parallelFor((n + 63) / 64) { t in
                for r in (t * 64)..<min(n, (t + 1) * 64) {
                    let row = w + r * k
                    let s0 = rowScale(row, count: k)
                    s[r] = s0
                    for g in 0..<gpr {
                        let range = RTN.range(row + g * groupLength, count: groupLength)
                        p[r * gpr + g] = groupParameters(minimum: range.minimum, maximum: range.maximum, rowScale: s0, bits: bits)
                    }
                }
            }
        }
        return rowScales
    }
}
