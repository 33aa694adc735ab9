/// The compressed-tensors layouts llm-compressor writes and vLLM / transformers load:
/// `quant_method: "compressed-tensors"` (formats.md §1c). The format of each linear follows its scheme:
///
/// - INT4/INT8 weight-only → `pack-quantized` (W4A16, W8A16; sym or asym; group, channel or tensor):
///   `weight_packed` I32 `[N, ⌈K·b/32⌉]` (codes + 2^(b−1) packed along K), `weight_scale` `[N, K/G]`,
///   `weight_shape` I64 `[2]`, asymmetric `weight_zero_point` I32 `[⌈N·b/32⌉, K/G]` (packed along N).
/// - INT8 with `--w8a8` → `int-quantized` (W8A8, dynamic per-token int8 activations, SmoothQuant's export):
///   `weight` I8 `[N, K]`, `weight_scale` `[N, 1]`.
/// - FP8 E4M3 → `float-quantized` (FP8_DYNAMIC): `weight` F8_E4M3 `[N, K]`, `weight_scale` `[N, 1]` or `[1]`.
/// - NVFP4 → `nvfp4-pack-quantized` (NVFP4A16): `weight_packed` U8 `[N, K/2]` (even column in the low
///   nibble), `weight_scale` F8_E4M3 `[N, K/16]`, `weight_global_scale` F32 `[1]` (a divisor).
///
/// Scales other than NVFP4's are stored in the model's dtype (config.json `torch_dtype`/`dtype`, bf16 if
/// unknown). `scale_dtype`/`zp_dtype` are not written, so compressed-tensors before 0.16 loads the config.
public struct CompressedTensorsLayout: PackLayout {
    /// Write INT8 weights as W8A8 `int-quantized` (dynamic per-token activations) instead of W8A16.
    public var w8a8: Bool

    public var name: String { "compressed-tensors" }
    public var defaultScheme: QuantScheme { QuantScheme(format: .int(bits: 4), granularity: .group(128), symmetric: true) }

    public init(w8a8: Bool = false) { self.w8a8 = w8a8 }

    /// The compressed-tensors format of a scheme, or why there is none.
    func format(of scheme: QuantScheme) -> Result<String, PackError> {
        switch scheme.format {
        case .int(let b):
            if b == 8, w8a8 {
                guard scheme.symmetric else { return .failure(.usage("asymmetric int8 weights with int8 activations (W8A8 weights are symmetric)")) }
                if case .group = scheme.granularity { return .failure(.usage("grouped W8A8 weights (per channel or per tensor: int8:ch)")) }
                return .success("int-quantized")
            }
            guard b == 4 || b == 8 else { return .failure(.usage("\(b)-bit integers (pack-quantized is written for 4 and 8 bits only: older loaders misread 3/5/6/7)")) }
            if !scheme.symmetric, scheme.granularity == .tensor { return .failure(.usage("an asymmetric tensor-wide scale (use groups or :ch)")) }
            return .success("pack-quantized")
        case .fp8E4M3:
            if case .group = scheme.granularity { return .failure(.usage("grouped FP8 (per channel or per tensor: fp8 or fp8:tensor)")) }
            return .success("float-quantized")
        case .nvfp4: return .success("nvfp4-pack-quantized")
        default: return .failure(.usage("\(scheme.format) weights (compressed-tensors formats written: int4/int8, fp8, nvfp4)"))
        }
    }

    public func check(_ plans: [LinearPlan], source: String) throws {
        for p in plans {
            if case .failure(let why) = format(of: p.scheme) {
                throw PackError.unsupported(path: source, backend: name, what: "\(p.prefix): \(why.description)")
            }
            guard !p.hasGroupIndex else {
                throw PackError.unsupported(path: source, backend: name, what: "\(p.prefix): act-order g_idx (compressed-tensors 0.19 has no weight_g_idx; use --to vllm-gptq)")
            }
            if p.unsupportedParts == ["input_scale"], case .success("int-quantized") = format(of: p.scheme) {
                // Static per-tensor activation scales (W8A8 SmoothQuant --static-activations): every linear has one.
                guard plans.allSatisfy({ $0.unsupportedParts.contains("input_scale") }) else {
                    throw PackError.unsupported(path: source, backend: name, what: "static activation scales on some linears only")
                }
                continue
            }
            guard p.unsupportedParts.isEmpty else {
                throw PackError.unsupported(path: source, backend: name, what: "\(p.prefix): \(p.unsupportedParts.joined(separator: ", "))")
            }
        }
    }

