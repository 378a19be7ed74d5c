import ExpertStore
import Foundation

/// What `inspect --store` adds: the store's identity, its expert variants, the profiles and
/// plans it holds, and the bytes each database takes.
struct StoreSummary: Encodable {
    struct Variant: Encodable {
        var variant: String
        var experts: Int
    }

    var path: String
    var fingerprint: String
    var importedFrom: String
    var files: [String]
    var variants: [Variant]
    var profiles: [String]
    var plans: [String]
    var databases: [DatabaseUsage]
    var fileBytes: Int

    init(store: ExpertStore) throws {
        path = store.path
        fingerprint = try store.fingerprint() ?? "unknown"
        importedFrom = try store.importState()?.source ?? "unknown"
        files = try store.fileNames()
        var counts = [ExpertVariant: Int]()
        for key in try store.expertKeys() { counts[key.variant, default: 0] += 1 }
        variants = counts.keys.sorted().map { Variant(variant: $0.description, experts: counts[$0]!) }
        profiles = try store.profiles.names()
        plans = try store.plans.names()
        databases = try store.databaseUsage()
        let data = store.url.appendingPathComponent("data.mdb").path
        fileBytes = (try? FileManager.default.attributesOfItem(atPath: data)[.size] as? Int) ?? 0
    }

    var text: String {
        func list(_ names: [String]) -> String { names.isEmpty ? "none" : names.joined(separator: ", ") }
        var lines = [
            "store             \(path)",
            "fingerprint       \(fingerprint)",
            "imported from     \(importedFrom)",
            "files             \(list(files))",
            "variants          " + (variants.isEmpty ? "none" : variants.map { "\($0.variant) (\($0.experts) experts)" }.joined(separator: ", ")),
            "profiles          \(list(profiles))",
            "plans             \(list(plans))",
            "databases         (data.mdb \(fileBytes.formatted()) bytes)",
        ]
        for database in databases {
            let name = database.name.padding(toLength: 10, withPad: " ", startingAt: 0)
            lines.append("  \(name)      \(database.entries.formatted()) entries, \(database.bytes.formatted()) bytes")
        }
        return lines.joined(separator: "\n")
    }
}
