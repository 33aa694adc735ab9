#if canImport(Glibc)
import Glibc
#endif

/// A calibrated algorithm (AWQ, GPTQ, SmoothQuant) as the block-wise engine drives it.
public protocol BlockAlgorithm: Sendable {
    /// The `--algo` name recorded in the recipe.
    var name: String { get }
    /// The algorithm's settings, recorded in `quantization_config.calibration` (and part of the resume key).
    var settings: JSONObject { get }
    /// The run-time activation quantization the output needs (W8A8), or `nil`.
    var activationQuantization: ActivationQuantization? { get }
    /// Whether the output stores a static scale per linear input (`P.input_scale`) instead of quantizing
    /// activations per token, dynamically.
    var staticActivationScales: Bool { get }
    /// Processes one block: `block` holds its f32 weights and may be changed in place (scales folded, weights
    /// replaced by what is stored); `plan` maps the short name of each linear to quantize (`q_proj`…) to its
    /// scheme; `activations.hidden` is the block's input and must become the next block's input (the block's
    /// full-precision or quantized output, as the algorithm defines). Returns the quantized linears.
    func process(_ block: BlockWeights, plan: [String: QuantScheme], activations: CalibrationActivations,
                 log: (String) -> Void) throws -> [String: QuantizedWeight]
}

/// Options of a calibrated quantization run.
extension BlockAlgorithm {
    public var staticActivationScales: Bool { false }
}

public struct CalibratedOptions: Sendable {
    public var quantize: QuantizeOptions
    public var data: CalibrationDataRequest
    /// Tokens per forward batch (bounds the temporaries of a block's forward pass).
    public var batchTokens = 16_384
    /// Throw away the progress of an earlier, interrupted run of the same command instead of continuing it.
    public var restart = false
    /// Fail unless there is progress to continue (`--resume`).
    public var requireResume = false
    public init(quantize: QuantizeOptions, data: CalibrationDataRequest) {
        self.quantize = quantize
        self.data = data
    }
}

/// A calibrated run that cannot go on.
public struct CalibrationError: QKitError, Equatable {
    public var message: String
    public var path: String?
    public var exitStatus: ExitStatus
    public init(_ message: String, path: String? = nil, exitStatus: ExitStatus = .dataError) {
        self.message = message
        self.path = path
        self.exitStatus = exitStatus
    }
    public var description: String { message }
}

/// The block-wise calibration engine (../shared/specs/algorithms.md §2): embeddings → block 0's input → for each
/// block: load it, let the algorithm observe, transform and quantize it while it produces the next block's
/// input, save the block's output tensors, free it. Only one block's weights and the calibration activations
/// are in memory.
///
/// Progress is kept beside the output in `.NAME.qkit-progress/`: after each block, its output tensors
/// (`block-N.safetensors`), the hidden states entering the next block (`hidden-N.f32`) and `state.json`
/// (the command's key and the blocks done). Rerunning the same command after a kill continues from there and
/// writes the same bytes as an uninterrupted run; a different command starts over. At the end the blocks
/// and the untouched tensors are assembled into the output directory (staged and renamed), and the progress
/// directory is removed.
public enum CalibrationEngine {
    /// What a run did.
    public struct Report: Sendable {
        public var quantize = QuantizeReport()
        public var tokens = 0
        public var blocks = 0
        public var resumedAt = 0
        public var dataHash = ""
        public var blockSeconds: [Double] = []
    }

    /// The float model directory a block-wise run reads (not GGUF, not a pipe, not already qkit-quantized).
    static func openSource(_ path: String) throws -> (Checkpoint, DecoderModel) {
        let ck = try Checkpoint(path: path)
        guard ck.kind != .gguf else { throw QuantizeError.unsupportedInput(path: path, kind: "GGUF") }
        guard ck.directory != nil, path != "-" else { throw QuantizeError.unsupportedInput(path: path, kind: "standard") }
        if ck.config?["quantization_config"]?["quant_method"]?.stringValue == "qkit" { throw QuantizeError.alreadyQuantized(path: path) }
        return (ck, try DecoderModel(source: CheckpointWeights(ck)))
    }