    /// The element type of scales: the model's dtype.
    static func modelDType(_ config: JSONValue?) -> DType {
        switch config?["torch_dtype"]?.stringValue ?? config?["dtype"]?.stringValue {
        case "float32"?: .f32
        case "float16"?: .f16
        default: .bf16
        }
    }

    /// Scale shape of a plan: `[1]` per tensor, `[N, 1]` per channel, `[N, K/G]` per group.
    static func scaleShape(_ plan: LinearPlan) -> [Int] {
        plan.scheme.granularity == .tensor ? [1] : [plan.n, plan.groups]
    }

    /// Element type of the scales (INT and FP8): the model's dtype, set from the source config by `adapted(to:)`.
    public var scaleDType: DType = .bf16

    public func adapted(to config: JSONValue?) -> any PackLayout {
        var l = self
        l.scaleDType = Self.modelDType(config)
        return l
    }

    /// A packed source's scales keep their float type (F16 AWQ/GPTQ scales are not rounded to BF16).
    public func keepingScales(_ dtype: DType) -> any PackLayout {
        guard dtype == .f32 || dtype == .f16 || dtype == .bf16 else { return self }
        var l = self
        l.scaleDType = dtype
        return l
    }

    public func outputs(_ plan: LinearPlan) -> [TensorSpec] {
        let p = plan.prefix, (n, k) = (plan.n, plan.k)
        switch (try? format(of: plan.scheme).get()) ?? "" {
        case "pack-quantized":
            let b = plan.scheme.integerBits
            var o = [TensorSpec(name: p + ".weight_packed", dtype: .i32, shape: [n, BitPacking.wordCount(k, bits: b)]),
                     TensorSpec(name: p + ".weight_scale", dtype: scaleDType, shape: Self.scaleShape(plan)),
                     TensorSpec(name: p + ".weight_shape", dtype: .i64, shape: [2])]
            if !plan.scheme.symmetric {
                o.append(TensorSpec(name: p + ".weight_zero_point", dtype: .i32,
                                    shape: [BitPacking.wordCount(n, bits: b), plan.scheme.granularity == .tensor ? 1 : plan.groups]))
            }
            return o
        case "int-quantized":
            var o = [TensorSpec(name: p + ".weight", dtype: .i8, shape: [n, k]),
                     TensorSpec(name: p + ".weight_scale", dtype: scaleDType, shape: Self.scaleShape(plan))]
            if plan.unsupportedParts.contains("input_scale") { o.append(TensorSpec(name: p + ".input_scale", dtype: scaleDType, shape: [1])) }
            return o
        case "float-quantized":
            return [TensorSpec(name: p + ".weight", dtype: .f8E4M3, shape: [n, k]),
                    TensorSpec(name: p + ".weight_scale", dtype: scaleDType, shape: Self.scaleShape(plan))]
        default:
            return [TensorSpec(name: p + ".weight_packed", dtype: .u8, shape: [n, k / 2]),
                    TensorSpec(name: p + ".weight_scale", dtype: .f8E4M3, shape: [n, k / 16]),
                    TensorSpec(name: p + ".weight_global_scale", dtype: .f32, shape: [1])]
        }
    }

