/// MLC-LLM's weight directory, as `mlc_llm convert_weight` + `mlc_llm gen_config` write it (formats.md §3): TVM's
/// tensor cache (`tensor-cache.json`, `params_shard_*.bin`; `TensorCacheWriter`) holding MLC's fused, group-quantized
/// parameters (`MLCLayout.swift`), `mlc-chat-config.json` (`MLCChatConfig`) and the tokenizer files.
///
/// Sources: a float model is quantized with MLC's own quantizer (rounding to the model dtype, ties to even); a qkit
/// checkpoint's linears are stored as they are when the scheme is MLC's (int4:g32, or int3:g40 for q3f16_*, no
/// act-order, smoothing or low-rank parts) and every `code − zero` fits MLC's fixed zero point; what the source left in
/// float and MLC quantizes (the embedding, lm_head, skipped linears) goes through MLC's quantizer. The KN presets
/// (`q4f16_0`, `q4bf16_0`, `q3f16_0`) transpose a linear's whole packed parameter before writing it (one fused
/// parameter is held in memory); `q4f16_2` writes the embedding and lm_head as float `.weight` tensors.
public enum MLCPacker {
    /// Options of `qpack IN --to mlc`.
    public struct Options: Sendable {
        public var preset: MLCPreset = .q4f16_1
        /// The conversation template (`nil`: detected from the chat template).
        public var template: String?
        /// Also write `ndarray-cache.json` (for runtimes from before TVM's NDArray → Tensor rename).
        public var legacyCache = false
        public var shardCap = TensorCache.defaultShardCap
        public init() {}
    }

    /// Packs `input` (a float model or a qkit checkpoint) into an MLC weight directory `output`.
    public static func run(input: String, output: String, options: Options, log: ((String) -> Void)? = nil) throws -> PackReport {
        let start = monotonicSeconds()
        let source = try MLCSource(path: input, preset: options.preset)
        var report = PackReport()
        report.quantizedFirst = source.packSource == nil
        let preset = options.preset
        let (chat, tokenizerFiles) = try MLCChatConfig.make(directory: source.checkpoint.directory, config: source.config, family: source.family,
                                                            preset: preset, template: options.template, path: input)
        let out = try OutputDirectory(path: output)
        let writer = TensorCacheWriter(directory: out.stagingPath, shardCap: options.shardCap)
        for p in source.parameters {
            if p.quantized {
                let shape = try source.quantizedShape(p)
                let wpr = preset.words(shape.k)
                // KN: the parameter's rows packed as NK, then written transposed.
                let transposed = preset.transposes(embedding: p.embedding)
                try writer.begin(name: p.name + ".q_weight", shape: preset.qWeightShape(n: shape.n, k: shape.k, embedding: p.embedding), tvmDType: "uint32")
                var held: [UInt32] = []
                if transposed { held.reserveCapacity(shape.n * wpr) }
                var scales: [Float] = []
                for part in p.parts {
                    let s = try source.mlcCodes(part) { codes, rows in
                        var words = [UInt32](repeating: 0, count: rows * wpr)
                        words.withUnsafeMutableBufferPointer { preset.pack(codes, rows: rows, k: shape.k, into: $0.baseAddress!) }
                        if transposed { held += words } else { try words.withUnsafeBytes { try writer.write($0) } }
                    }
                    scales += s.scales
                    report.packed += 1
                    log?("\(part) [\(s.n), \(shape.k)] \(s.fromQKit ? "qkit codes" : "mlc rtn") → \(p.name)")
                }
                if transposed { try writeTransposed(held, rows: shape.n, columns: wpr) { try writer.write($0) } }
                try writer.begin(name: p.name + ".q_scale", shape: preset.qScaleShape(n: shape.n, k: shape.k, embedding: p.embedding),
                                 tvmDType: preset.tvmModelDType)
                let g = preset.groups(shape.k)
                try emitModelDType(transposed ? Transpose.tiled(scales, rows: shape.n, columns: g) : scales, preset, writer)
            } else {
                var values: [Float] = []
                var rows = 0
                var shape: [Int] = []
                for part in p.parts {
                    let f = try source.floats.float32(part)
                    values += f.values
                    rows += f.shape.first ?? 1
                    shape = f.shape
                }
                if !shape.isEmpty { shape[0] = rows }
                try writer.begin(name: p.name, shape: shape, tvmDType: preset.tvmModelDType)
                try emitModelDType(values, preset, writer)
                report.copied += 1
            }
        }
        let bytes = Double(writer.sourceBytes)
        let metadata = JSONValue.object(JSONObject([("ParamSize", .int(writer.recordCount)), ("ParamBytes", .double(bytes)),
                                                    ("BitsPerParam", .double(bytes * 8 / Double(max(1, source.sourceParameters))))]))
        report.files = try writer.finish(metadata: metadata, legacy: options.legacyCache)
        report.bytesWritten = report.files.filter { $0.hasSuffix(".bin") }.reduce(0) { $0 + fileSize(out.stagedPath($1)) }
        try writeSmallFile(out.stagedPath("mlc-chat-config.json"), JSONValue.object(chat).serialized(indent: 2))
        for f in tokenizerFiles { try QKitQuantizer.copyFile(source.checkpoint.directory! + "/" + f, to: out.stagedPath(f)) }
        report.files += ["mlc-chat-config.json"] + tokenizerFiles
        try out.commit()
        report.seconds = monotonicSeconds() - start
        return report
    }

