/// How one linear (or other parameter) stores its weight, recognized from tensor names, dtypes and shapes.
public enum WeightScheme: String, Sendable, CaseIterable {
    case float = "float"
    case qkit = "qkit"
    case awqGEMM = "awq-gemm"
    case awqGEMV = "awq-gemv"
    case tinychat = "tinychat"
    case gptq = "gptq"
    case packQuantized = "compressed-tensors/pack-quantized"
    case intQuantized = "compressed-tensors/int-quantized"
    case floatQuantized = "compressed-tensors/float-quantized"
    case nvfp4PackQuantized = "compressed-tensors/nvfp4-pack-quantized"
    case fp8Block = "fp8-block"
    case ggml = "ggml"
    /// MLC-LLM's group quantization in TVM's tensor cache (`q_weight` uint32 + `q_scale`).
    case mlc = "mlc"
    /// Nunchaku's SVDQuant W4A4 layout (MMA-tiled `qweight` I8, `wscales`, smooth, low-rank tiles).
    case nunchaku = "nunchaku-svdquant"
}

/// One module's weight: the tensors that make it up and the logical (dequantized) shape.
public struct WeightGroup: Sendable {
    /// Module path, e.g. `model.layers.0.self_attn.q_proj` (the whole tensor name for plain tensors).
    public var prefix: String
    public var scheme: WeightScheme
    /// Names of the tensors that belong to this weight (codes, scales, zeros, indices…).
    public var tensorNames: [String]
    /// Logical parameter count (N × K for a quantized linear).
    public var parameters: Int
    /// Bytes of all its tensors.
    public var bytes: Int
    /// Weight bits per element when known from the layout, group size when known.
    public var bits: Int?
    public var groupSize: Int?
}

/// Recognizes the quantized layouts qkit reads (qkit, AutoAWQ GEMM/GEMV, GPTQ, compressed-tensors, FP8
/// block, GGUF) tensor by tensor, and what the config says about them.
public enum FormatDetector {
    /// Suffixes of tensors that belong to a quantized weight, with the role of each.
    static let auxiliarySuffixes = [
        "weight_q", "weight_scale", "weight_zero_point", "weight_scale_2", "weight_global_scale", "smooth",
        "lora_down", "lora_up", "g_idx", "input_scale", "qweight", "qzeros", "scales", "weight_packed",
        "weight_shape", "weight_scale_inv", "weight_g_idx", "input_global_scale", "k_scale", "v_scale", "q_weight", "q_scale", "wscales",
        "wtscale", "smooth_orig", "scaled_zeros",
    ]

    /// Groups the checkpoint's tensors into weights.
    public static func weightGroups(_ ck: Checkpoint) -> [WeightGroup] {
        let qc = quantizationConfig(ck)  // read once, not per weight (it may come from quantize_config.json)
        var byPrefix: [String: [CheckpointTensor]] = [:]
        var order: [String] = []
        var plain: [CheckpointTensor] = []
        for t in ck.tensors {
            if let dot = t.name.lastIndex(of: "."), auxiliarySuffixes.contains(String(t.name[t.name.index(after: dot)...])) {
                let p = String(t.name[..<dot])
                if byPrefix[p] == nil { order.append(p) }
                byPrefix[p, default: []].append(t)
            } else {
                plain.append(t)
            }
        }
        var groups: [WeightGroup] = []
        var consumed = Set<String>()
        for p in order {
            let parts = byPrefix[p]!
            var d: [String: CheckpointTensor] = [:]
            for t in parts { d[String(t.name.dropFirst(p.count + 1))] = t }
            // A float `.weight` beside FP8 or int scales is the stored weight of the same module.
            if let w = ck[p + ".weight"] { d["weight"] = w }
            guard let g = recognize(prefix: p, d, ck, config: qc) else { continue }
            groups.append(g)
            consumed.formUnion(g.tensorNames)
        }
        for t in plain where !consumed.contains(t.name) {
            let scheme: WeightScheme = if case .ggml(let gt) = t.encoding, gt.isQuantized { .ggml } else { .float }
            var g = WeightGroup(prefix: t.name, scheme: scheme, tensorNames: [t.name], parameters: t.elementCount,
                                bytes: t.byteCount, bits: nil, groupSize: nil)
            if case .ggml(let gt) = t.encoding, gt.isQuantized { g.groupSize = gt.blockSize }
            groups.append(g)
        }
        // Leftover auxiliary tensors (e.g. a lone k_scale) count as plain tensors.
        for p in order {
            for t in byPrefix[p]! where !consumed.contains(t.name) {
                groups.append(WeightGroup(prefix: t.name, scheme: .float, tensorNames: [t.name], parameters: t.elementCount,
                                          bytes: t.byteCount, bits: nil, groupSize: nil))
            }
        }
        return groups.sorted { naturalLess($0.prefix, $1.prefix) }
    }

