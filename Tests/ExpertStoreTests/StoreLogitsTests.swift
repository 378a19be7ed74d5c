import XCTest
@testable import ExpertStore
@testable import MoE

/// A model run from the store must give exactly (==) the logits of the same model run
/// from its safetensors checkpoint: both widen the same bytes with the same kernels and
/// make the same BLAS calls.
final class StoreLogitsTests: StoreTestCase {
    func assertBitIdentical(_ checkpoint: URL, ids: [Int], label: String) throws {
        for precision in WeightPrecision.allCases {
            try assertBitIdentical(checkpoint, ids: ids, precision: precision, label: "\(label) (\(precision))")
        }
    }

    func assertBitIdentical(_ checkpoint: URL, ids: [Int], precision: WeightPrecision, label: String) throws {
        let reference = try MoEModel(directory: checkpoint, precision: precision)
        let storeURL = try importedStore(checkpoint)
        let store = try ExpertStore(url: storeURL)
        let model = try store.loadModel(precision: precision)
        XCTAssertEqual(model.description, reference.description, label)
        // Prefill (sgemm) …
        let expected = try reference.logits(ids)
        let actual = try model.logits(ids)
        XCTAssertEqual(actual.rows, expected.rows, label)
        XCTAssertTrue(actual.values == expected.values, "\(label): prefill logits differ, max |Δ| = \(zip(actual.values, expected.values).map { abs($0 - $1) }.max() ?? 0)")
        // … and token-by-token decode (sgemv).
        var referenceCache = reference.makeCache()
        var storeCache = model.makeCache()
        for id in ids.prefix(6) {
            let a = try model.forward([id], cache: &storeCache)
            let b = try reference.forward([id], cache: &referenceCache)
            XCTAssertTrue(a.values == b.values, "\(label): decode logits differ at token \(id)")
        }
    }

    func testLogitsAreBitIdenticalForEveryFamily() throws {
        for family in StoreFixtures.families {
            try assertBitIdentical(StoreFixtures.url(family), ids: try StoreFixtures.referenceIDs(family), label: family)
        }
    }

    func testLogitsAreBitIdenticalForTheDefaultModel() throws {
        let weights = StoreFixtures.defaultModel.appendingPathComponent("model.safetensors")
        guard FileManager.default.fileExists(atPath: weights.path) else {
            throw XCTSkip("models/moekit-tiny/model.safetensors is not there yet")
        }
        let tokenizer = try Tokenizer(contentsOf: StoreFixtures.defaultModel.appendingPathComponent("tokenizer.json"))
        let ids = tokenizer.encode("def store(expert):\n    return expert  # every expert is its own record, 42 of them")
        XCTAssertGreaterThan(ids.count, 10)
        try assertBitIdentical(StoreFixtures.defaultModel, ids: ids, label: "moekit-tiny")
    }

    /// Dense weights stay as stored: the default model's BF16 embedding (tied head) and
    /// attention take 2 bytes per weight in memory, routers and norms 4; widening to f32
    /// happens only when asked for. Expected bytes come from the checkpoint's own header.
    func testDenseWeightsStayInTheirStoredFormat() throws {
        let checkpoint = try CheckpointDirectory(url: StoreFixtures.defaultModel)
        var stored = 0, widened = 0
        for name in checkpoint.tensorNames where !name.contains(".experts.") {
            let info = try checkpoint.layout(name)
            let elementCount = info.shape.reduce(1, *)
            let keepsFormat = info.dtype == .bf16 && info.shape.count == 2 && !name.hasSuffix(".mlp.gate.weight")
            stored += elementCount * (keepsFormat ? 2 : 4)
            widened += elementCount * 4
        }
        XCTAssertLessThan(Double(stored), 0.6 * Double(widened), "most dense bytes are BF16 weights")
        XCTAssertEqual(try MoEModel(directory: StoreFixtures.defaultModel).denseByteCount, stored)
        XCTAssertEqual(try MoEModel(directory: StoreFixtures.defaultModel, precision: .float32).denseByteCount, widened)
        let store = try ExpertStore(url: try importedStore(StoreFixtures.defaultModel))
        XCTAssertEqual(try store.loadModel().denseByteCount, stored)
        XCTAssertEqual(try store.loadModel(precision: .float32).denseByteCount, widened)
    }

