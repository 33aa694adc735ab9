/// `qpack IN --to gguf -o OUT.gguf`: a llama.cpp-loadable GGUF v3 (alignment 32) from a float model, a qkit
/// checkpoint or a packed checkpoint of the Llama or Qwen2 family, with llama.cpp's tensor names, the q/k row
/// permutation its converter applies (shared with the importer), the hyperparameters and the byte-level BPE
/// vocabulary (`tokenizer.ggml.*`, merges, token types, special ids, chat template).
///
/// Types: a linear whose qkit scheme a GGUF type holds exactly keeps its codes — `int4:g32:sym` → Q4_0
/// (`d` = the scale in F16), `int4:g32:asym` → Q4_1 (`d` = scale, `m` = −zero·scale in F16), `int8:g32:sym` →
/// Q8_0. Every other weight is (re)quantized from its float (or dequantized) values with ggml's reference
/// quantizer of the type (`quantize_row_*_ref`, what llama-quantize runs without an importance matrix), which a
/// quantized source allows only when `--gguf-type` asks for it. Norms and biases are F32; the output matrix
/// (`output.weight`, or the embedding of a tied model) follows llama-quantize: Q6_K, or Q8_0 when its rows are
/// not whole 256-blocks or the type is Q8_0; a row a K-quant cannot hold falls back as llama-quantize does
/// (Q4_K → Q5_0, Q6_K → Q8_0).
public enum GGUFExport {
    /// The `--gguf-type` values.
    public static let types: [String: GGMLType] = ["q4_0": .q4_0, "q4_1": .q4_1, "q8_0": .q8_0, "q4_k": .q4_K, "q6_k": .q6_K,
                                                   "f16": .f16, "bf16": .bf16, "f32": .f32]
    /// The type of a float input when none is asked for.
    public static let defaultFloatType = GGMLType.q4_K

    /// What an export did.
    public struct Report: Sendable {
        public var tensors = 0
        /// Linears whose codes were kept, and weights quantized from float values.
        public var kept = 0, quantized = 0
        public var bytes = 0
        public var type = GGMLType.f32
    }

    /// One GGUF tensor and where its values come from.
    struct Item {
        var hf: String
        var spec: GGUFTensorSpec
        /// Rows per head of the q/k permutation, if any.
        var headRows: Int?
        /// The canonical linear whose codes are kept.
        var plan: LinearPlan?
        /// The values of a tensor the export computes (`rope_freqs.weight`), F32.
        var values: [Float]? = nil
    }

    /// The exact GGUF type of a qkit scheme, if any.
    static func exactType(_ s: QuantScheme) -> GGMLType? {
        guard s.granularity == .group(32), s.algorithm != .hqq else { return nil }
        switch (s.format, s.symmetric) {
        case (.int(bits: 4), true): return .q4_0
        case (.int(bits: 4), false): return .q4_1
        case (.int(bits: 8), true): return .q8_0
        default: return nil
        }
    }

    /// llama.cpp's `general.file_type` of a main type.
    static func fileType(_ t: GGMLType) -> UInt32 {
        switch t {
        case .f32: 0
        case .f16: 1
        case .q4_0: 2
        case .q4_1: 3
        case .q8_0: 7
        case .q4_K: 14
        case .q6_K: 18
        case .bf16: 32
        default: 0
        }
    }

    /// The type of a matrix with rows of `k` values: `type`, or llama-quantize's fallback when rows are not whole blocks.
    static func fitting(_ type: GGMLType, k: Int) -> GGMLType? {
        if k % type.blockSize == 0 { return type }
        let fallback: GGMLType? = type == .q4_K ? .q5_0 : type == .q6_K ? .q8_0 : nil
        return fallback.flatMap { k % $0.blockSize == 0 ? $0 : nil }
    }

    /// Exports `input` to the GGUF file `output` (`type` nil: from the schemes of a quantized input, else Q4_K).
    public static func run(input: String, output: String, type requested: GGMLType?, log: ((String) -> Void)? = nil) throws -> Report {
        let ck = try Checkpoint(path: input)
        guard ck.kind != .gguf else { throw PackError.usage("\(input): already a GGUF file") }
        let weights = try openWeights(path: input)
        let method = FormatDetector.quantizationConfig(ck)?["quant_method"]?.stringValue
        let source: PackSource? = if method == "qkit" { try PackSource(ck) } else if let p = weights as? any PackedWeightSource {
            try PackSource(packed: p, checkpoint: ck)
        } else { nil }
        let plan = try Plan(ck, source: source, requested: requested, input: input)
        let metadata = try Metadata.build(ck, plan: plan, input: input)
        let writer = try GGUFWriter(path: output, metadata: metadata, tensors: plan.items.map(\.spec))
        var report = Report()
        report.type = plan.type
        for item in plan.items {
            try write(item, weights: weights, source: source) { try writer.write($0) }
            report.tensors += 1
            if item.plan != nil { report.kept += 1 } else if item.spec.type.isQuantized { report.quantized += 1 }
            report.bytes += item.spec.byteCount ?? 0
            log?("\(item.hf) → \(item.spec.name) \(item.spec.type.name)" + (item.plan != nil ? " (codes kept)" : ""))
        }
        try writer.finish()
        return report
    }

