import ArgumentParser
import Common

@main
struct Qeval: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qeval",
        abstract: "Score a model: perplexity, KL divergence, top-1 agreement.",
        discussion: "Not available yet in this version of qkit: the command exits with status 69 (EX_UNAVAILABLE).")

    @Argument(help: "Model directory or file.") var model: String?

    func run() throws {
        throw notAvailableYet("qeval", "evaluation (perplexity, KL divergence) is not implemented in this version of qkit")
    }
}
