import ArgumentParser
import Common

@main
struct Qpack: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qpack",
        abstract: "Pack, import and convert checkpoints between backend layouts.",
        discussion: """
            Available now: --to safetensors with a GGUF file as IN (llama and qwen2 architectures): every tensor \
            is dequantized (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K to Q6_K) and written as a Hugging Face \
            directory (config.json, model.safetensors, tokenizer.json, tokenizer_config.json, \
            generation_config.json). The directory appears only when everything succeeded.

            The other formats are not available yet in this version of qkit: asking for one exits with status 69 \
            (EX_UNAVAILABLE) and writes nothing.
            """)

    @Argument(help: "Input: a .gguf file, or - for standard input (for --to safetensors).")
    var input: String

    @Option(name: .customLong("to"), help: "Output format (only safetensors is available yet).")
    var format: PackFormat

    @Option(help: "Element type of the written tensors: f32, f16 or bf16.")
    var dtype: OutputDType = .f32

    @Option(name: .customLong("max-shard-size"), help: "Largest shard, e.g. 5GB, 500MB, 2GiB (default: one file).")
    var maxShardSize: String?

    @Option(name: .shortAndLong, help: "Output directory.")
    var output: String

    @Flag(name: .shortAndLong, help: "Print one line per tensor on standard error.")
    var verbose = false

    @Flag(name: .shortAndLong, help: "Print nothing but errors.")
    var quiet = false

    func run() throws {
        if format != .safetensors {
            throw notAvailableYet("qpack", "--to \(format.rawValue) is not implemented yet")
        }
        try runTool("qpack") {
            let shard = try maxShardSize.map { s throws(UsageError) in
                guard let n = parseByteSize(s) else { throw UsageError("--max-shard-size: cannot read '\(s)' (use e.g. 5GB or 500MB)") }
                return n
            }
            guard input == "-" || input.lowercased().hasSuffix(".gguf") || (fileExists(input) && !isDirectory(input) && looksLikeGGUF(input)) else {
                throw UsageError("--to safetensors needs a .gguf file as input (other inputs are not available yet)")
            }
            try GGUFImport.run(gguf: input, output: output, dtype: dtype.dtype, maxShardSize: shard,
                               progress: verbose && !quiet ? { logLine("qpack: " + $0) } : nil)
        }
    }
}

enum PackFormat: String, CaseIterable, ExpressibleByArgument {
    case safetensors
    case vllmAWQ = "vllm-awq"
    case vllmGPTQ = "vllm-gptq"
    case compressedTensors = "compressed-tensors"
    case lightllm
    case mlc
    case tinychat
    case nunchaku
    case gguf
}

enum OutputDType: String, CaseIterable, ExpressibleByArgument {
    case f32, f16, bf16
    var dtype: DType {
        switch self {
        case .f32: .f32
        case .f16: .f16
        case .bf16: .bf16
        }
    }
}

/// Whether a file starts with the GGUF magic.
func looksLikeGGUF(_ path: String) -> Bool {
    guard let f = try? MappedFile(path: path), f.count >= 4 else { return false }
    return f.bytes.loadUnaligned(as: UInt32.self) == GGUFFile.magic
}

/// "5GB" → 5·10⁹, "2GiB" → 2·2³⁰, "500MB", "123" (bytes). `nil` if unreadable or not positive.
func parseByteSize(_ text: String) -> Int? {
    let s = text.trimmingCharacters(in: " ").uppercased()
    let units: [(String, Int)] = [("KIB", 1 << 10), ("MIB", 1 << 20), ("GIB", 1 << 30), ("TIB", 1 << 40),
                                  ("KB", 1_000), ("MB", 1_000_000), ("GB", 1_000_000_000), ("TB", 1_000_000_000_000), ("B", 1)]
    var number = s
    var scale = 1
    for (u, m) in units where s.hasSuffix(u) {
        number = String(s.dropLast(u.count))
        scale = m
        break
    }
    guard let v = Double(number.trimmingCharacters(in: " ")), v > 0, v.isFinite else { return nil }
    let bytes = v * Double(scale)
    guard bytes >= 1, bytes < 9.0e18 else { return nil }
    return Int(bytes)
}

extension String {
    fileprivate func trimmingCharacters(in c: Character) -> String {
        var s = Substring(self)
        while s.first == c { s.removeFirst() }
        while s.last == c { s.removeLast() }
        return String(s)
    }
}
