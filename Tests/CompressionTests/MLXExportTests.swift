import Foundation
import XCTest
@testable import Compression
@testable import ExpertStore
@testable import MoE

/// MLX exports of the default model (qwen3_moe, BF16) and its plans, read back with MLX's own
/// rules written here: codes as a least-significant-bit-first stream of uint32 words per row,
/// `w = scale·q + bias` with f16 scales and biases per group.
final class MLXExportTests: DefaultModelStoreCase {
    func export(_ plan: CompressionPlan) throws -> (ExportSummary, SafetensorsFile, [String: Any]) {
        let out = directory.appendingPathComponent("mlx-\(plan.name)")
        let summary = try MLXExporter(store: store).export(plan: plan, to: out)
        let config = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("config.json"))) as? [String: Any])
        return (summary, try SafetensorsFile(url: out.appendingPathComponent("model.safetensors")), config)
    }

    /// Expert `e` of a stacked MLX module dequantized by MLX's rule.
    func mlxDequantized(_ file: SafetensorsFile, module: String, expert e: Int, bits: Int, groupSize: Int) throws -> [Float] {
        let shape = try file.info(module + ".weight").shape.suffix(2)   // [experts,] rows, words per row
        let (rows, wordsPerRow) = (shape.first!, shape.last!)
        let columns = wordsPerRow * 32 / bits
        let words = try file.rawBytes(module + ".weight")
        let scales = try file.rawBytes(module + ".scales"), biases = try file.rawBytes(module + ".biases")
        let groups = columns / groupSize
        func word(_ i: Int) -> UInt64 { UInt64(words.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)) }
        func half(_ buffer: UnsafeRawBufferPointer, _ i: Int) -> Float { Float(Float16(bitPattern: buffer.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
        var out = [Float]()
        for r in 0..<rows {
            let rowWord = (e * rows + r) * wordsPerRow
            for c in 0..<columns {
                let bit = c * bits
                let window = (word(rowWord + bit / 32) | (bit % 32 + bits > 32 ? word(rowWord + bit / 32 + 1) << 32 : 0)) >> UInt64(bit % 32)
                let q = Float(window & ((1 << UInt64(bits)) - 1))
                let g = (e * rows + r) * groups + c / groupSize
                out.append(half(scales, g) * q + half(biases, g))
            }
        }
        return out
    }

    func testPrunedFourBitPlanKeepsItsCodes() throws {
        let plan = try slim("reap50q4") { $0.prune = .reap; $0.keepFraction = 0.5; $0.uniformBits = 4; $0.groupSize = 32 }
        let (summary, file, config) = try export(plan)
        XCTAssertEqual(config["num_experts"] as? Int, 16)
        let quantization = try XCTUnwrap(config["quantization"] as? [String: Any])
        XCTAssertEqual(quantization.count, 2, "one format for every module: no per-module entries")
        XCTAssertEqual(quantization["bits"] as? Int, 4)
        XCTAssertEqual(quantization["group_size"] as? Int, 32)
        XCTAssertEqual((config["quantization_config"] as? [String: Any])?["bits"] as? Int, 4)
        XCTAssertEqual(summary.notes, ["12 tensors: experts: 4-bit/g32 codes as stored"])
        XCTAssertFalse(file.tensors.keys.contains { $0.contains(".experts.") }, "experts are stacked, not per expert")

        let provider = try StoreVariantProvider(store: store)
        let description = try store.modelDescription()
        for l in description.moeLayerIndices {
            let layer = plan.layers[l]!
            for (p, projection) in Projection.allCases.enumerated() {
                let module = "model.layers.\(l).mlp.switch_mlp.\(projection.rawValue)_proj"
                XCTAssertEqual(try file.info(module + ".weight").dtype, .u32)
                XCTAssertEqual(try file.info(module + ".weight").shape, [16, 256, 256 * 4 / 32])
                XCTAssertEqual(try file.info(module + ".scales").shape, [16, 256, 256 / 32])
                XCTAssertEqual(try file.info(module + ".biases").dtype, .f16)
                for (e, expert) in layer.expertMap.survivingExperts.enumerated() {
                    let record = layer.slots[layer.expertMap.slotOfExpert[expert]!].record
                    let quantized = try XCTUnwrap(provider.expert(layer: l, expert: record.expert, variant: record.variant) as? QuantizedExpert)
                    let matrix = [quantized.gate, quantized.up, quantized.down][p]
                    let decoded = try mlxDequantized(file, module: module, expert: e, bits: 4, groupSize: 32)
                    XCTAssertEqual(decoded.map(\.bitPattern), matrix.dequantized().values.map(\.bitPattern), "layer \(l) expert \(expert) \(projection)")
                }
            }
        }
    }

    /// Experts of 2 and 4 bits share a 4-bit stack and the dense tensors are 8-bit: every weight
    /// still decodes to the plan's own, and config.json names the modules that differ.
    func testMixedWidthsAreReencodedExactlyAndListedPerModule() throws {
        let plan = try slim("mixed") { $0.averageBits = 3; $0.bitChoices = [2, 4]; $0.groupSize = 64; $0.denseBits = 8 }
        let (summary, file, config) = try export(plan)
        let quantization = try XCTUnwrap(config["quantization"] as? [String: Any])
        // mlx-lm reads a module's own entry, else the top-level format.
        func format(_ module: String) -> [String: Int]? {
            quantization[module] as? [String: Int]
                ?? (quantization["bits"] as? Int).map { ["bits": $0, "group_size": quantization["group_size"] as! Int] }
        }
        XCTAssertEqual(quantization.count, 2 + 12, "the dense modules are the most common format; each expert stack is listed")
        let denseTensors = try XCTUnwrap(plan.denseQuantization?.tensors)
        XCTAssertFalse(denseTensors.isEmpty)
        for name in denseTensors {
            XCTAssertEqual(format(String(name.dropLast(".weight".count))), ["bits": 8, "group_size": 64], name)
            let rows = try file.info(name).shape[0]
            XCTAssertEqual(try file.info(name).dtype, .u32, name)
            let values = try mlxDequantized(file, module: String(name.dropLast(".weight".count)), expert: 0, bits: 8, groupSize: 64)
            let reference = try PlanExporter.quantizedDense(name, variant: plan.denseQuantization!.variant, store: store).dequantized()
            XCTAssertEqual(values.count, rows * reference.columns)
            XCTAssertEqual(values.map(\.bitPattern), reference.values.map(\.bitPattern), name)
        }
        XCTAssertTrue(summary.notes.contains { $0.contains("re-encoded as 4-bit/g64") }, "\(summary.notes)")

        let provider = try StoreVariantProvider(store: store)
        var widths = Set<Int>()
        for l in try store.modelDescription().moeLayerIndices {
            let layer = plan.layers[l]!
            for (p, projection) in Projection.allCases.enumerated() {
                let module = "model.layers.\(l).mlp.switch_mlp.\(projection.rawValue)_proj"
                XCTAssertEqual(format(module), ["bits": 4, "group_size": 64], module)
                for (e, expert) in layer.expertMap.survivingExperts.enumerated() {
                    let record = layer.slots[layer.expertMap.slotOfExpert[expert]!].record
                    let quantized = try XCTUnwrap(provider.expert(layer: l, expert: record.expert, variant: record.variant) as? QuantizedExpert)
                    let matrix = [quantized.gate, quantized.up, quantized.down][p]
                    widths.insert(matrix.bits)
                    guard l == 0 else { continue }   // decoding every layer in a debug build takes minutes
                    let decoded = try mlxDequantized(file, module: module, expert: e, bits: 4, groupSize: 64)
                    XCTAssertEqual(decoded.map(\.bitPattern), matrix.dequantized().values.map(\.bitPattern), "layer \(l) expert \(expert) \(projection)")
                }
            }
        }
        XCTAssertEqual(widths, [2, 4], "the plan mixes both widths")
    }

    func testFullModelStacksTheStoredBytes() throws {
        let description = try store.modelDescription()
        let full = try CompressionPlan.full(description: description, fingerprint: store.fingerprint()!, expertBytes: 0)
        let (summary, file, config) = try export(full)
        XCTAssertNil(config["quantization"])
        XCTAssertEqual(summary.notes, ["12 tensors: experts: bf16 as stored"])
        let checkpoint = try CheckpointDirectory(url: Self.model)
        for l in description.moeLayerIndices {
            for projection in Projection.allCases {
                let stacked = try file.rawBytes("model.layers.\(l).mlp.switch_mlp.\(projection.rawValue)_proj.weight")
                var expected = [UInt8]()
                for e in 0..<32 { try checkpoint.tensorBytes(description.names.expert(l, e, projection)).withUnsafeBytes { expected += $0 } }
                XCTAssertTrue(stacked.elementsEqual(expected), "layer \(l) \(projection)")
            }
        }
    }

    /// A 2-bit row of one 64-wide group re-encoded as 4 bits in groups of 32, by hand.
    func testReencodingShiftsCodesAndDividesScales() throws {
        let codes = (0..<64).map { UInt8($0 % 4) }
        let scale = Float16(0.5).bitPattern, minimum = Float16(-1).bitPattern
        let matrix = try QuantizedMatrix(rows: 1, columns: 64, format: try QuantizationFormat(bits: 2, groupSize: 64),
                                         packed: BitPacking.pack(codes, bits: 2), scales: [scale], minimums: [minimum])
        let tensor = MLXAffineTensor(matrix, bits: 4, groupSize: 32)
        XCTAssertTrue(tensor.exact)
        // Codes 0,1,2,3 become 0,4,8,12: word 0 holds codes 0–7 as nibbles 0x0, 0x4, 0x8, 0xC, …
        XCTAssertEqual(tensor.words.count, 8)
        XCTAssertEqual(tensor.words[0], 0xC840_C840)
        XCTAssertEqual(tensor.scales, [Float16(0.125).bitPattern, Float16(0.125).bitPattern])
        XCTAssertEqual(tensor.biases, [minimum, minimum])
        // Dividing the smallest normal f16 leaves the normal range: rounded, and said so.
        let (divided, exact) = MLXAffineTensor.halfDividedByPowerOfTwo(0x0400, 3)
        XCTAssertEqual(Float(Float16(bitPattern: divided)), Float(Float16(bitPattern: 0x0400)) / 8)
        XCTAssertTrue(exact, "2^-14 / 8 is an f16 subnormal, still exact")
        XCTAssertFalse(MLXAffineTensor.halfDividedByPowerOfTwo(0x0001, 2).exact, "the smallest subnormal / 4 rounds")
    }
}
