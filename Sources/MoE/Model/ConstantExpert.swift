/// A MoNE "novice": a pruned expert replaced by a constant (its mean routed output, or a
/// vector fitted to what pruning lost). The block adds gate × vector, whatever the input.
public struct ConstantExpert: Expert {
    public let vector: [Float]

    public init(vector: [Float]) { self.vector = vector }

    public func forward(_ x: Matrix) -> Matrix {
        precondition(x.columns == vector.count, "novice of width \(vector.count) given rows of \(x.columns)")
        var out = [Float]()
        out.reserveCapacity(x.rows * vector.count)
        for _ in 0..<x.rows { out.append(contentsOf: vector) }
        return Matrix(rows: x.rows, columns: vector.count, values: out)
    }

    public var residentBytes: Int { vector.count * MemoryLayout<Float>.size }
    public var computesOnCallingThread: Bool { true }
}