    /// Writes MLC's quantization of a float model as a qkit checkpoint (`intB:gG:asym`, zero points `max_int`, scales the
    /// model dtype's values in F32): every linear MLC quantizes, the embedding and an untied lm_head included, with the
    /// codes `qpack --to mlc` stores. Packing it with `--to mlc` gives the same files as packing the float model; qeval
    /// scores it as MLC's model (norms and biases, and q4f16_2's embedding and lm_head, are stored in MLC's dtype: F16,
    /// or BF16 for q4bf16_* and q4f32_1). The layout (NK or KN) does not matter here: qkit's codes are `[N, K]`.
    /// K must be a multiple of the group size (qkit has no ragged groups).
    public static func quantizeToQKit(model: String, output: String, preset: MLCPreset) throws {
        let source = try MLCSource(path: model, preset: preset)
        guard source.packSource == nil else { throw PackError.usage("\(model): already a qkit checkpoint") }
        let ck = source.checkpoint
        var specs: [TensorSpec] = []
        var items: [(String, QuantScheme)] = []
        var quantized = Set<String>()
        for p in source.parameters where p.quantized {
            for part in p.parts {
                let (n, k) = try source.partShape(part)
                guard k % preset.groupSize == 0 else {
                    throw PackError.unsupported(path: model, backend: "qkit", what: "\(part): K = \(k) is not a multiple of \(preset.groupSize)")
                }
                let g = k / preset.groupSize
                specs += [TensorSpec(name: part + ".weight_q", dtype: .u8, shape: [n, k]), TensorSpec(name: part + ".weight_scale", dtype: .f32, shape: [n, g]),
                          TensorSpec(name: part + ".weight_zero_point", dtype: .u8, shape: [n, g])]
                items.append((part, preset.qkitScheme))
                quantized.insert(part + ".weight")
            }
        }
        // MLC's float parameters (norms, biases) in the dtype MLC stores them in, so the checkpoint holds MLC's model exactly.
        let floatParts = Set(source.parameters.filter { !$0.quantized }.flatMap(\.parts))
        let stored = preset.storedScaleDType
        let copied = ck.tensors.filter { !quantized.contains($0.name) }
        specs += copied.compactMap { t in
            guard case .dtype(let d) = t.encoding else { return nil }
            return TensorSpec(name: t.name, dtype: floatParts.contains(t.name) ? stored : d, shape: t.shape)
        }
        let out = try OutputDirectory(path: output)
        let writer = try ShardedSafetensorsWriter(directory: out.stagingPath, tensors: specs, metadata: [("format", "pt")], maxShardSize: 5_000_000_000)
        for (part, _) in items {
            let s = try source.mlcCodes(part) { codes, rows in
                let k = try source.partShape(part).k
                try writer.write(UnsafeRawBufferPointer(start: codes, count: rows * k))
            }
            try s.scales.withUnsafeBytes { try writer.write($0) }
            try [UInt8](repeating: UInt8(preset.maxInt), count: s.scales.count).withUnsafeBytes { try writer.write($0) }
        }
        for t in copied {
            guard floatParts.contains(t.name) else { try QKitQuantizer.copyTensor(t, ck: ck, writer: writer); continue }
            let v = try source.floats.float32(t.name).values
            let bits = v.map { preset.storedBits($0) }
            try bits.withUnsafeBytes { try writer.write($0) }
        }
        try writer.finish()
        let recipe = try QuantRecipe(defaultScheme: preset.qkitScheme)
        try writeSmallFile(out.stagedPath("config.json"), try QKitConfig.outputConfig(source.config, recipe: recipe, items: items, fake: false).serialized(indent: 2) + "\n")
        if let dir = ck.directory { try QKitQuantizer.copyModelFiles(from: dir, to: out) }
        try out.commit()
    }

