import CLMDB
import Foundation
import MoE

/// What an import reports while it runs. `expertWritten` is inside a transaction that has
/// not committed yet; everything else has been committed.
public enum ImportEvent: Sendable, Equatable {
    case started(fingerprint: String, totalLayers: Int, completedLayers: Int, expertBytes: Int)
    case denseCommitted(tensors: Int, bytes: Int)
    case expertWritten(layer: Int, expert: Int, expertsInLayer: Int, bytes: Int)
    case layerCommitted(layer: Int, completedLayers: Int, totalLayers: Int)
    case completed
}

public struct ImportSummary: Sendable, Equatable, Codable {
    public enum Outcome: String, Sendable, Codable {
        case imported
        /// An interrupted import was finished.
        case resumed
        /// The store already held this model, complete; nothing was written.
        case alreadyComplete
    }

    public var outcome: Outcome
    public var fingerprint: String
    public var denseTensors: Int
    public var experts: Int
    /// Bytes of tensor data written by this run.
    public var bytesWritten: Int
    public var layersWritten: [Int]
}

/// Converts a Hugging Face checkpoint folder into an expert store, keeping every tensor's
/// original dtype and bytes.
///
/// Crash safety comes from LMDB transactions: the first commits the metadata, the original
/// config/tokenizer files, every dense tensor and an import record saying "importing, no
/// expert layers yet"; then each MoE layer's experts are committed in one transaction that
/// also adds the layer to the import record; the last marks the import complete. Killed at
/// any moment, the store holds exactly the committed transactions: nothing at all, or a
/// store whose import record says which layers are in. Running the same import again
/// skips those layers and finishes the rest. A store of another model (by fingerprint) is
/// refused before anything is written.
public struct StoreImporter {
    public let checkpointURL: URL
    public let storeURL: URL
    /// The first LMDB map size; by default the checkpoint's size plus headroom. The map
    /// doubles whenever it fills up, so a small value only costs retried transactions.
    public var initialMapSize: Int?
    /// Whether block-scaled FP8 weights are widened to BF16 (`FP8BlockDequantization`);
    /// without it an FP8 checkpoint is refused, never silently widened.
    public var dequantizeFP8: Bool

    public init(checkpoint: URL, store: URL, initialMapSize: Int? = nil, dequantizeFP8: Bool = false) {
        checkpointURL = checkpoint
        storeURL = store
        self.initialMapSize = initialMapSize
        self.dequantizeFP8 = dequantizeFP8
    }

    /// The checkpoint as this import reads it: FP8 weights widened when asked for, refused otherwise.
    func openCheckpoint() throws -> CheckpointDirectory {
        let derivations = (dequantizeFP8 ? [FP8BlockDequantization()] : []) + CheckpointDirectory.standardDerivations
        let checkpoint = try CheckpointDirectory(url: checkpointURL, derivations: derivations)
        for name in checkpoint.tensorNames {
            let dtype = try checkpoint.layout(name).dtype
            if dtype.isFloat8 {
                throw CheckpointError.needsDequantization(file: try checkpoint.file(for: name).path, tensor: name, dtype: dtype.rawValue)
            }
        }
        return checkpoint
    }

