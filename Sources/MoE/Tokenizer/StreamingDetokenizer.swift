/// Turns generated ids into text as they arrive, holding back the bytes of a character
/// that is split across tokens until it is complete.
public struct StreamingDetokenizer {
    private let tokenizer: Tokenizer
    private var pending: [UInt8] = []

    public init(tokenizer: Tokenizer) { self.tokenizer = tokenizer }

    /// The newly completed text after appending `id` (possibly empty).
    public mutating func append(_ id: Int) -> String {
        pending.append(contentsOf: tokenizer.bytes([id]))
        let complete = Self.completePrefixLength(pending)
        let text = String(decoding: pending[..<complete], as: UTF8.self)
        pending.removeFirst(complete)
        return text
    }

    /// Whatever is still held back (an incomplete character), decoded leniently.
    public mutating func flush() -> String {
        defer { pending.removeAll() }
        return String(decoding: pending, as: UTF8.self)
    }

    /// Length of the longest prefix that does not end inside a UTF-8 sequence.
    static func completePrefixLength(_ bytes: [UInt8]) -> Int {
        var i = bytes.count
        var back = 0
        // Walk back over at most three continuation bytes to the lead byte.
        while i > 0 && back < 4 {
            let b = bytes[i - 1]
            if b & 0xC0 == 0x80 { i -= 1; back += 1; continue }
            let needed = b & 0x80 == 0 ? 1 : b & 0xE0 == 0xC0 ? 2 : b & 0xF0 == 0xE0 ? 3 : b & 0xF8 == 0xF0 ? 4 : 1
            return back + 1 >= needed ? bytes.count : i - 1
        }
        return bytes.count
    }
}
