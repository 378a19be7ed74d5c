import Routing

/// A skip rule as a user names it (`--skip lu`, `lu:0.3`, `ser:2,0.3`, `top-p:0.7`), before
/// it is resolved into each layer's `ExpertSkip` (Lu et al.'s thresholds come from the
/// calibration profile, one per layer and rank).
public enum SkipSpecification: Sendable, Equatable, CustomStringConvertible {
    /// β_r of every layer = this quantile of p_(r)/p_(1) on the profile's tokens (0.5: the
    /// paper's median; lower skips less).
    case lu(quantile: Double)
    case ser(minimum: Int, threshold: Double)
    case topP(Double)

    /// Parses `lu`, `lu:Q`, `ser:KMIN,T` or `top-p:P`.
    public init(parsing text: String) throws(SkipSpecificationError) {
        let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
        let argument = parts.count > 1 ? parts[1] : nil
        func number(_ s: String) throws(SkipSpecificationError) -> Double {
            guard let value = Double(s), value.isFinite else { throw .invalid(text, "'\(s)' is not a number") }
            return value
        }
        switch parts.first ?? "" {
        case "lu":
            let quantile = try argument.map(number) ?? 0.5
            guard (0...1).contains(quantile) else { throw .invalid(text, "the quantile must be in [0, 1]") }
            self = .lu(quantile: quantile)
        case "ser":
            let values = (argument ?? "").split(separator: ",").map(String.init)
            guard values.count == 2, let minimum = Int(values[0]), minimum >= 1 else {
                throw .invalid(text, "write ser:KMIN,T with KMIN ≥ 1 the experts always run and T the threshold")
            }
            let threshold = try number(values[1])
            guard threshold >= 0 else { throw .invalid(text, "the threshold must be at least 0") }
            self = .ser(minimum: minimum, threshold: threshold)
        case "top-p":
            guard let argument else { throw .invalid(text, "write top-p:P with P in (0, 1]") }
            let p = try number(argument)
            guard p > 0 && p <= 1 else { throw .invalid(text, "P must be in (0, 1]") }
            self = .topP(p)
        default:
            throw .invalid(text, "choose lu[:QUANTILE], ser:KMIN,T or top-p:P")
        }
    }

    public var description: String {
        switch self {
        case let .lu(quantile): return quantile == 0.5 ? "lu" : "lu:\(quantile)"
        case let .ser(minimum, threshold): return "ser:\(minimum),\(threshold)"
        case let .topP(p): return "top-p:\(p)"
        }
    }

    /// The rule for one layer; `profile` is that layer's calibration profile (needed by `lu`).
    /// `topK` is the number of experts the layer chooses before skipping.
    public func resolve(layer: Int, profile: LayerProfile?, topK: Int) throws(SkipSpecificationError) -> ExpertSkip {
        switch self {
        case let .lu(quantile):
            guard let profile, profile.tokenCount > 0 else { throw .noProfile(layer: layer) }
            // Ranks the profile has no histogram for (a top-k above the family's) always run.
            let last = min(topK, profile.topK)
            let ranks = last >= 2 ? Array(2...last) : []
            return .ratio(thresholds: ranks.map { Float(profile.scoreRatioQuantile(rank: $0, quantile: quantile) ?? 0) })
        case let .ser(minimum, threshold):
            return .ser(minimum: minimum, threshold: Float(threshold))
        case let .topP(p):
            return .topP(p: Float(p))
        }
    }
}

public enum SkipSpecificationError: Error, CustomStringConvertible, Equatable {
    case invalid(String, String)
    case noProfile(layer: Int)

    public var description: String {
        switch self {
        case let .invalid(text, reason): return "skip rule '\(text)': \(reason)"
        case let .noProfile(layer): return "--skip lu needs the routing profile's score ratios, and layer \(layer) has none (the profile saw no tokens there)"
        }
    }
}
