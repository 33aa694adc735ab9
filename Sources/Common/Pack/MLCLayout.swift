/// MLC-LLM's group quantization (`q4f16_1`, `q4f16_0`, `q4f16_2`, `q4f32_1`, `q4bf16_1`, `q4bf16_0`, `q3f16_1`,
/// `q3f16_0`) and parameter naming, as `mlc_llm convert_weight` produces them (formats.md §3a; mlc-ai/mlc-llm:
/// quantization/quantization.py, quantization/group_quantization.py, loader/standard_loader.py,
/// model/{llama,mistral,qwen2,qwen3}). The container is `MLC.swift`.
///
/// Per linear `[N, K]` (and the embedding `[vocab, H]`): `q_weight` uint32 `[N, ⌈K/G⌉·G/epw]`, `epw = 32 / bits`
/// codes per word, element r of a word at bits `r·bits` along K, codes past K (and whole padding words) 0;
/// `q_scale` in the model dtype `[N, ⌈K/G⌉]`. Dequantization is `(q − max_int)·scale` with the zero point fixed at
/// `max_int = 2^(bits−1) − 1` (7 or 3). The KN presets (`_0`) store the linears' two arrays transposed
/// (`[⌈K/G⌉·G/epw, N]`, `[⌈K/G⌉, N]`; still packed along K), never the embedding's; `q4f16_2` leaves the embedding
/// and lm_head unquantized (`.weight` in the model dtype).
public struct MLCPreset: Sendable, Equatable, CustomStringConvertible {
    /// The preset name (`q4f16_1`).
    public var name: String
    public var bits: Int
    public var groupSize: Int
    /// The model dtype every step of the quantizer rounds to, and the dtype of scales and float parameters (F16, BF16
    /// or F32).
    public var modelDType: DType
    /// MLC's `linear_weight_layout == "KN"`: every quantized linear's `q_weight` and `q_scale` are stored transposed,
    /// `[⌈K/G⌉·G/epw, N]` and `[⌈K/G⌉, N]` (the NK arrays transposed; the embedding is never transposed).
    public var transposed = false
    /// MLC's `quantize_embedding`: the embedding is `q_weight`/`q_scale`, else `.weight` in the model dtype.
    public var quantizesEmbedding = true
    /// MLC's `quantize_final_fc`: lm_head is `q_weight`/`q_scale`, else `.weight` in the model dtype.
    public var quantizesFinalFC = true

    public static let q4f16_1 = MLCPreset(name: "q4f16_1", bits: 4, groupSize: 32, modelDType: .f16)
    public static let q4f16_0 = MLCPreset(name: "q4f16_0", bits: 4, groupSize: 32, modelDType: .f16, transposed: true)
    public static let q4f32_1 = MLCPreset(name: "q4f32_1", bits: 4, groupSize: 32, modelDType: .f32)
    public static let q4bf16_0 = MLCPreset(name: "q4bf16_0", bits: 4, groupSize: 32, modelDType: .bf16, transposed: true)
    public static let q4bf16_1 = MLCPreset(name: "q4bf16_1", bits: 4, groupSize: 32, modelDType: .bf16)
    public static let q4f16_2 = MLCPreset(name: "q4f16_2", bits: 4, groupSize: 32, modelDType: .f16, quantizesEmbedding: false, quantizesFinalFC: false)
    public static let q3f16_0 = MLCPreset(name: "q3f16_0", bits: 3, groupSize: 40, modelDType: .f16, transposed: true)
    public static let q3f16_1 = MLCPreset(name: "q3f16_1", bits: 3, groupSize: 40, modelDType: .f16)
    /// The presets qpack writes and reads (MLC's group-quantization table, formats.md §3a), the default first.
    public static let all = [q4f16_1, q4f16_0, q4f16_2, q4f32_1, q4bf16_1, q4bf16_0, q3f16_1, q3f16_0]

    /// The preset named `name`, or `nil`.
    public static func named(_ name: String) -> MLCPreset? { all.first { $0.name == name } }
    /// The preset names, comma-separated (for messages).
    public static var names: String { all.map(\.name).joined(separator: ", ") }

