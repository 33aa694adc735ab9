import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// The architecture family of a synthetic checkpoint.
public enum SyntheticFamily: String, Sendable, CaseIterable {
    case llama
    case qwen2
}

/// The shape of a synthetic Llama- or Qwen2-style checkpoint (for tests and benchmarks).
public struct SyntheticModelConfig: Sendable, Equatable {
    public var family: SyntheticFamily
    public var hidden: Int
    public var intermediate: Int
    public var layers: Int
    public var heads: Int
    public var kvHeads: Int
    public var vocab: Int
    public var tiedEmbeddings: Bool
    /// F32, F16 or BF16.
    public var dtype: DType
    public var seed: UInt64

    public init(family: SyntheticFamily, hidden: Int, intermediate: Int, layers: Int, heads: Int, kvHeads: Int, vocab: Int,
                tiedEmbeddings: Bool, dtype: DType = .bf16, seed: UInt64 = 0) {
        self.family = family
        self.hidden = hidden
        self.intermediate = intermediate
        self.layers = layers
        self.heads = heads
        self.kvHeads = kvHeads
        self.vocab = vocab
        self.tiedEmbeddings = tiedEmbeddings
        self.dtype = dtype
        self.seed = seed
    }

    public var headDim: Int { hidden / heads }

    /// A Llama with 2 layers, hidden 256, vocab 1024: about 2.1 M parameters, 4.2 MB in bf16.
    public static let tiny = SyntheticModelConfig(family: .llama, hidden: 256, intermediate: 704, layers: 2, heads: 4, kvHeads: 2,
                                                  vocab: 1024, tiedEmbeddings: false)
    /// The same shapes as `tiny` in the Qwen2 layout (q/k/v biases, tied embeddings).
    public static let qwen2Tiny = SyntheticModelConfig(family: .qwen2, hidden: 256, intermediate: 704, layers: 2, heads: 4, kvHeads: 2,
                                                       vocab: 1024, tiedEmbeddings: true)
    /// Llama-3-8B shapes: 8.03 B parameters, 16.06 GB in bf16.
    public static let llama8B = SyntheticModelConfig(family: .llama, hidden: 4096, intermediate: 14336, layers: 32, heads: 32, kvHeads: 8,
                                                     vocab: 128_256, tiedEmbeddings: false)

    /// Presets by name: `tiny`, `qwen2-tiny`, `llama8b`.
    public static func preset(_ name: String) -> SyntheticModelConfig? {
        switch name.lowercased() {
        case "tiny", "llama-tiny": .tiny
        case "qwen2-tiny": .qwen2Tiny
        case "llama8b", "llama-8b", "llama3-8b": .llama8B
        default: nil
        }
    }

    /// Why the configuration cannot be written, or `nil`.
    public var problem: String? {
        if hidden <= 0 || intermediate <= 0 || layers < 0 || heads <= 0 || kvHeads <= 0 || vocab <= 0 { return "sizes must be positive" }
        if hidden % heads != 0 { return "hidden (\(hidden)) is not a multiple of heads (\(heads))" }
        if heads % kvHeads != 0 { return "heads (\(heads)) is not a multiple of kv heads (\(kvHeads))" }
        if ![DType.f32, .f16, .bf16].contains(dtype) { return "dtype must be F32, F16 or BF16" }
        return nil
    }

    /// The tensors in the order their data is written, with Hugging Face names.
    public var tensors: [TensorSpec] { syntheticTensors.map(\.spec) }

    /// Total parameter count.
    public var parameterCount: Int { tensors.reduce(0) { $0 + (elementCount($1.shape) ?? 0) } }

