/// Jinja's tests (`value is name(args)`), as chat templates use them.
extension Evaluator {
    func applyTest(_ name: String, to value: Value, _ arguments: [Value], at location: SourceLocation) throws(TemplateError) -> Bool {
        func argument() throws(TemplateError) -> Value {
            guard let first = arguments.first else { throw TemplateError(.type, "test '\(name)' needs an argument", at: location) }
            return first
        }
        switch name {
        case "defined": return !value.isUndefined
        case "undefined": return value.isUndefined
        case "none": if case .none = value { return true } else { return false }
        case "boolean": if case .bool = value { return true } else { return false }
        case "true": if case .bool(true) = value { return true } else { return false }
        case "false": if case .bool(false) = value { return true } else { return false }
        case "string": if case .string = value { return true } else { return false }
        case "number":
            switch value {
            case .integer, .float, .bool: return true   // Python's bool is a number
            default: return false
            }
        case "integer":
            switch value {
            case .integer, .bool: return true
            default: return false
            }
        case "float": if case .float = value { return true } else { return false }
        case "mapping":
            switch value {
            case .object: return true
            default: return false
            }
        case "iterable":
            switch value {
            case .array, .object, .string, .undefined: return true   // Undefined iterates as empty
            default: return false
            }
        case "sequence":
            switch value {
            case .array, .object, .string: return true
            default: return false
            }
        case "callable": if case .callable = value { return true } else { return false }
        case "sameas":
            let other = try argument()
            switch (value, other) {
            case (.none, .none): return true
            case let (.bool(a), .bool(b)): return a == b
            case let (.namespace(a), .namespace(b)): return a === b
            default: return false
            }
        case "equalto", "eq", "==": return value.equals(try argument())
        case "ne", "!=": return !value.equals(try argument())
        case "lt", "<", "le", "<=", "gt", ">", "ge", ">=", "greaterthan", "lessthan":
            let other = try argument()
            guard let a = value.number, let b = other.number else {
                if case let .string(x) = value, case let .string(y) = other {
                    let before = x.unicodeScalars.lexicographicallyPrecedes(y.unicodeScalars), same = x.pythonEquals(y)
                    switch name {
                    case "lt", "<", "lessthan": return before
                    case "le", "<=": return before || same
                    case "gt", ">", "greaterthan": return !before && !same
                    default: return !before
                    }
                }
                throw TemplateError(.type, "'\(name)' not supported between '\(value.typeName)' and '\(other.typeName)'", at: location)
            }
            switch name {
            case "lt", "<", "lessthan": return a < b
            case "le", "<=": return a <= b
            case "gt", ">", "greaterthan": return a > b
            default: return a >= b
            }
        case "in": return try contains(try argument(), value, at: location)
        case "odd", "even", "divisibleby":
            guard let number = value.integerValue else { throw TemplateError(.type, "test '\(name)' needs an integer", at: location) }
            if name == "odd" { return number % 2 != 0 }
            if name == "even" { return number % 2 == 0 }
            guard let divisor = try argument().integerValue, divisor != 0 else { throw TemplateError(.type, "divisibleby needs a non-zero integer", at: location) }
            return number % divisor == 0
        case "lower": if case let .string(text) = value { return text.pythonEquals(text.lowercased()) } else { return false }
        case "upper": if case let .string(text) = value { return text.pythonEquals(text.uppercased()) } else { return false }
        default:
            throw TemplateError(.unsupported, "no test named '\(name)'", at: location)
        }
    }
}
