import ArgumentParser
import Common

@main
struct QInspect: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "qinspect", abstract: "Inspect checkpoints.")
    @Argument var paths: [String]
    func run() throws {
        try runTool("qinspect") {
            for p in paths {
                let f = try SafetensorsFile(path: p)
                for t in f.tensors { print(t.name, t.dtype.rawValue, t.shape) }
            }
        }
    }
}
