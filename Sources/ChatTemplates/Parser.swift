/// Builds statements and expressions from tokens, with Jinja's grammar and precedence
/// (lowest first): `x if c else y`, `or`, `and`, `not`, comparisons and `in`, `+ -`, `~`,
/// `* / // %`, `**`, unary `- +`, then postfix `.a [i] (args)` and filters `|f` / tests
/// `is t`, which bind tighter than any operator (`a + b | trim` trims only `b`).
struct Parser {
    private let tokens: [Token]
    private var index = 0
    /// How deeply expressions nest right now; bounded so a hostile template cannot
    /// exhaust the stack.
    private var nesting = 0
    static let maximumNesting = 32

    init(tokens: [Token]) {
        self.tokens = tokens
    }

    static func parse(_ source: String) throws(TemplateError) -> [Statement] {
        var parser = Parser(tokens: try Lexer.tokenize(source))
        let (body, end) = try parser.parseStatements(until: [])
        if let end { throw TemplateError(.syntax, "unexpected '\(end.name)' without an opening tag", at: end.location) }
        return body
    }

    // MARK: - Tokens

    private var current: Token? { index < tokens.count ? tokens[index] : nil }
    private var location: SourceLocation { current?.location ?? tokens.last?.location ?? SourceLocation(line: 1, column: 1) }

    private func describe(_ token: Token?) -> String {
        switch token?.kind {
        case nil: return "end of template"
        case .text?: return "template text"
        case .variableBegin?: return "'{{'"
        case .variableEnd?: return "end of print statement '}}'"
        case .blockBegin?: return "'{%'"
        case .blockEnd?: return "end of statement block '%}'"
        case let .name(name)?: return "'\(name)'"
        case let .string(text)?: return "string '\(text)'"
        case let .integer(value)?: return "integer \(value)"
        case let .float(value)?: return "number \(value)"
        case let .symbol(symbol)?: return "'\(symbol)'"
        }
    }

    private func isSymbol(_ symbol: String) -> Bool { current?.kind == .symbol(symbol) }
    private func isName(_ name: String) -> Bool { current?.kind == .name(name) }

    private mutating func skipSymbol(_ symbol: String) -> Bool {
        guard isSymbol(symbol) else { return false }
        index += 1
        return true
    }

    private mutating func skipName(_ name: String) -> Bool {
        guard isName(name) else { return false }
        index += 1
        return true
    }

    private mutating func expectSymbol(_ symbol: String) throws(TemplateError) {
        guard skipSymbol(symbol) else { throw TemplateError(.syntax, "expected '\(symbol)', got \(describe(current))", at: location) }
    }

    private mutating func expectName() throws(TemplateError) -> String {
        guard case let .name(name)? = current?.kind else { throw TemplateError(.syntax, "expected a name, got \(describe(current))", at: location) }
        index += 1
        return name
    }

    private mutating func expectBlockEnd() throws(TemplateError) {
        guard current?.kind == .blockEnd else { throw TemplateError(.syntax, "expected end of statement block '%}', got \(describe(current))", at: location) }
        index += 1
    }

    // MARK: - Statements

    /// A closing or middle tag (`endif`, `elif`, `else`, …) that ended a body.
    struct EndTag {
        var name: String
        var location: SourceLocation
    }

    /// Statements until one of `ends` (its `{% name` consumed, the rest of the tag not), or
    /// the end of the template when `ends` is empty.
    private mutating func parseStatements(until ends: Set<String>) throws(TemplateError) -> ([Statement], EndTag?) {
        try enter()
        defer { nesting -= 1 }
        var body = [Statement]()
        while let token = current {
            switch token.kind {
            case let .text(text):
                body.append(Statement(kind: .text(text), location: token.location))
                index += 1
            case .variableBegin:
                index += 1
                let expression = try parseTupleOrExpression()
                guard current?.kind == .variableEnd else { throw TemplateError(.syntax, "expected end of print statement '}}', got \(describe(current))", at: location) }
                index += 1
                body.append(Statement(kind: .output(expression), location: token.location))
            case .blockBegin:
                index += 1
                let tagLocation = location
                let tag = try expectName()
                if ends.contains(tag) { return (body, EndTag(name: tag, location: tagLocation)) }
                body.append(try parseTag(tag, at: tagLocation))
            default:
                throw TemplateError(.syntax, "unexpected \(describe(token))", at: token.location)
            }
        }
        if !ends.isEmpty {
            throw TemplateError(.syntax, "template ended inside a block; expected one of \(ends.sorted().joined(separator: ", "))", at: location)
        }
        return (body, nil)
    }