    /// Runs `algorithm` on `model` into `output`. `log` receives per-block timing lines.
    public static func run(model path: String, output: String, algorithm: any BlockAlgorithm, options: CalibratedOptions,
                           log: @escaping (String) -> Void = { _ in }) throws -> Report {
        let start = monotonicSeconds()
        let (ck, model) = try openSource(path)
        let c = model.config
        let recipe = options.quantize.recipe

        let plans = try plan(ck, layers: c.layerCount, recipe: recipe, algorithm: algorithm.name)
        let data = try CalibrationData.load(options.data, model: model)
        var report = Report()
        report.tokens = data.tokenCount
        report.blocks = c.layerCount
        report.dataHash = XXH64.hex(data.inputHash)

        // Every block allocates and frees the same tens-of-MB activation buffers: recycle them.
        LargeBlockPool.enabled = true
        // Progress: continue an interrupted run of the same command.
        let key = XXH64.hex(resumeKey(ck, algorithm: algorithm, options: options, data: data))
        let progress = ProgressDirectory(output: output)
        var done = 0
        if !options.restart, let state = progress.state(), state.key == key {
            done = state.blocks
        } else if options.requireResume {
            throw CalibrationError("--resume: no progress of this command beside \(output) (run it without --resume)", exitStatus: .noInput)
        }
        if done == 0 { try progress.reset(key: key) }
        report.resumedAt = done
        if done > 0 { log("resuming after block \(done - 1) (\(done) of \(c.layerCount) done)") }

        let activations: CalibrationActivations
        if done == 0 {
            activations = try CalibrationActivations(embedding: data.sequences, model: model, batchTokens: options.batchTokens)
        } else {
            activations = CalibrationActivations(model: model, lengths: data.sequences.map(\.count), batchTokens: options.batchTokens)
            try progress.loadHidden(block: done, into: activations.hidden)
        }

        let total = c.layerCount
        let staticKV = options.quantize.kvCache.flatMap { $0.isStatic ? $0 : nil }
        for layer in done..<total {
            let t0 = monotonicSeconds()
            let block = try model.loadBlock(layer)
            // Static KV-cache scales: measured after the algorithm, on the block as stored, from its input.
            let kvInput = staticKV != nil ? activations.copyHidden() : nil
            let quantized = try algorithm.process(block, plan: plans[layer], activations: activations, log: log)
            if let kvInput, let staticKV {
                KVCacheCalibration.measure(block, quantized: quantized, input: kvInput, activations: activations, kv: staticKV)
            }
            try progress.writeBlock(layer, block: block, quantized: quantized, checkpoint: ck, options: options.quantize)
            try progress.saveHidden(block: layer + 1, activations.hidden)
            try progress.commit(key: key, blocks: layer + 1)
            let dt = monotonicSeconds() - t0
            report.blockSeconds.append(dt)
            let mean = report.blockSeconds.reduce(0, +) / Double(report.blockSeconds.count)
            log("block \(layer + 1)/\(total): " + cFormat("%.2f s", dt) + ", ETA " + cFormat("%.0f s", mean * Double(total - layer - 1)))
            if let stop = getenv("QKIT_TEST_KILL_AFTER_BLOCK"), Int(String(cString: stop)) == layer {
                // Test hook: die like `kill -9` right after a block's progress is committed.
                kill(getpid(), SIGKILL)
            }
        }

        var calibration = algorithm.settings
        let r = data.request
        calibration["data"] = .string(r.ids != nil ? "ids" : (r.chat ? "text, chat template" : "text"))
        calibration["data_hash"] = .string(XXH64.hex(data.inputHash))
        calibration["samples"] = .int(data.sequences.count)
        calibration["seqlen"] = .int(r.sequenceLength)
        calibration["sampling"] = .string(r.sampling.rawValue)
        calibration["seed"] = .int(Int(truncatingIfNeeded: r.seed))
        calibration["tokens"] = .int(data.tokenCount)
        report.quantize = try assemble(ck, plans: plans, progress: progress, output: output, algorithm: algorithm,
                                       options: options.quantize, calibration: calibration)
        progress.remove()
        report.quantize.seconds = monotonicSeconds() - start
        return report
    }