    public var description: String { name }
    /// Codes per uint32 word (8 for int4, 10 for int3: the top 2 bits unused).
    public var elementsPerWord: Int { 32 / bits }
    /// The implicit zero point.
    public var maxInt: Int { (1 << (bits - 1)) - 1 }
    /// The TVM dtype of scales and float parameters.
    public var tvmModelDType: String {
        switch modelDType {
        case .f16: "float16"
        case .bf16: "bfloat16"
        default: "float32"
        }
    }
    /// Groups of a row of `k`.
    public func groups(_ k: Int) -> Int { (k + groupSize - 1) / groupSize }
    /// uint32 words of a packed row of `k`.
    public func words(_ k: Int) -> Int { groups(k) * (groupSize / elementsPerWord) }
    /// The dtype scales and float parameters are read back in: F16, or BF16 (bfloat16 presets, and F32 values stored
    /// through TVM's f32-to-bf16 encoding).
    public var storedScaleDType: DType { modelDType == .f16 ? .f16 : .bf16 }
    /// The stored bits of a float parameter or scale `x` (F16; bf16 rounded to nearest even as ml_dtypes casts; F32
    /// as TVM's f32-to-bf16 encoding writes it).
    public func storedBits(_ x: Float) -> UInt16 {
        switch modelDType {
        case .f16: Float16(x).bitPattern
        case .bf16: Conversion.bfloat16Bits(x)
        default: TensorCache.bfloat16Bits(x)
        }
    }
    /// The value a float parameter or scale `x` reads back as.
    public func stored(_ x: Float) -> Float {
        modelDType == .f16 ? Float(Float16(x)) : Conversion.float(fromBFloat16Bits: storedBits(x))
    }
    /// Whether a quantized parameter's arrays are stored transposed (KN presets, linears only).
    public func transposes(embedding: Bool) -> Bool { transposed && !embedding }
    /// The shape of a quantized parameter's `q_weight` (`n` rows of `k`) as stored.
    public func qWeightShape(n: Int, k: Int, embedding: Bool) -> [Int] { transposes(embedding: embedding) ? [words(k), n] : [n, words(k)] }
    /// The shape of a quantized parameter's `q_scale` as stored.
    public func qScaleShape(n: Int, k: Int, embedding: Bool) -> [Int] { transposes(embedding: embedding) ? [groups(k), n] : [n, groups(k)] }
    /// The qkit scheme whose codes an MLC preset holds: `intB:gG:asym` (zero points equal to max_int).
    public var qkitScheme: QuantScheme { QuantScheme(format: .int(bits: bits), granularity: .group(groupSize), symmetric: false) }

    /// Quantizes `rows` rows of `k` F32 weights as MLC's `GroupQuantize._quantize` does on CPU: the weight cast to
    /// the model dtype; per group `scale = max|w| / max_int`; `q = clamp(round(w / scale + max_int), 0, 2·max_int)`,
    /// every operation rounded to the model dtype, ties to even; an all-zero group gets scale 0 and codes 0.
    /// Codes go to `codes` (`rows × k`), scales (in the model dtype's values) to `scales` (`rows × groups(k)`).
    ///
    /// TVM computes a bf16 operation in F32 and rounds the result to bf16 (nearest even); F32 carries more than
    /// twice bf16's 8 significant bits plus 2, so that equals the correctly rounded bf16 operation.
    public func quantize(_ weights: UnsafePointer<Float>, rows: Int, k: Int, codes: UnsafeMutablePointer<UInt8>, scales: UnsafeMutablePointer<Float>) {
        let g = groups(k), gs = groupSize, maxInt = maxInt
        nonisolated(unsafe) let (w, c, s) = (weights, codes, scales)
        let dtype = modelDType
        parallelFor((rows + 15) / 16) { task in
            for r in (task * 16)..<min(rows, task * 16 + 16) {
                for j in 0..<g {
                    let lo = j * gs, hi = min(k, lo + gs)
                    switch dtype {
                    case .f16:
                        var m: Float16 = 0
                        for i in lo..<hi { m = max(m, abs(Float16(w[r * k + i]))) }
                        let scale = m / Float16(maxInt)
                        s[r * g + j] = Float(scale)
                        for i in lo..<hi {
                            guard scale != 0 else { c[r * k + i] = 0; continue }
                            let t = Float16(w[r * k + i]) / scale
                            let u = (t + Float16(maxInt)).rounded(.toNearestOrEven)
                            c[r * k + i] = u.isNaN ? 0 : UInt8(min(max(u, 0), Float16(2 * maxInt)))
                        }
                    case .bf16:
                        // Every step rounded to bf16: the weight, the scale, w / scale and w / scale + max_int.
                        @inline(__always) func bf(_ x: Float) -> Float { Conversion.float(fromBFloat16Bits: Conversion.bfloat16Bits(x)) }
                        var m: Float = 0
                        for i in lo..<hi { m = max(m, abs(bf(w[r * k + i]))) }
                        let scale = bf(m / Float(maxInt))
                        s[r * g + j] = scale
                        for i in lo..<hi {
                            guard scale != 0 else { c[r * k + i] = 0; continue }
                            let t = bf(bf(w[r * k + i]) / scale)
                            let u = bf(t + Float(maxInt)).rounded(.toNearestOrEven)
                            c[r * k + i] = u.isNaN ? 0 : UInt8(min(max(u, 0), Float(2 * maxInt)))
                        }
                    default:
                        var m: Float = 0
                        for i in lo..<hi { m = max(m, abs(w[r * k + i])) }
                        let scale = m / Float(maxInt)
                        s[r * g + j] = scale
                        for i in lo..<hi {
                            guard scale != 0 else { c[r * k + i] = 0; continue }
                            let u = (w[r * k + i] / scale + Float(maxInt)).rounded(.toNearestOrEven)
                            c[r * k + i] = u.isNaN ? 0 : UInt8(min(max(u, 0), Float(2 * maxInt)))
                        }
                    }
                }
            }
        }
    }

