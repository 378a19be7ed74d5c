import ArgumentParser
import Compression
import ExpertStore
import Foundation

struct PlansCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plans",
        abstract: "List the plans (with their bytes) and profiles stored in an expert store.",
        discussion: """
        expert bytes: what a server holds to run the plan; derived: stored bytes of the records \
        it made (quantized, merged, novice, refit); exclusive: of those, what no other plan uses, \
        which `moekit rm --plan` followed by `moekit gc` frees.
        """)

    @OptionGroup var storeOption: StoreOption
    @Flag(help: "Print JSON instead of text.") var json = false

    struct Listing: Encodable {
        var plans: [StoreHygiene.PlanEntry]
        var profiles: [String]

        var text: String {
            var lines = [String]()
            if plans.isEmpty {
                lines.append("no plans")
            } else {
                let header = ["plan", "method", "slots", "expert bytes", "dense bytes", "derived", "exclusive"]
                let rows = plans.map { p in
                    [p.name, p.method, "\(p.slots)", p.expertBytes.formatted(), p.denseBytes?.formatted() ?? "-",
                     p.derivedBytes.formatted(), p.exclusiveBytes.formatted()]
                }
                let widths = header.indices.map { c in ([header] + rows).map { $0[c].count }.max() ?? 0 }
                for row in [header] + rows {
                    lines.append(zip(row, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }
                        .joined(separator: "  ").trimmingCharacters(in: .whitespaces))
                }
            }
            for p in plans { if let problem = p.problem { lines.append("plan '\(p.name)' cannot be used: \(problem)") } }
            lines.append("profiles: " + (profiles.isEmpty ? "none" : profiles.joined(separator: ", ")))
            return lines.joined(separator: "\n")
        }
    }

    func run() throws {
        let store = try ExpertStore(url: storeOption.url)
        let listing = Listing(plans: try StoreHygiene.plans(in: store), profiles: try store.profiles.names())
        try Output.print(listing, json: json, text: listing.text)
    }
}
