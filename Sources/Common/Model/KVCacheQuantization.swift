/// Quantization of the KV cache, simulated in f32: the keys (after the q/k norms and RoPE) and the values of
/// every token are rounded to what a quantized cache would store and read back before attention uses them,
/// so perplexity measures the cache's loss (../shared/specs/algorithms.md §4.8).
///
/// Two kinds:
/// - dynamic (the QServe KV4 scheme): asymmetric `bits`-bit integers with one scale and integer zero point per
///   head per token (a group of `head_dim` values), taken from that group's range. As every asymmetric INT in
///   qkit the range is widened to contain 0: `s = (max(hi, 0) − min(lo, 0)) / (2^b − 1)`,
///   `z = clamp(round(−min(lo, 0)/s), 0, 2^b − 1)`, `x̂ = (clamp(round(x/s + z), 0, 2^b − 1) − z) · s`;
/// - static: symmetric codes with calibrated scales, one per layer for the keys and one for the values
///   (`.tensor`, vLLM's `k_scale`/`v_scale`) or one per KV head (`.head`): INT (`x̂ = clamp(round(x/s),
///   −2^(b−1), 2^(b−1) − 1) · s`) or FP8 E4M3 (`x̂ = e4m3(x/s) · s`, saturating at ±448).
///
/// Rounding is to nearest, ties to even. A `KVCacheQuantization` belongs to one block (static scales are per
/// layer); `DecoderModel` builds it from `quantization_config.kv_cache_format` (`man 5 qkit`).
public struct KVCacheQuantization: Sendable, Equatable {
    /// The element type of the cache.
    public enum Element: String, Sendable {
        /// Integers: asymmetric when dynamic, symmetric when static.
        case int
        /// FP8 E4M3 with a static scale.
        case fp8
    }

    /// Granularity of static scales.
    public enum ScaleGranularity: String, Sendable {
        /// One scale for all heads of the layer (vLLM `k_scale`/`v_scale`).
        case tensor
        /// One scale per KV head.
        case head
    }

    /// Calibrated scales of one layer: one (`.tensor`) or one per KV head (`.head`), for keys and values.
    public struct StaticScales: Sendable, Equatable {
        public var key: [Float]
        public var value: [Float]
        public init(key: [Float], value: [Float]) {
            self.key = key
            self.value = value
        }
    }

    public var element: Element
    /// Integer width (2 to 8; 8 for FP8).
    public var bits: Int
    /// Granularity of the static scales (ignored when dynamic).
    public var granularity: ScaleGranularity
    /// The static scales of this block's layer, or `nil`: dynamic per head per token (INT only).
    public var scales: StaticScales?

    /// Dynamic asymmetric INT, per head per token (`bits` 4: QServe's KV4).
    public init(bits: Int) {
        element = .int
        self.bits = bits
        granularity = .head
        scales = nil
    }

    /// Static scales (symmetric INT, or FP8 with `bits` 8).
    public init(element: Element, bits: Int, granularity: ScaleGranularity, scales: StaticScales?) {
        self.element = element
        self.bits = bits
        self.granularity = granularity
        self.scales = scales
    }

    /// Whether scales come from each token's values rather than from calibration.
    public var isDynamic: Bool { scales == nil && element == .int && !isStaticRecord }
    /// Set by `init(json:)` when the record is static: the scales are then filled in per layer.
    var isStaticRecord = false

    /// Checks the combination: INT of 2 to 8 bits, FP8 of 8 bits with static scales, scale counts.
    public func validate(kvHeads: Int) throws(SchemeError) {
        switch element {
        case .int: guard (2...8).contains(bits) else { throw SchemeError("KV cache: integer widths are 2 to 8 bits, not \(bits)") }
        case .fp8:
            guard bits == 8 else { throw SchemeError("KV cache: fp8 is 8 bits, not \(bits)") }
            guard scales != nil || isStaticRecord else { throw SchemeError("KV cache: fp8 needs static scales") }
        }
        if let s = scales {
            let n = granularity == .tensor ? 1 : kvHeads
            guard s.key.count == n, s.value.count == n else {
                throw SchemeError("KV cache: \(granularity.rawValue) scales need \(n) key and \(n) value scales, not \(s.key.count) and \(s.value.count)")
            }
            guard (s.key + s.value).allSatisfy({ $0.isFinite && $0 > 0 }) else { throw SchemeError("KV cache: static scales must be positive and finite") }
        }
    }

