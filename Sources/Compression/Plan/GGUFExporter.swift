import ExpertStore
import Foundation
import MoE

/// Writes a plan (or the full model) as one GGUF v3 file that llama.cpp loads unmodified:
/// llama.cpp's architecture and tokenizer metadata, its tensor names, and each MoE layer's
/// kept experts fused into one `[experts, rows, columns]` tensor per projection.
///
/// Types, one per tensor (GGUF has no per-expert types, so a layer's projection takes one):
/// - stored BF16/F16/F32 weights are written as they are; norms, biases and routers are
///   widened to F32 (exact), as convert_hf_to_gguf.py keeps them;
/// - 2-, 3- and 4-bit codes become Q4_1 blocks with the group's scale and minimum, exactly:
///   MoEKit's groups are multiples of 32 and its scales and minimums are already f16, and
///   `scale·code` is exact in f32 for codes below 2^11, so llama.cpp's `d·q + m` is
///   MoEKit's dequantized weight bit for bit;
/// - 8-bit affine codes have no exact ggml type (Q8_0 is symmetric): they are requantized to
///   Q8_0 from the plan's dequantized weights;
/// - a projection whose experts differ takes the widest form among them (8-bit over ≤4-bit,
///   a float type over codes, F32 over a mix of float types), and the others are converted.
/// - with `expertType` `.q4_K`, every expert tensor is requantized to Q4_K from the plan's own
///   weights (smaller files; never exact). MoEKit's grids never need Q4_K to be carried: its
///   groups are multiples of 32 with f16 parameters, which Q4_1 holds exactly.
/// `GGUFExportSummary.choices` says for every tensor what it was made from and whether exactly.
/// Families: qwen3moe, qwen2moe, olmoe, llama (Mixtral), glm4moe, deepseek2 (DeepSeek-V3, MLA
/// split as GGUFLatentAttention says) and gpt-oss (expert biases in F32 beside
/// the weights, whatever form the weights take).
///
/// As for the Hugging Face export, novices and unequal expert counts per layer have no form
/// here (llama.cpp holds one `expert_count`) and are refused. Memory stays near one layer:
/// expert records are read when the writer reaches their layer and released after it.
public struct GGUFExporter {
    public let store: ExpertStore
    /// What the fused expert tensors are written as (`plan`: the plan's own form).
    public let expertType: GGUFExpertType
    /// Write every float tensor (BF16/F16 included) as F32, exactly. For checking an export
    /// against MoEKit: ggml's BF16 and F16 products round the activations to the weights'
    /// type (their `vec_dot_type`), which MoEKit's f32-activation kernels do not.
    public let widensFloats: Bool

    public init(store: ExpertStore, expertType: GGUFExpertType = .plan, widensFloats: Bool = false) {
        self.store = store
        self.expertType = expertType
        self.widensFloats = widensFloats
    }

