/// One lexical unit of a template: literal text between tags, the tag delimiters, and the
/// tokens of the expressions inside them.
struct Token: Equatable {
    enum Kind: Equatable {
        case text(String)
        case variableBegin, variableEnd     // {{ }}
        case blockBegin, blockEnd           // {% %}
        case name(String)
        case string(String)
        case integer(Int)
        case float(Double)
        /// Operators and punctuation: + - * / // % ** ~ == != < <= > >= = ( ) [ ] { } , . : |
        case symbol(String)
    }

    var kind: Kind
    var location: SourceLocation
}

/// Splits a template into tokens the way Jinja does with transformers' environment:
/// `trim_blocks=True` (the first newline after a block or comment tag is dropped),
/// `lstrip_blocks=True` (spaces and tabs before a block or comment tag on its own line are
/// dropped), `-` on a delimiter strips all whitespace on that side, `+` turns the
/// trimming off, and one trailing newline of the source is dropped (`keep_trailing_newline=False`).
struct Lexer {
    private let source: [Unicode.Scalar]
    private var position = 0
    private var line = 1
    private var column = 1
    private var tokens = [Token]()
    /// Whether the previous tag ended at the start of a line (lstrip_blocks looks at this).
    private var lineStarting = true

    init(_ text: String) {
        var scalars = [Unicode.Scalar]()
        scalars.reserveCapacity(text.unicodeScalars.count)
        var previousWasCR = false
        for scalar in text.unicodeScalars {
            // Jinja normalizes line endings to "\n".
            if scalar == "\r" { scalars.append("\n"); previousWasCR = true; continue }
            if scalar == "\n" && previousWasCR { previousWasCR = false; continue }
            previousWasCR = false
            scalars.append(scalar)
        }
        if scalars.last == "\n" { scalars.removeLast() }
        source = scalars
    }

    static func tokenize(_ text: String) throws(TemplateError) -> [Token] {
        var lexer = Lexer(text)
        try lexer.run()
        return lexer.tokens
    }

    private var here: SourceLocation { SourceLocation(line: line, column: column) }

    private func peek(_ offset: Int = 0) -> Unicode.Scalar? {
        let index = position + offset
        return index < source.count ? source[index] : nil
    }

    private func starts(with text: String, at offset: Int = 0) -> Bool {
        var index = position + offset
        for scalar in text.unicodeScalars {
            guard index < source.count, source[index] == scalar else { return false }
            index += 1
        }
        return true
    }

    private mutating func advance(_ count: Int = 1) {
        for _ in 0..<count where position < source.count {
            if source[position] == "\n" { line += 1; column = 1 } else { column += 1 }
            position += 1
        }
    }

    private mutating func run() throws(TemplateError) {
        var text = [Unicode.Scalar]()
        var textStart = here
        while position < source.count {
            guard peek() == "{", let second = peek(1), second == "{" || second == "%" || second == "#" else {
                text.append(source[position])
                advance()
                continue
            }
            let sign = peek(2)
            if sign == "-" {
                while let last = text.last, last.properties.isWhitespace { text.removeLast() }
            } else if sign != "+" && second != "{" {
                stripLineIndent(&text)
            }
            if !text.isEmpty { tokens.append(Token(kind: .text(String(String.UnicodeScalarView(text))), location: textStart)) }
            text.removeAll()
            let tagStart = here
            advance(sign == "-" || sign == "+" ? 3 : 2)
            switch second {
            case "#": try skipComment(from: tagStart)
            case "{":
                tokens.append(Token(kind: .variableBegin, location: tagStart))
                try lexExpression(closing: "}}", endKind: .variableEnd, trims: false, openedAt: tagStart)
            default:
                tokens.append(Token(kind: .blockBegin, location: tagStart))
                try lexExpression(closing: "%}", endKind: .blockEnd, trims: true, openedAt: tagStart)
            }
            textStart = here
        }
        if !text.isEmpty { tokens.append(Token(kind: .text(String(String.UnicodeScalarView(text))), location: textStart)) }
    }

    /// lstrip_blocks: drop the spaces and tabs that stand alone before a tag on its line.
    private func stripLineIndent(_ text: inout [Unicode.Scalar]) {
        let lineStart = (text.lastIndex(of: "\n").map { $0 + 1 }) ?? 0
        guard lineStart > 0 || lineStarting else { return }
        if text[lineStart...].allSatisfy({ $0 == " " || $0 == "\t" }) { text.removeSubrange(lineStart...) }
    }

    /// After a closing delimiter: `-` strips all following whitespace, `+` nothing, and a
    /// plain block or comment end drops one newline (trim_blocks).
    private mutating func afterClose(sign: Unicode.Scalar?, trims: Bool) {
        var consumedNewline = false
        if sign == "-" {
            while let next = peek(), next.properties.isWhitespace { consumedNewline = next == "\n"; advance() }
        } else if sign != "+" && trims && peek() == "\n" {
            advance()
            consumedNewline = true
        }
        lineStarting = consumedNewline
    }

    private mutating func skipComment(from start: SourceLocation) throws(TemplateError) {
        while position < source.count {
            if starts(with: "#}") || ((peek() == "-" || peek() == "+") && starts(with: "#}", at: 1)) {
                let sign = peek() == "#" ? nil : peek()
                advance(sign == nil ? 2 : 3)
                afterClose(sign: sign, trims: true)
                return
            }
            advance()
        }
        throw TemplateError(.syntax, "comment not closed with #}", at: start)
    }

