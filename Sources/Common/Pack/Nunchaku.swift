/// Nunchaku's SVDQuant W4A4 checkpoint (formats.md §5), written from a qkit checkpoint whose linears carry W4A4
/// codes (`int4:g64:sym` or `nvfp4`), `P.smooth` and the low-rank branch `P.lora_down` [R, K], `P.lora_up` [N, R].
/// Tile order in `NunchakuLayout.swift`.
///
/// Per linear P, with the names deepcompressor's converter writes (Nunchaku's Python v2 loader renames
/// `lora_down/lora_up/smooth/smooth_orig` to `proj_down/proj_up/smooth_factor/smooth_factor_orig`): `P.qweight` I8
/// `[Np, Kp/2]`; `P.wscales` `[Kp/64, Np]` in the model dtype (INT4) or F8_E4M3 `[Kp/16, Np]` (NVFP4) with
/// `P.wtscale` F32 [1] = 1 / qkit's global scale; `P.bias` `[Np]` (zeros when the model has none); `P.smooth`,
/// `P.smooth_orig` `[Kp]`; `P.lora_down` `[Kp, Rp]`; `P.lora_up` `[Np, Rp]`; every float in the model dtype (BF16, or F16
/// when config.json says float16). Everything else is copied. One `model.safetensors` with Nunchaku's metadata
/// (`quantization_config`, `config`, `model_class`), and config.json with `quantization_config.quant_method: svdquant`
/// and each linear's unpadded `[N, K, R]`.
///
/// qkit's convention, which this packing keeps as it is: the codes quantize the smoothed weight (the kernel divides
/// the input by `smooth`), and the low-rank branch acts on the unsmoothed input, `y = Q(x / smooth)·Ŵᵀ +
/// (x·lora_downᵀ)·lora_upᵀ + b` — Nunchaku's own runtime semantics (deepcompressor divides its `lora_down` by
/// `smooth` when converting; an algorithm in that convention does the same before writing qkit).
public enum NunchakuPacker {
    /// What Nunchaku holds.
    static func refusal(_ plan: LinearPlan) -> String? {
        let int4 = plan.scheme.format == .int(bits: 4) && plan.scheme.symmetric && plan.scheme.granularity == .group(64)
        guard int4 || plan.scheme.format == .nvfp4 else {
            return "\(plan.prefix): \(plan.scheme) (Nunchaku's W4A4 kernels take int4:g64:sym or nvfp4)"
        }
        if plan.hasGroupIndex { return "\(plan.prefix): act-order (g_idx)" }
        let extra = plan.unsupportedParts.filter { !["smooth", "lora_down", "lora_up"].contains($0) }
        if !extra.isEmpty { return "\(plan.prefix): \(extra.joined(separator: ", "))" }
        if !plan.unsupportedParts.contains("lora_down") || !plan.unsupportedParts.contains("lora_up") {
            return "\(plan.prefix): no low-rank branch (lora_down, lora_up): Nunchaku's SVDQuant linears always have one"
        }
        return nil
    }

    /// The model dtype Nunchaku's floats are stored in: F16 when config.json says float16, else BF16.
    static func modelDType(_ config: JSONValue?) -> DType {
        (config?["torch_dtype"]?.stringValue ?? config?["dtype"]?.stringValue) == "float16" ? .f16 : .bf16
    }

    /// The packed shapes of one linear.
    struct Plan {
        var plan: LinearPlan
        var rank: Int
        var nvfp4: Bool { plan.scheme.format == .nvfp4 }
        var np: Int { NunchakuLayout.padded(plan.n, NunchakuLayout.tileN) }
        var kp: Int { NunchakuLayout.padded(plan.k, NunchakuLayout.padK) }
        var rp: Int { NunchakuLayout.padded(rank, NunchakuLayout.rankTile) }
        var groupSize: Int { nvfp4 ? 16 : 64 }
        /// Scale groups as `pad_scale` pads them: to a multiple of 2 (INT4, the unrolled K) or of 4 (NVFP4 micro-scales,
        /// one 64-wide MMA k step), so NVFP4 can have fewer groups than `Kp/16`.
        var groups: Int {
            nvfp4 ? NunchakuLayout.padded((plan.k + 15) / 16, 4) : NunchakuLayout.padded((plan.k + 63) / 64, 2)
        }