    /// Writes F32 values in the model dtype (F16 or bf16 rounded to nearest even; F32, which the writer encodes to
    /// bf16).
    static func emitModelDType(_ values: [Float], _ preset: MLCPreset, _ writer: TensorCacheWriter) throws {
        if preset.modelDType == .f32 {
            try values.withUnsafeBytes { try writer.write($0) }
        } else {
            let h = values.map { preset.storedBits($0) }
            try h.withUnsafeBytes { try writer.write($0) }
        }
    }

    /// Writes `rows × columns` words (row-major) transposed, `columns × rows`, a band of output rows (about 4 MB)
    /// at a time.
    static func writeTransposed(_ a: [UInt32], rows: Int, columns: Int, _ write: (UnsafeRawBufferPointer) throws -> Void) throws {
        precondition(a.count == rows * columns)
        let block = max(1, min(columns, (1 << 20) / max(1, rows)))
        var out = [UInt32](repeating: 0, count: block * rows)
        var c0 = 0
        while c0 < columns {
            let n = min(block, columns - c0)
            a.withUnsafeBufferPointer { src in
                out.withUnsafeMutableBufferPointer { Transpose.tiled(src.baseAddress! + c0, rows: rows, columns: n, sourceStride: columns, into: $0.baseAddress!) }
            }
            try out.withUnsafeBytes { try write(UnsafeRawBufferPointer(rebasing: $0[0..<(4 * n * rows)])) }
            c0 += n
        }
    }

    static func fileSize(_ path: String) -> Int { (try? MappedFile(path: path).count) ?? 0 }
}

/// The source of an MLC pack (or of its verification): a float model or a qkit checkpoint, with MLC's parameter
/// list for its family and every part checked up front.
final class MLCSource {
    let checkpoint: Checkpoint
    let config: JSONValue
    let family: MLCFamily
    let preset: MLCPreset
    let floats: CheckpointWeights
    let packSource: PackSource?
    let plans: [String: LinearPlan]
    let parameters: [MLCFamily.Parameter]
    /// Logical parameters of the source tensors used (MLC's `total_param_num`).
    let sourceParameters: Int
    let path: String

