import ArgumentParser
import Compression
import ExpertStore
import Foundation
import MoE
import MoEServer
import Routing

/// `moekit bench`, in the manner of llama-bench: per plan, prompt processing (one prefill of
/// `-p` tokens) and generation (`-n` tokens decoded one at a time from an empty context),
/// each repeated `-r` times, with the bytes one generated token reads and the memory used.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure prompt-processing and generation speed of plans (llama-bench style).",
        discussion: """
        Tokens are drawn from a fixed seed, so runs compare. Bytes per generated token are the \
        dense weights one step reads as held (attention, routers, shared experts, output head; \
        an untied embedding is read one row at a time) plus, in each MoE layer, the experts a \
        token ran (counted over an untimed decode: the top-k, or fewer under a plan's skip rule) \
        at the plan's average expert size. Example: moekit bench --store s.store --plan full --plan q4 -p 512 -n 128
        """)

    @OptionGroup var storeOption: StoreOption
    @OptionGroup var threadOptions: ThreadOptions
    @Option(name: .customLong("plan"), help: "Plans to measure (repeatable; 'full' is the unmodified model).") var plans: [String] = ["full"]
    @Option(name: .short, help: "Prompt tokens per prompt-processing test (0 skips it).") var p = 512
    @Option(name: .short, help: "Tokens generated per generation test (0 skips it).") var n = 128
    @Option(name: .short, help: "Repetitions of each test.") var r = 5
    @Option(help: "stored: BF16/F16 weights stay 16-bit (the default); float32: widen them at load.") var precision: WeightPrecision = .stored
    @Flag(help: "Print JSON instead of a markdown table.") var json = false

    func validate() throws {
        guard p >= 0, n >= 0, p + n > 0 else { throw ValidationError("-p and -n must be at least 0, and not both 0") }
        guard r >= 1 else { throw ValidationError("-r must be at least 1") }
    }

    struct Row: Encodable {
        var plan: String
        var test: String
        var tokensPerSecond: Double
        var standardDeviation: Double
        var bytesPerGeneratedToken: Int
        /// Experts run per token and MoE layer, averaged (the top-k unless the plan skips).
        var expertsPerToken: Double
        var expertBytes: Int
        var denseBytes: Int
        var residentBytes: Int?
        var threads: Int
    }

    func run() throws {
        threadOptions.apply()
        let store = try ExpertStore(url: storeOption.url)
        let description = try store.modelDescription()
        guard p + n <= description.maxPositionEmbeddings else {
            throw ValidationError("-p \(p) and -n \(n) exceed the model's context of \(description.maxPositionEmbeddings)")
        }
        var generator = SeededTokens(seed: 42, vocabulary: description.vocabularySize)
        let prompt = (0..<p).map { _ in generator.next() }
        let first = generator.next()
        var rows = [Row]()
        for name in plans {
            let plan = try CompressionPlan.named(name, in: store)
            let loaded = try PlanModel(plan: plan, store: store, precision: precision, maxExpertMemory: nil, budget: AvailableMemory.current(),
                                       loadEverything: true)
            let model = loaded.model
            FileHandle.standardError.write(Data("moekit bench \(name): \(loaded.residency.summary)\n".utf8))
            // One untimed run of each test first, as llama-bench does: it faults in the weights
            // (mapped from the store) and warms the caches, so repetitions measure steady state.
            // The decode warm-up also counts the experts each token runs.
            let usage = ExpertUsageCounter()
            if p > 0 { _ = try model.logits(prompt) }
            try decode(model, first: first, steps: Swift.max(Swift.min(n, 32), 4), observer: usage)
            let perToken = bytesPerToken(model: model, plan: plan, experts: usage.meanExpertsPerLayer)
            func row(_ test: String, _ rates: [Double]) -> Row {
                let mean = rates.reduce(0, +) / Double(rates.count)
                let sd = rates.count > 1 ? (rates.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(rates.count - 1)).squareRoot() : 0
                return Row(plan: name, test: test, tokensPerSecond: mean, standardDeviation: sd, bytesPerGeneratedToken: perToken,
                           expertsPerToken: usage.meanExpertsPerToken,
                           expertBytes: plan.expectedExpertBytes, denseBytes: model.denseByteCount, residentBytes: AvailableMemory.residentBytes(),
                           threads: ComputePool.threads)
            }
            if p > 0 {
                let rates = try (0..<r).map { _ in
                    Double(p) / (try Self.seconds { _ = try model.logits(prompt) })
                }
                rows.append(row("pp\(p)", rates))
            }
            if n > 0 {
                let rates = try (0..<r).map { _ in
                    Double(n) / (try Self.seconds { try decode(model, first: first, steps: n) })
                }
                rows.append(row("tg\(n)", rates))
            }
        }
        try Output.print(rows, json: json, text: Self.table(rows))
    }

    /// Greedy decoding of `steps` tokens from an empty context, one forward pass per token.
    func decode(_ model: MoEModel, first: Int, steps: Int, observer: (any RoutingObserver)? = nil) throws {
        var cache = model.makeCache()
        var token = first
        for _ in 0..<steps {
            let logits = try model.forward([token], cache: &cache, observer: observer)
            token = logits.values.indices.max { logits.values[$0] < logits.values[$1] }!
        }
    }

    /// Dense weights read per step plus the experts each MoE layer ran per token (counted; the
    /// top-k where nothing was counted) at the plan's average slot size (every slot of a layer
    /// has the same shapes; mixed widths average out).
    func bytesPerToken(model: MoEModel, plan: CompressionPlan, experts: [Int: Double]) -> Int {
        let d = model.description
        let slotBytes = Double(plan.expectedExpertBytes) / Double(max(plan.slotCount, 1))
        return model.denseBytesPerToken + Int(d.moeLayerIndices.reduce(0.0) { $0 + (experts[$1] ?? Double(d.layers[$1].moe!.topK)) * slotBytes })
    }

    static func seconds(_ body: () throws -> Void) rethrows -> Double {
        let start = DispatchTime.now().uptimeNanoseconds
        try body()
        return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    }

    static func table(_ rows: [Row]) -> String {
        var lines = ["| plan | test | threads | t/s | experts/token | bytes/token | expert bytes | dense bytes | resident |", "|---|---|---|---|---|---|---|---|---|"]
        for r in rows {
            lines.append("| \(r.plan) | \(r.test) | \(r.threads) | \(String(format: "%.2f ± %.2f", r.tokensPerSecond, r.standardDeviation)) | \(String(format: "%.2f", r.expertsPerToken)) | "
                + "\(ByteCount.text(r.bytesPerGeneratedToken)) | \(ByteCount.text(r.expertBytes)) | \(ByteCount.text(r.denseBytes)) | "
                + "\(r.residentBytes.map(ByteCount.text) ?? "-") |")
        }
        return lines.joined(separator: "\n")
    }
}

/// Deterministic token ids (a 64-bit linear congruential generator), the same on every run.
struct SeededTokens {
    var state: UInt64
    let vocabulary: Int

    init(seed: UInt64, vocabulary: Int) { (state, self.vocabulary) = (seed, vocabulary) }

    mutating func next() -> Int {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Int((state >> 33) % UInt64(vocabulary))
    }
}