    private mutating func parseTag(_ tag: String, at tagLocation: SourceLocation) throws(TemplateError) -> Statement {
        switch tag {
        case "if": return try parseIf(at: tagLocation)
        case "for": return try parseFor(at: tagLocation)
        case "set": return try parseSet(at: tagLocation)
        case "macro": return try parseMacro(at: tagLocation)
        case "break", "continue":
            try expectBlockEnd()
            return Statement(kind: tag == "break" ? .breakLoop : .continueLoop, location: tagLocation)
        case "generation":
            try expectBlockEnd()
            let (body, _) = try parseStatements(until: ["endgeneration"])
            try expectBlockEnd()
            return Statement(kind: .generation(body), location: tagLocation)
        case "elif", "else", "endif", "endfor", "endset", "endmacro", "endgeneration":
            throw TemplateError(.syntax, "unexpected '\(tag)' without an opening tag", at: tagLocation)
        case "call", "filter", "with", "block", "extends", "include", "import", "from", "raw", "autoescape", "do":
            throw TemplateError(.unsupported, "the '\(tag)' tag", at: tagLocation)
        default:
            throw TemplateError(.syntax, "encountered unknown tag '\(tag)'", at: tagLocation)
        }
    }

    private mutating func parseIf(at tagLocation: SourceLocation) throws(TemplateError) -> Statement {
        var branches = [(condition: Expression, body: [Statement])]()
        var condition = try parseExpression()
        while true {
            try expectBlockEnd()
            let (body, end) = try parseStatements(until: ["elif", "else", "endif"])
            branches.append((condition, body))
            switch end!.name {
            case "elif":
                condition = try parseExpression()
            case "else":
                try expectBlockEnd()
                let (otherwise, _) = try parseStatements(until: ["endif"])
                try expectBlockEnd()
                return Statement(kind: .ifChain(branches, otherwise: otherwise), location: tagLocation)
            default:
                try expectBlockEnd()
                return Statement(kind: .ifChain(branches, otherwise: []), location: tagLocation)
            }
        }
    }

    private mutating func parseFor(at tagLocation: SourceLocation) throws(TemplateError) -> Statement {
        let target = try parseTargetNames()
        guard skipName("in") else { throw TemplateError(.syntax, "expected 'in' in a for loop, got \(describe(current))", at: location) }
        // The iterable is parsed without the inline `if`, which filters the loop instead.
        let iterable = try parseOr()
        let filter = skipName("if") ? try parseExpression() : nil
        if isName("recursive") { throw TemplateError(.unsupported, "recursive for loops", at: location) }
        try expectBlockEnd()
        let (body, end) = try parseStatements(until: ["else", "endfor"])
        var otherwise = [Statement]()
        if end!.name == "else" {
            try expectBlockEnd()
            (otherwise, _) = try parseStatements(until: ["endfor"])
        }
        try expectBlockEnd()
        return Statement(kind: .forLoop(target: target, iterable: iterable, filter: filter, body: body, otherwise: otherwise), location: tagLocation)
    }

    /// `x` or `a, b` (optionally in parentheses) as a loop or set target.
    private mutating func parseTargetNames() throws(TemplateError) -> AssignmentTarget {
        let parenthesized = skipSymbol("(")
        var names = [try expectName()]
        while skipSymbol(",") {
            if isName("in") || isSymbol("=") || isSymbol(")") { break }
            names.append(try expectName())
        }
        if parenthesized { try expectSymbol(")") }
        return names.count == 1 && !parenthesized ? .name(names[0]) : .names(names)
    }

