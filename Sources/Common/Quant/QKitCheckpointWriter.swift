#if canImport(Glibc)
import Glibc
#endif

/// Why a checkpoint cannot be quantized.
public enum QuantizeError: QKitError, Equatable {
    /// A weight selected for quantization is not stored as floating-point numbers.
    case notFloat(path: String, tensor: String, encoding: String)
    /// The input is already a qkit checkpoint.
    case alreadyQuantized(path: String)
    /// The input is not a safetensors checkpoint.
    case unsupportedInput(path: String, kind: String)
    /// An output tensor name is taken by an input tensor (e.g. `P.weight_q` beside `P.weight`).
    case nameClash(path: String, tensor: String)

    public var exitStatus: ExitStatus {
        switch self {
        case .notFloat, .alreadyQuantized, .nameClash: .dataError
        case .unsupportedInput: .usage
        }
    }

    public var path: String? {
        switch self {
        case .notFloat(let p, _, _), .alreadyQuantized(let p), .unsupportedInput(let p, _), .nameClash(let p, _): p
        }
    }

    public var description: String {
        switch self {
        case .notFloat(_, let t, let e): "\(t) is \(e), not floating point: only float weights can be quantized"
        case .alreadyQuantized: "already a qkit checkpoint (quant_method qkit); quantize the float model instead"
        case .unsupportedInput(_, let k): "\(k) input: import it first with 'qpack IN --to safetensors -o DIR'"
        case .nameClash(_, let t): "the output tensor \(t) would clash with an input tensor of the same name"
        }
    }
}

/// Options of one quantization run.
public struct QuantizeOptions: Sendable {
    public var recipe: QuantRecipe
    /// Write dequantized weights in the source dtype (or `fakeDType`) instead of codes and scales.
    public var fake = false
    /// Element type of fake-quantized weights (default: each weight's source dtype).
    public var fakeDType: DType?
    /// Largest output shard in bytes of tensor data.
    public var maxShardSize = 5_000_000_000
    /// Settings of the HQQ solver.
    public var hqq = HQQ.Settings()
    /// Run-time activation quantization to record (`activation_format`, e.g. A8 beside 4-bit weights), or `nil`
    /// (a calibrated algorithm may record its own).
    public var activationQuantization: ActivationQuantization?
    /// KV-cache quantization to record (`kv_cache_format`), or `nil`.
    public var kvCache: KVCacheQuantization?
    /// Static KV-cache scales of every layer, written as `self_attn.k_scale`/`v_scale` by the streaming
    /// quantizer (data-free algorithms; the calibration engine measures its own), or `nil`.
    public var kvCacheScales: [KVCacheQuantization.StaticScales]?
    public init(recipe: QuantRecipe) { self.recipe = recipe }
}

/// What a run did, for `--json` and the closing line.
public struct QuantizeReport: Sendable {
    /// Each quantized weight: name, scheme, shape.
    public var quantized: [(name: String, scheme: QuantScheme, shape: [Int])] = []
    /// Tensors copied unchanged.
    public var copied = 0
    /// Bytes of input tensor data read, and of output tensor data written.
    public var bytesRead = 0
    public var bytesWritten = 0
    public var seconds = 0.0
    /// The output files (relative names).
    public var files: [String] = []

    /// The report as JSON.
    public var json: JSONValue {
        var counts: [String: Int] = [:]
        for q in quantized { counts[q.scheme.description, default: 0] += 1 }
        let schemes = JSONObject(counts.sorted { $0.key < $1.key }.map { ($0.key, JSONValue.int($0.value)) })
        return [
            "quantized": .int(quantized.count), "copied": .int(copied), "schemes": .object(schemes),
            "bytes_read": .int(bytesRead), "bytes_written": .int(bytesWritten),
            "seconds": .double((seconds * 1000).rounded() / 1000),
            "read_gb_per_s": .double(seconds > 0 ? (Double(bytesRead) / seconds / 1e8).rounded() / 10 : 0),
            "files": .array(files.map { .string($0) }),
            "tensors": .array(quantized.map { ["name": .string($0.name), "scheme": .string($0.scheme.description),
                                                "shape": .array($0.shape.map { .int($0) })] }),
        ]
    }
}

