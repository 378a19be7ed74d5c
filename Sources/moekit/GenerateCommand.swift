import ArgumentParser
import Compression
import ExpertStore
import Foundation
import MoE
import MoEServer

struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate", abstract: "Continue PROMPT, streaming text as it is produced.",
        discussion: """
        With --store, the experts are loaded at start when they fit the memory this process \
        may use (its cgroup limit, or MemAvailable); otherwise, or with --max-expert-memory, \
        they come through an LRU cache and misses are read from the store. stderr gets one \
        line saying which and why, and at the end the prompt and generation speed, the peak \
        memory and the cache's hit rate. stdout is the generated text alone.
        """)

    @OptionGroup var source: ModelOptions
    @OptionGroup var memory: ExpertMemoryOptions
    @OptionGroup var threadOptions: ThreadOptions
    @Argument(help: "The prompt to continue.") var prompt: String
    @Option(help: "Maximum number of new tokens.") var maxTokens = 64
    @Option(help: "Sampling temperature; 0 is greedy.") var temperature: Float = 0
    @Option(help: "Nucleus sampling threshold.") var topP: Float = 1
    @Option(help: "Random seed for sampling.") var seed: UInt64 = 0

    func validate() throws {
        guard maxTokens >= 0 else { throw ValidationError("--max-tokens must be at least 0") }
        guard temperature >= 0 else { throw ValidationError("--temperature must be at least 0") }
        guard topP > 0 && topP <= 1 else { throw ValidationError("--top-p must be in (0, 1]") }
        if memory.maxExpertMemory != nil && source.store == nil {
            throw ValidationError("--max-expert-memory needs --store: the expert cache reads its misses from an expert store")
        }
    }

    func run() throws {
        threadOptions.apply()
        let tokenizer = try source.loadTokenizer()
        let (model, cache) = try loadModel()
        let ids = tokenizer.encode(prompt)
        var detokenizer = StreamingDetokenizer(tokenizer: tokenizer)
        let stops = Set(model.description.eosTokenIDs)
        var timer = GenerationTimer(promptTokens: ids.count)
        try Generator(model: model).generate(
            prompt: ids, maxTokens: maxTokens,
            sampling: SamplingParameters(temperature: temperature, topP: topP, seed: seed),
            stopTokens: stops
        ) { token in
            timer.tokenProduced()
            let piece = detokenizer.append(token)
            if !piece.isEmpty {
                FileHandle.standardOutput.write(Data(piece.utf8))
            }
            return true
        }
        // Unbuffered like the pieces, so the newline comes before the statistics on a shared terminal or pipe.
        FileHandle.standardOutput.write(Data("\n".utf8))
        let statistics = timer.statistics(peakResidentBytes: AvailableMemory.peakResidentBytes(), cache: cache?.statistics)
        Self.log(statistics.line)
    }

    /// The model, its experts resident or through a cache (returned) as `ExpertResidency`
    /// decides, after saying on stderr which and why. The serving path's precision
    /// (`stored`), so a greedy completion here equals the server's.
    func loadModel() throws -> (MoEModel, ExpertCache?) {
        guard let store = try source.openStore() else {
            let model = try source.loadModel()
            // A checkpoint folder's experts are all loaded at once.
            let bytes = (model.experts as? LoadedExperts)?.residentBytes ?? 0
            Self.log("moekit: all \(ByteCount.text(bytes)) of experts resident (a checkpoint folder; the expert cache needs --store)")
            return (model, nil)
        }
        let loaded = try PlanModel(plan: CompressionPlan.named(source.plan, in: store), store: store,
                                   precision: source.precision,
                                   maxExpertMemory: memory.limitBytes, budget: AvailableMemory.current())
        Self.log("moekit: \(loaded.residency.summary)")
        return (loaded.model, loaded.cache)
    }

    static func log(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }
}
