import Foundation
import Synchronization

// Splitting text into the pieces that BPE runs on, as HF's pre-tokenizers do.
//
// The split patterns found in practice (GPT-2's, used by the ByteLevel pre-tokenizer, and
// Qwen2's / Llama 3's, used in a Split) are matched by hand on Unicode scalars with the exact
// semantics of the Oniguruma regex HF runs (ordered alternation, greedy runs, backing off for
// the `(?!\S)` look-ahead): this is much faster than a regex engine and does not depend on
// its Unicode tables. Any other pattern goes through Swift's `Regex` on Unicode scalars.

/// Character classes of the split patterns: `\p{L}`, `\p{N}` and `\s` (Unicode White_Space,
/// as Oniguruma's `\s`); "other" is none of them.
enum TokenizerCharClass {
    static let letter: UInt8 = 1
    static let number: UInt8 = 2
    static let whitespace: UInt8 = 4

    static func compute(_ value: UInt32) -> UInt8 {
        guard let scalar = Unicode.Scalar(value) else { return 0 }
        let properties = scalar.properties
        switch properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return letter
        case .decimalNumber, .letterNumber, .otherNumber: return number
        default: return properties.isWhitespace ? whitespace : 0
        }
    }

    /// The class of every code point of the Basic Multilingual Plane.
    static let basicPlane: [UInt8] = (0..<UInt32(0x10000)).map(compute)
}

/// A piece of text as scalars with their classes and UTF-8 offsets.
struct TokenizerScalars {
    var values: [UInt32] = []
    var classes: [UInt8] = []
    /// Byte offset of each scalar in the piece's base array, plus the end offset.
    var offsets: [Int] = []

    init(_ bytes: ArraySlice<UInt8>) {
        let count = bytes.count
        var scalarCount = 0
        TokenizerCharClass.basicPlane.withUnsafeBufferPointer { table in
            bytes.withUnsafeBufferPointer { buffer in
                values = [UInt32](unsafeUninitializedCapacity: count) { values, valuesCount in
                    classes = [UInt8](unsafeUninitializedCapacity: count) { classes, classesCount in
                        offsets = [Int](unsafeUninitializedCapacity: count + 1) { offsets, offsetsCount in
                            var i = 0
                            var n = 0
                            let base = bytes.startIndex
                            while i < count {
                                let b0 = UInt32(buffer[i])
                                var value: UInt32
                                var length: Int
                                if b0 < 0x80 {
                                    value = b0; length = 1
                                } else if b0 < 0xE0 {
                                    value = (b0 & 0x1F) << 6 | UInt32(buffer[i + 1] & 0x3F); length = 2
                                } else if b0 < 0xF0 {
                                    value = (b0 & 0x0F) << 12 | UInt32(buffer[i + 1] & 0x3F) << 6 | UInt32(buffer[i + 2] & 0x3F)
                                    length = 3
                                } else {
                                    value = (b0 & 0x07) << 18 | UInt32(buffer[i + 1] & 0x3F) << 12
                                        | UInt32(buffer[i + 2] & 0x3F) << 6 | UInt32(buffer[i + 3] & 0x3F)
                                    length = 4
                                }
                                values[n] = value
                                classes[n] = value < 0x10000 ? table[Int(value)] : TokenizerCharClass.compute(value)
                                offsets[n] = base + i
                                n += 1
                                i += length
                            }
                            offsets[n] = base + count
                            offsetsCount = n + 1
                            scalarCount = n
                        }
                        classesCount = scalarCount
                    }
                    valuesCount = scalarCount
                }
            }
        }
    }
}

/// Where a Split's matches go (HF's `SplitDelimiterBehavior`).
enum TokenizerSplitBehavior: String, Sendable {
    case removed = "Removed"
    case isolated = "Isolated"
    case mergedWithPrevious = "MergedWithPrevious"
    case mergedWithNext = "MergedWithNext"
    case contiguous = "Contiguous"
}

/// A compiled Swift regex (for split patterns without a hand-written matcher). `Regex` is not
/// `Sendable` (it compiles itself lazily), so it is held in a `Mutex` and matching is serialized.
final class TokenizerRegex: Sendable {
    private let regex: Mutex<Regex<AnyRegexOutput>>

