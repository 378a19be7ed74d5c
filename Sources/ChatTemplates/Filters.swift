import Foundation

/// The filters (`value | name(args)`) Hugging Face chat templates use, with Jinja's
/// behaviour, and `tojson` as transformers overrides it (no HTML escaping, non-ASCII kept).
extension Evaluator {
    func applyFilter(_ name: String, to value: Value, _ positional: [Value], _ keyword: [(name: String, value: Value)],
                     at location: SourceLocation) throws(TemplateError) -> Value {
        let arguments = CallArguments(name: name, positional: positional, keyword: keyword)
        do {
            return try filter(name, value, arguments, at: location)
        } catch var error {
            if error.line == 0 { error.line = location.line; error.column = location.column }
            throw error
        }
    }

    private func requireDefined(_ value: Value) throws(TemplateError) {
        if case let .undefined(message) = value { throw TemplateError(.undefined, message) }
    }

    private func filter(_ name: String, _ value: Value, _ arguments: CallArguments, at location: SourceLocation) throws(TemplateError) -> Value {
        switch name {
        case "safe":
            return value
        case "trim":
            return .string(value.text.pythonStrip(try arguments.optionalString(0, "chars")))
        case "length", "count":
            switch value {
            case let .string(text): return .integer(text.unicodeScalars.count)
            case let .array(items): return .integer(items.count)
            case let .object(object): return .integer(object.count)
            case .undefined: return .integer(0)
            case let .namespace(namespace): return .integer(namespace.attributes.count)
            default: throw TemplateError(.type, "object of type '\(value.typeName)' has no len()")
            }
        case "upper": return .string(value.text.uppercased())
        case "lower": return .string(value.text.lowercased())
        case "capitalize": return .string(value.text.pythonCapitalize)
        case "title": return .string(jinjaTitle(value.text))
        case "string": return .string(value.text)
        case "list":
            return .array(try iterate(value, at: location))
        case "items":
            switch value {
            case let .object(object): return .array(object.pairs.map { .array([.string($0.key), $0.value]) })
            case .undefined: return .array([])
            default: throw TemplateError(.type, "can only get item pairs from a mapping, not \(value.typeName)")
            }
        case "first", "last":
            let items = try iterate(value, at: location)
            return (name == "first" ? items.first : items.last) ?? .undefined(name: "no \(name) item, sequence was empty")
        case "reverse":
            if case let .string(text) = value { return .string(String(scalars: text.unicodeScalars.reversed())) }
            return .array(try iterate(value, at: location).reversed())
        case "join":
            let separator = try arguments.optionalString(0, "d") ?? ""
            var items = try iterate(value, at: location)
            if let attribute = arguments.value(1, "attribute") {
                var picked = [Value]()
                for item in items { picked.append(try self.attribute(path: attribute, of: item, at: location)) }
                items = picked
            }
            return .string(items.map(\.text).joined(separator: separator))
        case "default", "d":
            let fallback = arguments.value(0, "default_value") ?? .string("")
            let boolean = arguments.bool(1, "boolean", default: false)
            if value.isUndefined || (boolean && !value.isTruthy) { return fallback }
            return value
        case "replace":
            return .string(value.text.pythonReplace(try arguments.string(0, "old"), try arguments.string(1, "new"),
                                                    count: try arguments.integer(2, "count", default: -1)))
        case "int":
            let fallback = try arguments.integer(0, "default", default: 0)
            switch value {
            case let .integer(number): return .integer(number)
            case let .bool(flag): return .integer(flag ? 1 : 0)
            case let .float(number): return number.isFinite ? .integer(Int(number)) : .integer(fallback)
            case let .string(text):
                let trimmed = text.pythonStrip(nil)
                if let number = Int(trimmed) { return .integer(number) }
                if let number = Double(trimmed), number.isFinite { return .integer(Int(number)) }
                return .integer(fallback)
            default: return .integer(fallback)
            }
        case "float":
            let fallback = arguments.value(0, "default")?.number ?? 0
            switch value {
            case let .string(text): return .float(Double(text.pythonStrip(nil)) ?? fallback)
            default: return .float(value.number ?? fallback)
            }
        case "abs":
            switch value {
            case let .integer(number): return .integer(abs(number))
            case let .float(number): return .float(abs(number))
            default: throw TemplateError(.type, "bad operand type for abs(): '\(value.typeName)'")
            }
        case "indent":
            return .string(indent(value.text, arguments))
        case "tojson":
            try requireDefined(value)
            var options = Value.JSONOptions()
            if let indent = arguments.value(0, "indent"), !indent.equals(.none) {
                guard let width = indent.integerValue else { throw TemplateError(.unsupported, "tojson indent given as \(indent.typeName)") }
                options.indent = width
            }
            options.ensureASCII = arguments.bool(1, "ensure_ascii", default: false)
            if case let .array(separators)? = arguments.value(2, "separators"), separators.count == 2 {
                options.itemSeparator = separators[0].text
                options.keySeparator = separators[1].text
            }
            options.sortKeys = arguments.bool(3, "sort_keys", default: false)
            return .string(try value.json(options))
        case "selectattr", "rejectattr":
            guard case let .string(path)? = arguments.value(0, "attribute") else { throw TemplateError(.type, "\(name) needs an attribute name") }
            var kept = [Value]()
            for item in try iterate(value, at: location) {
                let field = try attribute(path: .string(path), of: item, at: location)
                let passes: Bool
                if case let .string(test)? = arguments.value(1, "test") {
                    passes = try applyTest(test, to: field, Array(arguments.positional.dropFirst(2)), at: location)
                } else {
                    passes = field.isTruthy
                }
                if passes == (name == "selectattr") { kept.append(item) }
            }
            return .array(kept)
        case "select", "reject":
            var kept = [Value]()
            for item in try iterate(value, at: location) {
                let passes: Bool
                if case let .string(test)? = arguments.value(0, "test") {
                    passes = try applyTest(test, to: item, Array(arguments.positional.dropFirst(1)), at: location)
                } else {
                    passes = item.isTruthy
                }
                if passes == (name == "select") { kept.append(item) }
            }
            return .array(kept)
        case "map":
            var mapped = [Value]()
            let items = try iterate(value, at: location)
            if let path = arguments.keyword.first(where: { $0.name == "attribute" })?.value {
                let fallback = arguments.keyword.first { $0.name == "default" }?.value
                for item in items {
                    let field = try attribute(path: path, of: item, at: location)
                    mapped.append(field.isUndefined ? (fallback ?? field) : field)
                }
            } else if case let .string(filterName)? = arguments.positional.first {
                for item in items {
                    mapped.append(try applyFilter(filterName, to: item, Array(arguments.positional.dropFirst()), arguments.keyword, at: location))
                }
            } else {
                throw TemplateError(.type, "map needs a filter name or attribute=")
            }
            return .array(mapped)
        case "unique":
            var seen = [Value]()
            for item in try iterate(value, at: location) where !seen.contains(where: { $0.equals(item) }) { seen.append(item) }
            return .array(seen)
        case "sort":
            let reverse = arguments.bool(0, "reverse", default: false)
            let path = arguments.value(2, "attribute")
            var keyed = [(key: Value, item: Value)]()
            for item in try iterate(value, at: location) {
                keyed.append((try path.map { p throws(TemplateError) in try attribute(path: p, of: item, at: location) } ?? item, item))
            }
            var failure: TemplateError?
            keyed.sort { a, b in
                do throws(TemplateError) { return try less(a.key, b.key) != reverse && !a.key.equals(b.key) } catch { failure = error; return false }
            }
            if let failure { throw failure }
            return .array(keyed.map(\.item))
        case "min", "max":
            let items = try iterate(value, at: location)
            guard var best = items.first else { return .undefined(name: "no \(name) item, sequence was empty") }
            for item in items.dropFirst() where try (name == "min" ? less(item, best) : less(best, item)) { best = item }
            return best
        case "sum":
            var total = Value.integer(0)
            for item in try iterate(value, at: location) {
                guard let a = total.number, let b = item.number else { throw TemplateError(.type, "unsupported operand type(s) for +") }
                if let x = total.integerValue, let y = item.integerValue { total = .integer(x + y) } else { total = .float(a + b) }
            }
            return total
        case "round":
            let precision = try arguments.integer(0, "precision", default: 0)
            guard let number = value.number else { throw TemplateError(.type, "round needs a number") }
            let scale = pow(10.0, Double(precision))
            return .float((number * scale).rounded(.toNearestOrEven) / scale)
        case "dictsort":
            guard case let .object(object) = value else { throw TemplateError(.type, "dictsort needs a mapping") }
            return .array(object.pairs.sorted { $0.key.unicodeScalars.lexicographicallyPrecedes($1.key.unicodeScalars) }
                .map { .array([.string($0.key), $0.value]) })
        case "wordcount":
            return .integer(value.text.pythonSplit(nil).count)
        default:
            throw TemplateError(.unsupported, "no filter named '\(name)'")
        }
    }