    /// The scheme of every linear of every block (short name → scheme; absent: kept in float).
    static func plan(_ ck: Checkpoint, layers: Int, recipe: QuantRecipe, algorithm: String) throws -> [[String: QuantScheme]] {
        var plans: [[String: QuantScheme]] = []
        for layer in 0..<layers {
            var plan: [String: QuantScheme] = [:]
            for name in BlockWeights.linearNames(layer) {
                let full = name + ".weight"
                guard let t = ck[full] else { throw WeightSourceError.missingTensor(source: ck.path, name: full) }
                guard let scheme = recipe.scheme(for: full, shape: t.shape) else { continue }
                try scheme.check(tensor: full, k: t.shape[1])
                if scheme.algorithm == .hqq {
                    throw SchemeError("\(full): hqq is a data-free algorithm; \(algorithm) computes its own parameters (use rtn or mse)")
                }
                plan[String(name.split(separator: ".").last!)] = scheme
            }
            plans.append(plan)
        }
        return plans
    }

    /// What identifies a command for resuming: the model's tensors, the recipe, the algorithm's settings,
    /// the output options and the calibration windows.
    static func resumeKey(_ ck: Checkpoint, algorithm: any BlockAlgorithm, options: CalibratedOptions, data: CalibrationData) -> UInt64 {
        var text = "qkit-calibration-1\n"
        for t in ck.tensors { text += "\(t.name) \(t.encoding) \(t.shape) \(t.byteCount)\n" }
        text += (ck.config?.serialized() ?? "") + "\n"
        text += algorithm.name + JSONValue.object(algorithm.settings).serialized() + "\n"
        let r = options.quantize.recipe
        text += "\(r.defaultScheme) \(r.rules.map(\.description)) \(r.skips.map(\.pattern)) fake=\(options.quantize.fake) \(String(describing: options.quantize.fakeDType))\n"
        text += "\(options.batchTokens) \(XXH64.hex(data.sequencesHash))\n"
        if let kv = options.quantize.kvCache { text += "kv " + kv.json.serialized() + "\n" }
        return Array(text.utf8).withUnsafeBytes { XXH64.hash($0) }
    }

