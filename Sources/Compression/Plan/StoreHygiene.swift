import ExpertStore
import Foundation

/// Listing, removing and garbage-collecting what `profile` and `slim` leave in a store.
/// Removing a plan deletes only its document; its derived records go when `collectGarbage`
/// finds that no remaining plan references them (other plans may share them: round-to-nearest
/// quantized experts and dense variants are shared by every plan of the same format).
public enum StoreHygiene {
    /// One stored plan, with the bytes it accounts for.
    public struct PlanEntry: Codable, Sendable, Equatable {
        public var name: String
        public var method: String
        /// Bytes of expert weights a server holds to run the plan.
        public var expertBytes: Int
        /// Bytes of dense weights in memory with the plan (nil: not recorded by older plans).
        public var denseBytes: Int?
        public var slots: Int
        public var routableExperts: Int
        /// Stored bytes of the derived records the plan references.
        public var derivedBytes: Int
        /// Of those, the bytes no other plan references: what `rm` then `gc` frees.
        public var exclusiveBytes: Int
        /// Why the document cannot be used (it does not decode, or does not fit the model); nil when it can.
        public var problem: String?
    }

    /// Every stored plan, sorted by name. A document that does not decode or does not fit the
    /// model is listed with its problem (and no bytes), so that it can be found and removed.
    public static func plans(in store: ExpertStore) throws -> [PlanEntry] {
        let (description, fingerprint) = (try store.modelDescription(), try store.fingerprint())
        // Listed under their document names, which are what `--plan` and `rm` take.
        let names = try store.plans.names()
        let plans = names.map { name -> Result<CompressionPlan, any Error> in
            Result {
                guard let plan = try store.plans.get(CompressionPlan.self, named: name) else {
                    throw StoreError.missingRecord(path: store.path, record: "plan '\(name)'")
                }
                // Its references are only meaningful (and only computable) for a plan that fits the model.
                try plan.validate(against: description, fingerprint: fingerprint)
                return plan
            }
        }
        let references = plans.map { (try? $0.get())?.storeReferences ?? StoreReferences() }
        return try plans.indices.map { i in
            let plan: CompressionPlan
            switch plans[i] {
            case let .success(decoded): plan = decoded
            case let .failure(error):
                return PlanEntry(name: names[i], method: "?", expertBytes: 0, denseBytes: nil, slots: 0, routableExperts: 0,
                                 derivedBytes: 0, exclusiveBytes: 0, problem: "\(error)")
            }
            var others = StoreReferences()
            for (j, other) in references.enumerated() where j != i { others.formUnion(other) }
            return PlanEntry(name: names[i], method: plan.recipe.method,
                             expertBytes: plan.expectedExpertBytes, denseBytes: plan.expectedDenseBytes, slots: plan.slotCount,
                             routableExperts: plan.routableExpertCount,
                             derivedBytes: try store.storedBytes(of: references[i]),
                             exclusiveBytes: try store.storedBytes(of: references[i].subtracting(others)), problem: nil)
        }
    }

    /// Deletes the plan document `name` in one write transaction (its records stay until `gc`).
    public static func removePlan(_ name: String, from store: ExpertStore) throws {
        guard try store.plans.remove(named: name) else {
            throw PlanError.unknownPlan(name: name, available: try store.plans.names())
        }
    }

    /// Deletes the routing profile `name` in one write transaction. Plans made from it keep
    /// working: they hold their own slots and only name the profile in their recipe.
    public static func removeProfile(_ name: String, from store: ExpertStore) throws {
        guard try store.profiles.remove(named: name) else {
            throw StoreHygieneError.unknownProfile(name: name, available: try store.profiles.names())
        }
    }

    /// Drops every derived expert record and dense variant that no stored plan references, in
    /// one write transaction. A plan document that does not decode, or does not fit the model,
    /// stops the collection: what it references cannot be known, so nothing is deleted.
    public static func collectGarbage(in store: ExpertStore, dryRun: Bool = false) throws -> GarbageReport {
        let (description, fingerprint) = (try store.modelDescription(), try store.fingerprint())
        return try store.collectGarbage(dryRun: dryRun) { documents in
            var used = StoreReferences()
            for (name, json) in documents {
                do {
                    let plan = try JSONDecoder().decode(CompressionPlan.self, from: json)
                    try plan.validate(against: description, fingerprint: fingerprint)
                    used.formUnion(plan.storeReferences)
                } catch {
                    throw StoreError.malformedDocument(path: store.path, record: "plan '\(name)'", reason: "\(error); gc deleted nothing (remove it with `moekit rm --plan \(name)`)")
                }
            }
            return used
        }
    }
}

public enum StoreHygieneError: Error, CustomStringConvertible, Equatable {
    case unknownProfile(name: String, available: [String])

    public var description: String {
        switch self {
        case let .unknownProfile(name, available):
            return "no profile named '\(name)' in the store; available: \(available.isEmpty ? "none" : available.joined(separator: ", "))"
        }
    }
}