    /// Quantizes and dequantizes, in place, the keys and values of `rows` rows laid out as `BlockObserver`
    /// sees them: row `r` at `qkv + r·stride`, keys from `qDim`, values from `qDim + kvDim`, `kvDim / headDim`
    /// heads each.
    public func apply(_ qkv: UnsafeMutablePointer<Float>, rows: Int, stride: Int, qDim: Int, kvDim: Int, headDim: Int) {
        let heads = kvDim / headDim
        let levels = Float((1 << bits) - 1)
        nonisolated(unsafe) let qkv = qkv
        Kernels.parallelChunks(rows, minimum: 16) { range in
            for r in range {
                for part in 0..<2 {
                    let base = qkv + r * stride + qDim + part * kvDim
                    for h in 0..<heads {
                        let x = base + h * headDim
                        if let s = self.scales {
                            let list = part == 0 ? s.key : s.value
                            let scale = list[self.granularity == .tensor ? 0 : h]
                            if self.element == .fp8 {
                                Self.roundTripFP8(x, count: headDim, scale: scale)
                            } else {
                                let hi = Float((1 << (self.bits - 1)) - 1)
                                Self.roundTrip(x, count: headDim, scale: scale, zero: 0, lo: -hi - 1, hi: hi)
                            }
                        } else {
                            let range = RTN.range(x, count: headDim)
                            let lo = min(range.minimum, 0), hi = max(range.maximum, 0)
                            let scale = (hi - lo) / levels
                            guard scale > 0, scale.isFinite else { continue }   // an all-zero head is stored exactly
                            let zero = min(max(-lo / scale, 0), levels).rounded(.toNearestOrEven)
                            Self.roundTrip(x, count: headDim, scale: scale, zero: zero, lo: 0, hi: levels)
                        }
                    }
                }
            }
        }
    }

    /// `x = (clamp(round(x/s + z), lo, hi) − z) · s`, eight at a time.
    @inline(__always)
    static func roundTrip(_ x: UnsafeMutablePointer<Float>, count: Int, scale s: Float, zero z: Float, lo: Float, hi: Float) {
        let magic: Float = 12_582_912   // 1.5·2^23: adding and subtracting it rounds ties to even
        var i = 0
        let raw = UnsafeMutableRawPointer(x)
        while i + 8 <= count {
            var v = raw.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self) / SIMD8(repeating: s) + SIMD8(repeating: z)
            v = v.replacing(with: SIMD8(repeating: lo), where: v .< lo).replacing(with: SIMD8(repeating: hi), where: v .> hi)
            v = (v + SIMD8(repeating: magic)) - SIMD8(repeating: magic)
            raw.storeBytes(of: (v - SIMD8(repeating: z)) * SIMD8(repeating: s), toByteOffset: 4 * i, as: SIMD8<Float>.self)
            i += 8
        }
        while i < count {
            var v = x[i] / s + z
            v = v < lo ? lo : (v > hi ? hi : v)
            x[i] = (((v + magic) - magic) - z) * s
            i += 1
        }
    }

    /// `x = e4m3(x/s) · s`, saturating at ±448.
    static func roundTripFP8(_ x: UnsafeMutablePointer<Float>, count: Int, scale s: Float) {
        for i in 0..<count {
            let v = min(max(x[i] / s, -448), 448)
            x[i] = Conversion.e4m3Table[Int(Conversion.float8E4M3Bits(v))] * s
        }
    }

    /// The recipe's `kv_cache_format` record (static scales are not in it: they are per layer tensors,
    /// `model.layers.N.self_attn.k_scale` and `v_scale`).
    public var json: JSONValue {
        let dynamic = scales == nil && !isStaticRecord
        return .object(JSONObject([
            ("format", .string(element.rawValue)), ("bits", .int(bits)), ("sym", .bool(!dynamic)),
            ("granularity", .string(dynamic ? "head" : granularity.rawValue)), ("dynamic", .bool(dynamic)),
        ]))
    }

    /// Reads a `kv_cache_format` record (`nil` when absent, null or not understood). A static record gives a
    /// value without scales: the model reads them per layer.
    public init?(json: JSONValue?) {
        guard let o = json?.objectValue, let f = o["format"]?.stringValue, let element = Element(rawValue: f),
              let bits = o["bits"]?.intValue else { return nil }
        let dynamic = o["dynamic"]?.boolValue ?? true
        if dynamic {
            guard element == .int, (2...8).contains(bits) else { return nil }
            self.init(bits: bits)
        } else {
            guard let g = ScaleGranularity(rawValue: o["granularity"]?.stringValue ?? "tensor"),
                  element == .fp8 ? bits == 8 : (2...8).contains(bits) else { return nil }
            self.init(element: element, bits: bits, granularity: g, scales: nil)
            isStaticRecord = true
        }
    }

    /// This (static) record with the scales of one layer.
    public func with(scales: StaticScales) -> KVCacheQuantization {
        var k = self
        k.scales = scales
        return k
    }
}

