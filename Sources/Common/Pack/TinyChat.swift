import CKernels

/// llm-awq's TinyChat W4A16 "v2" layout, as `awq/quantize/qmodule.py` `WQLinear` holds it and
/// `tinychat/utils/load_quant.py` loads it (formats.md §4): `quant_method: "tinychat"`.
///
/// Per linear `[N, K]` with groups of G along K: `qweight` I16 `[N/4, K]` (4-bit codes, four output rows
/// interleaved per word column: code `q[n][k]` is nibble `(k%32)/8` of
/// `qweight[n/4, (k/64)·64 + (n%4)·16 + ((k%64)/32)·8 + k%8]`), `scales` F16 `[Gp, N]` and
/// `scaled_zeros` F16 `[Gp, N]` = `−f16(f16(s)·z)`, where `Gp = 8·calculate_zeros_width(K, G)` and the rows past
/// `K/G` are zero. TinyChat computes `W = q·scales + scaled_zeros`. It keeps `lm_head` in F16 and unties it
/// from the embedding (`load_awq_model`), so a tied model gets an explicit `lm_head.weight`.
/// Refused: other bit widths, per-channel or tensor scales, G other than 32, 64 or ≥ 128, N % 8 ≠ 0,
/// K % 64 ≠ 0, act-order, a quantized `lm_head`, linears of different group sizes.
public struct TinyChatLayout: PackLayout {
    public var name: String { "tinychat" }
    public var defaultScheme: QuantScheme { QuantScheme(format: .int(bits: 4), granularity: .group(128), symmetric: false) }

    public init() {}

    public func check(_ plans: [LinearPlan], source: String) throws {
        func refuse(_ what: String) -> PackError { PackError.unsupported(path: source, backend: name, what: what) }
        var group: Int?
        for p in plans {
            guard p.scheme.format == .int(bits: 4) else { throw refuse("\(p.prefix): \(p.scheme) (TinyChat holds 4-bit integers only)") }
            guard case .group(let g) = p.scheme.granularity, p.scaleRows == p.n else {
                throw refuse("\(p.prefix): \(p.scheme.granularity) scales (TinyChat needs groups along K, e.g. :g128)")
            }
            guard g == 32 || g == 64 || g >= 128 else { throw refuse("\(p.prefix): group \(g) (TinyChat's zeros width takes 32, 64 or ≥ 128)") }
            guard !p.hasGroupIndex else { throw refuse("\(p.prefix): act-order (g_idx); use --to vllm-gptq") }
            guard p.unsupportedParts.isEmpty else { throw refuse("\(p.prefix): \(p.unsupportedParts.joined(separator: ", "))") }
            guard p.prefix != "lm_head" else { throw refuse("a quantized lm_head (TinyChat keeps lm_head in F16)") }
            guard p.n % 8 == 0 else { throw refuse("\(p.prefix): N = \(p.n) output features (WQLinear needs N % 8 == 0)") }
            guard p.k % 64 == 0 else { throw refuse("\(p.prefix): K = \(p.k) input features (the v2 packing needs K % 64 == 0)") }
            if let group, group != g { throw refuse("linears with group sizes \(group) and \(g) (TinyChat takes one --q_group_size)") }
            group = g
        }
    }

    /// Rows of the padded `scales` / `scaled_zeros`: `8·calculate_zeros_width(K, G)`.
    static func paddedGroups(k: Int, group: Int) -> Int { 8 * AWQWeights.zerosWidth(k: k, group: group) }

    public func outputs(_ plan: LinearPlan) -> [TensorSpec] {
        let (n, k) = (plan.n, plan.k)
        let gp = Self.paddedGroups(k: k, group: k / plan.groups)
        return [TensorSpec(name: plan.prefix + ".qweight", dtype: .i16, shape: [n / 4, k]),
                TensorSpec(name: plan.prefix + ".scales", dtype: .f16, shape: [gp, n]),
                TensorSpec(name: plan.prefix + ".scaled_zeros", dtype: .f16, shape: [gp, n])]
    }

    /// Word index (in `[N/4, K]`) and nibble of code `[n][k]`.
    @inline(__always) static func position(n: Int, k: Int, columns: Int) -> (word: Int, nibble: Int) {
        let p = k % 32
        return ((n / 4) * columns + (k / 64) * 64 + (n % 4) * 16 + ((k % 64) / 32) * 8 + p % 8, p / 8)
    }