    /// The tensors of the export, named, typed and ordered.
    struct Plan {
        var items: [Item] = []
        var type: GGMLType
        var family: String
        var config: JSONValue

        init(_ ck: Checkpoint, source: PackSource?, requested: GGMLType?, input: String) throws {
            guard let config = ck.config else { throw PackError.malformed(path: input, what: "no config.json") }
            self.config = config
            func refuse(_ what: String) -> PackError { PackError.unsupported(path: input, backend: "gguf", what: what) }
            switch config["model_type"]?.stringValue {
            case "llama"?, "mistral"?: family = "llama"
            case "qwen2"?: family = "qwen2"
            case let t: throw refuse("model_type '\(t ?? "none")' (exported: llama, mistral, qwen2)")
            }
            let heads = config["num_attention_heads"]?.intValue ?? 0, kvHeads = config["num_key_value_heads"]?.intValue ?? heads
            let hidden = config["hidden_size"]?.intValue ?? 0
            let headDim = config["head_dim"]?.intValue ?? (heads > 0 ? hidden / heads : 0)
            guard heads > 0, kvHeads > 0, headDim > 0, headDim % 2 == 0 else { throw PackError.malformed(path: input, what: "config.json: attention heads") }
            let rope = config["rope_parameters"].flatMap { $0 == .null ? nil : $0 } ?? config["rope_scaling"].flatMap { $0 == .null ? nil : $0 }
            var ropeFactors: [Float]?
            if let kind = rope?["rope_type"]?.stringValue ?? rope?["type"]?.stringValue, kind != "default" {
                // Llama 3's scaling is llama.cpp's rope_freqs tensor; the others have no exact GGUF form here.
                guard kind == "llama3", family == "llama" else {
                    throw refuse("rope_type '\(kind)' (exported: default, and llama3 as rope_freqs)")
                }
                let scaling = try ConfigReader(path: input, json: config).rope()
                ropeFactors = RotaryEmbedding.llama3Factors(scaling, headDim: headDim)
            }

            // The main type: asked for, else the one the quantized linears map to exactly, else Q4_K.
            let linears = source?.linears ?? []
            if let requested {
                type = requested
            } else if let first = linears.first {
                let exact = Set(linears.map { GGUFExport.exactType($0.scheme) })
                guard exact.count == 1, let t = exact.first!, !linears.contains(where: { $0.hasGroupIndex || !$0.unsupportedParts.isEmpty }) else {
                    throw refuse("\(first.prefix): \(first.scheme) in no GGUF type exactly (int4:g32:sym → q4_0, int4:g32:asym → q4_1, int8:g32:sym → q8_0); --gguf-type requantizes the dequantized weights")
                }
                type = t
            } else {
                type = GGUFExport.defaultFloatType
            }
            let plans = Dictionary(uniqueKeysWithValues: linears.map { ($0.prefix + ".weight", $0) })

            // Logical Hugging Face tensors: the unquantized ones as stored, each quantized linear as P.weight.
            var names: [(String, [Int])] = []
            for t in ck.tensors where !(source?.consumed.contains(t.name) ?? false) { names.append((t.name, t.shape)) }
            for p in linears { names.append((p.prefix + ".weight", [p.n, p.k])) }
            names.sort { naturalLess($0.0, $1.0) }
            let tied = !names.contains { $0.0 == "lm_head.weight" }
            if let ropeFactors {  // first, as llama.cpp's converter writes it
                items.append(Item(hf: "rope_freqs", spec: GGUFTensorSpec(name: "rope_freqs.weight", dimensions: [ropeFactors.count], type: .f32),
                                  headRows: nil, plan: nil, values: ropeFactors))
            }
            for (hf, shape) in names {
                if hf.hasSuffix("rotary_emb.inv_freq") { continue }
                guard let gguf = GGUFModelConfig.ggufName(ofHF: hf) else { throw refuse("\(hf) (no llama.cpp tensor of that name)") }
                let dims = Array(shape.reversed())
                let isOutput = hf == "lm_head.weight" || (tied && hf == "model.embed_tokens.weight")
                var item = Item(hf: hf, spec: GGUFTensorSpec(name: gguf, dimensions: dims, type: .f32), headRows: nil, plan: nil)
                if family == "llama", hf.hasSuffix(".weight") || hf.hasSuffix(".bias") {
                    if hf.contains(".self_attn.q_proj.") { item.headRows = shape[0] / heads }
                    if hf.contains(".self_attn.k_proj.") { item.headRows = shape[0] / kvHeads }
                }
                if shape.count == 2 {
                    let k = shape[1]
                    if let p = plans[hf], GGUFExport.exactType(p.scheme) == type, !p.hasGroupIndex, p.unsupportedParts.isEmpty {
                        item.plan = p
                        item.spec.type = type
                    } else if plans[hf] != nil, requested == nil {
                        throw refuse("\(hf): \(plans[hf]!.scheme) beside \(type.name) linears (choose --gguf-type to requantize)")
                    } else if !type.isQuantized {
                        item.spec.type = type
                    } else {
                        let wanted: GGMLType = isOutput && plans[hf] == nil ? (k % 256 != 0 || type == .q8_0 ? .q8_0 : .q6_K) : type
                        guard let t = GGUFExport.fitting(wanted, k: k) else {
                            throw refuse("\(hf): rows of \(k) values are not whole \(wanted.name) blocks of \(wanted.blockSize)")
                        }
                        item.spec.type = t
                    }
                }
                items.append(item)
            }
        }
    }