    /// Writes the output directory from the source checkpoint and the blocks' files; `calibration` is recorded
    /// in the recipe.
    static func assemble(_ ck: Checkpoint, plans: [[String: QuantScheme]], progress: ProgressDirectory, output: String,
                         algorithm: any BlockAlgorithm, options: QuantizeOptions, calibration: JSONObject) throws -> QuantizeReport {
        let layers = plans.count
        let blocks = try (0..<layers).map { try Checkpoint(path: progress.blockPath($0)) }
        func block(of name: String) -> Int? {
            guard name.hasPrefix("model.layers.") else { return nil }
            let rest = name.dropFirst("model.layers.".count)
            guard let dot = rest.firstIndex(of: "."), let i = Int(rest[..<dot]), i < layers else { return nil }
            return i
        }
        // Each source tensor's outputs: a block's file holds them under the same name, or, for P.weight, under
        // `P.*` names that are no source tensor's (`P.weight_q`, `P.weight_scale`…, `P.input_scale`).
        let sourceNames = Set(ck.tensors.map(\.name))
        enum Origin { case block(Checkpoint, CheckpointTensor), source(CheckpointTensor), quantized(CheckpointTensor, QuantScheme) }
        var specs: [TensorSpec] = []
        var origins: [Origin] = []
        var report = QuantizeReport()
        var modules: [(String, QuantScheme)] = []
        for t in ck.tensors {
            if let b = block(of: t.name) {
                let file = blocks[b]
                let stem = t.name.hasSuffix(".weight") ? String(t.name.dropLast("weight".count)) : nil
                let outs = file.tensors.filter { o in o.name == t.name || (stem.map { o.name.hasPrefix($0) && !sourceNames.contains(o.name) } ?? false) }
                guard !outs.isEmpty else { throw CalibrationError("progress file of block \(b) lacks \(t.name)", path: progress.path) }
                for o in outs {
                    guard case .dtype(let d) = o.encoding else { continue }
                    specs.append(TensorSpec(name: o.name, dtype: d, shape: o.shape))
                    origins.append(.block(file, o))
                }
                // The block's static KV-cache scales (no source tensor of that name) follow its v_proj.
                if t.name == BlockWeights.prefix(b) + "self_attn.v_proj.weight" {
                    let names = KVCacheQuantization.scaleTensorNames(layer: b)
                    for name in [names.key, names.value] where !sourceNames.contains(name) {
                        guard let o = file[name], case .dtype(let d) = o.encoding else { continue }
                        specs.append(TensorSpec(name: o.name, dtype: d, shape: o.shape))
                        origins.append(.block(file, o))
                    }
                }
                let short = String(t.name.split(separator: ".").dropLast().last ?? "")
                if t.name.hasSuffix(".weight"), let s = plans[b][short] {
                    modules.append((String(t.name.dropLast(".weight".count)), s))
                    report.quantized.append((t.name, s, t.shape))
                } else {
                    report.copied += 1
                }
            } else if let scheme = options.recipe.scheme(for: t.name, shape: t.shape) {
                guard case .dtype(let d) = t.encoding, d.isFloatingPoint else {
                    throw QuantizeError.notFloat(path: ck.path, tensor: t.name, encoding: t.encoding.description)
                }
                try scheme.check(tensor: t.name, k: t.shape[1])
                for s in QKitQuantizer.outputSpecs(name: t.name, dtype: d, shape: t.shape, scheme: scheme, options: options) {
                    specs.append(s)
                }
                origins.append(.quantized(t, scheme))
                modules.append((String(t.name.dropLast(".weight".count)), scheme))
                report.quantized.append((t.name, scheme, t.shape))
            } else {
                guard case .dtype(let d) = t.encoding else { throw QuantizeError.unsupportedInput(path: ck.path, kind: "GGUF") }
                specs.append(TensorSpec(name: t.name, dtype: d, shape: t.shape))
                origins.append(.source(t))
                report.copied += 1
            }
        }
        let out = try OutputDirectory(path: output)
        let writer = try ShardedSafetensorsWriter(directory: out.stagingPath, tensors: specs, metadata: [("format", "pt")],
                                                  maxShardSize: options.maxShardSize)
        for origin in origins {
            switch origin {
            case .block(let file, let t): try QKitQuantizer.copyTensor(t, ck: file, writer: writer)
            case .source(let t): try QKitQuantizer.copyTensor(t, ck: ck, writer: writer)
            case .quantized(let t, let scheme):
                try QKitQuantizer.quantizeTensor(t, of: ck, scheme: scheme, options: options, sink: { try writer.write($0) })
            }
        }
        try writer.finish()
        report.bytesRead = ck.dataBytes
        report.bytesWritten = specs.reduce(0) { $0 + ($1.byteCount ?? 0) }

        var config = try QKitConfig.outputConfig(ck.config, recipe: options.recipe, items: modules, fake: options.fake,
                                                 activation: options.activationQuantization, kvCache: options.kvCache)
        let key = options.fake ? QKitConfig.fakeKey : "quantization_config"
        if var o = config.objectValue, var q = o[key]?.objectValue {
            q["algorithm"] = .string(algorithm.name)
            q["calibration"] = .object(calibration)
            // The algorithm's own activation quantization (W8A8, QoQ's A8) unless --abits replaced it; static scales
            // (the P.input_scale tensors written) always win, at the bits the algorithm calibrated them for.
            if let a = algorithm.activationQuantization, options.activationQuantization == nil || algorithm.staticActivationScales {
                q["activation_format"] = a.json(static: algorithm.staticActivationScales)
            }
            o[key] = .object(q)
            config = .object(o)
        }
        try writeSmallFile(out.stagedPath("config.json"), config.serialized(indent: 2) + "\n")
        try QKitQuantizer.copyModelFiles(from: ck.directory!, to: out)
        report.files = listDirectory(out.stagingPath)
        try out.commit()
        return report
    }
}

