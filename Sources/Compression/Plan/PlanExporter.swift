import CKernels
import ExpertStore
import Foundation
import MoE

/// Writes a plan as a standard Hugging Face checkpoint that transformers, llama.cpp's
/// converter or vLLM load like any other: the kept experts renumbered 0..<E', the router
/// (and DeepSeek's correction bias) sliced to their rows, the expert count in `config.json`
/// updated and every key spelling the family has had present (`ExportConfig`). Merged experts
/// are written once per member, so the router keeps choosing among the members and the sum of
/// their gates reaches the shared weights, exactly as MoEKit runs it.
///
/// Dtypes: original and refit experts keep their stored bytes. Quantized and merged experts,
/// and quantized dense tensors, are written in the dtype the imported tensor had (BF16 where
/// the import was BF16), rounded to nearest-even from their f32 values, never wider; or, on
/// request (`RebuiltWeightDType.float32`), in f32, so that transformers runs exactly the plan.
/// transformers has no loader for MoEKit's group-affine codes: its quantized formats that
/// load without MoEKit (GPTQ, AWQ, compressed-tensors) hold integer zero points, which
/// MoEKit's f16 group minimums do not map onto, so dequantizing is the faithful choice
/// (`moekit export --format gguf` keeps the codes).
///
/// Tensors go into shards of at most `maxShardBytes` with an index, as `save_pretrained`
/// writes them (one `model.safetensors` when everything fits). Every tensor's bytes are read
/// or rebuilt when the writer reaches it and released after, so memory stays near one
/// expert (or one dense tensor) whatever the model's size.
///
/// Two things have no standard form and are refused: novices (a constant output) and layers
/// that keep different numbers of experts (configs hold one count).
public struct PlanExporter {
    public let store: ExpertStore
    public let maxShardBytes: Int
    /// The dtype of weights rebuilt from the plan (quantized, merged, shrunk).
    public let rebuilt: RebuiltWeightDType

    public init(store: ExpertStore, maxShardBytes: Int = ShardedSafetensorsWriter.defaultMaxShardBytes, rebuilt: RebuiltWeightDType = .source) {
        self.store = store
        self.maxShardBytes = maxShardBytes
        self.rebuilt = rebuilt
    }

    /// What the summary says about weights the export rounds.
    static let dequantizedNote = "quantized experts and tensors are written dequantized in the imported dtype (rounded to nearest-even, never wider): transformers has no loader for MoEKit's group-affine codes; --format gguf keeps them"

    static let float32Note = "quantized and merged experts and quantized tensors are written dequantized in f32 (--hf-rebuilt-dtype float32): exactly the plan's weights, wider than the import"

