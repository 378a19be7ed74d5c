import MoE
import XCTest
@testable import Compression

final class ClusteringTests: XCTestCase {
    func distances1D(_ points: [Double]) -> [Double] {
        points.flatMap { a in points.map { b in abs(a - b) } }
    }

    /// Points 0, 1, 5, 6, 20: {0,1} and {5,6} tie at 1 (the pair with the smaller members goes
    /// first); then average linkage joins them at (5+6+4+5)/4 = 5 (single linkage would say 4,
    /// complete 6); finally 20 joins at (20+19+15+14)/4 = 17.
    func testHandCheckedDendrogram() throws {
        let d = distances1D([0, 1, 5, 6, 20])
        let three = try AgglomerativeClustering.averageLinkage(distances: d, pointCount: 5, clusterCount: 3)
        XCTAssertEqual(three.clusters, [[0, 1], [2, 3], [4]])
        XCTAssertEqual(three.labels, [0, 0, 1, 1, 2])
        XCTAssertEqual(three.merges, [.init(left: 0, right: 1, distance: 1), .init(left: 2, right: 3, distance: 1)])
        let two = try AgglomerativeClustering.averageLinkage(distances: d, pointCount: 5, clusterCount: 2)
        XCTAssertEqual(two.clusters, [[0, 1, 2, 3], [4]])
        XCTAssertEqual(two.merges.last, .init(left: 0, right: 2, distance: 5))
        let one = try AgglomerativeClustering.averageLinkage(distances: d, pointCount: 5, clusterCount: 1)
        XCTAssertEqual(one.clusters, [[0, 1, 2, 3, 4]])
        XCTAssertEqual(one.labels, [0, 0, 0, 0, 0])
        XCTAssertEqual(one.merges.last, .init(left: 0, right: 4, distance: 17))
        let five = try AgglomerativeClustering.averageLinkage(distances: d, pointCount: 5, clusterCount: 5)
        XCTAssertEqual(five.clusters, [[0], [1], [2], [3], [4]])
        XCTAssertEqual(five.merges, [])
    }

    /// Features and euclidean distance: the 3-4-5 triangle, and clustering from features.
    func testEuclideanFeatures() throws {
        let features = Matrix(rows: 3, columns: 2, values: [0, 0, 3, 4, 3, 5])
        XCTAssertEqual(AgglomerativeClustering.euclideanDistances(features), [0, 5, 34.0.squareRoot(), 5, 0, 1, 34.0.squareRoot(), 1, 0])
        XCTAssertEqual(try AgglomerativeClustering.averageLinkage(features: features, clusterCount: 2).clusters, [[0], [1, 2]])
        let cosine = AgglomerativeClustering.cosineDistances(Matrix(rows: 3, columns: 2, values: [1, 0, 2, 0, 0, 3]))
        XCTAssertEqual(cosine[1], 0, accuracy: 1e-12)
        XCTAssertEqual(cosine[2], 1, accuracy: 1e-12)
    }

    /// Isolated points (super experts) never merge.
    func testIsolatedPointsStaySingletons() throws {
        let d = distances1D([0, 0.1, 0.2, 10])
        let c = try AgglomerativeClustering.averageLinkage(distances: d, pointCount: 4, clusterCount: 2, isolated: [1])
        XCTAssertEqual(c.clusters, [[0, 2, 3], [1]])
        XCTAssertThrowsError(try AgglomerativeClustering.averageLinkage(distances: d, pointCount: 4, clusterCount: 1, isolated: [1])) {
            XCTAssertEqual($0 as? ClusteringError, .clusterCount(requested: 1, minimum: 2, maximum: 4))
        }
    }

    func testInvalidInputs() {
        let d = distances1D([0, 1, 2])
        XCTAssertThrowsError(try AgglomerativeClustering.averageLinkage(distances: d, pointCount: 3, clusterCount: 0))
        XCTAssertThrowsError(try AgglomerativeClustering.averageLinkage(distances: d, pointCount: 3, clusterCount: 4))
        XCTAssertThrowsError(try AgglomerativeClustering.averageLinkage(distances: d, pointCount: 4, clusterCount: 1)) {
            XCTAssertEqual($0 as? ClusteringError, .distanceMatrixSize(points: 4, entries: 9))
        }
        var asymmetric = d
        asymmetric[1] = 7
        XCTAssertThrowsError(try AgglomerativeClustering.averageLinkage(distances: asymmetric, pointCount: 3, clusterCount: 1)) {
            XCTAssertEqual($0 as? ClusteringError, .invalidDistance(row: 0, column: 1))
        }
        XCTAssertThrowsError(try AgglomerativeClustering.averageLinkage(distances: d, pointCount: 3, clusterCount: 2, isolated: [3]))
    }

    /// The naive definition: recompute every cluster pair's mean member distance at every step.
    func naiveAverageLinkage(_ d: [Double], n: Int, clusterCount: Int) -> [[Int]] {
        var clusters = (0..<n).map { [$0] }
        while clusters.count > clusterCount {
            var best: (Int, Int, Double)?
            for i in clusters.indices {
                for j in (i + 1)..<clusters.count {
                    let total = clusters[i].reduce(0.0) { sum, a in clusters[j].reduce(sum) { $0 + d[a * n + $1] } }
                    let mean = total / Double(clusters[i].count * clusters[j].count)
                    if best == nil || mean < best!.2 { best = (i, j, mean) }   // clusters stay ordered by smallest member
                }
            }
            let (i, j, _) = best!
            clusters[i] = (clusters[i] + clusters[j]).sorted()
            clusters.remove(at: j)
        }
        return clusters
    }

    func testAgreesWithNaiveImplementationOnRandomData() throws {
        var g = SeededGenerator(seed: 41)
        for _ in 0..<60 {
            let n = Int.random(in: 2...14, using: &g)
            let features = g.matrix(n, 3)
            let d = AgglomerativeClustering.euclideanDistances(features)
            for clusterCount in 1...n {
                let fast = try AgglomerativeClustering.averageLinkage(distances: d, pointCount: n, clusterCount: clusterCount)
                XCTAssertEqual(fast.clusters, naiveAverageLinkage(d, n: n, clusterCount: clusterCount))
                XCTAssertEqual(fast.merges.count, n - clusterCount)
            }
        }
    }
}