    /// `plan` nil: the full model as imported.
    public func export(plan: CompressionPlan?, to file: URL) throws -> GGUFExportSummary {
        let description = try store.modelDescription()
        let plan = try plan ?? CompressionPlan.full(description: description, fingerprint: store.fingerprint() ?? "", expertBytes: 0)
        let kept = try PlanExporter.uniformExpertCount(plan, description: description, fingerprint: store.fingerprint())
        try PlanExporter.refuseShrunk(plan, format: "GGUF")
        let architecture = try GGUFArchitecture.of(description)
        var notes = [String]()
        if let moe = description.moeLayerIndices.first.flatMap({ description.layers[$0].moe }), moe.router.normalizeTopK != architecture.renormalizesTopK {
            notes.append("llama.cpp's \(architecture.name) graph \(architecture.renormalizesTopK ? "renormalises" : "does not renormalise") the top-\(moe.topK) routing weights but this model \(moe.router.normalizeTopK ? "does" : "does not"); its outputs will differ from MoEKit's")
        }

        if description.family == .deepseekV3, description.rope.kind == "yarn", let all = description.rope.mscaleAllDim,
           (description.rope.mscale ?? 1) != (all != 1 ? all : 1) {
            notes.append("llama.cpp's deepseek2 takes YaRN's mscale to be mscale_all_dim (\(all)) when that is not 1, but this model's mscale is \(description.rope.mscale ?? 1): its rotary scaling, and so its outputs, will differ from MoEKit's")
        }
        if let moe = description.moeLayerIndices.first.flatMap({ description.layers[$0].moe }),
           case let .clampedSwiGLU(alpha, limit) = moe.expertFunction.activation, alpha != 1.702 || limit != 7 {
            notes.append("llama.cpp's gpt-oss graph clamps its SwiGLU with alpha 1.702 and limit 7 (it reads no key for them); this model's alpha is \(alpha) and limit \(limit), so its outputs will differ from MoEKit's")
        }
        if description.rope.kind == "yarn", description.rope.truncate == false {
            notes.append("llama.cpp rounds YaRN's correction range to whole dimensions (it reads no truncate key); this model's rope_parameters say truncate false, so its rotary frequencies differ slightly from MoEKit's")
        }
        if let count = description.predictionLayers?.count, count > 0 {
            notes.append(GGUFExporter.predictionLayerNote(count))
        }

        var writer = GGUFWriter()
        try writer.set("general.architecture", .string(architecture.name))
        try writer.set("general.name", .string(plan.name))
        try writer.set("general.quantization_version", .uint32(2))
        let denseWidth = try store.file("config.json").flatMap { try HFConfig.load($0, file: "config.json").intermediateSize }
        for (key, value) in architecture.hyperParameters(description, expertCount: kept, denseWidth: denseWidth) {
            try writer.set(key, value)
        }
        guard let tokenizer = try store.file("tokenizer.json") else { throw GGUFExportError.unsupportedTokenizer("the store holds no tokenizer.json") }
        for (key, value) in try GGUFTokenizerMetadata.entries(tokenizerJSON: tokenizer, tokenizerConfig: try store.file("tokenizer_config.json"),
                                                             vocabularySize: description.vocabularySize, description: description) {
            try writer.set(key, value)
        }

        var choices = [GGUFTypeChoice]()
        try addDenseTensors(to: &writer, description: description, plan: plan, architecture: architecture, choices: &choices)
        try addExpertTensors(to: &writer, description: description, plan: plan, choices: &choices)
        // `general.file_type` (llama_ftype) names the type most expert tensors have; llama.cpp only prints it.
        var expertTypes = [String: Int]()
        for c in choices where c.tensor.hasSuffix("_exps.weight") { expertTypes[c.type, default: 0] += 1 }
        let fileTypes = ["f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q8_0": 7, "q4_K": 14, "bf16": 32]
        if let main = expertTypes.max(by: { ($0.value, $1.key) < ($1.value, $0.key) })?.key, let fileType = fileTypes[main] {
            try writer.set("general.file_type", .uint32(UInt32(fileType)))
        }
        try writer.write(to: file)
        let size = (try? FileManager.default.attributesOfItem(atPath: file.path)[.size] as? Int) ?? 0
        return GGUFExportSummary(file: file.path, architecture: architecture.name, plan: plan.name, expertsPerLayer: kept,
                                 tensors: writer.tensorCount, tensorBytes: writer.tensorBytes, fileBytes: size ?? 0,
                                 choices: choices, notes: notes)
    }

    /// llama.cpp runs no multi-token-prediction block (it only loads one for speculative
    /// decoding), and one kept whole would not fit the plan's single expert_count.
    static func predictionLayerNote(_ count: Int) -> String {
        "the \(count) multi-token-prediction layer\(count == 1 ? " is" : "s are") left out (block_count is num_hidden_layers, no nextn_predict_layers): llama.cpp runs every block it is given, and the layer's experts are not in the plan"
    }

