#if canImport(Glibc)
import Glibc
#endif

/// Exit statuses from sysexits(3) that the tools use.
public enum ExitStatus: Int32, Sendable {
    case success = 0
    case failure = 1
    /// EX_USAGE: the command line is wrong.
    case usage = 64
    /// EX_DATAERR: an input file is malformed.
    case dataError = 65
    /// EX_NOINPUT: an input file does not exist or cannot be read.
    case noInput = 66
    /// EX_SOFTWARE: an internal inconsistency.
    case software = 70
    /// EX_CANTCREAT: an output file cannot be created.
    case cantCreate = 73
    /// EX_IOERR: reading or writing failed part-way.
    case ioError = 74
    /// EX_UNAVAILABLE: a needed service or library is missing, or a feature is not available.
    case unavailable = 69
}

/// An error a tool reports as one line, `tool: path: message`, and an exit status.
public protocol QKitError: Error, CustomStringConvertible {
    /// The sysexits status the tool exits with.
    var exitStatus: ExitStatus { get }
    /// The file the error concerns, when there is one.
    var path: String? { get }
}

extension QKitError {
    public var path: String? { nil }
}

/// Errors of the operating system's file interface.
public enum IOError: QKitError, Equatable {
    case cannotOpen(path: String, errno: Int32)
    case notAFile(path: String)
    case readFailed(path: String, errno: Int32)
    case cannotCreate(path: String, errno: Int32)
    case writeFailed(path: String, errno: Int32)
    case mapFailed(path: String, errno: Int32)

    public var exitStatus: ExitStatus {
        switch self {
        case .cannotOpen(_, let e): e == ENOENT || e == ENOTDIR || e == EACCES ? .noInput : .ioError
        case .notAFile: .noInput
        case .readFailed, .writeFailed, .mapFailed: .ioError
        case .cannotCreate: .cantCreate
        }
    }

    public var path: String? {
        switch self {
        case .cannotOpen(let p, _), .notAFile(let p), .readFailed(let p, _), .cannotCreate(let p, _),
            .writeFailed(let p, _), .mapFailed(let p, _):
            p
        }
    }

    public var description: String {
        switch self {
        case .cannotOpen(_, let e): "cannot open: \(errnoText(e))"
        case .notAFile: "not a regular file or directory"
        case .readFailed(_, let e): "read failed: \(errnoText(e))"
        case .cannotCreate(_, let e): "cannot create: \(errnoText(e))"
        case .writeFailed(_, let e): "write failed: \(errnoText(e))"
        case .mapFailed(_, let e): "mmap failed: \(errnoText(e))"
        }
    }
}

/// The C library's message for an errno value, lower-cased like the rest of qkit's messages.
public func errnoText(_ e: Int32) -> String {
    guard let p = strerror(e) else { return "errno \(e)" }
    let s = String(cString: p)
    return s.prefix(1).lowercased() + s.dropFirst()
}