    init(path: String, preset: MLCPreset) throws {
        self.path = path
        self.preset = preset
        let ck = try Checkpoint(path: path)
        checkpoint = ck
        func refuse(_ what: String) -> PackError { PackError.unsupported(path: path, backend: "mlc", what: what) }
        guard let config = ck.config else { throw PackError.malformed(path: path, what: "no config.json beside the weights (MLC needs the model's configuration)") }
        self.config = config
        guard ck.kind != .gguf, ck.kind != .tensorCache else { throw PackError.usage("\(path): pack a float model or a qkit checkpoint (this is \(ck.kind.rawValue))") }
        let method = config["quantization_config"]?["quant_method"]?.stringValue
        if let method, method != "qkit" { throw PackError.usage("\(path): input quantized as '\(method)' (only qkit checkpoints and float models are sources)") }
        guard let family = MLCFamily.of(config) else {
            throw refuse("model_type '\(config["model_type"]?.stringValue ?? "none")' (qpack packs llama, mistral, qwen2 and qwen3 for MLC)")
        }
        self.family = family
        floats = CheckpointWeights(ck)
        packSource = method == "qkit" ? try PackSource(ck) : nil
        plans = Dictionary(uniqueKeysWithValues: (packSource?.linears ?? []).map { ($0.prefix, $0) })
        let tied = config["tie_word_embeddings"]?.boolValue ?? false
        if tied, !family.canTie { throw refuse("tie_word_embeddings with model_type \(family.modelType) (MLC's model has its own lm_head)") }
        guard let layers = config["num_hidden_layers"]?.intValue, layers > 0 else { throw PackError.malformed(path: path, what: "config.json has no num_hidden_layers") }
        parameters = family.parameters(layers: layers, tied: tied, preset: preset)

        // Every part present, each quantized one in a scheme MLC holds; every source tensor used (or known unused).
        var used = Set<String>()
        var count = 0
        for p in parameters {
            for part in p.parts {
                if p.quantized, let plan = plans[part] {
                    if let why = preset.refusal(plan) { throw refuse(why) }
                    used.formUnion(PackSource.parts.map { part + "." + $0 }.filter { ck[$0] != nil })
                    count += plan.n * plan.k
                    continue
                }
                let name = p.quantized ? part + ".weight" : part
                if !p.quantized, name.hasSuffix(".weight"), plans[String(name.dropLast(".weight".count))] != nil {
                    throw refuse("\(name) is quantized in the source, and \(preset) keeps it unquantized (\(preset.tvmModelDType)); "
                                 + "pack the float model, or choose a preset that quantizes it")
                }
                guard let t = ck[name] else { throw PackError.malformed(path: path, what: "missing tensor \(name) (MLC's \(p.name) needs it)") }
                guard t.encoding.isFloatingPoint else { throw PackError.malformed(path: path, what: "\(name) is \(t.encoding), not a float tensor") }
                if p.quantized, t.shape.count != 2 { throw PackError.malformed(path: path, what: "\(name) is not 2-D") }
                used.insert(name)
                count += t.elementCount
            }
        }
        for t in ck.tensors where !used.contains(t.name) && !t.name.hasSuffix(".rotary_emb.inv_freq") {
            if tied, t.name == "lm_head.weight" { continue }
            throw refuse("\(t.name) (MLC's \(family.modelType) model has no parameter for it)")
        }
        sourceParameters = count
    }

    /// `[N, K]` of a quantized MLC parameter: its parts' rows added, one K.
    func quantizedShape(_ p: MLCFamily.Parameter) throws -> (n: Int, k: Int) {
        var n = 0
        var k: Int?
        for part in p.parts {
            let (pn, pk) = try partShape(part)
            if let k, k != pk { throw PackError.malformed(path: path, what: "\(part) has K = \(pk), the other parts of \(p.name) \(k)") }
            k = pk
            n += pn
        }
        return (n, k!)
    }

    func partShape(_ part: String) throws -> (n: Int, k: Int) {
        if let plan = plans[part] { return (plan.n, plan.k) }
        let s = try floats.shape(of: part + ".weight")
        return (s[0], s[1])
    }

