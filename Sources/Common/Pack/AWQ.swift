import CKernels

/// AutoAWQ's GEMM layout as vLLM (and LightLLM, MLC) load it: `quant_method: "awq"` (formats.md §1a, §6).
///
/// Per linear `[N, K]` with groups of G along K: `qweight` I32 `[K, N/8]` (4-bit codes packed along N, nibble
/// i of packed column c holding output channel `8c + [0,2,4,6,1,3,5,7][i]`), `qzeros` I32 `[K/G, N/8]` (same
/// packing), `scales` F16 `[K/G, N]`; `W = (q − z)·s` with exact zeros in [0, 15]. A symmetric qkit INT4
/// scheme is written with zero 8 (the same values). Refused: other bit widths, per-channel or per-tensor
/// scales, act-order, N not a multiple of 8, linears of different group sizes.
public struct AWQLayout: PackLayout {
    public var name: String { "vllm-awq" }
    public var defaultScheme: QuantScheme { QuantScheme(format: .int(bits: 4), granularity: .group(128), symmetric: false) }

    /// The AWQ nibble order: nibble i of a word holds element `ORDER[i]` of its 8 columns.
    public static let order = [0, 2, 4, 6, 1, 3, 5, 7]
    /// Where element j of 8 columns sits: nibble `reverseOrder[j]`.
    public static let reverseOrder = [0, 4, 1, 5, 2, 6, 3, 7]

    public init() {}

    public func check(_ plans: [LinearPlan], source: String) throws {
        func refuse(_ what: String) -> PackError { PackError.unsupported(path: source, backend: name, what: what) }
        var group: Int?
        for p in plans {
            guard p.scheme.format == .int(bits: 4) else {
                throw refuse("\(p.prefix): \(p.scheme) (AutoAWQ GEMM holds 4-bit integers only)")
            }
            guard case .group(let g) = p.scheme.granularity, p.scaleRows == p.n else {
                throw refuse("\(p.prefix): \(p.scheme.granularity) scales (AWQ needs groups along K, e.g. :g128)")
            }
            guard !p.hasGroupIndex else { throw refuse("\(p.prefix): act-order (g_idx); use --to vllm-gptq") }
            guard p.unsupportedParts.isEmpty else { throw refuse("\(p.prefix): \(p.unsupportedParts.joined(separator: ", "))") }
            guard p.n % 8 == 0 else { throw refuse("\(p.prefix): N = \(p.n) output features (AWQ packs 8 per word: N % 8 == 0)") }
            if let group, group != g { throw refuse("linears with group sizes \(group) and \(g) (one group_size per AWQ model)") }
            group = g
        }
    }

    public func outputs(_ plan: LinearPlan) -> [TensorSpec] {
        let (n, k, g) = (plan.n, plan.k, plan.groups)
        return [TensorSpec(name: plan.prefix + ".qweight", dtype: .i32, shape: [k, n / 8]),
                TensorSpec(name: plan.prefix + ".qzeros", dtype: .i32, shape: [g, n / 8]),
                TensorSpec(name: plan.prefix + ".scales", dtype: .f16, shape: [g, n])]
    }

    public func pack(_ linear: QuantizedLinear, sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        let (n, k, g) = (linear.n, linear.k, linear.groups)
        try linear.codes.withBiasedBytes { try AWQLayout.packColumns($0, bias: $1, rows: n, columns: k, sink: sink) }
        try linear.zeros!.withUnsafeBufferPointer { try AWQLayout.packColumns($0, bias: 0, rows: n, columns: g, sink: sink) }
        try emitFloats(linear.scalesByGroup, as: .f16, sink)
    }

