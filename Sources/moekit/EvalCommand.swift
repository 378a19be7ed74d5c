import ArgumentParser
import Compression
import ExpertStore
import Foundation
import MoE

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Compare plans with the full model on held-out text: perplexity, KL, top-1 agreement, memory, speed.",
        discussion: "Several --plan and several comma-separated --data files give a plans × domains table.")

    @OptionGroup var storeOption: StoreOption
    @OptionGroup var threadOptions: ThreadOptions
    @Option(name: .customLong("plan"), help: "A stored plan (repeatable; 'full' is the unmodified model).") var plans: [String] = []
    @Option(help: "Held-out .jsonl files or calib/<domain> folders (their heldout.jsonl), comma-separated.") var data: String
    @Option(help: "Tokens scored per data file.") var maxTokens = 8192
    @Option(help: "Window length: each window is scored as its own sequence.") var window = 256
    @Option(help: "stored: BF16/F16 weights stay 16-bit (the default); float32: widen them at load.") var precision: WeightPrecision = .stored
    @Flag(help: "Run layer by layer from the store (chosen automatically when the models do not fit in memory).") var streaming = false
    @Flag(help: "Print JSON (and no progress).") var json = false

    func validate() throws {
        guard !plans.isEmpty else { throw ValidationError("give at least one --plan") }
        guard window >= 2 && maxTokens >= window else { throw ValidationError("--max-tokens must be at least --window, and --window at least 2") }
    }

    func run() throws {
        threadOptions.apply()
        let store = try ExpertStore(url: storeOption.url)
        let tokenizer = try StoreFiles.tokenizer(store)
        let description = try store.modelDescription()
        guard window <= description.maxPositionEmbeddings else {
            throw ValidationError("--window \(window) is longer than the model's context of \(description.maxPositionEmbeddings)")
        }
        let footprint = try store.footprint()
        let stored = try plans.filter { $0 != "full" }.map { try PlanLoader.plan(named: $0, in: store) }
        // In memory the reference and every plan are separate models, each with its own dense weights.
        let needed = ExecutionMode.inMemoryBytes(footprint)
            + stored.reduce(0) { $0 + ExecutionMode.inMemoryBytes(footprint, expertBytes: $1.expectedExpertBytes) }
        let streams = ExecutionMode.streams("eval", neededBytes: needed, forced: streaming)
        let evaluator = Evaluator(window: window)
        let progress = TerminalProgress(quiet: json)
        let evaluate: ([[Int]], String) throws -> [EvaluationResult]
        var referenceExperts: StoreExpertSource?
        if streams {
            let runner = LayerwiseRunner(description: description, tensors: try StoreTensorProvider(store: store), precision: precision)
            let candidates = try plans.map { name in
                try name == "full" ? StreamedCandidate.full(store: store, precision: precision, expertBytes: footprint.expertBytes)
                    : StreamedCandidate.plan(PlanLoader.plan(named: name, in: store), store: store, precision: precision)
            }
            let reference = try StreamedCandidate.full(store: store, precision: precision)
            evaluate = { windows, file in
                try evaluator.evaluateStreaming(candidates, reference: reference, runner: runner, windows: windows, data: file) { plan, done, total in
                    progress.update("evaluating \(plan) on \(URL(fileURLWithPath: file).lastPathComponent): \(TerminalProgress.bar(Double(done) / Double(total))) layer \(done)/\(total)")
                }
            }
        } else {
            let experts = try StoreExpertSource(store: store, precision: precision)
            referenceExperts = experts
            let reference = try store.loadModel(experts: experts, precision: precision)
            var candidates = [EvaluationCandidate]()
            for (name, plan) in zip(plans, plans.map { name in stored.first { $0.name == name } }) {
                guard let plan else {
                    candidates.append(EvaluationCandidate(plan: "full", model: reference, expertBytes: 0))
                    continue
                }
                let (model, experts) = try PlanLoader.model(plan: plan, store: store, precision: precision)
                candidates.append(EvaluationCandidate(plan: name, model: model, expertBytes: experts.residentBytes))
            }
            evaluate = { windows, file in
                try evaluator.evaluate(candidates, reference: reference, windows: windows, data: file) { done, total in
                    progress.update("evaluating on \(URL(fileURLWithPath: file).lastPathComponent): \(TerminalProgress.bar(Double(done) / Double(total))) \(done)/\(total) windows")
                }
            }
        }
        var results = [EvaluationResult]()
        for file in data.split(separator: ",").map(String.init) {
            var url = URL(fileURLWithPath: file)
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), isDirectory.boolValue {
                url = url.appendingPathComponent("heldout.jsonl")
            }
            let texts = try CalibrationData(contentsOf: url).texts
            var tokens = [Int]()
            for text in texts where tokens.count < maxTokens { tokens += tokenizer.encode(text) }
            let windows = evaluator.windows(Array(tokens.prefix(maxTokens)))
            results += try evaluate(windows, url.path)
        }
        progress.finish()
        // The full model's experts are loaded lazily; by now every one it uses is resident.
        if let referenceExperts {
            for i in results.indices where results[i].plan == "full" { results[i].expertBytes = referenceExperts.residentBytes }
        }
        try Output.print(results, json: json, text: Self.table(results))
    }

    static func table(_ results: [EvaluationResult]) -> String {
        func pad(_ text: String, _ width: Int) -> String { String(text.prefix(width - 1)).padding(toLength: width, withPad: " ", startingAt: 0) }
        func domain(_ path: String) -> String { URL(fileURLWithPath: path).deletingLastPathComponent().lastPathComponent }
        var lines = [pad("plan", 24) + pad("data", 12) + "tokens  perplexity   full ppl    Δppl %   KL (nats)   top-1  experts/token  expert MB  dense MB  tokens/s"]
        for r in results {
            lines.append(pad(r.plan, 24) + pad(domain(r.data), 12) + String(format: "%6d  %10.3f  %9.3f  %+8.2f  %10.4f  %5.1f%%  %13.2f  %9.2f  %8.2f  %8.0f",
                r.tokens, r.perplexity, r.referencePerplexity, r.perplexityChangePercent, r.meanKL, r.topOneAgreement * 100,
                r.expertsPerToken, Double(r.expertBytes) / 1_048_576, Double(r.denseBytes) / 1_048_576, r.tokensPerSecond))
        }
        // Where a routing rule makes the count vary token by token, show it layer by layer.
        var shown = Set<String>()
        for r in results where r.expertsPerTokenByLayer.contains(where: { $0 != $0.rounded() }) && shown.insert(r.plan).inserted {
            lines.append("\(r.plan): experts per token by MoE layer (\(domain(r.data))): "
                + r.expertsPerTokenByLayer.map { String(format: "%.2f", $0) }.joined(separator: ", "))
        }
        var domains = [String](), plans = [String]()
        for r in results {
            if !domains.contains(r.data) { domains.append(r.data) }
            if !plans.contains(r.plan) { plans.append(r.plan) }
        }
        if domains.count > 1 {
            lines.append("")
            lines.append("Δ perplexity % against the full model (plans × domains)")
            lines.append(pad("plan", 24) + domains.map { pad(domain($0), 12) }.joined())
            for plan in plans {
                lines.append(pad(plan, 24) + domains.map { d in
                    pad(results.first { $0.plan == plan && $0.data == d }.map { String(format: "%+.2f", $0.perplexityChangePercent) } ?? "-", 12)
                }.joined())
            }
        }
        return lines.joined(separator: "\n")
    }
}
