import XCTest
@testable import ExpertStore
@testable import MoE

/// gpt-oss experts carry three biases next to their three projections: records of six
/// tensors, imported from the fused checkpoint and run from the store.
final class GptOssStoreTests: StoreTestCase {
    func testImportedStoreHoldsBiasesAndRunsLikeTransformers() throws {
        let checkpoint = StoreFixtures.url("gpt_oss")
        let store = try ExpertStore(url: try importedStore(checkpoint))
        let reader = try ExpertRecordReader(store: store)
        let layouts = try reader.layouts(ExpertKey(layer: 1, expert: 2))
        XCTAssertEqual(layouts.map(\.shape), [[16, 32], [16, 32], [32, 16], [16], [16], [32]])
        XCTAssertEqual(Set(layouts.map(\.dtype)), [.bf16])
        // The down bias in the record is the checkpoint's down_proj_bias row, byte for byte.
        let stored = try CheckpointDirectory(url: checkpoint, derivations: [])
        let row = try stored.tensorBytes("model.layers.1.mlp.experts.down_proj_bias").withUnsafeBytes { Array($0[(2 * 64)..<(3 * 64)]) }
        XCTAssertEqual(try reader.withVerifiedTensor(ExpertKey(layer: 1, expert: 2), index: 5) { Array($0) }, row)

        let reference = try SafetensorsFile(url: checkpoint.appendingPathComponent("reference.safetensors"))
        let (ids, expected) = (try reference.integers("input_ids"), try reference.matrix("logits"))
        for precision in WeightPrecision.allCases {
            let model = try store.loadModel(precision: precision)
            XCTAssertLessThanOrEqual(maxAbsDifference(try model.logits(ids).values, expected.values), 1e-4, "\(precision)")
            var cache = model.makeCache()
            var rows = [Float]()
            for id in ids { rows += try model.forward([id], cache: &cache).values }
            XCTAssertLessThanOrEqual(maxAbsDifference(rows, expected.values), 1e-4, "\(precision) decode")
        }
    }

    /// A record of six tensors: descriptors 4–6 follow the 96-byte header, padded to 160,
    /// and the checksum covers them.
    func testSixTensorRecordsRoundTripAndEveryByteIsChecked() throws {
        let layouts = [TensorLayout(dtype: .bf16, shape: [2, 3]), TensorLayout(dtype: .bf16, shape: [2, 3]), TensorLayout(dtype: .bf16, shape: [3, 2]),
                       TensorLayout(dtype: .f32, shape: [2]), TensorLayout(dtype: .f32, shape: [2]), TensorLayout(dtype: .f32, shape: [3])]
        let payloads = layouts.enumerated().map { i, layout in (0..<layout.byteCount).map { UInt8(truncatingIfNeeded: 16 * i + $0) } }
        var record = [UInt8](repeating: 0xAA, count: RecordCodec.recordLength(for: layouts))
        XCTAssertEqual(record.count, 160 + 16 * 6)
        let sources = payloads.map { p in UnsafeRawBufferPointer(UnsafeMutableRawBufferPointer.allocate(byteCount: p.count, alignment: 16)) }
        defer { sources.forEach { $0.deallocate() } }
        for (source, payload) in zip(sources, payloads) { UnsafeMutableRawBufferPointer(mutating: source).copyBytes(from: payload) }
        record.withUnsafeMutableBytes { RecordCodec.encode(kind: .expertSwiGLU, tensors: layouts, sources: sources, into: $0) }
        XCTAssertEqual(Array(record[8..<10]), [6, 0])
        XCTAssertEqual(Array(record[96..<104]), [2, 0, 1, 0, 2, 0, 0, 0], "descriptor 4: f32, rank 1, [2]")
        XCTAssertEqual(Array(record[156..<160]), [0, 0, 0, 0])
        try record.withUnsafeBytes { bytes in
            let header = try RecordCodec.header(of: bytes, name: "r", store: "s")
            XCTAssertEqual(header.tensors, layouts)
            XCTAssertEqual(header.headerLength, 160)
            try RecordCodec.verify(bytes, header: header, name: "r", store: "s")
            for i in 0..<6 { XCTAssertEqual(Array(RecordCodec.tensorBytes(bytes, header: header, index: i)), payloads[i]) }
        }
        let covered = Array(record[0..<92]) + Array(record[96...])
        XCTAssertEqual(UInt32(record[92]) | UInt32(record[93]) << 8 | UInt32(record[94]) << 16 | UInt32(record[95]) << 24, bitwiseCRC32C(covered))
        for position in 0..<record.count {
            var damaged = record
            damaged[position] ^= 0x10
            let caught: Bool = damaged.withUnsafeBytes { bytes in
                do {
                    let header = try RecordCodec.header(of: bytes, name: "r", store: "s")
                    try RecordCodec.verify(bytes, header: header, name: "r", store: "s")
                    return false
                } catch { return error is StoreError }
            }
            XCTAssertTrue(caught, "flip at byte \(position) went unnoticed")
        }
    }
}

private func maxAbsDifference(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count, "sizes differ: \(a.count) vs \(b.count)")
    return zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
}
