import Foundation

/// Runs parsed statements against a context and collects the output.
///
/// Scoping follows Jinja: each loop iteration and each macro call gets its own scope, so a
/// `set` inside them is gone afterwards (templates carry state out of loops with a
/// `namespace`); `if` opens no scope.
final class Evaluator {
    private var scopes: [[String: Value]]
    private var output = ""
    /// Macro calls in progress; bounded so a macro that calls itself cannot exhaust the stack.
    private var callDepth = 0
    static let maximumCallDepth = 20
    /// The longest text a template may build (output, or one string or list by `*`).
    static let maximumLength = 16 << 20

    /// How a statement list ended: normally, or by `{% break %}` / `{% continue %}`.
    enum Flow {
        case normal, breakLoop, continueLoop
    }

    init(context: [String: Value]) {
        scopes = [Evaluator.globals.merging(context) { $1 }]
    }

    func render(_ statements: [Statement]) throws(TemplateError) -> String {
        _ = try execute(statements)
        return output
    }

    // MARK: - Variables

    func lookup(_ name: String) -> Value {
        for scope in scopes.reversed() {
            if let value = scope[name] { return value }
        }
        return .undefined(name: "'\(name)' is undefined")
    }

    private func assign(_ name: String, _ value: Value) {
        scopes[scopes.count - 1][name] = value
    }

    private func assign(_ target: AssignmentTarget, _ value: Value, at location: SourceLocation) throws(TemplateError) {
        switch target {
        case let .name(name):
            assign(name, value)
        case let .names(names):
            let items = try iterate(value, at: location)
            guard items.count == names.count else {
                let problem = items.count > names.count ? "too many values to unpack (expected \(names.count))"
                    : "not enough values to unpack (expected \(names.count), got \(items.count))"
                throw TemplateError(.type, problem, at: location)
            }
            for (name, item) in zip(names, items) { assign(name, item) }
        case let .attribute(name, attribute):
            guard case let .namespace(namespace) = lookup(name) else {
                throw TemplateError(.type, "cannot assign attribute on non-namespace object", at: location)
            }
            namespace.attributes[attribute] = value
        }
    }

    // MARK: - Statements

    private func execute(_ statements: [Statement]) throws(TemplateError) -> Flow {
        for statement in statements {
            let flow = try execute(statement)
            if flow != .normal { return flow }
        }
        return .normal
    }

    private func execute(_ statement: Statement) throws(TemplateError) -> Flow {
        switch statement.kind {
        case let .text(text):
            output += text
        case let .output(expression):
            output += try evaluate(expression).text
            guard output.utf8.count <= Evaluator.maximumLength else {
                throw TemplateError(.unsupported, "output longer than \(Evaluator.maximumLength) bytes", at: statement.location)
            }
        case let .ifChain(branches, otherwise):
            for branch in branches where try evaluate(branch.condition).isTruthy {
                return try execute(branch.body)
            }
            return try execute(otherwise)
        case let .forLoop(target, iterable, filter, body, otherwise):
            try runLoop(target: target, iterable: iterable, filter: filter, body: body, otherwise: otherwise, at: statement.location)
        case let .set(target, expression):
            try assign(target, try evaluate(expression), at: statement.location)
        case let .setBlock(name, body):
            let saved = output
            output = ""
            _ = try execute(body)
            let captured = output
            output = saved
            assign(name, .string(captured))
        case let .macro(definition):
            assign(definition.name, .callable(macro(definition)))
        case .breakLoop:
            return .breakLoop
        case .continueLoop:
            return .continueLoop
        case let .generation(body):
            return try execute(body)
        }
        return .normal
    }

    private func runLoop(target: AssignmentTarget, iterable: Expression, filter: Expression?, body: [Statement],
                         otherwise: [Statement], at location: SourceLocation) throws(TemplateError) {
        var items = try iterate(try evaluate(iterable), at: iterable.location)
        if let filter {
            var kept = [Value]()
            for item in items {
                scopes.append([:])
                defer { scopes.removeLast() }
                try assign(target, item, at: location)
                if try evaluate(filter).isTruthy { kept.append(item) }
            }
            items = kept
        }
        guard !items.isEmpty else {
            _ = try execute(otherwise)
            return
        }
        for (index, item) in items.enumerated() {
            scopes.append(["loop": Evaluator.loopObject(index: index, items: items)])
            defer { scopes.removeLast() }
            try assign(target, item, at: location)
            if try execute(body) == .breakLoop { break }
        }
    }