    init(_ regex: sending Regex<AnyRegexOutput>) { self.regex = Mutex(regex) }

    /// The ranges of the non-overlapping matches in `string`, left to right.
    func matchRanges(in string: String) -> [Range<String.Index>] {
        regex.withLock { regex in string.matches(of: regex).map(\.range) }
    }
}

/// What a Split looks for.
enum TokenizerPattern: Sendable {
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    case gpt2
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,maxDigits}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    /// (Qwen2 with one digit, Llama 3 with up to three).
    case qwen2(maxDigits: Int)
    /// A literal string (Split with `{"String": ...}`).
    case literal([UInt8])
    /// Each character with a numeric general category (the Digits pre-tokenizer).
    case numeric
    case regex(TokenizerRegex)

    static let gpt2Source = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    static let qwen2Source = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let llama3Source = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    /// The matcher for a regex source: by hand for the known patterns, else Swift's Regex
    /// (nil when it does not compile).
    static func regex(source: String) -> TokenizerPattern? {
        switch source {
        case gpt2Source: return .gpt2
        case qwen2Source: return .qwen2(maxDigits: 1)
        case llama3Source: return .qwen2(maxDigits: 3)
        default:
            guard let regex = try? Regex(source) else { return nil }
            return .regex(TokenizerRegex(regex.matchingSemantics(.unicodeScalar).wordBoundaryKind(.simple)))
        }
    }

    /// The piece cut into consecutive spans (absolute indices in the piece's base array), each
    /// flagged as a match or the text between matches; together they cover the piece.
    func spans(_ piece: ArraySlice<UInt8>) -> [(range: Range<Int>, isMatch: Bool)] {
        var spans = [(range: Range<Int>, isMatch: Bool)]()
        guard !piece.isEmpty else { return spans }
        switch self {
        case .gpt2, .qwen2:
            let text = TokenizerScalars(piece)
            spans.reserveCapacity(text.values.count / 3 + 1)
            text.values.withUnsafeBufferPointer { values in
                text.classes.withUnsafeBufferPointer { classes in
                    let matcher = TokenizerSplitMatcher(s: values, c: classes)
                    var maxDigits = 0  // 0: GPT-2's pattern
                    if case let .qwen2(digits) = self { maxDigits = digits }
                    var i = 0
                    while i < values.count {
                        let length = maxDigits == 0 ? matcher.gpt2(i) : matcher.qwen2(i, maxDigits: maxDigits)
                        spans.append((text.offsets[i]..<text.offsets[i + length], true))
                        i += length
                    }
                }
            }
        case let .literal(needle):
            var previous = piece.startIndex
            var i = piece.startIndex
            if !needle.isEmpty {
                while i + needle.count <= piece.endIndex {
                    if piece[i] == needle[0] && piece[i..<(i + needle.count)].elementsEqual(needle) {
                        if previous < i { spans.append((previous..<i, false)) }
                        spans.append((i..<(i + needle.count), true))
                        i += needle.count
                        previous = i
                    } else {
                        i += 1
                    }
                }
            }
            if previous < piece.endIndex { spans.append((previous..<piece.endIndex, false)) }
        case .numeric:
            let text = TokenizerScalars(piece)
            var previous = piece.startIndex
            for k in text.values.indices where text.classes[k] == TokenizerCharClass.number {
                if previous < text.offsets[k] { spans.append((previous..<text.offsets[k], false)) }
                spans.append((text.offsets[k]..<text.offsets[k + 1], true))
                previous = text.offsets[k + 1]
            }
            if previous < piece.endIndex { spans.append((previous..<piece.endIndex, false)) }
        case let .regex(box):
            let string = String(decoding: piece, as: UTF8.self)
            let utf8 = string.utf8
            var previous = piece.startIndex
            for range in box.matchRanges(in: string) {
                let start = piece.startIndex + utf8.distance(from: utf8.startIndex, to: range.lowerBound)
                let end = piece.startIndex + utf8.distance(from: utf8.startIndex, to: range.upperBound)
                if previous < start { spans.append((previous..<start, false)) }
                spans.append((start..<end, true))
                previous = end
            }
            if previous < piece.endIndex { spans.append((previous..<piece.endIndex, false)) }
        }
        return spans
    }
}

