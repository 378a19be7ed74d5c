import CBLAS
import CKernels
import Foundation
import MoE
import Routing

// Forward-pass benchmark: prefill and decode tokens/s of a random MoE of realistic layer
// shape (Qwen3-30B-A3B's: hidden 2048, 32 heads of 128, 4 KV heads, experts 768 wide, top-8),
// next to this machine's sgemm GFLOP/s measured in the same run; then several sequences
// decoding together (one forward pass per step) against one, and the small-batch product
// kernel against the OpenBLAS calls it replaces.
// Run: swift run -c release moekit-bench   (add `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE`
// in front to let OpenBLAS pick its AVX-512 kernels; the default keeps the machine's settings).

func seconds(_ body: () throws -> Void) rethrows -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    try body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

func best(of runs: Int, _ body: () throws -> Void) rethrows -> Double {
    var times = [Double]()
    for _ in 0..<runs { times.append(try seconds(body)) }
    return times.min()!
}

/// Deterministic pseudo-random tensors for any name, with the shapes the description asks for.
struct RandomTensors: TensorProvider {
    let shapes: [String: [Int]]
    var location: String { "random tensors" }
    func contains(_ name: String) -> Bool { shapes[name] != nil }
    func shape(_ name: String) throws -> [Int] {
        guard let s = shapes[name] else { throw CheckpointError.missingTensor(tensor: name, location: location) }
        return s
    }
    func halfMatrix(_ name: String) throws -> HalfMatrix? { nil }
    func matrix(_ name: String) throws -> Matrix {
        let shape = try shape(name)
        let count = shape.reduce(1, *)
        var state = UInt64(truncatingIfNeeded: name.hashValue) | 1
        let isNorm = name.hasSuffix("norm.weight") || name.contains("layernorm")
        let scale = 1 / Float(shape.last!).squareRoot()
        let values = (0..<count).map { _ -> Float in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            let u = Float(state >> 40) / Float(1 << 24) * 2 - 1
            return isNorm ? 1 + 0.1 * u : u * scale * 1.7
        }
        return Matrix(rows: shape.count == 1 ? 1 : shape[0], columns: shape.count == 1 ? shape[0] : shape.dropFirst().reduce(1, *), values: values)
    }
}

let hidden = 2048, experts = 32, topK = 8, expertWidth = 768, layers = 2, vocabulary = 16384
let moe = MoEDescription(router: RouterConfig(expertCount: experts, topK: topK, scoring: .softmax, normalizeTopK: true),
                         expertIntermediateSize: expertWidth, sharedExpert: nil)
let description = ModelDescription(
    family: .qwen3Moe, vocabularySize: vocabulary, hiddenSize: hidden, rmsNormEpsilon: 1e-6, tieWordEmbeddings: false,
    maxPositionEmbeddings: 4096,
    attention: AttentionDescription(headCount: 32, keyValueHeadCount: 4, queryKeyHeadDim: 128, valueHeadDim: 128,
                                    qkvBias: false, outputBias: false, qkNorm: .perHead, clipQKV: nil, slidingWindow: nil,
                                    latent: nil, softmaxScale: 1 / Float(128).squareRoot()),
    rope: RoPEDescription(theta: 1e6, dimensions: 128, interleaved: false, kind: "default"),
    layers: Array(repeating: .moe(moe), count: layers), names: TensorNames(), bosTokenID: nil, eosTokenIDs: [])

let shapes = Dictionary(uniqueKeysWithValues: description.tensorInventory.map { ($0.name, $0.shape) })
print("MoEKit forward benchmark (OpenBLAS core: \(String(cString: openblas_get_corename())), OPENBLAS_CORETYPE=\(ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] ?? "unset"))")
print("model: \(layers) MoE layers, hidden \(hidden), \(experts) experts x \(expertWidth) wide, top-\(topK), vocab \(vocabulary)")

// 1. The machine's dense baseline: sgemm 1024^3.
let n = 1024
let a = [Float](repeating: 0.5, count: n * n), b = [Float](repeating: 0.25, count: n * n)
var c = [Float](repeating: 0, count: n * n)
let sgemmTime = best(of: 5) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(n), Int32(n), Int32(n), 1, a, Int32(n), b, Int32(n), 0, &c, Int32(n))
}
let sgemmGFLOPs = 2 * pow(Double(n), 3) / sgemmTime / 1e9
print(String(format: "sgemm 1024^3:          %7.1f GFLOP/s", sgemmGFLOPs))

// Decode is bound by reading weights: the machine's f32 sgemv bandwidth over 64 MiB.
let gemvRows = 4096
let gemvMatrix = [Float](repeating: 0.01, count: gemvRows * gemvRows)
let gemvX = [Float](repeating: 1, count: gemvRows)
var gemvY = [Float](repeating: 0, count: gemvRows)
let gemvTime = best(of: 5) {
    cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(gemvRows), Int32(gemvRows), 1, gemvMatrix, Int32(gemvRows), gemvX, 1, 0, &gemvY, 1)
}
let gemvBandwidth = Double(gemvRows * gemvRows * 4) / gemvTime / 1e9
print(String(format: "sgemv 4096^2 (f32):    %7.1f GB/s of weights", gemvBandwidth))