    /// `progress` sees every step; if it throws, the import stops there (the open
    /// transaction is rolled back) and the error is rethrown; running again resumes.
    public func run(progress: (ImportEvent) throws -> Void = { _ in }) throws -> ImportSummary {
        let checkpoint = try openCheckpoint()
        let config = try checkpoint.configData()
        let description = try Architectures.describe(configData: config, file: checkpointURL.appendingPathComponent("config.json").path)
        let plan = try ImportPlan(checkpoint: checkpoint, description: description)
        let fingerprint = try ModelFingerprint.compute(checkpoint: checkpoint, config: config)

        let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
        let records = plan.denseNames.count + plan.expertCount
        let estimate = checkpoint.storedBytes + checkpoint.storedBytes / 8 + records * 2 * pageSize + (64 << 20)
        let environment = try LMDBEnvironment.open(directory: storeURL, readOnly: false, create: true, mapSize: initialMapSize ?? estimate)

        // Decide before writing anything, so a refused import leaves the store untouched.
        let existing = try Self.existingMeta(environment, StoreSchema.MetaKey.importState).map { try Self.decodeState($0, environment) }
        if let existing, existing.fingerprint != fingerprint {
            let family = try? Self.existingMeta(environment, StoreSchema.MetaKey.description)
                .map { try JSONDecoder().decode(ModelDescription.self, from: $0).family.rawValue }
            throw StoreError.differentModel(path: storeURL.path,
                                            storeModel: "\(family ?? "unknown") from \(existing.source)",
                                            storeFingerprint: existing.fingerprint,
                                            checkpoint: checkpointURL.path, checkpointFingerprint: fingerprint)
        }
        if let existing, existing.phase == .complete {
            return ImportSummary(outcome: .alreadyComplete, fingerprint: fingerprint, denseTensors: plan.denseNames.count,
                                 experts: plan.expertCount, bytesWritten: 0, layersWritten: [])
        }
        let store = try ExpertStore(environment: environment, url: storeURL)
        var state = existing ?? ImportState(phase: .importing, fingerprint: fingerprint, source: checkpointURL.path,
                                            moeLayers: description.moeLayerIndices, completedLayers: [])
        try progress(.started(fingerprint: fingerprint, totalLayers: state.moeLayers.count,
                          completedLayers: state.completedLayers.count, expertBytes: plan.expertBytes))
        var bytesWritten = 0
        if existing == nil {
            bytesWritten += try writeMetadataAndDense(store: store, checkpoint: checkpoint, config: config,
                                                      description: description, plan: plan, state: state)
            try progress(.denseCommitted(tensors: plan.denseNames.count, bytes: bytesWritten))
        }
        var layersWritten = [Int]()
        let stateKey = Array(StoreSchema.MetaKey.importState.utf8)
        for layer in state.remainingLayers {
            // The import record is re-read inside each transaction, so that two imports
            // racing on one store (LMDB runs their write transactions one after the other)
            // never write a record that forgets a layer the other committed.
            let outcome = try environment.write { txn -> (state: ImportState, bytes: Int) in
                var current = try txn.get(store.meta, stateKey).map { try Self.decodeState(Data($0), environment) } ?? state
                guard current.fingerprint == fingerprint else {
                    throw StoreError.differentModel(path: storeURL.path, storeModel: "another model from \(current.source)",
                                                    storeFingerprint: current.fingerprint, checkpoint: checkpointURL.path,
                                                    checkpointFingerprint: fingerprint)
                }
                if current.completedLayers.contains(layer) { return (current, 0) }
                var written = 0
                let count = description.layers[layer].moe!.expertCount
                for e in 0..<count {
                    // The three projections, then their biases when the family's experts have them.
                    var names = Projection.allCases.map { description.names.expert(layer, e, $0) }
                    if description.layers[layer].moe!.expertFunction.hasBias {
                        names += Projection.allCases.map { description.names.expertBias(layer, e, $0) }
                    }
                    written += try Self.putRecord(txn, database: store.experts, key: ExpertKey(layer: layer, expert: e).bytes,
                                                  kind: .expertSwiGLU, names: names, checkpoint: checkpoint)
                    try progress(.expertWritten(layer: layer, expert: e, expertsInLayer: count, bytes: written))
                }
                current.completedLayers.append(layer)
                try txn.put(store.meta, stateKey, try Self.json(current))
                return (current, written)
            }
            state = outcome.state
            bytesWritten += outcome.bytes
            if outcome.bytes > 0 { layersWritten.append(layer) }
            try progress(.layerCommitted(layer: layer, completedLayers: state.completedLayers.count, totalLayers: state.moeLayers.count))
        }
        state.phase = .complete
        let finished = state
        try environment.write { txn in try txn.put(store.meta, stateKey, try Self.json(finished)) }
        try environment.sync()
        try progress(.completed)
        return ImportSummary(outcome: existing == nil ? .imported : .resumed, fingerprint: fingerprint,
                             denseTensors: plan.denseNames.count, experts: plan.expertCount,
                             bytesWritten: bytesWritten, layersWritten: layersWritten)
    }