    private static func loopObject(index: Int, items: [Value]) -> Value {
        let count = items.count
        var loop = OrderedObject()
        loop["index0"] = .integer(index)
        loop["index"] = .integer(index + 1)
        loop["revindex0"] = .integer(count - index - 1)
        loop["revindex"] = .integer(count - index)
        loop["first"] = .bool(index == 0)
        loop["last"] = .bool(index == count - 1)
        loop["length"] = .integer(count)
        loop["depth"] = .integer(1)
        loop["depth0"] = .integer(0)
        loop["previtem"] = index > 0 ? items[index - 1] : .undefined(name: "there is no previous item")
        loop["nextitem"] = index + 1 < count ? items[index + 1] : .undefined(name: "there is no next item")
        loop["cycle"] = .callable(Callable(name: "cycle") { positional, _ throws(TemplateError) in
            guard !positional.isEmpty else { throw TemplateError(.type, "no items for cycling given") }
            return positional[index % positional.count]
        })
        return .object(loop)
    }

    /// A macro as a callable: arguments bind to parameters by position, then by name;
    /// defaults are evaluated at call time; the result is the rendered body.
    private func macro(_ definition: MacroDefinition) -> Callable {
        Callable(name: definition.name) { [unowned self] positional, keyword throws(TemplateError) in
            guard positional.count <= definition.parameters.count else {
                throw TemplateError(.type, "macro '\(definition.name)' takes not more than \(definition.parameters.count) argument(s)")
            }
            guard callDepth < Evaluator.maximumCallDepth else {
                throw TemplateError(.unsupported, "macro calls nested more than \(Evaluator.maximumCallDepth) deep")
            }
            let savedScopes = scopes
            let savedOutput = output
            callDepth += 1
            defer { scopes = savedScopes; output = savedOutput; callDepth -= 1 }
            scopes = [savedScopes[0], [:]]
            output = ""
            for (index, parameter) in definition.parameters.enumerated() {
                if index < positional.count {
                    assign(parameter.name, positional[index])
                } else if let given = keyword.first(where: { $0.name == parameter.name }) {
                    assign(parameter.name, given.value)
                } else if let defaultValue = parameter.defaultValue {
                    assign(parameter.name, try evaluate(defaultValue))
                } else {
                    assign(parameter.name, .undefined(name: "'\(parameter.name)' is undefined"))
                }
            }
            if let unknown = keyword.first(where: { name in !definition.parameters.contains { $0.name == name.name } }) {
                throw TemplateError(.type, "macro '\(definition.name)' takes no keyword argument '\(unknown.name)'")
            }
            _ = try execute(definition.body)
            return .string(output)
        }
    }

    /// What a `for` loop (or tuple unpacking) walks over.
    func iterate(_ value: Value, at location: SourceLocation) throws(TemplateError) -> [Value] {
        switch value {
        case let .array(items): return items
        case let .object(object): return object.keys.map { .string($0) }
        case let .string(text): return text.unicodeScalars.map { .string(String($0)) }
        case .undefined: return []
        case let .namespace(namespace): return namespace.attributes.keys.map { .string($0) }
        default: throw TemplateError(.type, "'\(value.typeName)' object is not iterable", at: location)
        }
    }

    // MARK: - Expressions

