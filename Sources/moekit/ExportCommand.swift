import ArgumentParser
import Compression
import ExpertStore
import Foundation
import MoE

/// What `moekit export` writes.
enum ExportFormat: String, ExpressibleByArgument, CaseIterable {
    /// A Hugging Face checkpoint folder (config, safetensors, tokenizer).
    case hf
    /// One GGUF v3 file for llama.cpp and Ollama.
    case gguf
    /// A checkpoint folder in mlx-lm's quantized layout (stacked experts, affine codes kept).
    case mlx
}

extension GGUFExpertType: ExpressibleByArgument {}
extension RebuiltWeightDType: ExpressibleByArgument {}

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a store, or one of its plans, as a Hugging Face checkpoint folder, a GGUF file for llama.cpp, or an MLX folder.",
        discussion: """
        With --plan, the kept experts are renumbered, the router is sliced to their rows and the expert \
        count is updated; merged experts are written once per member. Plans with novices, or whose \
        layers keep different expert counts, have no standard form and are refused.

        --format hf (the default) writes a folder: config.json with every key spelling the family has \
        had (transformers 4 and 5), the tokenizer, and model.safetensors, or shards of at most \
        --max-shard-size (default 5GB) with model.safetensors.index.json. Stored weights keep their \
        dtype; quantized experts and tensors are written dequantized in the imported dtype (BF16 for a \
        BF16 import, rounded to nearest-even, never wider), because transformers has no loader for \
        MoEKit's group-affine codes (GPTQ, AWQ and compressed-tensors hold integer zero points); \
        --format gguf keeps the codes. --hf-rebuilt-dtype float32 writes those rebuilt weights in f32         instead: exactly the plan's weights, so transformers computes what MoEKit computes running the plan.
        --format mlx writes a folder mlx-lm loads quantized: each layer's experts stacked per projection \
        (switch_mlp), MoEKit's group-affine codes kept as MLX's affine layout (uint32 words, f16 scales \
        and biases; a stack's narrower or coarser experts re-encoded exactly), and config.json's \
        quantization (and quantization_config) with the main format and one entry per module that differs.
        --format gguf writes one file (--out FILE.gguf) that llama.cpp loads unmodified: stored \
        BF16/F16/F32 weights as they are, 2-4-bit codes exactly as Q4_1, 8-bit codes requantized to \
        Q8_0; the summary lists every choice and whether it is exact. --gguf-expert-type q4_k writes \
        the expert tensors as Q4_K instead (4.5 bits a weight, requantized from the plan's weights, \
        never exact; rows must be multiples of 256).
        """)

    @Option(name: .long, help: "The expert store to export.") var store: String
    @Option(name: .long, help: "Export this plan instead of the full model.") var plan: String?
    @Option(name: .long, help: "hf: a Hugging Face checkpoint folder; gguf: one GGUF file for llama.cpp; mlx: a folder for mlx-lm, codes kept.") var format: ExportFormat = .hf
    @Option(name: .long, help: "The folder to write (hf; it must not exist yet or be empty), or the file (gguf, --plan-json).") var out: String
    @Option(name: .long, help: "hf: the largest shard, as transformers takes it (500MB, 5GB, 2GiB or a byte count).") var maxShardSize: String = "5GB"
    @Option(name: .long, help: "hf, with --plan: the dtype of weights rebuilt from the plan (quantized, merged): source (the imported dtype, never wider) or float32 (exactly the plan's weights).") var hfRebuiltDtype: RebuiltWeightDType = .source
    @Option(name: .long, help: "gguf: the expert tensors' type: plan (the plan's own form, exact where ggml has it) or q4_k (requantized to Q4_K, smaller).") var ggufExpertType: GGUFExpertType = .plan
    @Flag(help: "gguf: write every BF16/F16 tensor as F32 (exact, twice the bytes), so that llama.cpp multiplies f32 activations as MoEKit does (its BF16/F16 products round them).") var ggufFloat32 = false
    @Flag(help: "With --plan: write the plan document itself as JSON to --out (a file) instead of a checkpoint.") var planJSON = false
    @Flag(help: "Print the summary as JSON.") var json = false

    func validate() throws {
        do { _ = try ShardSize(maxShardSize) } catch { throw ValidationError(error.description) }
        if planJSON && format == .gguf { throw ValidationError("--plan-json writes the plan document; it does not take --format gguf") }
        if hfRebuiltDtype != .source && (format != .hf || plan == nil) { throw ValidationError("--hf-rebuilt-dtype applies to --format hf with --plan only") }
        if ggufFloat32 && format != .gguf { throw ValidationError("--gguf-float32 applies to --format gguf only") }
        if ggufExpertType != .plan && format != .gguf { throw ValidationError("--gguf-expert-type applies to --format gguf only") }
        if format == .gguf {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: out, isDirectory: &isDirectory), isDirectory.boolValue {
                throw ValidationError("--format gguf writes one file; --out \(out) is a folder")
            }
        }
    }

    func run() throws {
        let opened = try ExpertStore(url: URL(fileURLWithPath: store))
        let target = URL(fileURLWithPath: out)
        if planJSON {
            guard let plan else { throw ValidationError("--plan-json needs --plan NAME") }
            try Data(Output.json(PlanLoader.plan(named: plan, in: opened)).utf8).write(to: target)
            print("\(out): plan '\(plan)' as JSON")
            return
        }
        switch format {
        case .gguf:
            let summary = try GGUFExporter(store: opened, expertType: ggufExpertType, widensFloats: ggufFloat32).export(plan: plan.map { try PlanLoader.plan(named: $0, in: opened) }, to: target)
            try Output.print(summary, json: json, text: (["\(out): GGUF v3, \(summary.architecture), plan '\(summary.plan)', \(summary.expertsPerLayer) experts per layer, \(summary.tensors) tensors, \(summary.fileBytes.formatted()) bytes"]
                + summary.choiceLines.map { "  " + $0 } + summary.notes.map { "  note: " + $0 }).joined(separator: "\n"))
        case .hf, .mlx:
            let shardBytes = try ShardSize(maxShardSize).bytes
            let summary: ExportSummary
            if format == .mlx {
                // The full model is a plan too: every expert as imported, stacked.
                let description = try opened.modelDescription()
                let chosen = try plan.map { try PlanLoader.plan(named: $0, in: opened) }
                    ?? CompressionPlan.full(description: description, fingerprint: opened.fingerprint() ?? "", expertBytes: 0)
                summary = try MLXExporter(store: opened, maxShardBytes: shardBytes).export(plan: chosen, to: target)
            } else {
                summary = try plan.map { try PlanExporter(store: opened, maxShardBytes: shardBytes, rebuilt: hfRebuiltDtype).export(plan: PlanLoader.plan(named: $0, in: opened), to: target) }
                    ?? StoreExporter(store: opened, maxShardBytes: shardBytes).export(to: target)
            }
            try Output.print(summary, json: json, text: (["\(out): wrote \(summary.files.joined(separator: ", ")) (\(summary.tensors) tensors, \(summary.tensorBytes.formatted()) bytes)"]
                + summary.notes.map { "  note: " + $0 }).joined(separator: "\n"))
        }
    }
}
