import ArgumentParser
import Compression
import ExpertStore
import Foundation
import MoE
import Routing

/// The whole story on the default model: import, profile two domains, build plans with
/// several methods, and compare them with the full model on held-out text of both domains.
struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Import the default model, profile python and german, build several plans and evaluate them.")

    @Option(help: "A Hugging Face checkpoint folder. Default: the bundled models/moekit-tiny.") var model: String?
    @Option(help: "Store to create or reuse.") var store = "moekit-demo.store"
    @Option(help: "Folder with calib/<domain>/calib.jsonl and heldout.jsonl.") var calib: String?
    @Option(help: "Calibration samples per domain.") var samples = 32
    @Option(help: "Held-out tokens scored per domain.") var evalTokens = 4096
    @Flag(help: "Print the results as JSON (and no progress).") var json = false

    func run() throws {
        let checkpoint = try model.map { URL(fileURLWithPath: $0) } ?? DefaultModel.locate().orThrow(
            ValidationError("the default model '\(DefaultModel.relativePath)' was not found; pass --model DIR"))
        let calibRoot = URL(fileURLWithPath: calib ?? checkpoint.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("calib").path)
        let progress = TerminalProgress(quiet: json)
        let started = Date()
        func say(_ line: String) {
            progress.finish()
            if !json { print(line) }
        }

        // 1. Import (resumes or reuses an existing store of the same model).
        let storeURL = URL(fileURLWithPath: store)
        let imported = try StoreImporter(checkpoint: checkpoint, store: storeURL).run { _ in progress.update("importing \(checkpoint.lastPathComponent)…") }
        say("1. import: \(imported.outcome.rawValue) \(checkpoint.path) into \(store) (\(imported.experts) experts)")
        let expertStore = try ExpertStore(url: storeURL, readOnly: false)
        let tokenizer = try StoreFiles.tokenizer(expertStore)
        let description = try expertStore.modelDescription()

        // 2. Profile two domains.
        let domains = ["python", "german"]
        let fullModel = try expertStore.loadModel()
        for domain in domains {
            let data = try CalibrationData(contentsOf: calibRoot.appendingPathComponent(domain))
            let sequences = data.texts.prefix(samples).map { Array(tokenizer.encode($0).prefix(512)) }.filter { $0.count >= 2 }
            let profile = try CalibrationProfiler(fingerprint: expertStore.fingerprint() ?? "", source: data.file)
                .profile(model: fullModel, sequences: sequences) { p in progress.update("2. profiling \(domain): \(p.done)/\(p.total) samples") }
            try expertStore.profiles.put(profile, named: domain)
            let entropy = profile.layers.compactMap { $0?.routingEntropy }.map { String(format: "%.2f", $0) }.joined(separator: " ")
            say("2. profile '\(domain)': \(profile.tokenCount) tokens, routing entropy per layer (bits) \(entropy)")
        }
        if let python = try expertStore.profiles.get(RoutingProfile.self, named: "python"),
           let german = try expertStore.profiles.get(RoutingProfile.self, named: "german") {
            let jsd = zip(python.layers, german.layers).compactMap { a, b -> String? in
                guard let a, let b else { return nil }
                return String(format: "%.2f", jensenShannonDivergence(a.selectionDistribution, b.selectionDistribution))
            }
            say("   python vs german routing divergence per layer (JSD, bits): \(jsd.joined(separator: " "))")
        }

        // 3. Plans.
        let slimmer = try Slimmer(store: expertStore)
        var recipes: [(String, String, (inout SlimOptions) -> Void)] = []
        for domain in domains {
            recipes.append(("\(domain)-reap50", domain, { $0.prune = .reap; $0.keepFraction = 0.5 }))
        }
        recipes += [
            ("python-frequency50", "python", { $0.prune = .frequency; $0.keepFraction = 0.5 }),
            // Recovery: per-layer counts searched, down projections refit, least-squares novices.
            ("python-reap50-recovered", "python", {
                $0.prune = .reap; $0.keepFraction = 0.5; $0.budget = .search; $0.refit = true
                $0.noviceFraction = 0.125; $0.noviceFit = .leastSquares
            }),
            ("python-hcsmoe50", "python", { $0.merge = .hcSMoE; $0.keepFraction = 0.5 }),
            ("python-mixed3bit", "python", { $0.averageBits = 3 }),
            ("python-uniform3bit", "python", { $0.uniformBits = 3 }),
            ("python-reap50-4bit", "python", { $0.prune = .reap; $0.keepFraction = 0.5; $0.uniformBits = 4 }),
            // Fewer bytes per token: skip weak experts token by token, or narrow every expert.
            ("python-skip-lu", "python", { $0.skip = .lu(quantile: 0.5) }),
            ("python-shrink25", "python", { $0.shrink = 0.25 }),
        ]
        for (name, domain, configure) in recipes {
            var options = SlimOptions(name: name)
            configure(&options)
            let profile = try expertStore.profiles.get(RoutingProfile.self, named: domain)!
            let data = try CalibrationData(contentsOf: calibRoot.appendingPathComponent(domain))
            let calibration = data.texts.prefix(16).map { Array(tokenizer.encode($0).prefix(512)) }
            let result = try slimmer.slim(profile: profile, profileName: domain, options: options, calibration: calibration) {
                progress.update("3. slimming \(name): \($0)")
            }
            try slimmer.commit(result)
            say(String(format: "3. plan %@: %d slots, %.1f%% of expert bytes", name, result.plan.slotCount,
                       100 * Double(result.plan.expectedExpertBytes) / Double(max(result.originalExpertBytes, 1))))
        }

        // 4. Evaluate every plan against the full model on both domains' held-out text.
        var candidates = [EvaluationCandidate]()
        for (name, _, _) in recipes {
            let (planModel, experts) = try PlanLoader.model(plan: PlanLoader.plan(named: name, in: expertStore), store: expertStore)
            candidates.append(EvaluationCandidate(plan: name, model: planModel, expertBytes: experts.residentBytes))
        }
        let evaluator = Evaluator(window: min(256, description.maxPositionEmbeddings))
        var results = [EvaluationResult]()
        for domain in domains {
            let heldout = try CalibrationData(contentsOf: calibRoot.appendingPathComponent(domain).appendingPathComponent("heldout.jsonl"))
            var tokens = [Int]()
            for text in heldout.texts where tokens.count < evalTokens { tokens += tokenizer.encode(text) }
            results += try evaluator.evaluate(candidates, reference: fullModel, windows: evaluator.windows(Array(tokens.prefix(evalTokens))),
                                              data: heldout.file) { done, total in progress.update("4. evaluating on \(domain): \(done)/\(total) windows") }
        }
        progress.finish()
        if json {
            print(try Output.json(results))
        } else {
            print("4. evaluation against the full model (\(evalTokens) held-out tokens per domain):")
            print(EvalCommand.table(results))
            print(String(format: "done in %.0f s; the store is %@, try `moekit eval --store %@ --plan python-reap50 --data calib/python`",
                         Date().timeIntervalSince(started), store, store))
        }
    }
}

extension Optional {
    func orThrow(_ error: @autoclosure () -> Error) throws -> Wrapped {
        guard let self else { throw error() }
        return self
    }
}
