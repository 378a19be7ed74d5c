import MoE

/// Parameter counts derived from a model description's tensor inventory (no weights needed).
struct ParameterCount {
    var total = 0
    var routedExperts = 0
    var activePerToken = 0

    init(_ d: ModelDescription) {
        for spec in d.tensorInventory {
            let count = spec.shape.reduce(1, *)
            total += count
            if spec.expert != nil { routedExperts += count }
        }
        let activeExperts = d.moeLayerIndices.reduce(0) { sum, l in
            let moe = d.layers[l].moe!
            return sum + moe.topK * 3 * d.hiddenSize * moe.expertIntermediateSize
        }
        activePerToken = total - routedExperts + activeExperts
    }
}