    public func pack(_ linear: QuantizedLinear, sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        let (n, k, g) = (linear.n, linear.k, linear.groups)
        try BitPacking.emit(n / 4 * k, to: sink) { (ob: UnsafeMutableBufferPointer<UInt16>) in
            linear.codes.withBiasedBytes { cb, bias in
                nonisolated(unsafe) let (c, o) = (cb.baseAddress!, ob.baseAddress!)
                // A task: 16 output rows (four word rows), each writing only its own words.
                parallelFor((n / 4 + 3) / 4) { t in
                    for n4 in (4 * t)..<min(n / 4, 4 * t + 4) { qkit_pack_tinychat(c + 4 * n4 * k, k, bias, o + n4 * k) }
                }
            }
        }
        let gp = Self.paddedGroups(k: k, group: k / g)
        // [gp, N] each, K-major; the padding groups are zero. The scaled zeros use the F16 scales.
        let scales = linear.scalesByGroup, z = linear.zerosByGroup!
        var half = [UInt8](repeating: 0, count: 2 * gp * n)
        var rounded = [Float](repeating: 0, count: g * n), zeros = [Float](repeating: 0, count: gp * n)
        scales.withUnsafeBufferPointer { s in
            half.withUnsafeMutableBytes { h in
                Conversion.encode(s, as: .f16, into: UnsafeMutableRawBufferPointer(rebasing: h[0..<(2 * g * n)]))
                rounded.withUnsafeMutableBufferPointer { Conversion.decode(.f16, UnsafeRawBufferPointer(rebasing: h[0..<(2 * g * n)]), into: $0) }
            }
        }
        for i in 0..<(g * n) { zeros[i] = -(rounded[i] * Float(z[i])) }
        try half.withUnsafeBytes { try sink($0) }
        try emitFloats(zeros, as: .f16, sink)
    }

    /// The settings `load_awq_model` takes (`w_bit`, `q_group_size`, `zero_point`), under a method of its own so
    /// that no AutoAWQ loader mistakes the layout for GEMM.
    public func quantizationConfig(_ plans: [LinearPlan], floatLinears: [String], config: JSONValue?) -> JSONValue {
        let g: Int = if case .group(let g)? = plans.first?.scheme.granularity { g } else { 128 }
        return .object(JSONObject([
            ("quant_method", "tinychat"), ("version", "v2"), ("w_bit", 4), ("q_group_size", .int(g)), ("zero_point", true),
            ("modules_to_not_convert", floatLinears.isEmpty ? .null : .array(floatLinears.map { .string($0) })),
        ]))
    }

    public func addedTensors(_ checkpoint: Checkpoint) -> [(name: String, copyOf: String)] {
        checkpoint["lm_head.weight"] == nil ? [("lm_head.weight", "model.embed_tokens.weight")] : []
    }

    public func adjust(_ config: inout JSONObject, checkpoint: Checkpoint) {
        if checkpoint["lm_head.weight"] == nil, config["tie_word_embeddings"] != nil { config["tie_word_embeddings"] = false }
    }
}

/// A TinyChat v2 checkpoint (`quant_method: "tinychat"`) read as a `WeightSource`: weights are `q·s + scaled_zero`
/// as TinyChat's kernels compute them; `unpack` gives the zero point `round(−scaled_zero / s)`.
public final class TinyChatWeights: PackedWeightsBase, PackedWeightSource, @unchecked Sendable {
    let group: Int
    public var layoutName: String { "tinychat" }