    /// MLC codes of one part (a Hugging Face module), given a block of rows at a time, and its scales (values of the
    /// model dtype; exact F32 for q4f32_1). qkit codes are converted (`u − z + max_int`); float weights quantized.
    func mlcCodes(_ part: String, _ emit: (UnsafePointer<UInt8>, Int) throws -> Void) throws -> (n: Int, scales: [Float], fromQKit: Bool) {
        if let plan = plans[part], let source = packSource {
            let q = try source.linear(plan)
            switch preset.mlcCodes(q) {
            case .success(let codes):
                try codes.withUnsafeBufferPointer { try emit($0.baseAddress!, plan.n) }
            case .failure(let e):
                throw PackError.unsupported(path: path, backend: "mlc", what: "\(part): code \(e.code) (after the zero point) at [\(e.row), \(e.column)]: "
                                            + "MLC's zero point is fixed at \(preset.maxInt), so its codes run \(e.lowest)…\(e.highest); "
                                            + "pack the float model instead (quantized with MLC's own rounding)")
            }
            return (plan.n, q.scales.map { preset.modelDType.rounding($0) }, true)
        }
        let (n, k) = try partShape(part)
        let g = preset.groups(k)
        var scales = [Float](repeating: 0, count: n * g)
        let chunk = max(1, min(n, (1 << 22) / max(1, k)))
        var w = [Float](repeating: 0, count: chunk * k)
        var codes = [UInt8](repeating: 0, count: chunk * k)
        var r = 0
        while r < n {
            let rows = min(chunk, n - r)
            try w.withUnsafeMutableBufferPointer { try floats.readFloat32(part + ".weight", rows: r..<(r + rows), into: UnsafeMutableBufferPointer(rebasing: $0[0..<(rows * k)])) }
            w.withUnsafeBufferPointer { wb in
                codes.withUnsafeMutableBufferPointer { cb in
                    scales.withUnsafeMutableBufferPointer { sb in
                        preset.quantize(wb.baseAddress!, rows: rows, k: k, codes: cb.baseAddress!, scales: sb.baseAddress! + r * g)
                    }
                }
            }
            try codes.withUnsafeBufferPointer { try emit($0.baseAddress!, rows) }
            r += rows
        }
        return (n, scales, false)
    }
}

/// An MLC weight directory (tensor cache + mlc-chat-config.json) read as a `WeightSource` with Hugging Face names:
/// the fused `qkv_proj`/`c_attn` and `gate_up_proj` are split back into q/k/v and gate/up by the configuration's
/// head counts, the embedding and every linear dequantized on read (a KN preset's linears transposed back). A float
/// embedding or lm_head (`q4f16_2`) is read as it is stored.
public final class MLCWeights: PackedWeightsBase, PackedWeightSource, @unchecked Sendable {
    public let preset: MLCPreset
    public let family: MLCFamily
    /// mlc-chat-config.json.
    public let chatConfig: JSONValue
    let hfConfig: JSONValue
    /// Hugging Face module → (MLC module, first row).
    var location: [String: (module: String, row: Int)] = [:]
    /// Split biases: Hugging Face name → (MLC tensor, first row, rows).
    var biases: [String: (tensor: String, row: Int, count: Int)] = [:]
    /// MLC modules whose `q_weight`/`q_scale` are stored transposed (a KN preset's linears): module → N.
    var transposedRows: [String: Int] = [:]

    public var layoutName: String { "mlc" }
    public override var config: JSONValue? { hfConfig }

