/// A value while a chat template runs: the Python objects Jinja2 templates see (str, int, float, bool,
/// None, list, tuple, dict), plus Jinja's `Undefined`, `namespace()` objects, the `loop` variable,
/// macros and callable builtins.
enum JinjaValue {
    /// A name or member that does not exist; `what` names it for error messages ("'x' is undefined").
    case undefined(what: String)
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case list([JinjaValue])
    case tuple([JinjaValue])
    case dict(JinjaDict)
    case namespace(JinjaNamespace)
    case loop(JinjaLoop)
    case function(JinjaFunction)
    case macro(JinjaMacro)


    /// Python truthiness.
    var isTruthy: Bool {
        switch self {
        case .undefined, .none: false
        case .bool(let b): b
        case .int(let i): i != 0
        case .double(let d): d != 0
        case .string(let s): !s.isEmpty
        case .list(let a), .tuple(let a): !a.isEmpty
        case .dict(let d): !d.isEmpty
        case .namespace, .loop, .function, .macro: true
        }
    }

    var isUndefined: Bool { if case .undefined = self { true } else { false } }
    var isNone: Bool { if case .none = self { true } else { false } }

    /// The Python type name, for error messages.
    var typeName: String {
        switch self {
        case .undefined: "Undefined"
        case .none: "NoneType"
        case .bool: "bool"
        case .int: "int"
        case .double: "float"
        case .string: "str"
        case .list: "list"
        case .tuple: "tuple"
        case .dict: "dict"
        case .namespace: "Namespace"
        case .loop: "LoopContext"
        case .function: "builtin_function_or_method"
        case .macro: "Macro"
        }
    }

    /// The numeric value of an int, float or bool (bool is an int subclass in Python).
    var number: Double? {
        switch self {
        case .int(let i): Double(i)
        case .double(let d): d
        case .bool(let b): b ? 1 : 0
        default: nil
        }
    }

    /// The integer value of an int or bool.
    var integer: Int? {
        switch self {
        case .int(let i): i
        case .bool(let b): b ? 1 : 0
        default: nil
        }
    }

    var stringValue: String? { if case .string(let s) = self { s } else { nil } }

    /// The elements when the value is a list or a tuple.
    var sequence: [JinjaValue]? {
        switch self {
        case .list(let a), .tuple(let a): a
        default: nil
        }
    }
}

/// An insertion-ordered Python dict. Keys compare with Python equality (`1 == 1.0 == True`).
struct JinjaDict {
    private(set) var keys: [JinjaValue] = []
    private(set) var values: [JinjaValue] = []

    init() {}

    init(_ pairs: [(JinjaValue, JinjaValue)]) {
        for (k, v) in pairs { self[k] = v }
    }

    var isEmpty: Bool { keys.isEmpty }
    var count: Int { keys.count }

    func index(of key: JinjaValue) -> Int? {
        if case .string(let s) = key {
            for i in keys.indices { if case .string(let k) = keys[i], k == s { return i } }
            return nil
        }
        return keys.firstIndex { JinjaValue.pythonEqual($0, key) }
    }

    subscript(key: JinjaValue) -> JinjaValue? {
        get { index(of: key).map { values[$0] } }
        set {
            if let i = index(of: key) {
                if let v = newValue { values[i] = v } else { keys.remove(at: i); values.remove(at: i) }
            } else if let v = newValue {
                keys.append(key)
                values.append(v)
            }
        }
    }

    subscript(name: String) -> JinjaValue? { self[.string(name)] }

    var pairs: Zip2Sequence<[JinjaValue], [JinjaValue]> { zip(keys, values) }
}

/// The mutable object `namespace(...)` returns; `{% set ns.attr = … %}` writes into it.
final class JinjaNamespace {
    var attributes: JinjaDict
    init(_ attributes: JinjaDict) { self.attributes = attributes }
}

