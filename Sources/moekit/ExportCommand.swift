import ArgumentParser
import Compression
import ExpertStore
import Foundation

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a store, or one of its plans, as a standard Hugging Face checkpoint folder (config, safetensors, tokenizer).",
        discussion: """
        With --plan, the kept experts are renumbered, the router is sliced to their rows and the expert \
        count in config.json is updated; merged experts are written once per member and quantized ones \
        dequantized to f32. Plans with novices, or whose layers keep different expert counts, have no \
        standard form and are refused.
        """)

    @Option(name: .long, help: "The expert store to export.") var store: String
    @Option(name: .long, help: "Export this plan instead of the full model.") var plan: String?
    @Option(name: .long, help: "The folder to write; it must not exist yet or be empty.") var out: String
    @Flag(help: "With --plan: write the plan document itself as JSON to --out (a file) instead of a checkpoint.") var planJSON = false
    @Flag(help: "Print the summary as JSON.") var json = false

    func run() throws {
        let opened = try ExpertStore(url: URL(fileURLWithPath: store))
        let target = URL(fileURLWithPath: out)
        if planJSON {
            guard let plan else { throw ValidationError("--plan-json needs --plan NAME") }
            try Data(Output.json(PlanLoader.plan(named: plan, in: opened)).utf8).write(to: target)
            print("\(out): plan '\(plan)' as JSON")
            return
        }
        let summary = try plan.map { try PlanExporter(store: opened).export(plan: PlanLoader.plan(named: $0, in: opened), to: target) }
            ?? StoreExporter(store: opened).export(to: target)
        try Output.print(summary, json: json, text: "\(out): wrote \(summary.files.joined(separator: ", ")) (\(summary.tensors) tensors, \(summary.tensorBytes.formatted()) bytes)")
    }
}
