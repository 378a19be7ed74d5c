import ArgumentParser
import Compression
import Foundation
import MoE

struct LogitsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logits",
        abstract: "Print the next-token logits of every input position as JSON {\"logits\": [[...], ...]}.")

    @OptionGroup var source: ModelOptions
    @Option(help: "Comma-separated token ids, e.g. 1,2,3.") var ids: String
    @Flag(help: "Quantized experts multiply f32 activations (the plan's dequantized weights, to rounding) instead of quantizing them to 8 bits for the integer kernels, as generation does: for comparing a plan with its export.") var floatActivations = false

    func validate() throws {
        for piece in ids.split(separator: ",", omittingEmptySubsequences: false) where Int(piece.trimmingCharacters(in: .whitespaces)) == nil {
            throw ValidationError("--ids: '\(piece)' is not an integer token id")
        }
    }

    func run() throws {
        if floatActivations { QuantizedMatrix.usesIntegerKernels = false }
        let parsed = ids.split(separator: ",", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces))! }
        let logits = try source.loadModel().logits(parsed).checkedFinite()
        var out = "{\"logits\": ["
        for r in 0..<logits.rows {
            if r > 0 { out += ", " }
            out += "[" + logits.values[(r * logits.columns)..<((r + 1) * logits.columns)].map { "\($0)" }.joined(separator: ", ") + "]"
        }
        print(out + "]}")
    }
}