    // MARK: Dense tensors

    private func addDenseTensors(to writer: inout GGUFWriter, description: ModelDescription, plan: CompressionPlan,
                                 architecture: GGUFArchitecture, choices: inout [GGUFTypeChoice]) throws {
        let dense = try StoreTensorProvider(store: store)
        let names = description.names
        let routerRows = PlanExporter.routerRows(plan, description: description)
        let quantization = plan.denseQuantization
        let quantized = Set(quantization?.tensors ?? [])
        let a = description.attention
        for spec in description.tensorInventory where spec.expert == nil && dense.contains(spec.name) {
            let layer = TensorNames.layerIndex(of: spec.name) ?? -1
            if let latent = a.latent, spec.name == names.attention(layer, "kv_b_proj.weight") {
                try addLatentKeyValueSplit(spec.name, layer: layer, latent: latent, description: description, dense: dense,
                                           quantization: quantized.contains(spec.name) ? quantization : nil, to: &writer, choices: &choices)
                continue
            }
            guard let name = architecture.tensorName(spec.name, names: names) else {
                throw GGUFExportError.unsupportedTensor(spec.name, architecture: architecture.name)
            }
            let layout = try dense.layout(spec.name)
            var shape = layout.shape
            if let rows = routerRows[spec.name] { shape[0] = rows.count }
            // Row order for llama's interleaved RoPE (q and k of Mixtral); nil: as stored.
            var rowOrder: [Int]?
            if let latent = a.latent {
                // deepseek2 rotates adjacent pairs: a halves-rotating checkpoint's rope rows are reordered.
                if [names.attention(layer, "q_b_proj.weight"), names.attention(layer, "q_proj.weight")].contains(spec.name) {
                    rowOrder = GGUFLatentAttention.ropeRowOrder(rows: shape[0], headDim: a.queryKeyHeadDim, ropeDim: latent.ropeHeadDim, interleaved: description.rope.interleaved)
                } else if spec.name == names.attention(layer, "kv_a_proj_with_mqa.weight") {
                    rowOrder = GGUFLatentAttention.ropeRowOrder(rows: shape[0], headDim: shape[0], ropeDim: latent.ropeHeadDim, interleaved: description.rope.interleaved)
                }
            } else if architecture.permutesQueryKey {
                if spec.name == names.attention(TensorNames.layerIndex(of: spec.name) ?? -1, "q_proj.weight") {
                    rowOrder = GGUFArchitecture.interleavedRopeRows(rows: shape[0], heads: a.headCount)
                } else if spec.name == names.attention(TensorNames.layerIndex(of: spec.name) ?? -1, "k_proj.weight") {
                    rowOrder = GGUFArchitecture.interleavedRopeRows(rows: shape[0], heads: a.keyValueHeadCount)
                }
            }
            let dimensions = Array(shape.reversed())
            let source: GGUFWriter.Source
            let choice: GGUFTypeChoice
            let tensorType: GGMLType
            if quantized.contains(spec.name), let quantization {
                let variant = quantization.variant
                let format = try QuantizationFormat(bits: quantization.bits, groupSize: quantization.groupSize)
                let type = GGUFTensorEncoding.type(for: [.codes(format)])
                tensorType = type
                choice = GGUFTypeChoice(tensor: name, type: type.description, from: format.description, exact: GGUFTensorEncoding.isExact([.codes(format)], as: type))
                source = { [store] emit in
                    guard let bytes = try store.denseVariant(spec.name, variant: variant) else {
                        throw StoreError.missingRecord(path: store.path, record: "dense variant '\(ExpertStore.denseVariantKey(spec.name, variant: variant))'")
                    }
                    let matrix: QuantizedMatrix
                    do { matrix = try QuantizedMatrix(decoding: bytes) } catch {
                        throw StoreError.corruptRecord(path: store.path, record: "dense variant '\(spec.name)'", reason: "\(error)")
                    }
                    let encoded = GGUFTensorEncoding.encode(.quantized(matrix), as: type)
                    try GGUFTensorEncoding.emit(encoded, rowOrder: rowOrder, rows: matrix.rows, emit)
                }
            } else {
                // Norms, biases and routers in F32 (exact); 2-D weights in their stored type.
                let keepsStoredType = shape.count == 2 && routerRows[spec.name] == nil
                let storedType = GGUFTensorEncoding.floatType(layout.dtype)
                let type: GGMLType = keepsStoredType && !widensFloats ? storedType ?? .f32 : .f32
                tensorType = type
                choice = GGUFTypeChoice(tensor: name, type: type.description, from: layout.dtype.rawValue.lowercased(), exact: true)
                let rows = routerRows[spec.name]
                source = { emit in
                    let encoded: [UInt8]
                    if type == storedType, rows == nil {
                        encoded = try dense.withVerifiedBytes(spec.name) { bytes, _ in Array(bytes) }
                    } else {
                        let m = try dense.matrix(spec.name)
                        // A router's rows, or a correction bias's entries (one per expert).
                        let width = layout.shape.count == 1 ? 1 : m.columns
                        let values = rows.map { $0.flatMap { r in m.values[(r * width)..<((r + 1) * width)] } } ?? m.values
                        encoded = GGMLBlockEncoder.encode(values, as: type)
                    }
                    try GGUFTensorEncoding.emit(encoded, rowOrder: rowOrder, rows: shape.count == 2 ? shape[0] : 1, emit)
                }
            }
            try writer.addTensor(name, type: tensorType, dimensions: dimensions, source: source)
            choices.append(choice)
        }
    }

