import CKernels
import ExpertStore
import Foundation
import MoE

/// Writes a plan as a standard Hugging Face checkpoint that transformers, llama.cpp's
/// converter or vLLM load like any other: the kept experts renumbered 0..<E', the router
/// (and DeepSeek's correction bias) sliced to their rows, the expert count in `config.json`
/// updated. Merged experts are written once per member, so the router keeps choosing among
/// the members and the sum of their gates reaches the shared weights, exactly as MoEKit runs
/// it. Quantized and merged weights are written dequantized in f32; original and refit experts keep
/// their stored dtype. Two things have no standard form and are refused: novices (a constant
/// output) and layers that keep different numbers of experts (configs hold one count).
public struct PlanExporter {
    public let store: ExpertStore

    public init(store: ExpertStore) { self.store = store }

    public func export(plan: CompressionPlan, to directory: URL) throws -> ExportSummary {
        let description = try store.modelDescription()
        let kept = try Self.uniformExpertCount(plan, description: description, fingerprint: try store.fingerprint())
        let fm = FileManager.default
        if let existing = try? fm.contentsOfDirectory(atPath: directory.path), !existing.isEmpty {
            throw StoreError.outputNotEmpty(path: directory.path)
        }
        try fm.createDirectory(at: directory, withIntermediateDirectories: true)

        let dense = try StoreTensorProvider(store: store)
        let planTensors = try PlanTensorProvider(store: store, quantization: plan.denseQuantization)
        let quantizedDense = Set(plan.denseQuantization?.tensors ?? [])
        let variants = try StoreVariantProvider(store: store, precision: .float32)   // derived 16-bit experts widened, as the writer takes f32
        let names = description.names
        var writer = SafetensorsWriter()
        var tensorBytes = 0
        var tensorCount = 0
        var routerRows = [String: [Int]]()
        for l in description.moeLayerIndices {
            let survivors = plan.layers[l]!.expertMap.survivingExperts
            routerRows[names.router(l)] = survivors
            routerRows[names.correctionBias(l)] = survivors
        }
        for name in dense.names {
            let layout = try dense.layout(name)
            if let rows = routerRows[name] {
                // Slice router rows (a 2-D weight) or bias entries (1-D) to the surviving experts.
                let rowBytes = layout.byteCount / layout.shape[0]
                let bytes = try dense.withVerifiedBytes(name) { raw, _ in rows.flatMap { Array(raw[($0 * rowBytes)..<(($0 + 1) * rowBytes)]) } }
                writer.add(name, dtype: layout.dtype, shape: [rows.count] + layout.shape.dropFirst(), bytes: bytes)
                tensorBytes += bytes.count
            } else if quantizedDense.contains(name) {
                // A tensor the plan quantized: its dequantized values (f32, as quantized experts export).
                let values = try planTensors.matrix(name).values
                writer.add(name, dtype: .f32, shape: layout.shape, bytes: values.withUnsafeBytes { Array($0) })
                tensorBytes += values.count * 4
            } else {
                writer.add(name, dtype: layout.dtype, shape: layout.shape) { emit in
                    try dense.withVerifiedBytes(name) { bytes, _ in try emit(bytes) }
                }
                tensorBytes += layout.byteCount
            }
            tensorCount += 1
        }
        // Experts are read (or rebuilt) when the writer reaches them and released after, so
        // export holds about one expert at a time whatever the model's size. The writer takes
        // tensors in name order, which keeps an expert's three projections together: the last
        // expert built is remembered for its other two.
        let recent = RecentExpert()
        for l in description.moeLayerIndices {
            let layer = plan.layers[l]!
            let original = try store.expertRecord(ExpertKey(layer: l, expert: 0))   // dtypes and shapes of this layer's imported experts
            for (newIndex, expert) in layer.expertMap.survivingExperts.enumerated() {
                let slot = layer.slots[layer.expertMap.slotOfExpert[expert]!]
                let record = slot.record
                // Imported and refit experts are stored in the imported dtype: their bytes are copied.
                if record.variant == 0 || ExpertVariants.isRefit(record.variant), let original {
                    let key = ExpertKey(layer: l, expert: record.expert, variant: ExpertVariant(rawValue: record.variant))
                    for (p, projection) in Projection.allCases.enumerated() {
                        writer.add(names.expert(l, newIndex, projection), dtype: original.tensors[p].dtype, shape: original.tensors[p].shape) { [store] emit in
                            guard let stored = try store.expertRecord(key) else {
                                throw StoreError.missingRecord(path: store.path, record: "expert record (\(key))")
                            }
                            try stored.payloads[p].withUnsafeBytes { try emit($0) }
                        }
                        tensorBytes += original.payloads[p].count
                    }
                } else {
                    let (h, f) = (description.hiddenSize, description.layers[l].moe!.expertIntermediateSize)
                    for (p, (projection, shape)) in zip(Projection.allCases, [[f, h], [f, h], [h, f]]).enumerated() {
                        writer.add(names.expert(l, newIndex, projection), dtype: .f32, shape: shape) { emit in
                            let weights = try recent.expert(layer: l, record: record) {
                                try Self.dense(variants.expert(layer: l, expert: record.expert, variant: record.variant), plan: plan.name, layer: l)
                            }
                            try [weights.gate, weights.up, weights.down][p].values.withUnsafeBytes { try emit($0) }
                        }
                        tensorBytes += shape.reduce(1, *) * 4
                    }
                }
                tensorCount += 3
            }
        }
        var files = [String]()
        for name in try store.fileNames() {
            guard var data = try store.file(name) else { continue }
            if name == "config.json" { data = try Self.config(data, expertCount: kept, description: description) }
            try data.write(to: directory.appendingPathComponent(name), options: .atomic)
            files.append(name)
        }
        try writer.write(to: directory.appendingPathComponent("model.safetensors"))
        files.append("model.safetensors")
        return ExportSummary(files: files.sorted(), tensors: tensorCount, tensorBytes: tensorBytes)
    }

