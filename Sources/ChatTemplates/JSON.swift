import Foundation

/// JSON in and out of template values. Reading keeps object key order (Foundation's
/// JSONSerialization does not), because templates iterate objects and `tojson` prints
/// them in the order the caller sent. Writing is Python's `json.dumps` as transformers'
/// `tojson` filter calls it: `ensure_ascii=False` unless asked, `", "` and `": "`
/// separators (`","` between items when indenting).
public struct JSONParseError: Error, CustomStringConvertible, Sendable {
    public var offset: Int
    public var reason: String
    public var description: String { "invalid JSON at byte \(offset): \(reason)" }
}

extension Value {
    /// Parses JSON text into a value (objects keep their key order; integers stay integers).
    public init(parsingJSON data: Data) throws {
        var reader = JSONReader(bytes: Array(data))
        reader.skipWhitespace()
        self = try reader.readValue()
        reader.skipWhitespace()
        guard reader.offset == reader.bytes.count else { throw JSONParseError(offset: reader.offset, reason: "text after the value") }
    }

    struct JSONOptions {
        var indent: Int? = nil
        var ensureASCII = false
        var sortKeys = false
        var itemSeparator: String? = nil
        var keySeparator = ": "
    }

    func json(_ options: JSONOptions, level: Int = 0) throws(TemplateError) -> String {
        let itemSeparator = options.itemSeparator ?? (options.indent == nil ? ", " : ",")
        func wrap(_ items: [String], _ open: String, _ close: String) -> String {
            guard !items.isEmpty else { return open + close }
            guard let indent = options.indent else { return open + items.joined(separator: itemSeparator) + close }
            let inner = "\n" + String(repeating: " ", count: indent * (level + 1))
            let outer = "\n" + String(repeating: " ", count: indent * level)
            return open + inner + items.joined(separator: itemSeparator + inner) + outer + close
        }
        switch self {
        case .none: return "null"
        case let .bool(value): return value ? "true" : "false"
        case let .integer(value): return String(value)
        case let .float(value):
            if value.isNaN { return "NaN" }
            if value.isInfinite { return value < 0 ? "-Infinity" : "Infinity" }
            return Value.pythonFloat(value)
        case let .string(value): return Value.jsonString(value, ensureASCII: options.ensureASCII)
        case let .array(items):
            var parts = [String]()
            for item in items { parts.append(try item.json(options, level: level + 1)) }
            return wrap(parts, "[", "]")
        case let .object(object):
            var pairs = object.pairs
            if options.sortKeys { pairs.sort { $0.key < $1.key } }
            var parts = [String]()
            for pair in pairs {
                parts.append(Value.jsonString(pair.key, ensureASCII: options.ensureASCII) + options.keySeparator + (try pair.value.json(options, level: level + 1)))
            }
            return wrap(parts, "{", "}")
        case .undefined, .namespace, .callable:
            throw TemplateError(.type, "Object of type \(typeName) is not JSON serializable")
        }
    }

    static func jsonString(_ value: String, ensureASCII: Bool) -> String {
        var out = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            case _ where scalar.value < 0x20 || (ensureASCII && scalar.value > 0x7E):
                if scalar.value > 0xFFFF {
                    // Python writes astral characters as a UTF-16 surrogate pair.
                    let offset = scalar.value - 0x10000
                    out += String(format: "\\u%04x\\u%04x", 0xD800 + (offset >> 10), 0xDC00 + (offset & 0x3FF))
                } else {
                    out += String(format: "\\u%04x", scalar.value)
                }
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}

/// A small recursive-descent JSON reader over UTF-8 bytes.
private struct JSONReader {
    let bytes: [UInt8]
    var offset = 0

    mutating func skipWhitespace() {
        while offset < bytes.count, [0x20, 0x0A, 0x0D, 0x09].contains(bytes[offset]) { offset += 1 }
    }

    func fail(_ reason: String) -> JSONParseError { JSONParseError(offset: offset, reason: reason) }