    /// In place (the streamed passes' mode), BF16 experts are read from the store's memory map
    /// rather than copied, and compute bit for bit what copies compute.
    func testInPlaceHalfExpertsUseTheMapAndMatchCopies() throws {
        let store = try ExpertStore(url: try importedStore(StoreFixtures.url("qwen2_moe")))
        let mapped = try StoreExpertSource(store: store, inPlace: true), copied = try StoreExpertSource(store: store)
        let first = try store.modelDescription().moeLayerIndices[0]
        let a = try XCTUnwrap(try mapped.expert(layer: first, index: 0) as? HalfPrecisionExpert)
        let b = try XCTUnwrap(try copied.expert(layer: first, index: 0) as? HalfPrecisionExpert)
        XCTAssertTrue(a.gate.owner is LMDBSnapshot, "in place: the weights live in the map")
        XCTAssertFalse(b.gate.owner is LMDBSnapshot, "copied out of the map")
        let ids = try StoreFixtures.referenceIDs("qwen2_moe")
        XCTAssertEqual(try store.loadModel(experts: mapped).logits(ids).values, try store.loadModel(experts: copied).logits(ids).values)
    }

    /// F32 experts are used in place from the map; BF16/F16 experts are widened copies.
    func testF32ExpertsAreZeroCopyAndHalfExpertsAreWidened() throws {
        for (family, mapped) in [("mixtral", true), ("olmoe", true), ("qwen2_moe", false), ("qwen3_moe", false)] {
            let store = try ExpertStore(url: try importedStore(StoreFixtures.url(family)))
            let source = try StoreExpertSource(store: store, precision: .float32)
            let first = try store.modelDescription().moeLayerIndices[0]
            let expert = try source.expert(layer: first, index: 0)
            XCTAssertEqual(expert is MappedExpert, mapped, family)
            XCTAssertEqual(expert is FeedForward, !mapped, family)
        }
    }

    /// With `.stored`, BF16/F16 experts stay 16-bit (copied out of the map as stored): half the
    /// resident bytes, and logits equal to the widened path within rounding (prefill and
    /// decode), with the same greedy choice everywhere.
    func testStoredPrecisionKeepsHalfExpertsAndMatchesWidenedLogits() throws {
        for (family, format) in [("qwen2_moe", HalfMatrix.Format.bf16), ("qwen3_moe", .f16), ("mixtral", nil)] {
            let store = try ExpertStore(url: try importedStore(StoreFixtures.url(family)))
            let widenedSource = try StoreExpertSource(store: store, precision: .float32)
            let storedSource = try StoreExpertSource(store: store, precision: .stored)
            let first = try store.modelDescription().moeLayerIndices[0]
            let expert = try storedSource.expert(layer: first, index: 0)
            if let format {
                XCTAssertEqual((expert as? HalfPrecisionExpert)?.gate.format, format, family)
            } else {
                XCTAssertTrue(expert is MappedExpert, "\(family): f32 experts stay zero-copy f32")
            }
            let ids = try StoreFixtures.referenceIDs(family)
            let widened = try store.loadModel(experts: widenedSource, precision: .float32)
            let stored = try store.loadModel(experts: storedSource)
            let (a, b) = (try widened.logits(ids), try stored.logits(ids))
            let worst = zip(a.values, b.values).map { abs($0 - $1) }.max()!
            XCTAssertLessThan(worst, 1e-4, "\(family): prefill max |Δ| \(worst)")
            var (cacheA, cacheB) = (widened.makeCache(), stored.makeCache())
            for id in ids.prefix(8) {
                let x = try widened.forward([id], cache: &cacheA), y = try stored.forward([id], cache: &cacheB)
                XCTAssertLessThan(zip(x.values, y.values).map { abs($0 - $1) }.max()!, 1e-4, "\(family): decode at \(id)")
                XCTAssertEqual(x.values.indices.max { x.values[$0] < x.values[$1] }, y.values.indices.max { y.values[$0] < y.values[$1] })
            }
            try widenedSource.load(widenedSource.allExpertIDs)
            try storedSource.load(storedSource.allExpertIDs)
            XCTAssertEqual(storedSource.residentBytes * (format == nil ? 1 : 2), widenedSource.residentBytes, family)
        }
    }

