/// Turns generated ids into text as they arrive. A character whose UTF-8 bytes are spread over
/// several tokens (common for CJK and emoji in byte-level BPE) is held back until complete, so
/// that the pieces, concatenated, equal `tokenizer.decode(ids)`.
public struct StreamingDetokenizer: Sendable {
    private let tokenizer: Tokenizer
    private let skipSpecialTokens: Bool
    private var pending: [UInt8] = []

    public init(tokenizer: Tokenizer, skipSpecialTokens: Bool = false) {
        self.tokenizer = tokenizer
        self.skipSpecialTokens = skipSpecialTokens
    }

    /// The text completed by `id` (possibly empty).
    public mutating func append(_ id: Int) -> String {
        pending.append(contentsOf: tokenizer.bytes([id], skipSpecialTokens: skipSpecialTokens))
        let complete = Self.completePrefixLength(pending)
        guard complete > 0 else { return "" }
        let text = String(decoding: pending[..<complete], as: UTF8.self)
        pending.removeFirst(complete)
        return text
    }

    /// Whatever is still held back (the start of a character that never completed), decoded
    /// with replacement characters; call at the end of generation.
    public mutating func flush() -> String {
        defer { pending.removeAll() }
        return String(decoding: pending, as: UTF8.self)
    }

    /// Length of the longest prefix of `bytes` that does not end inside a UTF-8 sequence that
    /// could still be completed by more bytes.
    static func completePrefixLength(_ bytes: [UInt8]) -> Int {
        // Find the last lead byte among the final (at most four) bytes.
        var i = bytes.count - 1
        while i >= 0 && i >= bytes.count - 4 && bytes[i] & 0xC0 == 0x80 { i -= 1 }
        guard i >= 0 && i >= bytes.count - 4 else { return bytes.count }  // only continuation bytes: invalid anyway
        let lead = bytes[i]
        let needed: Int
        switch lead {
        case 0xC2...0xDF: needed = 2
        case 0xE0...0xEF: needed = 3
        case 0xF0...0xF4: needed = 4
        default: return bytes.count  // ASCII or a byte that can never start a sequence
        }
        let have = bytes.count - i
        if have >= needed { return bytes.count }
        // Incomplete: hold it back only if the bytes so far are a valid start (otherwise the
        // decoder replaces them already, whatever follows).
        if have >= 2 {
            let second = bytes[i + 1]
            switch lead {
            case 0xE0: if second < 0xA0 { return bytes.count }
            case 0xED: if second > 0x9F { return bytes.count }
            case 0xF0: if second < 0x90 { return bytes.count }
            case 0xF4: if second > 0x8F { return bytes.count }
            default: break
            }
        }
        return i
    }
}
