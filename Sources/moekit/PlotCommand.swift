import ArgumentParser
import ExpertStore
import Foundation
import Routing

struct PlotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plot",
        abstract: "Draw a layers × experts heatmap of a profile's criterion as SVG (or the difference of two profiles).")

    @OptionGroup var storeOption: StoreOption
    @Option(help: "The profile to draw.") var profile: String
    @Option(help: "A second profile: draw profile minus this one.") var vs: String?
    @Option(help: "Criterion: \(Criterion.allCases.map(\.rawValue).joined(separator: ", ")).") var criterion: String = "frequency"
    @Option(help: "The SVG file to write.") var out: String

    func run() throws {
        guard let chosen = Criterion(rawValue: criterion) else {
            throw ValidationError("unknown criterion '\(criterion)'; choose one of \(Criterion.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let store = try ExpertStore(url: storeOption.url)
        let first = try load(profile, store)
        // Values are normalised to shares within each layer so that two domains compare fairly.
        var values = shares(first, chosen)
        var title = "\(profile): \(chosen.rawValue) (share within layer)"
        if let vs {
            let second = shares(try load(vs, store), chosen)
            values = zip(values, second).map { zip($0, $1).map { $0 - $1 } }
            title = "\(profile) − \(vs): \(chosen.rawValue) share"
        }
        let layers = first.layers.indices.filter { first.layers[$0] != nil }
        let map = ProfileHeatmap(title: title, values: layers.map { values[$0] }, layerLabels: layers.map { "layer \($0)" }, signed: vs != nil)
        try map.svg().write(toFile: out, atomically: true, encoding: .utf8)
        print("wrote \(out)")
    }

    func load(_ name: String, _ store: ExpertStore) throws -> RoutingProfile {
        guard let p = try store.profiles.get(RoutingProfile.self, named: name) else {
            throw ValidationError("no profile named '\(name)' in \(store.path); stored: \(try store.profiles.names().joined(separator: ", "))")
        }
        return p
    }

    func shares(_ profile: RoutingProfile, _ criterion: Criterion) -> [[Double]] {
        profile.criteria().map { layer in
            let values = layer.map { max(criterion.value($0), 0) }
            let total = values.reduce(0, +)
            return values.map { total > 0 ? $0 / total : 0 }
        }
    }
}