    private mutating func parseSet(at tagLocation: SourceLocation) throws(TemplateError) -> Statement {
        let first = try expectName()
        var target = AssignmentTarget.name(first)
        if skipSymbol(".") {
            target = .attribute(first, try expectName())
        } else if isSymbol(",") {
            var names = [first]
            while skipSymbol(",") { names.append(try expectName()) }
            target = .names(names)
        }
        if current?.kind == .blockEnd, case let .name(name) = target {
            index += 1
            let (body, _) = try parseStatements(until: ["endset"])
            try expectBlockEnd()
            return Statement(kind: .setBlock(name, body), location: tagLocation)
        }
        try expectSymbol("=")
        let value = try parseTupleOrExpression()
        try expectBlockEnd()
        return Statement(kind: .set(target, value), location: tagLocation)
    }

    private mutating func parseMacro(at tagLocation: SourceLocation) throws(TemplateError) -> Statement {
        let name = try expectName()
        try expectSymbol("(")
        var parameters = [(name: String, defaultValue: Expression?)]()
        while !skipSymbol(")") {
            if !parameters.isEmpty { try expectSymbol(",") }
            if skipSymbol(")") { break }
            let parameter = try expectName()
            parameters.append((parameter, skipSymbol("=") ? try parseExpression() : nil))
        }
        try expectBlockEnd()
        let (body, _) = try parseStatements(until: ["endmacro"])
        if case .name? = current?.kind { index += 1 }   // `{% endmacro name %}`
        try expectBlockEnd()
        return Statement(kind: .macro(MacroDefinition(name: name, parameters: parameters, body: body)), location: tagLocation)
    }

    // MARK: - Expressions

    /// An expression, or several separated by commas (a tuple), as `{{ }}` and `set` allow.
    private mutating func parseTupleOrExpression() throws(TemplateError) -> Expression {
        let start = location
        let first = try parseExpression()
        guard isSymbol(",") else { return first }
        var items = [first]
        while skipSymbol(",") {
            if current?.kind == .blockEnd || current?.kind == .variableEnd { break }
            items.append(try parseExpression())
        }
        return Expression(kind: .tuple(items), location: start)
    }

    private mutating func enter(by levels: Int = 1) throws(TemplateError) {
        nesting += levels
        guard nesting <= Parser.maximumNesting else {
            throw TemplateError(.unsupported, "expressions nested more than \(Parser.maximumNesting) deep", at: location)
        }
    }

    mutating func parseExpression() throws(TemplateError) -> Expression {
        try enter()
        defer { nesting -= 1 }
        let start = location
        let value = try parseOr()
        guard skipName("if") else { return value }
        let condition = try parseOr()
        let otherwise = skipName("else") ? try parseExpression() : nil
        return Expression(kind: .conditional(then: value, condition: condition, otherwise: otherwise), location: start)
    }

    private mutating func parseOr() throws(TemplateError) -> Expression {
        var left = try parseAnd()
        while isName("or") {
            let at = location
            index += 1
            left = Expression(kind: .or(left, try parseAnd()), location: at)
        }
        return left
    }

    private mutating func parseAnd() throws(TemplateError) -> Expression {
        var left = try parseNot()
        while isName("and") {
            let at = location
            index += 1
            left = Expression(kind: .and(left, try parseNot()), location: at)
        }
        return left
    }

    private mutating func parseNot() throws(TemplateError) -> Expression {
        // `not not x`: the prefixes are counted, not recursed into.
        var prefixes = [SourceLocation]()
        while isName("not") {
            prefixes.append(location)
            index += 1
            if prefixes.count > Parser.maximumNesting { try enter(by: prefixes.count) }
        }
        var node = try parseComparison()
        for at in prefixes.reversed() { node = Expression(kind: .unary("not", node), location: at) }
        return node
    }

    private mutating func parseComparison() throws(TemplateError) -> Expression {
        var left = try parseAdditive()
        while true {
            let at = location
            let op: String
            if case let .symbol(symbol)? = current?.kind, ["==", "!=", "<", "<=", ">", ">="].contains(symbol) {
                op = symbol
                index += 1
            } else if isName("in") {
                op = "in"
                index += 1
            } else if isName("not"), index + 1 < tokens.count, tokens[index + 1].kind == .name("in") {
                op = "not in"
                index += 2
            } else {
                return left
            }
            // Jinja chains comparisons (`a < b < c` means `a < b and b < c`); chat templates
            // compare pairs, so a chain is read as nested pairs here: `(a < b) < c`.
            left = Expression(kind: .binary(op, left, try parseAdditive()), location: at)
        }
    }