/// Quantizes a float checkpoint into a qkit checkpoint (or a fake-quantized float one), streaming: one
/// tensor at a time from the mapping, rows in parallel, output written as it is produced into a hidden
/// staging directory that is renamed into place at the end (`OutputDirectory`).
public enum QKitQuantizer {
    /// Bytes of codes produced per parallel block (the unit of writing and of page release).
    static let blockBytes = 8 << 20
    /// Rows per unit of parallel work.
    static let rowsPerTask = 8

    /// One tensor of the plan.
    struct Item {
        var tensor: CheckpointTensor
        var scheme: QuantScheme?
        var outputs: [TensorSpec]
    }

    /// Runs the quantization of `model` into `output`.
    /// - Parameter progress: called after each block with (bytes of input done, total input bytes).
    public static func run(model: String, output: String, options: QuantizeOptions,
                           progress: ((Int, Int) -> Void)? = nil, log: ((String) -> Void)? = nil) throws -> QuantizeReport {
        let start = monotonicSeconds()
        let ck = try Checkpoint(path: model)
        guard ck.kind != .gguf else { throw QuantizeError.unsupportedInput(path: model, kind: "GGUF") }
        guard ck.directory != nil, model != "-" else { throw QuantizeError.unsupportedInput(path: model, kind: "standard") }
        if ck.config?["quantization_config"]?["quant_method"]?.stringValue == "qkit" { throw QuantizeError.alreadyQuantized(path: model) }
        // A diffusers transformer (FLUX.1, SANA, PixArt-Σ) is selected by its family's descriptor.
        if DiffusionTransformers.isDiffusers(ck) { return try DiffusionQuantizer.run(model: model, output: output, options: options, log: log) }

        // Plan: every tensor's scheme and output tensors, checked before anything is written.
        var items: [Item] = []
        for t in ck.tensors {
            guard let scheme = options.recipe.scheme(for: t.name, shape: t.shape) else {
                guard case .dtype(let d) = t.encoding else { throw QuantizeError.unsupportedInput(path: model, kind: "GGUF") }
                items.append(Item(tensor: t, scheme: nil, outputs: [TensorSpec(name: t.name, dtype: d, shape: t.shape)]))
                continue
            }
            guard case .dtype(let d) = t.encoding, d.isFloatingPoint else {
                throw QuantizeError.notFloat(path: model, tensor: t.name, encoding: t.encoding.description)
            }
            let k = t.shape[1]
            try scheme.check(tensor: t.name, k: k)
            items.append(Item(tensor: t, scheme: scheme, outputs: outputSpecs(name: t.name, dtype: d, shape: t.shape, scheme: scheme, options: options)))
        }
        let kvTensors = (options.kvCacheScales ?? []).enumerated().flatMap { KVCacheCalibration.tensors(layer: $0.offset, scales: $0.element) }
        let names = items.flatMap { $0.outputs.map(\.name) } + kvTensors.map(\.0.name)
        if Set(names).count != names.count {
            let dup = Dictionary(grouping: names, by: { $0 }).first { $0.value.count > 1 }!.key
            throw QuantizeError.nameClash(path: model, tensor: dup)
        }

        let out = try OutputDirectory(path: output)
        let specs = items.flatMap(\.outputs) + kvTensors.map(\.0)
        let writer = try ShardedSafetensorsWriter(directory: out.stagingPath, tensors: specs, metadata: [("format", "pt")],
                                                  maxShardSize: options.maxShardSize)
        var report = QuantizeReport()
        let total = items.reduce(0) { $0 + $1.tensor.byteCount }
        var done = 0
        for item in items {
            let t = item.tensor
            if let scheme = item.scheme {
                try quantizeTensor(t, of: ck, scheme: scheme, options: options, sink: { try writer.write($0) }) { bytes in
                    progress?(done + bytes, total)
                }
                report.quantized.append((String(t.name), scheme, t.shape))
                log?("\(t.name) [\(t.shape.map(String.init).joined(separator: ", "))] \(t.encoding) → \(scheme)")
            } else {
                try copyTensor(t, ck: ck, writer: writer)
                report.copied += 1
            }
            done += t.byteCount
            report.bytesRead += t.byteCount
            progress?(done, total)
        }
        for (_, bytes) in kvTensors { try bytes.withUnsafeBytes { try writer.write($0) } }
        try writer.finish()
        report.bytesWritten = specs.reduce(0) { $0 + ($1.byteCount ?? 0) }

        // config.json with the recipe; every other file of the model directory copied as it is.
        let dir = ck.directory!
        let config = try QKitConfig.outputConfig(ck.config, recipe: options.recipe, items: items.compactMap { i in
            i.scheme.map { (String(i.tensor.name.dropLast(".weight".count)), $0) }
        }, fake: options.fake, activation: options.activationQuantization, kvCache: options.kvCache)
        try writeSmallFile(out.stagedPath("config.json"), config.serialized(indent: 2) + "\n")
        try copyModelFiles(from: dir, to: out)
        report.files = listDirectory(out.stagingPath)
        try out.commit()
        report.seconds = monotonicSeconds() - start
        return report
    }

