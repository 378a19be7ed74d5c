import XCTest
@testable import MoE

/// Logits of every supported family against transformers 5.23 (see Tests/Fixtures/README.md).
final class ParityTests: XCTestCase {
    let tolerance: Float = 1e-3

    func testPrefillMatchesTransformers() throws {
        for family in Fixtures.families {
            let model = try MoEModel(directory: Fixtures.url(family))
            let (ids, reference) = try Fixtures.reference(family)
            let logits = try model.logits(ids)
            XCTAssertEqual(logits.rows, reference.rows, family)
            XCTAssertEqual(logits.columns, reference.columns, family)
            let difference = maxAbsDifference(logits.values, reference.values)
            XCTAssertLessThanOrEqual(difference, tolerance, "\(family): prefill max |Δlogit| = \(difference)")
            XCTAssertEqual(argmaxPerRow(logits), argmaxPerRow(reference), "\(family): argmax differs")
            print("parity \(family) prefill max|Δ| = \(difference)")
        }
    }

    func testTokenByTokenDecodingMatchesTransformers() throws {
        for family in Fixtures.families {
            let model = try MoEModel(directory: Fixtures.url(family))
            let (ids, reference) = try Fixtures.reference(family)
            var cache = model.makeCache()
            var rows = [Float]()
            for id in ids { rows += try model.forward([id], cache: &cache).values }
            XCTAssertEqual(cache.length, ids.count)
            let decoded = Matrix(rows: ids.count, columns: reference.columns, values: rows)
            let difference = maxAbsDifference(decoded.values, reference.values)
            XCTAssertLessThanOrEqual(difference, tolerance, "\(family): decode max |Δlogit| = \(difference)")
            XCTAssertEqual(argmaxPerRow(decoded), argmaxPerRow(reference), "\(family): argmax differs")
            print("parity \(family) decode max|Δ| = \(difference)")
        }
    }

    /// A prefill of a prefix followed by a chunk must equal one prefill of the whole.
    func testChunkedPrefillEqualsWholePrefill() throws {
        let model = try MoEModel(directory: Fixtures.url("qwen3_moe"))
        let (ids, reference) = try Fixtures.reference("qwen3_moe")
        var cache = model.makeCache()
        let first = try model.forward(Array(ids[..<10]), cache: &cache)
        let second = try model.forward(Array(ids[10...]), cache: &cache)
        XCTAssertLessThanOrEqual(maxAbsDifference(first.values + second.values, reference.values), tolerance)
    }
}

/// The inventory derived from a description must list exactly the tensors of the checkpoint.
final class InventoryTests: XCTestCase {
    func testInventoryMatchesEveryFixtureCheckpoint() throws {
        for family in Fixtures.families {
            let checkpoint = try CheckpointDirectory(url: Fixtures.url(family))
            let description = try Architectures.describe(configData: try checkpoint.configData())
            // GLM's checkpoint also holds its multi-token-prediction layer.
            let inventory = description.tensorInventory + description.predictionLayerInventory
            XCTAssertEqual(Set(inventory.map(\.name)), Set(checkpoint.tensorNames), family)
            for spec in inventory { XCTAssertEqual(try checkpoint.shape(spec.name), spec.shape, "\(family) \(spec.name)") }
        }
    }
}
