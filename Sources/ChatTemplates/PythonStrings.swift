/// Python's string operations, on Unicode code points.
///
/// Swift compares `String`s by canonical equivalence ("é" precomposed equals "e" + U+0301)
/// and counts grapheme clusters; Python compares and counts code points. Templates are
/// rendered to match transformers byte for byte, so everything here works on scalars.
extension String {
    var scalars: [Unicode.Scalar] { Array(unicodeScalars) }

    init(scalars: some Sequence<Unicode.Scalar>) {
        self.init(String.UnicodeScalarView(scalars))
    }

    func pythonEquals(_ other: String) -> Bool {
        unicodeScalars.elementsEqual(other.unicodeScalars)
    }

    func pythonHasPrefix(_ prefix: String) -> Bool {
        unicodeScalars.starts(with: prefix.unicodeScalars)
    }

    func pythonHasSuffix(_ suffix: String) -> Bool {
        unicodeScalars.reversed().starts(with: suffix.unicodeScalars.reversed())
    }

    /// Start offsets (in scalars) of the non-overlapping occurrences of `pattern`.
    func pythonOccurrences(of pattern: String, limit: Int = .max) -> [Int] {
        let text = scalars, needle = pattern.scalars
        guard !needle.isEmpty, needle.count <= text.count else { return [] }
        var found = [Int]()
        var index = 0
        while index + needle.count <= text.count, found.count < limit {
            if text[index..<index + needle.count].elementsEqual(needle) {
                found.append(index)
                index += needle.count
            } else {
                index += 1
            }
        }
        return found
    }

    func pythonContains(_ part: String) -> Bool {
        part.isEmpty || !pythonOccurrences(of: part, limit: 1).isEmpty
    }

    func pythonFind(_ part: String) -> Int {
        part.isEmpty ? 0 : pythonOccurrences(of: part, limit: 1).first ?? -1
    }

    /// `str.replace(old, new[, count])`; an empty `old` inserts `new` between all code points.
    func pythonReplace(_ old: String, _ new: String, count: Int = -1) -> String {
        let text = scalars
        let limit = count < 0 ? Int.max : count
        if old.isEmpty {
            var out = [Unicode.Scalar]()
            var inserted = 0
            for scalar in text {
                if inserted < limit { out += new.unicodeScalars; inserted += 1 }
                out.append(scalar)
            }
            if inserted < limit { out += new.unicodeScalars }
            return String(scalars: out)
        }
        var out = [Unicode.Scalar]()
        var last = 0
        for start in pythonOccurrences(of: old, limit: limit) {
            out += text[last..<start]
            out += new.unicodeScalars
            last = start + old.unicodeScalars.count
        }
        out += text[last...]
        return String(scalars: out)
    }

    /// `str.split(sep, maxsplit)`; without `sep`, runs of whitespace separate and ends are trimmed.
    func pythonSplit(_ separator: String?, maxSplit: Int = -1) -> [String] {
        let text = scalars
        let limit = maxSplit < 0 ? Int.max : maxSplit
        guard let separator else {
            var parts = [String]()
            var index = 0
            while index < text.count {
                while index < text.count, text[index].properties.isWhitespace { index += 1 }
                guard index < text.count else { break }
                if parts.count == limit {
                    parts.append(String(scalars: text[index...]).pythonStrip(nil, leading: false, trailing: true))
                    break
                }
                let start = index
                while index < text.count, !text[index].properties.isWhitespace { index += 1 }
                parts.append(String(scalars: text[start..<index]))
            }
            return parts
        }
        var parts = [String]()
        var last = 0
        for start in pythonOccurrences(of: separator, limit: limit) {
            parts.append(String(scalars: text[last..<start]))
            last = start + separator.unicodeScalars.count
        }
        parts.append(String(scalars: text[last...]))
        return parts
    }

    /// `str.strip/lstrip/rstrip([chars])`.
    func pythonStrip(_ characters: String?, leading: Bool = true, trailing: Bool = true) -> String {
        let set = characters.map { Set($0.unicodeScalars) }
        func strippable(_ scalar: Unicode.Scalar) -> Bool { set?.contains(scalar) ?? scalar.properties.isWhitespace }
        var text = scalars[...]
        if leading { while let first = text.first, strippable(first) { text.removeFirst() } }
        if trailing { while let last = text.last, strippable(last) { text.removeLast() } }
        return String(scalars: text)
    }

    /// Python's `str.title()`: a letter after a non-letter is upper-cased, the rest lowered.
    var pythonTitle: String {
        var out = ""
        var previousIsLetter = false
        for scalar in unicodeScalars {
            let isLetter = scalar.properties.isAlphabetic
            out += isLetter ? (previousIsLetter ? String(scalar).lowercased() : String(scalar).uppercased()) : String(scalar)
            previousIsLetter = isLetter
        }
        return out
    }

    /// `str.capitalize()`: the first code point upper-cased, the rest lowered.
    var pythonCapitalize: String {
        guard let first = unicodeScalars.first else { return self }
        return String(first).uppercased() + String(scalars: unicodeScalars.dropFirst()).lowercased()
    }
}