// MARK: - Static scales from calibration

extension KVCacheQuantization {
    /// A static record whose scales are calibrated per layer (`qquant --kv-cache`): symmetric INT of `bits`
    /// (2 to 8) or FP8 E4M3 (`bits` 8), one scale per layer (`.tensor`) or per KV head (`.head`).
    public static func calibrated(element: Element, bits: Int, granularity: ScaleGranularity) -> KVCacheQuantization {
        var k = KVCacheQuantization(element: element, bits: bits, granularity: granularity, scales: nil)
        k.isStaticRecord = true
        return k
    }

    /// Whether the scales are static (calibrated, read per layer from `self_attn.k_scale`/`v_scale`).
    public var isStatic: Bool { !isDynamic }

    /// The largest code magnitude of a static cache: 448 for FP8 E4M3, `2^(b−1) − 1` for INT.
    public var maximumCode: Float { element == .fp8 ? 448 : Float((1 << (bits - 1)) - 1) }

    /// The static scales of one layer from the per-channel absolute maxima of its keys (after RoPE) and values
    /// (`kvDim` each, head `h` at channels `h·headDim ..< (h+1)·headDim`): `s = absmax / maximumCode` over the
    /// layer (`.tensor`) or over each head (`.head`), as llm-compressor and vLLM compute them (`absmax/448`
    /// for FP8). A head that was always zero gets scale 1 (it stores zeros exactly whatever the scale).
    public func scales(keyAbsmax: [Float], valueAbsmax: [Float], headDim: Int) -> StaticScales {
        func reduce(_ m: [Float]) -> [Float] {
            let heads = granularity == .tensor ? [0..<m.count]
                : stride(from: 0, to: m.count, by: headDim).map { $0..<min(m.count, $0 + headDim) }
            return heads.map { r in
                let a = m[r].max() ?? 0
                return a > 0 && a.isFinite ? a / maximumCode : 1
            }
        }
        return StaticScales(key: reduce(keyAbsmax), value: reduce(valueAbsmax))
    }

    /// The names of layer `layer`'s static scale tensors (F32, `[1]` or `[kvHeads]`; vLLM's names).
    public static func scaleTensorNames(layer: Int) -> (key: String, value: String) {
        let p = "model.layers.\(layer).self_attn."
        return (p + "k_scale", p + "v_scale")
    }

    /// A short description for tables: `fp8 static per tensor`, `int4 dynamic per head per token`.
    public var summary: String {
        let name = element == .fp8 ? "fp8" : "int\(bits)"
        if isDynamic { return name + " asym dynamic per head per token" }
        return name + " static per " + (granularity == .tensor ? "tensor" : "head") + " (self_attn.k_scale, v_scale)"
    }

    /// The KV-cache quantization a `config.json` records: qkit's `kv_cache_format` (in `quantization_config` or
    /// a fake-quantized model's recipe), or compressed-tensors' `kv_cache_scheme` (static, symmetric, `tensor`
    /// or `attn_head`; the scales are the per-layer `self_attn.k_scale`/`v_scale`); `nil` when there is none.
    public static func recorded(in config: JSONValue?) -> KVCacheQuantization? {
        for key in ["quantization_config", QKitConfig.fakeKey] {
            if let k = KVCacheQuantization(json: config?[key]?["kv_cache_format"]) { return k }
        }
        return KVCacheQuantization(compressedTensors: config?["quantization_config"]?["kv_cache_scheme"])
    }

    /// Reads compressed-tensors' `kv_cache_scheme` (QuantizationArgs): 8-bit float or 2-8-bit int, symmetric,
    /// static, strategy `tensor` or `attn_head`; `nil` for null or anything else.
    public init?(compressedTensors json: JSONValue?) {
        guard let o = json?.objectValue, let bits = o["num_bits"]?.intValue, let type = o["type"]?.stringValue,
              o["symmetric"]?.boolValue ?? true, o["dynamic"]?.boolValue == false else { return nil }
        let granularity: ScaleGranularity
        switch o["strategy"]?.stringValue ?? "tensor" {
        case "tensor": granularity = .tensor
        case "attn_head": granularity = .head
        default: return nil
        }
        switch type {
        case "float" where bits == 8: self = .calibrated(element: .fp8, bits: 8, granularity: granularity)
        case "int" where (2...8).contains(bits): self = .calibrated(element: .int, bits: bits, granularity: granularity)
        default: return nil
        }
    }
}
