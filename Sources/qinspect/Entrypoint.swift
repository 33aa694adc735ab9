import ArgumentParser
import Common

@main
struct QInspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qinspect",
        abstract: "Show what is in a checkpoint: tensors, dtypes, shapes, quantization format, statistics, differences.",
        discussion: """
            PATH is a safetensors file, a sharded checkpoint's model.safetensors.index.json, a model directory \
            (model.safetensors.index.json, model.safetensors, diffusers' diffusion_pytorch_model.safetensors[.index.json], \
            any *.safetensors, or one *.gguf; a diffusers pipeline root, model_index.json without config.json, opens its \
            transformer/), a GGUF file, or - for \
            standard input (a pipe is spooled to an unlinked temporary file, so memory stays bounded). Listing and \
            --summary read headers only. --stats, --hist and --verify read the data through the map 4M elements \
            at a time and drop those pages after, several tensors and chunks at a time (resident memory \
            stays near 40 MB for a 16 GB checkpoint); \
            --diff reads both checkpoints through mmap. Results do not depend on the number of cores.

            Every file is validated as strictly as the reference safetensors implementation, and duplicate tensor \
            names are refused too (see qkit(5)).

            --summary prints the architecture (from config.json or GGUF metadata), parameters and bytes per group \
            (embeddings, attention, mlp, norms, lm_head, other), bytes per dtype, the detected quantization format \
            (none, qkit, awq-gemm, awq-gemv, gptq-v1/v2 with act-order, compressed-tensors pack-quantized, \
            int-quantized, float-quantized, nvfp4-pack-quantized, fp8-block, gguf types) and the bits per weight of \
            the quantized weights, scales and zero points included. For a diffusers transformer (config.json \
            _class_name FluxTransformer2DModel, SanaTransformer2DModel, PixArtTransformer2DModel) a diffusion section \
            names the family and class, the block lists and counts, and per role of the block linears (attn-qkv, \
            context-qkv, cross-q, cross-kv, ffn-up, adaln, single-out…) how many are float or in which scheme, with \
            the bits per weight over the quantized ones (smooth and low-rank branch included).

            --stats reports per tensor: min, max, mean, std, absmax, zeros, NaN and Inf counts, excess kurtosis \
            (0 for a normal distribution) and the three input channels (last dimension) with the largest absolute \
            value, as channel x ratio to the median channel absmax.

            --diff A B compares tensors of the same name over decoded values: max |a-b|, relative error |a-b|/|a| \
            and SQNR 10 log10(|a|^2 / |a-b|^2) in dB; added, removed and shape-changed tensors are listed. A GGUF file compared \
            with a Hugging Face checkpoint is matched by Hugging Face names, with llama.cpp's q/k row permutation undone.

            EXAMPLES:
              qinspect model/
              qinspect --summary model.gguf
              qinspect --stats --hist --hist-scale log --filter '*layers.0.*' model/
              qinspect --jsonl model/ | jq -r 'select(.dtype == "BF16") | .name'
              qinspect --diff model-f32/ model-bf16/
              cat model.safetensors | qinspect --stats -
              qinspect --verify model/ && echo clean

            EXIT STATUS:
              0 success; 64 usage error; 65 malformed input, or --verify found a problem; 66 missing input; \
            74 I/O error. Errors are one line on standard error: qinspect: PATH: what is wrong.
            """)


    @Argument(help: "Checkpoints to inspect (file, directory, index, .gguf, or - for stdin).")
    var paths: [String] = []

    @Flag(help: "Print one JSON document.") var json = false
    @Flag(help: "Print one JSON object per tensor per line.") var jsonl = false
    @Option(name: .customLong("filter"), help: "Only tensors whose name matches this shell glob (repeatable).")
    var filters: [String] = []
    @Flag(help: "Architecture, parameters by group, bytes by dtype, quantization format and bits per weight.")
    var summary = false
    @Flag(help: "Per tensor min, max, mean, std, absmax, zeros, NaN/Inf, excess kurtosis, outlier input channels.")
    var stats = false
    @Flag(help: "A one-line histogram per tensor (implies --stats).") var hist = false
    @Option(help: "Histogram scale: linear or log.") var histScale: HistogramScale = .linear
    @Flag(help: "Compare the two checkpoints given, A and B, tensor by tensor.") var diff = false
    @Flag(help: "Check structure and every value; exit 0 only when clean.") var verify = false
    @Flag(name: .shortAndLong, help: "Print nothing but errors.") var quiet = false

    enum HistogramScale: String, ExpressibleByArgument, CaseIterable { case linear, log }

    mutating func validate() throws {
        if json && jsonl { throw ValidationError("--json and --jsonl exclude each other") }
        if diff {
            guard paths.count == 2 else { throw ValidationError("--diff takes exactly two checkpoints: --diff A B") }
        } else if paths.isEmpty {
            throw ValidationError("give at least one checkpoint path")
        }
    }

    func run() throws {
        try runTool("qinspect") {
            if diff {
                let report = try CheckpointDiff(a: Checkpoint(path: paths[0]), b: Checkpoint(path: paths[1]))
                print(json ? report.json().serialized(indent: 2) : report.text(), terminator: "")
                return
            }
            var options = InspectOptions()
            options.output = json ? .json : jsonl ? .jsonl : .table
            options.filters = filters
            options.summary = summary
            options.stats = stats || hist
            options.histogram = hist
            options.logHistogram = histScale == .log
            if verify {
                var clean = true
                for p in paths {
                    let result = try CheckpointVerifier.verify(Checkpoint(path: p))
                    clean = clean && result.isClean
                    if json { print(result.json(path: p).serialized(indent: 2)) } else if !quiet || !result.isClean { print(result.text(path: p), terminator: "") }
                }
                if !clean { throw VerifyFailed() }
                return
            }
            if options.output == .json && paths.count > 1 {
                // One document for several checkpoints: an array of their reports.
                let docs = try paths.map { p in
                    let inspector = Inspector(checkpoint: try Checkpoint(path: p), options: options)
                    return JSONValue.object(try inspector.document(inspector.selected))
                }
                print(JSONValue.array(docs).serialized(indent: 2))
                return
            }
            try Self.list(paths, options: options)
        }
    }

    /// Prints each checkpoint's report, a blank line between tables.
    static func list(_ paths: [String], options: InspectOptions) throws {
        for (i, p) in paths.enumerated() {
            if i > 0 && options.output == .table { print("") }
            try Inspector(checkpoint: Checkpoint(path: p), options: options).run { print($0, terminator: "") }
        }
    }

    /// `qinspect PATH...` with no option, the listing users run all day, skips building the argument parser:
    /// that took a quarter of a 7 ms listing of a 4-shard checkpoint (perf). Any option goes through the parser.
    static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        guard !arguments.isEmpty, arguments.allSatisfy({ $0 == "-" || !$0.hasPrefix("-") }) else {
            return main(nil)
        }
        do {
            try runTool("qinspect") { try list(arguments, options: InspectOptions()) }
        } catch {
            exit(withError: error)
        }
    }
}