    /// GGUF row `g` of a permuted head holds Hugging Face row `(g % 2)·(rows/2) + g/2` (convert_hf_to_gguf's `permute`).
    @inline(__always) static func hfRow(ofGGUF g: Int, headRows: Int) -> Int {
        let head = g / headRows, within = g % headRows
        return head * headRows + (within % 2) * (headRows / 2) + within / 2
    }

    /// Emits the bytes of one tensor, a chunk of rows at a time.
    static func write(_ item: Item, weights: any WeightSource, source: PackSource?, sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        let dims = item.spec.dimensions
        let k = dims[0], rows = dims.count > 1 ? dims[1] : 1
        let type = item.spec.type
        let rowBytes = type.byteCount(elements: k)!
        if let values = item.values {
            try values.withUnsafeBytes { try sink($0) }
            return
        }
        if let plan = item.plan, let source {
            let q = try source.linear(plan)
            var out = [UInt8](repeating: 0, count: rows * rowBytes)
            out.withUnsafeMutableBytes { o in
                nonisolated(unsafe) let base = o.baseAddress!
                parallelFor(rows) { g in
                    let r = item.headRows.map { hfRow(ofGGUF: g, headRows: $0) } ?? g
                    encodeExact(q, row: r, type: type, into: base + g * rowBytes)
                }
            }
            try out.withUnsafeBytes { try sink($0) }
            return
        }
        if dims.count == 1 {
            // Norms and biases (F32); a permuted q/k bias moves its values like rows of one element.
            let v = try weights.float32(item.hf).values
            let ordered = item.headRows.map { h in (0..<v.count).map { v[hfRow(ofGGUF: $0, headRows: h)] } } ?? v
            try ordered.withUnsafeBytes { try sink($0) }
            return
        }
        // Float (or dequantized) rows: whole heads when permuting, else about 4 MB of values per chunk.
        let chunk = item.headRows ?? max(1, min(rows, (1 << 20) / max(1, k)))
        var values = [Float](repeating: 0, count: chunk * k), ordered = values
        var out = [UInt8](repeating: 0, count: chunk * rowBytes)
        var row = 0
        while row < rows {
            let n = min(chunk, rows - row)
            try values.withUnsafeMutableBufferPointer { try weights.readFloat32(item.hf, rows: row..<(row + n), into: UnsafeMutableBufferPointer(rebasing: $0[0..<(n * k)])) }
            if let h = item.headRows {
                for g in 0..<n {
                    let r = hfRow(ofGGUF: g, headRows: h)
                    for c in 0..<k { ordered[g * k + c] = values[r * k + c] }
                }
            } else {
                swap(&values, &ordered)
            }
            try ordered.withUnsafeBufferPointer { v in
                try out.withUnsafeMutableBytes { o in
                    let src = UnsafeBufferPointer(rebasing: v[0..<(n * k)])
                    switch type {
                    case .f32: try sink(UnsafeRawBufferPointer(src))
                    case .f16, .bf16:
                        Conversion.encode(src, as: type == .f16 ? .f16 : .bf16, into: UnsafeMutableRawBufferPointer(rebasing: o[0..<(n * rowBytes)]))
                        try sink(UnsafeRawBufferPointer(rebasing: o[0..<(n * rowBytes)]))
                    default:
                        nonisolated(unsafe) let (vb, ob) = (v.baseAddress!, o.baseAddress!)
                        try parallelFor(n) { (g: Int) throws in
                            try GGMLQuants.quantize(type, UnsafeBufferPointer(start: vb + g * k, count: k),
                                                    into: UnsafeMutableRawBufferPointer(start: ob + g * rowBytes, count: rowBytes))
                        }
                        try sink(UnsafeRawBufferPointer(rebasing: o[0..<(n * rowBytes)]))
                    }
                }
            }
            if item.headRows == nil { swap(&values, &ordered) }
            row += n
        }
    }

