#if canImport(Glibc)
import Glibc
#endif

/// A backend layout qpack writes: how one canonical quantized linear becomes the backend's tensors, and
/// the `quantization_config` the backend's loader reads. One conforming type per file in `Pack/`.
public protocol PackLayout: Sendable {
    /// The `--to` name (`vllm-awq`, `vllm-gptq`, `compressed-tensors`).
    var name: String { get }
    /// The scheme a float input is quantized with (RTN) when none is given.
    var defaultScheme: QuantScheme { get }
    /// Refuses, with a one-line reason, what the layout cannot express. All linears are checked at once
    /// because the config holds settings they must share.
    func check(_ plans: [LinearPlan], source: String) throws
    /// The tensors written for one linear, in the order `pack` emits their bytes.
    func outputs(_ plan: LinearPlan) -> [TensorSpec]
    /// Emits the bytes of `outputs(plan)` in order.
    func pack(_ linear: QuantizedLinear, sink: (UnsafeRawBufferPointer) throws -> Void) throws
    /// `config.json`'s `quantization_config`. `floatLinears` are decoder linears left unquantized.
    func quantizationConfig(_ plans: [LinearPlan], floatLinears: [String], config: JSONValue?) -> JSONValue
    /// The layout with settings that follow the source model (e.g. the scale dtype), before packing.
    func adapted(to config: JSONValue?) -> any PackLayout
    /// The layout storing scales as `dtype` where it has the choice (a packed source's F16 scales stay F16).
    func keepingScales(_ dtype: DType) -> any PackLayout
    /// Float tensors the loader needs beside the source's: `(name, copy of)` (e.g. an untied `lm_head`).
    func addedTensors(_ checkpoint: Checkpoint) -> [(name: String, copyOf: String)]
    /// Edits of `config.json` beyond `quantization_config` (e.g. `tie_word_embeddings`).
    func adjust(_ config: inout JSONObject, checkpoint: Checkpoint)
    /// Where a static KV cache (`kv`, scales in `self_attn.k_scale`/`v_scale`) goes: the `kv_cache_scheme` of
    /// `quantization_config` and the shape of each scale tensor from its element count. Throws
    /// `PackError.unsupported` when the layout has no place for it (the default).
    func kvCacheScheme(_ kv: KVCacheQuantization, source: String) throws -> (scheme: JSONValue, scaleShape: @Sendable (Int) -> [Int])
}

extension PackLayout {
    public func adapted(to config: JSONValue?) -> any PackLayout { self }
    public func keepingScales(_ dtype: DType) -> any PackLayout { self }
    public func addedTensors(_ checkpoint: Checkpoint) -> [(name: String, copyOf: String)] { [] }
    public func adjust(_ config: inout JSONObject, checkpoint: Checkpoint) {}
    public func kvCacheScheme(_ kv: KVCacheQuantization, source: String) throws -> (scheme: JSONValue, scaleShape: @Sendable (Int) -> [Int]) {
        throw Packer.noPlaceForKVCache(kv, source: source, backend: name)
    }
}

/// Options of `qpack IN --to FORMAT`.
public struct PackOptions: Sendable {
    public var layout: any PackLayout
    /// The RTN scheme for a float input (default: the layout's).
    public var scheme: QuantScheme?
    /// Largest output shard in bytes of tensor data.
    public var maxShardSize = 5_000_000_000
    public init(layout: any PackLayout) { self.layout = layout }
}

/// What a pack did.
public struct PackReport: Sendable {
    public var packed = 0
    public var copied = 0
    public var bytesWritten = 0
    public var seconds = 0.0
    /// Whether the input was a float model quantized with RTN first.
    public var quantizedFirst = false
    public var files: [String] = []
}

/// Packs a qkit checkpoint, a packed checkpoint of another layout (unpacked and repacked without
/// requantizing), or a float model (quantized first with RTN in the layout's default scheme) into a
/// backend layout, streaming one tensor at a time into an `OutputDirectory`.
public enum Packer {
    /// Packs `input` into `output`.
    public static func run(input: String, output: String, options: PackOptions, log: ((String) -> Void)? = nil) throws -> PackReport {
        let start = monotonicSeconds()
        var report = PackReport()
        let method = FormatDetector.quantizationConfig(try Checkpoint(path: input))?["quant_method"]?.stringValue
        report.quantizedFirst = method == nil
        if method == nil { log?("quantizing \(input) with rtn \(options.scheme ?? options.layout.defaultScheme)") }
        return try PackVerifier.withSource(input, layout: options.layout, scheme: options.scheme, scratchBeside: output) { source in
            try pack(source, input: input, output: output, options: options, report: report, start: start, log: log)
        }
    }