/// `.NAME.qkit-progress/` beside an output: the per-block state of a calibrated run.
final class ProgressDirectory {
    let path: String
    /// XXH64 of the files written so far, by name.
    private var hashes: [String: String] = [:]

    init(output: String) { path = hiddenSibling(of: output, suffix: "qkit-progress") }

    func blockPath(_ layer: Int) -> String { path + "/block-" + cFormat("%04d", layer) + ".safetensors" }
    func hiddenPath(_ block: Int) -> String { path + "/hidden-" + cFormat("%04d", block) + ".f32" }
    var statePath: String { path + "/state.json" }

    /// The recorded key and number of finished blocks, if a state exists whose files are all there and whole:
    /// progress files are not fsynced (a kill cannot tear them, a power loss could), so each file's XXH64 is
    /// recorded when it is written and checked here; any mismatch means starting over.
    func state() -> (key: String, blocks: Int)? {
        guard let bytes = try? readSmallFile(statePath, limit: 1 << 20), let json = try? JSONParser.parse(bytes),
              let key = json["key"]?.stringValue, let blocks = json["blocks"]?.intValue, blocks >= 0,
              let hashes = json["files"]?.objectValue else { return nil }
        var files = (0..<blocks).map { blockPath($0) }
        if blocks > 0 { files.append(hiddenPath(blocks)) }
        for f in files {
            let name = String(f.split(separator: "/").last!)
            guard let expected = hashes[name]?.stringValue, let file = try? MappedFile(path: f),
                  XXH64.hex(XXH64.hash(file)) == expected else { return nil }
        }
        return (key, blocks)
    }

    /// Starts afresh: an empty directory with a state of zero blocks.
    func reset(key: String) throws {
        removeTree(path)
        try makeDirectories(path)
        try commit(key: key, blocks: 0)
    }

    /// Records that `blocks` blocks are done (their files and the next block's hidden states written).
    func commit(key: String, blocks: Int) throws {
        var files = JSONObject()
        var paths = (0..<blocks).map { blockPath($0) }
        if blocks > 0 { paths.append(hiddenPath(blocks)) }
        for p in paths {
            let name = String(p.split(separator: "/").last!)
            if let known = hashes[name] { files[name] = .string(known); continue }
            let h = XXH64.hex(XXH64.hash(try MappedFile(path: p)))
            hashes[name] = h
            files[name] = .string(h)
        }
        let state: JSONValue = .object(JSONObject([("key", .string(key)), ("blocks", .int(blocks)), ("files", .object(files))]))
        let f = try AtomicFile(path: statePath, durable: false)
        try f.write(state.serialized() + "\n")
        try f.commit()
        if blocks > 0 { unlink(hiddenPath(blocks - 1)) }
    }

    func saveHidden(block: Int, _ hidden: Matrix) throws {
        let f = try AtomicFile(path: hiddenPath(block), durable: false)
        try f.write(UnsafeRawBufferPointer(start: hidden.pointer, count: 4 * hidden.rows * hidden.columns))
        try f.commit()
    }