        func outputs(_ dtype: DType) -> [TensorSpec] {
            let p = plan.prefix
            var out = [TensorSpec(name: p + ".qweight", dtype: .i8, shape: [np, kp / 2]),
                       TensorSpec(name: p + ".wscales", dtype: nvfp4 ? .f8E4M3 : dtype, shape: [groups, np])]
            if nvfp4 { out.append(TensorSpec(name: p + ".wtscale", dtype: .f32, shape: [1])) }
            out += [TensorSpec(name: p + ".bias", dtype: dtype, shape: [np]), TensorSpec(name: p + ".smooth", dtype: dtype, shape: [kp]),
                    TensorSpec(name: p + ".smooth_orig", dtype: dtype, shape: [kp]), TensorSpec(name: p + ".lora_down", dtype: dtype, shape: [kp, rp]),
                    TensorSpec(name: p + ".lora_up", dtype: dtype, shape: [np, rp])]
            return out
        }
    }

    /// Packs a qkit W4A4 checkpoint into Nunchaku's layout.
    public static func run(input: String, output: String, log: ((String) -> Void)? = nil) throws -> PackReport {
        let start = monotonicSeconds()
        let ck = try Checkpoint(path: input)
        func refuse(_ what: String) -> PackError { PackError.unsupported(path: input, backend: "nunchaku", what: what) }
        let method = ck.config?["quantization_config"]?["quant_method"]?.stringValue
        guard method == "qkit" else {
            if let method { throw PackError.usage("\(input): input quantized as '\(method)' (nunchaku packs qkit checkpoints)") }
            throw refuse("a float model: W4A4 needs SVDQuant's smoothing and low-rank branch (a qkit checkpoint with P.smooth, P.lora_down, P.lora_up)")
        }
        let source = try PackSource(ck)
        guard !source.linears.isEmpty else { throw refuse("a checkpoint without quantized linears") }
        var plans: [Plan] = []
        for p in source.linears {
            if let why = refusal(p) { throw refuse(why) }
            let down = ck[p.prefix + ".lora_down"]!, up = ck[p.prefix + ".lora_up"]!
            guard down.shape.count == 2, up.shape.count == 2, down.shape[1] == p.k, up.shape[0] == p.n, up.shape[1] == down.shape[0] else {
                throw PackError.malformed(path: input, what: "\(p.prefix): lora_down \(down.shape) and lora_up \(up.shape) do not fit [R, \(p.k)] and [\(p.n), R]")
            }
            if let s = ck[p.prefix + ".smooth"], s.shape != [p.k] { throw PackError.malformed(path: input, what: "\(p.prefix).smooth has shape \(s.shape), not [\(p.k)]") }
            plans.append(Plan(plan: p, rank: down.shape[0]))
        }
        let formats = Set(plans.map(\.nvfp4)), ranks = Set(plans.map(\.rp))
        if formats.count > 1 { throw refuse("int4 and nvfp4 linears in one model (Nunchaku's quantization_config has one precision)") }
        if ranks.count > 1 { throw refuse("low-rank branches of ranks \(ranks.sorted()) (Nunchaku's quantization_config has one rank)") }
        let dtype = modelDType(ck.config)
        let nvfp4 = plans[0].nvfp4

        let byCodes = Dictionary(uniqueKeysWithValues: plans.map { ($0.plan.prefix + ".weight_q", $0) })
        var consumed = source.consumed
        for p in plans where ck[p.plan.prefix + ".bias"] != nil { consumed.insert(p.plan.prefix + ".bias") }
        enum Item { case copy(CheckpointTensor), pack(Plan) }
        var items: [Item] = []
        var specs: [TensorSpec] = []
        for t in ck.tensors {
            if let p = byCodes[t.name] {
                items.append(.pack(p))
                specs += p.outputs(dtype)
            } else if !consumed.contains(t.name), case .dtype(let d) = t.encoding {
                items.append(.copy(t))
                specs.append(TensorSpec(name: t.name, dtype: d, shape: t.shape))
            }
        }
        let qc = nunchakuConfig(nvfp4: nvfp4, rank: plans[0].rp)
        var metadata: [(key: String, value: String)] = [("format", "pt"), ("quantization_config", qc)]
        if let config = ck.config { metadata.append(("config", config.serialized())) }
        if let arch = ck.config?["architectures"]?.arrayValue?.first?.stringValue { metadata.append(("model_class", arch)) }

        let out = try OutputDirectory(path: output)
        let writer = try ShardedSafetensorsWriter(directory: out.stagingPath, tensors: specs, metadata: metadata, maxShardSize: Int.max / 4)
        var report = PackReport()
        for item in items {
            switch item {
            case .copy(let t):
                try QKitQuantizer.copyTensor(t, ck: ck, writer: writer)
                report.copied += 1
            case .pack(let p):
                let q = try source.linear(p.plan)
                for bytes in try pack(p, q, ck: ck, dtype: dtype) { try bytes.withUnsafeBytes { try writer.write($0) } }
                report.packed += 1
                log?("\(p.plan.prefix) [\(p.plan.n), \(p.plan.k)] \(p.plan.scheme) rank \(p.rank) → nunchaku [\(p.np), \(p.kp)] rank \(p.rp)")
            }
        }
        try writer.finish()
        report.bytesWritten = specs.reduce(0) { $0 + ($1.byteCount ?? 0) }

        var config = ck.config?.objectValue ?? JSONObject()
        var q = (try? JSONParser.parse(qc))?.objectValue ?? JSONObject()
        q.members.insert(("quant_method", "svdquant"), at: 0)
        q["linear_shapes"] = .object(JSONObject(plans.map { ($0.plan.prefix, JSONValue.array([.int($0.plan.n), .int($0.plan.k), .int($0.rank)])) }))
        config["quantization_config"] = .object(q)
        try writeSmallFile(out.stagedPath("config.json"), JSONValue.object(config).serialized(indent: 2) + "\n")
        if let dir = ck.directory { try QKitQuantizer.copyModelFiles(from: dir, to: out) }
        report.files = listDirectory(out.stagingPath)
        try out.commit()
        report.seconds = monotonicSeconds() - start
        return report
    }