    /// Checks that `plan` fits the model and has a standard form (no novices, one expert count
    /// for every MoE layer), and returns that count. Shared by the safetensors and GGUF exports.
    static func uniformExpertCount(_ plan: CompressionPlan, description: ModelDescription, fingerprint: String?) throws -> Int {
        try plan.validate(against: description, fingerprint: fingerprint)
        var counts = Set<Int>()
        for (l, layer) in plan.layers.enumerated() {
            guard let layer else { continue }
            if layer.slots.contains(where: { if case .novice = $0 { return true } else { return false } }) {
                throw PlanError.invalid(plan: plan.name, reason: "layer \(l) has novices: each adds a constant gated by its pruned expert's router row, which no checkpoint format computes (a shared-expert bias would add it to every token, ungated); export a plan without --novices")
            }
            counts.insert(layer.expertMap.survivingExperts.count)
        }
        guard counts.count <= 1 else {
            throw PlanError.invalid(plan: plan.name, reason: "layers keep different numbers of experts (\(counts.sorted().map(String.init).joined(separator: ", "))); Hugging Face configs and llama.cpp hold one count, so build the plan with --budget uniform")
        }
        return counts.first ?? 0
    }

    /// f32 weights of a merged or quantized slot.
    static func dense(_ expert: any Expert, plan: String, layer: Int) throws -> FeedForward {
        switch expert {
        case let f as FeedForward: return f
        case let q as QuantizedExpert: return q.dequantized()
        default: throw PlanError.invalid(plan: plan, reason: "layer \(layer) has an expert of a kind a checkpoint cannot hold")
        }
    }

    /// `config.json` with the routed expert count changed under whichever key the file uses.
    /// DeepSeek's group-limited routing needs the count to split into `n_group` groups; when
    /// it no longer does, groups are switched off (as PreMoe does for its slimmed models).
    /// Only those values are rewritten in the original text: re-encoding the whole file would
    /// turn floats such as `0.0` into integers, which transformers' strict configs reject.
    static func config(_ data: Data, expertCount: Int, description: ModelDescription) throws -> Data {
        var text = String(decoding: data, as: UTF8.self)
        guard let json = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw CheckpointError.malformedConfig(file: "config.json", reason: "not a JSON object")
        }
        func set(_ key: String, _ value: Int) {
            guard let range = text.range(of: "\"\(key)\"\\s*:\\s*[0-9]+", options: .regularExpression) else { return }
            text.replaceSubrange(range, with: "\"\(key)\": \(value)")
        }
        for key in ["num_experts", "num_local_experts", "n_routed_experts"] where json[key] != nil { set(key, expertCount) }
        if let groups = json["n_group"] as? Int, groups > 1, expertCount % groups != 0 || expertCount / groups < 2 {
            set("n_group", 1)
            set("topk_group", 1)
        }
        return Data(text.utf8)
    }
}

/// The expert most recently rebuilt for export, so its three projections are built once.
private final class RecentExpert {
    private var key: (layer: Int, expert: Int, variant: UInt32)?
    private var weights: FeedForward?

    func expert(layer: Int, record: (expert: Int, variant: UInt32), build: () throws -> FeedForward) rethrows -> FeedForward {
        if let key, key == (layer, record.expert, record.variant), let weights { return weights }
        let built = try build()
        (key, weights) = ((layer, record.expert, record.variant), built)
        return built
    }
}