    /// Packs `rows × k` codes into `rows × words(k)` words.
    public func pack(_ codes: UnsafePointer<UInt8>, rows: Int, k: Int, into words: UnsafeMutablePointer<UInt32>) {
        let wpr = self.words(k), epw = elementsPerWord, bits = bits
        nonisolated(unsafe) let (c, o) = (codes, words)
        parallelFor((rows + 63) / 64) { task in
            for r in (task * 64)..<min(rows, task * 64 + 64) {
                for w in 0..<wpr {
                    var word: UInt32 = 0
                    let base = w * epw
                    for e in 0..<epw where base + e < k { word |= UInt32(c[r * k + base + e]) << UInt32(e * bits) }
                    o[r * wpr + w] = word
                }
            }
        }
    }

    /// Unpacks `rows × words(k)` words into `rows × k` codes.
    public func unpack(_ words: UnsafeRawPointer, rows: Int, k: Int, into codes: UnsafeMutablePointer<UInt8>) {
        let wpr = self.words(k), epw = elementsPerWord, bits = bits
        let mask = UInt32((1 << bits) - 1)
        for r in 0..<rows {
            for i in 0..<k {
                let word = words.loadUnaligned(fromByteOffset: 4 * (r * wpr + i / epw), as: UInt32.self)
                codes[r * k + i] = UInt8((word >> UInt32((i % epw) * bits)) & mask)
            }
        }
    }

    /// Why a qkit scheme cannot be held by this preset, or `nil`: MLC stores `bits`-bit integers in groups of
    /// `groupSize` along K with one scale per group and row, nothing else.
    public func refusal(_ plan: LinearPlan) -> String? {
        guard plan.scheme.format == .int(bits: bits) else { return "\(plan.prefix): \(plan.scheme) (\(name) holds int\(bits) codes only)" }
        guard plan.scheme.granularity == .group(groupSize), plan.scaleRows == plan.n else {
            return "\(plan.prefix): \(plan.scheme.granularity) scales (\(name) has groups of \(groupSize) along K: :g\(groupSize))"
        }
        if plan.hasGroupIndex { return "\(plan.prefix): act-order (g_idx)" }
        if !plan.unsupportedParts.isEmpty { return "\(plan.prefix): \(plan.unsupportedParts.joined(separator: ", "))" }
        return nil
    }

    /// Converts a canonical linear (codes `u`, zero `z`) to MLC's codes `u − z + max_int`, which must fit in `bits`
    /// bits (`0…2^bits − 1`): MLC's zero point is fixed, so a group whose codes reach farther cannot be stored.
    /// Returns the converted codes, or the first element that does not fit.
    public func mlcCodes(_ q: QuantizedLinear) -> Result<[UInt8], MLCCodeRangeError> {
        let codes = q.codes.array
        var out = [UInt8](repeating: 0, count: codes.count)
        let top = (1 << bits) - 1
        for r in 0..<q.n {
            for c in 0..<q.k {
                let g = q.group(ofColumn: c)
                let z = Int(q.zeros?[(q.scaleRows == 1 ? 0 : r) * q.groups + g] ?? 0)
                let v = Int(codes[r * q.k + c]) - z + maxInt
                guard v >= 0, v <= top else {
                    return .failure(MLCCodeRangeError(row: r, column: c, code: Int(codes[r * q.k + c]) - z, lowest: -maxInt, highest: top - maxInt))
                }
                out[r * q.k + c] = UInt8(v)
            }
        }
        return .success(out)
    }
}

/// A quantized value `code − zero` outside what MLC's fixed zero point can store.
public struct MLCCodeRangeError: Error, Sendable {
    public var row: Int, column: Int, code: Int, lowest: Int, highest: Int
}

