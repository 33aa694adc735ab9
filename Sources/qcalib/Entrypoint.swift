import ArgumentParser
import Common

@main
struct Qcalib: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qcalib",
        abstract: "Run calibration text through a model and dump activation statistics.",
        discussion: "Not available yet in this version of qkit: the command exits with status 69 (EX_UNAVAILABLE).")

    @Argument(help: "Model directory or file.") var model: String?

    func run() throws {
        throw notAvailableYet("qcalib", "calibration (activation statistics) is not implemented in this version of qkit")
    }
}