    /// Packs `[rows, columns]` 4-bit values (each plus `bias`) into the transposed `[columns, rows/8]` AWQ words.
    static func packColumns(_ values: UnsafeBufferPointer<UInt8>, bias: UInt8, rows n: Int, columns k: Int,
                            sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        let words = n / 8
        try BitPacking.emit(k * words, to: sink) { (ob: UnsafeMutableBufferPointer<UInt32>) in
            nonisolated(unsafe) let (v, o) = (values.baseAddress!, ob.baseAddress!)
            // A task: 16 packed columns (128 rows) over all K; each k writes one 64-byte line (C kernel).
            let block = 16
            parallelFor((words + block - 1) / block) { task in
                let c0 = task * block, c1 = min(words, c0 + block)
                qkit_pack_awq(v, k, bias, words, c0, c1, o)
            }
        }
    }

    /// AutoAWQ's `quantization_config` (`AwqConfig.to_transformers_dict`, key order kept).
    public func quantizationConfig(_ plans: [LinearPlan], floatLinears: [String], config: JSONValue?) -> JSONValue {
        let g: Int = if case .group(let g)? = plans.first?.scheme.granularity { g } else { 128 }
        return .object(JSONObject([
            ("quant_method", "awq"), ("zero_point", true), ("group_size", .int(g)), ("bits", 4), ("version", "gemm"),
            ("modules_to_not_convert", floatLinears.isEmpty ? .null : .array(floatLinears.map { .string($0) })),
        ]))
    }
}

/// An AutoAWQ checkpoint (`quant_method: "awq"`, version `gemm` or `gemv`) read as a `WeightSource`:
/// each linear's `qweight`/`qzeros`/`scales` are unpacked and dequantized on read.
public final class AWQWeights: PackedWeightsBase, PackedWeightSource, @unchecked Sendable {
    /// `gemm` or `gemv`.
    public let version: String
    var groupSize: [String: Int] = [:]

    public var layoutName: String { "vllm-awq" }

    /// Opens and checks every packed linear of an AWQ checkpoint.
    public init(_ ck: Checkpoint) throws {
        let qc = FormatDetector.quantizationConfig(ck)
        version = (qc?["version"]?.stringValue ?? "gemm").lowercased()
        var groupSize: [String: Int] = [:]
        super.init(base: ck)
        guard version == "gemm" || version == "gemv" else {
            throw fail("quantization_config.version '\(version)' is not read (gemm or gemv)")
        }
        let bits = qc?["bits"]?.intValue ?? qc?["w_bit"]?.intValue ?? 4
        guard bits == 4 else { throw fail("quantization_config.bits = \(bits): AWQ layouts hold 4-bit codes") }
        if qc?["zero_point"]?.boolValue == false { throw fail("quantization_config.zero_point = false is not read (no qzeros)") }
        let configGroup = qc?["group_size"]?.intValue ?? qc?["q_group_size"]?.intValue
        for t in ck.tensors where t.name.hasSuffix(".qweight") {
            let p = String(t.name.dropLast(".qweight".count))
            guard t.shape.count == 2 else { throw fail("\(t.name) is not 2-D") }
            let qw = try tensor(t.name, [.i32, .u32], nil)
            if version == "gemm" {
                let (k, n) = (qw.shape[0], qw.shape[1] * 8)
                let s = try tensor(p + ".scales", [.f16, .bf16, .f32], nil)
                guard s.shape.count == 2, s.shape[1] == n, s.shape[0] > 0, k % s.shape[0] == 0 else {
                    throw fail("\(p).scales has shape \(s.shape), expected [K/G, \(n)] with K = \(k)")
                }
                let g = k / s.shape[0]
                if let configGroup, configGroup > 0, configGroup != g { throw fail("\(p): group \(g) differs from group_size \(configGroup)") }
                _ = try tensor(p + ".qzeros", [.i32, .u32], [s.shape[0], n / 8])
                shapes[p] = (n, k)
                groupSize[p] = g
            } else {
                guard let g = configGroup, g > 0 else { throw fail("quantization_config.group_size is needed to read GEMV") }
                let (n, k) = (qw.shape[0], qw.shape[1] * 8)
                guard k % g == 0 else { throw fail("\(p): group \(g) does not divide K = \(k)") }
                let z = AWQWeights.zerosWidth(k: k, group: g)
                _ = try tensor(p + ".scales", [.f16, .bf16, .f32], [n, 8 * z])
                _ = try tensor(p + ".qzeros", [.i32, .u32], [n, z])
                shapes[p] = (n, k)
                groupSize[p] = g
            }
        }
        self.groupSize = groupSize
    }

