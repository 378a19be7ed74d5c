/// The linear assignment problem, solved exactly by the Hungarian algorithm in O(rows²·columns).
///
/// This is the shortest-augmenting-path form with dual potentials (Kuhn–Munkres as refined by
/// Jonker–Volgenant): rows are added one at a time, and each addition finds the cheapest
/// augmenting path in reduced costs `cost[i][j] − u[i] − v[j]`, which stay non-negative; so
/// after the last row the matching is optimal.
public enum LinearAssignment {
    /// The column given to each row (all distinct), minimising the summed `cost[i·columns + j]`.
    /// Requires `rows ≤ columns` and finite costs.
    public static func minimumCost(_ cost: [Double], rows: Int, columns: Int) -> [Int] {
        precondition(rows <= columns && cost.count == rows * columns, "need a rows x columns cost matrix with rows <= columns")
        precondition(cost.allSatisfy(\.isFinite), "assignment costs must be finite")
        guard rows > 0 else { return [] }
        // 1-based as in the textbook form: column 0 is a virtual column holding the row being added.
        var u = [Double](repeating: 0, count: rows + 1)      // row potentials
        var v = [Double](repeating: 0, count: columns + 1)   // column potentials
        var rowOfColumn = [Int](repeating: 0, count: columns + 1)
        var previous = [Int](repeating: 0, count: columns + 1) // the path's column before each column
        for row in 1...rows {
            rowOfColumn[0] = row
            var column = 0
            var slack = [Double](repeating: .infinity, count: columns + 1)
            var visited = [Bool](repeating: false, count: columns + 1)
            repeat {
                visited[column] = true
                let i = rowOfColumn[column]
                var delta = Double.infinity
                var nextColumn = 0
                for j in 1...columns where !visited[j] {
                    let reduced = cost[(i - 1) * columns + (j - 1)] - u[i] - v[j]
                    if reduced < slack[j] {
                        slack[j] = reduced
                        previous[j] = column
                    }
                    if slack[j] < delta {
                        delta = slack[j]
                        nextColumn = j
                    }
                }
                for j in 0...columns {
                    if visited[j] {
                        u[rowOfColumn[j]] += delta
                        v[j] -= delta
                    } else {
                        slack[j] -= delta
                    }
                }
                column = nextColumn
            } while rowOfColumn[column] != 0
            // Augment: shift the assignments back along the path.
            repeat {
                let before = previous[column]
                rowOfColumn[column] = rowOfColumn[before]
                column = before
            } while column != 0
        }
        var assignment = [Int](repeating: 0, count: rows)
        for j in 1...columns where rowOfColumn[j] != 0 { assignment[rowOfColumn[j] - 1] = j - 1 }
        return assignment
    }

    /// The column given to each row, maximising the summed `weight[i·columns + j]`.
    public static func maximumWeight(_ weight: [Double], rows: Int, columns: Int) -> [Int] {
        minimumCost(weight.map { -$0 }, rows: rows, columns: columns)
    }
}