    func evaluate(_ expression: Expression) throws(TemplateError) -> Value {
        let at = expression.location
        switch expression.kind {
        case let .literal(literal):
            return Value(literal)
        case let .name(name):
            return lookup(name)
        case let .list(items):
            var values = [Value]()
            for item in items { values.append(try evaluate(item)) }
            return .array(values)
        case let .tuple(items):
            // Tuples behave as lists here (both print and iterate alike in chat templates).
            var values = [Value]()
            for item in items { values.append(try evaluate(item)) }
            return .array(values)
        case let .dict(pairs):
            var object = OrderedObject()
            for pair in pairs {
                let key = try evaluate(pair.key)
                guard case let .string(name) = key else {
                    throw TemplateError(.unsupported, "dictionary keys other than strings (got \(key.typeName))", at: pair.key.location)
                }
                object[name] = try evaluate(pair.value)
            }
            return .object(object)
        case let .attribute(base, name):
            return try attribute(name, of: try evaluate(base), at: at)
        case let .item(base, index):
            return try item(try evaluate(index), of: try evaluate(base), at: at)
        case let .slice(base, start, stop, step):
            return try slice(try evaluate(base), start: try start.map { e throws(TemplateError) in try evaluate(e) },
                             stop: try stop.map { e throws(TemplateError) in try evaluate(e) },
                             step: try step.map { e throws(TemplateError) in try evaluate(e) }, at: at)
        case let .call(callee, arguments):
            let function = try evaluate(callee)
            let (positional, keyword) = try evaluate(arguments)
            return try call(function, positional, keyword, at: at)
        case let .filter(base, name, arguments):
            let (positional, keyword) = try evaluate(arguments)
            return try applyFilter(name, to: try evaluate(base), positional, keyword, at: at)
        case let .test(base, name, arguments, negated):
            let (positional, _) = try evaluate(arguments)
            let result = try applyTest(name, to: try evaluate(base), positional, at: at)
            return .bool(result != negated)
        case let .unary(op, operand):
            let value = try evaluate(operand)
            switch op {
            case "not": return .bool(!value.isTruthy)
            case "-":
                switch value {
                case let .integer(number): return .integer(-number)
                case let .float(number): return .float(-number)
                case let .bool(flag): return .integer(flag ? -1 : 0)
                default: throw operandError("-", value, at: at)
                }
            default:
                guard value.number != nil else { throw operandError("+", value, at: at) }
                return value
            }
        case let .and(left, right):
            let value = try evaluate(left)
            return value.isTruthy ? try evaluate(right) : value
        case let .or(left, right):
            let value = try evaluate(left)
            return value.isTruthy ? value : try evaluate(right)
        case let .conditional(then, condition, otherwise):
            if try evaluate(condition).isTruthy { return try evaluate(then) }
            return try otherwise.map { e throws(TemplateError) in try evaluate(e) } ?? .undefined(name: "the inline if's condition was false and it has no else")
        case let .binary(op, left, right):
            return try binary(op, try evaluate(left), try evaluate(right), at: at)
        }
    }

    private func evaluate(_ arguments: Arguments) throws(TemplateError) -> ([Value], [(name: String, value: Value)]) {
        var positional = [Value]()
        for argument in arguments.positional { positional.append(try evaluate(argument)) }
        var keyword = [(name: String, value: Value)]()
        for argument in arguments.keyword { keyword.append((argument.name, try evaluate(argument.value))) }
        return (positional, keyword)
    }

    func call(_ function: Value, _ positional: [Value], _ keyword: [(name: String, value: Value)], at location: SourceLocation) throws(TemplateError) -> Value {
        switch function {
        case let .callable(callable):
            do {
                return try callable.call(positional, keyword)
            } catch var error {
                // Errors from inside a callable point at the call when they carry no place.
                if error.line == 0 { error.line = location.line; error.column = location.column }
                throw error
            }
        case let .undefined(message):
            throw TemplateError(.undefined, message, at: location)
        default:
            throw TemplateError(.type, "'\(function.typeName)' object is not callable", at: location)
        }
    }

    /// `value.name`: a method or attribute first, then the item of that name.
    func attribute(_ name: String, of value: Value, at location: SourceLocation) throws(TemplateError) -> Value {
        switch value {
        case let .undefined(message):
            throw TemplateError(.undefined, message, at: location)
        case let .namespace(namespace):
            return namespace.attributes[name] ?? .undefined(name: "'Namespace' has no attribute '\(name)'")
        case let .object(object):
            if let method = Methods.method(name, of: value) { return .callable(method) }
            return object[name] ?? .undefined(name: "'dict object' has no attribute '\(name)'")
        default:
            if let method = Methods.method(name, of: value) { return .callable(method) }
            return .undefined(name: "'\(value.typeName) object' has no attribute '\(name)'")
        }
    }

