/// The weight number formats qquant writes, in one table (like llama.cpp's type table): the name used on
/// the command line and in SCHEME strings, how codes and scales are stored in a qkit checkpoint, and the
/// group structure each format fixes.
///
/// Conventions (see `man 5 qkit`): codes are unpacked, one per element, `[N, K]`; scales are `[Ns, K/G]`
/// with `Ns = N` (per channel or per group) or `1` (per tensor). Rounding is to nearest, ties to even,
/// everywhere.
public enum QuantFormat: Sendable, Hashable, CustomStringConvertible {
    /// b-bit integers, 2 ≤ b ≤ 8. Symmetric: I8 codes in [−2^(b−1), 2^(b−1)−1], scale = 2·absmax/(2^b−1)
    /// (GPTQ reference, compressed-tensors). Asymmetric: U8 codes in [0, 2^b−1] with a U8 zero point.
    case int(bits: Int)
    /// FP8 E4M3 (e4m3fn, max 448) elements with an F32 scale = absmax/448.
    case fp8E4M3
    /// FP8 E5M2 (max 57344) elements with an F32 scale = absmax/57344.
    case fp8E5M2
    /// FP4 E2M1 elements (U8 codes 0…15, sign in bit 3) with an F32 scale = absmax/6.
    case fp4
    /// NVFP4: E2M1 codes, group 16, F8_E4M3 group scales and an F32 global scale that divides
    /// (compressed-tensors: global = 448·6/amax(tensor), scale = fp8(global·amax(group)/6)).
    case nvfp4
    /// OCP MXFP4: E2M1 codes, group 32, E8M0 shared exponents 2^(floor(log2 amax) − 2).
    case mxfp4
    /// OCP MXFP8: E4M3 codes, group 32, E8M0 shared exponents 2^(floor(log2 amax) − 8).
    case mxfp8

    /// One row of the format table.
    public struct Info: Sendable {
        /// The name in SCHEME strings and `--format`.
        public var name: String
        /// Bits of one element's information (the stored code is a whole byte).
        public var elementBits: Int
        /// The only group size the format allows, if it fixes one.
        public var fixedGroup: Int?
        /// The default granularity when none is given.
        public var defaultGranularity: QuantGranularity
        /// Element type of `P.weight_scale`.
        public var scaleDType: DType
        /// Whether asymmetric (zero point) quantization exists for the format.
        public var allowsAsymmetric: Bool
        /// One line for `--help` and the man page.
        public var summary: String
    }

    /// Every format, in table order (INT2…INT8 first).
    public static let all: [QuantFormat] = (2...8).map { .int(bits: $0) } + [.fp8E4M3, .fp8E5M2, .fp4, .nvfp4, .mxfp4, .mxfp8]

    /// The table row of this format.
    public var info: Info {
        switch self {
        case .int(let b):
            Info(name: "int\(b)", elementBits: b, fixedGroup: nil, defaultGranularity: .group(128), scaleDType: .f32,
                 allowsAsymmetric: true,
                 summary: "\(b)-bit integers; sym: I8 codes, scale 2·absmax/\((1 << b) - 1); asym: U8 codes + U8 zero point")
        case .fp8E4M3:
            Info(name: "fp8", elementBits: 8, fixedGroup: nil, defaultGranularity: .channel, scaleDType: .f32,
                 allowsAsymmetric: false, summary: "FP8 E4M3 (max 448) codes, F32 scale absmax/448 (alias fp8e4m3)")
        case .fp8E5M2:
            Info(name: "fp8e5m2", elementBits: 8, fixedGroup: nil, defaultGranularity: .channel, scaleDType: .f32,
                 allowsAsymmetric: false, summary: "FP8 E5M2 (max 57344) codes, F32 scale absmax/57344")
        case .fp4:
            Info(name: "fp4", elementBits: 4, fixedGroup: nil, defaultGranularity: .group(32), scaleDType: .f32,
                 allowsAsymmetric: false, summary: "FP4 E2M1 codes (U8), F32 scale absmax/6")
        case .nvfp4:
            Info(name: "nvfp4", elementBits: 4, fixedGroup: 16, defaultGranularity: .group(16), scaleDType: .f8E4M3,
                 allowsAsymmetric: false, summary: "NVFP4: E2M1 codes, group 16, F8_E4M3 scales, F32 global scale (divisor)")
        case .mxfp4:
            Info(name: "mxfp4", elementBits: 4, fixedGroup: 32, defaultGranularity: .group(32), scaleDType: .f8E8M0,
                 allowsAsymmetric: false, summary: "OCP MXFP4: E2M1 codes, group 32, E8M0 shared exponent")
        case .mxfp8:
            Info(name: "mxfp8", elementBits: 8, fixedGroup: 32, defaultGranularity: .group(32), scaleDType: .f8E8M0,
                 allowsAsymmetric: false, summary: "OCP MXFP8: E4M3 codes, group 32, E8M0 shared exponent")
        }
    }

    public var description: String { info.name }

    /// The format named `name` (case-insensitive; `fp8e4m3` is an alias of `fp8`), or `nil`.
    public init?(name: String) {
        let n = name.lowercased()
        if n == "fp8e4m3" || n == "fp8_e4m3" { self = .fp8E4M3; return }
        if n == "fp8_e5m2" { self = .fp8E5M2; return }
        guard let f = QuantFormat.all.first(where: { $0.info.name == n }) else { return nil }
        self = f
    }

    /// Whether elements are floating-point numbers (every format but INT).
    public var isFloat: Bool { if case .int = self { false } else { true } }

    /// The element minifloat of a float format.
    public var elementFormat: MinifloatFormat? {
        switch self {
        case .int: nil
        case .fp8E4M3, .mxfp8: .e4m3fn
        case .fp8E5M2: .e5m2
        case .fp4, .nvfp4, .mxfp4: .e2m1
        }
    }

    /// Element type of `P.weight_q`.
    public func codeDType(symmetric: Bool) -> DType {
        switch self {
        case .int: symmetric ? .i8 : .u8
        case .fp8E4M3, .mxfp8: .f8E4M3
        case .fp8E5M2: .f8E5M2
        case .fp4, .nvfp4, .mxfp4: .u8
        }
    }
}

/// How many elements share one scale.
public enum QuantGranularity: Sendable, Hashable, CustomStringConvertible {
    /// One scale for the whole tensor.
    case tensor
    /// One scale per output row (G = K).
    case channel
    /// One scale per G contiguous elements of a row (along K, the input dimension).
    case group(Int)

    public var description: String {
        switch self {
        case .tensor: "tensor"
        case .channel: "channel"
        case .group(let g): "g\(g)"
        }
    }

    /// The group length along K for a row of `k` elements (`k` for tensor and channel).
    public func groupLength(k: Int) -> Int {
        if case .group(let g) = self { return g }
        return k
    }
}

/// Which data-free algorithm chooses the codes and scales.
public enum QuantAlgorithm: String, Sendable, Hashable, CaseIterable {
    /// Round to nearest with the full range (absmax or min/max).
    case rtn
    /// Round to nearest with a clipping search: the range shrunk by p = 1 − i/100, i < 80, keeping the
    /// p of least Σ|w − ŵ|^2.4 per group (GPTQ reference / llmc `mse` range).
    case mse
    /// Half-quadratic quantization (HQQ): asymmetric, float zero points, optimized by a proximal solver.
    case hqq
}
