import ExpertStore
import Foundation
import MoE

/// Writes a plan as a checkpoint folder that mlx-lm loads as a quantized model, without
/// dequantizing: each MoE layer's kept experts stacked per projection as mlx-lm's
/// `SwitchGLU` holds them (`<moe module>.switch_mlp.{gate,up,down}_proj`), codes in MLX's
/// affine layout (`weight` uint32, `scales`, `biases`; see `MLXAffineTensor`), and
/// `config.json` with `quantization` (and its alias `quantization_config`): the most common
/// `group_size`/`bits` and an entry for every module that differs, which is how mlx-lm
/// quantizes each module as its tensors say.
///
/// Lossless whenever a stack's experts are all codes: equal formats keep their words, scales
/// and minimums; narrower or coarser ones are re-encoded exactly into the stack's widest
/// width and finest group. A stack whose experts are all stored floats of one dtype keeps
/// their bytes. A stack mixing floats and codes (a plan that left some experts unquantized)
/// is written in the imported float dtype, dequantized and rounded, and the summary says so.
/// Dense tensors follow the plan's dense quantization the same way; the rest keep their bytes.
///
/// As for the other exports, novices and unequal expert counts per layer are refused, and
/// memory stays near one layer's experts.
public struct MLXExporter {
    public let store: ExpertStore
    public let maxShardBytes: Int

    public init(store: ExpertStore, maxShardBytes: Int = ShardedSafetensorsWriter.defaultMaxShardBytes) {
        self.store = store
        self.maxShardBytes = maxShardBytes
    }

    public func export(plan: CompressionPlan, to directory: URL) throws -> ExportSummary {
        let description = try store.modelDescription()
        let kept = try PlanExporter.uniformExpertCount(plan, description: description, fingerprint: try store.fingerprint())
        try PlanExporter.refuseShrunk(plan, format: "MLX")
        if description.names.expertLayout == .fusedInterleavedGateUp {
            // mlx-lm's gpt_oss stacks experts with their biases under its own names; not written here.
            throw PlanError.invalid(plan: plan.name, reason: "MLX export of gpt-oss (biased experts in mlx-lm's own gpt_oss layout) is not implemented; use --format hf")
        }
        let fm = FileManager.default
        if let existing = try? fm.contentsOfDirectory(atPath: directory.path), !existing.isEmpty {
            throw StoreError.outputNotEmpty(path: directory.path)
        }
        try fm.createDirectory(at: directory, withIntermediateDirectories: true)

        var writer = ShardedSafetensorsWriter(maxShardBytes: maxShardBytes)
        var modules = [String: QuantizationFormat]()   // module path → its (bits, group size)
        var tally = [String: Int]()                      // summary line → tensors
        try PlanExporter.addDenseTensors(to: &writer, plan: plan, description: description, store: store) { writer, name, layout, quantization in
            let module = String(name.dropLast(".weight".count))
            let format = try QuantizationFormat(bits: quantization.bits, groupSize: quantization.groupSize)
            modules[module] = format
            tally["dense tensors: \(format) codes as stored (exact)", default: 0] += 1
            Self.addQuantized(&writer, module: module, experts: nil, rows: layout.shape[0], columns: layout.shape.dropFirst().reduce(1, *),
                              format: format) { [store] in
                [MLXAffineTensor(try PlanExporter.quantizedDense(name, variant: quantization.variant, store: store),
                                 bits: format.bits, groupSize: format.groupSize)]
            }
        }
        try addExperts(to: &writer, plan: plan, description: description, modules: &modules, tally: &tally)

        var files = [String]()
        for name in try store.fileNames() {
            guard var data = try store.file(name) else { continue }
            if name == "config.json" { data = try Self.config(data, expertCount: kept, modules: modules) }
            let target = directory.appendingPathComponent(name)
            do { try data.write(to: target, options: .atomic) } catch {
                throw SafetensorsWriterError.cannotWrite(file: target.path, reason: error.localizedDescription)
            }
            files.append(name)
        }
        files += try writer.write(to: directory)
        let notes = tally.sorted { $0.key < $1.key }.map { "\($0.value) tensor\($0.value == 1 ? "" : "s"): \($0.key)" }
        return ExportSummary(files: files.sorted(), tensors: writer.tensorCount, tensorBytes: writer.totalBytes, notes: notes)
    }