    /// `kv_b_proj` as deepseek2's `attn_k_b` and `attn_v_b` (GGUFLatentAttention): stored
    /// floats keep their type; a plan's quantized kv_b_proj is written dequantized in F32
    /// (exact), since the split rows are no longer the quantization's groups.
    private func addLatentKeyValueSplit(_ tensor: String, layer l: Int, latent: LatentAttentionDescription, description: ModelDescription,
                                        dense: StoreTensorProvider, quantization: DenseQuantization?,
                                        to writer: inout GGUFWriter, choices: inout [GGUFTypeChoice]) throws {
        let layout = try dense.layout(tensor)
        let (heads, nope, v, rank) = (description.attention.headCount, latent.noPositionHeadDim, description.attention.valueHeadDim, latent.keyValueLoraRank)
        guard layout.shape == [heads * (nope + v), rank] else {
            throw CheckpointError.wrongShape(file: store.path, tensor: tensor, expected: [heads * (nope + v), rank], actual: layout.shape)
        }
        let type: GGMLType = quantization == nil ? GGUFTensorEncoding.floatType(layout.dtype) ?? .f32 : .f32
        let from = quantization.map { "\($0.bits)-bit/g\($0.groupSize)" } ?? layout.dtype.rawValue.lowercased()
        // Both halves come from one read, held (as LayerRecords holds a layer) until the second is written.
        let held = HeldSplit()
        let read: () throws -> GGUFLatentAttention.Split = { [store] in
            if let done = held.split { return done }
            let bytes: [UInt8]
            if let quantization {
                let provider = try PlanTensorProvider(store: store, quantization: quantization)
                bytes = GGMLBlockEncoder.encode(try provider.matrix(tensor).values, as: .f32)
            } else if type == GGUFTensorEncoding.floatType(layout.dtype) {
                bytes = try dense.withVerifiedBytes(tensor) { raw, _ in Array(raw) }
            } else {
                bytes = GGMLBlockEncoder.encode(try dense.matrix(tensor).values, as: .f32)
            }
            let result = GGUFLatentAttention.split(bytes, elementBytes: type.blockBytes, heads: heads, noPositionDim: nope, valueDim: v, rank: rank)
            held.split = result
            return result
        }
        let dimensions = GGUFLatentAttention.dimensions(heads: heads, noPositionDim: nope, valueDim: v, rank: rank)
        try writer.addTensor("blk.\(l).attn_k_b.weight", type: type, dimensions: dimensions.keys) { emit in
            try read().keys.withUnsafeBytes { try emit($0) }
        }
        try writer.addTensor("blk.\(l).attn_v_b.weight", type: type, dimensions: dimensions.values) { emit in
            try read().values.withUnsafeBytes { try emit($0) }
            held.split = nil
        }
        for name in ["blk.\(l).attn_k_b.weight", "blk.\(l).attn_v_b.weight"] {
            choices.append(GGUFTypeChoice(tensor: name, type: type.description, from: from, exact: true))
        }
    }

