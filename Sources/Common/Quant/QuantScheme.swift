/// How one weight is quantized: number format, granularity, symmetry and algorithm.
///
/// Written as a SCHEME string (`--rule REGEX=SCHEME`, `man 1 qquant`):
/// `keep`, or `FORMAT[:OPTION]...` where FORMAT is a name of the format table (`int2`…`int8`, `fp8`,
/// `fp8e5m2`, `fp4`, `nvfp4`, `mxfp4`, `mxfp8`) and each OPTION is one of `gN` (groups of N along K),
/// `ch` or `channel` (one scale per output row), `tensor` (one scale), `sym`, `asym`, `rtn`, `mse`, `hqq`,
/// `prog` (QServe's progressive two-level grid: `ProgressiveQuantization`; INT2–4, asymmetric, groups).
/// Unspecified options take the format's defaults (INT: g128, symmetric, rtn; HQQ: asymmetric).
/// Examples: `int4:g64:asym`, `int8:ch`, `int3:g64:hqq`, `fp8`, `fp8:tensor`, `nvfp4`, `mxfp4`, `int4:g128:asym:prog`.
public struct QuantScheme: Sendable, Hashable, CustomStringConvertible {
    public var format: QuantFormat
    public var granularity: QuantGranularity
    public var symmetric: Bool
    public var algorithm: QuantAlgorithm
    /// QServe's progressive grid: integer (I8) group scales over a per-row F32 scale (`P.weight_scale_2`).
    public var progressive: Bool

    /// A scheme; `validate()` checks that the combination exists.
    public init(format: QuantFormat, granularity: QuantGranularity? = nil, symmetric: Bool? = nil, algorithm: QuantAlgorithm = .rtn,
                progressive: Bool = false) {
        self.format = format
        self.granularity = granularity ?? format.info.defaultGranularity
        self.symmetric = symmetric ?? (algorithm != .hqq && !progressive)
        self.algorithm = algorithm
        self.progressive = progressive
    }

    /// The canonical SCHEME string (parsing it gives this scheme back).
    public var description: String {
        var s = format.info.name + ":" + granularity.description
        if case .int = format { s += symmetric ? ":sym" : ":asym" }
        if algorithm != .rtn { s += ":" + algorithm.rawValue }
        if progressive { s += ":prog" }
        return s
    }

    /// Element type of `P.weight_scale`: the format's, or I8 (integer level-1 scales) when progressive.
    public var scaleDType: DType { progressive ? .i8 : format.info.scaleDType }

    /// Element type of `P.weight_q`.
    public var codeDType: DType { format.codeDType(symmetric: symmetric) }

    /// Element type of `P.weight_zero_point`, or `nil` when there is none.
    public var zeroPointDType: DType? {
        guard !symmetric else { return nil }
        return algorithm == .hqq ? .f32 : .u8
    }

    /// Integer bit width, or the element width of a float format.
    public var bits: Int { format.info.elementBits }

    /// Checks that the format, granularity, symmetry and algorithm go together.
    public func validate() throws(SchemeError) {
        let info = format.info
        if case .int(let b) = format, !(2...8).contains(b) { throw SchemeError("int\(b): integer widths are 2 to 8 bits") }
        if case .group(let g) = granularity, g < 1 { throw SchemeError("group size \(g) must be positive") }
        if let fixed = info.fixedGroup, granularity != .group(fixed) {
            throw SchemeError("\(info.name) uses groups of \(fixed) (g\(fixed)); \(granularity) is not possible")
        }
        if !symmetric, !info.allowsAsymmetric { throw SchemeError("\(info.name) is symmetric only (no zero point)") }
        if progressive {
            guard case .int(let b) = format, b <= 4 else { throw SchemeError("prog (progressive) is for int2 to int4, not \(info.name)") }
            guard !symmetric else { throw SchemeError("prog (progressive) is asymmetric (integer zero points); drop :sym") }
            guard case .group = granularity else { throw SchemeError("prog (progressive) needs groups (per channel: int4:ch:asym)") }
            guard algorithm == .rtn else { throw SchemeError("prog (progressive) rounds to nearest; \(algorithm.rawValue) does not apply") }
        }
        switch algorithm {
        case .rtn: break
        case .mse:
            if format == .nvfp4 || format == .mxfp4 || format == .mxfp8 {
                throw SchemeError("the mse clipping search works on int, fp8 and fp4 (F32 scales), not \(info.name)")
            }
            if granularity == .tensor { throw SchemeError("the mse clipping search needs groups or channels, not a tensor-wide scale") }
        case .hqq:
            guard case .int = format else { throw SchemeError("hqq quantizes to integers only, not \(info.name)") }
            if symmetric { throw SchemeError("hqq is asymmetric (float zero points); drop :sym") }
            if granularity == .tensor { throw SchemeError("hqq needs groups or channels, not a tensor-wide scale") }
        }
    }