    /// Nunchaku's `quantization_config` metadata string, as merge_safetensors.py writes it (json.dumps).
    static func nunchakuConfig(nvfp4: Bool, rank: Int) -> String {
        let dt = nvfp4 ? "\"fp4_e2m1_all\"" : "\"int4\"", g = nvfp4 ? 16 : 64
        return "{\"method\": \"svdquant\", \"weight\": {\"dtype\": \(dt), \"scale_dtype\": \(nvfp4 ? "[null, \"fp8_e4m3_nan\"]" : "null"), \"group_size\": \(g)}, "
            + "\"activation\": {\"dtype\": \(dt), \"scale_dtype\": \(nvfp4 ? "\"fp8_e4m3_nan\"" : "null"), \"group_size\": \(g)}, \"rank\": \(rank)}"
    }

    /// qweight, wscales (and NVFP4's wtscale) of one linear: INT4 codes as signed nibbles (canonical u − 8),
    /// NVFP4 E2M1 codes as they are, padding 0; scales (padding 1) permuted per 128-channel tile.
    static func weightTensors(_ p: Plan, codes: [UInt8], scales realScales: [Float], realGroups: Int, globalScale: Float,
                              dtype: DType) -> [[UInt8]] {
        let (n, k, np, kp) = (p.plan.n, p.plan.k, p.np, p.kp)
        var qweight = [UInt8](repeating: 0, count: np * kp / 2)
        for r in 0..<n {
            for c in 0..<k {
                let code = codes[r * k + c]
                let nibble = p.nvfp4 ? code & 0xF : UInt8(truncatingIfNeeded: Int(code) - 8) & 0xF
                let (byte, high) = NunchakuLayout.weightByte(n: r, k: c, kp: kp)
                qweight[byte] |= high ? nibble << 4 : nibble
            }
        }
        let groups = p.groups
        var scales = [Float](repeating: 1, count: groups * np)
        for r in 0..<n {
            for g in 0..<realGroups {
                let i = p.nvfp4 ? NunchakuLayout.microScaleIndex(n: r, group: g, groups: groups) : NunchakuLayout.scaleIndex(n: r, group: g, groups: groups)
                scales[i] = realScales[r * realGroups + g]
            }
        }
        var out = [qweight, encode(scales, p.nvfp4 ? .f8E4M3 : dtype)]
        if p.nvfp4 { out.append(encode([1 / globalScale], .f32)) }
        return out
    }

    /// The bytes of one linear's tensors, in `Plan.outputs` order.
    static func pack(_ p: Plan, _ q: QuantizedLinear, ck: Checkpoint, dtype: DType) throws -> [[UInt8]] {
        let (n, k, np, kp, rp) = (p.plan.n, p.plan.k, p.np, p.kp, p.rp)
        let prefix = p.plan.prefix
        var out = weightTensors(p, codes: q.codes.array, scales: q.scales, realGroups: q.groups, globalScale: q.globalScale, dtype: dtype)
        // Bias and smooth: channel vectors in pack_scale's order, padding 1.
        func channelVector(_ values: [Float]?, count: Int, padded: Int, fill: Float) -> [Float] {
            var v = [Float](repeating: 1, count: padded)
            for i in 0..<count { v[(i / 128) * 128 + NunchakuLayout.scalePosition(i % 128)] = values?[i] ?? fill }
            return v
        }
        let bias = try ck[prefix + ".bias"].map { try readFloats(ck, $0) }
        let smooth = try ck[prefix + ".smooth"].map { try readFloats(ck, $0) }
        out.append(encode(channelVector(bias, count: n, padded: np, fill: 0), dtype))
        let s = encode(channelVector(smooth, count: k, padded: kp, fill: 1), dtype)
        out += [s, s]
        // Low-rank tiles, padding 0.
        let down = try readFloats(ck, ck[prefix + ".lora_down"]!), up = try readFloats(ck, ck[prefix + ".lora_up"]!)
        var d = [Float](repeating: 0, count: kp * rp), u = [Float](repeating: 0, count: np * rp)
        for i in 0..<p.rank { for j in 0..<k { d[NunchakuLayout.lowRankIndex(i: i, j: j, rows: rp, columns: kp, down: true)] = down[i * k + j] } }
        for i in 0..<n { for j in 0..<p.rank { u[NunchakuLayout.lowRankIndex(i: i, j: j, rows: np, columns: rp, down: false)] = up[i * p.rank + j] } }
        out += [encode(d, dtype), encode(u, dtype)]
        return out
    }

    static func encode(_ values: [Float], _ dtype: DType) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: dtype.byteCount(elements: values.count)!)
        values.withUnsafeBufferPointer { v in out.withUnsafeMutableBytes { Conversion.encode(v, as: dtype, into: $0) } }
        return out
    }
}