    func loadHidden(block: Int, into hidden: Matrix) throws {
        let f = try MappedFile(path: hiddenPath(block))
        guard f.bytes.count == 4 * hidden.rows * hidden.columns else {
            throw CalibrationError("saved hidden states of block \(block) have \(f.bytes.count) bytes, not \(4 * hidden.rows * hidden.columns); rerun with --restart",
                                   path: hiddenPath(block))
        }
        UnsafeMutableRawPointer(hidden.pointer).copyMemory(from: f.bytes.baseAddress!, byteCount: f.bytes.count)
    }

    /// Writes block `layer`'s output tensors, in the source's order, each in its source dtype unless quantized.
    func writeBlock(_ layer: Int, block: BlockWeights, quantized: [String: QuantizedWeight], checkpoint ck: Checkpoint,
                    options: QuantizeOptions) throws {
        let prefix = BlockWeights.prefix(layer)
        var specs: [TensorSpec] = []
        var payloads: [() throws -> [UInt8]] = []
        for t in ck.tensors where t.name.hasPrefix(prefix) {
            guard case .dtype(let d) = t.encoding else { continue }
            let parts = t.name.split(separator: ".")
            let short = parts.count >= 2 ? String(parts[parts.count - 2]) : ""
            if t.name.hasSuffix(".weight"), let q = quantized[short] {
                let p = String(t.name.dropLast(".weight".count))
                if options.fake {
                    let dtype = options.fakeDType ?? d
                    specs.append(TensorSpec(name: t.name, dtype: dtype, shape: t.shape))
                    payloads.append {
                        let f = FloatBuffer(count: q.rows * q.columns)
                        q.dequantize(into: f.pointer)
                        return Self.encode(UnsafeBufferPointer(f.buffer), as: dtype)
                    }
                } else {
                    for (spec, bytes) in q.tensors(prefix: p) {
                        specs.append(spec)
                        payloads.append { bytes }
                    }
                }
            } else if let values = block.values(of: t.name) {
                guard values.count == t.elementCount else {
                    throw CalibrationError("\(t.name) has \(t.elementCount) values; the block holds \(values.count)", path: ck.path)
                }
                specs.append(TensorSpec(name: t.name, dtype: d, shape: t.shape))
                payloads.append { Self.encode(values, as: d) }
            } else {
                specs.append(TensorSpec(name: t.name, dtype: d, shape: t.shape))
                payloads.append { Array(ck.data(t)) }
            }
            // Static activation scales: `P.input_scale` F32 [1] after every linear's weight, quantized or not.
            if t.name.hasSuffix(".weight"), let input = LinearInput.allCases.first(where: { $0.consumers.contains(short) }),
               let scale = block.activationQuantization?.staticScales[input] {
                specs.append(TensorSpec(name: String(t.name.dropLast(".weight".count)) + ".input_scale", dtype: .f32, shape: [1]))
                payloads.append { withUnsafeBytes(of: scale.bitPattern.littleEndian) { Array($0) } }
            }
        }
        // Static KV-cache scales: `self_attn.k_scale`, `v_scale` F32 [1] or [kvHeads].
        if let kv = block.kvCacheQuantization, kv.isStatic, let s = kv.scales {
            for (spec, bytes) in KVCacheCalibration.tensors(layer: layer, scales: s) {
                specs.append(spec)
                payloads.append { bytes }
            }
        }
        let writer = try SafetensorsWriter(path: blockPath(layer), tensors: specs, durable: false)
        for p in payloads { try p().withUnsafeBytes { try writer.write($0) } }
        try writer.finish()
    }

    static func encode(_ values: UnsafeBufferPointer<Float>, as dtype: DType) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: dtype.byteCount(elements: values.count)!)
        out.withUnsafeMutableBytes { Conversion.encode(values, as: dtype, into: $0) }
        return out
    }

    func remove() { removeTree(path) }
}

