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
        try Self.checkPredictionLayers(checkpoint: checkpoint, description: description)
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

    /// Multi-token-prediction layers are all there or not at all: transformers' own
    /// `save_pretrained` drops them (its model has no place for them) while config.json keeps
    /// `num_nextn_predict_layers`, and such a checkpoint runs the same. When any of their
    /// tensors is present, every one must be, with its shape, so that an export carries
    /// them whole. They import as dense records like every tensor outside the inventory.
    static func checkPredictionLayers(checkpoint: CheckpointDirectory, description: ModelDescription) throws {
        let specs = description.predictionLayerInventory
        guard specs.contains(where: { checkpoint.contains($0.name) }) else { return }
        for spec in specs {
            guard checkpoint.contains(spec.name) else {
                throw StoreError.checkpointMismatch(checkpoint: checkpoint.location, reason: "tensor '\(spec.name)' of the multi-token-prediction layer (num_nextn_predict_layers) is missing while others of that layer are present")
            }
            let shape = try checkpoint.shape(spec.name)
            guard shape == spec.shape else {
                throw StoreError.checkpointMismatch(checkpoint: checkpoint.location,
                                                    reason: "tensor '\(spec.name)' of the multi-token-prediction layer has shape \(shape), config.json implies \(spec.shape)")
            }
        }
    }

    /// A tensor's shape as a weight: an MXFP4-stored expert projection (`MXFP4ExpertTensors`)
    /// counts as the `[rows, columns]` it multiplies as.
    static func logicalShape(_ name: String, _ checkpoint: CheckpointDirectory) throws -> [Int] {
        let (dtype, shape) = try checkpoint.layout(name)
        return MXFP4Matrix.logicalShape(dtype: dtype, shape: shape) ?? shape
    }
}
