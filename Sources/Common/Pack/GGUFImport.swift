#if canImport(Glibc)
import Glibc
#endif
/// GGUF → Hugging Face import (`qpack X.gguf --to safetensors`): dequantizes every tensor, undoes llama.cpp's
/// renaming and q/k row permutation, and writes `config.json`, `model.safetensors` (or shards + index),
/// `tokenizer.json`, `tokenizer_config.json` and `generation_config.json` into a directory that appears only
/// when everything succeeded. Tensors stream one chunk of rows at a time: memory stays at a few MB whatever
/// the model size.
public enum GGUFImport {
    /// Float bytes per chunk of rows dequantized at once.
    static let chunkBytes = 8 << 20

    /// Runs `body` with a model directory for `input`: `input` itself, or, when it is a GGUF file, its f32
    /// import (every tensor dequantized exactly, `run`) in a hidden directory beside `output`
    /// (`.NAME.qkit-gguf-PID`), removed afterwards whatever happens. This is how every `qpack --to` layout takes
    /// a GGUF file as input: a float model, quantized again in the layout's scheme. The scratch copy takes four
    /// bytes per parameter on disk; memory stays at the importer's few MB.
    public static func withModelDirectory<T>(_ input: String, beside output: String, log: ((String) -> Void)? = nil,
                                             _ body: (String) throws -> T) throws -> T {
        guard input != "-", fileExists(input), !isDirectory(input), Checkpoint.looksLikeGGUF(input) else { return try body(input) }
        let scratch = hiddenSibling(of: output, suffix: "qkit-gguf-\(getpid())")
        defer { removeTree(scratch) }
        log?("importing \(input) as f32 into \(scratch)")
        try run(gguf: input, output: scratch, dtype: .f32, maxShardSize: nil, progress: log)
        return try body(scratch)
    }

    /// Imports `gguf` into the directory `output`.
    /// - Parameters:
    ///   - dtype: `.f32`, `.f16` or `.bf16` (values are dequantized to f32, then rounded to nearest even).
    ///   - maxShardSize: bytes of tensor data per shard (`nil` = one file).
    ///   - progress: called with one line per tensor written (for `--verbose`).
    public static func run(gguf: String, output: String, dtype: DType, maxShardSize: Int?,
                           progress: ((String) -> Void)? = nil) throws {
        guard dtype == .f32 || dtype == .f16 || dtype == .bf16 else { throw GGUFImportError.unsupportedDType(dtype.rawValue) }
        let g = try GGUFFile(path: gguf)
        let plan: Plan
        let vocab: GGUFTokenizer.Vocabulary
        let tokenizerText: String
        do {
            plan = try Plan(g, dtype: dtype)
            vocab = try GGUFTokenizer.Vocabulary(g)
            tokenizerText = try GGUFTokenizer.tokenizerJSON(vocab).serialized(indent: 2) + "\n"
        } catch {
            throw LocatedError(error, path: gguf)
        }

        let out = try OutputDirectory(path: output)
        let writer = try ShardedSafetensorsWriter(
            directory: out.stagingPath, tensors: plan.items.map(\.spec), metadata: [("format", "pt")],
            maxShardSize: maxShardSize ?? Int.max)
        var scratch = Scratch()
        for item in plan.items {
            do {
                try write(item, from: g, dtype: dtype, into: writer, scratch: &scratch)
            } catch let e as GGMLQuantsError {
                throw LocatedError(e, path: gguf)
            }
            progress?("\(item.tensor.name) \(item.tensor.type.name) → \(item.spec.name) \(dtype.rawValue) \(item.spec.shape)")
        }
        try writer.finish()

        let config = plan.config.json(dtype: dtype, bos: vocab.bos, eos: vocab.eos, pad: vocab.pad, unk: vocab.unk)
        try writeSmallFile(out.stagedPath("config.json"), config.serialized(indent: 2) + "\n")
        var gen = JSONObject()
        gen["_from_model_config"] = true
        if let b = vocab.bos { gen["bos_token_id"] = .int(b) }
        if let e = vocab.eos { gen["eos_token_id"] = .int(e) }
        if let p = vocab.pad { gen["pad_token_id"] = .int(p) }
        try writeSmallFile(out.stagedPath("generation_config.json"), JSONValue.object(gen).serialized(indent: 2) + "\n")
        try writeSmallFile(out.stagedPath("tokenizer.json"), tokenizerText)
        let tokConfig = GGUFTokenizer.tokenizerConfig(vocab, modelMaxLength: plan.config.contextLength)
        try writeSmallFile(out.stagedPath("tokenizer_config.json"), tokConfig.serialized(indent: 2) + "\n")
        try out.commit()
    }

    /// One output tensor: where it comes from and what it becomes.
    struct Item {
        var tensor: GGUFTensorInfo
        var spec: TensorSpec
        var permuteHeads: Int?
    }

    /// Every tensor mapped, checked and ordered by name (the order transformers' `save_pretrained` writes).
    struct Plan {
        var config: GGUFModelConfig
        var items: [Item]

