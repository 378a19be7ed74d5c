import XCTest
@testable import Compression
@testable import ExpertStore
@testable import MoE

/// Compression of experts with biases and gpt-oss's clamped SwiGLU: quantized experts keep
/// the biases next to the codes and compute what their dequantized weights compute (checked
/// against `BiasedExpert`, the float gpt-oss expert the model runs); merging averages biases
/// with the weights' weights; neuron alignment moves gate and up biases with their neurons.
final class BiasedExpertCompressionTests: XCTestCase {
    let (hidden, intermediate) = (32, 32)
    let gating = ExpertFunction.Activation.clampedSwiGLU(alpha: 1.702, limit: 7)

    /// Deterministic values in [-scale, scale).
    func values(_ count: Int, seed: Int, scale: Float = 0.5) -> [Float] {
        var state = UInt64(seed) &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return (0..<count).map { _ in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return (Float(state >> 40) / Float(1 << 24) * 2 - 1) * scale
        }
    }

    func expert(seed: Int) -> FeedForward {
        let (d, f) = (hidden, intermediate)
        return FeedForward(gate: Matrix(rows: f, columns: d, values: values(f * d, seed: seed)),
                           up: Matrix(rows: f, columns: d, values: values(f * d, seed: seed + 1)),
                           down: Matrix(rows: d, columns: f, values: values(d * f, seed: seed + 2)),
                           biases: ExpertBiases(gate: values(f, seed: seed + 3), up: values(f, seed: seed + 4), down: values(d, seed: seed + 5)),
                           gating: gating)
    }

    /// The model's float gpt-oss expert over the same weights and biases: the reference.
    func reference(_ e: FeedForward) -> BiasedExpert {
        BiasedExpert(gate: e.gate, up: e.up, down: e.down, gateBias: e.biases!.gate, upBias: e.biases!.up,
                     downBias: e.biases!.down, activation: e.gating)
    }

    func input(rows: Int) -> Matrix { Matrix(rows: rows, columns: hidden, values: values(rows * hidden, seed: 99, scale: 2)) }

    func testFloatExpertWithBiasesIsTheModelsBiasedExpert() {
        let e = expert(seed: 1)
        for rows in [1, 12] {
            XCTAssertEqual(e.forward(input(rows: rows)).values, reference(e).forward(input(rows: rows)).values)
        }
    }

    func testQuantizedExpertWithBiasesComputesItsDequantizedWeights() throws {
        let saved = QuantizedMatrix.usesIntegerKernels
        QuantizedMatrix.usesIntegerKernels = false   // f32 activations: exact to rounding against the dequantized weights
        defer { QuantizedMatrix.usesIntegerKernels = saved }
        let e = expert(seed: 7)
        for bits in [2, 4, 8] {
            let q = try QuantizedExpert(quantizing: e, format: QuantizationFormat(bits: bits, groupSize: 32))
            XCTAssertEqual(q.biases, e.biases)
            let dequantized = q.dequantized()
            for rows in [1, 12] {
                let x = input(rows: rows)
                let expected = reference(dequantized).forward(x).values
                // f32 rounding only (one row goes through the fused gemv, not sgemm): 1e-5 of the output's scale.
                let tolerance = 1e-5 * max(1, expected.map(abs).max()!)
                XCTAssertLessThanOrEqual(maxAbsDifference(q.forward(x).values, expected), tolerance, "\(bits) bits, \(rows) rows")
            }
        }
        // 8 bits stays close to the float expert; the biases (not quantized) are what makes the output non-zero-mean.
        let q8 = try QuantizedExpert(quantizing: e, format: QuantizationFormat(bits: 8, groupSize: 32))
        let x = input(rows: 12)
        let full = e.forward(x).values
        XCTAssertLessThan(maxAbsDifference(q8.forward(x).values, full), 0.01 * full.map(abs).max()!)
    }

