import MoE

/// A weight matrix `[rows, columns]` in a group-wise affine integer format.
///
/// Storage (also the layout the C kernels in `quant_kernels.h` read):
/// - `packed`: the codes of all weights in row-major order as one dense bit stream of
///   `bits`-wide codes (see `BitPacking`); `columns` is a multiple of the group size, itself a
///   multiple of 32, so each row is `columns·bits/32` whole words.
/// - `scales`, `minimums`: one IEEE half-precision bit pattern per (row, group), row-major.
///   Half precision (rather than f32) halves the per-group overhead, which matters most at
///   2-3 bits with small groups: 4 bytes per group is 1 bit per weight at group 32.
///
/// `byteCount = 4·packed.count + 2·(scales.count + minimums.count)`, i.e. per weight
/// `bits/8 + 4/groupSize` bytes.
public struct QuantizedMatrix: Sendable, Equatable {
    public let rows: Int
    public let columns: Int
    public let format: QuantizationFormat
    public let packed: [UInt32]
    public let scales: [UInt16]
    public let minimums: [UInt16]

    /// Wraps raw storage, checking that its lengths fit the shape and format.
    public init(rows: Int, columns: Int, format: QuantizationFormat,
                packed: [UInt32], scales: [UInt16], minimums: [UInt16]) throws(QuantizationError) {
        guard rows >= 0, columns >= 0 else { throw .negativeShape(rows: rows, columns: columns) }
        guard columns % format.groupSize == 0 else {
            throw .columnsNotDivisibleByGroupSize(columns: columns, groupSize: format.groupSize)
        }
        let groups = rows * (columns / format.groupSize)
        let words = BitPacking.wordCount(codes: rows * columns, bits: format.bits)
        guard packed.count == words else { throw .storageMismatch(what: "packed", expected: words, actual: packed.count) }
        guard scales.count == groups else { throw .storageMismatch(what: "scales", expected: groups, actual: scales.count) }
        guard minimums.count == groups else { throw .storageMismatch(what: "minimums", expected: groups, actual: minimums.count) }
        self.rows = rows
        self.columns = columns
        self.format = format
        self.packed = packed
        self.scales = scales
        self.minimums = minimums
    }

    /// Round-to-nearest quantization: each group's grid spans its own minimum and maximum.
    public init(quantizing weight: Matrix, format: QuantizationFormat) throws(QuantizationError) {
        try Self.checkQuantizable(weight, format: format)
        let groupsPerRow = weight.columns / format.groupSize
        var codes = [UInt8](repeating: 0, count: weight.count)
        var scales = [UInt16](), minimums = [UInt16]()
        scales.reserveCapacity(weight.rows * groupsPerRow)
        minimums.reserveCapacity(weight.rows * groupsPerRow)
        for r in 0..<weight.rows {
            for g in 0..<groupsPerRow {
                let range = (r * weight.columns + g * format.groupSize)..<(r * weight.columns + (g + 1) * format.groupSize)
                let group = weight.values[range]
                let grid = AffineGrid(low: group.min()!, high: group.max()!, maximumCode: format.maximumCode)
                for i in range { codes[i] = grid.code(for: weight.values[i]) }
                scales.append(grid.scaleBits)
                minimums.append(grid.minimumBits)
            }
        }
        try self.init(rows: weight.rows, columns: weight.columns, format: format,
                      packed: BitPacking.pack(codes, bits: format.bits), scales: scales, minimums: minimums)
    }

    /// Round-to-nearest quantization of any linear weight, `blockRows` rows at a time widened
    /// to f32 (widening BF16/F16 is exact, so this equals quantizing the whole matrix widened;
    /// each row's codes are whole words, so blocks concatenate).
    public init(quantizingRowsOf weight: any LinearWeight, format: QuantizationFormat, blockRows: Int = 4096) throws(QuantizationError) {
        var packed = [UInt32](), scales = [UInt16](), minimums = [UInt16]()
        for start in stride(from: 0, to: weight.rows, by: blockRows) {
            let block = try QuantizedMatrix(quantizing: weight.gatherRows(Array(start..<Swift.min(weight.rows, start + blockRows))), format: format)
            packed += block.packed
            scales += block.scales
            minimums += block.minimums
        }
        try self.init(rows: weight.rows, columns: weight.columns, format: format, packed: packed, scales: scales, minimums: minimums)
    }

    /// Rejects shapes and values the format cannot hold (shared by RTN and GPTQ).
    static func checkQuantizable(_ weight: Matrix, format: QuantizationFormat) throws(QuantizationError) {
        guard weight.columns % format.groupSize == 0 else {
            throw .columnsNotDivisibleByGroupSize(columns: weight.columns, groupSize: format.groupSize)
        }
        if let bad = weight.values.firstIndex(where: { !AffineGrid.isRepresentable($0) }) {
            throw .valueOutOfRange(row: bad / weight.columns, column: bad % weight.columns, value: weight.values[bad])
        }
    }

    public var bits: Int { format.bits }
    public var groupSize: Int { format.groupSize }
    public var groupsPerRow: Int { columns / format.groupSize }
    public var parameterCount: Int { rows * columns }

    /// Bytes of storage: packed codes plus half-precision scales and minimums.
    public var byteCount: Int {
        packed.count * MemoryLayout<UInt32>.size + (scales.count + minimums.count) * MemoryLayout<UInt16>.size
    }

    /// The stored code of one weight.
    public func code(row: Int, column: Int) -> Int {
        precondition((0..<rows).contains(row) && (0..<columns).contains(column))
        return Int(BitPacking.code(in: packed, at: row * columns + column, bits: bits))
    }

    /// The grid of one group.
    func grid(row: Int, group: Int) -> AffineGrid {
        let index = row * groupsPerRow + group
        return AffineGrid(scaleBits: scales[index], minimumBits: minimums[index], maximumCode: format.maximumCode)
    }

    public func scale(row: Int, group: Int) -> Float { grid(row: row, group: group).scale }
    public func minimum(row: Int, group: Int) -> Float { grid(row: row, group: group).minimum }
}

extension QuantizedMatrix: Codable {
    enum CodingKeys: String, CodingKey { case rows, columns, format, packed, scales, minimums }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try self.init(rows: c.decode(Int.self, forKey: .rows), columns: c.decode(Int.self, forKey: .columns),
                      format: c.decode(QuantizationFormat.self, forKey: .format),
                      packed: c.decode([UInt32].self, forKey: .packed), scales: c.decode([UInt16].self, forKey: .scales),
                      minimums: c.decode([UInt16].self, forKey: .minimums))
    }
}
