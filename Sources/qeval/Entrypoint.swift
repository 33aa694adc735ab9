import ArgumentParser
import Common

@main
struct Qeval: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qeval",
        abstract: "Score a model: perplexity, KL divergence and top-1 agreement against a reference.",
        discussion: """
            MODEL is a model directory (config.json, tokenizer.json, safetensors in F32, F16 or BF16, or a qkit \
            checkpoint, which is dequantized as it is read). The forward pass runs on the CPU in f32: weights \
            are read one decoder block at a time, the output head one vocabulary slice at a time, so memory \
            stays near one block plus the activations of a batch of windows.

            PROTOCOL (the GPTQ/AWQ one): the whole text is tokenized once without special tokens, cut into \
            consecutive non-overlapping windows of --seqlen tokens (a shorter tail is dropped), the first \
            --windows of them evaluated; perplexity is exp of the mean next-token negative log-likelihood over \
            every predicted token (L - 1 per window). With --bos each window is the BOS token followed by L - 1 \
            text tokens. The 95% interval is a bootstrap over windows (1000 resamples, fixed seed). The output \
            records the model and data (XXH64 hashes, as xxhsum -H1 prints for a single file), L, windows, BOS, \
            the stored dtype and the token counts.

            --ref MODEL2 evaluates MODEL2 on the same windows, side by side, and adds KL(MODEL2 || MODEL) per \
            predicted token (mean and 99th percentile, nats), top-1 agreement (same argmax) and the difference \
            of perplexities. No logits are written anywhere.

            --tokenize prints the ids of the text, space separated, on one line: the input --ids reads back.

            EXAMPLES:
              qeval model/ --data wiki.txt --seqlen 2048
              qeval model-q/ --ref model/ --data pydoc-tutorial.txt --windows 20 --json
              qeval model/ --tokenize notes.txt | qeval model/ --ids - --seqlen 256
              qquant model/ --algo rtn --wbits 4 --group 64 -o q/ && qeval q/ --ref model/ --data text.txt

            EXIT STATUS:
              0 success; 64 usage error; 65 malformed model, data or ids; 66 missing input; 69 unsupported \
            model family or missing OpenBLAS; 74 I/O error.
            """)

    @Argument(help: "Model directory (or a qkit checkpoint).") var model: String
    @Option(help: "Text to evaluate on (- for standard input).") var data: String?
    @Option(help: "Pre-tokenized ids to evaluate on, whitespace separated (- for standard input).") var ids: String?
    @Option(help: "Tokens per window.") var seqlen = 512
    @Option(help: "Evaluate only the first N windows.") var windows: Int?
    @Flag(help: "Start every window with the BOS token.") var bos = false
    @Option(help: "Reference model: KL divergence, top-1 agreement and Δppl against it.") var ref: String?
    @Flag(help: "Print one JSON document.") var json = false
    @Option(help: "Print the token ids of this text (- for standard input) and exit.") var tokenize: String?
    @Flag(name: .shortAndLong, help: "No progress on standard error.") var quiet = false

    mutating func validate() throws {
        if tokenize != nil {
            if data != nil || ids != nil || ref != nil { throw ValidationError("--tokenize takes only MODEL and a text") }
            return
        }
        if (data == nil) == (ids == nil) { throw ValidationError("give exactly one of --data FILE and --ids FILE") }
        if seqlen < 2 { throw ValidationError("--seqlen must be at least 2") }
        if let w = windows, w < 1 { throw ValidationError("--windows must be at least 1") }
    }

    func run() throws {
        try runTool("qeval") {
            if let tokenize {
                let ids = try EvaluationReport.tokenize(model: model, data: tokenize)
                print(ids.map(String.init).joined(separator: " "))
                return
            }
            let request = EvaluationRequest(model: model, reference: ref, data: data, ids: ids, sequenceLength: seqlen,
                                            windowLimit: windows, bos: bos, quiet: quiet)
            let progress = Progress(total: 1, label: "qeval", quiet: quiet, unit: "blocks")
            let report = try EvaluationReport.run(request) { done, total in progress.update(done: done, total: total) }
            progress.finish()
            print(json ? report.json.serialized(indent: 2) + "\n" : report.table, terminator: "")
        }
    }
}