    /// Opens an MLC directory; every quantized parameter must have the shapes its preset and configuration give.
    public init(_ ck: Checkpoint) throws {
        guard ck.kind == .tensorCache, let dir = ck.directory else { throw PackError.malformed(path: ck.path, what: "not a tensor cache") }
        let chatPath = dir + "/mlc-chat-config.json"
        let chat: JSONValue
        do { chat = try JSONParser.parse(try readSmallFile(chatPath, limit: 64 << 20), rejectDuplicateKeys: false) } catch {
            throw PackError.malformed(path: chatPath, what: "cannot read mlc-chat-config.json: \(error)")
        }
        chatConfig = chat
        let q = chat["quantization"]?.stringValue ?? "none"
        guard let preset = MLCPreset.named(q) else { throw PackError.malformed(path: chatPath, what: "quantization '\(q)' is not read (\(MLCPreset.names))") }
        self.preset = preset
        guard let hf = MLCChatConfig.huggingFaceConfig(chat), let family = MLCFamily.of(hf) else {
            throw PackError.malformed(path: chatPath, what: "model_type '\(chat["model_type"]?.stringValue ?? "none")' or model_config is not read")
        }
        self.family = family
        hfConfig = hf
        super.init(base: ck)
        func int(_ k: String) throws -> Int {
            guard let v = hf[k]?.intValue, v > 0 else { throw PackError.malformed(path: chatPath, what: "model_config has no \(k)") }
            return v
        }
        let hidden = try int("hidden_size"), heads = try int("num_attention_heads"), inter = try int("intermediate_size")
        let kvHeads = hf["num_key_value_heads"]?.intValue ?? heads, headDim = hf["head_dim"]?.intValue ?? hidden / heads
        let (nq, nkv) = (heads * headDim, kvHeads * headDim)
        for t in ck.tensors where t.name.hasSuffix(".q_weight") {
            let m = String(t.name.dropLast(".q_weight".count))
            let last = m.split(separator: ".").last.map(String.init) ?? m
            var parts: [(String, Int)]
            let k: Int
            switch last {
            case family.attention:
                let base = String(m.dropLast(last.count))
                parts = [(base + "q_proj", nq), (base + "k_proj", nkv), (base + "v_proj", nkv)]
                k = hidden
            case "gate_up_proj":
                let base = String(m.dropLast(last.count))
                parts = [(base + "gate_proj", inter), (base + "up_proj", inter)]
                k = hidden
            case "o_proj": parts = [(m, hidden)]; k = nq
            case "down_proj": parts = [(m, hidden)]; k = inter
            case "embed_tokens": parts = [(m, t.shape.first ?? 0)]; k = hidden
            case "lm_head": parts = [(m, (preset.transposed ? t.shape.last : t.shape.first) ?? 0)]; k = hidden
            default: throw fail("\(t.name): not an MLC \(family.modelType) parameter")
            }
            let n = parts.reduce(0) { $0 + $1.1 }
            let embedding = last == "embed_tokens"
            _ = try tensor(t.name, [.u32], preset.qWeightShape(n: n, k: k, embedding: embedding))
            _ = try tensor(m + ".q_scale", [preset.storedScaleDType], preset.qScaleShape(n: n, k: k, embedding: embedding))
            if preset.transposes(embedding: embedding) { transposedRows[m] = n }
            var row = 0
            for (p, rows) in parts {
                shapes[p] = (rows, k)
                location[p] = (m, row)
                row += rows
            }
            if last == family.attention, let b = ck[m + ".bias"], b.shape == [n] {
                biases[String(m.dropLast(last.count)) + "q_proj.bias"] = (m + ".bias", 0, nq)
                biases[String(m.dropLast(last.count)) + "k_proj.bias"] = (m + ".bias", nq, nkv)
                biases[String(m.dropLast(last.count)) + "v_proj.bias"] = (m + ".bias", nq + nkv, nkv)
            }
        }
    }

    public override func contains(_ name: String) -> Bool { biases[name] != nil || super.contains(name) }

    public override func shape(of name: String) throws -> [Int] {
        if let b = biases[name] { return [b.count] }
        return try super.shape(of: name)
    }

    public func scaleDType(of prefix: String) -> DType { preset.storedScaleDType }