/// The `loop` variable inside a `{% for %}` body.
final class JinjaLoop {
    let items: [JinjaValue]
    var index0 = 0
    let depth: Int
    init(items: [JinjaValue], depth: Int) {
        self.items = items
        self.depth = depth
    }
}

/// A builtin function, or a method bound to its receiver (`'abc'.upper`, `d.items`).
struct JinjaFunction {
    let name: String
    let call: (_ args: [JinjaValue], _ kwargs: [(String, JinjaValue)]) throws(JinjaFailure) -> JinjaValue
}

/// A `{% macro %}` with the scope it was defined in.
final class JinjaMacro {
    let name: String
    let parameters: [String]
    let defaults: [Expr?]
    let body: [Node]
    let scope: JinjaScope
    init(name: String, parameters: [String], defaults: [Expr?], body: [Node], scope: JinjaScope) {
        self.name = name
        self.parameters = parameters
        self.defaults = defaults
        self.body = body
        self.scope = scope
    }
}

// MARK: - Conversion from JSON

extension JinjaValue {
    /// The Python value `json.loads` gives for `json`.
    init(json: JSONValue) {
        switch json {
        case .null: self = .none
        case .bool(let b): self = .bool(b)
        case .int(let i): self = .int(i)
        case .double(let d): self = .double(d)
        case .string(let s): self = .string(s)
        case .array(let a): self = .list(a.map(JinjaValue.init(json:)))
        case .object(let o):
            var d = JinjaDict()
            for m in o.members { d[.string(m.key)] = JinjaValue(json: m.value) }
            self = .dict(d)
        }
    }
}

// MARK: - Python equality and ordering

extension JinjaValue {
    /// Python `a == b`.
    static func pythonEqual(_ a: JinjaValue, _ b: JinjaValue) -> Bool {
        switch (a, b) {
        case (.undefined, .undefined), (.none, .none): return true
        case (.string(let x), .string(let y)): return x == y
        case (.list(let x), .list(let y)), (.tuple(let x), .tuple(let y)):
            return x.count == y.count && zip(x, y).allSatisfy { pythonEqual($0, $1) }
        case (.dict(let x), .dict(let y)):
            guard x.count == y.count else { return false }
            for (k, v) in x.pairs {
                guard let w = y[k], pythonEqual(v, w) else { return false }
            }
            return true
        case (.namespace(let x), .namespace(let y)): return x === y
        case (.loop(let x), .loop(let y)): return x === y
        case (.macro(let x), .macro(let y)): return x === y
        default:
            if let i = a.integer, let j = b.integer { return i == j }
            if let x = a.number, let y = b.number { return x == y }
            return false
        }
    }

    /// Python `a < b` (and, with `orEqual`, `a <= b`), or nil when Python raises TypeError.
    static func pythonLess(_ a: JinjaValue, _ b: JinjaValue, orEqual: Bool) -> Bool? {
        switch (a, b) {
        case (.string(let x), .string(let y)):
            let c = compareScalars(x, y)
            return orEqual ? c <= 0 : c < 0
        case (.list(let x), .list(let y)), (.tuple(let x), .tuple(let y)):
            for (p, q) in zip(x, y) where !pythonEqual(p, q) {
                return pythonLess(p, q, orEqual: false)
            }
            return orEqual ? x.count <= y.count : x.count < y.count
        default:
            if let i = a.integer, let j = b.integer { return orEqual ? i <= j : i < j }
            if let x = a.number, let y = b.number { return orEqual ? x <= y : x < y }
            return nil
        }
    }

    /// Code-point order, as Python compares str.
    static func compareScalars(_ x: String, _ y: String) -> Int {
        var i = x.unicodeScalars.makeIterator()
        var j = y.unicodeScalars.makeIterator()
        while true {
            switch (i.next(), j.next()) {
            case (nil, nil): return 0
            case (nil, _): return -1
            case (_, nil): return 1
            case (let p?, let q?): if p != q { return p.value < q.value ? -1 : 1 }
            }
        }
    }
}
