/// The Python methods templates call on values: `text.strip()`, `message.get('x')`,
/// `tool.items()`. Only methods that do not change their receiver exist, as in
/// transformers' immutable sandbox (`list.append` and `dict.update` are refused there too).
enum Methods {
    static func method(_ name: String, of value: Value) -> Callable? {
        switch value {
        case let .string(text): return stringMethod(name, text)
        case let .object(object): return objectMethod(name, object)
        default: return nil
        }
    }

    private static func bind(_ name: String, _ body: @escaping (CallArguments) throws(TemplateError) -> Value) -> Callable {
        Callable(name: name) { positional, keyword throws(TemplateError) in
            try body(CallArguments(name: name, positional: positional, keyword: keyword))
        }
    }

    private static func stringMethod(_ name: String, _ text: String) -> Callable? {
        switch name {
        case "strip", "lstrip", "rstrip":
            return bind(name) { arguments throws(TemplateError) in
                let characters = try arguments.optionalString(0, "chars")
                return .string(text.pythonStrip(characters, leading: name != "rstrip", trailing: name != "lstrip"))
            }
        case "split":
            return bind(name) { arguments throws(TemplateError) in
                let separator = try arguments.optionalString(0, "sep")
                if separator == "" { throw TemplateError(.type, "empty separator") }
                let limit = try arguments.integer(1, "maxsplit", default: -1)
                return .array(text.pythonSplit(separator, maxSplit: limit).map { .string($0) })
            }
        case "splitlines":
            return bind(name) { _ throws(TemplateError) in
                var lines = text.pythonSplit("\n")
                if lines.last == "" { lines.removeLast() }
                return .array(lines.map { .string($0) })
            }
        case "startswith", "endswith":
            return bind(name) { arguments throws(TemplateError) in
                let candidates: [String]
                switch arguments.value(0, "prefix") {
                case let .string(one)?: candidates = [one]
                case let .array(many)?:
                    candidates = many.compactMap { if case let .string(s) = $0 { return s } else { return nil } }
                default: throw TemplateError(.type, "\(name) first arg must be str or a tuple of str")
                }
                return .bool(candidates.contains { name == "startswith" ? text.pythonHasPrefix($0) : text.pythonHasSuffix($0) })
            }
        case "upper": return bind(name) { _ throws(TemplateError) in .string(text.uppercased()) }
        case "lower": return bind(name) { _ throws(TemplateError) in .string(text.lowercased()) }
        case "title": return bind(name) { _ throws(TemplateError) in .string(text.pythonTitle) }
        case "capitalize": return bind(name) { _ throws(TemplateError) in .string(text.pythonCapitalize) }
        case "replace":
            return bind(name) { arguments throws(TemplateError) in
                .string(text.pythonReplace(try arguments.string(0, "old"), try arguments.string(1, "new"),
                                           count: try arguments.integer(2, "count", default: -1)))
            }
        case "find":
            return bind(name) { arguments throws(TemplateError) in .integer(text.pythonFind(try arguments.string(0, "sub"))) }
        case "count":
            return bind(name) { arguments throws(TemplateError) in
                let part = try arguments.string(0, "sub")
                return .integer(part.isEmpty ? text.unicodeScalars.count + 1 : text.pythonOccurrences(of: part).count)
            }
        case "join":
            return bind(name) { arguments throws(TemplateError) in
                guard case let .array(items)? = arguments.value(0, "iterable") else { throw TemplateError(.type, "can only join an iterable") }
                var parts = [String]()
                for item in items {
                    guard case let .string(part) = item else { throw TemplateError(.type, "sequence item: expected str instance, \(item.typeName) found") }
                    parts.append(part)
                }
                return .string(parts.joined(separator: text))
            }
        case "isdigit", "isspace", "isalpha", "isalnum":
            return bind(name) { _ throws(TemplateError) in
                let scalars = text.unicodeScalars
                let test: (Unicode.Scalar) -> Bool
                switch name {
                case "isdigit": test = { $0.properties.numericType == .decimal || $0.properties.numericType == .digit }
                case "isspace": test = { $0.properties.isWhitespace }
                case "isalpha": test = { $0.properties.isAlphabetic }
                default: test = { $0.properties.isAlphabetic || $0.properties.numericType != nil }
                }
                return .bool(!scalars.isEmpty && scalars.allSatisfy(test))
            }
        default: return nil
        }
    }

    private static func objectMethod(_ name: String, _ object: OrderedObject) -> Callable? {
        switch name {
        case "items":
            return bind(name) { _ throws(TemplateError) in .array(object.pairs.map { .array([.string($0.key), $0.value]) }) }
        case "keys":
            return bind(name) { _ throws(TemplateError) in .array(object.keys.map { .string($0) }) }
        case "values":
            return bind(name) { _ throws(TemplateError) in .array(object.values) }
        case "get":
            return bind(name) { arguments throws(TemplateError) in
                guard case let .string(key)? = arguments.value(0, "key") else { return arguments.value(1, "default") ?? .none }
                return object[key] ?? arguments.value(1, "default") ?? .none
            }
        default: return nil
        }
    }
}

/// Call arguments with Python-style access by position or keyword.
struct CallArguments {
    let name: String
    let positional: [Value]
    let keyword: [(name: String, value: Value)]

    func value(_ position: Int, _ key: String) -> Value? {
        if position < positional.count { return positional[position] }
        return keyword.first { $0.name == key }?.value
    }

    func string(_ position: Int, _ key: String) throws(TemplateError) -> String {
        guard case let .string(text)? = value(position, key) else {
            throw TemplateError(.type, "\(name)() argument '\(key)' must be a string")
        }
        return text
    }

    func optionalString(_ position: Int, _ key: String) throws(TemplateError) -> String? {
        switch value(position, key) {
        case nil, .none?, .undefined?: return nil
        case let .string(text)?: return text
        case let other?: throw TemplateError(.type, "\(name)() argument '\(key)' must be a string or None, not \(other.typeName)")
        }
    }

    func integer(_ position: Int, _ key: String, default fallback: Int) throws(TemplateError) -> Int {
        guard let given = value(position, key) else { return fallback }
        guard let number = given.integerValue else { throw TemplateError(.type, "\(name)() argument '\(key)' must be an integer") }
        return number
    }

    func bool(_ position: Int, _ key: String, default fallback: Bool) -> Bool {
        value(position, key)?.isTruthy ?? fallback
    }
}
