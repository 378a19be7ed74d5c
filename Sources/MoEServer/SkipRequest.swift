import Compression
import MoE
import Routing

/// A request's `"moekit": {"skip": …}`: a skip rule by the names `moekit slim --skip` takes,
/// or `none` to run every chosen expert even where the plan skips. Parsed with the request
/// (a bad rule is a 400 on `moekit.skip`); resolved against the answering plan in `resolve`.
public enum SkipRequest: Sendable, Equatable, CustomStringConvertible {
    case none
    case rule(SkipSpecification)

    public init(parsing text: String) throws {
        if text == "none" {
            self = .none
            return
        }
        do {
            self = .rule(try SkipSpecification(parsing: text))
        } catch {
            throw APIError.invalidParameter("moekit.skip", "\(error.description); or none")
        }
    }

    public var description: String {
        switch self {
        case .none: return "none"
        case let .rule(specification): return specification.description
        }
    }

    /// Each MoE layer's rule for `plan`: under the plan's experts and top-k, with Lu et al.'s
    /// thresholds from `profile` (the plan's calibration profile). A rule the plan's layers
    /// cannot take (`ser` keeping more experts than are chosen) is a 400.
    func resolve(plan: CompressionPlan, description: ModelDescription, profile: () throws -> RoutingProfile?) throws -> SkipOverride {
        guard case let .rule(specification) = self else { return .none }
        let profile = try profile()
        var layers = [Int: ExpertSkip]()
        for l in description.moeLayerIndices {
            let moe = description.layers[l].moe!
            let map = plan.layers[l]?.expertMap ?? .identity(expertCount: moe.expertCount)
            var rule = map.routingRule ?? RoutingRule()
            let topK = rule.topK ?? moe.topK
            do {
                rule.skip = try specification.resolve(layer: l, profile: profile?.layers[l], topK: topK)
            } catch {
                throw APIError.invalidParameter("moekit.skip", error.description + (profile == nil ? " (plan '\(plan.name)' names no stored profile)" : ""))
            }
            if let problem = rule.problem(familyTopK: moe.topK, routable: map.survivingExperts.count) {
                throw APIError.invalidParameter("moekit.skip", "layer \(l) of plan '\(plan.name)': \(problem)")
            }
            layers[l] = rule.skip
        }
        return SkipOverride(layers: layers)
    }
}
