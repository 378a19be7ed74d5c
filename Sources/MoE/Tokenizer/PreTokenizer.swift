/// Splits text into the pieces BPE runs on, with the split patterns that byte-level BPE
/// tokenizers declare. The two patterns found in practice (GPT-2's and Qwen2's) are matched
/// by hand on Unicode scalars, following the regex semantics exactly (ordered alternation,
/// greedy runs with backtracking for the look-ahead), which is both faster and more
/// predictable than a general regex engine.
enum SplitPattern: Sendable, Equatable {
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    case gpt2
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    case qwen2

    static let gpt2Source = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    static let qwen2Source = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    init?(source: String) {
        switch source {
        case Self.gpt2Source: self = .gpt2
        case Self.qwen2Source: self = .qwen2
        default: return nil
        }
    }

    /// The pieces of `text`, in order; together they cover the text exactly.
    func split(_ text: String) -> [Substring] {
        let scalars = Array(text.unicodeScalars)
        var pieces = [Substring]()
        var scalarIndex = 0
        var stringIndex = text.unicodeScalars.startIndex
        while scalarIndex < scalars.count {
            let length = matchLength(scalars, at: scalarIndex)
            let end = text.unicodeScalars.index(stringIndex, offsetBy: length)
            pieces.append(Substring(text.unicodeScalars[stringIndex..<end]))
            stringIndex = end
            scalarIndex += length
        }
        return pieces
    }

    /// Length (in scalars) of the match starting at `i`; at least 1.
    private func matchLength(_ s: [Unicode.Scalar], at i: Int) -> Int {
        switch self {
        case .gpt2:
            if let n = contraction(s, i, caseInsensitive: false) { return n }
            let space = s[i] == " " ? 1 : 0
            if let n = run(s, i + space, where: isLetter) { return space + n }
            if let n = run(s, i + space, where: isNumber) { return space + n }
            if let n = run(s, i + space, where: isOther) { return space + n }
            return whitespace(s, i)
        case .qwen2:
            if let n = contraction(s, i, caseInsensitive: true) { return n }
            if !isNewline(s[i]) && !isLetter(s[i]) && !isNumber(s[i]), let n = run(s, i + 1, where: isLetter) { return 1 + n }
            if let n = run(s, i, where: isLetter) { return n }
            if isNumber(s[i]) { return 1 }
            let space = s[i] == " " ? 1 : 0
            if let n = run(s, i + space, where: isOther) {
                let newlines = run(s, i + space + n, where: isNewline) ?? 0
                return space + n + newlines
            }
            // \s*[\r\n]+ : the whitespace run up to and including its last newline.
            let spaces = run(s, i, where: isWhitespace) ?? 0
            if let lastNewline = (i..<(i + spaces)).last(where: { isNewline(s[$0]) }) { return lastNewline - i + 1 }
            return whitespace(s, i)
        }
    }

    /// `\s+(?!\S)|\s+` at `i` (where the other alternatives failed, so `s[i]` is whitespace or
    /// a lone character no class covers).
    private func whitespace(_ s: [Unicode.Scalar], _ i: Int) -> Int {
        guard let n = run(s, i, where: isWhitespace) else { return 1 }
        // Followed by text: back off one so the last space goes with the next word.
        if i + n < s.count && n > 1 { return n - 1 }
        return n
    }

    private func contraction(_ s: [Unicode.Scalar], _ i: Int, caseInsensitive: Bool) -> Int? {
        guard s[i] == "'" else { return nil }
        for suffix in ["s", "t", "re", "ve", "m", "ll", "d"] {
            let letters = Array(suffix.unicodeScalars)
            guard i + letters.count < s.count else { continue }
            let matches = letters.indices.allSatisfy { k in
                let c = s[i + 1 + k]
                return caseInsensitive ? c.properties.lowercaseMapping == String(letters[k]) : c == letters[k]
            }
            if matches { return 1 + letters.count }
        }
        return nil
    }

    /// Length of the run of scalars satisfying `predicate` starting at `i`, nil if empty.
    private func run(_ s: [Unicode.Scalar], _ i: Int, where predicate: (Unicode.Scalar) -> Bool) -> Int? {
        var j = i
        while j < s.count && predicate(s[j]) { j += 1 }
        return j > i ? j - i : nil
    }
}

private func isLetter(_ c: Unicode.Scalar) -> Bool {
    switch c.properties.generalCategory {
    case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
    default: return false
    }
}

private func isNumber(_ c: Unicode.Scalar) -> Bool {
    switch c.properties.generalCategory {
    case .decimalNumber, .letterNumber, .otherNumber: return true
    default: return false
    }
}

private func isWhitespace(_ c: Unicode.Scalar) -> Bool { c.properties.isWhitespace }
private func isNewline(_ c: Unicode.Scalar) -> Bool { c == "\r" || c == "\n" }
/// `[^\s\p{L}\p{N}]`
private func isOther(_ c: Unicode.Scalar) -> Bool { !isWhitespace(c) && !isLetter(c) && !isNumber(c) }
