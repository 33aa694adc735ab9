import CKernels

/// The GPTQ layout vLLM, GPTQModel and transformers load: `quant_method: "gptq"` (formats.md §1b).
///
/// Per linear `[N, K]` with b-bit codes and groups of G along K (G = K per channel, `group_size: -1`):
/// `qweight` I32 `[K·b/32, N]` (codes packed along K as a little-endian bit stream per output channel),
/// `qzeros` I32 `[K/G, N·b/32]` (zero points packed along N), `scales` F16 `[K/G, N]`, `g_idx` I32 `[K]`.
/// v1 (`checkpoint_format: "gptq"`, the default) stores `z − 1`; v2 (`"gptq_v2"`) stores `z`. Symmetric
/// codes are unsigned with `z = 2^(b−1)`. Refused: float formats, widths other than 2/3/4/8, linears with
/// different settings, shapes the packing cannot hold, and (v1 only) an asymmetric zero point of 0.
public struct GPTQLayout: PackLayout {
    /// Write `checkpoint_format: "gptq_v2"` (exact zero points) instead of v1 (`z − 1`).
    public var v2: Bool

    public var name: String { "vllm-gptq" }
    public var defaultScheme: QuantScheme { QuantScheme(format: .int(bits: 4), granularity: .group(128), symmetric: true) }

    public init(v2: Bool = false) { self.v2 = v2 }

    public func check(_ plans: [LinearPlan], source: String) throws {
        func refuse(_ what: String) -> PackError { PackError.unsupported(path: source, backend: name, what: what) }
        var shared: (Int, Int, Bool)?
        for p in plans {
            guard case .int(let b) = p.scheme.format, [2, 3, 4, 8].contains(b) else {
                throw refuse("\(p.prefix): \(p.scheme) (GPTQ holds 2, 3, 4 or 8-bit integers)")
            }
            guard p.scheme.granularity != .tensor else { throw refuse("\(p.prefix): a tensor-wide scale (use groups or :ch)") }
            guard p.unsupportedParts.isEmpty else { throw refuse("\(p.prefix): \(p.unsupportedParts.joined(separator: ", "))") }
            let (kAlign, nAlign) = b == 3 ? (32, 32) : (32 / b, 32 / b)
            guard p.k % kAlign == 0 else { throw refuse("\(p.prefix): K = \(p.k) (\(b)-bit qweight needs K % \(kAlign) == 0)") }
            guard p.n % nAlign == 0 else { throw refuse("\(p.prefix): N = \(p.n) (\(b)-bit qzeros needs N % \(nAlign) == 0)") }
            let g = p.scheme.granularity == .channel ? -1 : p.scheme.granularity.groupLength(k: p.k)
            let mine = (b, g, p.scheme.symmetric)
            if let shared, shared != mine {
                throw refuse("linears with different settings (\(shared.0) bits g\(shared.1) \(shared.2 ? "sym" : "asym") and \(p.prefix): \(p.scheme)); one GPTQ config holds one")
            }
            shared = mine
        }
    }

    public func outputs(_ plan: LinearPlan) -> [TensorSpec] {
        let b = plan.scheme.integerBits
        let (n, k, g) = (plan.n, plan.k, plan.groups)
        return [TensorSpec(name: plan.prefix + ".qweight", dtype: .i32, shape: [k * b / 32, n]),
                TensorSpec(name: plan.prefix + ".qzeros", dtype: .i32, shape: [g, n * b / 32]),
                TensorSpec(name: plan.prefix + ".scales", dtype: .f16, shape: [g, n]),
                TensorSpec(name: plan.prefix + ".g_idx", dtype: .i32, shape: [k])]
    }

