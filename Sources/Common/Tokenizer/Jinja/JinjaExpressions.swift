/// Expression evaluation: names, literals, operators with Python semantics, attribute and item
/// access as Jinja2's sandbox does it, calls, filters and tests.
extension JinjaRenderer {
    func eval(_ e: Expr, _ scope: JinjaScope) throws(JinjaFailure) -> JinjaValue {
        do throws(JinjaFailure) {
            let v = try evalKind(e, scope)
            switch v {
            case .string(let s) where s.utf8.count > Self.maxOutput:
                throw JinjaFailure.limit("a string grew beyond \(Self.maxOutput) bytes")
            case .list(let a) where a.count > Self.maxListLength:
                throw JinjaFailure.limit("a list grew beyond \(Self.maxListLength) elements")
            default:
                return v
            }
        } catch {
            throw error.at(e.line)
        }
    }

    private func evalKind(_ e: Expr, _ scope: JinjaScope) throws(JinjaFailure) -> JinjaValue {
        switch e.kind {
        case .literal(let v):
            return v
        case .name(let n):
            return scope.lookup(n) ?? .undefined(what: "'\(n)' is undefined")
        case .list(let items):
            var out: [JinjaValue] = []
            out.reserveCapacity(items.count)
            for x in items { out.append(try eval(x, scope)) }
            return .list(out)
        case .tuple(let items):
            var out: [JinjaValue] = []
            for x in items { out.append(try eval(x, scope)) }
            return .tuple(out)
        case .dict(let pairs):
            var d = JinjaDict()
            for (k, v) in pairs {
                let key = try eval(k, scope)
                switch key {
                case .list, .dict, .namespace, .loop, .undefined: throw .render("unhashable type: '\(key.typeName)'")
                default: break
                }
                d[key] = try eval(v, scope)
            }
            return .dict(d)
        case .attribute(let base, let name):
            return try attribute(try eval(base, scope), name)
        case .item(let base, let index):
            return try item(try eval(base, scope), try eval(index, scope))
        case .slice(let base, let start, let stop, let step):
            let b = try eval(base, scope)
            return try slice(b, try start.map { e throws(JinjaFailure) in try eval(e, scope) },
                             try stop.map { e throws(JinjaFailure) in try eval(e, scope) },
                             try step.map { e throws(JinjaFailure) in try eval(e, scope) })
        case .call(let callee, let args, let kwargs):
            let f = try eval(callee, scope)
            var a: [JinjaValue] = []
            for x in args { a.append(try eval(x, scope)) }
            var kw: [(String, JinjaValue)] = []
            for (k, x) in kwargs { kw.append((k, try eval(x, scope))) }
            return try call(f, a, kw)
        case .filter(let base, let name, let args, let kwargs):
            return try applyFilter(name, try eval(base, scope), args, kwargs, scope, line: e.line)
        case .test(let base, let name, let args, let negated):
            let v = try eval(base, scope)
            var a: [JinjaValue] = []
            for x in args { a.append(try eval(x, scope)) }
            return .bool(try test(name, v, a) != negated)
        case .not(let x):
            return .bool(!(try eval(x, scope).isTruthy))
        case .negate(let x):
            let v = try eval(x, scope)
            switch v {
            case .int(let i):
                guard i != .min else { throw .render("integer overflow") }
                return .int(-i)
            case .bool(let b): return .int(b ? -1 : 0)
            case .double(let d): return .double(-d)
            case .undefined(let w): throw .render(w)
            default: throw .render("bad operand type for unary -: '\(v.typeName)'")
            }
        case .plus(let x):
            let v = try eval(x, scope)
            switch v {
            case .int, .double: return v
            case .bool(let b): return .int(b ? 1 : 0)
            case .undefined(let w): throw .render(w)
            default: throw .render("bad operand type for unary +: '\(v.typeName)'")
            }
        case .binary(let op, let l, let r):
            return try binary(op, try eval(l, scope), try eval(r, scope))
        case .and(let l, let r):
            let a = try eval(l, scope)
            return a.isTruthy ? try eval(r, scope) : a
        case .or(let l, let r):
            let a = try eval(l, scope)
            return a.isTruthy ? a : try eval(r, scope)
        case .compare(let first, let ops):
            var left = try eval(first, scope)
            for (op, rhs) in ops {
                let right = try eval(rhs, scope)
                guard try compare(op, left, right) else { return .bool(false) }
                left = right
            }
            return .bool(true)
        case .conditional(let cond, let then, let otherwise):
            if try eval(cond, scope).isTruthy { return try eval(then, scope) }
            if let otherwise { return try eval(otherwise, scope) }
            return .undefined(what: "the inline if-expression on line \(e.line) evaluated to false and no else section was defined")
        }
    }