    public func tensorNames(of prefix: String) -> [String] {
        guard let l = location[prefix] else { return [] }
        return [l.module + ".q_weight", l.module + ".q_scale"]
    }

    public func readFloat32(_ name: String, rows: Range<Int>, into destination: UnsafeMutableBufferPointer<Float>) throws {
        if let b = biases[name] {
            guard rows.lowerBound >= 0, rows.upperBound <= b.count else { throw WeightSourceError.badRows(source: label, name: name, rows: rows, count: b.count) }
            return try base.readFloat32(b.tensor, rows: (b.row + rows.lowerBound)..<(b.row + rows.upperBound), into: destination)
        }
        try readPacked(name, rows: rows, into: destination, shapes: shapes, base: base)
    }

    public func unpack(_ prefix: String, rows: Range<Int>) throws -> QuantizedLinear {
        guard let (n, k) = shapes[prefix], let l = location[prefix] else { throw fail("\(prefix) is not a packed linear") }
        precondition(rows.lowerBound >= 0 && rows.upperBound <= n)
        let qw = checkpoint[l.module + ".q_weight"]!, qs = checkpoint[l.module + ".q_scale"]!
        let wpr = preset.words(k), g = preset.groups(k)
        let first = l.row + rows.lowerBound
        var codes = [UInt8](repeating: 0, count: rows.count * k)
        var scales = [Float](repeating: 0, count: rows.count * g)
        let raw = checkpoint.data(qw), sraw = checkpoint.data(qs)
        let dt = preset.storedScaleDType
        let bytes = dt.bitSize / 8
        if let total = transposedRows[l.module] {
            // KN: `q_weight [wpr, N]`, `q_scale [g, N]`; the rows' words and scales gathered into NK order.
            var words = [UInt32](repeating: 0, count: rows.count * wpr)
            for r in 0..<rows.count {
                for w in 0..<wpr { words[r * wpr + w] = raw.loadUnaligned(fromByteOffset: 4 * (w * total + first + r), as: UInt32.self) }
            }
            words.withUnsafeBytes { wb in codes.withUnsafeMutableBufferPointer { preset.unpack(wb.baseAddress!, rows: rows.count, k: k, into: $0.baseAddress!) } }
            var s = [UInt8](repeating: 0, count: rows.count * g * bytes)
            for r in 0..<rows.count {
                for j in 0..<g { for b in 0..<bytes { s[(r * g + j) * bytes + b] = sraw[(j * total + first + r) * bytes + b] } }
            }
            s.withUnsafeBytes { sb in scales.withUnsafeMutableBufferPointer { Conversion.decode(dt, sb, into: $0) } }
        } else {
            codes.withUnsafeMutableBufferPointer { preset.unpack(raw.baseAddress! + 4 * first * wpr, rows: rows.count, k: k, into: $0.baseAddress!) }
            scales.withUnsafeMutableBufferPointer {
                Conversion.decode(dt, UnsafeRawBufferPointer(rebasing: sraw[(first * g * bytes)..<((first + rows.count) * g * bytes)]), into: $0)
            }
        }
        // A ragged last group (K not a multiple of G) is described by explicit group indices.
        let groupIndex: [Int32]? = k % preset.groupSize == 0 ? nil : (0..<k).map { Int32($0 / preset.groupSize) }
        return QuantizedLinear(prefix: prefix, scheme: preset.qkitScheme, rows: rows, k: k, codes: codes, scales: scales, scaleRows: rows.count,
                               groups: g, zeros: [UInt8](repeating: UInt8(preset.maxInt), count: rows.count * g), groupIndex: groupIndex)
    }
}

/// `qpack --verify` of an MLC directory.
enum MLCVerifier {
    /// Keys of mlc-chat-config.json MLC's runtime reads.
    static let requiredKeys = ["version", "model_type", "quantization", "model_config", "vocab_size", "context_window_size", "sliding_window_size",
                               "prefill_chunk_size", "attention_sink_size", "tensor_parallel_shards", "tokenizer_files", "tokenizer_info",
                               "conv_template", "bos_token_id", "eos_token_id"]

