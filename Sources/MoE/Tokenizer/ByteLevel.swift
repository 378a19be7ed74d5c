/// GPT-2's reversible byte ↔ printable-character table used by byte-level BPE: the bytes
/// that are printable Latin-1 map to themselves, the others to U+0100 and up, so that every
/// byte string becomes a string of visible characters and back.
enum ByteLevel {
    static let byteToScalar: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        var next: UInt32 = 256
        for byte in 0..<256 {
            let printable = (33...126).contains(byte) || (161...172).contains(byte) || (174...255).contains(byte)
            if printable {
                table[byte] = Unicode.Scalar(UInt32(byte))!
            } else {
                table[byte] = Unicode.Scalar(next)!
                next += 1
            }
        }
        return table
    }()

    static let scalarToByte: [Unicode.Scalar: UInt8] = {
        var inverse = [Unicode.Scalar: UInt8]()
        for (byte, scalar) in byteToScalar.enumerated() { inverse[scalar] = UInt8(byte) }
        return inverse
    }()

    /// The byte-level form of a piece of text.
    static func encode(_ text: Substring) -> String {
        var out = String.UnicodeScalarView()
        for byte in text.utf8 { out.append(byteToScalar[Int(byte)]) }
        return String(out)
    }

    /// The bytes behind a byte-level token; characters outside the table are kept as UTF-8.
    static func decode(_ token: String) -> [UInt8] {
        var bytes = [UInt8]()
        for scalar in token.unicodeScalars {
            if let byte = scalarToByte[scalar] { bytes.append(byte) } else { bytes.append(contentsOf: Array(String(scalar).utf8)) }
        }
        return bytes
    }
}
