import CBLAS
import Compression
import ExpertStore
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import MoE
import Routing

// Serving benchmark, all in one run on one machine (build with -c release):
// 1. resident memory (VmRSS) of `moekit serve` child processes serving the full model, a
//    50% plan and a 25% plan, each read after a warm-up request, with ratios to the full model
//    (experts kept BF16, the server's default), plus the full model with experts widened to f32;
// 2. decode tokens/s for the original experts (BF16 read directly by the half-precision
//    kernel, and widened to f32), 8-bit and 4-bit plans, next to the memory-bandwidth bound:
//    read bandwidth (measured here over 256 MB) divided by the bytes of weights one decode step reads;
// 3. decode throughput of 1, 2, 4 and 8 sequences sharing forward passes (`BatchGenerator`),
//    as ratios to one sequence measured in the same run.
//
// Usage: serve-bench [--model DIR] [--calib DIR] [--moekit PATH] [--tokens N], from the
// repository root. The store is built in a temporary folder from the model (default:
// models/moekit-tiny, profiled on calib/python); --moekit defaults to the moekit built next
// to this executable.

struct Arguments {
    var model: URL
    var moekit: URL
    var calib: URL
    var tokens = 64

    init() {
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        moekit = executable.deletingLastPathComponent().appendingPathComponent("moekit")
        let here = URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
        model = here.appendingPathComponent("models/moekit-tiny")
        calib = here.appendingPathComponent("calib")
        var rest = CommandLine.arguments.dropFirst()
        while let flag = rest.popFirst() {
            guard let value = rest.popFirst() else { fatalError("\(flag) needs a value") }
            switch flag {
            case "--model": model = URL(fileURLWithPath: value)
            case "--moekit": moekit = URL(fileURLWithPath: value)
            case "--calib": calib = URL(fileURLWithPath: value)
            case "--tokens": tokens = Int(value)!
            default: fatalError("unknown option \(flag); use --model DIR, --calib DIR, --moekit PATH, --tokens N")
            }
        }
    }
}

func seconds(_ body: () throws -> Void) rethrows -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    try body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

/// Builds the benchmark store: import, one profile, and the plans measured below.
func buildStore(_ arguments: Arguments, at url: URL) throws -> ExpertStore {
    print("building the store from \(arguments.model.path)…")
    _ = try StoreImporter(checkpoint: arguments.model, store: url).run()
    let store = try ExpertStore(url: url, readOnly: false)
    let tokenizer = try Tokenizer(data: store.file("tokenizer.json")!)
    let data = try CalibrationData(contentsOf: arguments.calib.appendingPathComponent("python"))
    let sequences = data.texts.prefix(16).map { Array(tokenizer.encode($0).prefix(256)) }.filter { $0.count >= 2 }
    let profile = try CalibrationProfiler(fingerprint: store.fingerprint() ?? "", source: data.file).profile(model: store.loadModel(), sequences: sequences)
    try store.profiles.put(profile, named: "python")
    let slimmer = try Slimmer(store: store)
    var originalBytes = 0
    for (name, keep, bits) in [("keep50", 0.5, nil), ("keep25", 0.25, nil), ("int8", 1.0, 8), ("int4", 1.0, 4)] as [(String, Double, Int?)] {
        var options = SlimOptions(name: name)
        if keep < 1 {
            options.prune = .reap
            options.keepFraction = keep
        }
        options.uniformBits = bits
        let result = try slimmer.slim(profile: profile, profileName: "python", options: options, calibration: Array(sequences.prefix(8)))
        try slimmer.commit(result)
        originalBytes = result.originalExpertBytes
    }
    let full = CompressionPlan.full(description: try store.modelDescription(), fingerprint: try store.fingerprint() ?? "", expertBytes: originalBytes)
    try store.plans.put(full, named: full.name)
    return store
}

// MARK: Resident memory of the server

