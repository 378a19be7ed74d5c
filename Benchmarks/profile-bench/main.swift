// profile-bench: the routing profiler's cost and memory, on any expert store.
//
//   profile-bench --store DIR --mode overhead    plain forward tokens/s vs with the profiler attached
//   profile-bench --store DIR --mode memory      in-memory profile: tokens/s and peak resident memory
//   profile-bench --store DIR --mode streaming   layer-by-layer profile: tokens/s and peak resident memory
//   options: --sequences 16 --length 128 --hidden-mb 64
//
// Peak memory is the process's high-water mark (VmHWM), so run each mode in its own process;
// Benchmarks/profile-bench.sh does that on a generated store larger than the memory it allows.
import ExpertStore
import Foundation
import MoE
import Routing

func peakResidentBytes() -> Int {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
          let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }) else { return 0 }
    return (Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) * 1024
}

func seconds(_ body: () throws -> Void) rethrows -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    try body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

var arguments = [String: String]()
var i = 1
while i + 1 < CommandLine.arguments.count {
    arguments[CommandLine.arguments[i]] = CommandLine.arguments[i + 1]
    i += 2
}
guard let storePath = arguments["--store"], let mode = arguments["--mode"] else {
    print("usage: profile-bench --store DIR --mode overhead|memory|streaming [--sequences N] [--length N] [--hidden-mb N]")
    exit(2)
}
let sequenceCount = Int(arguments["--sequences"] ?? "") ?? 16
let length = Int(arguments["--length"] ?? "") ?? 128
let hiddenBudget = (Int(arguments["--hidden-mb"] ?? "") ?? 64) << 20

let store = try ExpertStore(url: URL(fileURLWithPath: storePath))
let description = try store.modelDescription()
var state: UInt64 = 42
let sequences = (0..<sequenceCount).map { _ in
    (0..<length).map { _ -> Int in
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Int(state >> 33) % description.vocabularySize
    }
}
let tokens = Double(sequenceCount * length)
let storeBytes = try store.databaseUsage().reduce(0) { $0 + $1.bytes }
let profiler = CalibrationProfiler(fingerprint: try store.fingerprint() ?? "", source: "random tokens")
func mib(_ bytes: Int) -> String { String(format: "%.0f MiB", Double(bytes) / 1_048_576) }

switch mode {
case "overhead":
    let model = try store.loadModel()
    for ids in sequences { _ = try model.logits(ids) }       // warm up: load every expert the sequences touch
    var sparse = profiler
    sparse.denseSampleStride = 0
    // Interleaved rounds, best of each: the machines here are shared and noisy.
    var best = [Double](repeating: .infinity, count: 3)
    for _ in 0..<3 {
        best[0] = min(best[0], try seconds { for ids in sequences { _ = try model.logits(ids) } })
        best[1] = min(best[1], try seconds { _ = try profiler.profile(model: model, sequences: sequences) })
        best[2] = min(best[2], try seconds { _ = try sparse.profile(model: model, sequences: sequences) })
    }
    print(String(format: "forward alone:                    %8.0f tokens/s", tokens / best[0]))
    print(String(format: "forward + profiler (dense 1/16):  %8.0f tokens/s  (%.2fx of plain)", tokens / best[1], best[0] / best[1]))
    print(String(format: "forward + profiler (no dense):    %8.0f tokens/s  (%.2fx of plain)", tokens / best[2], best[0] / best[2]))
case "memory":
    var profile: RoutingProfile!
    let time = try seconds { profile = try profiler.profile(model: store.loadModel(), sequences: sequences) }
    print(String(format: "in-memory profile: %.0f tokens/s, peak RSS %@ (store %@); layer-0 entropy %.6f", tokens / time,
                 mib(peakResidentBytes()), mib(storeBytes), profile.layers.compactMap { $0 }.first!.routingEntropy))
case "streaming":
    var profile: RoutingProfile!
    let time = try seconds {
        profile = try profiler.profileStreaming(
            runner: LayerwiseRunner(description: description, tensors: StoreTensorProvider(store: store)), sequences: sequences,
            hiddenStateBudget: hiddenBudget,
            expertsForLayer: { l in
                let ids = description.layers[l].moe.map { m in (0..<m.expertCount).map { ExpertID(layer: l, expert: $0) } } ?? []
                return try StoreExpertSource(store: store, allowing: Set(ids))
            })
    }
    print(String(format: "streaming profile: %.0f tokens/s, peak RSS %@ (store %@, %.1fx the peak); layer-0 entropy %.6f", tokens / time,
                 mib(peakResidentBytes()), mib(storeBytes), Double(storeBytes) / Double(peakResidentBytes()),
                 profile.layers.compactMap { $0 }.first!.routingEntropy))
default:
    print("unknown mode \(mode)")
    exit(2)
}