    static func recognize(prefix p: String, _ d: [String: CheckpointTensor], _ ck: Checkpoint, config qc: JSONObject?) -> WeightGroup? {
        func group(_ scheme: WeightScheme, _ names: [String], params: Int, bits: Int?, groupSize: Int?) -> WeightGroup {
            let present = names.filter { d[$0] != nil }
            var extra = d.keys.filter { !present.contains($0) && $0 != "weight" }.sorted()
            if scheme == .floatQuantized || scheme == .intQuantized || scheme == .fp8Block { extra.removeAll { $0 == "weight" } }
            let all = (present + extra).map { p + "." + $0 }
            return WeightGroup(prefix: p, scheme: scheme, tensorNames: all, parameters: params,
                               bytes: all.reduce(0) { $0 + (ck[$1]?.byteCount ?? 0) }, bits: bits, groupSize: groupSize)
        }
        if let q = d["q_weight"], let s = d["q_scale"], q.shape.count == 2, s.shape.count == 2, case .dtype(.u32) = q.encoding {
            // MLC: q_weight [N, words], q_scale [N, groups], transposed for the linears of KN presets; bits and group
            // size from the preset in mlc-chat-config.json.
            let preset = mlcPreset(ck)
            let kn = preset?.transposes(embedding: p == MLCFamily.embedding) ?? false
            let (n, groups) = kn ? (s.shape[1], s.shape[0]) : (s.shape[0], s.shape[1])
            let k = preset.map { groups * $0.groupSize } ?? q.shape[1] * 8
            return group(.mlc, ["q_weight", "q_scale"], params: n * k, bits: preset?.bits, groupSize: preset?.groupSize)
        }
        if let q = d["weight_q"], q.shape.count == 2 {
            let (n, k) = (q.shape[0], q.shape[1])
            let s = d["weight_scale"]
            let gs = s.flatMap { $0.shape.count == 2 && $0.shape[1] > 0 ? k / $0.shape[1] : nil }
            // The scheme qquant recorded for this module (man 5 qkit), else the config's default bits.
            let recorded = (qc?["modules"]?[p]?.stringValue).flatMap { try? QuantScheme.parse($0) }
            return group(.qkit, ["weight_q", "weight_scale", "weight_zero_point", "weight_scale_2", "weight_global_scale", "g_idx"],
                         params: n * k, bits: recorded?.bits ?? qc?["bits"]?.intValue ?? qc?["wbits"]?.intValue, groupSize: gs)
        }
        if let qw = d["qweight"], let ws = d["wscales"], qw.shape.count == 2, ws.shape.count == 2, case .dtype(.i8) = qw.encoding {
            let nvfp4 = ws.encoding == .dtype(.f8E4M3)
            return group(.nunchaku, ["qweight", "wscales", "wtscale", "smooth", "smooth_orig", "lora_down", "lora_up"],
                         params: qw.shape[0] * qw.shape[1] * 2, bits: 4, groupSize: nvfp4 ? 16 : 64)
        }
        if let qw = d["qweight"], d["scaled_zeros"] != nil, case .dtype(.i16) = qw.encoding, qw.shape.count == 2 {
            // TinyChat v2: qweight I16 [N/4, K], scales and scaled_zeros [Gp, N].
            return group(.tinychat, ["qweight", "scales", "scaled_zeros"], params: qw.shape[0] * 4 * qw.shape[1], bits: 4,
                         groupSize: qc?["q_group_size"]?.intValue)
        }
        if let qw = d["qweight"], let sc = d["scales"], qw.shape.count == 2, sc.shape.count == 2 {
            let method = qc?["quant_method"]?.stringValue?.lowercased()
            let configBits = qc?["bits"]?.intValue ?? qc?["w_bit"]?.intValue
            if d["g_idx"] != nil || method == "gptq" {
                // GPTQ: qweight [K·bits/32, N], scales [K/G, N].
                let n = sc.shape[1]
                let k = d["g_idx"]?.elementCount ?? (configBits.map { qw.shape[0] * 32 / $0 } ?? qw.shape[0] * 8)
                let bits = configBits ?? (k > 0 ? qw.shape[0] * 32 / k : nil)
                return group(.gptq, ["qweight", "qzeros", "scales", "g_idx"], params: n * k, bits: bits,
                             groupSize: sc.shape[0] > 0 ? k / sc.shape[0] : nil)
            }
            if sc.shape[1] == qw.shape[1] * 8 {
                // AWQ GEMM: qweight [K, N/8], scales [K/G, N].
                let (k, n) = (qw.shape[0], sc.shape[1])
                return group(.awqGEMM, ["qweight", "qzeros", "scales"], params: n * k, bits: configBits ?? 4,
                             groupSize: sc.shape[0] > 0 ? k / sc.shape[0] : nil)
            }
            if sc.shape[0] == qw.shape[0] {
                // AWQ GEMV: qweight [N, K/8], scales [N, K/G] (possibly padded).
                let n = qw.shape[0], k = qw.shape[1] * 8
                let g = qc?["q_group_size"]?.intValue ?? qc?["group_size"]?.intValue
                return group(.awqGEMV, ["qweight", "qzeros", "scales"], params: n * k, bits: configBits ?? 4, groupSize: g)
            }
        }
        if let wp = d["weight_packed"], wp.shape.count == 2 {
            let n = wp.shape[0]
            if case .dtype(.u8) = wp.encoding, d["weight_global_scale"] != nil {
                return group(.nvfp4PackQuantized, ["weight_packed", "weight_scale", "weight_global_scale", "input_global_scale"],
                             params: n * wp.shape[1] * 2, bits: 4, groupSize: 16)
            }
            var k = 0
            if let shape = d["weight_shape"], let v = readIntegers(shape, ck), v.count == 2 { k = v[1] }
            let bitsGuess = k > 0 ? wp.shape[1] * 32 / k : nil
            if k == 0, let bits = schemeBits(qc) { k = wp.shape[1] * 32 / bits }
            let gs = d["weight_scale"].flatMap { $0.shape.count == 2 && $0.shape[1] > 1 && k > 0 ? k / $0.shape[1] : nil }
            return group(.packQuantized, ["weight_packed", "weight_scale", "weight_zero_point", "weight_shape", "weight_g_idx"],
                         params: n * k, bits: bitsGuess ?? schemeBits(qc), groupSize: gs)
        }
        if let w = d["weight"], d["weight_scale_inv"] != nil {
            return group(.fp8Block, ["weight", "weight_scale_inv"], params: w.elementCount, bits: 8, groupSize: nil)
        }
        if let w = d["weight"], d["weight_scale"] != nil {
            switch w.encoding {
            case .dtype(.f8E4M3), .dtype(.f8E5M2):
                return group(.floatQuantized, ["weight", "weight_scale", "input_scale"], params: w.elementCount, bits: 8, groupSize: nil)
            case .dtype(.i8):
                return group(.intQuantized, ["weight", "weight_scale", "weight_zero_point", "input_scale"], params: w.elementCount, bits: 8, groupSize: nil)
            default: return nil
            }
        }
        return nil
    }