    /// mlx-lm's name for a stacked projection of layer `l`.
    static func stackName(_ names: TensorNames, layer l: Int, _ projection: Projection) -> String {
        names.layer(l) + names.moeModule + ".switch_mlp." + projection.rawValue + "_proj"
    }

    /// Each layer's records are read when the writer reaches the layer; `LayerRecords` holds one layer at a time.
    private func addExperts(to writer: inout ShardedSafetensorsWriter, plan: CompressionPlan, description: ModelDescription,
                            modules: inout [String: QuantizationFormat], tally: inout [String: Int]) throws {
        let records = LayerRecords(store: store)
        let h = description.hiddenSize
        for l in description.moeLayerIndices {
            let layer = plan.layers[l]!
            let keys = layer.expertMap.survivingExperts.map { expert -> ExpertKey in
                let record = layer.slots[layer.expertMap.slotOfExpert[expert]!].record
                return ExpertKey(layer: l, expert: record.expert, variant: ExpertVariant(rawValue: record.variant))
            }
            guard let original = try store.expertRecord(ExpertKey(layer: l, expert: 0)) else {   // the imported dtype
                throw StoreError.missingRecord(path: store.path, record: "expert record (\(ExpertKey(layer: l, expert: 0)))")
            }
            var forms = [[GGUFTensorEncoding.Form]](repeating: [], count: 3)
            for key in keys {
                let record = try records.read(key)
                for p in 0..<3 { forms[p].append(try GGUFTensorEncoding.form(of: record, projection: p, store: store)) }
            }
            let f = description.layers[l].moe!.expertIntermediateSize
            for (p, projection) in Projection.allCases.enumerated() {
                let module = Self.stackName(description.names, layer: l, projection)
                let (rows, columns) = projection == .down ? (h, f) : (f, h)
                let codes = forms[p].compactMap { form -> QuantizationFormat? in if case let .codes(format) = form { format } else { nil } }
                let floats = Set(forms[p].compactMap { form -> DType? in if case let .float(dtype) = form { dtype } else { nil } })
                let payload = { [store] (key: ExpertKey) in try GGUFTensorEncoding.payload(of: records.layer(l, keys: keys)[key]!, projection: p, store: store) }
                if floats.isEmpty {
                    // All codes: the widest width and the finest group of the stack, exactly.
                    let format = try QuantizationFormat(bits: codes.map(\.bits).max()!, groupSize: codes.map(\.groupSize).min()!)
                    guard codes.allSatisfy({ $0.groupSize % format.groupSize == 0 }) else {
                        throw PlanError.invalid(plan: plan.name, reason: "layer \(l) \(projection) mixes group sizes \(Set(codes.map(\.groupSize)).sorted()) that do not nest; MLX holds one per stacked tensor")
                    }
                    modules[module] = format
                    let reencoded = Set(codes).count > 1 || codes[0] != format
                    tally["experts: \(Set(codes).map(\.description).sorted().joined(separator: " + ")) codes \(reencoded ? "re-encoded as \(format)" : "as stored")", default: 0] += 1
                    Self.addQuantized(&writer, module: module, experts: keys.count, rows: rows, columns: columns, format: format) {
                        return try keys.map { key in
                            guard case let .quantized(matrix) = try payload(key) else { preconditionFailure("forms were read from these records") }
                            return MLXAffineTensor(matrix, bits: format.bits, groupSize: format.groupSize)
                        }
                    }
                } else {
                    // Floats of one dtype keep their bytes; a mix is rounded into the imported dtype.
                    let dtype = floats.count == 1 && codes.isEmpty ? floats.first! : PlanExporter.exportDType(original.tensors[p].dtype)
                    tally[codes.isEmpty && floats.count == 1 ? "experts: \(dtype.rawValue.lowercased()) as stored"
                          : "experts: \((floats.map { $0.rawValue.lowercased() } + Set(codes).map(\.description)).sorted().joined(separator: " + ")) written as \(dtype.rawValue.lowercased()) (not exact: codes dequantized and rounded)", default: 0] += 1
                    writer.add(module + ".weight", dtype: dtype, shape: [keys.count, rows, columns]) { emit in
                        for key in keys {
                            switch try payload(key) {
                            case let .float(stored, bytes) where stored == dtype: try bytes.withUnsafeBytes { try emit($0) }
                            case let .float(stored, bytes):
                                let values = GGMLBlockEncoder.decode(bytes, as: GGUFTensorEncoding.floatType(stored)!, count: rows * columns)
                                try FloatEncoding.bytes(values, as: dtype).withUnsafeBytes { try emit($0) }
                            case let .quantized(matrix):
                                try FloatEncoding.bytes(matrix.dequantized().values, as: dtype).withUnsafeBytes { try emit($0) }
                            }
                        }
                    }
                }
            }
        }
    }