    /// Only the allowed experts load; resident bytes count exactly those loaded.
    func testSubsetLoadingAndResidentBytes() throws {
        let store = try ExpertStore(url: try importedStore(StoreFixtures.url("qwen2_moe")))
        let description = try store.modelDescription()
        let layer = description.moeLayerIndices[0]
        let moe = description.layers[layer].moe!
        let perExpert = 3 * description.hiddenSize * moe.expertIntermediateSize * 4
        let allowed: Set<ExpertID> = [ExpertID(layer: layer, expert: 1), ExpertID(layer: layer, expert: 5)]
        let source = try StoreExpertSource(store: store, allowing: allowed, precision: .float32)
        XCTAssertEqual(source.residentBytes, 0)
        _ = try source.expert(layer: layer, index: 1)
        XCTAssertEqual(source.residentBytes, perExpert)
        _ = try source.expert(layer: layer, index: 1)
        XCTAssertEqual(source.loadedCount, 1)
        try source.load(allowed)
        XCTAssertEqual(source.residentBytes, 2 * perExpert)
        XCTAssertThrowsError(try source.expert(layer: layer, index: 2)) { error in
            XCTAssertEqual(error as? StoreError, .expertNotLoaded(path: store.path, layer: layer, expert: 2, allowedCount: 2))
            XCTAssertEqual("\(error)", "\(store.path): layer \(layer), expert 2 is not among the 2 experts this loader was opened for")
        }
        // The loaded expert computes what the checkpoint's expert computes.
        let checkpoint = try CheckpointDirectory(url: StoreFixtures.url("qwen2_moe"))
        let n = description.names
        let reference = try FeedForward(from: checkpoint, gate: n.expert(layer, 5, .gate), up: n.expert(layer, 5, .up), down: n.expert(layer, 5, .down),
                                        hidden: description.hiddenSize, intermediate: moe.expertIntermediateSize)
        let x = Matrix(rows: 3, columns: description.hiddenSize, values: (0..<(3 * description.hiddenSize)).map { Float($0 % 7) * 0.1 - 0.3 })
        XCTAssertEqual(try source.expert(layer: layer, index: 5).forward(x), reference.forward(x))
    }

    /// Many threads loading and running experts at once see one consistent set.
    func testConcurrentLoadingFromManyThreads() throws {
        let store = try ExpertStore(url: try importedStore(StoreFixtures.url("mixtral")))
        let source = try StoreExpertSource(store: store)
        let ids = source.allExpertIDs
        let description = try store.modelDescription()
        let x = Matrix(rows: 2, columns: description.hiddenSize, values: (0..<(2 * description.hiddenSize)).map { Float($0) * 0.01 })
        let serial = try ids.map { try source.expert(layer: $0.layer, index: $0.expert).forward(x) }
        let fresh = try StoreExpertSource(store: store)
        let results = ResultBox(count: ids.count)
        DispatchQueue.concurrentPerform(iterations: ids.count * 4) { i in
            let id = ids[i % ids.count]
            results.set(i % ids.count, Result { try fresh.expert(layer: id.layer, index: id.expert).forward(x) })
        }
        for (i, result) in results.values.enumerated() { XCTAssertEqual(try result?.get(), serial[i]) }
        XCTAssertEqual(fresh.loadedCount, ids.count)
    }
}

final class ResultBox: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var values: [Result<Matrix, Error>?]
    init(count: Int) { values = Array(repeating: nil, count: count) }
    func set(_ i: Int, _ value: Result<Matrix, Error>) {
        lock.lock()
        values[i] = value
        lock.unlock()
    }
}

/// A checkpoint with fused 3-D expert tensors imports into the same per-expert records as the
/// per-expert checkpoint of the same weights, and runs from the store bit for bit as from itself.
final class FusedExpertImportTests: StoreTestCase {
    func testFusedCheckpointImportsIntoPerExpertRecords() throws {
        for family in ["mixtral", "qwen3_moe"] {
            let fused = StoreFixtures.url("fused/\(family)")
            let fusedStore = try ExpertStore(url: try importedStore(fused))
            let plainStore = try ExpertStore(url: try importedStore(StoreFixtures.url(family)))
            let description = try fusedStore.modelDescription()
            XCTAssertEqual(description, try plainStore.modelDescription(), family)
            for l in description.moeLayerIndices {
                for e in 0..<description.layers[l].moe!.expertCount {
                    let key = ExpertKey(layer: l, expert: e)
                    let (a, b) = (try fusedStore.expertRecord(key), try plainStore.expertRecord(key))
                    XCTAssertNotNil(a, "\(family) \(key)")
                    XCTAssertTrue(a == b, "\(family) \(key): records differ")
                }
            }
            let ids = try StoreFixtures.referenceIDs(family)
            let expected = try MoEModel(directory: fused).logits(ids)
            XCTAssertTrue(try fusedStore.loadModel().logits(ids).values == expected.values, family)
        }
    }
}
