import Foundation
import MoE

public struct ExportSummary: Sendable, Equatable, Codable {
    public var files: [String]
    public var tensors: Int
    public var tensorBytes: Int
    /// What the export changed on the way out (weights rounded to the checkpoint's dtype…).
    public var notes: [String]

    public init(files: [String], tensors: Int, tensorBytes: Int, notes: [String] = []) {
        self.files = files
        self.tensors = tensors
        self.tensorBytes = tensorBytes
        self.notes = notes
    }
}

/// Writes a store back out as a standard Hugging Face checkpoint folder: the original
/// `config.json`, tokenizer and generation files byte for byte, and every tensor under its
/// original name and dtype in `model.safetensors`, or in shards of at most `maxShardBytes`
/// with `model.safetensors.index.json` when it does not fit one (as `save_pretrained` does). Every record's checksum is
/// verified on the way out, so a damaged store cannot produce a silently damaged export.
public struct StoreExporter {
    public let store: ExpertStore
    public let maxShardBytes: Int

    public init(store: ExpertStore, maxShardBytes: Int = ShardedSafetensorsWriter.defaultMaxShardBytes) {
        self.store = store
        self.maxShardBytes = maxShardBytes
    }

    public func export(to directory: URL) throws -> ExportSummary {
        let fm = FileManager.default
        if let existing = try? fm.contentsOfDirectory(atPath: directory.path), !existing.isEmpty {
            throw StoreError.outputNotEmpty(path: directory.path)
        }
        do { try fm.createDirectory(at: directory, withIntermediateDirectories: true) } catch {
            throw StoreError.outputNotEmpty(path: directory.path)
        }
        let description = try store.modelDescription()
        let dense = try StoreTensorProvider(store: store)
        let experts = try ExpertRecordReader(store: store)

        var writer = ShardedSafetensorsWriter(maxShardBytes: maxShardBytes)
        var tensorBytes = 0
        for name in dense.names {
            let layout = try dense.layout(name)
            tensorBytes += layout.byteCount
            writer.add(name, dtype: layout.dtype, shape: layout.shape) { emit in
                try dense.withVerifiedBytes(name) { bytes, _ in try emit(bytes) }
            }
        }
        var tensorCount = dense.names.count
        for layer in description.moeLayerIndices {
            let moe = description.layers[layer].moe!
            if description.names.expertLayout == .fusedInterleavedGateUp {
                // gpt-oss's checkpoint layout: each layer's experts fused, as transformers loads them.
                let layouts = try experts.layouts(ExpertKey(layer: layer, expert: 0))
                tensorBytes += layouts.reduce(0) { $0 + $1.byteCount } * moe.expertCount
                tensorCount += 4
                GptOssFusedLayout.add(to: &writer, layer: layer, names: description.names, expertCount: moe.expertCount,
                                      hidden: description.hiddenSize, width: moe.expertIntermediateSize, dtypes: layouts.map(\.dtype)) { [store] e in
                    let key = ExpertKey(layer: layer, expert: e)
                    guard let record = try store.expertRecord(key) else { throw StoreError.missingRecord(path: store.path, record: "expert record (\(key))") }
                    return record.payloads
                }
                continue
            }
            for e in 0..<moe.expertCount {
                let key = ExpertKey(layer: layer, expert: e)
                let layouts = try experts.layouts(key)
                // The projections, then their biases when the record has them (gpt-oss).
                for index in layouts.indices {
                    let projection = Projection.allCases[index % 3]
                    let name = index < 3 ? description.names.expert(layer, e, projection) : description.names.expertBias(layer, e, projection)
                    tensorBytes += layouts[index].byteCount
                    tensorCount += 1
                    writer.add(name, dtype: layouts[index].dtype, shape: layouts[index].shape) { emit in
                        try experts.withVerifiedTensor(key, index: index) { try emit($0) }
                    }
                }
            }
        }
        var files = [String]()
        for name in try store.fileNames() {
            guard let data = try store.file(name) else { continue }
            let target = directory.appendingPathComponent(name)
            do { try data.write(to: target, options: .atomic) } catch {
                throw SafetensorsWriterError.cannotWrite(file: target.path, reason: error.localizedDescription)
            }
            files.append(name)
        }
        files += try writer.write(to: directory)
        return ExportSummary(files: files.sorted(), tensors: tensorCount, tensorBytes: tensorBytes)
    }
}

/// Raw access to expert records for export: header checks and checksums, no widening.
struct ExpertRecordReader {
    let store: ExpertStore
    let snapshot: LMDBSnapshot

    init(store: ExpertStore) throws {
        self.store = store
        snapshot = try store.environment.snapshot()
    }

    private func record(_ key: ExpertKey) throws -> (UnsafeRawBufferPointer, RecordHeader) {
        let name = "expert record (\(key))"
        let record = try snapshot.withTransaction { txn -> UnsafeRawBufferPointer in
            guard let record = try txn.get(store.experts, key.bytes) else { throw StoreError.missingRecord(path: store.path, record: name) }
            return record
        }
        let header = try RecordCodec.header(of: record, name: name, store: store.path)
        guard header.kind == .expertSwiGLU, header.tensors.count == 3 || header.tensors.count == 6 else {
            throw StoreError.corruptRecord(path: store.path, record: name, reason: "not an expert record")
        }
        return (record, header)
    }

    func layouts(_ key: ExpertKey) throws -> [TensorLayout] { try record(key).1.tensors }

    func withVerifiedTensor<T>(_ key: ExpertKey, index: Int, _ body: (UnsafeRawBufferPointer) throws -> T) throws -> T {
        let (bytes, header) = try record(key)
        try RecordCodec.verify(bytes, header: header, name: "expert record (\(key))", store: store.path)
        return try body(RecordCodec.tensorBytes(bytes, header: header, index: index))
    }
}