/// A Nunchaku checkpoint written by `qpack --to nunchaku` read back: each linear's codes and scales in canonical form,
/// its smooth factor and low-rank branch unpermuted. As a `WeightSource` it gives what qkit's SVDQuant checkpoint
/// holds: `P.weight` the dequantized residual Ŵ, and `P.smooth` `[K]`, `P.lora_down` `[R, K]`, `P.lora_up` `[N, R]`
/// unpadded and unpermuted, so the decoder runs `Q_a(x / smooth)·Ŵᵀ + (x·lora_downᵀ)·lora_upᵀ` as Nunchaku does
/// (activations quantized as `quantization_config.activation` says: INT4 g64 or NVFP4).
public final class NunchakuWeights: PackedWeightsBase, PackedWeightSource, @unchecked Sendable {
    /// Unpadded N, K, R per linear.
    var dims: [String: (n: Int, k: Int, r: Int)] = [:]
    public let nvfp4: Bool
    public let modelDType: DType

    public var layoutName: String { "nunchaku" }

    public init(_ ck: Checkpoint) throws {
        let qc = FormatDetector.quantizationConfig(ck)
        nvfp4 = qc?["weight"]?["dtype"]?.stringValue == "fp4_e2m1_all"
        modelDType = NunchakuPacker.modelDType(ck.config)
        super.init(base: ck)
        guard case .object(let shapes)? = qc?["linear_shapes"] else { throw fail("quantization_config has no linear_shapes (written by qpack --to nunchaku)") }
        for (p, v) in shapes.members {
            guard let a = v.arrayValue?.compactMap(\.intValue), a.count == 3, a.allSatisfy({ $0 > 0 }) else { throw fail("linear_shapes.\(p) is not [N, K, R]") }
            let plan = NunchakuPacker.Plan(plan: LinearPlan(prefix: p, scheme: nvfp4 ? QuantScheme(format: .nvfp4) : QuantScheme(format: .int(bits: 4), granularity: .group(64), symmetric: true),
                                                            n: a[0], k: a[1], groups: 0, scaleRows: a[0], hasGroupIndex: false, unsupportedParts: []), rank: a[2])
            for spec in plan.outputs(modelDType) { _ = try tensor(spec.name, [spec.dtype], spec.shape) }
            dims[p] = (a[0], a[1], a[2])
            self.shapes[p] = (a[0], a[1])
        }
    }