    /// config.json as transformers' `LlamaConfig` / `Qwen2Config` writes it.
    public var configJSON: JSONValue {
        let torchDtype: JSONValue = switch dtype {
        case .f32: "float32"
        case .f16: "float16"
        default: "bfloat16"
        }
        let big = vocab > 128_001
        var o = JSONObject()
        switch family {
        case .llama:
            o.members = [
                ("architectures", ["LlamaForCausalLM"]),
                ("attention_bias", false),
                ("attention_dropout", 0.0),
                ("bos_token_id", .int(big ? 128_000 : 1)),
                ("eos_token_id", .int(big ? 128_001 : 2)),
                ("head_dim", .int(headDim)),
                ("hidden_act", "silu"),
                ("hidden_size", .int(hidden)),
                ("initializer_range", 0.02),
                ("intermediate_size", .int(intermediate)),
                ("max_position_embeddings", 8192),
                ("mlp_bias", false),
                ("model_type", "llama"),
                ("num_attention_heads", .int(heads)),
                ("num_hidden_layers", .int(layers)),
                ("num_key_value_heads", .int(kvHeads)),
                ("pretraining_tp", 1),
                ("rms_norm_eps", 1e-05),
                ("rope_scaling", nil),
                ("rope_theta", 500_000.0),
                ("tie_word_embeddings", .bool(tiedEmbeddings)),
                ("torch_dtype", torchDtype),
                ("transformers_version", "4.44.0"),
                ("use_cache", true),
                ("vocab_size", .int(vocab)),
            ]
        case .qwen2:
            let qwenBig = vocab > 151_645
            o.members = [
                ("architectures", ["Qwen2ForCausalLM"]),
                ("attention_dropout", 0.0),
                ("bos_token_id", .int(qwenBig ? 151_643 : 1)),
                ("eos_token_id", .int(qwenBig ? 151_645 : 2)),
                ("hidden_act", "silu"),
                ("hidden_size", .int(hidden)),
                ("initializer_range", 0.02),
                ("intermediate_size", .int(intermediate)),
                ("max_position_embeddings", 32768),
                ("max_window_layers", .int(layers)),
                ("model_type", "qwen2"),
                ("num_attention_heads", .int(heads)),
                ("num_hidden_layers", .int(layers)),
                ("num_key_value_heads", .int(kvHeads)),
                ("rms_norm_eps", 1e-06),
                ("rope_scaling", nil),
                ("rope_theta", 1_000_000.0),
                ("sliding_window", nil),
                ("tie_word_embeddings", .bool(tiedEmbeddings)),
                ("torch_dtype", torchDtype),
                ("transformers_version", "4.44.0"),
                ("use_cache", true),
                ("use_sliding_window", false),
                ("vocab_size", .int(vocab)),
            ]
        }
        return .object(o)
    }

    /// Every tensor with how its values are made.
    var syntheticTensors: [SyntheticTensor] {
        let kv = kvHeads * headDim
        var t: [SyntheticTensor] = [SyntheticTensor(name: "model.embed_tokens.weight", dtype: dtype, shape: [vocab, hidden], kind: .embedding)]
        for l in 0..<layers {
            let p = "model.layers.\(l)."
            // Input channels that carry outliers are a property of the activation feeding the linear, so
            // q/k/v share theirs (the attention input), and so do gate/up (the MLP input).
            let attnIn = "\(p)attn_in", mlpIn = "\(p)mlp_in"
            for (proj, rows) in [("q_proj", hidden), ("k_proj", kv), ("v_proj", kv)] {
                t.append(SyntheticTensor(name: "\(p)self_attn.\(proj).weight", dtype: dtype, shape: [rows, hidden], kind: .linear(outliers: attnIn)))
                if family == .qwen2 {
                    t.append(SyntheticTensor(name: "\(p)self_attn.\(proj).bias", dtype: dtype, shape: [rows], kind: .bias))
                }
            }
            t.append(SyntheticTensor(name: "\(p)self_attn.o_proj.weight", dtype: dtype, shape: [hidden, hidden], kind: .linear(outliers: "\(p)o_in")))
            t.append(SyntheticTensor(name: "\(p)mlp.gate_proj.weight", dtype: dtype, shape: [intermediate, hidden], kind: .linear(outliers: mlpIn)))
            t.append(SyntheticTensor(name: "\(p)mlp.up_proj.weight", dtype: dtype, shape: [intermediate, hidden], kind: .linear(outliers: mlpIn)))
            t.append(SyntheticTensor(name: "\(p)mlp.down_proj.weight", dtype: dtype, shape: [hidden, intermediate], kind: .linear(outliers: "\(p)down_in")))
            t.append(SyntheticTensor(name: "\(p)input_layernorm.weight", dtype: dtype, shape: [hidden], kind: .norm))
            t.append(SyntheticTensor(name: "\(p)post_attention_layernorm.weight", dtype: dtype, shape: [hidden], kind: .norm))
        }
        t.append(SyntheticTensor(name: "model.norm.weight", dtype: dtype, shape: [hidden], kind: .norm))
        if !tiedEmbeddings {
            t.append(SyntheticTensor(name: "lm_head.weight", dtype: dtype, shape: [vocab, hidden], kind: .linear(outliers: "final_in")))
        }
        return t
    }
}

