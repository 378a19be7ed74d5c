import ArgumentParser
import Foundation
import MoE

struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "generate", abstract: "Continue PROMPT, streaming text as it is produced.")

    @OptionGroup var source: ModelOptions
    @Argument(help: "The prompt to continue.") var prompt: String
    @Option(help: "Maximum number of new tokens.") var maxTokens = 64
    @Option(help: "Sampling temperature; 0 is greedy.") var temperature: Float = 0
    @Option(help: "Nucleus sampling threshold.") var topP: Float = 1
    @Option(help: "Random seed for sampling.") var seed: UInt64 = 0

    func validate() throws {
        guard maxTokens >= 0 else { throw ValidationError("--max-tokens must be at least 0") }
        guard temperature >= 0 else { throw ValidationError("--temperature must be at least 0") }
        guard topP > 0 && topP <= 1 else { throw ValidationError("--top-p must be in (0, 1]") }
    }

    func run() throws {
        let tokenizer = try source.loadTokenizer()
        // The serving path: the same precision `moekit serve` uses, so a greedy completion
        // here equals the server's.
        let model = try source.loadModel()
        let ids = tokenizer.encode(prompt)
        var detokenizer = StreamingDetokenizer(tokenizer: tokenizer)
        let stops = Set(model.description.eosTokenIDs)
        try Generator(model: model).generate(
            prompt: ids, maxTokens: maxTokens,
            sampling: SamplingParameters(temperature: temperature, topP: topP, seed: seed),
            stopTokens: stops
        ) { token in
            let piece = detokenizer.append(token)
            if !piece.isEmpty {
                FileHandle.standardOutput.write(Data(piece.utf8))
            }
            return true
        }
        print("")
    }
}