    public func pack(_ linear: QuantizedLinear, sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        let (n, k) = (linear.n, linear.k)
        let scales = linear.scaleRows == 1 && linear.scheme.granularity != .tensor
            ? (0..<n).flatMap { _ in linear.scales } : linear.scales
        switch try format(of: linear.scheme).get() {
        case "pack-quantized":
            let b = linear.integerBits
            let words = BitPacking.wordCount(k, bits: b)
            try BitPacking.emit(n * words, to: sink) { (ob: UnsafeMutableBufferPointer<UInt32>) in
                linear.codes.withBiasedBytes { cb, bias in
                    nonisolated(unsafe) let (c, o) = (cb.baseAddress!, ob.baseAddress!)
                    parallelFor((n + 15) / 16) { task in
                        for r in (task * 16)..<min(n, task * 16 + 16) {
                            BitPacking.packRow(c + r * k, count: k, bits: b, bias: bias, into: o + r * words)
                        }
                    }
                }
            }
            try emitFloats(scales, as: scaleDType, sink)
            try [Int64(n), Int64(k)].withUnsafeBytes { try sink($0) }
            if !linear.scheme.symmetric {
                let zeros = linear.zeros!
                let g = linear.scheme.granularity == .tensor ? 1 : linear.groups
                let rowsOfZeros = linear.scheme.granularity == .tensor ? 1 : n
                let zw = BitPacking.wordCount(n, bits: b)
                // [⌈N·b/32⌉, G]: column j is the stream of the N zero points of group j.
                var column = [UInt32](repeating: 0, count: zw)
                var out = [UInt32](repeating: 0, count: zw * g)
                for j in 0..<g {
                    column.withUnsafeMutableBufferPointer { cb in
                        BitPacking.pack(count: n, bits: b, into: cb.baseAddress!) { UInt32(zeros[(rowsOfZeros == 1 ? 0 : $0) * g + j]) }
                    }
                    for w in 0..<zw { out[w * g + j] = column[w] }
                }
                try out.withUnsafeBytes { try sink($0) }
            }
        case "int-quantized":
            try linear.codes.withUnsafeBytes(adding: 128) { try sink($0) }  // in place for qkit's own INT8 codes
            try emitFloats(scales, as: scaleDType, sink)
            if let s = linear.inputScale { try emitFloats([s], as: scaleDType, sink) }
        case "float-quantized":
            try linear.codes.withUnsafeBytes { try sink($0) }
            try emitFloats(scales, as: scaleDType, sink)
        default:
            var packed = [UInt8](repeating: 0, count: n * k / 2)
            for i in 0..<(n * k / 2) { packed[i] = (linear.codes[2 * i] & 0xF) | (linear.codes[2 * i + 1] & 0xF) << 4 }
            try packed.withUnsafeBytes { try sink($0) }
            try linear.scales.map { Conversion.float8E4M3Bits($0) }.withUnsafeBytes { try sink($0) }
            try withUnsafeBytes(of: linear.globalScale) { try sink($0) }
        }
    }

    /// QuantizationArgs of a scheme's weights.
    static func weightArgs(_ s: QuantScheme) -> JSONValue {
        let isInt = s.integerBits > 0
        let (strategy, group): (String, JSONValue) = switch s.granularity {
        case .tensor: ("tensor", .null)
        case .channel: ("channel", .null)
        case .group(let g): (s.format == .nvfp4 ? "tensor_group" : "group", .int(g))
        }
        return .object(JSONObject([
            ("num_bits", .int(isInt ? s.integerBits : s.format.info.elementBits)), ("type", isInt ? "int" : "float"),
            ("symmetric", .bool(s.symmetric)), ("group_size", group), ("strategy", .string(strategy)),
            ("block_structure", .null), ("dynamic", false), ("actorder", .null), ("observer", "minmax"), ("observer_kwargs", .object(JSONObject())),
        ]))
    }

    /// Activation args: dynamic per token (W8A8 int8, FP8_DYNAMIC) or, `isStatic`, one calibrated scale per
    /// tensor (`input_scale`); null for weight-only formats.
    static func inputArgs(_ format: String, static isStatic: Bool = false) -> JSONValue {
        let type: String
        switch format {
        case "int-quantized": type = "int"
        case "float-quantized": type = "float"
        default: return .null
        }
        return .object(JSONObject([
            ("num_bits", 8), ("type", .string(type)), ("symmetric", true), ("group_size", .null), ("strategy", isStatic ? "tensor" : "token"),
            ("block_structure", .null), ("dynamic", .bool(!isStatic)), ("actorder", .null), ("observer", isStatic ? "static_minmax" : .null),
            ("observer_kwargs", .object(JSONObject())),
        ]))
    }

    /// A static FP8 KV cache as llm-compressor writes it: `kv_cache_scheme` QuantizationArgs (8-bit float,
    /// symmetric, static, strategy `tensor` or `attn_head`) and per layer `self_attn.k_scale`/`v_scale` of shape
    /// `[1]` or `[kvHeads, 1, 1]` (compressed-tensors' `initialize_qparams`), kept in F32 (vLLM holds them in
    /// F32). vLLM's compressed-tensors KV cache is FP8 only: INT scales are refused.
    public func kvCacheScheme(_ kv: KVCacheQuantization, source: String) throws -> (scheme: JSONValue, scaleShape: @Sendable (Int) -> [Int]) {
        guard kv.element == .fp8 else {
            throw PackError.unsupported(path: source, backend: name, what: "static int\(kv.bits) KV-cache scales (vLLM's compressed-tensors KV cache is fp8 only: qquant --kv-cache fp8)")
        }
        let head = kv.granularity == .head
        let scheme: JSONValue = .object(JSONObject([
            ("num_bits", 8), ("type", "float"), ("symmetric", true), ("group_size", .null), ("strategy", .string(head ? "attn_head" : "tensor")),
            ("block_structure", .null), ("dynamic", false), ("actorder", .null), ("observer", "minmax"), ("observer_kwargs", .object(JSONObject())),
        ]))
        return (scheme, { head ? [$0, 1, 1] : [$0] })
    }