    /// `module.weight`, `.scales` and `.biases` of one `[rows, columns]` matrix (`experts` nil)
    /// or a stack of them. Each is built by `build` when the writer reaches it: safetensors
    /// orders tensors by dtype before name, so the three are far apart in a shard, and
    /// building each on its own keeps memory at one module's codes.
    private static func addQuantized(_ writer: inout ShardedSafetensorsWriter, module: String, experts: Int?, rows: Int, columns: Int,
                                     format: QuantizationFormat, build: @escaping () throws -> [MLXAffineTensor]) {
        let lead: [Int] = experts.map { [$0] } ?? []
        let groups = columns / format.groupSize
        let wordShape: [Int] = lead + [rows, columns * format.bits / 32]
        let groupShape: [Int] = lead + [rows, groups]
        writer.add(module + ".weight", dtype: .u32, shape: wordShape) { emit in
            for tensor in try build() { try tensor.words.withUnsafeBytes { try emit($0) } }
        }
        writer.add(module + ".scales", dtype: .f16, shape: groupShape) { emit in
            for tensor in try build() { try tensor.scales.withUnsafeBytes { try emit($0) } }
        }
        writer.add(module + ".biases", dtype: .f16, shape: groupShape) { emit in
            for tensor in try build() { try tensor.biases.withUnsafeBytes { try emit($0) } }
        }
    }

    /// config.json with the new expert count, every key spelling (`ExportConfig`), and mlx-lm's
    /// `quantization`: the format most modules have, and each module that differs by path.
    static func config(_ data: Data, expertCount: Int, modules: [String: QuantizationFormat]) throws -> Data {
        let rewritten = try ExportConfig.rewrite(data, expertCount: expertCount)
        guard !modules.isEmpty else { return rewritten }
        var counts = [QuantizationFormat: Int]()
        for format in modules.values { counts[format, default: 0] += 1 }
        let main = counts.max { ($0.value, $1.key.bits, $1.key.groupSize) < ($1.value, $0.key.bits, $0.key.groupSize) }!.key
        func entry(_ format: QuantizationFormat) -> String { "\"group_size\": \(format.groupSize), \"bits\": \(format.bits)" }
        let overrides = modules.filter { $0.value != main }.sorted { $0.key < $1.key }
            .map { ", \(SafetensorsWriter.quoted($0.key)): {\(entry($0.value))}" }.joined()
        let raw = "{\(entry(main))\(overrides)}"
        var document = try JSONText(rewritten, file: "config.json")
        document.set("quantization", raw: raw)
        document.set("quantization_config", raw: raw)
        return Data(document.text.utf8)
    }
}