    /// The output tensors of a quantized `[N, K]` weight `name`: `P.weight_q`, `P.weight_scale` and, as the scheme
    /// needs, `P.weight_zero_point` and `P.weight_global_scale`; with `options.fake` the weight itself.
    static func outputSpecs(name: String, dtype d: DType, shape: [Int], scheme: QuantScheme, options: QuantizeOptions) -> [TensorSpec] {
        if options.fake { return [TensorSpec(name: name, dtype: options.fakeDType ?? d, shape: shape)] }
        let (n, k) = (shape[0], shape[1])
        let p = String(name.dropLast(".weight".count))
        var outs = [TensorSpec(name: p + ".weight_q", dtype: scheme.codeDType, shape: [n, k]),
                    TensorSpec(name: p + ".weight_scale", dtype: scheme.scaleDType, shape: scheme.scaleShape(n: n, k: k))]
        if let z = scheme.zeroPointDType { outs.append(TensorSpec(name: p + ".weight_zero_point", dtype: z, shape: scheme.scaleShape(n: n, k: k))) }
        if scheme.format == .nvfp4 { outs.append(TensorSpec(name: p + ".weight_global_scale", dtype: .f32, shape: [1])) }
        if scheme.progressive { outs.append(TensorSpec(name: p + ".weight_scale_2", dtype: .f32, shape: [n, 1])) }
        return outs
    }

    /// Copies every other file of the model directory (tokenizer, generation config…) into the staged output:
    /// all but config.json (and the names in `skipping`), the safetensors files and their indexes, directories
    /// and hidden files.
    static func copyModelFiles(from dir: String, to out: OutputDirectory, skipping: Set<String> = []) throws {
        for name in listDirectory(dir) where name != "config.json" && !skipping.contains(name) && !name.hasSuffix(".safetensors")
            && !name.hasSuffix(".safetensors.index.json") {
            let src = dir + "/" + name
            guard !isDirectory(src), !name.hasPrefix(".") else { continue }
            try copyFile(src, to: out.stagedPath(name))
        }
    }

    /// Code blocks of `blockBytes`, kept for reuse.
    static let codeBlocks = BlockPool(byteCount: blockBytes)

    /// Buffers of one size kept for reuse across calls (thread-safe).
    final class BlockPool: @unchecked Sendable {
        let byteCount: Int
        private var free: [UnsafeMutablePointer<UInt8>] = []
        private let lock = Lock()
        init(byteCount: Int) { self.byteCount = byteCount }
        func take() -> UnsafeMutablePointer<UInt8> {
            lock.withLock { free.popLast() } ?? .allocate(capacity: byteCount)
        }
        func give(_ p: UnsafeMutablePointer<UInt8>) { lock.withLock { free.append(p) } }
    }

