import ArgumentParser
import Common

@main
struct QInspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qinspect",
        abstract: "Show what is in a checkpoint: tensors, dtypes, shapes, quantization format, statistics, differences.",
        discussion: """
            PATH is a safetensors file, a sharded checkpoint's model.safetensors.index.json, a model directory, \
            a GGUF file, or - for standard input. Listing and --summary read headers only. \
            Exit status: 0 success, 64 usage, 65 malformed input (or --verify found a problem), 66 missing input, 74 I/O error.
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
    @Option(name: .customLong("diff"), parsing: .upToNextOption, help: "Compare two checkpoints A B tensor by tensor.")
    var diff: [String] = []
    @Flag(help: "Check structure and every value; exit 0 only when clean.") var verify = false
    @Flag(name: .shortAndLong, help: "Print nothing but errors.") var quiet = false

    enum HistogramScale: String, ExpressibleByArgument, CaseIterable { case linear, log }

    mutating func validate() throws {
        if json && jsonl { throw ValidationError("--json and --jsonl exclude each other") }
        if !diff.isEmpty {
            guard diff.count + paths.count == 2 else { throw ValidationError("--diff takes exactly two checkpoints: --diff A B") }
        } else if paths.isEmpty {
            throw ValidationError("give at least one checkpoint path")
        }
    }

    func run() throws {
        try runTool("qinspect") {
            if !diff.isEmpty {
                let both = diff + paths
                let report = try CheckpointDiff(a: Checkpoint(path: both[0]), b: Checkpoint(path: both[1]))
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
            for (i, p) in paths.enumerated() {
                if i > 0 && options.output == .table { print("") }
                try Inspector(checkpoint: Checkpoint(path: p), options: options).run { print($0, terminator: "") }
            }
        }
    }
}
