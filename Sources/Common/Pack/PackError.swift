/// Why a checkpoint cannot be packed into a backend layout, or a packed checkpoint cannot be read.
public enum PackError: QKitError, Equatable {
    /// The backend cannot express what the source holds (asymmetric where only symmetric exists, a group
    /// size or bit width it lacks, a float format in an integer layout…). EX_DATAERR.
    case unsupported(path: String, backend: String, what: String)
    /// A packed checkpoint is malformed: a tensor is missing, has the wrong shape or dtype, or the config
    /// is unusable. EX_DATAERR.
    case malformed(path: String, what: String)
    /// The command line asks for something impossible (an unknown option value for the backend). EX_USAGE.
    case usage(String)
    /// `--verify` found a difference. EX_DATAERR.
    case verifyFailed(path: String, what: String)

    public var exitStatus: ExitStatus {
        switch self {
        case .unsupported, .malformed, .verifyFailed: .dataError
        case .usage: .usage
        }
    }

    public var path: String? {
        switch self {
        case .unsupported(let p, _, _), .malformed(let p, _), .verifyFailed(let p, _): p
        case .usage: nil
        }
    }

    public var description: String {
        switch self {
        case .unsupported(_, let b, let w): "\(b) cannot express \(w)"
        case .malformed(_, let w): w
        case .usage(let m): m
        case .verifyFailed(_, let w): "verify failed: \(w)"
        }
    }
}