    static func pack(_ source: PackSource, input: String, output: String, options: PackOptions, report: PackReport, start: Double,
                     log: ((String) -> Void)?) throws -> PackReport {
        var report = report
        let ck = source.checkpoint
        var layout = options.layout.adapted(to: ck.config)
        if let d = ck.config?[RotatedWeights.configKey]?["online"]?["down_proj"], d != .null {
            // No backend applies qkit's online Hadamard to down_proj's input: its weights would compute garbage there.
            throw PackError.unsupported(path: input, backend: layout.name,
                                        what: "an online down_proj Hadamard (\(RotatedWeights.configKey).online, qquant --rotate-online): the engine would not transform down_proj's input; use --rotate")
        }
        if source.packed != nil, let p = source.linears.first { layout = layout.keepingScales(source.scaleDType(of: p.prefix)) }
        try layout.check(source.linears, source: input)
        // A static KV cache (qquant --kv-cache, or a compressed-tensors kv_cache_scheme): its per-layer scales go
        // where the layout takes them, or the pack is refused.
        let kv = KVCacheQuantization.recorded(in: ck.config).flatMap { $0.isStatic ? $0 : nil }
        let kvCache = try kv.map { try layout.kvCacheScheme($0, source: input) }

        // Plan: packed tensors take the place of each linear's first tensor; everything else is copied.
        let plans = Dictionary(uniqueKeysWithValues: source.linears.map { ($0.prefix, $0) })
        enum Item { case copy(CheckpointTensor), pack(LinearPlan) }
        var items: [Item] = []
        var specs: [TensorSpec] = []
        var placed = Set<String>()
        for t in ck.tensors {
            if let p = source.owners[t.name] {
                guard let plan = plans[p], placed.insert(p).inserted else { continue }
                items.append(.pack(plan))
                specs += layout.outputs(plan)
            } else {
                guard case .dtype(let d) = t.encoding else { continue }
                items.append(.copy(t))
                let isKVScale = t.name.hasSuffix(".self_attn.k_scale") || t.name.hasSuffix(".self_attn.v_scale")
                specs.append(TensorSpec(name: t.name, dtype: d, shape: isKVScale ? kvCache?.scaleShape(t.elementCount) ?? t.shape : t.shape))
            }
        }
        for (name, original) in layout.addedTensors(ck) where ck[name] == nil {
            guard let t = ck[original], case .dtype(let d) = t.encoding else { continue }
            items.append(.copy(t))
            specs.append(TensorSpec(name: name, dtype: d, shape: t.shape))
        }
        var seen = Set<String>()
        for s in specs where !seen.insert(s.name).inserted {
            throw PackError.unsupported(path: input, backend: layout.name, what: "two tensors named \(s.name) (a float tensor beside a quantized one)")
        }

        let out = try OutputDirectory(path: output)
        let writer = try ShardedSafetensorsWriter(directory: out.stagingPath, tensors: specs, metadata: [("format", "pt")],
                                                  maxShardSize: options.maxShardSize)
        for item in items {
            switch item {
            case .copy(let t):
                try QKitQuantizer.copyTensor(t, ck: ck, writer: writer)
                report.copied += 1
            case .pack(let plan):
                let linear = try source.linear(plan)
                try layout.pack(linear) { try writer.write($0) }
                report.packed += 1
                log?("\(plan.prefix) [\(plan.n), \(plan.k)] \(plan.scheme) → \(layout.name)")
            }
        }
        try writer.finish()
        report.bytesWritten = specs.reduce(0) { $0 + ($1.byteCount ?? 0) }

        // config.json: the model's, with the layout's quantization_config; other files copied.
        let quantized = Set(source.linears.map(\.prefix))
        let floatLinears = ck.tensors.map(\.name).filter {
            QuantRecipe.isDecoderLinear($0) && !quantized.contains(String($0.dropLast(".weight".count)))
        }.map { String($0.dropLast(".weight".count)) }
        var config = ck.config?.objectValue ?? JSONObject()
        config.members.removeAll { $0.key == QKitConfig.fakeKey }
        config["quantization_config"] = layout.quantizationConfig(source.linears, floatLinears: floatLinears, config: ck.config)
        if let kvCache, var q = config["quantization_config"]?.objectValue {
            q["kv_cache_scheme"] = kvCache.scheme
            config["quantization_config"] = .object(q)
        }
        layout.adjust(&config, checkpoint: ck)
        try writeSmallFile(out.stagedPath("config.json"), JSONValue.object(config).serialized(indent: 2) + "\n")
        if let dir = ck.directory {
            // Other files are copied; a packed source's own quantization config files are not (they describe its layout).
            try QKitQuantizer.copyModelFiles(from: dir, to: out, skipping: ["quantize_config.json", "quant_config.json"])
        }
        report.files = listDirectory(out.stagingPath)
        try out.commit()
        report.seconds = monotonicSeconds() - start
        return report
    }

    /// The refusal of a static KV cache by a layout that has no place for its scales.
    public static func noPlaceForKVCache(_ kv: KVCacheQuantization, source: String, backend: String) -> PackError {
        .unsupported(path: source, backend: backend, what: "static KV-cache scales (\(kv.summary)): vLLM loads self_attn.k_scale/v_scale only "
                     + "with compressed-tensors (kv_cache_scheme) or fp8 checkpoints; pack --to compressed-tensors, or quantize without --kv-cache")
    }

    /// Refuses `input` when it records a static KV cache (writers without a place for its scales: mlc, gguf, nunchaku).
    public static func refuseStaticKVCache(input: String, backend: String) throws {
        guard let ck = try? Checkpoint(path: input), let kv = KVCacheQuantization.recorded(in: ck.config), kv.isStatic else { return }
        throw noPlaceForKVCache(kv, source: input, backend: backend)
    }

    /// The layout named `name` (`vllm-awq`, `vllm-gptq`, `compressed-tensors`), with its options.
    public static func layout(named name: String, gptqV2: Bool = false, w8a8: Bool = false) -> (any PackLayout)? {
        switch name {
        case "vllm-awq": AWQLayout()
        case "vllm-gptq": GPTQLayout(v2: gptqV2)
        case "compressed-tensors": CompressedTensorsLayout(w8a8: w8a8)
        case "tinychat": TinyChatLayout()
        case "lightllm": LightLLMLayout()
        default: nil
        }
    }
}