    /// Copies a tensor's bytes unchanged, releasing the input pages as it goes.
    static func copyTensor(_ t: CheckpointTensor, ck: Checkpoint, writer: ShardedSafetensorsWriter) throws {
        let data = ck.data(t)
        var offset = 0
        let step = 64 << 20
        while offset < data.count {
            let end = min(data.count, offset + step)
            try writer.write(UnsafeRawBufferPointer(rebasing: data[offset..<end]))
            ck.files[t.fileIndex].release((t.fileRange.lowerBound + offset)..<(t.fileRange.lowerBound + end))
            offset = end
        }
    }

    /// Quantizes one `[N, K]` float weight of `ck` and hands its output tensors' bytes to `sink` in order:
    /// `weight_q`, `weight_scale`, then `weight_zero_point` and `weight_global_scale` when the scheme has
    /// them (with `options.fake`: the dequantized weight only). Rows run in parallel, blocks of ~8 MB of
    /// codes are handed over as they are done, and the input pages are released behind.
    /// - Parameter progress: called with the bytes of input done so far.
    public static func quantizeTensor(_ t: CheckpointTensor, of ck: Checkpoint, scheme: QuantScheme, options: QuantizeOptions,
                                      sink: (UnsafeRawBufferPointer) throws -> Void, progress: (Int) -> Void = { _ in }) throws {
        guard case .dtype(let source) = t.encoding else { return }
        let (n, k) = (t.shape[0], t.shape[1])
        let data = ck.data(t)
        let file = ck.files[t.fileIndex]
        let rowBytes = source.byteCount(elements: k)!
        let groupLength = scheme.granularity.groupLength(k: k)
        let groupsPerRow = scheme.granularity == .tensor ? 0 : k / groupLength
        let fakeType = options.fakeDType ?? source
        if scheme.progressive {
            // The per-row level-0 scale needs the whole row first: the tensor is held as f32 and quantized at once.
            let w = UnsafeMutablePointer<Float>.allocate(capacity: n * k)
            defer { w.deallocate() }
            decodeWhole(data, source: source, rows: n, columns: k, into: w)
            file.release(t.fileRange)
            let q = QuantizedWeight.quantize(w, rows: n, columns: k, scheme: scheme)
            if options.fake {
                q.dequantize(into: w)
                let out = fakeType.byteCount(elements: n * k)!
                let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: out, alignment: 64)
                defer { buffer.deallocate() }
                Conversion.encode(UnsafeBufferPointer(start: w, count: n * k), as: fakeType, into: buffer)
                try sink(UnsafeRawBufferPointer(buffer))
            } else {
                for (_, bytes) in q.tensors(prefix: "") { try bytes.withUnsafeBytes { try sink($0) } }
            }
            progress(n * rowBytes)
            return
        }

        // A whole-tensor pass first when the scale depends on the whole tensor.
        var globalScale: Float = 1
        var fixed: GroupCodec.Parameters?
        if scheme.granularity == .tensor || scheme.format == .nvfp4 {
            let r = try tensorRange(data, source: source, n: n, k: k)
            let codec = GroupCodec(scheme: scheme)
            if scheme.format == .nvfp4 { globalScale = GroupCodec.nvfp4GlobalScale(absmax: r.absmax) }
            if scheme.granularity == .tensor { fixed = codec.parameters(minimum: r.minimum, maximum: r.maximum, absmax: r.absmax) }
        }
        let codec = GroupCodec(scheme: scheme, globalScale: globalScale)
        var parameters = [GroupCodec.Parameters](repeating: GroupCodec.Parameters(scale: 0, storedScale: 0, zero: 0),
                                                 count: fixed == nil ? n * groupsPerRow : 1)
        if let fixed { parameters[0] = fixed }