/// How MLC names and fuses one model family's parameters (its loader's mapping from Hugging Face names).
public struct MLCFamily: Sendable {
    /// `model_type` of config.json and of mlc-chat-config.json.
    public var modelType: String
    /// The fused q/k/v module: `qkv_proj` (Llama, Mistral) or `c_attn` (Qwen2, Qwen3).
    public var attention: String
    /// Whether the fused attention module has a bias (q, k, v biases concatenated).
    public var attentionBias: Bool
    /// Whether attention has per-head `q_norm`/`k_norm` (Qwen3).
    public var headNorms: Bool
    /// Whether MLC's model ties lm_head to the embedding when config.json says so (Mistral's never does).
    public var canTie: Bool

    /// The family of a config.json, or `nil` when MLC packing does not know it.
    public static func of(_ config: JSONValue?) -> MLCFamily? {
        switch config?["model_type"]?.stringValue {
        case "llama": MLCFamily(modelType: "llama", attention: "qkv_proj", attentionBias: false, headNorms: false, canTie: true)
        case "mistral": MLCFamily(modelType: "mistral", attention: "qkv_proj", attentionBias: false, headNorms: false, canTie: false)
        case "qwen2": MLCFamily(modelType: "qwen2", attention: "c_attn", attentionBias: true, headNorms: false, canTie: true)
        case "qwen3":
            MLCFamily(modelType: "qwen3", attention: "c_attn", attentionBias: config?["attention_bias"]?.boolValue ?? false, headNorms: true,
                      canTie: true)
        default: nil
        }
    }

    /// One MLC parameter and the Hugging Face tensors it is made of (rows concatenated in order).
    public struct Parameter: Sendable {
        /// MLC's module or tensor name (`model.layers.0.self_attn.qkv_proj`, `model.norm.weight`).
        public var name: String
        /// Hugging Face names of the parts, for a quantized module their module paths (`…q_proj`).
        public var parts: [String]
        /// Whether it is group-quantized (`name.q_weight`, `name.q_scale`), else a float tensor in the model dtype.
        public var quantized: Bool
        /// Whether it is the embedding (quantized without the KN transpose).
        public var embedding = false
    }

    /// MLC's module name of the embedding (never transposed in KN presets).
    public static let embedding = "model.embed_tokens"

    /// MLC's parameters for a model of `layers` decoder layers, in its module order, as `preset` quantizes them
    /// (the embedding and lm_head kept as `.weight` in the model dtype when it does not quantize them).
    public func parameters(layers: Int, tied: Bool, preset: MLCPreset) -> [Parameter] {
        let e = Self.embedding
        var out = [preset.quantizesEmbedding ? Parameter(name: e, parts: [e], quantized: true, embedding: true)
                                             : Parameter(name: e + ".weight", parts: [e + ".weight"], quantized: false, embedding: true)]
        for i in 0..<layers {
            let l = "model.layers.\(i)"
            out.append(Parameter(name: "\(l).self_attn.\(attention)", parts: ["q_proj", "k_proj", "v_proj"].map { "\(l).self_attn.\($0)" }, quantized: true))
            if attentionBias {
                out.append(Parameter(name: "\(l).self_attn.\(attention).bias",
                                     parts: ["q_proj", "k_proj", "v_proj"].map { "\(l).self_attn.\($0).bias" }, quantized: false))
            }
            out.append(Parameter(name: "\(l).self_attn.o_proj", parts: ["\(l).self_attn.o_proj"], quantized: true))
            if headNorms {
                for n in ["q_norm", "k_norm"] { out.append(Parameter(name: "\(l).self_attn.\(n).weight", parts: ["\(l).self_attn.\(n).weight"], quantized: false)) }
            }
            out.append(Parameter(name: "\(l).mlp.gate_up_proj", parts: ["\(l).mlp.gate_proj", "\(l).mlp.up_proj"], quantized: true))
            out.append(Parameter(name: "\(l).mlp.down_proj", parts: ["\(l).mlp.down_proj"], quantized: true))
            for n in ["input_layernorm", "post_attention_layernorm"] {
                out.append(Parameter(name: "\(l).\(n).weight", parts: ["\(l).\(n).weight"], quantized: false))
            }
        }
        out.append(Parameter(name: "model.norm.weight", parts: ["model.norm.weight"], quantized: false))
        if !tied {
            out.append(preset.quantizesFinalFC ? Parameter(name: "lm_head", parts: ["lm_head"], quantized: true)
                                               : Parameter(name: "lm_head.weight", parts: ["lm_head.weight"], quantized: false))
        }
        return out
    }
}