    /// `value[key]`: the item first, then an attribute of that name.
    func item(_ key: Value, of value: Value, at location: SourceLocation) throws(TemplateError) -> Value {
        switch (value, key) {
        case let (.undefined(message), _):
            throw TemplateError(.undefined, message, at: location)
        case let (.array(items), _) where key.integerValue != nil:
            let index = key.integerValue!
            let resolved = index < 0 ? items.count + index : index
            return items.indices.contains(resolved) ? items[resolved] : .undefined(name: "list index \(index) out of range")
        case let (.string(text), _) where key.integerValue != nil:
            let scalars = Array(text.unicodeScalars)
            let index = key.integerValue!
            let resolved = index < 0 ? scalars.count + index : index
            return scalars.indices.contains(resolved) ? .string(String(scalars[resolved])) : .undefined(name: "string index \(index) out of range")
        case let (.object(object), .string(name)):
            return object[name] ?? .undefined(name: "'dict object' has no attribute '\(name)'")
        case let (.namespace(namespace), .string(name)):
            return namespace.attributes[name] ?? .undefined(name: "'Namespace' has no attribute '\(name)'")
        case let (_, .string(name)):
            return try attribute(name, of: value, at: location)
        default:
            return .undefined(name: "'\(value.typeName) object' has no item \(key.repr)")
        }
    }

    /// Python slicing of lists and strings.
    private func slice(_ value: Value, start: Value?, stop: Value?, step: Value?, at location: SourceLocation) throws(TemplateError) -> Value {
        func bound(_ part: Value?) throws(TemplateError) -> Int? {
            guard let part, !(part.isUndefined), !(part.equals(.none)) else { return nil }
            guard let number = part.integerValue else { throw TemplateError(.type, "slice indices must be integers or None", at: location) }
            return number
        }
        let stride = try bound(step) ?? 1
        guard stride != 0 else { throw TemplateError(.type, "slice step cannot be zero", at: location) }
        func indices(count: Int) throws(TemplateError) -> [Int] {
            func clamp(_ index: Int?, _ fallback: Int, low: Int, high: Int) -> Int {
                guard var index else { return fallback }
                if index < 0 { index += count }
                return min(max(index, low), high)
            }
            if stride > 0 {
                let from = clamp(try bound(start), 0, low: 0, high: count)
                let to = clamp(try bound(stop), count, low: 0, high: count)
                return Array(Swift.stride(from: from, to: to, by: stride))
            }
            let from = clamp(try bound(start), count - 1, low: -1, high: count - 1)
            let to = clamp(try bound(stop), -1, low: -1, high: count - 1)
            return Array(Swift.stride(from: from, to: to, by: stride))
        }
        switch value {
        case let .array(items): return .array(try indices(count: items.count).map { items[$0] })
        case let .string(text):
            let scalars = Array(text.unicodeScalars)
            return .string(String(String.UnicodeScalarView(try indices(count: scalars.count).map { scalars[$0] })))
        case let .undefined(message): throw TemplateError(.undefined, message, at: location)
        default: throw TemplateError(.type, "'\(value.typeName)' object is not subscriptable", at: location)
        }
    }

    private func operandError(_ op: String, _ value: Value, at location: SourceLocation) -> TemplateError {
        if case let .undefined(message) = value { return TemplateError(.undefined, message, at: location) }
        return TemplateError(.type, "bad operand type for unary \(op): '\(value.typeName)'", at: location)
    }