    /// The first transaction: format, description, fingerprint, original files, dense
    /// tensors, and the import record. Returns the tensor bytes written.
    private func writeMetadataAndDense(store: ExpertStore, checkpoint: CheckpointDirectory, config: Data,
                                       description: ModelDescription, plan: ImportPlan, state: ImportState) throws -> Int {
        var files = [String: Data]()
        for name in StoreSchema.sideFiles {
            if let data = FileManager.default.contents(atPath: checkpointURL.appendingPathComponent(name).path) { files[name] = data }
        }
        files["config.json"] = config
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let descriptionJSON = Array(try encoder.encode(description))
        return try store.environment.write { txn in
            let meta = store.meta
            // Another import racing on this store may have written the metadata first (LMDB ran
            // its transaction before ours) and committed layers since: writing our empty import
            // record over its record would forget them. Leave everything to it; the layer loop
            // re-reads the record (and checks the fingerprint) in each of its transactions.
            if try txn.get(meta, Array(StoreSchema.MetaKey.importState.utf8)) != nil { return 0 }
            try withUnsafeBytes(of: StoreSchema.formatVersion.littleEndian) { try txn.put(meta, Array(StoreSchema.MetaKey.format.utf8), $0) }
            try txn.put(meta, Array(StoreSchema.MetaKey.description.utf8), descriptionJSON)
            try txn.put(meta, Array(StoreSchema.MetaKey.fingerprint.utf8), Array(state.fingerprint.utf8))
            for (name, data) in files.sorted(by: { $0.key < $1.key }) {
                try txn.put(meta, Array(StoreSchema.MetaKey.file(name).utf8), Array(data))
            }
            var written = 0
            for name in plan.denseNames {
                written += try Self.putRecord(txn, database: store.dense, key: Array(name.utf8), kind: .denseTensor,
                                              names: [name], checkpoint: checkpoint)
            }
            try txn.put(meta, Array(StoreSchema.MetaKey.importState.utf8), try Self.json(state))
            return written
        }
    }

    /// Writes one record holding the checkpoint tensors `names`, straight from the
    /// checkpoint's memory map into LMDB's reserved space. Returns the tensor bytes.
    private static func putRecord(_ txn: LMDBTransaction, database: MDB_dbi, key: [UInt8], kind: RecordKind,
                                  names: [String], checkpoint: CheckpointDirectory) throws -> Int {
        let layouts = try names.map { name in
            let (dtype, shape) = try checkpoint.layout(name)
            return TensorLayout(dtype: dtype, shape: shape)
        }
        // Experts the checkpoint stores in MXFP4 stay MXFP4, in a record that says so.
        let kind = kind == .expertSwiGLU && layouts.allSatisfy({ MXFP4Matrix.logicalShape(dtype: $0.dtype, shape: $0.shape) != nil })
            ? RecordKind.expertMXFP4 : kind
        try names.map { try checkpoint.tensorBytes($0) }.withUnsafeBytesOfEach { sources in
            try txn.reserve(database, key, count: RecordCodec.recordLength(for: layouts)) { target in
                RecordCodec.encode(kind: kind, tensors: layouts, sources: sources, into: target)
            }
        }
        return layouts.reduce(0) { $0 + $1.byteCount }
    }

    /// A meta value of an existing store, read without creating anything.
    private static func existingMeta(_ environment: LMDBEnvironment, _ key: String) throws -> Data? {
        guard let meta = try environment.openDatabase(StoreSchema.Database.meta.rawValue, create: false) else { return nil }
        return try environment.read { txn in try txn.get(meta, Array(key.utf8)).map { Data($0) } }
    }

    private static func decodeState(_ bytes: Data, _ environment: LMDBEnvironment) throws -> ImportState {
        do { return try JSONDecoder().decode(ImportState.self, from: bytes) } catch {
            throw StoreError.malformedDocument(path: environment.path, record: "meta 'import'", reason: "\(error)")
        }
    }

    private static func json(_ state: ImportState) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return Array(try encoder.encode(state))
    }
}