/// The hand-written matchers of the two known split patterns. Each returns the length (in
/// scalars, at least 1) of the match that the regex finds at `i`; the alternatives cover
/// every character, so the matches tile the text.
struct TokenizerSplitMatcher {
    let s: UnsafeBufferPointer<UInt32>
    let c: UnsafeBufferPointer<UInt8>

    private static let apostrophe: UInt32 = 0x27
    private static let space: UInt32 = 0x20

    @inline(__always) private func isNewline(_ i: Int) -> Bool { s[i] == 0x0A || s[i] == 0x0D }

    /// End of the run of characters of class `kind` (0 = other) starting at `i`.
    @inline(__always) private func run(_ i: Int, _ kind: UInt8) -> Int {
        var j = i
        while j < s.count && c[j] == kind { j += 1 }
        return j
    }

    /// `'s|'t|'re|'ve|'m|'ll|'d` at `i` (an apostrophe), optionally case-insensitive as
    /// Oniguruma's `(?i:...)` (simple case folding: the long s `ſ` folds to `s`).
    private func contraction(_ i: Int, caseInsensitive: Bool) -> Int? {
        @inline(__always) func at(_ k: Int, _ letter: UInt8) -> Bool {
            guard k < s.count else { return false }
            let v = s[k]
            if v == UInt32(letter) { return true }
            guard caseInsensitive else { return false }
            return v == UInt32(letter - 32) || (letter == UInt8(ascii: "s") && v == 0x17F)
        }
        if at(i + 1, UInt8(ascii: "s")) || at(i + 1, UInt8(ascii: "t")) { return 2 }
        if at(i + 1, UInt8(ascii: "r")) && at(i + 2, UInt8(ascii: "e")) { return 3 }
        if at(i + 1, UInt8(ascii: "v")) && at(i + 2, UInt8(ascii: "e")) { return 3 }
        if at(i + 1, UInt8(ascii: "m")) { return 2 }
        if at(i + 1, UInt8(ascii: "l")) && at(i + 2, UInt8(ascii: "l")) { return 3 }
        if at(i + 1, UInt8(ascii: "d")) { return 2 }
        return nil
    }

    /// `\s+(?!\S)|\s+` at `i`: a whitespace run, less its last character when a non-space
    /// follows (that one goes with the next word), unless that would leave nothing.
    @inline(__always) private func whitespace(_ i: Int) -> Int {
        let end = run(i, TokenizerCharClass.whitespace)
        let length = end - i
        if length == 0 { return 1 }  // unreachable: every other class was matched before
        return end < s.count && length > 1 ? length - 1 : length
    }

    func gpt2(_ i: Int) -> Int {
        if s[i] == Self.apostrophe, let length = contraction(i, caseInsensitive: false) { return length }
        // ` ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+`
        let j = s[i] == Self.space && i + 1 < s.count ? i + 1 : i
        let kind = c[j]
        if kind != TokenizerCharClass.whitespace { return run(j, kind) - i }
        return whitespace(i)
    }

    func qwen2(_ i: Int, maxDigits: Int) -> Int {
        if s[i] == Self.apostrophe, let length = contraction(i, caseInsensitive: true) { return length }
        let kind = c[i]
        // `[^\r\n\p{L}\p{N}]?\p{L}+`
        if kind == TokenizerCharClass.letter { return run(i, kind) - i }
        if kind != TokenizerCharClass.number && !isNewline(i) && i + 1 < s.count && c[i + 1] == TokenizerCharClass.letter {
            return run(i + 1, TokenizerCharClass.letter) - i
        }
        // `\p{N}{1,maxDigits}`
        if kind == TokenizerCharClass.number { return min(run(i, kind) - i, maxDigits) }
        // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
        let j = s[i] == Self.space && i + 1 < s.count ? i + 1 : i
        if c[j] == 0 {
            var end = run(j, 0)
            while end < s.count && isNewline(end) { end += 1 }
            return end - i
        }
        // `\s*[\r\n]+`: the whitespace run up to and including its last newline.
        let end = run(i, TokenizerCharClass.whitespace)
        var k = end
        while k > i && !isNewline(k - 1) { k -= 1 }
        if k > i { return k - i }
        return whitespace(i)
    }
}