    // MARK: Expert tensors

    private func addExpertTensors(to writer: inout GGUFWriter, description: ModelDescription, plan: CompressionPlan,
                                  choices: inout [GGUFTypeChoice]) throws {
        let h = description.hiddenSize
        let layerRecords = LayerRecords(store: store)
        for l in description.moeLayerIndices {
            let layer = plan.layers[l]!
            let keys = layer.expertMap.survivingExperts.map { expert -> ExpertKey in
                let record = layer.slots[layer.expertMap.slotOfExpert[expert]!].record
                return ExpertKey(layer: l, expert: record.expert, variant: ExpertVariant(rawValue: record.variant))
            }
            // The forms of this layer's experts, read once to choose each projection's type.
            var forms = [[GGUFTensorEncoding.Form]](repeating: [], count: 3)
            for key in keys {
                let record = try layerRecords.read(key)
                for p in 0..<3 { forms[p].append(try GGUFTensorEncoding.form(of: record, projection: p, store: store)) }
            }
            let moe = description.layers[l].moe!
            let f = moe.expertIntermediateSize
            for (p, projection) in Projection.allCases.enumerated() {
                let distinct = Array(Set(forms[p]))
                let planType = expertType == .q4_K ? .q4_K : GGUFTensorEncoding.type(for: distinct)
                let type = widensFloats && [.bf16, .f16].contains(planType) ? .f32 : planType
                let name = GGUFArchitecture.expertTensorName(layer: l, projection)
                let (rows, columns) = projection == .down ? (h, f) : (f, h)
                guard columns % type.blockSize == 0 else {
                    throw GGUFExportError.rowsNotWholeBlocks(tensor: name, columns: columns, type: type.description, blockSize: type.blockSize)
                }
                choices.append(GGUFTypeChoice(tensor: name, type: type.description,
                                              from: distinct.map(\.description).sorted().joined(separator: " + "),
                                              exact: GGUFTensorEncoding.isExact(distinct, as: type)))
                try writer.addTensor(name, type: type, dimensions: [columns, rows, keys.count]) { [store] emit in
                    for key in keys {
                        let record = try layerRecords.layer(l, keys: keys)[key]!
                        let payload = try GGUFTensorEncoding.payload(of: record, projection: p, store: store)
                        let encoded = GGUFTensorEncoding.encode(payload, as: type)
                        try encoded.withUnsafeBytes { try emit($0) }
                    }
                    if p == 2 && !moe.expertFunction.hasBias { layerRecords.release() }
                }
            }
            guard moe.expertFunction.hasBias else { continue }
            // gpt-oss's expert biases, one F32 row per kept expert.
            for (p, projection) in Projection.allCases.enumerated() {
                let name = GGUFArchitecture.expertBiasName(layer: l, projection)
                let rows = projection == .down ? h : f
                try writer.addTensor(name, type: .f32, dimensions: [rows, keys.count]) { [store] emit in
                    for key in keys {
                        let record = try layerRecords.layer(l, keys: keys)[key]!
                        let values = try GGUFTensorEncoding.bias(of: record, projection: p, store: store)
                        try GGMLBlockEncoder.encode(values, as: .f32).withUnsafeBytes { try emit($0) }
                    }
                    if p == 2 { layerRecords.release() }
                }
                choices.append(GGUFTypeChoice(tensor: name, type: "f32", from: forms[p].first?.description ?? "f32", exact: true))
            }
        }
    }
}

