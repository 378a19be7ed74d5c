import ArgumentParser
import Foundation
import MoE

/// `--calib`: text to run through the model, tokenized into one sequence per sample.
struct CalibrationOptions: ParsableArguments {
    @Option(help: "A calibration folder (calib/<domain>, reads calib.jsonl) or a .jsonl file of {\"text\": ...} lines.")
    var calib: String

    @Option(help: "Use at most this many samples.") var maxSamples: Int?
    @Option(help: "Stop after this many tokens in total.") var maxTokens: Int?
    @Option(help: "Truncate each sample to this many tokens.") var sequenceLength = 512

    func validate() throws {
        guard sequenceLength >= 2 else { throw ValidationError("--sequence-length must be at least 2") }
        if let maxTokens, maxTokens < 1 { throw ValidationError("--max-tokens must be positive") }
        if let maxSamples, maxSamples < 1 { throw ValidationError("--max-samples must be positive") }
    }

    /// The token sequences, within the model's context.
    func sequences(tokenizer: Tokenizer, contextLimit: Int) throws -> (data: CalibrationData, sequences: [[Int]]) {
        let data = try CalibrationData(contentsOf: URL(fileURLWithPath: calib))
        var sequences = [[Int]]()
        var total = 0
        for text in data.texts.prefix(maxSamples ?? .max) {
            var ids = Array(tokenizer.encode(text).prefix(min(sequenceLength, contextLimit)))
            if let maxTokens { ids = Array(ids.prefix(maxTokens - total)) }
            guard ids.count >= 2 else { continue }
            sequences.append(ids)
            total += ids.count
            if let maxTokens, total >= maxTokens { break }
        }
        guard !sequences.isEmpty else { throw CalibrationData.LoadError.empty(file: data.file) }
        return (data, sequences)
    }
}

/// The store a command works on: `--store PATH`, or `$MOEKIT_STORE`, or `moekit.store`.
struct StoreOption: ParsableArguments {
    @Option(help: "The expert store (default: $MOEKIT_STORE or ./moekit.store).") var store: String?

    var url: URL {
        URL(fileURLWithPath: store ?? ProcessInfo.processInfo.environment["MOEKIT_STORE"].flatMap { $0.isEmpty ? nil : $0 } ?? "moekit.store")
    }
}
