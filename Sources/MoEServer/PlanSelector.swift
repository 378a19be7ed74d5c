import Compression
import ExpertStore
import Foundation
import MoE
import Routing

/// PreMoe's task-adaptive expert retrieval (TAER, METHODS.md §3), choosing among stored plans.
///
/// **Signature.** A plan's routing signature is the expert-selection distribution of the
/// model's first MoE layer taken from the profile the plan was built from
/// (`recipe.profiles[0]`): for each expert j, n_j / T, the share of the profile's T
/// calibration tokens whose top-k includes j. A prompt's signature is the same over its own
/// tokens. Both are scaled to unit length and the plan at the smallest Euclidean distance wins.
/// PreMoe uses TCESS (the top-1 router logits, k' = 1) instead; on the first default model that
/// signature sent only 82% of held-out Python prompts to the Python plan, while the top-k
/// selection shares, four choices per token, sent 93%. On the current default model they reach
/// 90% (Python; the misses are mostly codec tables that route like prose) and 99% (German).
/// Ranking plans by the cross-entropy of the prompt's shares under each plan's shares instead
/// was measured worse (87% Python).
///
/// **Cost.** Only the layers up to the first MoE layer are loaded (embedding, attention,
/// any dense layers before it, its router); the prompt runs through them and stops at that
/// router. The first MoE layer's experts are never loaded: its observer stops the pass
/// before their output is used, and `NoExperts` stands in for them.
public final class PlanSelector: @unchecked Sendable {
    public struct Signature: Sendable, Equatable {
        public var plan: String
        public var profile: String
        /// Unit-length expert-selection shares of the first MoE layer.
        public var vector: [Double]
    }

    public struct Choice: Sendable, Equatable {
        public var plan: String
        /// Distance to every plan's signature, in the order of `signatures`.
        public var distances: [Double]
    }

    public let signatures: [Signature]
    public let layer: Int
    private let runner: LayerwiseRunner
    private let layers: [LayerwiseRunner.Layer]
    /// Kept here rather than fetched per prompt (`LayerwiseRunner.embed` reads and verifies
    /// the whole table from the store on every call).
    private let embedding: Matrix

    public init(store: ExpertStore, plans: [CompressionPlan]) throws {
        let description = try store.modelDescription()
        guard let first = description.moeLayerIndices.first else { throw ServeError.noMoELayer }
        layer = first
        var signatures = [Signature]()
        for plan in plans {
            guard let profileName = plan.recipe.profiles.first else { throw ServeError.noProfile(plan: plan.name) }
            guard let profile = try store.profiles.get(RoutingProfile.self, named: profileName),
                  profile.layers.indices.contains(first), let layerProfile = profile.layers[first] else {
                throw ServeError.missingProfile(plan: plan.name, profile: profileName)
            }
            let total = Double(max(layerProfile.tokenCount, 1))
            signatures.append(Signature(plan: plan.name, profile: profileName,
                                        vector: Self.unit(layerProfile.experts.map { $0.count / total })))
        }
        self.signatures = signatures
        let tensors = try StoreTensorProvider(store: store)
        let runner = LayerwiseRunner(description: description, tensors: tensors)
        self.runner = runner
        embedding = try tensors.matrix(description.names.embedding, shape: [description.vocabularySize, description.hiddenSize])
        layers = try (0...first).map { try runner.layer($0) }
    }

    /// The prompt's unit-length expert-selection shares at the first MoE layer.
    public func signature(of tokens: [Int]) throws -> [Double] {
        guard !tokens.isEmpty else { throw ModelError.emptyInput }
        if let bad = tokens.first(where: { !(0..<embedding.rows).contains($0) }) {
            throw ModelError.tokenOutOfRange(token: bad, vocabularySize: embedding.rows)
        }
        var hidden = embedding.gatherRows(tokens)
        let observer = SelectionObserver(layer: layer)
        do {
            for decoderLayer in layers { try decoderLayer.run(&hidden, experts: NoExperts(width: runner.description.hiddenSize), observer: observer) }
        } catch is SelectionObserver.Done {
            // The observer ends the pass at the first MoE router, as intended.
        }
        guard let sums = observer.sums else { throw ServeError.noMoELayer }
        return Self.unit(sums.map { $0 / Double(tokens.count) })
    }

    /// The plan whose signature is nearest to the prompt's.
    public func choose(for tokens: [Int]) throws -> Choice {
        let prompt = try signature(of: tokens)
        let distances = signatures.map { signature in
            zip(signature.vector, prompt).reduce(0.0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }.squareRoot()
        }
        let best = distances.indices.min { distances[$0] < distances[$1] }!
        return Choice(plan: signatures[best].plan, distances: distances)
    }

    static func unit(_ v: [Double]) -> [Double] {
        let norm = v.reduce(0.0) { $0 + $1 * $1 }.squareRoot()
        return norm > 0 ? v.map { $0 / norm } : v
    }
}

/// Counts how often each expert is in a token's top-k at one layer, then stops the forward
/// pass by throwing `Done`.
private final class SelectionObserver: RoutingObserver {
    struct Done: Error {}
    let layer: Int
    var sums: [Double]?

    init(layer: Int) { self.layer = layer }

    func observe(_ o: MoELayerObservation) throws {
        guard o.layer == layer else { return }
        var sums = [Double](repeating: 0, count: o.expertCount)
        for decision in o.decisions {
            for e in decision.experts { sums[e] += 1 }
        }
        self.sums = sums
        throw Done()
    }
}

/// Zero outputs in place of the first MoE layer's experts: the pass stops at that layer's
/// observation, before anything uses them, so loading the real ones would be wasted.
private struct NoExperts: ExpertSource {
    let width: Int
    func expert(layer: Int, index: Int) throws -> any Expert { ConstantExpert(vector: [Float](repeating: 0, count: width)) }
}
