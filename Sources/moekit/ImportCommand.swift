import ArgumentParser
import ExpertStore
import Foundation
import MoE

struct ImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Convert a checkpoint folder into an expert store, keeping every tensor's dtype and bytes.",
        discussion: """
        The import is crash-safe: if it is interrupted, running the same command again resumes it \
        where the last committed layer left off. A store that holds another model is refused.
        """)

    @Option(name: .long, help: "The Hugging Face checkpoint folder to import. Default: the bundled models/moekit-tiny.")
    var model: String?
    @Option(name: .long, help: "The store directory to create (or to resume an interrupted import into).")
    var store: String
    @Flag(help: "Widen block-scaled FP8 weights (DeepSeek-V3, Kimi-K2 official checkpoints) to BF16 at import; without it such a checkpoint is refused.")
    var dequantize = false
    @Flag(help: "Print the summary as JSON (and no progress).") var json = false

    func run() throws {
        let checkpoint: URL
        if let model { checkpoint = URL(fileURLWithPath: model) } else if let found = DefaultModel.locate() { checkpoint = found } else {
            throw ValidationError("no --model given and the default model '\(DefaultModel.relativePath)' was not found; pass --model DIR")
        }
        let progress = TerminalProgress(quiet: json)
        let killPoint = TestKillPoint()
        var totalBytes = 1
        var doneBytes = 0
        var layersDone = 0
        var layersTotal = 0
        let start = Date()
        let summary = try StoreImporter(checkpoint: checkpoint, store: URL(fileURLWithPath: store), dequantizeFP8: dequantize).run { event in
            switch event {
            case let .started(_, total, completed, expertBytes):
                (layersTotal, layersDone, totalBytes) = (total, completed, max(expertBytes, 1))
                doneBytes = total > 0 ? expertBytes * completed / total : 0
                progress.update("importing: dense tensors…", force: true)
            case .denseCommitted:
                progress.update("importing: dense tensors written", force: true)
            case let .expertWritten(layer, expert, count, _):
                doneBytes += totalBytes / max(layersTotal, 1) / max(count, 1)
                let rate = Double(doneBytes) / max(Date().timeIntervalSince(start), 1e-3) / 1e9
                progress.update("importing: \(TerminalProgress.bar(Double(doneBytes) / Double(totalBytes))) layer \(layer) expert \(expert + 1)/\(count), "
                    + "\(layersDone)/\(layersTotal) layers committed, \(String(format: "%.2f", rate)) GB/s")
            case let .layerCommitted(_, completed, _):
                layersDone = completed
            case .completed:
                progress.finish()
            }
            killPoint.check(event)
        }
        progress.finish()
        if json {
            print(try Output.json(summary))
            return
        }
        switch summary.outcome {
        case .alreadyComplete:
            print("\(store): already holds this model (fingerprint \(summary.fingerprint)); nothing to do")
        case .imported, .resumed:
            let verb = summary.outcome == .imported ? "imported" : "resumed and finished the import of"
            print("\(store): \(verb) \(checkpoint.path): \(summary.denseTensors) dense tensors, \(summary.experts) experts, "
                + "\(summary.bytesWritten.formatted()) bytes written in \(String(format: "%.2f", Date().timeIntervalSince(start))) s (fingerprint \(summary.fingerprint))")
        }
    }
}

/// A test hook: `MOEKIT_TEST_KILL_AT` makes the import kill itself with SIGKILL at a chosen
/// point, so the fault tests can check what a real crash leaves behind. Values: `dense`
/// (just after the dense transaction commits), `layer:N` (just after MoE layer N commits),
/// `expert:L:E` (inside layer L's transaction, after expert E is written, before commit).
struct TestKillPoint {
    let target: String?

    init() {
        target = ProcessInfo.processInfo.environment["MOEKIT_TEST_KILL_AT"]
    }

    func check(_ event: ImportEvent) {
        guard let target else { return }
        let here: String?
        switch event {
        case .denseCommitted: here = "dense"
        case let .layerCommitted(layer, _, _): here = "layer:\(layer)"
        case let .expertWritten(layer, expert, _, _): here = "expert:\(layer):\(expert)"
        default: here = nil
        }
        if here == target { kill(getpid(), SIGKILL) }
    }
}