    /// `attribute` arguments of filters: a name, or dotted path (`"function.name"`), or an index.
    private func attribute(path: Value, of item: Value, at location: SourceLocation) throws(TemplateError) -> Value {
        switch path {
        case let .string(text):
            var current = item
            for part in text.pythonSplit(".") {
                if let index = Int(part) { current = try self.item(.integer(index), of: current, at: location) }
                else if current.isUndefined { return current }
                else { current = try self.item(.string(part), of: current, at: location) }
            }
            return current
        default:
            return try self.item(path, of: item, at: location)
        }
    }

    private func less(_ a: Value, _ b: Value) throws(TemplateError) -> Bool {
        if let x = a.number, let y = b.number { return x < y }
        if case let .string(x) = a, case let .string(y) = b {
            return x.lowercased().unicodeScalars.lexicographicallyPrecedes(y.lowercased().unicodeScalars)
        }
        throw TemplateError(.type, "'<' not supported between instances of '\(a.typeName)' and '\(b.typeName)'")
    }

    /// Jinja's `title` filter: upper-cases the first letter of each word, words split at
    /// whitespace and `-([{<` (unlike Python's `str.title`, an apostrophe does not split).
    private func jinjaTitle(_ text: String) -> String {
        var out = ""
        var atWordStart = true
        for scalar in text.unicodeScalars {
            let separator = scalar.properties.isWhitespace || "-([{<".unicodeScalars.contains(scalar)
            if separator {
                out.unicodeScalars.append(scalar)
                atWordStart = true
            } else {
                out += atWordStart ? String(scalar).uppercased() : String(scalar).lowercased()
                atWordStart = false
            }
        }
        return out
    }

    /// Jinja's `indent(width=4, first=False, blank=False)`: indents every line but the
    /// first (unless `first`), skipping blank lines (unless `blank`).
    private func indent(_ text: String, _ arguments: CallArguments) -> String {
        let padding: String
        switch arguments.value(0, "width") {
        case let .string(given)?: padding = given
        case let given?: padding = String(repeating: " ", count: given.integerValue ?? 4)
        case nil: padding = "    "
        }
        let first = arguments.bool(1, "first", default: false)
        let blank = arguments.bool(2, "blank", default: false)
        var lines = text.pythonSplit("\n")
        for index in lines.indices.dropFirst() where blank || !lines[index].isEmpty {
            lines[index] = padding + lines[index]
        }
        return (first ? padding : "") + lines.joined(separator: "\n")
    }
}