/// Starts `moekit serve` for `plan`, sends a warm-up request, and returns VmRSS (bytes) and
/// the resident expert bytes the server reports.
func serverMemory(_ arguments: Arguments, store: URL, plan: String, precision: ExpertPrecision) throws -> (rss: Int, experts: Int) {
    let process = Process()
    process.executableURL = arguments.moekit
    process.arguments = ["serve", "--store", store.path, "--plan", plan, "--port", "0", "--expert-precision", precision.rawValue]
    let output = Pipe()
    process.standardOutput = output
    try process.run()
    defer {
        process.terminate()
        process.waitUntilExit()
    }
    // Wait for "… listening on http://127.0.0.1:PORT".
    var line = Data()
    while !line.contains(UInt8(ascii: "\n")) {
        let chunk = output.fileHandleForReading.availableData
        guard !chunk.isEmpty else { throw BenchError.serverExited(plan) }
        line += chunk
    }
    let text = String(decoding: line, as: UTF8.self)
    guard let port = text.split(separator: ":").last.flatMap({ Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }) else {
        throw BenchError.serverExited(plan)
    }
    let base = "http://127.0.0.1:\(port)"
    _ = try request(base + "/v1/completions", body: #"{"prompt": "def main():\n    ", "max_tokens": 16}"#)
    let metrics = String(decoding: try request(base + "/metrics", body: nil), as: UTF8.self)
    let experts = metrics.split(separator: "\n").first { $0.hasPrefix("moekit_resident_expert_bytes ") }
        .flatMap { Int($0.split(separator: " ")[1]) } ?? -1
    let status = try String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8)
    let rssKB = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") }
        .flatMap { Int($0.split(separator: " ", omittingEmptySubsequences: true)[1]) } ?? -1
    return (rssKB * 1024, experts)
}

enum BenchError: Error { case serverExited(String), http(String) }

/// A blocking HTTP request on loopback.
func request(_ url: String, body: String?) throws -> Data {
    var request = URLRequest(url: URL(string: url)!)
    if let body {
        request.httpMethod = "POST"
        request.httpBody = Data(body.utf8)
    }
    let done = DispatchSemaphore(value: 0)
    nonisolated(unsafe) var result: Result<Data, any Error> = .failure(BenchError.http(url))
    URLSession.shared.dataTask(with: request) { data, response, error in
        if let data, (response as? HTTPURLResponse)?.statusCode == 200 { result = .success(data) } else { result = .failure(error ?? BenchError.http(url)) }
        done.signal()
    }.resume()
    done.wait()
    return try result.get()
}

// MARK: Decode speed against the bandwidth bound

/// Read bandwidth in bytes/s: best of five `sasum` passes over 256 MB (reads only, as decode does).
func readBandwidth() -> Double {
    let count = 64 << 20
    let values = [Float](repeating: 1, count: count)
    var sink: Float = 0
    let best = (0..<6).map { _ in
        seconds { values.withUnsafeBufferPointer { sink += cblas_sasum(Int32(count), $0.baseAddress, 1) } }
    }.dropFirst().min()!
    precondition(sink > 0)
    return Double(count * 4) / best
}

/// Size of the largest CPU cache (Linux sysfs), if known.
func lastLevelCacheBytes() -> Int? {
    let root = "/sys/devices/system/cpu/cpu0/cache"
    let sizes = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).compactMap { index -> Int? in
        guard let text = try? String(contentsOfFile: "\(root)/\(index)/size", encoding: .utf8) else { return nil }
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        let scale = trimmed.hasSuffix("K") ? 1024 : trimmed.hasSuffix("M") ? 1 << 20 : 1
        return Int(trimmed.trimmingCharacters(in: CharacterSet.decimalDigits.inverted)).map { $0 * scale }
    }
    return sizes.max()
}

func decodeSpeed(store: ExpertStore, plan name: String, precision: ExpertPrecision, tokens: Int, prompt: [Int]) throws -> (tokensPerSecond: Double, bytesPerToken: Int) {
    let plan = try PlanLoader.plan(named: name, in: store)
    let (model, experts) = try PlanLoader.model(plan: plan, store: store, precision: precision)
    let description = model.description
    // Bytes one decode step reads: every dense weight as held (the tied embedding counts once, as
    // the output head reads all of it) plus top-k experts per MoE layer at the plan's
    // average resident size. The KV cache (a few KB here) is left out.
    var expertBytesPerToken = 0
    for l in description.moeLayerIndices {
        let slots = plan.layers[l]!.slots.count
        let layerBytes = try (0..<slots).reduce(0) { $0 + (try experts.expert(layer: l, index: $1).residentBytes) }
        expertBytesPerToken += description.layers[l].moe!.topK * layerBytes / slots
    }
    let bytesPerToken = model.denseByteCount + expertBytesPerToken
    var stamps = [UInt64]()
    try Generator(model: model).generate(prompt: prompt, maxTokens: tokens, stopTokens: []) { _ in
        stamps.append(DispatchTime.now().uptimeNanoseconds)
        return true
    }
    // From the first generated token (end of prefill) to the last: decode steps only.
    let decodeSeconds = Double(stamps.last! - stamps.first!) / 1e9
    return (Double(stamps.count - 1) / decodeSeconds, bytesPerToken)
}