    func testQuantizedExpertWithoutItsBiasesDiffers() throws {
        // The biases matter: dropping them changes the output by far more than 8-bit rounding.
        let e = expert(seed: 11)
        let q = try QuantizedExpert(quantizing: e, format: QuantizationFormat(bits: 8, groupSize: 32))
        let unbiased = try QuantizedExpert(gate: q.gate, up: q.up, down: q.down, gating: q.gating)
        XCTAssertGreaterThan(maxAbsDifference(q.forward(input(rows: 4)).values, unbiased.forward(input(rows: 4)).values), 0.1)
    }

    func testQuantizedRecordHoldsTheBiasesInF32AfterTheCodes() throws {
        let e = expert(seed: 3)
        let q = try QuantizedExpert(quantizing: e, format: QuantizationFormat(bits: 4, groupSize: 32))
        let record = ExpertVariants.record(ExpertKey(layer: 1, expert: 2), quantized: q)
        XCTAssertEqual(record.tensors.count, 6)
        XCTAssertEqual(record.tensors[3...].map(\.shape), [[intermediate], [intermediate], [hidden]])
        XCTAssertEqual(record.tensors[3...].map(\.dtype), [.f32, .f32, .f32])
        for (i, bias) in e.biases!.all.enumerated() {
            XCTAssertEqual(record.payloads[3 + i].withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }, bias)
        }
        let merged = ExpertVariants.record(ExpertKey(layer: 1, expert: 2), merged: e)
        XCTAssertEqual(merged.tensors.map(\.shape), [[32, 32], [32, 32], [32, 32], [32], [32], [32]])
    }

    func testMergedBiasesAreTheWeightedMeans() throws {
        // Hand-computed: weights 1 and 3 normalise to 0.25 and 0.75.
        let zero = Matrix(zeros: 2, 2)
        let a = FeedForward(gate: zero, up: zero, down: zero, biases: ExpertBiases(gate: [1, 2], up: [4, 0], down: [-2, 8]), gating: gating)
        let b = FeedForward(gate: zero, up: zero, down: zero, biases: ExpertBiases(gate: [3, 6], up: [0, 4], down: [2, 0]), gating: gating)
        let merged = try ExpertMerging.weightedAverage([a, b], weights: [1, 3])
        XCTAssertEqual(merged.biases, ExpertBiases(gate: [2.5, 5], up: [1, 3], down: [1, 2]))
        XCTAssertEqual(merged.gating, gating)
        // Members with and without biases are not one function.
        let plain = FeedForward(gate: zero, up: zero, down: zero)
        XCTAssertThrowsError(try ExpertMerging.weightedAverage([a, plain], weights: [1, 1])) {
            XCTAssertEqual($0 as? MergingError, .functionMismatch)
        }
    }

    func testMergingIdenticalBiasedExpertsLeavesTheOutputUnchanged() throws {
        let e = expert(seed: 5)
        let x = input(rows: 6)
        for merged in [try ExpertMerging.weightedAverage([e, e], weights: [0.3, 0.7]),
                       try ExpertMerging.alignedAverage([e, e, e], weights: [1, 2, 5], anchor: 1)] {
            XCTAssertLessThanOrEqual(maxAbsDifference(merged.forward(x).values, e.forward(x).values), 1e-6)
        }
    }

    func testAlignmentMovesGateAndUpBiasesWithTheirNeurons() {
        // Permuting neurons leaves the function unchanged only if the biases move too.
        let e = expert(seed: 21)
        let permutation = (0..<intermediate).map { ($0 * 7 + 3) % intermediate }
        let permuted = NeuronAlignment.permuted(e, by: permutation)
        XCTAssertEqual(permuted.biases!.gate, permutation.map { e.biases!.gate[$0] })
        XCTAssertEqual(permuted.biases!.down, e.biases!.down)
        let x = input(rows: 5)
        XCTAssertLessThanOrEqual(maxAbsDifference(permuted.forward(x).values, e.forward(x).values), 1e-5)
    }
}
