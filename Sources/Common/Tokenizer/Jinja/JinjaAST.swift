/// An expression of a template, with the line it starts on.
struct Expr {
    indirect enum Kind {
        case literal(JinjaValue)
        case name(String)
        case list([Expr])
        case tuple([Expr])
        case dict([(Expr, Expr)])
        case attribute(Expr, String)
        case item(Expr, Expr)
        case slice(Expr, start: Expr?, stop: Expr?, step: Expr?)
        case call(Expr, args: [Expr], kwargs: [(String, Expr)])
        case filter(Expr, name: String, args: [Expr], kwargs: [(String, Expr)])
        case test(Expr, name: String, args: [Expr], negated: Bool)
        case not(Expr)
        case negate(Expr)
        case plus(Expr)
        case binary(BinaryOperator, Expr, Expr)
        case and(Expr, Expr)
        case or(Expr, Expr)
        case compare(Expr, [(CompareOperator, Expr)])
        case conditional(condition: Expr, then: Expr, otherwise: Expr?)
    }

    var kind: Kind
    var line: Int
}

enum BinaryOperator: String {
    case add = "+", subtract = "-", multiply = "*", divide = "/", floorDivide = "//", modulo = "%", power = "**"
    case concat = "~"
}

enum CompareOperator: String {
    case equal = "==", notEqual = "!=", less = "<", lessOrEqual = "<=", greater = ">", greaterOrEqual = ">="
    case isIn = "in", notIn = "not in"
}

/// The left side of `{% set %}` or the target of `{% for %}`.
indirect enum AssignTarget {
    case name(String)
    case tuple([AssignTarget])
    /// `ns.attr` (only namespaces accept it).
    case attribute(String, String)
}

/// A statement or a piece of output.
indirect enum Node {
    case text(String)
    case output(Expr)
    case conditional(branches: [(Expr, [Node])], otherwise: [Node]?)
    case forLoop(target: AssignTarget, iterable: Expr, filter: Expr?, body: [Node], otherwise: [Node]?, line: Int)
    case set(AssignTarget, Expr, line: Int)
    case setBlock(AssignTarget, filters: [(name: String, args: [Expr], kwargs: [(String, Expr)], line: Int)], body: [Node], line: Int)
    case macro(name: String, parameters: [String], defaults: [Expr?], body: [Node], line: Int)
    case filterBlock(filters: [(name: String, args: [Expr], kwargs: [(String, Expr)], line: Int)], body: [Node], line: Int)
    case with(assignments: [(AssignTarget, Expr)], body: [Node], line: Int)
    case breakLoop(line: Int)
    case continueLoop(line: Int)
}