func main() throws {
    let arguments = Arguments()
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("serve-bench-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: folder) }
    let storeURL = folder.appendingPathComponent("store")
    let store = try buildStore(arguments, at: storeURL)

    print("\n1. resident memory of `moekit serve` after one warm-up request (VmRSS of the process)")
    print("plan               expert bytes resident   VmRSS MiB   expert ratio   VmRSS ratio (vs full)")
    var reference: (rss: Int, experts: Int)?
    for (plan, precision) in [("full", ExpertPrecision.stored), ("keep50", .stored), ("keep25", .stored), ("full", .float32)] {
        let measured = try serverMemory(arguments, store: storeURL, plan: plan, precision: precision)
        let base = reference ?? measured
        reference = base
        let label = "\(plan) (\(precision == .stored ? "BF16" : "f32"))"
        print(label.padding(toLength: 17, withPad: " ", startingAt: 0) + String(format: "  %21d  %10.1f  %13.3f  %11.3f", measured.experts,
                     Double(measured.rss) / 1_048_576, Double(measured.experts) / Double(base.experts), Double(measured.rss) / Double(base.rss)))
    }

    print("\n2. decode speed (\(arguments.tokens) tokens after a 32-token prompt, one sequence) vs the bandwidth bound")
    let bandwidth = readBandwidth()
    print(String(format: "measured read bandwidth: %.2f GB/s (sasum over 256 MB, best of 5)", bandwidth / 1e9))
    let tokenizer = try Tokenizer(data: store.file("tokenizer.json")!)
    let prompt = Array(tokenizer.encode("import os\nimport sys\n\ndef main(argv):\n    parser = argparse.ArgumentParser(description='tool')\n    ").prefix(32))
    let lastLevelCache = lastLevelCacheBytes()
    print("last-level cache: \(lastLevelCache.map { "\($0 >> 20) MiB" } ?? "unknown"); where a plan's bytes per token fit in it, weights are re-read from cache, not DRAM, and the DRAM bound does not bind")
    print("plan                      bytes read/token   tokens/s   bound tokens/s   fraction of bound")
    for (label, plan, precision) in [("original BF16 (direct)", "full", ExpertPrecision.stored), ("original BF16 -> f32", "full", .float32),
                                     ("8-bit", "int8", .stored), ("4-bit", "int4", .stored)] {
        let (speed, bytes) = try decodeSpeed(store: store, plan: plan, precision: precision, tokens: arguments.tokens, prompt: prompt)
        let bound = bandwidth / Double(bytes)
        print(label.padding(toLength: 24, withPad: " ", startingAt: 0) + String(format: "  %16d  %9.1f  %15.1f  %17.3f", bytes, speed, bound, speed / bound))
    }

    print("\n3. decode throughput with sequences sharing forward passes (full model, BF16 experts, \(arguments.tokens) tokens each)")
    print("sequences   steps   tokens/s (all sequences)   ratio to 1 sequence")
    let (model, _) = try PlanLoader.model(plan: PlanLoader.plan(named: "full", in: store), store: store, precision: .stored)
    var single: Double?
    for count in [1, 2, 4, 8] {
        let (rate, steps) = try batchedThroughput(model: model, sequences: count, tokens: arguments.tokens, prompt: prompt)
        let base = single ?? rate
        single = base
        print(String(format: "%9d  %6d  %25.1f  %20.2f", count, steps, rate, rate / base))
    }
}

/// Aggregate decode tokens/s of `sequences` greedy requests started together on one
/// `BatchGenerator` (each prompt differs in its last token, so the sequences route apart),
/// timed from the first token of any sequence to the last (decode steps only).
func batchedThroughput(model: MoEModel, sequences: Int, tokens: Int, prompt: [Int]) throws -> (tokensPerSecond: Double, steps: Int) {
    let batcher = BatchGenerator(model: model, maxBatchSize: sequences)
    let lock = NSLock()
    nonisolated(unsafe) var stamps = [UInt64]()
    let vocab = model.description.vocabularySize
    // One thread per request (not concurrentPerform: it runs only as many at once as there are cores).
    let group = DispatchGroup()
    for i in 0..<sequences {
        group.enter()
        let thread = Thread {
            defer { group.leave() }
            var own = prompt
            own[own.count - 1] = (own[own.count - 1] + 97 * i) % vocab
            _ = try? batcher.generate(prompt: own, maxTokens: tokens) { _ in
                lock.withLock { stamps.append(DispatchTime.now().uptimeNanoseconds) }
                return true
            }
        }
        thread.stackSize = 8 << 20
        thread.start()
    }
    group.wait()
    let first = stamps.min()!, last = stamps.max()!
    // The first step's tokens end prefill; every later token was decoded.
    return (Double(stamps.count - sequences) / (Double(last - first) / 1e9), batcher.statistics.steps)
}

try main()
