/// What LightLLM's offline loaders read (formats.md §2; ModelTC/LightLLM `lightllm/common/quantization`):
/// LightLLM maps only two `quant_method`s to pre-quantized weights, so this layout writes one of them.
///
/// - INT4 (W4A16) → AutoAWQ GEMM, `quant_method: "awq"` (the `vllm-awq` layout byte for byte: LightLLM reads
///   `qweight/qzeros/scales` and the `group_size`/`bits` keys AutoAWQ writes).
/// - FP8 E4M3 with one tensor-wide scale (W8A8) → DeepSeek-V3 style block FP8, `quant_method: "fp8"`,
///   `weight_block_size: [128, 128]`: `weight` F8_E4M3 `[N, K]` and `weight_scale_inv` F32
///   `[⌈N/128⌉, ⌈K/128⌉]` (a multiplier: `W = fp8 · scale_inv` of the block), every block carrying the tensor's
///   scale. A block-scaled source read back (a LightLLM or DeepSeek FP8 checkpoint) keeps its block scales.
///
/// Refused: everything else LightLLM only quantizes online at load time (int8 W8A8, per-channel FP8, other
/// bit widths), and INT4 beside FP8 (one `quant_method` per model).
public struct LightLLMLayout: PackLayout {
    public var name: String { "lightllm" }
    public var defaultScheme: QuantScheme { QuantScheme(format: .int(bits: 4), granularity: .group(128), symmetric: false) }
    /// The FP8 block edge LightLLM's `FP8w8a8B128QuantizationMethod` reads.
    public static let block = 128

    public init() {}

    public func check(_ plans: [LinearPlan], source: String) throws {
        func refuse(_ what: String) -> PackError { PackError.unsupported(path: source, backend: name, what: what) }
        let int4 = plans.filter { $0.scheme.format == .int(bits: 4) }
        for p in plans where p.scheme.format != .int(bits: 4) {
            guard p.scheme.format == .fp8E4M3 else {
                throw refuse("\(p.prefix): \(p.scheme) (LightLLM loads pre-quantized int4 AWQ (W4A16) and FP8 block-128 (W8A8) only; it quantizes others online)")
            }
            let blockScaled = p.scheme.granularity == .group(Self.block) && p.k % Self.block == 0
            guard p.scheme.granularity == .tensor || blockScaled else {
                throw refuse("\(p.prefix): \(p.scheme.granularity) FP8 scales (LightLLM reads 128×128 block scales: quantize with fp8:tensor)")
            }
            guard !p.hasGroupIndex, p.unsupportedParts.isEmpty else { throw refuse("\(p.prefix): \(p.unsupportedParts.joined(separator: ", "))") }
        }
        if !int4.isEmpty, int4.count != plans.count { throw refuse("int4 linears beside FP8 ones (one quant_method per LightLLM model)") }
        try AWQLayout().check(int4, source: source)
    }

    /// `[⌈N/128⌉, ⌈K/128⌉]`.
    static func blockShape(n: Int, k: Int) -> [Int] { [(n + block - 1) / block, (k + block - 1) / block] }

    public func outputs(_ plan: LinearPlan) -> [TensorSpec] {
        if plan.scheme.format == .int(bits: 4) { return AWQLayout().outputs(plan) }
        return [TensorSpec(name: plan.prefix + ".weight", dtype: .f8E4M3, shape: [plan.n, plan.k]),
                TensorSpec(name: plan.prefix + ".weight_scale_inv", dtype: .f32, shape: Self.blockShape(n: plan.n, k: plan.k))]
    }

    public func pack(_ linear: QuantizedLinear, sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        if linear.scheme.format == .int(bits: 4) { return try AWQLayout().pack(linear, sink: sink) }
        let shape = Self.blockShape(n: linear.n, k: linear.k)
        var scales = [Float](repeating: linear.scales[0], count: shape[0] * shape[1])
        if linear.scheme.granularity != .tensor {
            // Block scales read back (per row and group of 128 columns): every row of a block must share them.
            for r in 0..<linear.n {
                for j in 0..<linear.groups {
                    let s = linear.scales[r * linear.groups + j]
                    if r % Self.block == 0 {
                        scales[(r / Self.block) * shape[1] + j] = s
                    } else if s.bitPattern != scales[(r / Self.block) * shape[1] + j].bitPattern {
                        throw PackError.unsupported(path: linear.prefix, backend: name, what: "row \(r): FP8 scales that differ inside a 128×128 block")
                    }
                }
            }
        }
        try linear.codes.withUnsafeBytes { try sink($0) }
        try scales.withUnsafeBytes { try sink($0) }
    }