    /// llm-compressor's `quantization_config`: one config group per distinct scheme (targets `Linear` when
    /// there is one, else the module names), unquantized linears in `ignore`.
    public func quantizationConfig(_ plans: [LinearPlan], floatLinears: [String], config: JSONValue?) -> JSONValue {
        var schemes: [QuantScheme] = []
        for p in plans where !schemes.contains(p.scheme) { schemes.append(p.scheme) }
        var groups = JSONObject()
        var formats: [String] = []
        for (i, s) in schemes.enumerated() {
            let f = (try? format(of: s).get()) ?? "naive-quantized"
            if !formats.contains(f) { formats.append(f) }
            let targets: [JSONValue] = schemes.count == 1 ? ["Linear"] : plans.filter { $0.scheme == s }.map { .string($0.prefix) }
            groups["group_\(i)"] = .object(JSONObject([
                ("format", .string(f)), ("input_activations", Self.inputArgs(f, static: plans.contains { $0.scheme == s && $0.unsupportedParts.contains("input_scale") })), ("output_activations", .null),
                ("targets", .array(targets)), ("weights", Self.weightArgs(s)),
            ]))
        }
        var ignore = floatLinears
        if !plans.contains(where: { $0.prefix == "lm_head" }) { ignore.append("lm_head") }
        return .object(JSONObject([
            ("config_groups", .object(groups)), ("format", .string(formats.count == 1 ? formats[0] : "mixed-precision")),
            ("global_compression_ratio", .null), ("ignore", .array(ignore.map { .string($0) })), ("kv_cache_scheme", .null),
            ("quant_method", "compressed-tensors"), ("quantization_status", "compressed"), ("sparsity_config", .object(JSONObject())),
            ("transform_config", .object(JSONObject())), ("version", "0.19.0"),
        ]))
    }
}

/// A compressed-tensors checkpoint (pack-quantized, int-quantized, float-quantized, nvfp4-pack-quantized)
/// read as a `WeightSource`.
public final class CompressedTensorsWeights: PackedWeightsBase, PackedWeightSource, @unchecked Sendable {
    /// Each packed linear's format and weight scheme.
    var formats: [String: (format: String, scheme: QuantScheme)] = [:]
    public var layoutName: String { "compressed-tensors" }

