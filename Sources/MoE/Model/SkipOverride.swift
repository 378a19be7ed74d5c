import Routing

/// A request's own skip rule (the server's `"moekit": {"skip": …}`): for each MoE layer, the
/// `ExpertSkip` that replaces the plan's, and no skipping in a layer it leaves out. The plan's
/// routing otherwise stays (its experts, its top-k), so a rule that never fires computes what
/// the plan computes. Applied per sequence of a batch, so requests with different rules share
/// a forward pass.
public struct SkipOverride: Sendable, Equatable {
    public var layers: [Int: ExpertSkip]

    public init(layers: [Int: ExpertSkip]) { self.layers = layers }

    /// No skipping anywhere (turns a plan's skip rule off for one request).
    public static let none = SkipOverride(layers: [:])
}