/// One tensor of a synthetic checkpoint and the recipe of its values.
struct SyntheticTensor: Sendable {
    enum Kind: Sendable {
        /// Heavy-tailed, std 0.02, with a few input channels (columns) scaled ×20–100; the channels are
        /// chosen from the named activation, so linears reading the same input share them.
        case linear(outliers: String)
        /// Heavy-tailed, std 0.02, no outliers.
        case embedding
        /// 1 + heavy-tailed noise of std 0.05.
        case norm
        /// Heavy-tailed, std 0.1.
        case bias
    }

    let spec: TensorSpec
    let kind: Kind

    init(name: String, dtype: DType, shape: [Int], kind: Kind) {
        spec = TensorSpec(name: name, dtype: dtype, shape: shape)
        self.kind = kind
    }
}

/// Writes and reproduces synthetic checkpoints.
///
/// Every value is a pure function of (seed, tensor name, element index): a counter-based generator
/// (two 32-bit "lowbias32" mixes of the index xor keys hashed from seed and name) feeds a Gaussian scale mixture
/// (a 3-uniform Irwin–Hall core times one of 7 scales from 0.25 to 2, and ×4 for one element in 1024), which
/// has Student-t-like tails (kurtosis ≈ 6). The bytes are therefore identical whatever the thread count.
public enum SyntheticCheckpoint {
    /// Default shard size: 5 GB, as transformers' `save_pretrained(max_shard_size="5GB")`.
    public static let defaultMaxShardSize = 5_000_000_000

    /// Writes config.json and the safetensors (sharded with an index when larger than `maxShardSize`)
    /// into `directory`, atomically (staged beside it, moved into place at the end).
    /// - Parameters:
    ///   - threads: generator threads (0 = one per core).
    ///   - progress: called after each block with (bytes written, total bytes).
    public static func write(config: SyntheticModelConfig, to directory: String, maxShardSize: Int = defaultMaxShardSize,
                             threads: Int = 0, progress: ((Int, Int) -> Void)? = nil) throws {
        if let p = config.problem { throw SyntheticError.invalidConfig(p) }
        let out = try OutputDirectory(path: directory)
        try writeSmallFile(out.stagedPath("config.json"), config.configJSON.serialized(indent: 2) + "\n")
        let genConfig: JSONValue = ["_from_model_config": true, "bos_token_id": config.configJSON["bos_token_id"] ?? 1,
                                    "eos_token_id": config.configJSON["eos_token_id"] ?? 2, "transformers_version": "4.44.0"]
        try writeSmallFile(out.stagedPath("generation_config.json"), genConfig.serialized(indent: 2) + "\n")
        let tensors = config.syntheticTensors
        let writer = try ShardedSafetensorsWriter(directory: out.stagingPath, tensors: tensors.map(\.spec),
                                                  metadata: [(key: "format", value: "pt")], maxShardSize: maxShardSize)
        let total = tensors.reduce(0) { $0 + ($1.spec.byteCount ?? 0) }
        try stream(tensors, seed: config.seed, threads: threads) { bytes in
            try writer.write(bytes)
        } progress: { done in
            progress?(done, total)
        }
        try writer.finish()
        try out.commit()
    }

    /// The values of elements `range` of tensor `name` as Floats (before rounding to the checkpoint's dtype).
    public static func values(config: SyntheticModelConfig, tensor name: String, range: Range<Int>) -> [Float]? {
        guard let t = config.syntheticTensors.first(where: { $0.spec.name == name }) else { return nil }
        let g = Generator(t, seed: config.seed)
        return [Float](unsafeUninitializedCapacity: range.count) { buf, n in
            g.fill(range, into: buf.baseAddress!)
            n = range.count
        }
    }

    /// Elements per block; each block is split among the threads, then written while the next is made.
    static let blockElements = 4 << 20

    private final class Buffers: @unchecked Sendable {
        let f32: UnsafeMutablePointer<Float>
        let out: [UnsafeMutableRawPointer]
        let free: [DispatchSemaphore]
        var error: (any Error)?
        let lock = DispatchSemaphore(value: 1)

        init() {
            f32 = .allocate(capacity: SyntheticCheckpoint.blockElements)
            out = (0..<2).map { _ in .allocate(byteCount: 4 * SyntheticCheckpoint.blockElements, alignment: 64) }
            free = (0..<2).map { _ in DispatchSemaphore(value: 1) }
        }

        deinit {
            f32.deallocate()
            out.forEach { $0.deallocate() }
        }
    }

