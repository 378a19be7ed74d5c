import ExpertStore

/// Which names a new plan may take. `full` always means the unmodified model (`serve`,
/// `eval` and `--plan full` build it from the imported experts), so a stored plan of that
/// name would make them mean different models by it.
public enum PlanNames {
    public static let reserved: Set<String> = ["full"]

    /// Refuses a reserved or empty name (no store needed: `validate()` can call it).
    public static func checkNew(_ name: String) throws {
        guard !name.isEmpty else { throw PlanNameError.empty }
        guard !reserved.contains(name) else { throw PlanNameError.reserved(name: name) }
    }

    /// Refuses a name already stored, unless `replace`: a silent overwrite would also leave
    /// the old plan's derived records behind.
    public static func checkAvailable(_ name: String, in store: ExpertStore, replace: Bool) throws {
        try checkNew(name)
        if !replace, try store.plans.raw(named: name) != nil {
            throw PlanNameError.exists(name: name, store: store.path)
        }
    }
}

public enum PlanNameError: Error, CustomStringConvertible, Equatable {
    case empty
    case reserved(name: String)
    case exists(name: String, store: String)

    public var description: String {
        switch self {
        case .empty: return "a plan needs a non-empty name"
        case let .reserved(name): return "the plan name '\(name)' is reserved: it always means the unmodified model; choose another --name"
        case let .exists(name, store):
            return "\(store) already has a plan named '\(name)'; pass --replace to overwrite it (then `moekit gc` drops its old derived records), or choose another --name"
        }
    }
}