    public func export(plan: CompressionPlan, to directory: URL) throws -> ExportSummary {
        let description = try store.modelDescription()
        let kept = try Self.uniformExpertCount(plan, description: description, fingerprint: try store.fingerprint())
        let fm = FileManager.default
        if let existing = try? fm.contentsOfDirectory(atPath: directory.path), !existing.isEmpty {
            throw StoreError.outputNotEmpty(path: directory.path)
        }
        try fm.createDirectory(at: directory, withIntermediateDirectories: true)

        var writer = ShardedSafetensorsWriter(maxShardBytes: maxShardBytes)
        var rounded = 0
        let names = description.names
        let variants = try StoreVariantProvider(store: store, precision: .float32)   // derived 16-bit experts widened, as they are rebuilt in f32
        try Self.addDenseTensors(to: &writer, plan: plan, description: description, store: store) { writer, name, layout, quantization in
            // A tensor the plan quantized: its dequantized values in the stored dtype.
            let dtype = rebuiltDType(layout.dtype)
            writer.add(name, dtype: dtype, shape: layout.shape) { [store] emit in
                let values = try Self.quantizedDense(name, variant: quantization.variant, store: store).dequantized().values
                try FloatEncoding.bytes(values, as: dtype).withUnsafeBytes { try emit($0) }
            }
            rounded += 1
        }
        // The last expert rebuilt is remembered for its other two projections: a shard writes
        // its tensors in name order, which keeps an expert's three projections together.
        let recent = RecentExpert()
        let exportedWidth = Self.shrunkExpertWidth(plan)
        for l in description.moeLayerIndices {
            let layer = plan.layers[l]!
            // A shrunk plan's experts are rebuilt and padded with zero neurons to its widest
            // expert (one width per model, as the config holds it); the output is unchanged.
            let f = description.layers[l].moe!.expertIntermediateSize, width = exportedWidth ?? f
            func rebuilt(_ record: (expert: Int, variant: UInt32)) throws -> FeedForward {
                try recent.expert(layer: l, record: record) {
                    try Self.dense(variants.expert(layer: l, expert: record.expert, variant: record.variant), plan: plan.name, layer: l)
                        .paddedWithZeroNeurons(to: width)
                }
            }
            guard let original = try store.expertRecord(ExpertKey(layer: l, expert: 0)) else {   // dtypes and shapes of this layer's imported experts
                throw StoreError.missingRecord(path: store.path, record: "expert record (\(ExpertKey(layer: l, expert: 0)))")
            }
            if description.names.expertLayout == .fusedInterleavedGateUp {
                // gpt-oss's fused layout. Imported experts' bytes are copied; merged and
                // quantized ones are rebuilt in f32 (dequantized, biases as kept) and written
                // in the imported dtypes, each merged group once per member.
                let survivors = layer.expertMap.survivingExperts
                let slots = survivors.map { layer.slots[layer.expertMap.slotOfExpert[$0]!].record }
                // One dtype per fused tensor: f32 for the whole layer when rebuilt weights are asked
                // in f32 and the layer has some (its imported experts are then widened, exactly).
                let rebuildsSome = slots.contains { $0.variant != 0 } || width != f
                let dtypes = original.tensors.map { rebuildsSome ? rebuiltDType($0.dtype) : Self.exportDType($0.dtype) }
                if slots.contains(where: { $0.variant != 0 }) { rounded += 3 * slots.filter { $0.variant != 0 }.count }
                GptOssFusedLayout.add(to: &writer, layer: l, names: names, expertCount: slots.count, hidden: description.hiddenSize,
                                      width: width, dtypes: dtypes) { [store] k in
                    let record = slots[k]
                    if record.variant == 0 && width == f && dtypes == original.tensors.map(\.dtype) {
                        let key = ExpertKey(layer: l, expert: record.expert)
                        guard let stored = try store.expertRecord(key) else {
                            throw StoreError.missingRecord(path: store.path, record: "expert record (\(key))")
                        }
                        return stored.payloads
                    }
                    let weights = try rebuilt(record)
                    guard let biases = weights.biases else {
                        throw PlanError.invalid(plan: plan.name, reason: "layer \(l) expert \(record.expert) variant \(record.variant) has no biases; gpt-oss's fused layout needs them")
                    }
                    return zip([weights.gate.values, weights.up.values, weights.down.values] + biases.all, dtypes).map { FloatEncoding.bytes($0, as: $1) }
                }
                continue
            }
            for (newIndex, expert) in layer.expertMap.survivingExperts.enumerated() {
                let slot = layer.slots[layer.expertMap.slotOfExpert[expert]!]
                let record = slot.record
                // Imported and refit experts are stored in the imported dtype: their bytes are copied
                // (unless shrinking made them narrower than the width exported).
                if (record.variant == 0 || ExpertVariants.isRefit(record.variant)) && exportedWidth == nil {
                    let key = ExpertKey(layer: l, expert: record.expert, variant: ExpertVariant(rawValue: record.variant))
                    for (p, projection) in Projection.allCases.enumerated() {
                        writer.add(names.expert(l, newIndex, projection), dtype: original.tensors[p].dtype, shape: original.tensors[p].shape) { [store] emit in
                            guard let stored = try store.expertRecord(key) else {
                                throw StoreError.missingRecord(path: store.path, record: "expert record (\(key))")
                            }
                            try stored.payloads[p].withUnsafeBytes { try emit($0) }
                        }
                    }
                } else {
                    for (p, projection) in Projection.allCases.enumerated() {
                        let dtype = rebuiltDType(original.tensors[p].dtype)
                        let shape = p == 2 ? [description.hiddenSize, width] : [width, description.hiddenSize]
                        writer.add(names.expert(l, newIndex, projection), dtype: dtype, shape: shape) { emit in
                            let weights = try rebuilt(record)
                            try FloatEncoding.bytes([weights.gate, weights.up, weights.down][p].values, as: dtype).withUnsafeBytes { try emit($0) }
                        }
                    }
                    rounded += 3
                }
            }
        }
        var files = [String]()
        for name in try store.fileNames() {
            guard var data = try store.file(name) else { continue }
            if name == "config.json" { data = try ExportConfig.rewrite(data, expertCount: kept, expertWidth: exportedWidth) }
            let target = directory.appendingPathComponent(name)
            do { try data.write(to: target, options: .atomic) } catch {
                throw SafetensorsWriterError.cannotWrite(file: target.path, reason: error.localizedDescription)
            }
            files.append(name)
        }
        files += try writer.write(to: directory)
        let dense = try StoreTensorProvider(store: store)
        let notes = (rounded > 0 ? [rebuilt == .float32 ? Self.float32Note : Self.dequantizedNote] : []) + [Self.predictionLayerNote(description, keptExperts: kept, in: dense)].compactMap { $0 }
        return ExportSummary(files: files.sorted(), tensors: writer.tensorCount, tensorBytes: writer.totalBytes, notes: notes)
    }