        func emit(_ codes: UnsafeMutablePointer<UInt8>, rows: Range<Int>, _ params: UnsafePointer<GroupCodec.Parameters>) throws {
            if options.fake {
                let outRow = fakeType.byteCount(elements: k)!
                let buffer = UnsafeMutableRawPointer.allocate(byteCount: rows.count * outRow, alignment: 64)
                defer { buffer.deallocate() }
                nonisolated(unsafe) let (b, c, p) = (buffer, codes, params)
                let pool = ScratchPool(byteCount: 4 * k)
                parallelFor((rows.count + rowsPerTask - 1) / rowsPerTask) { task in
                    pool.withBuffer { raw in
                        let f = raw.assumingMemoryBound(to: Float.self)
                        for i in (task * rowsPerTask)..<min(rows.count, (task + 1) * rowsPerTask) {
                            let r = rows.lowerBound + i
                            for g in 0..<max(1, groupsPerRow) {
                                let gl = groupsPerRow == 0 ? k : groupLength
                                let pp = fixed ?? p[(r - rows.lowerBound) * groupsPerRow + g]
                                codec.decode(c + i * k + g * gl, count: gl, pp, into: f + g * gl)
                            }
                            Conversion.encode(UnsafeBufferPointer(start: f, count: k), as: fakeType,
                                              into: UnsafeMutableRawBufferPointer(start: b + i * outRow, count: outRow))
                        }
                    }
                }
                try sink(UnsafeRawBufferPointer(start: buffer, count: rows.count * outRow))
            } else {
                try sink(UnsafeRawBufferPointer(start: codes, count: rows.count * k))
            }
        }

        if scheme.algorithm == .hqq {
            // HQQ iterates over the whole tensor: it is held as f32 (the largest linear of an 8B model: 235 MB).
            let w = UnsafeMutablePointer<Float>.allocate(capacity: n * k)
            let codes = UnsafeMutablePointer<UInt8>.allocate(capacity: n * k)
            defer { w.deallocate(); codes.deallocate() }
            decodeWhole(data, source: source, rows: n, columns: k, into: w)
            file.release(t.fileRange)
            try parameters.withUnsafeMutableBufferPointer { p in
                HQQ.quantize(w, n: n, k: k, groupLength: groupLength, bits: scheme.bits, settings: options.hqq,
                             codes: codes, parameters: p.baseAddress!)
                let step = max(1, blockBytes / k)
                var r = 0
                while r < n {
                    let rows = r..<min(n, r + step)
                    try emit(codes + r * k, rows: rows, p.baseAddress! + r * groupsPerRow)
                    r = rows.upperBound
                    progress(r * rowBytes)
                }
            }
        } else {
            let rowsPerBlock = max(1, min(n, blockBytes / max(1, k)))
            // The block buffer is reused from tensor to tensor (no page faults for fresh memory each time).
            let pooled = rowsPerBlock * k <= blockBytes
            let codes = pooled ? codeBlocks.take() : UnsafeMutablePointer<UInt8>.allocate(capacity: rowsPerBlock * k)
            defer { if pooled { codeBlocks.give(codes) } else { codes.deallocate() } }
            let pool = ScratchPool(byteCount: 4 * k + groupLength)
            // Integer RTN straight from the stored row (C kernels); the other cases widen the row to f32 first.
            let storedKind: Int32? = scheme.algorithm == .rtn && fixed == nil && groupLength % 8 == 0 && !scheme.format.isFloat
                ? TensorEncoding.dtype(source).kernelKind : nil
            // The input pages of the block before are let go by the first task of the next one, while the other
            // threads compute (done between blocks, every thread waited for it).
            var behind: Range<Int>?
            var r = 0
            while r < n {
                let rows = r..<min(n, r + rowsPerBlock)
                nonisolated(unsafe) let c = codes
                let done = behind
                try parameters.withUnsafeMutableBufferPointer { pbuf in
                    nonisolated(unsafe) let pbase = pbuf.baseAddress!
                    parallelFor((rows.count + rowsPerTask - 1) / rowsPerTask) { task in
                        if task == 0, let done { file.release(done) }
                        pool.withBuffer { raw in
                            let f = raw.assumingMemoryBound(to: Float.self)
                            let scratch = (raw + 4 * k).assumingMemoryBound(to: UInt8.self)
                            for i in (task * rowsPerTask)..<min(rows.count, (task + 1) * rowsPerTask) {
                                let row = rows.lowerBound + i
                                let params = pbase + (fixed == nil ? row * groupsPerRow : 0)
                                if let storedKind {
                                    RTN.quantizeStoredRow(data.baseAddress! + row * rowBytes, kind: storedKind, k: k, groupLength: groupLength,
                                                          codec: codec, scratch: f, codes: c + i * k, parameters: params,
                                                          ahead: data.baseAddress! + (row + 1) * rowBytes)
                                    continue
                                }
                                Conversion.decode(source, UnsafeRawBufferPointer(rebasing: data[(row * rowBytes)..<((row + 1) * rowBytes)]),
                                                  into: UnsafeMutableBufferPointer(start: f, count: k))
                                if scheme.algorithm == .mse {
                                    MSEClip.quantizeRow(f, k: k, groupLength: groupLength, codec: codec, codes: c + i * k,
                                                        parameters: params, scratch: scratch)
                                } else {
                                    RTN.quantizeRow(f, k: k, groupLength: groupLength, codec: codec, fixed: fixed,
                                                    codes: c + i * k, parameters: params)
                                }
                            }
                        }
                    }
                    try emit(codes, rows: rows, pbase + (fixed == nil ? rows.lowerBound * groupsPerRow : 0))
                }
                behind = (t.fileRange.lowerBound + rows.lowerBound * rowBytes)..<(t.fileRange.lowerBound + rows.upperBound * rowBytes)
                r = rows.upperBound
                progress(r * rowBytes)
            }
            if let behind { file.release(behind) }
        }
        if options.fake { return }