    public func quantizationConfig(_ plans: [LinearPlan], floatLinears: [String], config: JSONValue?) -> JSONValue {
        if plans.isEmpty || plans.contains(where: { $0.scheme.format == .int(bits: 4) }) {
            return AWQLayout().quantizationConfig(plans, floatLinears: floatLinears, config: config)
        }
        return .object(JSONObject([
            ("quant_method", "fp8"), ("activation_scheme", "dynamic"), ("fmt", "e4m3"),
            ("weight_block_size", [.int(Self.block), .int(Self.block)]),
        ]))
    }
}

/// A block-FP8 checkpoint (`quant_method: "fp8"` with `weight_block_size`, as LightLLM and DeepSeek-V3 store
/// it) read as a `WeightSource`. A linear whose blocks all share one scale reads as `fp8:tensor`, else as
/// `fp8:gB` with each row carrying its block's scales.
public final class FP8BlockWeights: PackedWeightsBase, PackedWeightSource, @unchecked Sendable {
    let blockRows: Int, blockColumns: Int
    public var layoutName: String { "lightllm" }

    /// Opens and checks every block-scaled linear.
    public init(_ ck: Checkpoint) throws {
        let qc = FormatDetector.quantizationConfig(ck)
        let b = qc?["weight_block_size"]?.arrayValue?.compactMap(\.intValue) ?? []
        blockRows = b.first ?? 0
        blockColumns = b.count == 2 ? b[1] : 0
        super.init(base: ck)
        guard b.count == 2, blockRows > 0, blockColumns > 0 else {
            throw fail("quantization_config.weight_block_size must be two positive integers (e.g. [128, 128])")
        }
        if let fmt = qc?["fmt"]?.stringValue, fmt != "e4m3" { throw fail("quantization_config.fmt '\(fmt)' is not read (e4m3)") }
        for t in ck.tensors where t.name.hasSuffix(".weight_scale_inv") {
            let p = String(t.name.dropLast(".weight_scale_inv".count))
            let w = try tensor(p + ".weight", [.f8E4M3], nil)
            guard w.shape.count == 2 else { throw fail("\(p).weight is not 2-D") }
            let (n, k) = (w.shape[0], w.shape[1])
            _ = try tensor(t.name, [.f32, .bf16, .f16], [(n + blockRows - 1) / blockRows, (k + blockColumns - 1) / blockColumns])
            shapes[p] = (n, k)
        }
    }

    public func scaleDType(of prefix: String) -> DType {
        if case .dtype(let d)? = checkpoint[prefix + ".weight_scale_inv"]?.encoding { return d }
        return .f32
    }

    public func tensorNames(of prefix: String) -> [String] { [prefix + ".weight", prefix + ".weight_scale_inv"] }

    public func unpack(_ prefix: String, rows: Range<Int>) throws -> QuantizedLinear {
        guard let (_, k) = shapes[prefix] else { throw fail("no packed linear \(prefix)") }
        let ck = checkpoint
        let raw = ck.data(ck[prefix + ".weight"]!)
        let codes = Array(raw[(rows.lowerBound * k)..<(rows.upperBound * k)])
        let blocks = try readFloats(ck, ck[prefix + ".weight_scale_inv"]!)
        if let first = blocks.first, blocks.allSatisfy({ $0.bitPattern == first.bitPattern }) {
            return QuantizedLinear(prefix: prefix, scheme: QuantScheme(format: .fp8E4M3, granularity: .tensor), rows: rows, k: k,
                                   codes: codes, scales: [first], scaleRows: 1, groups: 1, zeros: nil)
        }
        guard k % blockColumns == 0 else { throw fail("\(prefix): K = \(k) is not a multiple of the block width \(blockColumns)") }
        let groups = k / blockColumns
        var scales = [Float](repeating: 0, count: rows.count * groups)
        for (i, r) in rows.enumerated() { for j in 0..<groups { scales[i * groups + j] = blocks[(r / blockRows) * groups + j] } }
        return QuantizedLinear(prefix: prefix, scheme: QuantScheme(format: .fp8E4M3, granularity: .group(blockColumns)), rows: rows, k: k,
                               codes: codes, scales: scales, scaleRows: rows.count, groups: groups, zeros: nil)
    }

    public func readFloat32(_ name: String, rows: Range<Int>, into destination: UnsafeMutableBufferPointer<Float>) throws {
        try readPacked(name, rows: rows, into: destination, shapes: shapes, base: base)
    }
}
