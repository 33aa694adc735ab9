// qsynth: writes a synthetic Llama/Qwen2 checkpoint for tests and benchmarks (a development target).
import Common
#if canImport(Glibc)
import Glibc
#endif

let usageText = """
usage: qsynth [--preset tiny|qwen2-tiny|llama8b] [--family llama|qwen2] [--hidden N] [--intermediate N]
              [--layers N] [--heads N] [--kv-heads N] [--vocab N] [--tied|--untied] [--dtype bf16|f16|f32]
              [--seed S] [--max-shard-size 5GB] [--threads N] [-q] -o DIR
Writes DIR/config.json, DIR/generation_config.json and safetensors with Hugging Face names (sharded with
model.safetensors.index.json past --max-shard-size). Same options and seed give the same bytes.

       qsynth --family flux|sana|pixart [--heads N] [--head-dim N] [--layers N] [--single-layers N]
              [--dtype bf16|f16|f32] [--seed S] [--max-shard-size 5GB] [--pipeline] -o DIR
A diffusers transformer with the real names and config keys, widths scaled down (defaults: FLUX d=128 with
2 dual + 2 single blocks, SANA d=320 with 2 blocks, PixArt-Sigma d=128 with 2 blocks): DIR/config.json and
DIR/diffusion_pytorch_model.safetensors; with --pipeline a pipeline root (DIR/model_index.json, DIR/transformer/).

"""

func fail(_ message: String, _ status: Int32 = 64) -> Never {
    var t = "qsynth: \(message)\n"
    t.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    exit(status)
}

/// "5GB", "500MB", "2GiB", "123" → bytes (decimal units as transformers' max_shard_size; KiB/MiB/GiB binary).
func parseSize(_ s: String) -> Int? {
    let units: [(String, Int)] = [("KIB", 1 << 10), ("MIB", 1 << 20), ("GIB", 1 << 30), ("KB", 1000), ("MB", 1_000_000), ("GB", 1_000_000_000),
                                  ("K", 1000), ("M", 1_000_000), ("G", 1_000_000_000), ("B", 1)]
    let u = s.uppercased()
    for (suffix, mult) in units where u.hasSuffix(suffix) {
        guard let v = Double(u.dropLast(suffix.count)), v > 0 else { return nil }
        return Int(v * Double(mult))
    }
    return Int(u).flatMap { $0 > 0 ? $0 : nil }
}

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// `qsynth --family flux|sana|pixart …`: a synthetic diffusers transformer.
func diffusionMain(_ family: SyntheticDiffusionConfig.Family, _ arguments: [String]) {
    var config = SyntheticDiffusionConfig.tiny(family)
    var output: String?
    var maxShard = SyntheticCheckpoint.defaultMaxShardSize
    var quiet = false
    var i = 0
    func value() -> String {
        guard i + 1 < arguments.count else { fail("option '\(arguments[i])' needs a value") }
        i += 1
        return arguments[i]
    }
    func intValue() -> Int {
        let v = value()
        guard let n = Int(v), n > 0 else { fail("option '\(arguments[i - 1])': '\(v)' is not a positive integer") }
        return n
    }
    while i < arguments.count {
        switch arguments[i] {
        case "--family": _ = value()
        case "-o", "--output": output = value()
        case "--heads": config.heads = intValue()
        case "--head-dim": config.headDim = intValue()
        case "--layers": config.layers = intValue()
        case "--single-layers":
            let v = value()
            guard let n = Int(v), n >= 0 else { fail("--single-layers: '\(v)' is not a non-negative integer") }
            config.singleLayers = n
        case "--pipeline": config.pipeline = true
        case "--dtype":
            let v = value()
            switch v.lowercased() {
            case "bf16", "bfloat16": config.dtype = .bf16
            case "f16", "fp16", "float16": config.dtype = .f16
            case "f32", "fp32", "float32": config.dtype = .f32
            default: fail("unknown dtype '\(v)' (bf16, f16, f32)")
            }
        case "--seed":
            let v = value()
            guard let s = UInt64(v) else { fail("--seed: '\(v)' is not a non-negative integer") }
            config.seed = s
        case "--max-shard-size":
            let v = value()
            guard let s = parseSize(v) else { fail("--max-shard-size: cannot read '\(v)'") }
            maxShard = s
        case "-q", "--quiet": quiet = true
        default: fail("unexpected argument '\(arguments[i])' for --family \(family.rawValue)\n" + usageText)
        }
        i += 1
    }
    guard let output else { fail("missing -o DIR\n" + usageText) }
    if let p = config.problem { fail(p) }
    do {
        try SyntheticCheckpoint.write(diffusion: config, to: output, maxShardSize: maxShard)
    } catch let e as any QKitError {
        fail("\(output): \(e)", e.exitStatus.rawValue)
    } catch {
        fail("\(output): \(error)", 1)
    }
    if !quiet {
        var line = "qsynth: wrote \(output): \(family.rawValue), \(config.parameterCount) parameters\n"
        line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    }
}