    mutating func readValue() throws -> Value {
        guard offset < bytes.count else { throw fail("unexpected end") }
        switch bytes[offset] {
        case UInt8(ascii: "{"):
            offset += 1
            var object = OrderedObject()
            skipWhitespace()
            if offset < bytes.count, bytes[offset] == UInt8(ascii: "}") { offset += 1; return .object(object) }
            while true {
                skipWhitespace()
                guard offset < bytes.count, bytes[offset] == UInt8(ascii: "\"") else { throw fail("expected a key") }
                let key = try readString()
                skipWhitespace()
                guard offset < bytes.count, bytes[offset] == UInt8(ascii: ":") else { throw fail("expected ':'") }
                offset += 1
                skipWhitespace()
                object[key] = try readValue()
                skipWhitespace()
                guard offset < bytes.count else { throw fail("unexpected end in an object") }
                if bytes[offset] == UInt8(ascii: ",") { offset += 1; continue }
                if bytes[offset] == UInt8(ascii: "}") { offset += 1; return .object(object) }
                throw fail("expected ',' or '}'")
            }
        case UInt8(ascii: "["):
            offset += 1
            var items = [Value]()
            skipWhitespace()
            if offset < bytes.count, bytes[offset] == UInt8(ascii: "]") { offset += 1; return .array(items) }
            while true {
                skipWhitespace()
                items.append(try readValue())
                skipWhitespace()
                guard offset < bytes.count else { throw fail("unexpected end in an array") }
                if bytes[offset] == UInt8(ascii: ",") { offset += 1; continue }
                if bytes[offset] == UInt8(ascii: "]") { offset += 1; return .array(items) }
                throw fail("expected ',' or ']'")
            }
        case UInt8(ascii: "\""):
            return .string(try readString())
        case UInt8(ascii: "t"): try readWord("true"); return .bool(true)
        case UInt8(ascii: "f"): try readWord("false"); return .bool(false)
        case UInt8(ascii: "n"): try readWord("null"); return .none
        default:
            return try readNumber()
        }
    }

    mutating func readWord(_ word: String) throws {
        let expected = Array(word.utf8)
        guard offset + expected.count <= bytes.count, Array(bytes[offset..<offset + expected.count]) == expected else { throw fail("unexpected token") }
        offset += expected.count
    }

    mutating func readNumber() throws -> Value {
        let start = offset
        var isFloat = false
        while offset < bytes.count {
            let byte = bytes[offset]
            if byte == UInt8(ascii: ".") || byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E") { isFloat = true }
            guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || [UInt8(ascii: "-"), UInt8(ascii: "+"), UInt8(ascii: "."), UInt8(ascii: "e"), UInt8(ascii: "E")].contains(byte) else { break }
            offset += 1
        }
        let text = String(decoding: bytes[start..<offset], as: UTF8.self)
        if !isFloat, let value = Int(text) { return .integer(value) }
        guard let value = Double(text), !text.isEmpty else { offset = start; throw fail("unexpected character") }
        return .float(value)
    }

    mutating func readString() throws -> String {
        offset += 1   // opening quote
        var scalars = String.UnicodeScalarView()
        var run = [UInt8]()
        func flush(_ run: inout [UInt8], into scalars: inout String.UnicodeScalarView) {
            if !run.isEmpty { scalars.append(contentsOf: String(decoding: run, as: UTF8.self).unicodeScalars); run.removeAll() }
        }
        while offset < bytes.count {
            let byte = bytes[offset]
            offset += 1
            if byte == UInt8(ascii: "\"") {
                flush(&run, into: &scalars)
                return String(scalars)
            }
            guard byte == UInt8(ascii: "\\") else { run.append(byte); continue }
            flush(&run, into: &scalars)
            guard offset < bytes.count else { break }
            let escaped = bytes[offset]
            offset += 1
            switch escaped {
            case UInt8(ascii: "n"): scalars.append("\n")
            case UInt8(ascii: "t"): scalars.append("\t")
            case UInt8(ascii: "r"): scalars.append("\r")
            case UInt8(ascii: "b"): scalars.append("\u{08}")
            case UInt8(ascii: "f"): scalars.append("\u{0C}")
            case UInt8(ascii: "u"):
                var code = try readHex4()
                if (0xD800..<0xDC00).contains(code), offset + 1 < bytes.count, bytes[offset] == UInt8(ascii: "\\"), bytes[offset + 1] == UInt8(ascii: "u") {
                    offset += 2
                    let low = try readHex4()
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                }
                guard let scalar = Unicode.Scalar(code) else { throw fail("invalid \\u escape") }
                scalars.append(scalar)
            default: scalars.append(Unicode.Scalar(escaped))
            }
        }
        throw fail("string not closed")
    }

    mutating func readHex4() throws -> UInt32 {
        guard offset + 4 <= bytes.count, let code = UInt32(String(decoding: bytes[offset..<offset + 4], as: UTF8.self), radix: 16) else {
            throw fail("invalid \\u escape")
        }
        offset += 4
        return code
    }
}
