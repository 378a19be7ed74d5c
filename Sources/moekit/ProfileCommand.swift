import ArgumentParser
import ExpertStore
import Foundation
import MoE
import Routing

struct ProfileCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "profile",
        abstract: "Run calibration text through the model and store its routing profile.",
        discussion: """
        One pass records everything the compression methods need (router frequencies, gates, \
        expert output norms, means and spreads, co-activation, router-logit Gram matrices, \
        EASY-EP and TCESS sums, super-expert maxima). With --streaming the model runs one layer \
        at a time, so peak memory is one layer plus the hidden states of the calibration tokens.
        """)

    @OptionGroup var storeOption: StoreOption
    @OptionGroup var threadOptions: ThreadOptions
    @OptionGroup var calibration: CalibrationOptions
    @Option(help: "Name to store the profile under.") var name: String
    @Flag(help: "Stream layer by layer (chosen automatically when the model does not fit in memory).") var streaming = false
    @Option(help: "With --streaming: MB of hidden states kept in memory before spilling to disk.") var hiddenStateMemory = 256
    @Option(help: "Run all experts on every n-th token for HC-SMoE's all-token means (0 = off).") var denseSampleStride = 16
    @Option(help: "Also write every derived criterion per (layer, expert) to this JSON file.") var export: String?
    @Flag(help: "Print the summary as JSON (and no progress).") var json = false

    func run() throws {
        threadOptions.apply()
        let store = try ExpertStore(url: storeOption.url, readOnly: false)
        let description = try store.modelDescription()
        let tokenizer = try StoreFiles.tokenizer(store)
        let (data, sequences) = try calibration.sequences(tokenizer: tokenizer, contextLimit: description.maxPositionEmbeddings)
        let progress = TerminalProgress(quiet: json)
        var profiler = CalibrationProfiler(fingerprint: try store.fingerprint() ?? "", source: data.file)
        profiler.denseSampleStride = denseSampleStride
        let start = Date()
        let report: (CalibrationProfiler.Progress) -> Void = { p in
            let elapsed = Date().timeIntervalSince(start)
            let fraction = Double(p.done) / Double(max(p.total, 1))
            // Streaming reports every token at each layer: its rate is tokens times the layers done.
            let rate = Double(p.tokens) * (p.stage.hasPrefix("layer") ? fraction : 1) / max(elapsed, 1e-3)
            progress.update("profiling \(name): \(TerminalProgress.bar(fraction, width: 20)) \(p.stage), \(Int(rate)) tokens/s \(TerminalProgress.eta(elapsed: elapsed, fraction: fraction))")
        }
        let profile: RoutingProfile
        if ExecutionMode.streams("profile", neededBytes: ExecutionMode.inMemoryBytes(try store.footprint()), forced: streaming) {
            let tensors = try StoreTensorProvider(store: store)
            profile = try profiler.profileStreaming(
                runner: LayerwiseRunner(description: description, tensors: tensors), sequences: sequences,
                hiddenStateBudget: hiddenStateMemory << 20,
                expertsForLayer: { l in try StoreExpertSource.layer(l, of: store) }, progress: report)
        } else {
            profile = try profiler.profile(model: store.loadModel(), sequences: sequences, progress: report)
        }
        let seconds = Date().timeIntervalSince(start)
        progress.finish()
        try store.profiles.put(profile, named: name)
        if let export {
            try CriteriaExport(name: name, profile: profile).write(to: URL(fileURLWithPath: export))
        }
        let summary = ProfileSummary(name: name, profile: profile, seconds: seconds)
        try Output.print(summary, json: json, text: summary.text)
    }
}

/// What `profile` prints: tokens, speed, per-layer entropy, top experts, super experts.
struct ProfileSummary: Encodable {
    struct Layer: Encodable {
        var layer: Int
        var routingEntropyBits: Double
        var maximumEntropyBits: Double
        var topExperts: [Int]
        var topShares: [Double]
    }
    var name: String
    var source: String
    var sequences: Int
    var tokens: Int
    var tokensPerSecond: Double
    var layers: [Layer]
    var superExperts: [LayerExpert]

    init(name: String, profile: RoutingProfile, seconds: Double) {
        self.name = name
        source = profile.source
        sequences = profile.sequenceCount
        tokens = profile.tokenCount
        tokensPerSecond = Double(tokens) / max(seconds, 1e-9)
        layers = profile.layers.enumerated().compactMap { l, layer in
            layer.map { layer in
                let shares = layer.selectionDistribution
                let top = shares.indices.sorted { shares[$0] > shares[$1] }.prefix(4)
                return Layer(layer: l, routingEntropyBits: layer.routingEntropy, maximumEntropyBits: log2(Double(layer.expertCount)),
                             topExperts: Array(top), topShares: top.map { shares[$0] })
            }
        }
        superExperts = profile.superExperts().sorted()
    }

    var text: String {
        var lines = ["profile '\(name)': \(sequences) sequences, \(tokens) tokens from \(source), \(Int(tokensPerSecond)) tokens/s"]
        lines.append("layer  entropy (bits)  top experts (share of routing slots)")
        for l in layers {
            let top = zip(l.topExperts, l.topShares).map { "\($0) (\(String(format: "%.1f", $1 * 100))%)" }.joined(separator: ", ")
            lines.append(String(format: "%5d  %5.2f of %5.2f   ", l.layer, l.routingEntropyBits, l.maximumEntropyBits) + top)
        }
        lines.append("super experts: " + (superExperts.isEmpty ? "none" : superExperts.map { "layer \($0.layer) expert \($0.expert)" }.joined(separator: ", ")))
        return lines.joined(separator: "\n")
    }
}

/// `--export`: every derived criterion per (layer, expert), schema "moekit.criteria.v1":
/// `{schema, profile, modelFingerprint, source, tokens, layers: [{layer, tokens, routingEntropyBits,
/// experts: [ExpertCriteria]}]}`; field meanings are documented on `ExpertCriteria`.
struct CriteriaExport: Encodable {
    struct Layer: Encodable {
        var layer: Int
        var tokens: Int
        var routingEntropyBits: Double
        var experts: [ExpertCriteria]
    }
    var schema = "moekit.criteria.v1"
    var profile: String
    var modelFingerprint: String
    var source: String
    var tokens: Int
    var layers: [Layer]

    init(name: String, profile: RoutingProfile) {
        self.profile = name
        modelFingerprint = profile.modelFingerprint
        source = profile.source
        tokens = profile.tokenCount
        let criteria = profile.criteria()
        layers = profile.layers.enumerated().compactMap { l, layer in
            layer.map { Layer(layer: l, tokens: $0.tokenCount, routingEntropyBits: $0.routingEntropy, experts: criteria[l]) }
        }
    }

    func write(to url: URL) throws {
        try Data(Output.json(self).utf8).write(to: url)
    }
}

/// Files an imported store keeps from its checkpoint.
enum StoreFiles {
    static func tokenizer(_ store: ExpertStore) throws -> Tokenizer {
        guard let data = try store.file("tokenizer.json") else {
            throw ValidationError("\(store.path): the store has no tokenizer.json (the checkpoint it was imported from had none)")
        }
        return try Tokenizer(data: data, file: "tokenizer.json in \(store.path)")
    }
}