    /// Adds every dense tensor as stored, routers (and DeepSeek's correction bias) sliced to
    /// the kept experts' rows; the tensors the plan quantized go through `quantized`, which
    /// writes them in its format's way. Shared by the safetensors and MLX exports.
    static func addDenseTensors(to writer: inout ShardedSafetensorsWriter, plan: CompressionPlan, description: ModelDescription,
                                store: ExpertStore,
                                quantized: (inout ShardedSafetensorsWriter, String, TensorLayout, DenseQuantization) throws -> Void) throws {
        let dense = try StoreTensorProvider(store: store)
        let quantizedDense = Set(plan.denseQuantization?.tensors ?? [])
        let routerRows = Self.routerRows(plan, description: description)
        for name in dense.names {
            let layout = try dense.layout(name)
            if let rows = routerRows[name] {
                // Slice router rows (a 2-D weight) or bias entries (1-D) to the surviving experts.
                let rowBytes = layout.byteCount / layout.shape[0]
                writer.add(name, dtype: layout.dtype, shape: [rows.count] + layout.shape.dropFirst()) { emit in
                    try dense.withVerifiedBytes(name) { raw, _ in
                        for r in rows { try emit(UnsafeRawBufferPointer(rebasing: raw[(r * rowBytes)..<((r + 1) * rowBytes)])) }
                    }
                }
            } else if quantizedDense.contains(name), let quantization = plan.denseQuantization {
                try quantized(&writer, name, layout, quantization)
            } else {
                writer.add(name, dtype: layout.dtype, shape: layout.shape) { emit in
                    try dense.withVerifiedBytes(name) { bytes, _ in try emit(bytes) }
                }
            }
        }
    }

    /// The dense tensors that hold one row (or entry) per routed expert, each with the rows
    /// of the plan's kept experts: the router, DeepSeek's correction bias, gpt-oss's router bias.
    static func routerRows(_ plan: CompressionPlan, description: ModelDescription) -> [String: [Int]] {
        let names = description.names
        var rows = [String: [Int]]()
        for l in description.moeLayerIndices {
            let survivors = plan.layers[l]!.expertMap.survivingExperts
            for name in [names.router(l), names.correctionBias(l), names.routerBias(l)] { rows[name] = survivors }
        }
        return rows
    }

    /// The dtype rebuilt weights are written in: the imported one when it is a float type
    /// an export writes (always, for the checkpoints MoEKit imports), else f32.
    static func exportDType(_ imported: DType) -> DType { FloatEncoding.isWritable(imported) ? imported : .f32 }

    /// `exportDType`, or f32 when the caller asked for the plan's weights unrounded.
    func rebuiltDType(_ imported: DType) -> DType { rebuilt == .float32 ? .f32 : Self.exportDType(imported) }

    /// A dense tensor's quantized variant, read from the store when the writer reaches it.
    static func quantizedDense(_ name: String, variant: String, store: ExpertStore) throws -> QuantizedMatrix {
        guard let bytes = try store.denseVariant(name, variant: variant) else {
            throw StoreError.missingRecord(path: store.path, record: "dense variant '\(ExpertStore.denseVariantKey(name, variant: variant))'")
        }
        do { return try QuantizedMatrix(decoding: bytes) } catch {
            throw StoreError.corruptRecord(path: store.path, record: "dense variant '\(name)'", reason: "\(error)")
        }
    }

