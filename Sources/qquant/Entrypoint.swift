import ArgumentParser
import Common

@main
struct Qquant: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qquant",
        abstract: "Quantize a checkpoint (RTN, HQQ, AWQ, GPTQ, SmoothQuant, ...).",
        discussion: "Not available yet in this version of qkit: the command exits with status 69 (EX_UNAVAILABLE).")

    @Argument(help: "Model directory or file.") var model: String?

    func run() throws {
        throw notAvailableYet("qquant", "quantization is not implemented in this version of qkit")
    }
}