    private mutating func lexExpression(closing: String, endKind: Token.Kind, trims: Bool, openedAt start: SourceLocation) throws(TemplateError) {
        var depth = 0   // open ( [ { inside the tag, so `}}` of a nested dict does not close it
        while true {
            while let next = peek(), next.properties.isWhitespace { advance() }
            guard let scalar = peek() else { throw TemplateError(.syntax, "tag not closed with \(closing)", at: start) }
            if depth == 0 {
                if (scalar == "-" || (scalar == "+" && trims)) && starts(with: closing, at: 1) {
                    tokens.append(Token(kind: endKind, location: here))
                    advance(3)
                    afterClose(sign: scalar, trims: trims)
                    return
                }
                if starts(with: closing) {
                    tokens.append(Token(kind: endKind, location: here))
                    advance(2)
                    afterClose(sign: nil, trims: trims)
                    return
                }
            }
            let location = here
            if scalar == "_" || scalar.properties.isAlphabetic {
                var name = ""
                while let next = peek(), next == "_" || next.properties.isAlphabetic || next.properties.numericType != nil {
                    name.unicodeScalars.append(next)
                    advance()
                }
                tokens.append(Token(kind: .name(name), location: location))
            } else if ("0"..."9").contains(scalar) {
                tokens.append(Token(kind: try lexNumber(), location: location))
            } else if scalar == "'" || scalar == "\"" {
                tokens.append(Token(kind: .string(try lexString(quote: scalar)), location: location))
            } else {
                let symbol = ["**", "//", "==", "!=", "<=", ">="].first { starts(with: $0) }
                    ?? String(scalar)
                guard symbol.count == 2 || "+-*/%~<>=()[]{},.:|".unicodeScalars.contains(scalar) else {
                    throw TemplateError(.syntax, "unexpected character '\(scalar)'", at: location)
                }
                if "([{".contains(symbol) { depth += 1 }
                if ")]}".contains(symbol) { depth = max(0, depth - 1) }
                advance(symbol.count)
                tokens.append(Token(kind: .symbol(symbol), location: location))
            }
        }
    }

    private mutating func lexNumber() throws(TemplateError) -> Token.Kind {
        let start = here
        var digits = ""
        func take(_ lexer: inout Lexer, into text: inout String) {
            while let next = lexer.peek(), ("0"..."9").contains(next) || next == "_" {
                if next != "_" { text.unicodeScalars.append(next) }
                lexer.advance()
            }
        }
        take(&self, into: &digits)
        var isFloat = false
        if peek() == ".", let after = peek(1), ("0"..."9").contains(after) {
            isFloat = true
            digits.append(".")
            advance()
            take(&self, into: &digits)
        }
        if let e = peek(), e == "e" || e == "E" {
            let signed = peek(1) == "+" || peek(1) == "-"
            if let digit = peek(signed ? 2 : 1), ("0"..."9").contains(digit) {
                isFloat = true
                digits.append("e")
                if signed { digits.unicodeScalars.append(peek(1)!) }
                advance(signed ? 2 : 1)
                take(&self, into: &digits)
            }
        }
        if isFloat {
            guard let value = Double(digits) else { throw TemplateError(.syntax, "bad number \(digits)", at: start) }
            return .float(value)
        }
        guard let value = Int(digits) else { throw TemplateError(.syntax, "integer \(digits) is too large", at: start) }
        return .integer(value)
    }

    /// A quoted string with Python's escapes (Jinja decodes literals with `unicode-escape`).
    private mutating func lexString(quote: Unicode.Scalar) throws(TemplateError) -> String {
        let start = here
        advance()
        var value = String.UnicodeScalarView()
        while let scalar = peek() {
            advance()
            if scalar == quote { return String(value) }
            guard scalar == "\\", let escaped = peek() else { value.append(scalar); continue }
            advance()
            switch escaped {
            case "n": value.append("\n")
            case "t": value.append("\t")
            case "r": value.append("\r")
            case "0": value.append("\0")
            case "b": value.append("\u{08}")
            case "f": value.append("\u{0C}")
            case "v": value.append("\u{0B}")
            case "a": value.append("\u{07}")
            case "\\", "'", "\"": value.append(escaped)
            case "\n": break   // a backslash-newline continues the line
            case "x", "u", "U":
                let width = escaped == "x" ? 2 : escaped == "u" ? 4 : 8
                var hex = ""
                for _ in 0..<width {
                    guard let digit = peek(), digit.properties.isASCIIHexDigit else {
                        throw TemplateError(.syntax, "truncated \\\(escaped) escape in a string", at: start)
                    }
                    hex.unicodeScalars.append(digit)
                    advance()
                }
                guard let code = UInt32(hex, radix: 16), let decoded = Unicode.Scalar(code) else {
                    throw TemplateError(.syntax, "invalid \\\(escaped)\(hex) escape in a string", at: start)
                }
                value.append(decoded)
            default:
                // Python keeps unknown escapes as written.
                value.append("\\")
                value.append(escaped)
            }
        }
        throw TemplateError(.syntax, "string not closed", at: start)
    }
}
