/// GPT-2's reversible byte ↔ character table used by byte-level BPE: the printable bytes of
/// Latin-1 (`!`…`~`, `¡`…`¬`, `®`…`ÿ`) map to the same code point, the other 68 bytes to
/// U+0100 and up, in byte order. Every byte string becomes a string of visible characters.
enum ByteLevel {
    /// The character of each byte.
    static let byteToScalar: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        var next: UInt32 = 256
        for byte in 0..<256 {
            if (33...126).contains(byte) || (161...172).contains(byte) || (174...255).contains(byte) {
                table[byte] = Unicode.Scalar(UInt8(byte))
            } else {
                table[byte] = Unicode.Scalar(next)!
                next += 1
            }
        }
        return table
    }()

    /// The byte of each character of the table, indexed by code point (0..<324), -1 elsewhere.
    static let scalarToByte: [Int16] = {
        var inverse = [Int16](repeating: -1, count: 324)
        for (byte, scalar) in byteToScalar.enumerated() { inverse[Int(scalar.value)] = Int16(byte) }
        return inverse
    }()

    /// The byte-level string of some bytes (what BPE vocabularies are written in).
    static func string<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
        var scalars = String.UnicodeScalarView()
        for byte in bytes { scalars.append(byteToScalar[Int(byte)]) }
        return String(scalars)
    }

    /// The bytes of a byte-level string, or nil when a character is outside the table.
    static func bytes(_ token: String) -> [UInt8]? {
        var bytes = [UInt8]()
        bytes.reserveCapacity(token.utf8.count)
        for scalar in token.unicodeScalars {
            guard scalar.value < 324 else { return nil }
            let byte = scalarToByte[Int(scalar.value)]
            guard byte >= 0 else { return nil }
            bytes.append(UInt8(byte))
        }
        return bytes
    }

    /// What HF's ByteLevel decoder makes of one token: its bytes through the table when every
    /// character is in it, otherwise the token's own UTF-8 (as for most added tokens).
    static func decodedBytes(_ token: String) -> [UInt8] {
        bytes(token) ?? Array(token.utf8)
    }
}
