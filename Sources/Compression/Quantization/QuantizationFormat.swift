/// A group-wise affine integer format: each run of `groupSize` consecutive weights of a row
/// is stored as codes `q` in `0 ... 2^bits - 1` with one scale and one minimum, `w ≈ scale·q + minimum`.
public struct QuantizationFormat: Sendable, Hashable, Codable, CustomStringConvertible {
    /// Widths the packed kernels implement.
    public static let supportedBits: Set<Int> = [2, 3, 4, 8]
    /// Group sizes the packed kernels implement: multiples of 32, so a group of codes is a
    /// whole number of 32-bit words at every width (and rows start on a word boundary).
    public static let supportedGroupSizes: Set<Int> = [32, 64, 128]

    /// Bytes each group spends on its scale and minimum (two IEEE half-precision values).
    public static let groupParameterBytes = 4

    public let bits: Int
    public let groupSize: Int

    public init(bits: Int, groupSize: Int) throws(QuantizationError) {
        guard Self.supportedBits.contains(bits) else { throw .unsupportedBits(bits) }
        guard Self.supportedGroupSizes.contains(groupSize) else { throw .unsupportedGroupSize(groupSize) }
        self.bits = bits
        self.groupSize = groupSize
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        try self.init(bits: container.decode(Int.self, forKey: .bits),
                      groupSize: container.decode(Int.self, forKey: .groupSize))
    }

    /// The largest code, `2^bits - 1`.
    public var maximumCode: Int { (1 << bits) - 1 }

    /// Storage of one weight, including its share of the group's scale and minimum.
    public var bytesPerParameter: Double { Double(bits) / 8 + Double(Self.groupParameterBytes) / Double(groupSize) }

    /// Bits needed to store `parameterCount` weights (a whole number of groups) in this format:
    /// the cost that mixed-precision allocation budgets.
    public func storageBits(parameterCount: Int) -> Int {
        precondition(parameterCount % groupSize == 0, "\(parameterCount) weights are not whole groups of \(groupSize)")
        return bits * parameterCount + 8 * Self.groupParameterBytes * (parameterCount / groupSize)
    }

    public var description: String { "\(bits)-bit/g\(groupSize)" }
}
