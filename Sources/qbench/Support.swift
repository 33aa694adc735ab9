#if canImport(Glibc)
import Glibc
#endif
import Common
import Foundation

/// A sink the optimiser cannot see through (shared/specs/swift.md §5.1).
@inline(never) @_optimize(none)
func blackHole<T>(_ x: T) {}

/// Seconds on the monotonic clock.
func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// CPU seconds (user and system) the process has used so far, all threads.
func cpuSeconds() -> Double {
    var u = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &u)
    return Double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + Double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6
}

/// Best (smallest) wall time of `reps` runs of `body`, in seconds.
func bestOf(_ reps: Int, _ body: () throws -> Void) rethrows -> Double {
    var best = Double.infinity
    for _ in 0..<max(1, reps) {
        let t0 = now()
        try body()
        best = min(best, now() - t0)
    }
    return best
}

struct UsageError: Error, CustomStringConvertible {
    var description: String
}

/// Minimal option reader for the development targets: `--name value` pairs and bare flags.
struct Options {
    var values: [String: String] = [:]
    var flags: Set<String> = []

    init(_ args: [String], flags known: Set<String> = []) throws {
        var i = 0
        while i < args.count {
            let a = args[i]
            guard a.hasPrefix("--") else { throw UsageError(description: "unexpected argument '\(a)'") }
            let key = String(a.dropFirst(2))
            if let eq = key.firstIndex(of: "=") {
                values[String(key[..<eq])] = String(key[key.index(after: eq)...])
            } else if known.contains(key) {
                flags.insert(key)
            } else {
                guard i + 1 < args.count else { throw UsageError(description: "option '\(a)' needs a value") }
                values[key] = args[i + 1]
                i += 1
            }
            i += 1
        }
    }

    func int(_ key: String, _ def: Int) throws -> Int {
        guard let v = values[key] else { return def }
        guard let n = Int(v) else { throw UsageError(description: "--\(key): '\(v)' is not an integer") }
        return n
    }
}

extension String {
    func padding(_ n: Int) -> String { count >= n ? self : self + String(repeating: " ", count: n - count) }
    func leftPadding(_ n: Int) -> String { count >= n ? self : String(repeating: " ", count: n - count) + self }
}

/// Prints rows as a left-aligned table (first row is the header).
func printTable(_ rows: [[String]]) {
    guard let first = rows.first else { return }
    var widths = [Int](repeating: 0, count: first.count)
    for r in rows { for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) } }
    for (k, r) in rows.enumerated() {
        let line = r.enumerated().map { i, c in i == 0 ? c.padding(widths[i]) : c.leftPadding(widths[i]) }.joined(separator: "  ")
        print(line)
        if k == 0 { print(widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")) }
    }
}

func fmt(_ x: Double, _ digits: Int = 2) -> String {
    guard x.isFinite else { return "-" }
    var p = 1.0
    for _ in 0..<digits { p *= 10 }
    let r = (x * p).rounded() / p
    var s = "\(r)"
    if let dot = s.firstIndex(of: ".") {
        let dec = s.distance(from: dot, to: s.endIndex) - 1
        if dec < digits { s += String(repeating: "0", count: digits - dec) }
    } else if digits > 0 {
        s += "." + String(repeating: "0", count: digits)
    }
    return s
}

/// Writes a line to standard error.
func printError(_ s: String, newline: Bool = true) {
    var t = newline ? s + "\n" : s
    t.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

/// Runs a command to completion and returns its standard output (standard error is discarded unless
/// `showErrors`); throws if it exits with a non-zero status. `environment` entries are added to ours.
@discardableResult
func capture(_ executable: String, _ arguments: [String], environment: [String: String] = [:],
             showErrors: Bool = false) throws -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = arguments
    if !environment.isEmpty { p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
    let pipe = Pipe()
    p.standardOutput = pipe
    if !showErrors { p.standardError = FileHandle.nullDevice }
    try p.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else {
        throw UsageError(description: "\(executable) \(arguments.joined(separator: " ")) exited with status \(p.terminationStatus)")
    }
    return String(decoding: data, as: UTF8.self)
}

/// Reads one byte of every page of `tensors`, so that they are in the page cache and mapped.
func touchPages(_ ck: Checkpoint, _ tensors: [CheckpointTensor]) {
    var sum: UInt64 = 0
    for t in tensors {
        let d = ck.data(t)
        var i = 0
        while i < d.count { sum &+= UInt64(d[i]); i += 4096 }
    }
    blackHole(sum)
}

/// "x% of 1-thread / y% of 2-thread" for a rate against two ceilings.
func fractions(_ rate: Double, _ one: Double, _ two: Double) -> String {
    fmt(100 * rate / one, 0) + "% / " + fmt(100 * rate / two, 0) + "%"
}
