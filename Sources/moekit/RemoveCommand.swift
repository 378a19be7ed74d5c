import ArgumentParser
import Compression
import ExpertStore
import Foundation

struct RemoveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rm",
        abstract: "Remove a stored plan or routing profile.",
        discussion: """
        One write transaction deletes the named document and nothing else. A plan's derived \
        records (which other plans may share) stay until `moekit gc` finds that no plan uses them. \
        Plans made from a removed profile keep working.
        """)

    @OptionGroup var storeOption: StoreOption
    @Option(help: "The plan to remove.") var plan: String?
    @Option(help: "The routing profile to remove.") var profile: String?

    func validate() throws {
        guard (plan == nil) != (profile == nil) else { throw ValidationError("give exactly one of --plan NAME or --profile NAME") }
    }

    func run() throws {
        let store = try ExpertStore(url: storeOption.url, readOnly: false)
        if let plan {
            try StoreHygiene.removePlan(plan, from: store)
            print("removed plan '\(plan)' from \(store.path); run `moekit gc` to drop the records only it used")
        } else if let profile {
            try StoreHygiene.removeProfile(profile, from: store)
            print("removed profile '\(profile)' from \(store.path)")
        }
    }
}
