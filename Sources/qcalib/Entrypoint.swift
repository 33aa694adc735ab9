import ArgumentParser
import Common

@main
struct Qcalib: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qcalib",
        abstract: "Run calibration text through a model on the CPU and write activation statistics.",
        discussion: """
            MODEL is a float model directory (config.json, tokenizer.json, safetensors). The calibration text \
            (--data, or pre-tokenized --ids as qeval --tokenize prints them) is tokenized with the model's \
            tokenizer without special tokens (with --chat each line, or JSONL record, is first rendered through \
            the model's chat template) and cut into --samples windows of --seqlen tokens: the first ones \
            (--sampling first) or at random starts drawn with --seed (--sampling random, the default). The \
            windows run through the model block by block in f32, one block's weights in memory at a time.

            OUTPUT (a safetensors file, man 5 qkit): for every linear P of every block \
            (model.layers.N.self_attn.q_proj ...), statistics of its input per input channel: \
            P.input.absmax, P.input.absmean, P.input.sqmean (F32 [K]); with --hessian also P.input.hessian \
            (F32 [K, K], GPTQ's 2/n sum of x^T x over the n tokens); for k_proj and v_proj P.output.absmax \
            (F32 [kv_dim]: keys after RoPE, values: where KV-cache scales come from); per block \
            model.layers.N.cosine (F32 [1], the mean cosine between the block's input and output hidden \
            states: how little the block changes them). __metadata__ records the model, the data's XXH64, the \
            windows, seed and token count. The file is written block by block, so -o - streams it: \
            qcalib ... -o - | qquant ... --stats -.

            EXAMPLES:
              qcalib model/ --data pile.txt -o stats.safetensors
              qcalib model/ --data howto.txt --samples 32 --sampling first --hessian -o stats.safetensors
              qcalib model/ --data chats.jsonl --chat -o - | qquant model/ --algo smoothquant --stats - -o w8a8/
              qinspect stats.safetensors --stats --filter '*.cosine'

            EXIT STATUS:
              0 success; 64 usage error; 65 malformed model or data, or too few tokens; 66 missing input; \
            69 unsupported model family or missing OpenBLAS; 73 cannot create the output; 74 I/O error.
            """)

    @Argument(help: "Model directory (float safetensors).") var model: String
    @OptionGroup var calibration: CalibrationDataOptions
    @Flag(help: "Also write every linear input's Hessian 2/n sum x^T x (K x K F32 each: large).") var hessian = false
    @Option(name: .customLong("batch-tokens"), help: "Tokens per forward batch (bounds the temporaries of a block).") var batchTokens = 16384
    @Option(name: .shortAndLong, help: "Output statistics file (- for standard output).") var output: String
    @Flag(name: .long, help: "Print a JSON summary on standard output (not with -o -).") var json = false
    @Flag(name: .shortAndLong, help: "Print nothing but errors.") var quiet = false

    mutating func validate() throws {
        if (calibration.data == nil) == (calibration.ids == nil) { throw ValidationError("give exactly one of --data FILE and --ids FILE") }
        if calibration.samples < 1 { throw ValidationError("--samples must be at least 1") }
        if calibration.seqlen < 2 { throw ValidationError("--seqlen must be at least 2") }
        if json && output == "-" { throw ValidationError("--json prints on standard output, where -o - writes the statistics") }
    }

    func run() throws {
        try runTool("qcalib") {
            let request = try calibration.request()
            let report = try StatisticsFile.run(model: model, data: request, hessian: hessian, output: output,
                                                batchTokens: max(calibration.seqlen, batchTokens), log: { if !quiet { logLine("qcalib: " + $0) } })
            if json {
                let o: JSONValue = ["output": .string(output), "tokens": .int(report.tokens), "tensors": .int(report.tensors),
                                    "bytes": .int(report.bytes), "seconds": .double((report.seconds * 1000).rounded() / 1000),
                                    "block_cosine": .array(report.cosines.map { .double(($0 * 1e6).rounded() / 1e6) })]
                print(o.serialized(indent: 2))
            } else if !quiet && output != "-" {
                print("\(output): statistics of \(report.tensors) tensors from \(report.tokens) tokens in \(fixedDecimals(report.seconds, 1)) s")
            }
        }
    }
}