    /// `calculate_zeros_width(K, G)` of AutoAWQ/TinyChat: ⌈(K/G)/8⌉ rounded up to a multiple of 1, 2 or 4 for
    /// G ≥ 128, 64, 32.
    public static func zerosWidth(k: Int, group: Int) -> Int {
        let m = group >= 128 ? 1 : (group == 64 ? 2 : 4)
        let z = (k / group + 7) / 8
        return (z + m - 1) / m * m
    }

    public func scaleDType(of prefix: String) -> DType {
        if case .dtype(let d)? = checkpoint[prefix + ".scales"]?.encoding { return d }
        return .f16
    }

    public func tensorNames(of prefix: String) -> [String] { ["qweight", "qzeros", "scales"].map { prefix + "." + $0 } }

    public func unpack(_ prefix: String, rows: Range<Int>) throws -> QuantizedLinear {
        guard let (n, k) = shapes[prefix], let g = groupSize[prefix] else { throw fail("no packed linear \(prefix)") }
        let groups = k / g
        let ck = checkpoint
        let qw = ck.data(ck[prefix + ".qweight"]!), qz = ck.data(ck[prefix + ".qzeros"]!)
        let scales = try readFloats(ck, ck[prefix + ".scales"]!)
        let m = rows.count
        var codes = [UInt8](repeating: 0, count: m * k)
        var zeros = [UInt8](repeating: 0, count: m * groups)
        var s = [Float](repeating: 0, count: m * groups)
        if version == "gemm" {
            let words = n / 8
            codes.withUnsafeMutableBufferPointer { cb in
                nonisolated(unsafe) let c = cb.baseAddress!
                let base = qw.baseAddress!
                parallelFor((k + 63) / 64) { task in
                    for kk in (task * 64)..<min(k, task * 64 + 64) {
                        for (i, r) in rows.enumerated() {
                            let w = base.loadUnaligned(fromByteOffset: 4 * (kk * words + r / 8), as: UInt32.self)
                            c[i * k + kk] = UInt8((w >> UInt32(4 * AWQLayout.reverseOrder[r % 8])) & 0xF)
                        }
                    }
                }
            }
            for (i, r) in rows.enumerated() {
                for j in 0..<groups {
                    let w = qz.loadUnaligned(fromByteOffset: 4 * (j * words + r / 8), as: UInt32.self)
                    zeros[i * groups + j] = UInt8((w >> UInt32(4 * AWQLayout.reverseOrder[r % 8])) & 0xF)
                    s[i * groups + j] = scales[j * n + r]
                }
            }
        } else {
            let z = AWQWeights.zerosWidth(k: k, group: g)
            for (i, r) in rows.enumerated() {
                let row = UnsafeRawPointer(qw.baseAddress! + r * (k / 2))
                for kk in 0..<k { codes[i * k + kk] = UInt8(BitPacking.field(row, kk, bits: 4)) }
                let zr = UnsafeRawPointer(qz.baseAddress! + r * 4 * z)
                for j in 0..<groups {
                    zeros[i * groups + j] = UInt8(BitPacking.field(zr, j, bits: 4))
                    s[i * groups + j] = scales[r * 8 * z + j]
                }
            }
        }
        return QuantizedLinear(prefix: prefix, scheme: QuantScheme(format: .int(bits: 4), granularity: .group(g), symmetric: false),
                               rows: rows, k: k, codes: codes, scales: s, scaleRows: m, groups: groups, zeros: zeros)
    }

    public func readFloat32(_ name: String, rows: Range<Int>, into destination: UnsafeMutableBufferPointer<Float>) throws {
        try readPacked(name, rows: rows, into: destination, shapes: shapes, base: base)
    }
}
