import ArgumentParser
import ExpertStore
import Foundation

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a store back out as a standard Hugging Face checkpoint folder (config, safetensors, tokenizer).")

    @Option(name: .long, help: "The expert store to export.") var store: String
    @Option(name: .long, help: "The folder to write; it must not exist yet or be empty.") var out: String
    @Flag(help: "Print the summary as JSON.") var json = false

    func run() throws {
        let opened = try ExpertStore(url: URL(fileURLWithPath: store))
        let summary = try StoreExporter(store: opened).export(to: URL(fileURLWithPath: out))
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(summary), as: UTF8.self))
        } else {
            print("\(out): wrote \(summary.files.joined(separator: ", ")) (\(summary.tensors) tensors, \(summary.tensorBytes.formatted()) bytes)")
        }
    }
}