    /// The widest expert of a plan that shrinks experts (`slim --shrink`), nil for any other plan.
    static func shrunkExpertWidth(_ plan: CompressionPlan) -> Int? {
        guard plan.recipe.shrink != nil, let widths = plan.recipe.expertWidths, let widest = widths.last else { return nil }
        return widest
    }

    /// Refuses a shrunk plan for a format that needs the model's own expert width (`format` names it).
    static func refuseShrunk(_ plan: CompressionPlan, format: String) throws {
        guard let widest = shrunkExpertWidth(plan) else { return }
        throw PlanError.invalid(plan: plan.name, reason: "its experts are shrunk (to at most \(widest) neurons); \(format) export of shrunk experts is not implemented, use --format hf (zero-padded to one width)")
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
            try checkGroups(of: layer.expertMap.survivingExperts, layer: l, description: description, plan: plan.name)
        }
        guard counts.count <= 1 else {
            throw PlanError.invalid(plan: plan.name, reason: "layers keep different numbers of experts (\(counts.sorted().map(String.init).joined(separator: ", "))); Hugging Face configs and llama.cpp hold one count, so build the plan with --budget uniform")
        }
        return counts.first ?? 0
    }

    /// A group-limited router (DeepSeek-V3, GLM-4.5: the best `topk_group` of `n_group`
    /// equal groups, ranked by their two best scores) survives renumbering only when every
    /// group keeps the same number of experts, two or more: the kept experts, in order, then
    /// fall into contiguous groups that are the original ones, and each group's score is the
    /// same sum MoEKit computes with the pruned experts masked. Anything else would route
    /// differently from MoEKit once exported, so it is refused with the counts.
    static func checkGroups(of survivors: [Int], layer l: Int, description: ModelDescription, plan: String) throws {
        guard let router = description.layers[l].moe?.router, router.groupCount > 1, router.topGroupCount < router.groupCount else { return }
        let size = router.expertCount / router.groupCount
        let perGroup = (0..<router.groupCount).map { g in survivors.filter { $0 / size == g }.count }
        guard Set(perGroup).count == 1, perGroup[0] >= 2 else {
            throw PlanError.invalid(plan: plan, reason: "layer \(l) keeps \(perGroup.map(String.init).joined(separator: ", ")) experts in its \(router.groupCount) router groups (n_group, choosing topk_group \(router.topGroupCount)); a checkpoint's groups are equal and contiguous, and each needs two experts for its score, so the export would route differently from the plan: build it with --budget uniform, which keeps the groups equal")
        }
    }

    /// The summary's word on the multi-token-prediction layers: written whole, as imported.
    /// Plans are built from routing profiles, and the forward pass never routes through these
    /// layers, so no plan has an entry for them and no criterion could score their experts;
    /// keeping every expert loses nothing. transformers never loads them; a loader that runs
    /// them (vLLM's speculative decoding) sees the original expert count there.
    static func predictionLayerNote(_ description: ModelDescription, keptExperts: Int, in dense: StoreTensorProvider) -> String? {
        guard let layers = description.predictionLayers, !layers.isEmpty,
              dense.contains(description.names.predictionProjection(description.layerCount)) else { return nil }
        let first = description.layerCount
        let indices = (first..<(first + layers.count)).map(String.init).joined(separator: ", ")
        let original = layers.first?.moe?.expertCount
        let count = original.map { "all \($0) experts" } ?? "all tensors"
        let differs = original.map { $0 != keptExperts } ?? false
        return "multi-token-prediction layer \(indices) written whole (\(count), as imported): plans have no entry for it, the forward pass never routes through it" + (differs ? "; config.json's expert count (\(keptExperts)) is the decoder layers'" : "")
    }

    /// f32 weights of a merged or quantized slot.
    static func dense(_ expert: any Expert, plan: String, layer: Int) throws -> FeedForward {
        switch expert {
        case let f as FeedForward: return f
        case let q as QuantizedExpert: return q.dequantized()
        // An imported expert with biases (gpt-oss) read at f32 precision: its weights as they are.
        case let b as BiasedExpert:
            if let gate = b.gate as? Matrix, let up = b.up as? Matrix, let down = b.down as? Matrix {
                return FeedForward(gate: gate, up: up, down: down, biases: ExpertBiases(gate: b.gateBias, up: b.upBias, down: b.downBias), gating: b.activation)
            }
            fallthrough
        default: throw PlanError.invalid(plan: plan, reason: "layer \(layer) has an expert of a kind a checkpoint cannot hold")
        }
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
