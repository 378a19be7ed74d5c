import Foundation
import MoE

/// Which checkpoint tensors become dense records and which become expert records, after
/// checking the checkpoint against the tensor inventory its config implies.
struct ImportPlan {
    /// Every checkpoint tensor that is not a routed expert's projection, sorted.
    var denseNames: [String]
    var expertCount: Int
    var expertBytes: Int

    init(checkpoint: CheckpointDirectory, description: ModelDescription) throws {
        var expertNames = Set<String>()
        var expertBytes = 0
        try description.checkConfigAgainstTensors(file: URL(fileURLWithPath: checkpoint.location).appendingPathComponent("config.json").path) {
            checkpoint.contains($0) ? try Self.logicalShape($0, checkpoint) : nil
        }
        for spec in description.tensorInventory {
            guard checkpoint.contains(spec.name) else {
                throw StoreError.checkpointMismatch(checkpoint: checkpoint.location, reason: "tensor '\(spec.name)' that config.json implies is missing")
            }
            let (dtype, shape) = try checkpoint.layout(spec.name)
            let logical = spec.expert == nil ? shape : try Self.logicalShape(spec.name, checkpoint)
            guard logical == spec.shape else {
                throw StoreError.checkpointMismatch(checkpoint: checkpoint.location,
                                                    reason: "tensor '\(spec.name)' has shape \(shape), config.json implies \(spec.shape)")
            }
            if spec.expert != nil {
                expertNames.insert(spec.name)
                expertBytes += shape.reduce(1, *) * dtype.byteSize
            }
        }
        denseNames = checkpoint.tensorNames.filter { !expertNames.contains($0) }
        for name in denseNames {
            let shape = try checkpoint.shape(name)
            guard shape.count <= RecordHeader.maxRank, shape.allSatisfy({ $0 <= Int(UInt32.max) }) else {
                throw StoreError.checkpointMismatch(checkpoint: checkpoint.location,
                                                    reason: "tensor '\(name)' has shape \(shape); records hold up to \(RecordHeader.maxRank) dimensions below 2^32")
            }
        }
        expertCount = description.moeLayerIndices.reduce(0) { $0 + description.layers[$1].moe!.expertCount }
        self.expertBytes = expertBytes
    }

    /// A tensor's shape as a weight: an MXFP4-stored expert projection (`MXFP4ExpertTensors`)
    /// counts as the `[rows, columns]` it multiplies as.
    static func logicalShape(_ name: String, _ checkpoint: CheckpointDirectory) throws -> [Int] {
        let (dtype, shape) = try checkpoint.layout(name)
        return MXFP4Matrix.logicalShape(dtype: dtype, shape: shape) ?? shape
    }
}