    public func pack(_ linear: QuantizedLinear, sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        let b = linear.integerBits
        let (n, k, g) = (linear.n, linear.k, linear.groups)
        let kw = k * b / 32
        // qweight: each output channel's K codes as one bit stream, stored down column n.
        try BitPacking.emit(kw * n, to: sink) { (ob: UnsafeMutableBufferPointer<UInt32>) in
            linear.codes.withBiasedBytes { cb, bias in
                nonisolated(unsafe) let (c, o) = (cb.baseAddress!, ob.baseAddress!)
                let block = 16
                parallelFor((n + block - 1) / block) { task in
                    let n0 = task * block, n1 = min(n, n0 + block)
                    let tmp = UnsafeMutablePointer<UInt32>.allocate(capacity: block * kw)
                    defer { tmp.deallocate() }
                    for r in n0..<n1 {
                        BitPacking.packRow(c + r * k, count: k, bits: b, bias: bias, into: tmp + (r - n0) * kw)
                    }
                    qkit_store_transposed(tmp, n1 - n0, kw, kw, o + n0, n)  // whole 64-byte lines of 16 channels
                }
            }
        }
        // qzeros: per group, the N zero points as one stream (v1: z − 1).
        let zeros = linear.zeros!
        if !v2, !linear.scheme.symmetric, let i = zeros.firstIndex(of: 0) {
            throw PackError.unsupported(path: linear.prefix, backend: name,
                                        what: "zero point 0 (row \(i / g), group \(i % g)) in v1 (z − 1); use --gptq-v2")
        }
        let zw = n * b / 32
        let byGroup = linear.zerosByGroup!
        try BitPacking.emit(g * zw, to: sink) { (ob: UnsafeMutableBufferPointer<UInt32>) in
            byGroup.withUnsafeBufferPointer { z in
                for j in 0..<g {  // v1 stores z − 1: a bias of 255 (wrapping), masked to b bits
                    BitPacking.packRow(z.baseAddress! + j * n, count: n, bits: b, bias: v2 ? 0 : 255, into: ob.baseAddress! + j * zw)
                }
            }
        }
        try emitFloats(linear.scalesByGroup, as: .f16, sink)
        let gIdx = linear.groupIndex ?? (0..<k).map { Int32($0 / linear.groupLength) }
        try gIdx.withUnsafeBytes { try sink($0) }
    }

    /// The GPTQModel-style `quantization_config`, `checkpoint_format` (and `format`) recorded.
    public func quantizationConfig(_ plans: [LinearPlan], floatLinears: [String], config: JSONValue?) -> JSONValue {
        let p = plans.first
        let g = p.map { $0.scheme.granularity == .channel ? -1 : $0.scheme.granularity.groupLength(k: $0.k) } ?? 128
        let format = v2 ? "gptq_v2" : "gptq"
        return .object(JSONObject([
            ("quant_method", "gptq"), ("bits", .int(p?.scheme.integerBits ?? 4)), ("group_size", .int(g)),
            ("desc_act", .bool(plans.contains { $0.hasGroupIndex })), ("sym", .bool(p?.scheme.symmetric ?? true)),
            ("lm_head", .bool(plans.contains { $0.prefix == "lm_head" })), ("checkpoint_format", .string(format)),
            ("format", .string(format)), ("pack_dtype", "int32"),
            ("modules_to_not_convert", floatLinears.isEmpty ? .null : .array(floatLinears.map { .string($0) })),
        ]))
    }
}

/// A GPTQ checkpoint (v1 or v2, 2/3/4/8 bits, with or without act-order) read as a `WeightSource`.
public final class GPTQWeights: PackedWeightsBase, PackedWeightSource, @unchecked Sendable {
    public let bits: Int
    /// Whether zero points are stored exactly (`checkpoint_format: "gptq_v2"`) rather than as `z − 1`.
    public let v2: Bool
    public let symmetric: Bool
    public var layoutName: String { "vllm-gptq" }

    /// Opens and checks every packed linear of a GPTQ checkpoint.
    public init(_ ck: Checkpoint) throws {
        let qc = FormatDetector.quantizationConfig(ck)
        bits = qc?["bits"]?.intValue ?? 4
        let format = (qc?["checkpoint_format"]?.stringValue ?? qc?["format"]?.stringValue ?? "gptq").lowercased()
        v2 = format == "gptq_v2"
        symmetric = qc?["sym"]?.boolValue ?? true
        super.init(base: ck)
        guard [2, 3, 4, 8].contains(bits) else { throw fail("quantization_config.bits = \(bits) (GPTQ: 2, 3, 4 or 8)") }
        guard format == "gptq" || format == "gptq_v2" else { throw fail("checkpoint_format '\(format)' is not read (gptq or gptq_v2)") }
        for t in ck.tensors where t.name.hasSuffix(".qweight") {
            let p = String(t.name.dropLast(".qweight".count))
            let qw = try tensor(t.name, [.i32, .u32], nil)
            guard qw.shape.count == 2 else { throw fail("\(t.name) is not 2-D") }
            let (k, n) = (qw.shape[0] * 32 / bits, qw.shape[1])
            guard qw.shape[0] * 32 % bits == 0 else { throw fail("\(t.name): \(qw.shape[0]) rows do not hold whole \(bits)-bit codes") }
            let s = try tensor(p + ".scales", [.f16, .bf16, .f32], nil)
            guard s.shape.count == 2, s.shape[1] == n, s.shape[0] >= 1, s.shape[0] <= k else {
                throw fail("\(p).scales has shape \(s.shape), expected [groups, \(n)]")
            }
            guard n * bits % 32 == 0 else { throw fail("\(p): N = \(n) does not fill whole qzeros words") }
            _ = try tensor(p + ".qzeros", [.i32, .u32], [s.shape[0], n * bits / 32])
            if ck[p + ".g_idx"] != nil {
                let gi = try tensor(p + ".g_idx", [.i32], [k])
                let groups = s.shape[0]
                for v in readWords(ck, gi) where Int(Int32(bitPattern: v)) < 0 || Int(Int32(bitPattern: v)) >= groups {
                    throw fail("\(p).g_idx holds group \(Int32(bitPattern: v)) outside 0..<\(groups)")
                }
            } else if k % s.shape[0] != 0 {
                throw fail("\(p): \(s.shape[0]) groups do not divide K = \(k) and there is no g_idx")
            }
            shapes[p] = (n, k)
        }
    }

