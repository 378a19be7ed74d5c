/// The parsed form of a template: statements (text, output, control flow) holding
/// expressions. Both carry their source location for error messages.

/// A constant written in the template.
enum Literal: Equatable, Sendable {
    case none
    case bool(Bool)
    case integer(Int)
    case float(Double)
    case string(String)
}

indirect enum ExpressionKind: Sendable {
    case literal(Literal)
    case name(String)
    case list([Expression])
    case tuple([Expression])
    case dict([(key: Expression, value: Expression)])
    /// `a.b` (Jinja looks up an attribute first, then an item).
    case attribute(Expression, String)
    /// `a[b]` (an item first, then an attribute).
    case item(Expression, Expression)
    /// `a[start:stop:step]`, each part optional.
    case slice(Expression, Expression?, Expression?, Expression?)
    case call(Expression, Arguments)
    case filter(Expression, name: String, Arguments)
    /// `a is [not] name(args)`.
    case test(Expression, name: String, Arguments, negated: Bool)
    case unary(String, Expression)            // "-", "+", "not"
    case binary(String, Expression, Expression)   // arithmetic, "~", comparisons, "in", "not in"
    case and(Expression, Expression)
    case or(Expression, Expression)
    /// `then if condition else otherwise` (a missing else yields undefined).
    case conditional(then: Expression, condition: Expression, otherwise: Expression?)
}

struct Expression: Sendable {
    var kind: ExpressionKind
    var location: SourceLocation
}

/// Call or filter arguments: positional, then keyword.
struct Arguments: Sendable {
    var positional: [Expression] = []
    var keyword: [(name: String, value: Expression)] = []
}

/// What `set` and `for` assign to.
enum AssignmentTarget: Sendable {
    case name(String)
    case names([String])               // tuple unpacking: `for k, v in …`
    case attribute(String, String)     // `ns.attr = …` on a namespace
}

struct MacroDefinition: Sendable {
    var name: String
    var parameters: [(name: String, defaultValue: Expression?)]
    var body: [Statement]
}

indirect enum StatementKind: Sendable {
    case text(String)
    case output(Expression)
    case ifChain([(condition: Expression, body: [Statement])], otherwise: [Statement])
    case forLoop(target: AssignmentTarget, iterable: Expression, filter: Expression?, body: [Statement], otherwise: [Statement])
    case set(AssignmentTarget, Expression)
    /// `{% set name %}…{% endset %}`: the rendered body as a string.
    case setBlock(String, [Statement])
    case macro(MacroDefinition)
    case breakLoop
    case continueLoop
    /// transformers' `{% generation %}` marks assistant text; rendering it is just the body.
    case generation([Statement])
}

struct Statement: Sendable {
    var kind: StatementKind
    var location: SourceLocation
}