    private struct UncheckedSink: @unchecked Sendable {
        let write: (UnsafeRawBufferPointer) throws -> Void
    }

    /// Generates the tensors' bytes block by block and hands them to `sink` in order, on a writer queue,
    /// overlapping the writing of one block with the making of the next. Memory: two blocks.
    static func stream(_ tensors: [SyntheticTensor], seed: UInt64, threads: Int,
                       sink: @escaping (UnsafeRawBufferPointer) throws -> Void, progress: (Int) -> Void) throws {
        let threadCount = threads > 0 ? threads : max(1, sysconfNumberOfCores())
        let bufs = Buffers()
        let queue = DispatchQueue(label: "qkit.synthetic.writer")
        let s = UncheckedSink(write: sink)
        var block = 0
        var written = 0
        for t in tensors {
            let g = Generator(t, seed: seed)
            let n = elementCount(t.spec.shape) ?? 0
            let width = t.spec.dtype.bitSize / 8
            var start = 0
            while start < n {
                let count = min(blockElements, n - start)
                let slot = block & 1
                bufs.free[slot].wait()
                bufs.lock.wait()
                let failed = bufs.error
                bufs.lock.signal()
                if let failed {
                    bufs.free[slot].signal()
                    throw failed
                }
                let pieces = threadCount == 1 || count < 65536 ? 1 : threadCount * 2
                let dtype = t.spec.dtype
                let base = start
                DispatchQueue.concurrentPerform(iterations: pieces) { p in
                    let lo = count * p / pieces, hi = count * (p + 1) / pieces
                    guard hi > lo else { return }
                    g.fill(base + lo..<base + hi, into: bufs.f32 + lo)
                    Conversion.encode(UnsafeBufferPointer(start: bufs.f32 + lo, count: hi - lo), as: dtype,
                                      into: UnsafeMutableRawBufferPointer(start: bufs.out[slot] + lo * width, count: (hi - lo) * width))
                }
                let byteCount = count * width
                queue.async {
                    bufs.lock.wait()
                    let skip = bufs.error != nil
                    bufs.lock.signal()
                    if !skip {
                        do { try s.write(UnsafeRawBufferPointer(start: bufs.out[slot], count: byteCount)) } catch {
                            bufs.lock.wait()
                            bufs.error = error
                            bufs.lock.signal()
                        }
                    }
                    bufs.free[slot].signal()
                }
                block += 1
                start += count
                written += count * width
                progress(written)
            }
        }
        queue.sync {}
        if let e = bufs.error { throw e }
    }
}

/// Why a synthetic checkpoint cannot be made.
public enum SyntheticError: QKitError, Equatable {
    case invalidConfig(String)

    public var exitStatus: ExitStatus { .usage }
    public var description: String {
        switch self {
        case .invalidConfig(let m): "invalid synthetic model: \(m)"
        }
    }
}

func sysconfNumberOfCores() -> Int {
    #if canImport(Glibc)
    return Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
    #else
    return 1
    #endif
}

/// SplitMix64's output function (Steele, Lea, Flood 2014): a bijective 64-bit mixer.
@inline(__always)
func splitmix64(_ x: UInt64) -> UInt64 {
    var z = x &* 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}

/// FNV-1a of a string, for keys.
func fnv1a(_ s: String) -> UInt64 {
    var h: UInt64 = 0xCBF2_9CE4_8422_2325
    for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
    return h
}

/// Makes the values of one tensor.
struct Generator: Sendable {
    let key: UInt64
    let cols: Int
    let scale: Float
    let offset: Float
    /// Per-column multipliers (outlier channels), empty when none.
    let columnScale: [Float]

    /// Standard deviation of the raw mixture below, so that `scale` is the tensor's std.
    static let rawStd: Float = {
        // scales s_k = 2^((k − 4)/2) approximated on a 1/1.5 grid, k = b1 + b2 with b1, b2 uniform in 0...3.
        var m2: Double = 0
        for b1 in 0..<4 { for b2 in 0..<4 { let s = Double(mixtureScale(UInt64(b1 + b2))); m2 += s * s / 16 } }
        // Irwin–Hall(3) centred: variance 3/12; the ×4 spike with probability 2^-10 adds 15 × 2^-10.
        return Float((m2 * 0.25 * (1 + 15.0 / 1024)).squareRoot())
    }()

    /// 0.25, 0.375, 0.5, 0.75, 1, 1.5, 2 for k = 0…6, built from bits (no table, no pow).
    @inline(__always)
    static func mixtureScale(_ k: UInt64) -> Float {
        Float(bitPattern: UInt32(truncatingIfNeeded: (125 + (k >> 1)) << 23 | (k & 1) << 22))
    }

