/// Which copy of an expert a record holds. The original weights are variant 0; later
/// variants (quantized, merged for a plan, a novice's constant) take other values so
/// that they sit next to the original under the same (layer, expert) prefix.
public struct ExpertVariant: RawRepresentable, Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// The weights exactly as imported from the checkpoint.
    public static let original = ExpertVariant(rawValue: 0)

    public static func < (a: ExpertVariant, b: ExpertVariant) -> Bool { a.rawValue < b.rawValue }

    public var description: String { self == .original ? "original" : "variant \(rawValue)" }
}

/// The key of an expert record: big-endian `(layer, expert, variant)` as three UInt32.
/// LMDB compares keys bytewise, and big-endian integers compare bytewise in numeric
/// order, so a cursor walks layer 0's experts, then layer 1's, and every variant of an
/// expert directly after its original.
public struct ExpertKey: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var layer: Int
    public var expert: Int
    public var variant: ExpertVariant

    public static let byteCount = 12

    public init(layer: Int, expert: Int, variant: ExpertVariant = .original) {
        precondition(layer >= 0 && layer <= Int(UInt32.max) && expert >= 0 && expert <= Int(UInt32.max))
        self.layer = layer
        self.expert = expert
        self.variant = variant
    }

    public var bytes: [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(Self.byteCount)
        for value in [UInt32(layer), UInt32(expert), variant.rawValue] {
            withUnsafeBytes(of: value.bigEndian) { out.append(contentsOf: $0) }
        }
        return out
    }

    /// Decodes a 12-byte key; nil for any other length.
    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == Self.byteCount else { return nil }
        let b = Array(bytes)
        func word(_ i: Int) -> UInt32 {
            (UInt32(b[i]) << 24) | (UInt32(b[i + 1]) << 16) | (UInt32(b[i + 2]) << 8) | UInt32(b[i + 3])
        }
        self.init(layer: Int(word(0)), expert: Int(word(4)), variant: ExpertVariant(rawValue: word(8)))
    }

    public static func < (a: ExpertKey, b: ExpertKey) -> Bool {
        (a.layer, a.expert, a.variant.rawValue) < (b.layer, b.expert, b.variant.rawValue)
    }

    public var description: String { "layer \(layer), expert \(expert) (\(variant))" }
}