    /// Opens and checks every quantized linear against the config groups.
    public init(_ ck: Checkpoint) throws {
        super.init(base: ck)
        guard let qc = FormatDetector.quantizationConfig(ck) else { throw fail("config.json has no quantization_config") }
        guard case .object(let groups)? = qc["config_groups"] else { throw fail("quantization_config.config_groups is missing") }
        // Targets of each group: module names, `re:` patterns, or the class name `Linear`.
        var rules: [(targets: [String], weights: JSONValue)] = []
        for (name, g) in groups.members {
            guard let targets = g["targets"]?.arrayValue?.compactMap(\.stringValue), let w = g["weights"], w.objectValue != nil else {
                throw fail("config_groups.\(name) needs targets and weights")
            }
            rules.append((targets, w))
        }
        func args(for prefix: String) -> JSONValue? {
            for r in rules where r.targets.contains(prefix) { return r.weights }
            for r in rules {
                for t in r.targets where t.hasPrefix("re:") {
                    if let re = try? Regex(String(t.dropFirst(3))), (try? re.wholeMatch(in: prefix)) != nil { return r.weights }
                }
            }
            return rules.first { $0.targets.contains("Linear") }?.weights
        }
        for t in ck.tensors where t.name.hasSuffix(".weight_scale") {
            let p = String(t.name.dropLast(".weight_scale".count))
            guard let w = args(for: p) else { throw fail("\(p) matches no config group") }
            guard let bits = w["num_bits"]?.intValue, let type = w["type"]?.stringValue else {
                throw fail("\(p): weights args need num_bits and type")
            }
            let symmetric = w["symmetric"]?.boolValue ?? true
            let strategy = w["strategy"]?.stringValue ?? "tensor"
            if let packed = ck[p + ".weight_packed"] {
                guard packed.shape.count == 2 else { throw fail("\(packed.name) is not 2-D") }
                if type == "float" && bits == 4 {
                    let n = packed.shape[0], k = packed.shape[1] * 2
                    _ = try tensor(p + ".weight_packed", [.u8], nil)
                    _ = try tensor(p + ".weight_scale", [.f8E4M3], [n, k / 16])
                    _ = try tensor(p + ".weight_global_scale", [.f32], [1])
                    guard k % 16 == 0 else { throw fail("\(p): K = \(k) is not a multiple of 16") }
                    formats[p] = ("nvfp4-pack-quantized", QuantScheme(format: .nvfp4))
                    shapes[p] = (n, k)
                    continue
                }
                guard type == "int", (1...8).contains(bits) else { throw fail("\(p): \(type) \(bits)-bit packed weights are not read") }
                _ = try tensor(p + ".weight_packed", [.i32], nil)
                let shape = try tensor(p + ".weight_shape", [.i64, .i32], [2])
                guard let dims = FormatDetector.readIntegers(shape, ck), dims.count == 2, dims[0] == packed.shape[0], dims[1] > 0,
                    BitPacking.wordCount(dims[1], bits: bits) == packed.shape[1]
                else { throw fail("\(p).weight_shape does not match weight_packed \(packed.shape) at \(bits) bits") }
                let (n, k) = (dims[0], dims[1])
                let s = try tensor(p + ".weight_scale", [.f32, .f16, .bf16], nil)
                let granularity = try Self.granularity(strategy, w, scale: s, n: n, k: k, fail: fail)
                if !symmetric {
                    let cols = s.shape.count == 2 ? s.shape[1] : 1
                    _ = try tensor(p + ".weight_zero_point", [.i32], [BitPacking.wordCount(s.shape.count == 2 ? n : 1, bits: bits), cols])
                }
                formats[p] = ("pack-quantized", QuantScheme(format: .int(bits: bits), granularity: granularity, symmetric: symmetric))
                shapes[p] = (n, k)
            } else if let wt = ck[p + ".weight"], wt.shape.count == 2 {
                let (n, k) = (wt.shape[0], wt.shape[1])
                let s = try tensor(p + ".weight_scale", [.f32, .f16, .bf16], nil)
                let granularity = try Self.granularity(strategy, w, scale: s, n: n, k: k, fail: fail)
                if type == "int" {
                    guard bits == 8, symmetric else { throw fail("\(p): int-quantized weights other than symmetric int8 are not read") }
                    _ = try tensor(p + ".weight", [.i8], nil)
                    formats[p] = ("int-quantized", QuantScheme(format: .int(bits: 8), granularity: granularity, symmetric: true))
                } else {
                    _ = try tensor(p + ".weight", [.f8E4M3], nil)
                    formats[p] = ("float-quantized", QuantScheme(format: .fp8E4M3, granularity: granularity))
                }
                shapes[p] = (n, k)
            } else {
                throw fail("\(t.name) has no weight_packed or weight beside it")
            }
        }
    }

    /// The granularity a strategy and scale shape describe.
    static func granularity(_ strategy: String, _ w: JSONValue, scale s: CheckpointTensor, n: Int, k: Int,
                            fail: (String) -> PackError) throws -> QuantGranularity {
        switch strategy {
        case "tensor":
            guard s.elementCount == 1 else { throw fail("\(s.name): a tensor strategy has one scale, not \(s.shape)") }
            return .tensor
        case "channel":
            guard s.shape == [n, 1] else { throw fail("\(s.name) has shape \(s.shape), expected [\(n), 1]") }
            return .channel
        case "group":
            guard let g = w["group_size"]?.intValue, g > 0, k % g == 0, s.shape == [n, k / g] else {
                throw fail("\(s.name) has shape \(s.shape), which does not fit group_size \(w["group_size"].map { $0.serialized() } ?? "null") and K = \(k)")
            }
            return .group(g)
        default: throw fail("\(s.name): strategy '\(strategy)' is not read")
        }
    }

