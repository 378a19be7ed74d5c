/// Everything that can go wrong with an expert store. Each case names the store (and the
/// record, where there is one) and says what to do where there is something to do.
public enum StoreError: Error, CustomStringConvertible, Equatable {
    /// The path holds no store, or one without MoEKit's metadata.
    case notAStore(path: String, reason: String)
    /// `data.mdb` is shorter than the pages its own metadata says it has.
    case truncated(path: String, expectedBytes: Int, actualBytes: Int)
    /// An LMDB call failed.
    case lmdb(path: String, operation: String, code: Int32, message: String)
    /// An import was started but has not finished.
    case importIncomplete(path: String, completedLayers: Int, totalLayers: Int, source: String)
    /// The store holds another model than the checkpoint being imported.
    case differentModel(path: String, storeModel: String, storeFingerprint: String, checkpoint: String, checkpointFingerprint: String)
    /// A record was written by a newer (or unknown) store format.
    case unsupportedFormat(path: String, record: String, version: Int)
    /// A record's header is inconsistent with its length or with itself.
    case corruptRecord(path: String, record: String, reason: String)
    /// A record's bytes do not match the CRC-32C in its header.
    case checksumMismatch(path: String, record: String, stored: UInt32, computed: UInt32)
    case missingRecord(path: String, record: String)
    /// An expert outside the subset a loader was opened for was asked for.
    case expertNotLoaded(path: String, layer: Int, expert: Int, allowedCount: Int)
    case unsupportedDType(path: String, record: String, dtype: String, purpose: String)
    /// The checkpoint being imported does not match its own config.json.
    case checkpointMismatch(checkpoint: String, reason: String)
    case malformedDocument(path: String, record: String, reason: String)
    /// A write was attempted on a store opened read-only.
    case readOnly(path: String, operation: String)
    /// Export refuses to write into a folder that already has files in it.
    case outputNotEmpty(path: String)
    /// A writer was asked for while this process has the store open read-only.
    case openReadOnly(path: String)
    /// The memory map must grow (or follow another process's growth) while this process
    /// still reads through it.
    case mapInUse(path: String)

    public var description: String {
        switch self {
        case let .notAStore(path, reason):
            return "\(path): not a MoEKit expert store: \(reason)"
        case let .truncated(path, expected, actual):
            return "\(path): data.mdb is truncated: its metadata needs \(expected) bytes but the file has \(actual); restore it from a copy or re-run `moekit import` into a new store"
        case let .lmdb(path, operation, code, message):
            return "\(path): LMDB \(operation) failed: \(message) (code \(code))"
        case let .importIncomplete(path, completed, total, source):
            return "\(path): the import is incomplete (\(completed) of \(total) MoE layers written); re-run the same command, `moekit import --model \(source) --store \(path)`, to resume it"
        case let .differentModel(path, storeModel, storeFingerprint, checkpoint, checkpointFingerprint):
            return "\(path): the store holds another model (\(storeModel), fingerprint \(storeFingerprint)) than \(checkpoint) (fingerprint \(checkpointFingerprint)); import into a new store path instead"
        case let .unsupportedFormat(path, record, version):
            return "\(path): \(record) uses store format version \(version), which this MoEKit cannot read"
        case let .corruptRecord(path, record, reason):
            return "\(path): \(record) is corrupt: \(reason)"
        case let .checksumMismatch(path, record, stored, computed):
            return "\(path): \(record) is corrupt: CRC-32C is \(hex(computed)) but the record says \(hex(stored))"
        case let .missingRecord(path, record):
            return "\(path): \(record) is missing"
        case let .expertNotLoaded(path, layer, expert, allowedCount):
            return "\(path): layer \(layer), expert \(expert) is not among the \(allowedCount) experts this loader was opened for"
        case let .unsupportedDType(path, record, dtype, purpose):
            return "\(path): \(record) has dtype \(dtype), which cannot be used as \(purpose)"
        case let .checkpointMismatch(checkpoint, reason):
            return "\(checkpoint): cannot import: \(reason)"
        case let .malformedDocument(path, record, reason):
            return "\(path): \(record) is malformed: \(reason)"
        case let .readOnly(path, operation):
            return "\(path): cannot \(operation): the store is open read-only"
        case let .mapInUse(path):
            return "\(path): the store has outgrown this process's memory map while experts or tensors loaded from it are still in use; release them (or restart the process) and try again"
        case let .openReadOnly(path):
            return "\(path): the store is already open read-only in this process; close it before writing to it"
        case let .outputNotEmpty(path):
            return "\(path): cannot export here: the folder is not empty (or cannot be created); choose a new folder"
        }
    }
}

func hex(_ value: UInt32) -> String {
    let digits = String(value, radix: 16)
    return "0x" + String(repeating: "0", count: max(0, 8 - digits.count)) + digits
}
