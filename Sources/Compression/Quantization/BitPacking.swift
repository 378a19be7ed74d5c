/// Dense bit streams of fixed-width codes, the storage of `QuantizedMatrix`.
///
/// Code `k` occupies stream bits `[k·bits, k·bits + bits)`, least significant bit first, and
/// stream bit `i` is bit `i % 32` of word `i / 32`. Nothing is wasted at 3 bits: a code may
/// straddle two words. On a little-endian machine the words' bytes are the stream's bytes in
/// order, which is what the C kernels rely on (eight codes fill exactly `bits` bytes).
public enum BitPacking {
    /// Words holding `count` codes of `bits` bits.
    public static func wordCount(codes count: Int, bits: Int) -> Int { (count * bits + 31) / 32 }

    /// Packs codes, each below `2^bits`, into a stream.
    public static func pack(_ codes: [UInt8], bits: Int) -> [UInt32] {
        precondition((1...8).contains(bits), "codes are 1 to 8 bits wide")
        var words = [UInt32](repeating: 0, count: wordCount(codes: codes.count, bits: bits))
        for (k, code) in codes.enumerated() {
            precondition(Int(code) >> bits == 0, "code \(code) does not fit in \(bits) bits")
            let bit = k * bits, word = bit >> 5, shift = bit & 31
            words[word] |= UInt32(code) << shift
            if shift + bits > 32 { words[word + 1] |= UInt32(code) >> (32 - shift) }
        }
        return words
    }

    /// The first `count` codes of a stream.
    public static func unpack(_ words: [UInt32], bits: Int, count: Int) -> [UInt8] {
        precondition(words.count >= wordCount(codes: count, bits: bits), "stream too short for \(count) codes")
        return (0..<count).map { code(in: words, at: $0, bits: bits) }
    }

    /// Code `index` of a stream.
    @inlinable
    public static func code(in words: [UInt32], at index: Int, bits: Int) -> UInt8 {
        let bit = index * bits, word = bit >> 5, shift = bit & 31
        var window = UInt64(words[word]) >> shift
        if shift + bits > 32 { window |= UInt64(words[word + 1]) << (32 - shift) }
        return UInt8(truncatingIfNeeded: window & ((1 << UInt64(bits)) - 1))
    }
}
