import ExpertStore
import MoE
import Routing

/// What `moekit slim` builds: any combination of pruning (with novices), merging and
/// mixed-precision quantization, applied in that order.
public struct SlimOptions: Sendable {
    public enum MergeMethod: String, CaseIterable, Sendable, Codable {
        /// HC-SMoE: average-linkage clustering of the experts' all-token mean outputs.
        case hcSMoE = "hc-smoe"
        /// M-SMoE: the most frequent experts anchor groups joined by router-logit similarity,
        /// members' neurons aligned to the anchor before averaging.
        case mSMoE = "m-smoe"
    }

    /// How novice vectors are made.
    public enum NoviceFit: String, CaseIterable, Sendable, Codable {
        /// The pruned expert's mean routed output (MoNE).
        case mean
        /// Least squares against what pruning lost, jointly with the refit (METHODS §13).
        case leastSquares = "lsq"
    }

    public var name: String
    /// Rank experts by this criterion and keep the best `keepFraction` (nil: no pruning).
    public var prune: Criterion?
    /// Merge experts down to `keepFraction` of them (nil: no merging). Exclusive with `prune`.
    public var merge: MergeMethod?
    public var keepFraction: Double = 1
    public var budget: PruningBudget = .uniform
    /// Fraction of each layer's experts that, instead of being dropped, become novices.
    public var noviceFraction: Double = 0
    public var noviceFit: NoviceFit = .mean
    /// Refit the down projections of kept and merged experts by ridge least squares on
    /// calibration tokens, layer by layer (`LayerRefit`).
    public var refit = false
    /// α of the refit's ridge λ = α · mean diag(ZᵀZ).
    public var refitRidge = 0.05
    /// Experts chosen per token in each MoE layer instead of the family's top-k: one value for
    /// every layer, or one per MoE layer in order (nil: the family's).
    public var topK: [Int]?
    /// Skip low-weight experts token by token (METHODS §14), after pruning or merging.
    public var skip: SkipSpecification?
    /// Remove this fraction of the experts' intermediate neurons (pruning inside experts,
    /// `ExpertShrinking`), after pruning or merging and before the refit (nil: keep every neuron).
    public var shrink: Double?
    public var shrinkScope: ExpertShrinking.Scope = .expert
    /// Prune super experts like any other (by default they are always kept).
    public var pruneSuperExperts = false
    /// Average bits per expert weight (nil: keep the stored precision).
    public var averageBits: Double?
    /// Bit widths the allocation may choose from.
    public var bitChoices: [Int] = [2, 3, 4, 8]
    /// Quantize every slot at exactly this width instead of allocating (uniform baseline).
    public var uniformBits: Int?
    public var groupSize = 64
    public var gptq = false
    /// Quantize dense weights too (attention, shared experts, dense layers, the output head)
    /// at this width, groups of `groupSize`, round to nearest (nil: keep them as stored).
    public var denseBits: Int?
    /// How the calibration replay holds 16-bit weights (quantization always starts from the
    /// imported weights widened exactly, whatever this says).
    public var replayPrecision: WeightPrecision = .stored
    /// Set to stream: the calibration replay runs layer by layer from the store, and each
    /// layer's quantized records are handed here (written in their own transaction) as soon
    /// as they are made, instead of being held for the plan's commit. A slim killed part way
    /// leaves such records without a plan; a re-run with the same name writes the same keys.
    public var layerRecordSink: (@Sendable ([ExpertRecord]) throws -> Void)?

    public init(name: String) { self.name = name }
}