    public func scaleDType(of prefix: String) -> DType {
        if case .dtype(let d)? = checkpoint[prefix + ".scales"]?.encoding { return d }
        return .f16
    }

    public func tensorNames(of prefix: String) -> [String] {
        ["qweight", "qzeros", "scales", "g_idx"].map { prefix + "." + $0 }.filter { checkpoint[$0] != nil }
    }

    public func unpack(_ prefix: String, rows: Range<Int>) throws -> QuantizedLinear {
        guard let (n, k) = shapes[prefix] else { throw fail("no packed linear \(prefix)") }
        let ck = checkpoint, b = bits
        let qw = ck.data(ck[prefix + ".qweight"]!), qz = ck.data(ck[prefix + ".qzeros"]!)
        let st = ck[prefix + ".scales"]!
        let groups = st.shape[0]
        let scales = try readFloats(ck, st)
        let kw = k * b / 32, zw = n * b / 32
        let m = rows.count
        var codes = [UInt8](repeating: 0, count: m * k)
        codes.withUnsafeMutableBufferPointer { cb in
            nonisolated(unsafe) let c = cb.baseAddress!
            let base = qw.baseAddress!
            parallelFor((m + 15) / 16) { task in
                let column = UnsafeMutablePointer<UInt32>.allocate(capacity: kw + 1)
                defer { column.deallocate() }
                column[kw] = 0
                for i in (task * 16)..<min(m, task * 16 + 16) {
                    let r = rows.lowerBound + i
                    for w in 0..<kw { column[w] = base.loadUnaligned(fromByteOffset: 4 * (w * n + r), as: UInt32.self) }
                    for kk in 0..<k { c[i * k + kk] = UInt8(BitPacking.field(column, kk, bits: b)) }
                }
            }
        }
        // Zero points: v1 adds 1 back, as a whole word for 2/4/8 bits (GPTQModel's lossless inverse of its
        // word subtraction) and per field for 3 bits.
        let wordOne: UInt32 = b == 2 ? 0x5555_5555 : (b == 4 ? 0x1111_1111 : 0x0101_0101)
        var zeros = [UInt8](repeating: 0, count: m * groups)
        var s = [Float](repeating: 0, count: m * groups)
        var row = [UInt32](repeating: 0, count: zw + 1)
        for j in 0..<groups {
            for w in 0..<zw {
                var v = qz.loadUnaligned(fromByteOffset: 4 * (j * zw + w), as: UInt32.self)
                if !v2, b != 3 { v = v &+ wordOne }
                row[w] = v
            }
            row.withUnsafeBytes { rb in
                for (i, r) in rows.enumerated() {
                    var z = BitPacking.field(rb.baseAddress!, r, bits: b)
                    if !v2, b == 3 { z = (z + 1) & 7 }
                    zeros[i * groups + j] = UInt8(z)
                    s[i * groups + j] = scales[j * n + r]
                }
            }
        }
        var groupIndex: [Int32]?
        if let gi = ck[prefix + ".g_idx"] {
            let idx = readWords(ck, gi).map { Int32(bitPattern: $0) }
            // Plain k / G indices are the layout's default, not act-order.
            if idx.enumerated().contains(where: { Int($0.element) != $0.offset / (k / groups) }) || k % groups != 0 { groupIndex = idx }
        }
        let granularity: QuantGranularity = groups == 1 ? .channel : .group(k / groups)
        return QuantizedLinear(prefix: prefix, scheme: QuantScheme(format: .int(bits: b), granularity: granularity, symmetric: symmetric),
                               rows: rows, k: k, codes: codes, scales: s, scaleRows: m, groups: groups, zeros: zeros, groupIndex: groupIndex)
    }

    public func readFloat32(_ name: String, rows: Range<Int>, into destination: UnsafeMutableBufferPointer<Float>) throws {
        try readPacked(name, rows: rows, into: destination, shapes: shapes, base: base)
    }
}
