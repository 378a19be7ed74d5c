import ArgumentParser
import Compression
import ExpertStore
import Foundation
import MoE

/// `--model DIR` or `--store PATH`: which model a command runs, from a checkpoint folder or
/// from an expert store made by `moekit import`. With neither, the default model that
/// ships with MoEKit (`models/moekit-tiny`) is used.
struct ModelOptions: ParsableArguments {
    @Option(name: .long, help: "A Hugging Face checkpoint folder (config.json, *.safetensors, tokenizer.json). Default: the bundled models/moekit-tiny.")
    var model: String?

    @Option(name: .long, help: "An expert store made by `moekit import`, used instead of --model (opened read-only).")
    var store: String?

    @Option(name: .long, help: "With --store: run this stored plan (only its experts are loaded) instead of the full model.")
    var plan: String?

    @Option(name: [.customLong("precision"), .customLong("expert-precision")],
            help: "stored: BF16/F16 weights stay 16-bit and are read by half-precision kernels (the default); float32: widen them at load (twice the memory; transformers' f32 arithmetic order).")
    var precision: WeightPrecision = .stored

    func validate() throws {
        if model != nil && store != nil { throw ValidationError("pass either --model DIR or --store PATH, not both") }
        if plan != nil && store == nil { throw ValidationError("--plan needs --store: plans live in an expert store") }
    }

    /// The store named by `--store`, opened read-only; nil without `--store`.
    func openStore() throws -> ExpertStore? {
        try store.map { try ExpertStore(url: URL(fileURLWithPath: $0)) }
    }

    /// The checkpoint folder to use.
    func modelDirectory() throws -> URL {
        if let model { return URL(fileURLWithPath: model) }
        if let found = DefaultModel.locate() { return found }
        throw ValidationError("no --model given and the default model '\(DefaultModel.relativePath)' was not found; set MOEKIT_MODEL or pass --model DIR")
    }

    /// The model to run, its weights held as `--precision` says.
    func loadModel() throws -> MoEModel {
        if let store = try openStore() {
            if let plan, plan != "full" {
                return try PlanLoader.model(plan: PlanLoader.plan(named: plan, in: store), store: store, precision: precision).model
            }
            return try store.loadModel(precision: precision)
        }
        return try MoEModel(directory: modelDirectory(), precision: precision)
    }

    func loadTokenizer() throws -> Tokenizer {
        if let store = try openStore() {
            guard let data = try store.file("tokenizer.json") else {
                throw ValidationError("\(store.path): the store has no tokenizer.json (the checkpoint it was imported from had none)")
            }
            return try Tokenizer(data: data, file: "tokenizer.json in \(store.path)")
        }
        return try Tokenizer(contentsOf: modelDirectory().appendingPathComponent("tokenizer.json"))
    }
}

extension WeightPrecision: ExpressibleByArgument {}
extension PruningBudget: ExpressibleByArgument {}
extension SlimOptions.NoviceFit: ExpressibleByArgument {}
extension ExpertShrinking.Scope: ExpressibleByArgument {}

/// Finds the bundled default model: `$MOEKIT_MODEL`, then `models/moekit-tiny` in the
/// current directory or any parent, then next to the executable's build folder.
enum DefaultModel {
    static let relativePath = "models/moekit-tiny"

    static func locate() -> URL? {
        let fm = FileManager.default
        if let fromEnvironment = ProcessInfo.processInfo.environment["MOEKIT_MODEL"], !fromEnvironment.isEmpty {
            return URL(fileURLWithPath: fromEnvironment)
        }
        let starts = [URL(fileURLWithPath: fm.currentDirectoryPath),
                      URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()]
        for start in starts {
            var directory = start.standardizedFileURL
            while true {
                let candidate = directory.appendingPathComponent(relativePath)
                if fm.fileExists(atPath: candidate.appendingPathComponent("config.json").path) { return candidate }
                let parent = directory.deletingLastPathComponent()
                if parent.path == directory.path { break }
                directory = parent
            }
        }
        return nil
    }
}
