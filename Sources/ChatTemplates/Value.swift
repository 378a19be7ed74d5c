import Foundation

/// A value a template works with: what the caller passes in (JSON-like data), literals,
/// and what the template builds (namespaces, macros, bound methods). Conversions to text,
/// truth and equality follow Python's, since transformers renders with Python Jinja.
public enum Value {
    /// Jinja's default `Undefined`: falsy, renders as "", iterates as empty; most other
    /// uses (attributes, calls, arithmetic) are errors naming `name`.
    case undefined(name: String)
    case none
    case bool(Bool)
    case integer(Int)
    case float(Double)
    case string(String)
    case array([Value])
    case object(OrderedObject)
    /// `namespace(...)`: the one mutable object templates may assign attributes to.
    case namespace(Namespace)
    case callable(Callable)

    public static var undefined: Value { .undefined(name: "value is undefined") }
}

/// A dictionary that keeps insertion order, as Python dicts (and JSON objects) do.
public struct OrderedObject {
    public private(set) var keys: [String] = []
    private var storage: [String: Value] = [:]

    public init() {}

    public init(_ pairs: [(String, Value)]) {
        for (key, value) in pairs { self[key] = value }
    }

    public subscript(key: String) -> Value? {
        get { storage[key] }
        set {
            if let newValue {
                if storage.updateValue(newValue, forKey: key) == nil { keys.append(key) }
            } else if storage.removeValue(forKey: key) != nil {
                keys.removeAll { $0 == key }
            }
        }
    }

    public var count: Int { keys.count }
    public var pairs: [(key: String, value: Value)] { keys.map { ($0, storage[$0]!) } }
    public var values: [Value] { keys.map { storage[$0]! } }
}

/// The shared, mutable attributes of a `namespace(...)`.
public final class Namespace {
    var attributes: OrderedObject

    init(_ attributes: OrderedObject) {
        self.attributes = attributes
    }
}

/// A function a template can call: a global (`namespace`, `raise_exception`), a macro,
/// or a method bound to its receiver (`text.strip`).
public struct Callable {
    let name: String
    let call: (_ positional: [Value], _ keyword: [(name: String, value: Value)]) throws(TemplateError) -> Value
}

extension Value: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByFloatLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByNilLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .integer(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(floatLiteral value: Double) { self = .float(value) }
    public init(arrayLiteral elements: Value...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, Value)...) { self = .object(OrderedObject(elements)) }
    public init(nilLiteral: ()) { self = .none }
}

extension Value {
    init(_ literal: Literal) {
        switch literal {
        case .none: self = .none
        case let .bool(value): self = .bool(value)
        case let .integer(value): self = .integer(value)
        case let .float(value): self = .float(value)
        case let .string(value): self = .string(value)
        }
    }

    var isUndefined: Bool {
        if case .undefined = self { return true }
        return false
    }

    /// Python's truth value.
    var isTruthy: Bool {
        switch self {
        case .undefined, .none: return false
        case let .bool(value): return value
        case let .integer(value): return value != 0
        case let .float(value): return value != 0
        case let .string(value): return !value.isEmpty
        case let .array(items): return !items.isEmpty
        case let .object(object): return object.count > 0
        case .namespace, .callable: return true
        }
    }

    /// Python's type name, for error messages that read like transformers' ones.
    var typeName: String {
        switch self {
        case .undefined: return "Undefined"
        case .none: return "NoneType"
        case .bool: return "bool"
        case .integer: return "int"
        case .float: return "float"
        case .string: return "str"
        case .array: return "list"
        case .object: return "dict"
        case .namespace: return "Namespace"
        case .callable: return "function"
        }
    }

    /// The number, for arithmetic (bools count as 0 and 1, as in Python).
    var number: Double? {
        switch self {
        case let .integer(value): return Double(value)
        case let .float(value): return value
        case let .bool(value): return value ? 1 : 0
        default: return nil
        }
    }

    var integerValue: Int? {
        switch self {
        case let .integer(value): return value
        case let .bool(value): return value ? 1 : 0
        default: return nil
        }
    }

    /// Python's `str(value)`: what `{{ value }}` prints.
    var text: String {
        switch self {
        case .undefined: return ""
        case let .string(value): return value
        default: return repr
        }
    }

    /// Python's `repr(value)`, used for values inside printed lists and dicts.
    var repr: String {
        switch self {
        case .undefined: return ""
        case .none: return "None"
        case let .bool(value): return value ? "True" : "False"
        case let .integer(value): return String(value)
        case let .float(value): return Value.pythonFloat(value)
        case let .string(value): return Value.pythonStringRepr(value)
        case let .array(items): return "[" + items.map(\.repr).joined(separator: ", ") + "]"
        case let .object(object):
            return "{" + object.pairs.map { Value.pythonStringRepr($0.key) + ": " + $0.value.repr }.joined(separator: ", ") + "}"
        case let .namespace(namespace):
            return "<Namespace " + namespace.attributes.pairs.map { "\($0.key)=\($0.value.repr)" }.joined(separator: ", ") + ">"
        case let .callable(function): return "<function \(function.name)>"
        }
    }

    /// Python's float repr: the shortest round-trip digits, always with a '.' or exponent.
    static func pythonFloat(_ value: Double) -> String {
        if value.isNaN { return "nan" }
        if value.isInfinite { return value < 0 ? "-inf" : "inf" }
        let magnitude = abs(value)
        if magnitude != 0 && (magnitude >= 1e16 || magnitude < 1e-4) {
            // Swift writes 1e-05 and 1e+16 like Python does.
            return "\(value)"
        }
        var digits = "\(value)"
        if digits.contains("e") {
            // Swift switches to exponents earlier than Python (at 2^53); write it out.
            digits = String(format: "%.17g", value)
            if let parsed = Double(digits), parsed == value, !digits.contains(".") { digits += ".0" }
        }
        return digits
    }

    static func pythonStringRepr(_ value: String) -> String {
        let quote: Character = value.contains("'") && !value.contains("\"") ? "\"" : "'"
        var out = String(quote)
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where Character(scalar) == quote: out += "\\\(quote)"
            case _ where scalar.value < 0x20 || scalar.value == 0x7F:
                out += "\\x" + String(format: "%02x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        out.append(quote)
        return out
    }

    /// Python's `==`: numbers compare by value across int/float/bool, containers deeply.
    func equals(_ other: Value) -> Bool {
        switch (self, other) {
        case (.undefined, .undefined), (.none, .none): return true
        case let (.string(a), .string(b)): return a.pythonEquals(b)
        case let (.array(a), .array(b)): return a.count == b.count && zip(a, b).allSatisfy { $0.equals($1) }
        case let (.object(a), .object(b)):
            return a.count == b.count && a.pairs.allSatisfy { pair in b[pair.key].map { pair.value.equals($0) } ?? false }
        case let (.namespace(a), .namespace(b)): return a === b
        default:
            if let a = number, let b = other.number { return a == b }
            return false
        }
    }
}

extension Value: CustomStringConvertible {
    public var description: String { repr }
}