/// kv_b_proj's split halves, held between writing attn_k_b and attn_v_b (the writer runs the sources in order, on one thread).
final class HeldSplit {
    var split: GGUFLatentAttention.Split?
}

/// One layer's expert records, held while the writer writes that layer's three stacked tensors (GGUF and MLX exports).
final class LayerRecords {
    let store: ExpertStore
    private var held: (layer: Int, records: [ExpertKey: ExpertRecord])?

    init(store: ExpertStore) { self.store = store }

    func read(_ key: ExpertKey) throws -> ExpertRecord {
        guard let record = try store.expertRecord(key) else {
            throw StoreError.missingRecord(path: store.path, record: "expert record (\(key))")
        }
        return record
    }

    func layer(_ l: Int, keys: [ExpertKey]) throws -> [ExpertKey: ExpertRecord] {
        if let held, held.layer == l { return held.records }
        held = nil
        var records = [ExpertKey: ExpertRecord]()
        for key in keys where records[key] == nil { records[key] = try read(key) }
        held = (l, records)
        return records
    }

    func release() { held = nil }
}


/// What one tensor of the GGUF file was written as, and from what.
public struct GGUFTypeChoice: Sendable, Codable, Equatable {
    public var tensor: String
    /// The ggml type (`bf16`, `q4_1`…).
    public var type: String
    /// The plan's form of the weights: a stored dtype (`bf16`) or a quantization format (`4-bit/g32`), `+`-joined when experts differ.
    public var from: String
    /// Whether llama.cpp dequantizes the tensor to exactly the plan's weights.
    public var exact: Bool
}

public struct GGUFExportSummary: Sendable, Codable, Equatable {
    public var file: String
    public var architecture: String
    public var plan: String
    public var expertsPerLayer: Int
    public var tensors: Int
    public var tensorBytes: Int
    public var fileBytes: Int
    public var choices: [GGUFTypeChoice]
    public var notes: [String]

    /// One line per distinct (type, source, exactness), with its tensor count.
    public var choiceLines: [String] {
        var counts = [String: Int]()
        for c in choices { counts["\(c.type) from \(c.from)\(c.exact ? " (exact)" : " (requantized: not exact)")", default: 0] += 1 }
        return counts.sorted { $0.key < $1.key }.map { "\($0.value) tensor\($0.value == 1 ? "" : "s"): \($0.key)" }
    }
}

public enum GGUFExportError: Error, CustomStringConvertible, Equatable {
    case unsupportedFamily(String, reason: String)
    case unsupportedTensor(String, architecture: String)
    case unsupportedTokenizer(String)
    case unsupportedExpert(String)
    case rowsNotWholeBlocks(tensor: String, columns: Int, type: String, blockSize: Int)

    public var description: String {
        switch self {
        case let .unsupportedFamily(family, reason): return "GGUF export: model_type '\(family)' is not supported: \(reason)"
        case let .unsupportedTensor(name, architecture): return "GGUF export: tensor '\(name)' has no place in llama.cpp's \(architecture) graph"
        case let .unsupportedTokenizer(reason): return "GGUF export: unsupported tokenizer: \(reason)"
        case let .unsupportedExpert(reason): return "GGUF export: \(reason)"
        case let .rowsNotWholeBlocks(tensor, columns, type, blockSize):
            return "GGUF export: tensor '\(tensor)' has rows of \(columns) values, not a whole number of \(type) blocks of \(blockSize)"
        }
    }
}
