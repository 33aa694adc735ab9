#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser

/// Runs a tool's body with qkit's error contract: a `QKitError` becomes one line on stderr,
/// `tool: path: message`, and its sysexits status; a broken pipe ends the process quietly.
public func runTool(_ tool: String, _ body: () throws -> Void) throws {
    signal(SIGPIPE, SIG_DFL)
    do {
        try body()
    } catch let e as any QKitError {
        printError(tool: tool, path: e.path, e.description)
        throw ExitCode(e.exitStatus.rawValue)
    }
}

/// Prints `tool: path: message` (or `tool: message`) on standard error.
public func printError(tool: String, path: String?, _ message: String) {
    let line = path.map { "\(tool): \($0): \(message)\n" } ?? "\(tool): \(message)\n"
    writeStandardError(line)
}

/// Writes to standard error (progress and logs; stdout stays clean for data).
public func logLine(_ text: String) {
    writeStandardError(text + "\n")
}

/// A usage error found after parsing (exit 64).
public struct UsageError: QKitError {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var exitStatus: ExitStatus { .usage }
    public var description: String { message }
}

/// A tool whose issue has not landed yet: it says so and exits 69 (EX_UNAVAILABLE).
public func notAvailableYet(_ tool: String, _ what: String) -> ExitCode {
    writeStandardError("\(tool): not available yet: \(what)\n")
    return ExitCode(69)
}

/// Writes a string to file descriptor 2, unbuffered.
public func writeStandardError(_ text: String) {
    var t = text
    t.withUTF8 { b in
        var done = 0
        while done < b.count {
            let n = write(2, b.baseAddress! + done, b.count - done)
            if n <= 0 { if n < 0 && errno == EINTR { continue }; return }
            done += n
        }
    }
}
