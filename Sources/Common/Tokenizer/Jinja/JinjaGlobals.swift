#if canImport(Glibc)
import Glibc
#endif

/// The global functions of transformers' chat-template environment: Jinja2's `range`, `dict`,
/// `namespace` (`range` capped at 100,000 items as the sandbox caps it), and transformers'
/// `raise_exception(message)` and `strftime_now(format)`.
enum JinjaGlobals {
    /// The sandbox's `MAX_RANGE`.
    static let maxRange = 100_000

    /// The globals, built once (the functions capture nothing and are never modified).
    nonisolated(unsafe) static let all: [String: JinjaValue] = [
            "range": .function(JinjaFunction(name: "range", call: range)),
            "dict": .function(JinjaFunction(name: "dict") { args, kwargs throws(JinjaFailure) in
                var d = JinjaDict()
                if let first = args.first {
                    guard case .dict(let base) = first, args.count == 1 else { throw .render("dict() takes one mapping") }
                    d = base
                }
                for (k, v) in kwargs { d[.string(k)] = v }
                return .dict(d)
            }),
            "namespace": .function(JinjaFunction(name: "namespace") { args, kwargs throws(JinjaFailure) in
                var d = JinjaDict()
                for a in args {
                    guard case .dict(let base) = a else { throw .render("namespace() takes mappings and keyword arguments") }
                    for (k, v) in base.pairs { d[k] = v }
                }
                for (k, v) in kwargs { d[.string(k)] = v }
                return .namespace(JinjaNamespace(d))
            }),
            "raise_exception": .function(JinjaFunction(name: "raise_exception") { args, _ throws(JinjaFailure) in
                throw JinjaFailure(kind: .raised, message: args.first?.pythonString ?? "", line: nil)
            }),
            "strftime_now": .function(JinjaFunction(name: "strftime_now") { args, kwargs throws(JinjaFailure) in
                let fmt = try Arguments(args, kwargs, ["format"], function: "strftime_now").string(0)
                return .string(strftimeNow(fmt))
            }),
    ]

    private static func range(_ args: [JinjaValue], _ kwargs: [(String, JinjaValue)]) throws(JinjaFailure) -> JinjaValue {
        guard kwargs.isEmpty else { throw .render("range() takes no keyword arguments") }
        var ints: [Int] = []
        for a in args {
            guard let i = a.integer else { throw .render("'\(a.typeName)' object cannot be interpreted as an integer") }
            ints.append(i)
        }
        let (start, stop, step): (Int, Int, Int)
        switch ints.count {
        case 1: (start, stop, step) = (0, ints[0], 1)
        case 2: (start, stop, step) = (ints[0], ints[1], 1)
        case 3: (start, stop, step) = (ints[0], ints[1], ints[2])
        default: throw .render("range expected 1 to 3 arguments, got \(ints.count)")
        }
        guard step != 0 else { throw .render("range() arg 3 must not be zero") }
        let count: Int
        if step > 0 { count = stop > start ? (stop - start - 1) / step + 1 : 0 } else { count = start > stop ? (start - stop - 1) / -step + 1 : 0 }
        guard count <= maxRange else {
            throw .limit("Range too big. The sandbox blocks ranges larger than MAX_RANGE (\(maxRange)).")
        }
        return .list((0..<count).map { .int(start + $0 * step) })
    }

    /// Python's `datetime.now().strftime(format)` (local time, through the C library).
    static func strftimeNow(_ format: String) -> String {
        var t = time(nil)
        var parts = tm()
        localtime_r(&t, &parts)
        var buf = [CChar](repeating: 0, count: 1024)
        let n = strftime(&buf, buf.count, format, &parts)
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// A parsed Jinja2 template.
struct JinjaTemplate {
    let nodes: [Node]

    init(source: String) throws(JinjaFailure) {
        nodes = try JinjaParser.parse(source)
    }

    /// Renders with `variables` on top of the globals.
    func render(_ variables: [String: JinjaValue]) throws(JinjaFailure) -> String {
        let globals = JinjaScope(JinjaGlobals.all, parent: nil)
        let scope = JinjaScope(variables, parent: globals)
        let renderer = JinjaRenderer()
        var out = ""
        _ = try renderer.render(nodes, scope, into: &out)
        return out
    }
}
