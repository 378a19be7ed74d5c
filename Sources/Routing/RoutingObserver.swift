/// What the forward pass reports about one MoE layer for one run of tokens. Arrays are
/// flat and row-major; `T` = tokenCount, `E` = expertCount, `k` = slots per token, `d` = hidden size.
public struct MoELayerObservation {
    public let layer: Int
    public let tokenCount: Int
    public let expertCount: Int
    public let hiddenSize: Int
    /// Router logits, `T × E`.
    public let routerLogits: [Float]
    /// Per token: the chosen experts with the raw scores and the gates actually applied.
    public let decisions: [RoutingDecision]
    /// Each chosen expert's output before gating, `T × k × d`, in the order of `decisions[t].experts`.
    public let expertOutputs: [Float]
    /// The residual stream entering the block (before its norm), `T × d`.
    public let residualBefore: [Float]
    /// The gated sum of routed expert outputs (shared expert excluded), `T × d`.
    public let routedOutput: [Float]
    /// The block's normalised input, `T × d` (what the router and experts see).
    public let blockInput: [Float]
    /// Runs expert `expert` on the listed token rows of `blockInput`, returning `rows.count × d`
    /// outputs before gating. Lets the profiler sample dense (all-expert) statistics.
    public let runExpert: (_ expert: Int, _ rows: [Int]) throws -> [Float]

    public init(layer: Int, tokenCount: Int, expertCount: Int, hiddenSize: Int, routerLogits: [Float],
                decisions: [RoutingDecision], expertOutputs: [Float], residualBefore: [Float],
                routedOutput: [Float], blockInput: [Float],
                runExpert: @escaping (_ expert: Int, _ rows: [Int]) throws -> [Float]) {
        self.layer = layer
        self.tokenCount = tokenCount
        self.expertCount = expertCount
        self.hiddenSize = hiddenSize
        self.routerLogits = routerLogits
        self.decisions = decisions
        self.expertOutputs = expertOutputs
        self.residualBefore = residualBefore
        self.routedOutput = routedOutput
        self.blockInput = blockInput
        self.runExpert = runExpert
    }

    public var slotsPerToken: Int { decisions.first?.experts.count ?? 0 }
}

/// Receives one observation per MoE layer per forward call. The forward pass builds
/// observations only when an observer is attached, so an absent observer costs nothing.
public protocol RoutingObserver: AnyObject {
    func observe(_ observation: MoELayerObservation) throws
    /// False when the observer never reads `expertOutputs`: the block then leaves them empty
    /// instead of copying every routed output.
    var needsExpertOutputs: Bool { get }
}

extension RoutingObserver {
    public var needsExpertOutputs: Bool { true }
}