extension BlockWeights {
    /// The f32 values the block holds for tensor `name` (a full name under this block's prefix): a linear's
    /// weight or bias, a norm; `nil` for a tensor the block does not load.
    public func values(of name: String) -> UnsafeBufferPointer<Float>? {
        let p = Self.prefix(layer)
        guard name.hasPrefix(p) else { return nil }
        let rest = String(name.dropFirst(p.count))
        let c = config
        func slice(_ b: FloatBuffer?, _ from: Int, _ count: Int) -> UnsafeBufferPointer<Float>? {
            b.map { UnsafeBufferPointer(start: $0.pointer + from, count: count) }
        }
        switch rest {
        case "input_layernorm.weight": return UnsafeBufferPointer(inputNorm.buffer)
        case "post_attention_layernorm.weight": return UnsafeBufferPointer(postAttentionNorm.buffer)
        case "self_attn.q_norm.weight": return qNorm.map { UnsafeBufferPointer($0.buffer) }
        case "self_attn.k_norm.weight": return kNorm.map { UnsafeBufferPointer($0.buffer) }
        case "self_attn.q_proj.bias": return slice(qkvBias, 0, c.qDim)
        case "self_attn.k_proj.bias": return slice(qkvBias, c.qDim, c.kvDim)
        case "self_attn.v_proj.bias": return slice(qkvBias, c.qDim + c.kvDim, c.kvDim)
        case "self_attn.o_proj.bias": return outputBias.map { UnsafeBufferPointer($0.buffer) }
        case "mlp.gate_proj.bias": return slice(gateUpBias, 0, c.intermediateSize)
        case "mlp.up_proj.bias": return slice(gateUpBias, c.intermediateSize, c.intermediateSize)
        case "mlp.down_proj.bias": return downBias.map { UnsafeBufferPointer($0.buffer) }
        default:
            guard rest.hasSuffix(".weight"), let short = rest.split(separator: ".").dropLast().last,
                  let m = linear(String(short)) else { return nil }
            return UnsafeBufferPointer(m.values)
        }
    }
}

extension ActivationQuantization {
    /// The recipe's `activation_format`: per-token INT (`granularity` token, or `tensor` with `static` scales
    /// stored as `P.input_scale` F32 `[1]` beside each linear), per-token groups of INT (`granularity` group,
    /// `group_size`), or NVFP4 (`format` nvfp4, `group_size` 16, F8_E4M3 scales).
    public func json(static isStatic: Bool = false) -> JSONValue {
        if format == .nvfp4 {
            return .object(JSONObject([("format", "nvfp4"), ("bits", 4), ("granularity", "group"), ("group_size", 16),
                                       ("scale_dtype", "F8_E4M3"), ("dynamic", true)]))
        }
        if let g = groupSize {
            return .object(JSONObject([("format", "int"), ("bits", .int(bits)), ("sym", true), ("granularity", "group"),
                                       ("group_size", .int(g)), ("dynamic", true)]))
        }
        return .object(JSONObject([("format", "int"), ("bits", .int(bits)), ("sym", true),
                                   ("granularity", .string(isStatic ? "tensor" : "token")), ("dynamic", .bool(!isStatic))]))
    }

    /// Reads an `activation_format` object back (`nil` when absent or null); `isStatic` when it says
    /// `"dynamic": false` (the scales are then the checkpoint's `P.input_scale` tensors).
    public static func parse(_ json: JSONValue?) -> (quantization: ActivationQuantization, isStatic: Bool)? {
        guard let o = json?.objectValue else { return nil }
        if o["format"]?.stringValue == "nvfp4" { return (.nvfp4, false) }
        guard o["format"]?.stringValue == "int", let bits = o["bits"]?.intValue, (2...8).contains(bits) else { return nil }
        if o["granularity"]?.stringValue == "group" {
            guard let g = o["group_size"]?.intValue, g > 0 else { return nil }
            return (ActivationQuantization(bits: bits, groupSize: g), false)
        }
        return (ActivationQuantization(bits: bits), o["dynamic"]?.boolValue == false)
    }
}