    func plan(_ p: String) -> NunchakuPacker.Plan {
        let d = dims[p]!
        return NunchakuPacker.Plan(plan: LinearPlan(prefix: p, scheme: nvfp4 ? QuantScheme(format: .nvfp4) : QuantScheme(format: .int(bits: 4), granularity: .group(64), symmetric: true),
                                                    n: d.n, k: d.k, groups: 0, scaleRows: d.n, hasGroupIndex: false, unsupportedParts: []), rank: d.r)
    }

    public func scaleDType(of prefix: String) -> DType { nvfp4 ? .f8E4M3 : modelDType }

    public override func shape(of name: String) throws -> [Int] {
        if name.hasSuffix(".bias"), let d = dims[String(name.dropLast(".bias".count))] { return [d.n] }
        if let (p, part) = branchPart(name), let d = dims[p] {
            return switch part { case "smooth": [d.k]; case "lora_down": [d.r, d.k]; default: [d.n, d.r] }
        }
        return try super.shape(of: name)
    }

    /// `(P, part)` for `P.smooth`, `P.lora_down`, `P.lora_up` of a packed linear P.
    func branchPart(_ name: String) -> (String, String)? {
        for part in ["smooth", "lora_down", "lora_up"] where name.hasSuffix("." + part) {
            let p = String(name.dropLast(part.count + 1))
            if dims[p] != nil { return (p, part) }
        }
        return nil
    }

    public func tensorNames(of prefix: String) -> [String] { plan(prefix).outputs(modelDType).map(\.name) }

    func floats(_ name: String) throws -> [Float] { try readFloats(checkpoint, checkpoint[name]!) }