    init(_ t: SyntheticTensor, seed: UInt64) {
        key = splitmix64(seed ^ fnv1a(t.spec.name))
        cols = t.spec.shape.count == 2 ? t.spec.shape[1] : max(1, t.spec.shape.last ?? 1)
        switch t.kind {
        case .linear(let activation):
            scale = 0.02 / Self.rawStd
            offset = 0
            var cs = [Float](repeating: 1, count: cols)
            let akey = splitmix64(seed ^ fnv1a(activation) ^ 0x5EED)
            let count = min(cols, max(2, min(8, cols / 512)))
            for j in 0..<count {
                let h = splitmix64(akey &+ UInt64(j))
                cs[Int(h % UInt64(cols))] = Float(20 + Int((h >> 32) % 81))
            }
            columnScale = cs
        case .embedding:
            scale = 0.02 / Self.rawStd
            offset = 0
            columnScale = []
        case .norm:
            scale = 0.05 / Self.rawStd
            offset = 1
            columnScale = []
        case .bias:
            scale = 0.1 / Self.rawStd
            offset = 0
            columnScale = []
        }
    }

    /// One raw mixture sample from 64 random bits (two 32-bit words, so that the loop vectorises).
    @inline(__always)
    static func sample(_ lo: UInt32, _ hi: UInt32) -> Float {
        let k = (lo & 3) &+ ((lo &>> 2) & 3)
        let spike: Float = (lo &>> 4) & 0x3FF == 0 ? 4 : 1
        let u1 = Float(Int32(bitPattern: lo &>> 16))
        let u2 = Float(Int32(bitPattern: hi & 0xFFFF))
        let u3 = Float(Int32(bitPattern: hi &>> 16))
        let core = (u1 + u2 + u3 + 1.5) * 0x1p-16 - 1.5
        let s = Float(bitPattern: (125 &+ (k &>> 1)) &<< 23 | (k & 1) &<< 22)
        return core * s * spike
    }

    /// A 32-bit bijective mixer ("lowbias32", C. Wellons), vectorisable.
    @inline(__always)
    static func mix32(_ x: UInt32) -> UInt32 {
        var x = x
        x ^= x &>> 16
        x = x &* 0x21F0_AAAD
        x ^= x &>> 15
        x = x &* 0xD35A_2D97
        x ^= x &>> 15
        return x
    }

    /// Writes elements `range` (flat, row-major) to `dst`. Element i's value depends only on the tensor's key and i.
    func fill(_ range: Range<Int>, into dst: UnsafeMutablePointer<Float>) {
        // Split at multiples of 2^32 so that the per-element counter is 32 bits (the high part goes into the keys).
        var lo = range.lowerBound
        var d = dst
        while lo < range.upperBound {
            let segmentEnd = min(range.upperBound, (lo >> 32 + 1) << 32)
            let k = splitmix64(key ^ UInt64(lo >> 32))
            fillSegment(lo..<segmentEnd, k1: UInt32(truncatingIfNeeded: k), k2: UInt32(truncatingIfNeeded: k >> 32), into: d)
            d += segmentEnd - lo
            lo = segmentEnd
        }
    }

    private func fillSegment(_ range: Range<Int>, k1: UInt32, k2: UInt32, into dst: UnsafeMutablePointer<Float>) {
        let scale = self.scale, offset = self.offset
        let first = UInt32(truncatingIfNeeded: range.lowerBound)
        if columnScale.isEmpty {
            for j in 0..<range.count {
                let x = first &+ UInt32(truncatingIfNeeded: j)
                dst[j] = offset + scale * Self.sample(Self.mix32(x ^ k1), Self.mix32(x ^ k2))
            }
            return
        }
        columnScale.withUnsafeBufferPointer { cs in
            let csp = cs.baseAddress!
            var i = range.lowerBound
            var col = i % cols
            var d = dst
            while i < range.upperBound {
                let run = min(cols - col, range.upperBound - i)
                let x0 = UInt32(truncatingIfNeeded: i)
                let c = csp + col
                for j in 0..<run {
                    let x = x0 &+ UInt32(truncatingIfNeeded: j)
                    d[j] = scale * c[j] * Self.sample(Self.mix32(x ^ k1), Self.mix32(x ^ k2))
                }
                d += run
                i += run
                col = 0
            }
        }
    }
}