func main() {
    if let f = CommandLine.arguments.firstIndex(of: "--family"), f + 1 < CommandLine.arguments.count,
        let family = SyntheticDiffusionConfig.Family(rawValue: CommandLine.arguments[f + 1].lowercased())
    {
        diffusionMain(family, Array(CommandLine.arguments.dropFirst()))
        return
    }
    var config = SyntheticModelConfig.tiny
    var output: String?
    var maxShard = SyntheticCheckpoint.defaultMaxShardSize
    var threads = 0
    var quiet = false
    var args = Array(CommandLine.arguments.dropFirst())
    // The preset first, so that other options override its fields whatever their order.
    if let i = args.firstIndex(of: "--preset") {
        guard i + 1 < args.count else { fail("--preset needs a value") }
        guard let p = SyntheticModelConfig.preset(args[i + 1]) else { fail("unknown preset '\(args[i + 1])' (tiny, qwen2-tiny, llama8b)") }
        config = p
        args.removeSubrange(i...i + 1)
    }
    var i = 0
    func value() -> String {
        guard i + 1 < args.count else { fail("option '\(args[i])' needs a value") }
        i += 1
        return args[i]
    }
    func intValue() -> Int {
        let v = value()
        guard let n = Int(v), n > 0 else { fail("option '\(args[i - 1])': '\(v)' is not a positive integer") }
        return n
    }
    while i < args.count {
        switch args[i] {
        case "-h", "--help":
            print(usageText, terminator: "")
            exit(0)
        case "-o", "--output": output = value()
        case "--family":
            let v = value()
            guard let f = SyntheticFamily(rawValue: v.lowercased()) else { fail("unknown family '\(v)' (llama, qwen2, flux, sana, pixart)") }
            config.family = f
        case "--hidden": config.hidden = intValue()
        case "--intermediate": config.intermediate = intValue()
        case "--layers": config.layers = intValue()
        case "--heads": config.heads = intValue()
        case "--kv-heads": config.kvHeads = intValue()
        case "--vocab": config.vocab = intValue()
        case "--tied": config.tiedEmbeddings = true
        case "--untied": config.tiedEmbeddings = false
        case "--dtype":
            let v = value()
            switch v.lowercased() {
            case "bf16", "bfloat16": config.dtype = .bf16
            case "f16", "fp16", "float16": config.dtype = .f16
            case "f32", "fp32", "float32": config.dtype = .f32
            default: fail("unknown dtype '\(v)' (bf16, f16, f32)")
            }
        case "--seed":
            let v = value()
            guard let s = UInt64(v) else { fail("--seed: '\(v)' is not a non-negative integer") }
            config.seed = s
        case "--max-shard-size":
            let v = value()
            guard let s = parseSize(v) else { fail("--max-shard-size: cannot read '\(v)'") }
            maxShard = s
        case "--threads": threads = intValue()
        case "-q", "--quiet": quiet = true
        default: fail("unexpected argument '\(args[i])'\n" + usageText)
        }
        i += 1
    }
    guard let output else { fail("missing -o DIR\n" + usageText) }
    if let p = config.problem { fail(p) }

    let showProgress = !quiet && isatty(2) != 0
    let t0 = now()
    var lastShown = 0.0
    do {
        try SyntheticCheckpoint.write(config: config, to: output, maxShardSize: maxShard, threads: threads) { done, total in
            guard showProgress else { return }
            let t = now() - t0
            guard t - lastShown > 0.5 || done == total else { return }
            lastShown = t
            let rate = Double(done) / max(t, 1e-9)
            let eta = rate > 0 ? Double(total - done) / rate : 0
            var line = "\rqsynth: \(done * 100 / max(total, 1))%  \(done >> 20) / \(total >> 20) MiB  \(Int(rate / 1e6)) MB/s  ETA \(Int(eta)) s   "
            line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
        }
    } catch let e as any QKitError {
        fail("\(output): \(e)", e.exitStatus.rawValue)
    } catch {
        fail("\(output): \(error)", 1)
    }
    if showProgress { _ = write(2, "\n", 1) }
    if !quiet {
        let t = now() - t0
        let bytes = config.tensors.reduce(0) { $0 + ($1.byteCount ?? 0) }
        var line = "qsynth: wrote \(output): \(config.family.rawValue), \(config.parameterCount) parameters, \(bytes) bytes of \(config.dtype.rawValue) in \(Int(t * 10) / 10).\(Int(t * 10) % 10) s\n"
        line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    }
}

main()