    // MARK: Operators

    func compare(_ op: CompareOperator, _ a: JinjaValue, _ b: JinjaValue) throws(JinjaFailure) -> Bool {
        switch op {
        case .equal: return JinjaValue.pythonEqual(a, b)
        case .notEqual: return !JinjaValue.pythonEqual(a, b)
        case .isIn: return try contains(b, a)
        case .notIn: return !(try contains(b, a))
        case .less, .lessOrEqual, .greater, .greaterOrEqual:
            if case .undefined(let w) = a { throw .render(w) }
            if case .undefined(let w) = b { throw .render(w) }
            let r: Bool?
            switch op {
            case .less: r = JinjaValue.pythonLess(a, b, orEqual: false)
            case .lessOrEqual: r = JinjaValue.pythonLess(a, b, orEqual: true)
            case .greater: r = JinjaValue.pythonLess(b, a, orEqual: false)
            default: r = JinjaValue.pythonLess(b, a, orEqual: true)
            }
            guard let r else {
                throw .render("'\(op.rawValue)' not supported between instances of '\(a.typeName)' and '\(b.typeName)'")
            }
            return r
        }
    }

    /// Python `needle in haystack`.
    func contains(_ haystack: JinjaValue, _ needle: JinjaValue) throws(JinjaFailure) -> Bool {
        switch haystack {
        case .string(let s):
            guard case .string(let n) = needle else {
                if case .undefined(let w) = needle { throw .render(w) }
                throw .render("'in <string>' requires string as left operand, not \(needle.typeName)")
            }
            return n.isEmpty || s.contains(n)
        case .list(let a), .tuple(let a): return a.contains { JinjaValue.pythonEqual($0, needle) }
        case .dict(let d): return d.index(of: needle) != nil
        case .namespace(let n): return n.attributes.index(of: needle) != nil
        case .undefined: return false
        default: throw .render("argument of type '\(haystack.typeName)' is not iterable")
        }
    }