    private mutating func parseAdditive() throws(TemplateError) -> Expression {
        var left = try parseConcat()
        while case let .symbol(symbol)? = current?.kind, symbol == "+" || symbol == "-" {
            let at = location
            index += 1
            left = Expression(kind: .binary(symbol, left, try parseConcat()), location: at)
        }
        return left
    }

    private mutating func parseConcat() throws(TemplateError) -> Expression {
        var left = try parseMultiplicative()
        while isSymbol("~") {
            let at = location
            index += 1
            left = Expression(kind: .binary("~", left, try parseMultiplicative()), location: at)
        }
        return left
    }

    private mutating func parseMultiplicative() throws(TemplateError) -> Expression {
        var left = try parsePower()
        while case let .symbol(symbol)? = current?.kind, ["*", "/", "//", "%"].contains(symbol) {
            let at = location
            index += 1
            left = Expression(kind: .binary(symbol, left, try parsePower()), location: at)
        }
        return left
    }

    private mutating func parsePower() throws(TemplateError) -> Expression {
        var left = try parseUnary(withFilters: true)
        while isSymbol("**") {
            let at = location
            index += 1
            left = Expression(kind: .binary("**", left, try parseUnary(withFilters: true)), location: at)
        }
        return left
    }

    private mutating func parseUnary(withFilters: Bool) throws(TemplateError) -> Expression {
        // `- - x`: Jinja applies filters to the whole negation (`-x|abs` is `(-x)|abs`).
        var prefixes = [(symbol: String, at: SourceLocation)]()
        while case let .symbol(symbol)? = current?.kind, symbol == "-" || symbol == "+" {
            prefixes.append((symbol, location))
            index += 1
            if prefixes.count > Parser.maximumNesting { try enter(by: prefixes.count) }
        }
        var node = try parsePostfix(try parsePrimary())
        for prefix in prefixes.reversed() { node = Expression(kind: .unary(prefix.symbol, node), location: prefix.at) }
        return withFilters ? try parseFiltersAndTests(node) : node
    }

    private mutating func parsePrimary() throws(TemplateError) -> Expression {
        let at = location
        guard let token = current else { throw TemplateError(.syntax, "expected an expression, got end of template", at: at) }
        switch token.kind {
        case let .name(name):
            index += 1
            switch name {
            case "true", "True": return Expression(kind: .literal(.bool(true)), location: at)
            case "false", "False": return Expression(kind: .literal(.bool(false)), location: at)
            case "none", "None": return Expression(kind: .literal(.none), location: at)
            default: return Expression(kind: .name(name), location: at)
            }
        case var .string(text):
            index += 1
            // Adjacent literals concatenate, as in Python.
            while case let .string(more)? = current?.kind { text += more; index += 1 }
            return Expression(kind: .literal(.string(text)), location: at)
        case let .integer(value):
            index += 1
            return Expression(kind: .literal(.integer(value)), location: at)
        case let .float(value):
            index += 1
            return Expression(kind: .literal(.float(value)), location: at)
        case .symbol("("):
            index += 1
            if skipSymbol(")") { return Expression(kind: .tuple([]), location: at) }
            let first = try parseExpression()
            if skipSymbol(")") { return first }
            var items = [first]
            while skipSymbol(",") {
                if isSymbol(")") { break }
                items.append(try parseExpression())
            }
            try expectSymbol(")")
            return Expression(kind: .tuple(items), location: at)
        case .symbol("["):
            index += 1
            var items = [Expression]()
            while !skipSymbol("]") {
                if !items.isEmpty { try expectSymbol(","); if skipSymbol("]") { break } }
                items.append(try parseExpression())
            }
            return Expression(kind: .list(items), location: at)
        case .symbol("{"):
            index += 1
            var pairs = [(key: Expression, value: Expression)]()
            while !skipSymbol("}") {
                if !pairs.isEmpty { try expectSymbol(","); if skipSymbol("}") { break } }
                let key = try parseExpression()
                try expectSymbol(":")
                pairs.append((key, try parseExpression()))
            }
            return Expression(kind: .dict(pairs), location: at)
        default:
            throw TemplateError(.syntax, "expected an expression, got \(describe(token))", at: at)
        }
    }