    /// One row of a canonical linear as Q4_0, Q4_1 or Q8_0 blocks (its groups of 32 are the blocks).
    static func encodeExact(_ q: QuantizedLinear, row r: Int, type: GGMLType, into p: UnsafeMutableRawPointer) {
        let k = q.k, g = q.groups
        q.codes.withBiasedBytes { c, bias in
            for b in 0..<(k / 32) {
                let codes = r * k + 32 * b
                let s = q.scales[(q.scaleRows == 1 ? 0 : r) * g + b]
                let z = q.zeros.map { Int($0[(q.scaleRows == 1 ? 0 : r) * g + b]) } ?? 0
                switch type {
                case .q4_0, .q4_1:
                    let block = p + b * type.typeSize
                    block.storeBytes(of: Float16(s).bitPattern, as: UInt16.self)
                    var o = 2
                    if type == .q4_1 {
                        block.storeBytes(of: Float16(-Float(z) * s).bitPattern, toByteOffset: 2, as: UInt16.self)
                        o = 4
                    }
                    for j in 0..<16 { block.storeBytes(of: ((c[codes + j] &+ bias) & 0xF) | (c[codes + j + 16] &+ bias) << 4, toByteOffset: o + j, as: UInt8.self) }
                default:
                    let block = p + b * 34
                    block.storeBytes(of: Float16(s).bitPattern, as: UInt16.self)
                    for j in 0..<32 { block.storeBytes(of: c[codes + j] &+ bias &- 128, toByteOffset: 2 + j, as: UInt8.self) }
                }
            }
        }
    }
}

extension GGUFExport {
    /// The key-value metadata of an export, in the order llama.cpp's converter writes it.
    enum Metadata {
        static func build(_ ck: Checkpoint, plan: Plan, input: String) throws -> [(key: String, value: GGUFValue)] {
            let c = plan.config, a = plan.family
            func int(_ key: String) throws -> UInt32 {
                guard let v = c[key]?.intValue, v > 0, v <= Int(UInt32.max) else {
                    throw PackError.malformed(path: input, what: "config.json: \(key) is missing or not a positive integer")
                }
                return UInt32(v)
            }
            let heads = try int("num_attention_heads")
            let hidden = try int("hidden_size")
            let headDim = c["head_dim"]?.intValue.map(UInt32.init) ?? hidden / heads
            let theta = c["rope_parameters"]?["rope_theta"]?.doubleValue ?? c["rope_theta"]?.doubleValue ?? (a == "qwen2" ? 1_000_000 : 10_000)
            let name = c["_name_or_path"]?.stringValue.map { String($0.split(separator: "/").last ?? "") }
                ?? ck.directory.map { String($0.split(separator: "/").last ?? "model") } ?? "model"
            var m: [(key: String, value: GGUFValue)] = [
                ("general.architecture", .string(a)), ("general.type", .string("model")), ("general.name", .string(name)),
                ("\(a).block_count", .uint32(try int("num_hidden_layers"))),
                ("\(a).context_length", .uint32(try int("max_position_embeddings"))),
                ("\(a).embedding_length", .uint32(hidden)), ("\(a).feed_forward_length", .uint32(try int("intermediate_size"))),
                ("\(a).attention.head_count", .uint32(heads)),
                ("\(a).attention.head_count_kv", .uint32(c["num_key_value_heads"]?.intValue.map(UInt32.init) ?? heads)),
                ("\(a).rope.freq_base", .float32(Float(theta))),
                ("\(a).attention.layer_norm_rms_epsilon", .float32(Float(c["rms_norm_eps"]?.doubleValue ?? 1e-6))),
            ]
            if headDim != hidden / heads {
                m += [("\(a).attention.key_length", .uint32(headDim)), ("\(a).attention.value_length", .uint32(headDim))]
            }
            m.append(("general.file_type", .uint32(GGUFExport.fileType(plan.type))))
            let vocabSize = try int("vocab_size")
            if a == "llama" {
                m += [("\(a).vocab_size", .uint32(vocabSize)), ("\(a).rope.dimension_count", .uint32(headDim))]
            }
            guard let dir = ck.directory else { throw PackError.malformed(path: input, what: "no model directory (tokenizer.json is needed)") }
            m += try GGUFTokenizer.exportedVocabulary(directory: dir, config: c, vocabSize: Int(vocabSize))
            if plan.items.contains(where: { $0.spec.type.isQuantized }) { m.append(("general.quantization_version", .uint32(2))) }
            return m
        }
    }
}

