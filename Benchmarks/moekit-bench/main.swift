import CBLAS
import Foundation
import MoE
import Routing

// Forward-pass benchmark: prefill and decode tokens/s of a random MoE of realistic layer
// shape (Qwen3-30B-A3B's: hidden 2048, 32 heads of 128, 4 KV heads, experts 768 wide, top-8),
// next to this machine's sgemm GFLOP/s measured in the same run.
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
