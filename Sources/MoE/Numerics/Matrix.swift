/// A dense row-major matrix of `Float`: the one tensor type of the forward pass.
///
/// Weights of a linear layer are stored as in checkpoints, `[out, in]`, so that
/// `y = x · Wᵀ`; activations are `[tokens, features]`.
public struct Matrix: Sendable, Equatable {
    public var rows: Int
    public var columns: Int
    public var values: [Float]

    public init(rows: Int, columns: Int, values: [Float]) {
        precondition(values.count == rows * columns, "Matrix \(rows)x\(columns) needs \(rows * columns) values, got \(values.count)")
        self.rows = rows
        self.columns = columns
        self.values = values
    }

    public init(zeros rows: Int, _ columns: Int) {
        self.init(rows: rows, columns: columns, values: [Float](repeating: 0, count: rows * columns))
    }

    /// A one-dimensional tensor (a norm weight, a bias) seen as a single row.
    public init(vector: [Float]) {
        self.init(rows: 1, columns: vector.count, values: vector)
    }

    public var count: Int { values.count }

    public subscript(row: Int, column: Int) -> Float {
        get { values[row * columns + column] }
        set { values[row * columns + column] = newValue }
    }

    /// A copy of one row.
    public func row(_ index: Int) -> [Float] {
        Array(values[(index * columns)..<((index + 1) * columns)])
    }

    /// Rows `range` as a new matrix.
    public func rows(_ range: Range<Int>) -> Matrix {
        Matrix(rows: range.count, columns: columns, values: Array(values[(range.lowerBound * columns)..<(range.upperBound * columns)]))
    }

    /// Columns `range` as a new matrix.
    public func columns(_ range: Range<Int>) -> Matrix {
        var out = [Float]()
        out.reserveCapacity(rows * range.count)
        for r in 0..<rows {
            out.append(contentsOf: values[(r * columns + range.lowerBound)..<(r * columns + range.upperBound)])
        }
        return Matrix(rows: rows, columns: range.count, values: out)
    }

    /// The rows listed in `indices`, in that order.
    public func gatherRows(_ indices: [Int]) -> Matrix {
        var out = [Float]()
        out.reserveCapacity(indices.count * columns)
        for i in indices { out.append(contentsOf: values[(i * columns)..<((i + 1) * columns)]) }
        return Matrix(rows: indices.count, columns: columns, values: out)
    }

    /// The transpose (used rarely: export and tests).
    public func transposed() -> Matrix {
        var out = [Float](repeating: 0, count: count)
        for r in 0..<rows { for c in 0..<columns { out[c * rows + r] = values[r * columns + c] } }
        return Matrix(rows: columns, columns: rows, values: out)
    }
}