    private mutating func parsePostfix(_ base: Expression) throws(TemplateError) -> Expression {
        var node = base
        while true {
            let at = location
            if skipSymbol(".") {
                switch current?.kind {
                case let .name(name)?:
                    index += 1
                    node = Expression(kind: .attribute(node, name), location: at)
                case let .integer(value)?:
                    index += 1
                    node = Expression(kind: .item(node, Expression(kind: .literal(.integer(value)), location: at)), location: at)
                default:
                    throw TemplateError(.syntax, "expected an attribute name after '.', got \(describe(current))", at: at)
                }
            } else if skipSymbol("[") {
                node = try parseSubscript(node, at: at)
            } else if isSymbol("(") {
                node = Expression(kind: .call(node, try parseCallArguments()), location: at)
            } else {
                return node
            }
        }
    }

    private mutating func parseSubscript(_ base: Expression, at: SourceLocation) throws(TemplateError) -> Expression {
        var parts: [Expression?] = []
        var sawColon = false
        var part: Expression? = nil
        while true {
            if skipSymbol(":") {
                sawColon = true
                parts.append(part)
                part = nil
            } else if skipSymbol("]") {
                parts.append(part)
                break
            } else {
                guard part == nil else { throw TemplateError(.syntax, "expected ':' or ']' in a subscript, got \(describe(current))", at: location) }
                part = try parseExpression()
            }
        }
        if !sawColon {
            guard let only = parts.first ?? nil else { throw TemplateError(.syntax, "empty subscript []", at: at) }
            return Expression(kind: .item(base, only), location: at)
        }
        guard parts.count <= 3 else { throw TemplateError(.syntax, "a slice takes at most start:stop:step", at: at) }
        let padded = parts + Array(repeating: nil, count: 3 - parts.count)
        return Expression(kind: .slice(base, padded[0], padded[1], padded[2]), location: at)
    }

    private mutating func parseCallArguments() throws(TemplateError) -> Arguments {
        try expectSymbol("(")
        var arguments = Arguments()
        while !skipSymbol(")") {
            if !arguments.positional.isEmpty || !arguments.keyword.isEmpty {
                try expectSymbol(",")
                if skipSymbol(")") { break }
            }
            if case let .name(name)? = current?.kind, index + 1 < tokens.count, tokens[index + 1].kind == .symbol("=") {
                index += 2
                arguments.keyword.append((name, try parseExpression()))
            } else {
                guard arguments.keyword.isEmpty else { throw TemplateError(.syntax, "a positional argument follows a keyword argument", at: location) }
                arguments.positional.append(try parseExpression())
            }
        }
        return arguments
    }

    private mutating func parseFiltersAndTests(_ base: Expression) throws(TemplateError) -> Expression {
        var node = base
        while true {
            let at = location
            if skipSymbol("|") {
                var name = try expectName()
                while skipSymbol(".") { name += "." + (try expectName()) }
                let arguments = isSymbol("(") ? try parseCallArguments() : Arguments()
                node = try parsePostfix(Expression(kind: .filter(node, name: name, arguments), location: at))
            } else if isName("is") {
                index += 1
                let negated = skipName("not")
                let name = try expectName()
                var arguments = Arguments()
                if isSymbol("(") {
                    arguments = try parseCallArguments()
                } else if let token = current, startsTestArgument(token) {
                    // `x is divisibleby 3`, `x is sameas none`: one argument without parentheses.
                    arguments.positional = [try parsePostfix(try parsePrimary())]
                }
                node = Expression(kind: .test(node, name: name, arguments, negated: negated), location: at)
            } else if isSymbol("(") {
                node = Expression(kind: .call(node, try parseCallArguments()), location: at)
            } else {
                return node
            }
        }
    }

    private func startsTestArgument(_ token: Token) -> Bool {
        switch token.kind {
        case let .name(name): return !["else", "or", "and", "if", "in", "not", "is"].contains(name)
        case .string, .integer, .float: return true
        case .symbol("["), .symbol("{"): return true
        default: return false
        }
    }
}