        init(_ g: GGUFFile, dtype: DType) throws(GGUFImportError) {
            config = try GGUFModelConfig(g)
            var items: [Item] = []
            for t in g.tensors {
                guard let m = try config.hfTensor(t.name) else { continue }
                let shape = t.shape
                if let expected = config.expectedShape(m.name), expected != shape { throw .badTensorShape(t.name) }
                if let h = m.permuteHeads {
                    // Rows are grouped per head in pairs: the row count must split into heads of even size.
                    guard shape[0] % h == 0, (shape[0] / h) % 2 == 0 else { throw .badTensorShape(t.name) }
                }
                guard t.type.canDequantize else {
                    throw .badKey("type of tensor '\(t.name)': \(t.type.name) cannot be dequantized yet")
                }
                items.append(Item(tensor: t, spec: TensorSpec(name: m.name, dtype: dtype, shape: shape), permuteHeads: m.permuteHeads))
            }
            for required in ["model.embed_tokens.weight", "model.norm.weight"] where !items.contains(where: { $0.spec.name == required }) {
                throw .missingTensor(required == "model.norm.weight" ? "output_norm.weight" : "token_embd.weight")
            }
            for l in 0..<config.layers {
                for (gname, hname) in GGUFModelConfig.blockTensors {
                    let want = "model.layers.\(l).\(hname).weight"
                    if !items.contains(where: { $0.spec.name == want }) { throw .missingTensor("blk.\(l).\(gname).weight") }
                }
                if config.family == .qwen2 {
                    for b in ["attn_q", "attn_k", "attn_v"] where g.tensor(named: "blk.\(l).\(b).bias") == nil {
                        throw .missingTensor("blk.\(l).\(b).bias")
                    }
                }
            }
            items.sort { $0.spec.name.utf8.lexicographicallyPrecedes($1.spec.name.utf8) }
            self.items = items
        }
    }

    /// Reusable buffers (one chunk of dequantized rows, its permuted copy and its encoded bytes).
    struct Scratch {
        var floats: [Float] = []
        var permuted: [Float] = []
        var bytes: [UInt8] = []
    }

    static func write(_ item: Item, from g: GGUFFile, dtype: DType, into writer: ShardedSafetensorsWriter, scratch: inout Scratch) throws {
        let t = item.tensor
        let rowLength = t.rowLength, rows = t.rowCount, rowBytes = t.rowByteCount
        let data = g.data(t)
        let range = g.fileRange(t)
        g.file.adviseSequential(range)
        defer { g.file.release(range) }
        // Rows per chunk: one head's rows when permuting (q/k), otherwise as many as fit the chunk budget.
        let chunkRows: Int
        if let h = item.permuteHeads {
            chunkRows = rows / h
        } else {
            chunkRows = max(1, min(rows, chunkBytes / 4 / max(1, rowLength)))
        }
        let count = chunkRows * rowLength
        if scratch.floats.count < count { scratch.floats = [Float](repeating: 0, count: count) }
        if item.permuteHeads != nil, scratch.permuted.count < count { scratch.permuted = [Float](repeating: 0, count: count) }
        let outBytes = count * (dtype == .f32 ? 4 : 2)
        if scratch.bytes.count < outBytes { scratch.bytes = [UInt8](repeating: 0, count: outBytes) }

        var row = 0
        while row < rows {
            let n = min(chunkRows, rows - row)
            let src = UnsafeRawBufferPointer(rebasing: data[row * rowBytes..<(row + n) * rowBytes])
            try scratch.floats.withUnsafeMutableBufferPointer { f in
                try GGMLQuants.dequantize(t.type, src, into: UnsafeMutableBufferPointer(rebasing: f[0..<n * rowLength]))
            }
            var values = scratch.floats
            if item.permuteHeads != nil {
                scratch.floats.withUnsafeBufferPointer { s in
                    scratch.permuted.withUnsafeMutableBufferPointer { d in unpermuteHead(s, into: d, rows: n, rowLength: rowLength) }
                }
                values = scratch.permuted
            }
            let m = n * rowLength
            try values.withUnsafeBufferPointer { v in
                try scratch.bytes.withUnsafeMutableBytes { b in
                    let src = UnsafeBufferPointer(rebasing: v[0..<m])
                    if dtype == .f32 {
                        try writer.write(UnsafeRawBufferPointer(src))
                    } else {
                        Conversion.encode(src, as: dtype, into: b)
                        try writer.write(UnsafeRawBufferPointer(rebasing: b[0..<2 * m]))
                    }
                }
            }
            row += n
        }
    }

    /// Undoes llama.cpp's q/k permutation for the `rows` rows of one attention head: GGUF row 2i + j of a head
    /// holds Hugging Face row j·(rows/2) + i (convert_hf_to_gguf's `permute`).
    public static func unpermuteHead(_ s: UnsafeBufferPointer<Float>, into d: UnsafeMutableBufferPointer<Float>, rows: Int, rowLength: Int) {
        let halfRows = rows / 2
        for j in 0..<2 {
            for i in 0..<halfRows {
                let from = (2 * i + j) * rowLength, to = (j * halfRows + i) * rowLength
                for k in 0..<rowLength { d[to + k] = s[from + k] }
            }
        }
    }
}
