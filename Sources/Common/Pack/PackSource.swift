/// The shape of one quantized linear of a pack source, known before any data is read.
public struct LinearPlan: Sendable {
    public var prefix: String
    public var scheme: QuantScheme
    public var n: Int, k: Int
    /// Scale columns per row, and scale rows (1 for a tensor-wide scale, else N).
    public var groups: Int, scaleRows: Int
    /// Whether the source has an act-order `g_idx`.
    public var hasGroupIndex: Bool
    /// Parts no backend of this file packs (second-level scale, smoothing, low-rank branch, static input scale).
    public var unsupportedParts: [String]
}

/// The source of a pack: a qkit checkpoint, or a packed checkpoint of any layout qpack reads (converted
/// without requantizing). Its quantized linears are planned up front and read in canonical form one at a
/// time; every other tensor passes through unchanged.
public final class PackSource {
    public let checkpoint: Checkpoint
    /// Quantized linears in natural name order.
    public let linears: [LinearPlan]
    /// Names of the tensors that make up the quantized linears (not copied), each with its linear's prefix.
    public let owners: [String: String]
    /// The packed layout read, when the source is not a qkit checkpoint.
    public let packed: (any PackedWeightSource)?

    /// Names of the tensors that make up the quantized linears (not copied).
    public let consumed: Set<String>

    /// The element type the source stores a linear's scales in (F32 for qkit).
    public func scaleDType(of prefix: String) -> DType { packed?.scaleDType(of: prefix) ?? .f32 }

    /// The qkit tensor suffixes of a quantized linear.
    public static let parts = ["weight_q", "weight_scale", "weight_zero_point", "weight_scale_2", "weight_global_scale", "g_idx",
                        "smooth", "lora_down", "lora_up", "input_scale"]

    /// Opens a qkit checkpoint (its tensors are checked by `QKitWeights`).
    public init(_ ck: Checkpoint) throws {
        checkpoint = ck
        let weights = try QKitWeights(ck)
        var plans: [LinearPlan] = []
        var owners: [String: String] = [:]
        for name in weights.quantizedWeights {
            let p = String(name.dropLast(".weight".count))
            guard let scheme = weights.modules[p] else {
                throw PackError.malformed(path: ck.path, what: "\(p): no scheme recorded in quantization_config.modules")
            }
            let q = ck[p + ".weight_q"]!, s = ck[p + ".weight_scale"]!
            var extra: [String] = []
            for part in PackSource.parts {
                guard ck[p + "." + part] != nil else { continue }
                owners[p + "." + part] = p
                if ["weight_scale_2", "smooth", "lora_down", "lora_up", "input_scale"].contains(part) { extra.append(part) }
            }
            plans.append(LinearPlan(prefix: p, scheme: scheme, n: q.shape[0], k: q.shape[1], groups: s.shape[1], scaleRows: s.shape[0],
                                    hasGroupIndex: ck[p + ".g_idx"] != nil, unsupportedParts: extra))
        }
        linears = plans
        self.owners = owners
        consumed = Set(owners.keys)
        packed = nil
    }

    /// Opens a packed checkpoint (AWQ, GPTQ, compressed-tensors, TinyChat, FP8 block…) through its reader:
    /// each linear is planned from its first two rows unpacked.
    public init(packed reader: any PackedWeightSource, checkpoint ck: Checkpoint) throws {
        checkpoint = ck
        packed = reader
        var plans: [LinearPlan] = []
        var owners: [String: String] = [:]
        for p in reader.packedPrefixes {
            let shape = try reader.shape(of: p + ".weight")
            let (n, k) = (shape[0], shape[1])
            let head = try reader.unpack(p, rows: 0..<min(2, n))
            plans.append(LinearPlan(prefix: p, scheme: head.scheme, n: n, k: k, groups: head.groups,
                                    scaleRows: head.scaleRows == 1 && n > 1 ? 1 : n, hasGroupIndex: head.groupIndex != nil,
                                    unsupportedParts: []))
            for t in reader.tensorNames(of: p) { owners[t] = p }
        }
        linears = plans
        self.owners = owners
        consumed = Set(owners.keys)
    }

    /// Reads one planned linear in canonical form (`QuantizedLinear`).
    public func linear(_ plan: LinearPlan) throws -> QuantizedLinear {
        if let packed { return try packed.unpack(plan.prefix, rows: 0..<plan.n) }
        let ck = checkpoint, p = plan.prefix
        let q = ck[p + ".weight_q"]!, s = ck[p + ".weight_scale"]!
        let raw = ck.data(q)
        let bits = plan.scheme.integerBits
        // Read in place by the packer (I8 codes q → q + 2^(b−1)); the pages are let go when the codes are.
        let bias: UInt8 = plan.scheme.symmetric && bits > 0 ? UInt8(1 << (bits - 1)) : 0
        let codes = raw.isEmpty ? LinearCodes([])
            : LinearCodes(mapped: raw.baseAddress!.assumingMemoryBound(to: UInt8.self), count: plan.n * plan.k, bias: bias,
                          file: ck.files[q.fileIndex], range: q.fileRange)
        let scales = try readFloats(ck, s)
        var zeros: [UInt8]?
        if bits > 0 {
            if let z = ck[p + ".weight_zero_point"] {
                guard case .dtype(.u8) = z.encoding else {
                    throw PackError.unsupported(path: ck.path, backend: "an integer layout", what: "\(p): float zero points (HQQ); requantize with rtn or mse")
                }
                zeros = Array(ck.data(z))
            } else {
                zeros = [UInt8](repeating: UInt8(1 << (bits - 1)), count: scales.count)
            }
        }
        var groupIndex: [Int32]?
        if let g = ck[p + ".g_idx"] {
            let raw = ck.data(g)
            groupIndex = (0..<plan.k).map { raw.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self) }
        }
        var global: Float = 1
        if let g = ck[p + ".weight_global_scale"] { global = ck.data(g).loadUnaligned(as: Float.self) }
        var linear = QuantizedLinear(prefix: p, scheme: plan.scheme, rows: 0..<plan.n, k: plan.k, codes: codes, scales: scales,
                                     scaleRows: plan.scaleRows, groups: plan.groups, zeros: zeros, groupIndex: groupIndex, globalScale: global)
        if let t = ck[p + ".input_scale"] { linear.inputScale = try readFloats(ck, t).first }
        return linear
    }
}

extension QuantScheme {
    /// Integer bit width, or 0 for float formats.
    var integerBits: Int { if case .int(let b) = format { b } else { 0 } }
}