    /// Parses a SCHEME string; `nil` means `keep` (leave the tensor as it is).
    public static func parse(_ text: String) throws(SchemeError) -> QuantScheme? {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map { String($0).lowercased() }
        guard let head = parts.first, !head.isEmpty else { throw SchemeError("empty scheme") }
        if head == "keep" {
            guard parts.count == 1 else { throw SchemeError("'keep' takes no options") }
            return nil
        }
        guard let format = QuantFormat(name: head) else {
            throw SchemeError("unknown format '\(head)' (known: keep, \(QuantFormat.all.map(\.info.name).joined(separator: ", ")))")
        }
        var granularity: QuantGranularity?
        var symmetric: Bool?
        var algorithm: QuantAlgorithm?
        var progressive: Bool?
        func once<T>(_ slot: inout T?, _ value: T, _ what: String) throws(SchemeError) {
            guard slot == nil else { throw SchemeError("'\(text)': \(what) given twice") }
            slot = value
        }
        for p in parts.dropFirst() {
            switch p {
            case "": throw SchemeError("'\(text)': empty option")
            case "ch", "channel": try once(&granularity, .channel, "granularity")
            case "tensor": try once(&granularity, .tensor, "granularity")
            case "sym": try once(&symmetric, true, "symmetry")
            case "asym": try once(&symmetric, false, "symmetry")
            case "prog", "progressive": try once(&progressive, true, "prog")
            default:
                if let a = QuantAlgorithm(rawValue: p) {
                    try once(&algorithm, a, "algorithm")
                } else if p.first == "g", let g = Int(p.dropFirst()), p.dropFirst().allSatisfy(\.isASCIIDigit) {
                    guard g > 0 else { throw SchemeError("'\(text)': group size must be positive") }
                    try once(&granularity, .group(g), "granularity")
                } else {
                    throw SchemeError("'\(text)': unknown option '\(p)' (gN, ch, tensor, sym, asym, rtn, mse, hqq, prog)")
                }
            }
        }
        let scheme = QuantScheme(format: format, granularity: granularity, symmetric: symmetric, algorithm: algorithm ?? .rtn,
                                 progressive: progressive ?? false)
        try scheme.validate()
        return scheme
    }

    /// Checks the scheme against a weight of `k` input columns: the group must divide K.
    public func check(tensor name: String, k: Int) throws(SchemeError) {
        if case .group(let g) = granularity, k % g != 0 {
            let divisors = [256, 128, 64, 32, 16].filter { k % $0 == 0 && $0 != g }
            let hint = divisors.isEmpty ? "use :ch" : "try g\(divisors[0]) or :ch"
            throw SchemeError("\(name): group \(g) does not divide K = \(k) (\(hint))")
        }
    }

    /// Stored bits per weight for a `[n, k]` weight: codes (information bits), scales, zero points, global scale,
    /// progressive per-row scales.
    public func bitsPerWeight(n: Int, k: Int) -> Double {
        let scales = Double(scaleCount(n: n, k: k))
        var bits = Double(format.info.elementBits) * Double(n * k) + scales * Double(scaleDType.bitSize)
        if let z = zeroPointDType { bits += scales * (z == .u8 ? Double(format.info.elementBits) : 32) }
        if format == .nvfp4 { bits += 32 }
        if progressive { bits += 32 * Double(n) }
        return bits / Double(max(1, n * k))
    }

    /// Number of scales of a `[n, k]` weight.
    public func scaleCount(n: Int, k: Int) -> Int { scaleShape(n: n, k: k).reduce(1, *) }

    /// Shape of `P.weight_scale` (and of `P.weight_zero_point`) for a `[n, k]` weight.
    public func scaleShape(n: Int, k: Int) -> [Int] {
        switch granularity {
        case .tensor: [1, 1]
        case .channel: [n, 1]
        case .group(let g): [n, k / g]
        }
    }
}

/// A scheme string or rule that cannot be used.
public struct SchemeError: QKitError, Equatable {
    public var message: String
    public var exitStatus: ExitStatus
    public init(_ message: String, exitStatus: ExitStatus = .usage) {
        self.message = message
        self.exitStatus = exitStatus
    }
    public var description: String { message }
}

extension Character {
    var isASCIIDigit: Bool { isASCII && isNumber }
}
