// qbench: development benchmarks against the peers (not a user tool).
// Each subcommand is one function in its own file; add a line to `subcommands` for a new one.
#if canImport(Glibc)
import Glibc
#endif

let subcommands: [(name: String, summary: String, run: ([String]) throws -> Void)] = [
    ("convert", "dtype conversion GB/s (bf16/f16 <-> f32 on 1 GiB; f8/f4), one thread, best of N [--size-mib 1024] [--reps 3] [--peer PYTHON]", runConvert),
    ("list", "list a checkpoint (headers only): qinspect vs the python safetensors package, whole processes [--peer PYTHON] [--reps 20]", runList),
    ("stats", "qinspect --stats vs the same statistics in numpy over np.memmap, GB/s and fraction of read bandwidth [--peer PYTHON] [--reps 3]", runStats),
    ("kernel", "the statistics kernel alone on 1 GiB of bf16 in memory [--reps 3]", runKernel),
    ("sgemm", "OpenBLAS sgemm GFLOP/s on forward-pass and calibration shapes, all cores [--reps 3]", runSgemm),
    ("quant", "qquant's RTN kernel GB/s vs memcpy on a warm shard; vs llm-compressor on SmolLM2 [MODEL] [--shard 1] [--reps 2] [--smollm DIR --peer PYTHON]", runQuant),
    ("pack", "qpack's per-linear repacking GB/s vs memcpy on a warm shard of a qkit checkpoint, every PackLayout, null sink QKIT_MODEL [--shard 0] [--reps 2] [--layouts a,b]", runPack),
    ("gptq", "GPTQSolver seconds on SmolLM2 and 8B linear shapes (factorization, column loop) vs llm-compressor's quantize_weight [--shapes smol|8b|all] [--tokens 512] [--reps 1] [--peer PYTHON --peer-max-k 4096]", runGPTQ),
    ("calibrated", "qquant awq/gptq/smoothquant end to end vs llm-compressor oneshot, same protocol, with ppl MODEL [--algos gptq,awq] [--peer PYTHON]", runCalibrated),
    ("forward", "perplexity forward pass tokens/s vs transformers f32 on torch CPU, same windows; fraction of sgemm MODEL TEXT [--lengths 512,2048] [--tokens 8192] [--reps 2] [--peer PYTHON]", runForward),
    ("json", "parse a 2 MB safetensors-style header: qkit vs json-c vs Foundation [--entries 17200] [--reps 5]", runJSON),
    ("tokenize", "tokenizer encode MB/s vs HF tokenizers, ids compared, on the pydoc corpora TOKENIZER [--corpus F]... [--peer PYTHON] [--reps 3]", runTokenize),
]

let argv = Array(CommandLine.arguments.dropFirst())
if let name = argv.first, let command = subcommands.first(where: { $0.name == name }) {
    do {
        try command.run(Array(argv.dropFirst()))
    } catch {
        printError("qbench: \(error)")
        exit(error is UsageError ? 64 : 1)
    }
} else {
    var s = "usage: qbench SUBCOMMAND [options]\n"
    for c in subcommands { s += "  \(c.name.padding(8))  \(c.summary)\n" }
    printError(s, newline: false)
    exit(argv.first == "help" || argv.first == "--help" ? 0 : 64)
}