    public func scaleDType(of prefix: String) -> DType {
        if case .dtype(let d)? = checkpoint[prefix + ".weight_scale"]?.encoding { return d }
        return .bf16
    }

    public func tensorNames(of prefix: String) -> [String] {
        ["weight_packed", "weight", "weight_scale", "weight_shape", "weight_zero_point", "weight_global_scale"]
            .map { prefix + "." + $0 }.filter { checkpoint[$0] != nil }
    }

    public func unpack(_ prefix: String, rows: Range<Int>) throws -> QuantizedLinear {
        guard let (_, k) = shapes[prefix], let (format, scheme) = formats[prefix] else { throw fail("no packed linear \(prefix)") }
        let ck = checkpoint, m = rows.count
        let st = ck[prefix + ".weight_scale"]!
        let scaleRows = st.elementCount == 1 ? 1 : m
        let groups = st.elementCount == 1 ? 1 : st.shape[1]
        var codes = [UInt8](repeating: 0, count: m * k)
        var zeros: [UInt8]?
        var scales: [Float]
        var global: Float = 1
        if format == "nvfp4-pack-quantized" {
            let raw = ck.data(ck[prefix + ".weight_packed"]!)
            for (i, r) in rows.enumerated() {
                for c in 0..<(k / 2) {
                    let byte = raw[r * (k / 2) + c]
                    codes[i * k + 2 * c] = byte & 0xF
                    codes[i * k + 2 * c + 1] = byte >> 4
                }
            }
            let sraw = ck.data(st)
            scales = (0..<(m * groups)).map { Conversion.e4m3Table[Int(sraw[rows.lowerBound * groups + $0])] }
            global = ck.data(ck[prefix + ".weight_global_scale"]!).loadUnaligned(as: Float.self)
        } else {
            let all = try readFloats(ck, st)
            scales = scaleRows == 1 ? all : Array(all[(rows.lowerBound * groups)..<(rows.upperBound * groups)])
            if format == "pack-quantized" {
                let b = scheme.integerBits
                let words = BitPacking.wordCount(k, bits: b)
                let raw = ck.data(ck[prefix + ".weight_packed"]!)
                codes.withUnsafeMutableBufferPointer { cb in
                    nonisolated(unsafe) let c = cb.baseAddress!
                    parallelFor((m + 15) / 16) { task in
                        for i in (task * 16)..<min(m, task * 16 + 16) {
                            let row = raw.baseAddress! + 4 * words * (rows.lowerBound + i)
                            for kk in 0..<k { c[i * k + kk] = UInt8(BitPacking.field(row, kk, bits: b)) }
                        }
                    }
                }
                if scheme.symmetric {
                    zeros = [UInt8](repeating: UInt8(1 << (b - 1)), count: scaleRows * groups)
                } else {
                    let zt = ck[prefix + ".weight_zero_point"]!
                    let zraw = ck.data(zt)
                    let zw = zt.shape[0]
                    var z = [UInt8](repeating: 0, count: scaleRows * groups)
                    var column = [UInt32](repeating: 0, count: zw + 1)
                    for j in 0..<groups {
                        for w in 0..<zw { column[w] = zraw.loadUnaligned(fromByteOffset: 4 * (w * groups + j), as: UInt32.self) }
                        column.withUnsafeBytes { cb in
                            for i in 0..<scaleRows {
                                let r = scaleRows == 1 ? 0 : rows.lowerBound + i
                                z[i * groups + j] = UInt8(BitPacking.field(cb.baseAddress!, r, bits: b))
                            }
                        }
                    }
                    zeros = z
                }
            } else {
                let raw = ck.data(ck[prefix + ".weight"]!)
                for i in 0..<(m * k) { codes[i] = raw[rows.lowerBound * k + i] }
                if format == "int-quantized" {
                    for i in 0..<(m * k) { codes[i] = codes[i] &+ 128 }
                    zeros = [UInt8](repeating: 128, count: scaleRows * groups)
                }
            }
        }
        return QuantizedLinear(prefix: prefix, scheme: scheme, rows: rows, k: k, codes: codes, scales: scales, scaleRows: scaleRows,
                               groups: groups, zeros: zeros, groupIndex: nil, globalScale: global)
    }

    public func readFloat32(_ name: String, rows: Range<Int>, into destination: UnsafeMutableBufferPointer<Float>) throws {
        try readPacked(name, rows: rows, into: destination, shapes: shapes, base: base)
    }
}
