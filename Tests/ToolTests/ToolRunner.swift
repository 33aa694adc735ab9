import Foundation

/// Runs the built tools as a user would and captures what they print.
enum Tool {
    /// The package root, from this file's location.
    static let root: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// Where `swift build` put the binaries of a configuration.
    static func binDirectory(_ configuration: String) -> String { root + "/.build/\(configuration)" }

    /// The directory of the build these tests belong to (the test bundle's, whatever --scratch-path was used).
    static let builtDirectory: String = {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: exe).deletingLastPathComponent().path
    }()

    /// Real-model assets (fetched by scripts/fetch-assets.sh).
    static let assets: String = ProcessInfo.processInfo.environment["QKIT_ASSETS"] ?? (NSHomeDirectory() + "/.cache/qkit-assets")

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs `tool` (from this test build, or the default release build when `release`) with `arguments`,
    /// feeding `stdin` if given.
    /// `launcher` (e.g. `["/usr/bin/taskset", "-c", "0"]`) runs the tool through another command.
    static func run(_ tool: String, _ arguments: [String], stdin: Data? = nil, release: Bool = false, launcher: [String] = []) throws -> Result {
        let p = Process()
        let binary = (release ? binDirectory("release") : builtDirectory) + "/" + tool
        p.executableURL = URL(fileURLWithPath: launcher.first ?? binary)
        p.arguments = launcher.isEmpty ? arguments : Array(launcher.dropFirst()) + [binary] + arguments
        // Output goes to files: no pipe can fill up and block the tool.
        let scratch = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        FileManager.default.createFile(atPath: scratch + "/out", contents: nil)
        FileManager.default.createFile(atPath: scratch + "/err", contents: nil)
        let out = try FileHandle(forWritingTo: URL(fileURLWithPath: scratch + "/out"))
        let err = try FileHandle(forWritingTo: URL(fileURLWithPath: scratch + "/err"))
        p.standardOutput = out
        p.standardError = err
        if let stdin {
            try stdin.write(to: URL(fileURLWithPath: scratch + "/in"))
            // A pipe, not a file, so the tool's spooling path is what runs.
            let input = Pipe()
            p.standardInput = input
            try p.run()
            let h = input.fileHandleForWriting
            h.write(stdin)
            try h.close()
        } else {
            p.standardInput = FileHandle.nullDevice
            try p.run()
        }
        p.waitUntilExit()
        try out.close()
        try err.close()
        let o = try Data(contentsOf: URL(fileURLWithPath: scratch + "/out"))
        let e = try Data(contentsOf: URL(fileURLWithPath: scratch + "/err"))
        return Result(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
    }

    /// A fresh scratch directory.
    static func temporaryDirectory() -> String {
        let path = NSTemporaryDirectory() + "qkit-tool-" + UUID().uuidString
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// A safetensors file with the given header text and data bytes.
    static func safetensors(header: String, data: [UInt8]) -> Data {
        var d = Data()
        let h = Array(header.utf8)
        withUnsafeBytes(of: UInt64(h.count).littleEndian) { d.append(contentsOf: $0) }
        d.append(contentsOf: h)
        d.append(contentsOf: data)
        return d
    }
}

/// The tiny transformers-made fixture models of the runtime tests.
func fixtureModel(_ family: String) -> String { Tool.root + "/Tests/CommonTests/Fixtures/model/" + family }

/// Seeded token ids below the tiny models' vocabulary (320), as qeval --tokenize prints them.
func idsFile(_ dir: String, count: Int = 3000, seed: UInt64 = 11) throws -> String {
    var state = seed
    var ids: [String] = []
    for _ in 0..<count {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        ids.append(String((state >> 33) % 320))
    }
    let path = dir + "/ids.txt"
    try (ids.joined(separator: " ") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

/// Every file of a directory, by name.
func files(_ dir: String) throws -> [String: Data] {
    var out: [String: Data] = [:]
    for name in try FileManager.default.contentsOfDirectory(atPath: dir) {
        out[name] = try Data(contentsOf: URL(fileURLWithPath: dir + "/" + name))
    }
    return out
}
