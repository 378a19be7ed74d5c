import ArgumentParser
import Foundation
import Compression
import ExpertStore
import MoE
import MoEServer

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "inspect", abstract: "Describe a model: architecture, layers, experts, parameters, bytes.")

    @OptionGroup var source: ModelOptions
    @Flag(help: "Print JSON instead of text.") var json = false

    func run() throws {
        var summary: ModelSummary
        if let store = try source.openStore() {
            let storeSummary = try StoreSummary(store: store)
            summary = ModelSummary(description: try store.modelDescription(), storedBytes: storeSummary.fileBytes)
            summary.store = storeSummary
            if source.plan != nil {
                summary.plan = try PlanBytes(plan: CompressionPlan.named(source.plan, in: store), store: store, precision: source.precision)
            }
        } else {
            let directory = try source.modelDirectory()
            let checkpoint = try CheckpointDirectory(url: directory)
            let description = try Architectures.describe(configData: try checkpoint.configData(),
                                                         file: directory.appendingPathComponent("config.json").path)
            summary = ModelSummary(description: description, storedBytes: checkpoint.storedBytes)
        }
        try Output.print(summary, json: json, text: summary.text)
    }
}

/// What `inspect` reports, computed from the description alone.
struct ModelSummary: Encodable {
    var architecture: String
    var layers: Int
    var moeLayers: [Int]
    /// Multi-token-prediction layers after the decoder layers: stored and exported, not run.
    var predictionLayers: Int
    var expertsPerLayer: Int
    var topK: Int
    var sharedExpert: Bool
    var hiddenSize: Int
    var vocabularySize: Int
    var attention: String
    var parameters: Int
    var expertParameters: Int
    var activeParametersPerToken: Int
    var storedBytes: Int
    /// Only for `--store`.
    var store: StoreSummary?
    /// Only for `--store` with `--plan`.
    var plan: PlanBytes?

    init(description d: ModelDescription, storedBytes: Int) {
        architecture = d.family.rawValue
        layers = d.layerCount
        moeLayers = d.moeLayerIndices
        predictionLayers = d.predictionLayers?.count ?? 0
        let firstMoE = d.moeLayerIndices.first.flatMap { d.moe(layer: $0) }
        expertsPerLayer = firstMoE?.expertCount ?? 0
        topK = firstMoE?.topK ?? 0
        sharedExpert = firstMoE?.sharedExpert != nil
        hiddenSize = d.hiddenSize
        vocabularySize = d.vocabularySize
        let a = d.attention
        attention = a.latent == nil ? "grouped-query (\(a.headCount) heads, \(a.keyValueHeadCount) kv heads, head dim \(a.queryKeyHeadDim))"
                                    : "multi-head latent (\(a.headCount) heads, kv rank \(a.latent!.keyValueLoraRank))"
        let counts = ParameterCount(d)
        parameters = counts.total
        expertParameters = counts.routedExperts
        activeParametersPerToken = counts.activePerToken
        self.storedBytes = storedBytes
    }

    private var predictionText: String {
        predictionLayers == 0 ? "" : ", plus \(predictionLayers) multi-token-prediction layer\(predictionLayers == 1 ? "" : "s") (kept, not run)"
    }

    var text: String {
        """
        architecture      \(architecture)
        layers            \(layers) (MoE: \(moeLayers.count == layers ? "all" : moeLayers.map(String.init).joined(separator: ",")))\(predictionText)
        experts           \(expertsPerLayer) per MoE layer, top-\(topK)\(sharedExpert ? ", plus a shared expert" : "")
        hidden size       \(hiddenSize)
        vocabulary        \(vocabularySize)
        attention         \(attention)
        parameters        \(parameters.formatted()) (routed experts \(expertParameters.formatted()), active per token \(activeParametersPerToken.formatted()))
        bytes on disk     \(storedBytes.formatted())
        """ + (store.map { "\n" + $0.text } ?? "") + (plan.map { "\n" + $0.text } ?? "")
    }
}