    static func verify(_ reader: MLCWeights, output: String, source: String?) throws -> PackVerifyReport {
        var report = PackVerifyReport()
        report.layout = "mlc"
        var issues: [String] = []
        let ck = reader.checkpoint
        for key in requiredKeys where reader.chatConfig[key] == nil { issues.append("mlc-chat-config.json has no '\(key)'") }
        if reader.chatConfig["quantization"]?.stringValue != reader.preset.name { issues.append("quantization differs from the preset") }
        // The parameter list MLC's model of this family expects, nothing more.
        let layers = reader.config?["num_hidden_layers"]?.intValue ?? 0
        let tied = reader.config?["tie_word_embeddings"]?.boolValue ?? false
        var expected = Set<String>()
        for p in reader.family.parameters(layers: layers, tied: tied, preset: reader.preset) {
            if p.quantized { expected.formUnion([p.name + ".q_weight", p.name + ".q_scale"]) } else { expected.insert(p.name) }
        }
        let present = Set(ck.tensors.map(\.name))
        for name in expected.subtracting(present).sorted(by: naturalLess) { issues.append("missing parameter \(name)") }
        for name in present.subtracting(expected).sorted(by: naturalLess) { issues.append("unexpected parameter \(name)") }
        for t in ck.tensors where expected.contains(t.name) && !t.name.hasSuffix(".q_weight") && !t.name.hasSuffix(".q_scale") {
            if t.encoding != .dtype(reader.preset.storedScaleDType) { issues.append("\(t.name) is \(t.encoding), not the model dtype") }
            report.otherTensors += 1
        }
        for p in reader.packedPrefixes { _ = try reader.unpack(p, rows: 0..<reader.shapes[p]!.n) }
        report.packedLinears = reader.packedPrefixes.count

        if let source {
            report.comparedWithSource = true
            let src = try MLCSource(path: source, preset: reader.preset)
            for p in src.parameters {
                if p.quantized {
                    for part in p.parts {
                        guard reader.shapes[part] != nil else { issues.append("\(part) is not packed"); continue }
                        let k = try src.partShape(part).k
                        var codes: [UInt8] = []
                        let s = try src.mlcCodes(part) { c, rows in codes += UnsafeBufferPointer(start: c, count: rows * k) }
                        let g = reader.preset.groups(k)
                        let a = QuantizedLinear(prefix: part, scheme: reader.preset.qkitScheme, rows: 0..<s.n, k: k, codes: codes, scales: s.scales,
                                                scaleRows: s.n, groups: g, zeros: [UInt8](repeating: UInt8(reader.preset.maxInt), count: s.n * g),
                                                groupIndex: k % reader.preset.groupSize == 0 ? nil : (0..<k).map { Int32($0 / reader.preset.groupSize) })
                        issues += PackVerifier.compare(a, try reader.unpack(part, rows: 0..<s.n), scaleDType: reader.preset.storedScaleDType)
                    }
                } else {
                    var values: [Float] = []
                    for part in p.parts { values += try src.floats.float32(part).values }
                    guard let t = ck[p.name] else { continue }
                    let stored = values.map { reader.preset.stored($0) }
                    var got = [Float](repeating: 0, count: t.elementCount)
                    got.withUnsafeMutableBufferPointer { Conversion.decode(reader.preset.storedScaleDType, ck.data(t), into: $0) }
                    if got.map(\.bitPattern) != stored.map(\.bitPattern) { issues.append("\(p.name) differs from the source in the model dtype") }
                }
            }
        }
        if !issues.isEmpty {
            let shown = issues.prefix(20).joined(separator: "; ")
            throw PackError.verifyFailed(path: output, what: shown + (issues.count > 20 ? "; … \(issues.count - 20) more" : ""))
        }
        return report
    }
}