    public func unpack(_ prefix: String, rows: Range<Int>) throws -> QuantizedLinear {
        guard dims[prefix] != nil else { throw fail("\(prefix) is not a packed linear") }
        let p = plan(prefix)
        let (k, kp) = (p.plan.k, p.kp)
        let gs = p.groupSize, g = k / gs
        let raw = checkpoint.data(checkpoint[prefix + ".qweight"]!)
        var codes = [UInt8](repeating: 0, count: rows.count * k)
        for (ri, r) in rows.enumerated() {
            for c in 0..<k {
                let (byte, high) = NunchakuLayout.weightByte(n: r, k: c, kp: kp)
                let nibble = high ? raw[byte] >> 4 : raw[byte] & 0xF
                codes[ri * k + c] = p.nvfp4 ? nibble : nibble ^ 8  // signed nibble q → q + 8
            }
        }
        let packed = try floats(prefix + ".wscales")
        var scales = [Float](repeating: 0, count: rows.count * g)
        for (ri, r) in rows.enumerated() {
            for j in 0..<g {
                scales[ri * g + j] = packed[p.nvfp4 ? NunchakuLayout.microScaleIndex(n: r, group: j, groups: p.groups) : NunchakuLayout.scaleIndex(n: r, group: j, groups: p.groups)]
            }
        }
        var global: Float = 1
        if p.nvfp4 { global = 1 / (try floats(prefix + ".wtscale"))[0] }
        return QuantizedLinear(prefix: prefix, scheme: p.plan.scheme, rows: rows, k: k, codes: codes, scales: scales, scaleRows: rows.count, groups: g,
                               zeros: p.nvfp4 ? nil : [UInt8](repeating: 8, count: rows.count * g), groupIndex: nil, globalScale: global)
    }

    /// The bias `[N]`, smooth `[K]`, smooth_orig `[K]`, lora_down `[R, K]` and lora_up `[N, R]` of a linear, unpermuted
    /// and unpadded, as F32 values of the stored dtype.
    public func parts(_ prefix: String) throws -> (bias: [Float], smooth: [Float], smoothOrig: [Float], loraDown: [Float], loraUp: [Float]) {
        let p = plan(prefix)
        let (n, k, r) = (p.plan.n, p.plan.k, p.rank)
        func vector(_ name: String, _ count: Int) throws -> [Float] {
            let v = try floats(prefix + "." + name)
            return (0..<count).map { v[($0 / 128) * 128 + NunchakuLayout.scalePosition($0 % 128)] }
        }
        let d = try floats(prefix + ".lora_down"), u = try floats(prefix + ".lora_up")
        var down = [Float](repeating: 0, count: r * k), up = [Float](repeating: 0, count: n * r)
        for i in 0..<r { for j in 0..<k { down[i * k + j] = d[NunchakuLayout.lowRankIndex(i: i, j: j, rows: p.rp, columns: p.kp, down: true)] } }
        for i in 0..<n { for j in 0..<r { up[i * r + j] = u[NunchakuLayout.lowRankIndex(i: i, j: j, rows: p.np, columns: p.rp, down: false)] } }
        return (try vector("bias", n), try vector("smooth", k), try vector("smooth_orig", k), down, up)
    }

    public func readFloat32(_ name: String, rows: Range<Int>, into destination: UnsafeMutableBufferPointer<Float>) throws {
        if let p = prefix(ofWeight: name) {
            let d = dims[p]!
            guard rows.lowerBound >= 0, rows.upperBound <= d.n else { throw WeightSourceError.badRows(source: label, name: name, rows: rows, count: d.n) }
            try readPacked(name, rows: rows, into: destination, shapes: shapes, base: base)
            return
        }
        if let (p, part) = branchPart(name), let d = dims[p] {
            let x = try parts(p)
            let (values, width) = switch part { case "smooth": (x.smooth, 1); case "lora_down": (x.loraDown, d.k); default: (x.loraUp, d.r) }
            guard rows.lowerBound >= 0, rows.upperBound * width <= values.count else {
                throw WeightSourceError.badRows(source: label, name: name, rows: rows, count: values.count / width)
            }
            for (i, v) in values[(rows.lowerBound * width)..<(rows.upperBound * width)].enumerated() { destination[i] = v }
            return
        }
        if name.hasSuffix(".bias"), let p = Optional(String(name.dropLast(".bias".count))), dims[p] != nil {
            let b = try parts(p).bias
            for (i, r) in rows.enumerated() { destination[i] = b[r] }
            return
        }
        try base.readFloat32(name, rows: rows, into: destination)
    }
}