    private func binary(_ op: String, _ left: Value, _ right: Value, at location: SourceLocation) throws(TemplateError) -> Value {
        switch op {
        case "~": return try bounded(.string(left.text + right.text), at: location)
        case "==": return .bool(left.equals(right))
        case "!=": return .bool(!left.equals(right))
        case "in", "not in":
            let found = try contains(right, left, at: location)
            return .bool(op == "in" ? found : !found)
        default: break
        }
        for value in [left, right] {
            if case let .undefined(message) = value { throw TemplateError(.undefined, message, at: location) }
        }
        let unsupported = TemplateError(.type, "unsupported operand type(s) for \(op): '\(left.typeName)' and '\(right.typeName)'", at: location)
        switch op {
        case "<", "<=", ">", ">=":
            let order: Int
            if let a = left.number, let b = right.number {
                order = a < b ? -1 : a > b ? 1 : 0
            } else if case let .string(a) = left, case let .string(b) = right {
                // Python orders strings by code point.
                order = a.unicodeScalars.lexicographicallyPrecedes(b.unicodeScalars) ? -1 : a.pythonEquals(b) ? 0 : 1
            } else {
                throw TemplateError(.type, "'\(op)' not supported between instances of '\(left.typeName)' and '\(right.typeName)'", at: location)
            }
            switch op {
            case "<": return .bool(order < 0)
            case "<=": return .bool(order <= 0)
            case ">": return .bool(order > 0)
            default: return .bool(order >= 0)
            }
        case "+":
            switch (left, right) {
            case let (.string(a), .string(b)): return try bounded(.string(a + b), at: location)
            case let (.array(a), .array(b)): return try bounded(.array(a + b), at: location)
            case (.string, _): throw TemplateError(.type, "can only concatenate str (not \"\(right.typeName)\") to str", at: location)
            case (.array, _): throw TemplateError(.type, "can only concatenate list (not \"\(right.typeName)\") to list", at: location)
            default: break
            }
        case "*":
            if let count = right.integerValue, count > 0 {
                let size: Int
                switch left {
                case let .string(text): size = text.utf8.count
                case let .array(items): size = items.count
                default: size = 0
                }
                guard size.multipliedReportingOverflow(by: count).overflow == false, size * count <= Evaluator.maximumLength else {
                    throw TemplateError(.unsupported, "a repetition longer than \(Evaluator.maximumLength)", at: location)
                }
            }
            if case let .string(text) = left, let count = right.integerValue { return .string(String(repeating: text, count: max(0, count))) }
            if case let .array(items) = left, let count = right.integerValue {
                return .array(Array((0..<max(0, count)).map { _ in items }.joined()))
            }
        case "%":
            if case .string = left { throw TemplateError(.unsupported, "printf-style string formatting with %", at: location) }
        default: break
        }
        guard let a = left.number, let b = right.number else { throw unsupported }
        if let x = left.integerValue, let y = right.integerValue, op != "/" {
            switch op {
            case "+": return try checked(x.addingReportingOverflow(y), at: location)
            case "-": return try checked(x.subtractingReportingOverflow(y), at: location)
            case "*": return try checked(x.multipliedReportingOverflow(by: y), at: location)
            case "//", "%":
                guard y != 0 else { throw TemplateError(.type, "integer division or modulo by zero", at: location) }
                // Python floors toward negative infinity.
                var quotient = x / y
                if (x % y != 0) && ((x < 0) != (y < 0)) { quotient -= 1 }
                return .integer(op == "//" ? quotient : x - quotient * y)
            case "**" where y >= 0:
                let result = pow(Double(x), Double(y))
                guard result < 9.2e18 else { throw TemplateError(.type, "integer power too large", at: location) }
                return .integer(Int(result))
            default: break
            }
        }
        switch op {
        case "+": return .float(a + b)
        case "-": return .float(a - b)
        case "*": return .float(a * b)
        case "/":
            guard b != 0 else { throw TemplateError(.type, "division by zero", at: location) }
            return .float(a / b)
        case "//":
            guard b != 0 else { throw TemplateError(.type, "float floor division by zero", at: location) }
            return .float((a / b).rounded(.down))
        case "%":
            guard b != 0 else { throw TemplateError(.type, "float modulo", at: location) }
            return .float(a - b * (a / b).rounded(.down))
        case "**": return .float(pow(a, b))
        default: throw unsupported
        }
    }

    /// Refuses strings and lists longer than `maximumLength` (a template doubling a string
    /// in a loop would otherwise exhaust memory).
    private func bounded(_ value: Value, at location: SourceLocation) throws(TemplateError) -> Value {
        let size: Int
        switch value {
        case let .string(text): size = text.utf8.count
        case let .array(items): size = items.count
        default: size = 0
        }
        guard size <= Evaluator.maximumLength else {
            throw TemplateError(.unsupported, "a value longer than \(Evaluator.maximumLength)", at: location)
        }
        return value
    }

    private func checked(_ result: (partialValue: Int, overflow: Bool), at location: SourceLocation) throws(TemplateError) -> Value {
        guard !result.overflow else { throw TemplateError(.type, "integer overflow", at: location) }
        return .integer(result.partialValue)
    }

    /// Python's `needle in container`.
    func contains(_ container: Value, _ needle: Value, at location: SourceLocation) throws(TemplateError) -> Bool {
        switch container {
        case let .string(text):
            guard case let .string(part) = needle else {
                throw TemplateError(.type, "'in <string>' requires string as left operand, not \(needle.typeName)", at: location)
            }
            return text.pythonContains(part)
        case let .array(items): return items.contains { $0.equals(needle) }
        case let .object(object):
            guard case let .string(key) = needle else { return false }
            return object[key] != nil
        case let .namespace(namespace):
            guard case let .string(key) = needle else { return false }
            return namespace.attributes[key] != nil
        case .undefined: return false
        default: throw TemplateError(.type, "argument of type '\(container.typeName)' is not iterable", at: location)
        }
    }
}