// 2. The model.
let model = try MoEModel(description: description, tensors: RandomTensors(shapes: shapes))
let activeParameters = Double(layers * (4096 * hidden * 2 + 512 * hidden * 2) + layers * topK * 3 * hidden * expertWidth + layers * experts * hidden + vocabulary * hidden)
let prompt = (0..<128).map { ($0 * 7919) % vocabulary }

let prefillTime = try best(of: 3) { _ = try model.logits(prompt) }
let prefillRate = Double(prompt.count) / prefillTime
print(String(format: "prefill %d tokens:     %7.1f tokens/s  (%.1f GFLOP/s effective, %.2fx of sgemm)",
             prompt.count, prefillRate, prefillRate * 2 * activeParameters / 1e9, prefillRate * 2 * activeParameters / 1e9 / sgemmGFLOPs))

let decodeSteps = 32
let decodeTime = try best(of: 3) {
    var cache = model.makeCache()
    _ = try model.forward(Array(prompt.prefix(16)), cache: &cache)
    for step in 0..<decodeSteps { _ = try model.forward([step + 1], cache: &cache) }
} - (try best(of: 3) { var cache = model.makeCache(); _ = try model.forward(Array(prompt.prefix(16)), cache: &cache) })
let decodeRate = Double(decodeSteps) / decodeTime
print(String(format: "decode:                %7.1f tokens/s  (%.1f GFLOP/s effective, %.2fx of sgemm)",
             decodeRate, decodeRate * 2 * activeParameters / 1e9, decodeRate * 2 * activeParameters / 1e9 / sgemmGFLOPs))
let decodeBandwidth = decodeRate * activeParameters * 4 / 1e9
print(String(format: "decode weight traffic: %7.1f GB/s (%.2fx of sgemv bandwidth)", decodeBandwidth, decodeBandwidth / gemvBandwidth))
print(String(format: "active parameters per token: %.1f M", activeParameters / 1e6))

// 3. Sequences sharing decode steps: one forward pass advances every sequence by a token, so
// dense weights are read once per step and experts chosen by several sequences once.
print("sequences sharing a decode step (\(decodeSteps) steps after 16 prompt tokens each):")
var singleRate: Double?
for count in [1, 2, 4, 8] {
    let prompts = (0..<count).map { s in (0..<16).map { ($0 * 7919 + s * 104729) % vocabulary } }
    let prefill = try best(of: 3) { var caches = prompts.map { _ in model.makeCache() }; _ = try model.forward(batch: prompts, caches: &caches) }
    let total = try best(of: 3) {
        var caches = prompts.map { _ in model.makeCache() }
        _ = try model.forward(batch: prompts, caches: &caches)
        for step in 0..<decodeSteps { _ = try model.forward(batch: (0..<count).map { [($0 * 31 + step + 1) % vocabulary] }, caches: &caches) }
    }
    let rate = Double(count * decodeSteps) / (total - prefill)
    let base = singleRate ?? rate
    singleRate = base
    print(String(format: "  %d sequence(s): %8.1f tokens/s in all  (%.2fx of one sequence)", count, rate, rate / base))
}

// 4. The product of a few rows with a weight (decode of several sequences): sgemm packs the
// whole weight on every call; moe_f32_matmul reads each weight row once for all rows, and
// LinearAlgebra.linear splits a product this large over the cores.
let kernelRows = 2048, kernelColumns = 2048
let kernelWeight = (0..<(kernelRows * kernelColumns)).map { Float(($0 * 7) % 13) / 13 - 0.5 }
print("product of n rows with a \(kernelRows)x\(kernelColumns) f32 weight, microseconds (best of 20):")
for rowsIn in [2, 4, 8] {
    let x = (0..<(rowsIn * kernelColumns)).map { Float($0 % 5) / 5 }
    var y = [Float](repeating: 0, count: rowsIn * kernelRows)
    let viaSgemm = best(of: 20) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(rowsIn), Int32(kernelRows), Int32(kernelColumns), 1,
                    x, Int32(kernelColumns), kernelWeight, Int32(kernelColumns), 0, &y, Int32(kernelRows))
    }
    let viaSgemv = best(of: 20) {
        for r in 0..<rowsIn {
            x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in
                cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(kernelRows), Int32(kernelColumns), 1, kernelWeight, Int32(kernelColumns),
                            xp.baseAddress! + r * kernelColumns, 1, 0, yp.baseAddress! + r * kernelRows, 1)
            } }
        }
    }
    let viaKernel = best(of: 20) { moe_f32_matmul(kernelWeight, x, &y, rowsIn, kernelRows, kernelColumns, kernelRows) }
    let weightMatrix = Matrix(rows: kernelRows, columns: kernelColumns, values: kernelWeight)
    let input = Matrix(rows: rowsIn, columns: kernelColumns, values: x)
    let viaLibrary = best(of: 20) { _ = LinearAlgebra.linear(input, weightMatrix) }
    print(String(format: "  n=%d: sgemm %7.1f   n x sgemv %7.1f   moe_f32_matmul (one thread) %7.1f   LinearAlgebra.linear %7.1f  (%.2fx of sgemm, %.2fx of n x sgemv)",
                 rowsIn, viaSgemm * 1e6, viaSgemv * 1e6, viaKernel * 1e6, viaLibrary * 1e6, viaSgemm / viaLibrary, viaSgemv / viaLibrary))
}