/// `qpack --verify` of a Nunchaku checkpoint.
enum NunchakuVerifier {
    static func verify(_ reader: NunchakuWeights, output: String, source: String?) throws -> PackVerifyReport {
        var report = PackVerifyReport()
        report.layout = "nunchaku"
        var issues: [String] = []
        let ck = reader.checkpoint
        let qc = FormatDetector.quantizationConfig(ck)
        for key in ["quant_method", "method", "weight", "activation", "rank"] where qc?[key] == nil { issues.append("quantization_config has no '\(key)'") }
        let meta = ck.safetensorsMetadata.compactMap { $0 }.flatMap { $0 }
        if !meta.contains(where: { $0.key == "quantization_config" }) { issues.append("model.safetensors has no quantization_config metadata") }
        var owned = Set<String>()
        for p in reader.packedPrefixes {
            owned.formUnion(reader.tensorNames(of: p))
            _ = try reader.unpack(p, rows: 0..<reader.dims[p]!.n)
            _ = try reader.parts(p)
        }
        report.packedLinears = reader.packedPrefixes.count
        report.otherTensors = ck.tensors.filter { !owned.contains($0.name) }.count
        if let source {
            report.comparedWithSource = true
            let s = try Checkpoint(path: source)
            guard s.config?["quantization_config"]?["quant_method"]?.stringValue == "qkit" else { throw PackError.usage("\(source): --source of a nunchaku checkpoint is its qkit checkpoint") }
            let src = try PackSource(s)
            let dt = reader.modelDType
            func stored(_ v: [Float]) -> [UInt32] { v.map { dt.rounding($0).bitPattern } }
            for plan in src.linears {
                guard reader.dims[plan.prefix] != nil else { issues.append("\(plan.prefix) is quantized in the source but not packed"); continue }
                let a = try src.linear(plan), b = try reader.unpack(plan.prefix, rows: 0..<plan.n)
                var c = PackVerifier.compare(a, b, scaleDType: reader.scaleDType(of: plan.prefix))
                // NVFP4's global divisor is stored as its reciprocal (wtscale): compare what is stored.
                if reader.nvfp4 { c.removeAll { $0.contains("global scale") } }
                if reader.nvfp4, (1 / a.globalScale).bitPattern != (1 / b.globalScale).bitPattern, try reader.floats(plan.prefix + ".wtscale")[0] != 1 / a.globalScale {
                    c.append("\(plan.prefix): wtscale is not 1 / the source's global scale")
                }
                issues += c
                let x = try reader.parts(plan.prefix)
                let p = plan.prefix
                if let t = s[p + ".bias"], stored(try readFloats(s, t)) != x.bias.map(\.bitPattern) { issues.append("\(p).bias differs") }
                let smooth = try s[p + ".smooth"].map { try readFloats(s, $0) } ?? [Float](repeating: 1, count: plan.k)
                if stored(smooth) != x.smooth.map(\.bitPattern) || x.smooth != x.smoothOrig { issues.append("\(p).smooth differs") }
                if stored(try readFloats(s, s[p + ".lora_down"]!)) != x.loraDown.map(\.bitPattern) { issues.append("\(p).lora_down differs") }
                if stored(try readFloats(s, s[p + ".lora_up"]!)) != x.loraUp.map(\.bitPattern) { issues.append("\(p).lora_up differs") }
            }
            for t in s.tensors where !src.consumed.contains(t.name) && !(t.name.hasSuffix(".bias") && reader.dims[String(t.name.dropLast(5))] != nil) {
                guard let o = ck[t.name] else { issues.append("\(t.name) is missing"); continue }
                if o.encoding != t.encoding || o.shape != t.shape || !s.data(t).elementsEqual(ck.data(o)) { issues.append("\(t.name) differs from the source") }
            }
        }
        if !issues.isEmpty {
            throw PackError.verifyFailed(path: output, what: issues.prefix(20).joined(separator: "; ") + (issues.count > 20 ? "; … \(issues.count - 20) more" : ""))
        }
        return report
    }
}