    /// Opens and checks every packed linear of a TinyChat checkpoint.
    public init(_ ck: Checkpoint) throws {
        let qc = FormatDetector.quantizationConfig(ck)
        let g = qc?["q_group_size"]?.intValue ?? qc?["group_size"]?.intValue ?? 0
        group = g
        super.init(base: ck)
        let bits = qc?["w_bit"]?.intValue ?? qc?["bits"]?.intValue ?? 4
        guard bits == 4 else { throw fail("quantization_config.w_bit = \(bits): TinyChat holds 4-bit codes") }
        guard g == 32 || g == 64 || g >= 128 else { throw fail("quantization_config.q_group_size = \(g) (32, 64 or ≥ 128)") }
        for t in ck.tensors where t.name.hasSuffix(".qweight") {
            let p = String(t.name.dropLast(".qweight".count))
            let qw = try tensor(t.name, [.i16], nil)
            guard qw.shape.count == 2, qw.shape[1] % 64 == 0, qw.shape[1] % g == 0 else {
                throw fail("\(t.name) has shape \(qw.shape), expected [N/4, K] with K a multiple of 64 and of \(g)")
            }
            let (n, k) = (qw.shape[0] * 4, qw.shape[1])
            let gp = TinyChatLayout.paddedGroups(k: k, group: g)
            _ = try tensor(p + ".scales", [.f16], [gp, n])
            _ = try tensor(p + ".scaled_zeros", [.f16], [gp, n])
            shapes[p] = (n, k)
        }
    }

    public func scaleDType(of prefix: String) -> DType { .f16 }

    public func tensorNames(of prefix: String) -> [String] { ["qweight", "scales", "scaled_zeros"].map { prefix + "." + $0 } }

    /// Codes, F16 scales and scaled zeros of rows `rows`.
    func parts(_ prefix: String, rows: Range<Int>) throws -> (codes: [UInt8], scales: [Float], scaledZeros: [Float], k: Int) {
        guard let (n, k) = shapes[prefix] else { throw fail("no packed linear \(prefix)") }
        let ck = checkpoint, groups = k / group
        let qw = ck.data(ck[prefix + ".qweight"]!)
        let scales = try readFloats(ck, ck[prefix + ".scales"]!), zeros = try readFloats(ck, ck[prefix + ".scaled_zeros"]!)
        let m = rows.count
        var codes = [UInt8](repeating: 0, count: m * k)
        codes.withUnsafeMutableBufferPointer { cb in
            nonisolated(unsafe) let c = cb.baseAddress!
            let base = qw.baseAddress!
            parallelFor((m + 3) / 4) { task in
                for i in (task * 4)..<min(m, task * 4 + 4) {
                    let r = rows.lowerBound + i
                    for kk in 0..<k {
                        let (w, nib) = TinyChatLayout.position(n: r, k: kk, columns: k)
                        c[i * k + kk] = UInt8((base.loadUnaligned(fromByteOffset: 2 * w, as: UInt16.self) >> UInt16(4 * nib)) & 0xF)
                    }
                }
            }
        }
        var s = [Float](repeating: 0, count: m * groups), sz = s
        for (i, r) in rows.enumerated() {
            for j in 0..<groups {
                s[i * groups + j] = scales[j * n + r]
                sz[i * groups + j] = zeros[j * n + r]
            }
        }
        return (codes, s, sz, k)
    }

    public func unpack(_ prefix: String, rows: Range<Int>) throws -> QuantizedLinear {
        let (codes, s, sz, k) = try parts(prefix, rows: rows)
        let groups = k / group
        let zeros = (0..<s.count).map { i -> UInt8 in
            guard s[i] != 0, s[i].isFinite else { return 0 }
            return UInt8(max(0, min(15, (-sz[i] / s[i]).rounded())))
        }
        return QuantizedLinear(prefix: prefix, scheme: QuantScheme(format: .int(bits: 4), granularity: .group(group), symmetric: false),
                               rows: rows, k: k, codes: codes, scales: s, scaleRows: rows.count, groups: groups, zeros: zeros)
    }

    public func readFloat32(_ name: String, rows: Range<Int>, into destination: UnsafeMutableBufferPointer<Float>) throws {
        guard name.hasSuffix(".weight"), let (n, k) = shapes[String(name.dropLast(".weight".count))] else {
            return try base.readFloat32(name, rows: rows, into: destination)
        }
        guard rows.lowerBound >= 0, rows.upperBound <= n else {
            throw WeightSourceError.badRows(source: label, name: name, rows: rows, count: n)
        }
        precondition(destination.count == rows.count * k)
        let (codes, s, sz, _) = try parts(String(name.dropLast(".weight".count)), rows: rows)
        let groups = k / group
        for i in 0..<rows.count {
            for kk in 0..<k {
                let j = i * groups + kk / group
                destination[i * k + kk] = Float(codes[i * k + kk]) * s[j] + sz[j]
            }
        }
    }
}
