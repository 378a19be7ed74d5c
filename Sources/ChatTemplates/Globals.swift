import Foundation

/// The functions transformers puts in every chat template's environment, plus Jinja's
/// own `range` and `dict`.
extension Evaluator {
    static var globals: [String: Value] { [
        "raise_exception": .callable(Callable(name: "raise_exception") { positional, _ throws(TemplateError) in
            throw TemplateError(.raised, positional.first?.text ?? "")
        }),
        "namespace": .callable(Callable(name: "namespace") { positional, keyword throws(TemplateError) in
            var attributes = OrderedObject()
            if case let .object(initial)? = positional.first {
                for pair in initial.pairs { attributes[pair.key] = pair.value }
            }
            for pair in keyword {
                // transformers' sandboxed namespace refuses underscore names.
                guard !pair.name.hasPrefix("_") else {
                    throw TemplateError(.type, "Chat templates cannot store underscore-prefixed attributes on a namespace, but got '\(pair.name)'")
                }
                attributes[pair.name] = pair.value
            }
            return .namespace(Namespace(attributes))
        }),
        "dict": .callable(Callable(name: "dict") { positional, keyword throws(TemplateError) in
            var object = OrderedObject()
            if case let .object(initial)? = positional.first {
                for pair in initial.pairs { object[pair.key] = pair.value }
            }
            for pair in keyword { object[pair.name] = pair.value }
            return .object(object)
        }),
        "range": .callable(Callable(name: "range") { positional, _ throws(TemplateError) in
            let bounds = positional.compactMap(\.integerValue)
            guard bounds.count == positional.count, (1...3).contains(bounds.count) else {
                throw TemplateError(.type, "range() takes 1 to 3 integer arguments")
            }
            let (start, stop) = bounds.count == 1 ? (0, bounds[0]) : (bounds[0], bounds[1])
            let step = bounds.count == 3 ? bounds[2] : 1
            guard step != 0 else { throw TemplateError(.type, "range() arg 3 must not be zero") }
            let count = step > 0 ? max(0, (stop - start + step - 1) / step) : max(0, (start - stop - step - 1) / -step)
            guard count <= 100_000 else { throw TemplateError(.type, "range() of \(count) items is larger than a chat template needs") }
            return .array(Array(Swift.stride(from: start, to: stop, by: step)).map { .integer($0) })
        }),
        "strftime_now": .callable(Callable(name: "strftime_now") { positional, _ throws(TemplateError) in
            guard case let .string(format)? = positional.first else { throw TemplateError(.type, "strftime_now needs a format string") }
            return .string(try strftime(format, Date()))
        }),
    ] }

    /// The `strftime` directives date-stamping templates use (`%d %B %Y` and kin), in English.
    static func strftime(_ format: String, _ date: Date) throws(TemplateError) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone.current
        let parts = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second, .weekday], from: date)
        let months = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"]
        let weekdays = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
        func two(_ number: Int?) -> String { String(format: "%02d", number ?? 0) }
        var out = ""
        var scalars = format.unicodeScalars.makeIterator()
        while let scalar = scalars.next() {
            guard scalar == "%" else { out.unicodeScalars.append(scalar); continue }
            guard let directive = scalars.next() else { out += "%"; break }
            switch directive {
            case "d": out += two(parts.day)
            case "m": out += two(parts.month)
            case "Y": out += String(parts.year ?? 0)
            case "y": out += two((parts.year ?? 0) % 100)
            case "B": out += months[(parts.month ?? 1) - 1]
            case "b": out += String(months[(parts.month ?? 1) - 1].prefix(3))
            case "A": out += weekdays[(parts.weekday ?? 1) - 1]
            case "a": out += String(weekdays[(parts.weekday ?? 1) - 1].prefix(3))
            case "H": out += two(parts.hour)
            case "M": out += two(parts.minute)
            case "S": out += two(parts.second)
            case "%": out += "%"
            default: throw TemplateError(.unsupported, "strftime directive %\(directive)")
            }
        }
        return out
    }
}