/// One step of the pre-tokenizer pipeline.
enum TokenizerPreTokenizerStep: Sendable {
    case split(TokenizerPattern, TokenizerSplitBehavior, invert: Bool)
    /// ByteLevel's `add_prefix_space`: a space before each piece not starting with one.
    case prefixSpace
}

extension TokenizerPreTokenizerStep {
    /// Applies the step to one piece, calling `body` with each resulting non-empty piece.
    func apply(_ piece: ArraySlice<UInt8>, _ body: (ArraySlice<UInt8>) -> Void) {
        switch self {
        case .prefixSpace:
            if piece.first == 0x20 { body(piece) } else { body(ArraySlice([0x20] + piece)) }
        case let .split(pattern, behavior, invert):
            let spans = pattern.spans(piece)
            switch behavior {
            case .isolated:
                for span in spans where !span.range.isEmpty { body(piece[span.range]) }
            case .removed:
                for span in spans where span.isMatch == invert && !span.range.isEmpty { body(piece[span.range]) }
            case .contiguous, .mergedWithPrevious, .mergedWithNext:
                for range in Self.merge(spans.map { ($0.range, $0.isMatch != invert) }, behavior) where !range.isEmpty {
                    body(piece[range])
                }
            }
        }
    }

    /// HF's folding of spans for the merging behaviours.
    private static func merge(_ spans: [(Range<Int>, Bool)], _ behavior: TokenizerSplitBehavior) -> [Range<Int>] {
        var out = [Range<Int>]()
        var previousMatch = false
        switch behavior {
        case .contiguous:
            for (range, isMatch) in spans {
                if isMatch == previousMatch, let last = out.last {
                    out[out.count - 1] = last.lowerBound..<range.upperBound
                } else {
                    out.append(range)
                }
                previousMatch = isMatch
            }
        case .mergedWithPrevious:
            for (range, isMatch) in spans {
                if isMatch && !previousMatch, let last = out.last {
                    out[out.count - 1] = last.lowerBound..<range.upperBound
                } else {
                    out.append(range)
                }
                previousMatch = isMatch
            }
        case .mergedWithNext:
            for (range, isMatch) in spans.reversed() {
                if isMatch && !previousMatch, let last = out.last {
                    out[out.count - 1] = range.lowerBound..<last.upperBound
                } else {
                    out.append(range)
                }
                previousMatch = isMatch
            }
            out.reverse()
        case .isolated, .removed:
            out = spans.map(\.0)
        }
        return out
    }
}

/// Normalizers: Unicode normal forms, applied in order.
enum TokenizerNormalForm: Sendable {
    case nfc, nfd, nfkc, nfkd

    /// The normal form of UTF-8 text. Only the stretches that may change are handed to
    /// Foundation: code points below U+0300 (lead bytes below 0xCC) are left alone by NFC and
    /// ASCII by every form, and since an ASCII character never combines with what precedes it,
    /// the text can be cut before any ASCII byte and normalized piecewise.
    func apply(_ bytes: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        let limit: UInt8 = self == .nfc ? 0xCC : 0x80
        guard var next = bytes.firstIndex(where: { $0 >= limit }) else { return bytes }
        var out = [UInt8]()
        out.reserveCapacity(bytes.count + 16)
        var done = bytes.startIndex
        while true {
            // The stretch: from the last ASCII byte before `next` (which may take a following
            // combining mark) to the next ASCII byte after it.
            var start = next
            while start > done && bytes[start - 1] >= 0x80 { start -= 1 }
            if start > done { start -= 1 }
            var end = next + 1
            while end < bytes.endIndex && bytes[end] >= 0x80 { end += 1 }
            out.append(contentsOf: bytes[done..<start])
            out.append(contentsOf: normalize(bytes[start..<end]).utf8)
            done = end
            guard let following = bytes[end...].firstIndex(where: { $0 >= limit }) else { break }
            next = following
        }
        out.append(contentsOf: bytes[done...])
        return out[...]
    }

    private func normalize(_ bytes: ArraySlice<UInt8>) -> String {
        let string = String(decoding: bytes, as: UTF8.self)
        switch self {
        case .nfc: return string.precomposedStringWithCanonicalMapping
        case .nfd: return string.decomposedStringWithCanonicalMapping
        case .nfkc: return string.precomposedStringWithCompatibilityMapping
        case .nfkd: return string.decomposedStringWithCompatibilityMapping
        }
    }
}