    func binary(_ op: BinaryOperator, _ a: JinjaValue, _ b: JinjaValue) throws(JinjaFailure) -> JinjaValue {
        if op == .concat {
            let x = a.pythonString, y = b.pythonString
            guard x.utf8.count + y.utf8.count <= Self.maxOutput else { throw .limit("a string grew beyond \(Self.maxOutput) bytes") }
            return .string(x + y)
        }
        if case .undefined(let w) = a { throw .render(w) }
        if case .undefined(let w) = b { throw .render(w) }
        func unsupported() -> JinjaFailure {
            .render("unsupported operand type(s) for \(op.rawValue): '\(a.typeName)' and '\(b.typeName)'")
        }
        switch op {
        case .add:
            switch (a, b) {
            case (.string(let x), .string(let y)):
                guard x.utf8.count + y.utf8.count <= Self.maxOutput else { throw .limit("a string grew beyond \(Self.maxOutput) bytes") }
                return .string(x + y)
            case (.list(let x), .list(let y)):
                guard x.count + y.count <= Self.maxListLength else { throw .limit("a list grew beyond \(Self.maxListLength) elements") }
                return .list(x + y)
            case (.tuple(let x), .tuple(let y)):
                guard x.count + y.count <= Self.maxListLength else { throw .limit("a list grew beyond \(Self.maxListLength) elements") }
                return .tuple(x + y)
            default: break
            }
        case .multiply:
            switch (a, b) {
            case (.string(let s), _) where b.integer != nil: return try repeatString(s, b.integer!)
            case (_, .string(let s)) where a.integer != nil: return try repeatString(s, a.integer!)
            case (.list(let x), _) where b.integer != nil: return .list(try repeatList(x, b.integer!))
            case (_, .list(let x)) where a.integer != nil: return .list(try repeatList(x, a.integer!))
            default: break
            }
        default: break
        }
        if let x = a.integer, let y = b.integer {
            switch op {
            case .add: return try checked(x.addingReportingOverflow(y))
            case .subtract: return try checked(x.subtractingReportingOverflow(y))
            case .multiply: return try checked(x.multipliedReportingOverflow(by: y))
            case .divide:
                guard y != 0 else { throw .render("division by zero") }
                return .double(Double(x) / Double(y))
            case .floorDivide:
                guard y != 0 else { throw .render("integer division or modulo by zero") }
                guard !(x == .min && y == -1) else { throw .render("integer overflow") }
                let q = x / y
                return .int((x % y != 0) && ((x < 0) != (y < 0)) ? q - 1 : q)
            case .modulo:
                guard y != 0 else { throw .render("integer division or modulo by zero") }
                guard y != -1 else { return .int(0) }
                let r = x % y
                return .int(r != 0 && ((r < 0) != (y < 0)) ? r + y : r)
            case .power:
                if y < 0 { return .double(jinjaPow(Double(x), Double(y))) }
                var result = 1, base = x, e = y
                while e > 0 {
                    if e & 1 == 1 { result = try checkedInt(result.multipliedReportingOverflow(by: base)) }
                    e >>= 1
                    if e > 0 { base = try checkedInt(base.multipliedReportingOverflow(by: base)) }
                }
                return .int(result)
            case .concat: break
            }
        }
        if let x = a.number, let y = b.number {
            switch op {
            case .add: return .double(x + y)
            case .subtract: return .double(x - y)
            case .multiply: return .double(x * y)
            case .divide:
                guard y != 0 else { throw .render("float division by zero") }
                return .double(x / y)
            case .floorDivide:
                guard y != 0 else { throw .render("float floor division by zero") }
                return .double((x / y).rounded(.down))
            case .modulo:
                guard y != 0 else { throw .render("float modulo") }
                var r = x.truncatingRemainder(dividingBy: y)
                if r != 0 && ((r < 0) != (y < 0)) { r += y }
                return .double(r)
            case .power:
                return .double(jinjaPow(x, y))
            case .concat: break
            }
        }
        if op == .modulo, case .string(let fmt) = a { return .string(try percentFormat(fmt, b)) }
        throw unsupported()
    }

    private func checked(_ r: (partialValue: Int, overflow: Bool)) throws(JinjaFailure) -> JinjaValue {
        .int(try checkedInt(r))
    }

    private func checkedInt(_ r: (partialValue: Int, overflow: Bool)) throws(JinjaFailure) -> Int {
        guard !r.overflow else { throw .render("integer overflow (qkit's integers are 64-bit)") }
        return r.partialValue
    }

    private func repeatString(_ s: String, _ n: Int) throws(JinjaFailure) -> JinjaValue {
        guard n > 0 else { return .string("") }
        guard s.utf8.count.multipliedReportingOverflow(by: n).partialValue <= Self.maxOutput, s.utf8.count <= Self.maxOutput / n || s.isEmpty else {
            throw .limit("a string grew beyond \(Self.maxOutput) bytes")
        }
        return .string(String(repeating: s, count: n))
    }