extension GGUFExport {
    /// `qpack --verify OUT.gguf [--source IN]`: the file reads as a llama.cpp model (the keys llama.cpp needs,
    /// every tensor mapped to a Hugging Face name with the shape the metadata implies and dequantized, the
    /// vocabulary convertible); with a source, every tensor's bytes equal what the export of the source in the
    /// file's types gives (kept codes and F16 scales bit for bit, reference quantization byte for byte).
    public static func verify(output: String, source: String?) throws -> PackVerifyReport {
        let ck = try Checkpoint(path: output)
        guard let g = ck.gguf else { throw PackError.verifyFailed(path: output, what: "not a GGUF file") }
        let reader = try GGUFWeights(g)
        var issues: [String] = []
        let arch = g["general.architecture"]?.stringValue ?? ""
        for key in ["general.architecture", "\(arch).block_count", "\(arch).context_length", "\(arch).embedding_length",
                    "\(arch).feed_forward_length", "\(arch).attention.head_count", "\(arch).attention.layer_norm_rms_epsilon",
                    "tokenizer.ggml.model", "tokenizer.ggml.tokens"] where g[key] == nil {
            issues.append("metadata has no '\(key)'")
        }
        if g.version != 3 { issues.append("GGUF version \(g.version), not 3") }
        if g.alignment != 32 { issues.append("alignment \(g.alignment), not 32") }
        do {
            _ = try GGUFTokenizer.tokenizerJSON(try GGUFTokenizer.Vocabulary(g))
        } catch {
            issues.append("vocabulary: \(error)")
        }
        var report = PackVerifyReport()
        report.layout = "gguf"
        for (hf, t) in reader.tensors.sorted(by: { naturalLess($0.key, $1.key) }) {
            if t.info.type.isQuantized { report.packedLinears += 1 } else { report.otherTensors += 1 }
            _ = try reader.float32(hf)
        }
        if let source {
            report.comparedWithSource = true
            let sck = try Checkpoint(path: source)
            let weights = try openWeights(path: source)
            let method = FormatDetector.quantizationConfig(sck)?["quant_method"]?.stringValue
            let src: PackSource? = if method == "qkit" { try PackSource(sck) } else if let p = weights as? any PackedWeightSource {
                try PackSource(packed: p, checkpoint: sck)
            } else { nil }
            let plans = Dictionary(uniqueKeysWithValues: (src?.linears ?? []).map { ($0.prefix + ".weight", $0) })
            for (hf, t) in reader.tensors.sorted(by: { naturalLess($0.key, $1.key) }) {
                guard weights.contains(hf) || plans[hf] != nil else { issues.append("\(t.info.name): \(hf) is not in the source"); continue }
                var item = Item(hf: hf, spec: GGUFTensorSpec(name: t.info.name, dimensions: t.info.dimensions, type: t.info.type),
                                headRows: t.headRows, plan: nil)
                if let p = plans[hf], exactType(p.scheme) == t.info.type, !p.hasGroupIndex { item.plan = p }
                var expected: [UInt8] = []
                try write(item, weights: weights, source: src) { expected += Array($0) }
                if !expected.elementsEqual(g.data(t.info)) {
                    issues.append("\(t.info.name) (\(t.info.type.name)) differs from the export of \(hf)" + (item.plan != nil ? " (kept codes)" : ""))
                }
            }
            let sourceNames = sck.tensors.map(\.name).filter { !(src?.consumed.contains($0) ?? false) } + plans.keys
            for name in sourceNames.sorted(by: naturalLess) where !reader.contains(name) {
                if let gguf = GGUFModelConfig.ggufName(ofHF: name) { issues.append("\(name) (\(gguf)) is missing") }
            }
        }
        if !issues.isEmpty {
            throw PackError.verifyFailed(path: output, what: issues.prefix(20).joined(separator: "; ") + (issues.count > 20 ? "; … \(issues.count - 20) more" : ""))
        }
        return report
    }
}