    /// `quantization_config` of config.json, or of `quantize_config.json` beside it.
    public static func quantizationConfig(_ ck: Checkpoint) -> JSONObject? {
        if let q = ck.config?["quantization_config"]?.objectValue { return q }
        if let dir = ck.directory, let b = try? readSmallFile(dir + "/quantize_config.json", limit: 1 << 20),
            let j = try? JSONParser.parse(b, rejectDuplicateKeys: false)
        {
            return j.objectValue
        }
        return nil
    }

    /// The weight bit width of a compressed-tensors config's first group.
    static func schemeBits(_ qc: JSONObject?) -> Int? {
        guard case .object(let groups)? = qc?["config_groups"] else { return nil }
        for (_, g) in groups.members { if let b = g["weights"]?["num_bits"]?.intValue { return b } }
        return nil
    }

    /// Reads a small integer tensor's values.
    public static func readIntegers(_ t: CheckpointTensor, _ ck: Checkpoint) -> [Int]? {
        guard t.elementCount <= 16, case .dtype(let dt) = t.encoding, dt.isInteger else { return nil }
        let raw = ck.data(t)
        return (0..<t.elementCount).map { i in
            switch dt {
            case .i64: Int(raw.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self))
            case .u64: Int(truncatingIfNeeded: raw.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))
            case .i32: Int(raw.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self))
            case .u32: Int(raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))
            case .i16: Int(raw.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self))
            case .u16: Int(raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
            case .i8: Int(Int8(bitPattern: raw[i]))
            default: Int(raw[i])
            }
        }
    }

    /// A one-line name for the checkpoint's quantization format and its settings.
    public static func describe(_ ck: Checkpoint, groups: [WeightGroup]) -> (format: String, settings: [(String, String)]) {
        var settings: [(String, String)] = []
        let quantized = groups.filter { $0.scheme != .float }
        let qc = quantizationConfig(ck)
        if ck.kind == .gguf {
            var counts: [String: Int] = [:]
            for t in ck.tensors { counts[t.encoding.description, default: 0] += 1 }
            let types = counts.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.map { "\($0.key)×\($0.value)" }
            settings.append(("tensor types", types.joined(separator: " ")))
            if let ft = ck.gguf?["general.file_type"]?.intValue { settings.append(("file type", ggufFileTypeName(ft))) }
            return ("gguf", settings)
        }
        if ck.kind == .tensorCache {
            let chat = mlcChatConfig(ck)
            settings.append(("container", "tvm tensor cache, \(ck.files.count) shard\(ck.files.count == 1 ? "" : "s")"))
            if let q = chat?["quantization"]?.stringValue { settings.append(("quantization", q)) }
            if let m = chat?["model_type"]?.stringValue { settings.append(("model_type", m)) }
            if let p = mlcPreset(ck) { settings += [("bits", String(p.bits)), ("group size", String(p.groupSize)), ("model dtype", p.tvmModelDType)] }
            settings.append(("quantized weights", "\(quantized.count) (fused qkv and gate_up counted once)"))
            return ("mlc", settings)
        }
        guard let first = quantized.first else {
            if let m = qc?["quant_method"]?.stringValue { return ("none (config says \(m), but no quantized tensors found)", []) }
            return ("none", [])
        }
        let schemes = Set(quantized.map(\.scheme))
        var format = schemes.count == 1 ? first.scheme.rawValue : schemes.map(\.rawValue).sorted().joined(separator: " + ")
        if schemes == [.gptq] {
            let fmt = (qc?["checkpoint_format"]?.stringValue ?? qc?["format"]?.stringValue ?? "gptq").lowercased()
            format = fmt.contains("v2") ? "gptq-v2" : "gptq-v1"
            var actOrder = qc?["desc_act"]?.boolValue
            if actOrder == nil { actOrder = quantized.contains { gptqActOrder($0, ck) } }
            settings.append(("act-order", actOrder! ? "yes" : "no"))
            if let sym = qc?["sym"]?.boolValue { settings.append(("symmetric", sym ? "yes" : "no")) }
        }
        if schemes.contains(.awqGEMM) || schemes.contains(.awqGEMV) || schemes.contains(.tinychat), let zp = qc?["zero_point"]?.boolValue {
            settings.append(("zero point", zp ? "yes" : "no"))
        }
        if let m = qc?["quant_method"]?.stringValue { settings.insert(("quant_method", m), at: 0) }
        if let f = qc?["format"]?.stringValue, schemes.contains(where: { $0.rawValue.hasPrefix("compressed") }) { settings.append(("format", f)) }
        let bits = Set(quantized.compactMap(\.bits))
        if !bits.isEmpty { settings.append(("bits", bits.sorted().map(String.init).joined(separator: ","))) }
        let gs = Set(quantized.compactMap(\.groupSize))
        if !gs.isEmpty { settings.append(("group size", gs.sorted().map(String.init).joined(separator: ","))) }
        settings.append(("quantized weights", "\(quantized.count) of \(groups.filter { $0.scheme != .float || isLinearWeight($0.prefix) }.count) linear weights"))
        // qkit's kv_cache_format or compressed-tensors' kv_cache_scheme.
        if let kv = KVCacheQuantization.recorded(in: ck.config) { settings.append(("kv cache", kv.summary)) }
        if schemes.contains(.qkit), case .object(let modules)? = qc?["modules"] {
            // qkit stores codes unpacked (a byte each): report the schemes and their packed bits per weight too.
            var counts: [String: Int] = [:]
            var bits = 0.0, params = 0
            for g in quantized where g.scheme == .qkit {
                guard let text = modules[g.prefix]?.stringValue, let s = try? QuantScheme.parse(text),
                    let q = ck[g.prefix + ".weight_q"], q.shape.count == 2 else { continue }
                counts[s.description, default: 0] += 1
                bits += s.bitsPerWeight(n: q.shape[0], k: q.shape[1]) * Double(g.parameters)
                params += g.parameters
            }
            if params > 0 {
                settings.append(("schemes", counts.sorted { $0.key < $1.key }.map { "\($0.key)×\($0.value)" }.joined(separator: " ")))
                settings.append(("packed bits/weight", fixedDecimals(bits / Double(params), 3) + " (codes, scales and zero points, as a backend packs them)"))
            }
        }
        return (format, settings)
    }

    /// mlc-chat-config.json beside a tensor cache.
    static func mlcChatConfig(_ ck: Checkpoint) -> JSONValue? {
        guard ck.kind == .tensorCache, let dir = ck.directory, let b = try? readSmallFile(dir + "/mlc-chat-config.json", limit: 64 << 20) else { return nil }
        return try? JSONParser.parse(b, rejectDuplicateKeys: false)
    }

    /// The MLC preset recorded in mlc-chat-config.json.
    static func mlcPreset(_ ck: Checkpoint) -> MLCPreset? { mlcChatConfig(ck)?["quantization"]?.stringValue.flatMap(MLCPreset.named) }

    /// Whether a GPTQ weight's g_idx differs from the plain k / G order.
    static func gptqActOrder(_ g: WeightGroup, _ ck: Checkpoint) -> Bool {
        guard let name = g.tensorNames.first(where: { $0.hasSuffix(".g_idx") }), let t = ck[name], let gs = g.groupSize, gs > 0,
            case .dtype(.i32) = t.encoding
        else { return false }
        let raw = ck.data(t)
        for k in 0..<t.elementCount where Int(raw.loadUnaligned(fromByteOffset: 4 * k, as: Int32.self)) != k / gs { return true }
        return false
    }

    /// Whether a tensor name looks like a linear layer's weight inside the decoder.
    public static func isLinearWeight(_ name: String) -> Bool {
        let n = name.hasSuffix(".weight") ? String(name.dropLast(7)) : name
        let linear = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "qkv_proj", "gate_up_proj",
                      "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down", "c_attn", "c_proj", "c_fc",
                      "dense", "fc1", "fc2", "query_key_value", "w1", "w2", "w3", "wq", "wk", "wv", "wo"]
        guard let last = n.split(separator: ".").last else { return false }
        return linear.contains(String(last))
    }

    /// llama.cpp's name of a `general.file_type` value.
    static func ggufFileTypeName(_ v: Int) -> String {
        let names = [0: "ALL_F32", 1: "MOSTLY_F16", 2: "MOSTLY_Q4_0", 3: "MOSTLY_Q4_1", 7: "MOSTLY_Q8_0", 8: "MOSTLY_Q5_0",
                     9: "MOSTLY_Q5_1", 10: "MOSTLY_Q2_K", 11: "MOSTLY_Q3_K_S", 12: "MOSTLY_Q3_K_M", 13: "MOSTLY_Q3_K_L",
                     14: "MOSTLY_Q4_K_S", 15: "MOSTLY_Q4_K_M", 16: "MOSTLY_Q5_K_S", 17: "MOSTLY_Q5_K_M", 18: "MOSTLY_Q6_K",
                     32: "MOSTLY_BF16"]
        return names[v].map { "\($0) (\(v))" } ?? String(v)
    }
}