        // Scales, zero points, global scale.
        for bytes in QuantizedWeight.parameterBytes(parameters, scheme: scheme, globalScale: globalScale) {
            try bytes.withUnsafeBytes { try sink($0) }
        }
    }

    /// Minimum, maximum and absolute maximum of a whole tensor (parallel over row blocks; max and min do
    /// not depend on the order).
    /// Decodes a whole `[rows, columns]` tensor of `source` into `w` as f32, 64 rows per parallel task (the
    /// algorithms that need the whole tensor at once: progressive grids, HQQ).
    static func decodeWhole(_ data: UnsafeRawBufferPointer, source: DType, rows n: Int, columns k: Int, into w: UnsafeMutablePointer<Float>) {
        let rowBytes = source.byteCount(elements: k)!
        nonisolated(unsafe) let wp = w
        parallelFor((n + 63) / 64) { task in
            let rows = (task * 64)..<min(n, (task + 1) * 64)
            Conversion.decode(source, UnsafeRawBufferPointer(rebasing: data[(rows.lowerBound * rowBytes)..<(rows.upperBound * rowBytes)]),
                              into: UnsafeMutableBufferPointer(start: wp + rows.lowerBound * k, count: rows.count * k))
        }
    }

    static func tensorRange(_ data: UnsafeRawBufferPointer, source: DType, n: Int, k: Int) throws -> (minimum: Float, maximum: Float, absmax: Float) {
        let rowBytes = source.byteCount(elements: k)!
        let tasks = (n + 63) / 64
        var ranges = [(Float, Float)](repeating: (.infinity, -.infinity), count: tasks)
        let pool = ScratchPool(byteCount: 4 * k)
        ranges.withUnsafeMutableBufferPointer { rb in
            nonisolated(unsafe) let out = rb.baseAddress!
            parallelFor(tasks) { task in
                pool.withBuffer { raw in
                    let f = raw.assumingMemoryBound(to: Float.self)
                    var lo = Float.infinity, hi = -Float.infinity
                    for row in (task * 64)..<min(n, (task + 1) * 64) {
                        Conversion.decode(source, UnsafeRawBufferPointer(rebasing: data[(row * rowBytes)..<((row + 1) * rowBytes)]),
                                          into: UnsafeMutableBufferPointer(start: f, count: k))
                        let r = RTN.range(f, count: k)
                        lo = min(lo, r.minimum)
                        hi = max(hi, r.maximum)
                    }
                    out[task] = (lo, hi)
                }
            }
        }
        let lo = ranges.map(\.0).min() ?? 0, hi = ranges.map(\.1).max() ?? 0
        return (lo, hi, max(abs(lo), abs(hi)))
    }

    /// Copies a small file byte for byte (through an atomic temporary).
    static func copyFile(_ src: String, to dst: String) throws {
        let f = try MappedFile(path: src)
        let out = try AtomicFile(path: dst)
        try out.write(f.bytes)
        try out.commit()
    }
}
