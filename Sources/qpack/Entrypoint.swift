import ArgumentParser
import Common

@main
struct Qpack: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qpack",
        abstract: "Pack, import and convert checkpoints between backend layouts.",
        discussion: "Not available yet in this version of qkit: the command exits with status 69 (EX_UNAVAILABLE).")

    @Argument(help: "Model directory or file.") var model: String?

    func run() throws {
        throw notAvailableYet("qpack", "packing is not implemented yet")
    }
}
