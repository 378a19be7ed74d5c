/// Why a server cannot start with the plans and settings it was given.
public enum ServeError: Error, CustomStringConvertible, Equatable {
    case noPlans
    case noMoELayer
    case noProfile(plan: String)
    case missingProfile(plan: String, profile: String)
    case noTokenizer(store: String)

    public var description: String {
        switch self {
        case .noPlans:
            return "no plan to serve: pass --plan NAME, or --plans a,b,c (with --auto to choose per request)"
        case .noMoELayer:
            return "the model has no MoE layer, so there is no routing signature to choose plans by"
        case let .noProfile(plan):
            return "plan '\(plan)' names no routing profile, so --auto has no signature for it; build it with `moekit slim --profile`"
        case let .missingProfile(plan, profile):
            return "plan '\(plan)' was built from profile '\(profile)', which is not in the store (or lacks the first MoE layer)"
        case let .noTokenizer(store):
            return "\(store): the store has no tokenizer.json (the checkpoint it was imported from had none), so it cannot serve text"
        }
    }
}