    private func repeatList(_ x: [JinjaValue], _ n: Int) throws(JinjaFailure) -> [JinjaValue] {
        guard n > 0, !x.isEmpty else { return [] }
        guard x.count <= Self.maxListLength / n else { throw .limit("a list grew beyond \(Self.maxListLength) elements") }
        var out: [JinjaValue] = []
        for _ in 0..<n { out.append(contentsOf: x) }
        return out
    }

    /// Python's `fmt % args` for the conversions chat templates use: `%s`, `%r`, `%d`/`%i`, `%f`, `%%`.
    func percentFormat(_ fmt: String, _ args: JinjaValue) throws(JinjaFailure) -> String {
        var values: [JinjaValue]
        if case .tuple(let t) = args { values = t } else { values = [args] }
        var out = ""
        var it = fmt.unicodeScalars.makeIterator()
        while let c = it.next() {
            guard c == "%" else { out.unicodeScalars.append(c); continue }
            guard let k = it.next() else { throw .render("incomplete format") }
            if k == "%" { out += "%"; continue }
            guard !values.isEmpty else { throw .render("not enough arguments for format string") }
            let v = values.removeFirst()
            switch k {
            case "s": out += v.pythonString
            case "r": out += v.pythonRepr
            case "d", "i":
                guard let n = v.number else { throw .render("%\(k) format: a real number is required, not \(v.typeName)") }
                out += String(Int(n.rounded(.towardZero)))
            case "f":
                guard let n = v.number else { throw .render("must be real number, not \(v.typeName)") }
                out += jinjaFormatFixed(n, digits: 6)
            default: throw .render("unsupported format character '\(k)'")
            }
        }
        guard values.isEmpty else { throw .render("not all arguments converted during string formatting") }
        return out
    }

    // MARK: Slices

    func slice(_ base: JinjaValue, _ start: JinjaValue?, _ stop: JinjaValue?, _ step: JinjaValue?) throws(JinjaFailure) -> JinjaValue {
        func bound(_ v: JinjaValue?) throws(JinjaFailure) -> Int? {
            guard let v, !v.isNone else { return nil }
            guard let i = v.integer else { throw .render("slice indices must be integers or None") }
            return i
        }
        let st = try bound(step) ?? 1
        guard st != 0 else { throw .render("slice step cannot be zero") }
        func indices(_ n: Int) throws(JinjaFailure) -> [Int] {
            let lo = try bound(start), hi = try bound(stop)
            if st > 0 {
                var a = lo ?? 0, b = hi ?? n
                if a < 0 { a = max(0, a + n) } else { a = min(a, n) }
                if b < 0 { b = max(0, b + n) } else { b = min(b, n) }
                return a < b ? Array(stride(from: a, to: b, by: st)) : []
            } else {
                var a = lo ?? (n - 1), b = hi ?? -1 - n
                if a < 0 { a = max(-1, a + n) } else { a = min(a, n - 1) }
                if hi == nil { b = -1 } else if b < 0 { b = max(-1, b + n) } else { b = min(b, n - 1) }
                return a > b ? Array(stride(from: a, to: b, by: st)) : []
            }
        }
        switch base {
        case .list(let a): return .list(try indices(a.count).map { a[$0] })
        case .tuple(let a): return .tuple(try indices(a.count).map { a[$0] })
        case .string(let s):
            let scalars = Array(s.unicodeScalars)
            var out = String.UnicodeScalarView()
            for i in try indices(scalars.count) { out.append(scalars[i]) }
            return .string(String(out))
        case .undefined(let w): throw .render(w)
        default: return .undefined(what: "'\(base.typeName)' object is not subscriptable")
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// `pow` from the C library.
func jinjaPow(_ x: Double, _ y: Double) -> Double { pow(x, y) }

/// `%.Nf` formatting.
func jinjaFormatFixed(_ x: Double, digits: Int) -> String {
    var buf = [CChar](repeating: 0, count: 512)
    let n = withVaList([x]) { vsnprintf(&buf, buf.count, "%.\(digits)f", $0) }
    guard n >= 0, n < buf.count else { return String(x) }
    return String(decoding: buf[0..<Int(n)].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
