import MoE

/// A partition of points `0 ..< n` into clusters.
public struct Clustering: Sendable, Equatable {
    /// One merge of the dendrogram: the clusters whose smallest members are `left < right`
    /// joined at average-linkage distance `distance`.
    public struct Merge: Sendable, Equatable {
        public let left: Int
        public let right: Int
        public let distance: Double
    }

    /// Members of each cluster in ascending order; clusters ordered by their smallest member.
    public let clusters: [[Int]]
    /// The index in `clusters` of each point.
    public let labels: [Int]
    /// The merges performed, in order (the dendrogram from singletons down to `clusters`).
    public let merges: [Merge]
}

public enum ClusteringError: Error, Sendable, Equatable, CustomStringConvertible {
    case distanceMatrixSize(points: Int, entries: Int)
    case invalidDistance(row: Int, column: Int)
    case clusterCount(requested: Int, minimum: Int, maximum: Int)
    case isolatedPointOutOfRange(Int)

    public var description: String {
        switch self {
        case .distanceMatrixSize(let points, let entries): "clustering: \(entries) distances do not form a \(points)x\(points) matrix"
        case .invalidDistance(let row, let column): "clustering: distance [\(row), \(column)] is negative, not finite or not symmetric"
        case .clusterCount(let requested, let minimum, let maximum): "clustering: \(requested) clusters requested, possible \(minimum)...\(maximum)"
        case .isolatedPointOutOfRange(let point): "clustering: isolated point \(point) does not exist"
        }
    }
}

/// Bottom-up hierarchical clustering with average linkage (UPGMA), as HC-SMoE groups experts.
///
/// The distance between clusters is the mean distance between their members. Starting from
/// singletons, the closest pair is merged until `clusterCount` clusters remain. Ties are broken
/// deterministically: the pair whose smallest members are lexicographically smallest wins.
public enum AgglomerativeClustering {
    /// Clusters `n` points given their distances (row-major `n×n`, symmetric, zero diagonal).
    /// Points in `isolated` (for example super experts) never merge and stay singletons.
    public static func averageLinkage(distances: [Double], pointCount n: Int, clusterCount: Int,
                                      isolated: Set<Int> = []) throws(ClusteringError) -> Clustering {
        guard distances.count == n * n else { throw .distanceMatrixSize(points: n, entries: distances.count) }
        for i in 0..<n {
            for j in i..<n {
                let d = distances[i * n + j]
                guard d.isFinite, d >= 0, d == distances[j * n + i] else { throw .invalidDistance(row: i, column: j) }
            }
        }
        if let bad = isolated.first(where: { !(0..<n).contains($0) }) { throw .isolatedPointOutOfRange(bad) }
        let minimum = isolated.count + (n > isolated.count ? 1 : 0)
        guard clusterCount >= minimum, clusterCount <= n else {
            throw .clusterCount(requested: clusterCount, minimum: minimum, maximum: n)
        }

        // Slot i holds the cluster whose smallest member is i, so scanning slots in order is the
        // lexicographic tie-break. `linkage[i·n + j]` is the average distance between the
        // clusters in slots i and j, kept current by the Lance-Williams update for UPGMA:
        // d(k, a∪b) = (|a|·d(k, a) + |b|·d(k, b)) / (|a| + |b|).
        var linkage = distances
        var members: [[Int]?] = (0..<n).map { [$0] }
        var merges = [Clustering.Merge]()
        var count = n
        while count > clusterCount {
            var pair: (Int, Int)?
            var closest = Double.infinity
            for i in 0..<n where members[i] != nil && !isolated.contains(i) {
                for j in (i + 1)..<n where members[j] != nil && !isolated.contains(j) && linkage[i * n + j] < closest {
                    closest = linkage[i * n + j]
                    pair = (i, j)
                }
            }
            let (a, b) = pair!   // exists: more than `minimum` clusters remain
            let sizeA = Double(members[a]!.count), sizeB = Double(members[b]!.count)
            for k in 0..<n where members[k] != nil && k != a && k != b {
                let merged = (sizeA * linkage[a * n + k] + sizeB * linkage[b * n + k]) / (sizeA + sizeB)
                linkage[a * n + k] = merged
                linkage[k * n + a] = merged
            }
            members[a] = (members[a]! + members[b]!).sorted()
            members[b] = nil
            merges.append(.init(left: a, right: b, distance: closest))
            count -= 1
        }
        let clusters = members.compactMap { $0 }
        var labels = [Int](repeating: 0, count: n)
        for (index, cluster) in clusters.enumerated() { for point in cluster { labels[point] = index } }
        return Clustering(clusters: clusters, labels: labels, merges: merges)
    }

    /// Clusters the rows of `features` (one point per row) by euclidean distance, HC-SMoE's default.
    public static func averageLinkage(features: Matrix, clusterCount: Int,
                                      isolated: Set<Int> = []) throws(ClusteringError) -> Clustering {
        try averageLinkage(distances: euclideanDistances(features), pointCount: features.rows,
                           clusterCount: clusterCount, isolated: isolated)
    }

    /// Pairwise euclidean distances between the rows of `features`, row-major `n×n`.
    public static func euclideanDistances(_ features: Matrix) -> [Double] {
        let n = features.rows
        var out = [Double](repeating: 0, count: n * n)
        for i in 0..<n {
            for j in (i + 1)..<n {
                var sum = 0.0
                for c in 0..<features.columns {
                    let d = Double(features[i, c]) - Double(features[j, c])
                    sum += d * d
                }
                out[i * n + j] = sum.squareRoot()
                out[j * n + i] = out[i * n + j]
            }
        }
        return out
    }

    /// Pairwise cosine distances `1 − cos(θ)` between the rows of `features` (HC-SMoE's
    /// alternative); a zero row is at distance 1 from everything but itself.
    public static func cosineDistances(_ features: Matrix) -> [Double] {
        let n = features.rows
        let norms = (0..<n).map { i in (0..<features.columns).reduce(0.0) { $0 + Double(features[i, $1]) * Double(features[i, $1]) }.squareRoot() }
        var out = [Double](repeating: 0, count: n * n)
        for i in 0..<n {
            for j in (i + 1)..<n {
                let dot = (0..<features.columns).reduce(0.0) { $0 + Double(features[i, $1]) * Double(features[j, $1]) }
                let cosine = norms[i] > 0 && norms[j] > 0 ? dot / (norms[i] * norms[j]) : 0
                out[i * n + j] = Swift.max(0, 1 - cosine)
                out[j * n + i] = out[i * n + j]
            }
        }
        return out
    }
}
