// store-bench: how long, and how much memory, loading experts from an expert store takes
// compared with loading a whole safetensors checkpoint, measured in one run on one
// generated checkpoint of realistic layer shapes (BF16 by default, random weights).
//
//     swift build -c release --product store-bench && .build/release/store-bench [--layers 8]
//         [--experts 32] [--hidden 1024] [--width 512] [--rounds 3] [--dtype bf16|f32] [--keep DIR]
//
// Everything is measured with the files in the page cache (they were just written), so the
// numbers compare decoding, checksumming and copying, not the disk.
import CKernels
import ExpertStore
import Foundation
import MoE

struct Options {
    var layers = 8
    var experts = 32
    var hidden = 1024
    var width = 512
    var keep: String?
    var rounds = 3
    /// BF16 (widened on load) or F32 (used in place from the store's map).
    var dtype = DType.bf16

    init(_ arguments: [String]) {
        var i = 0
        while i < arguments.count {
            let value = i + 1 < arguments.count ? arguments[i + 1] : ""
            switch arguments[i] {
            case "--layers": layers = Int(value) ?? layers
            case "--experts": experts = Int(value) ?? experts
            case "--hidden": hidden = Int(value) ?? hidden
            case "--width": width = Int(value) ?? width
            case "--keep": keep = value
            case "--rounds": rounds = max(1, Int(value) ?? rounds)
            case "--dtype": dtype = value.lowercased() == "f32" ? .f32 : .bf16
            default: fatalError("unknown argument \(arguments[i])")
            }
            i += 2
        }
    }
}

/// Resident set size from /proc/self/statm (second field, pages).
func residentBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let fields = text.split(separator: " ")
    return (fields.count > 1 ? Int(fields[1]) ?? 0 : 0) * Int(sysconf(Int32(_SC_PAGESIZE)))
}

func seconds(_ body: () throws -> Void) rethrows -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    try body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

func mib(_ bytes: Int) -> String { String(format: "%8.1f MiB", Double(bytes) / 1_048_576) }

/// A qwen3_moe config.json with the requested shapes.
func config(_ o: Options) -> String {
    """
    {"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "hidden_size": \(o.hidden),
     "moe_intermediate_size": \(o.width), "intermediate_size": \(o.width * 4), "num_experts": \(o.experts),
     "num_experts_per_tok": 4, "num_hidden_layers": \(o.layers), "num_attention_heads": 8, "num_key_value_heads": 4,
     "head_dim": 128, "vocab_size": 2048, "max_position_embeddings": 512, "rms_norm_eps": 1e-06,
     "rope_parameters": {"rope_theta": 1000000.0, "rope_type": "default"}, "norm_topk_prob": true,
     "tie_word_embeddings": true, "decoder_sparse_step": 1, "mlp_only_layers": [], "bos_token_id": 1, "eos_token_id": 2,
     "hidden_act": "silu", "attention_bias": false, "use_sliding_window": false, "sliding_window": null, "dtype": "bfloat16"}
    """
}

/// Random weights in about ±0.1 from a seeded xorshift generator, as BF16 or F32 bytes.
func randomWeights(count: Int, seed: UInt64, dtype: DType) -> [UInt8] {
    var state = seed | 1
    var floats = [Float](repeating: 0, count: count)
    for i in 0..<count {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17
        floats[i] = (Float(state >> 40) / Float(1 << 24) - 0.5) * 0.2
    }
    if dtype == .f32 { return floats.withUnsafeBytes { Array($0) } }
    var halves = [UInt16](repeating: 0, count: count)
    moe_f32_to_bf16(floats, &halves, count)
    return halves.withUnsafeBytes { Array($0) }
}

func writeCheckpoint(_ o: Options, to directory: URL) throws -> ModelDescription {
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    let configData = Data(config(o).utf8)
    try configData.write(to: directory.appendingPathComponent("config.json"))
    let description = try Architectures.describe(configData: configData)
    var writer = SafetensorsWriter()
    for (i, spec) in description.tensorInventory.enumerated() {
        let count = spec.shape.reduce(1, *)
        writer.add(spec.name, dtype: o.dtype, shape: spec.shape) { emit in
            try randomWeights(count: count, seed: UInt64(i + 1) &* 0x9E37_79B9_7F4A_7C15, dtype: o.dtype).withUnsafeBytes { try emit($0) }
        }
    }
    try writer.write(to: directory.appendingPathComponent("model.safetensors"))
    return description
}

func run() throws {
    let o = Options(Array(CommandLine.arguments.dropFirst()))
    let root = o.keep.map { URL(fileURLWithPath: $0) }
        ?? FileManager.default.temporaryDirectory.appendingPathComponent("store-bench-\(getpid())")
    defer { if o.keep == nil { try? FileManager.default.removeItem(at: root) } }
    let checkpointURL = root.appendingPathComponent("checkpoint")
    let storeURL = root.appendingPathComponent("store")
    try? FileManager.default.removeItem(at: storeURL)

    print("store-bench: \(o.layers) layers × \(o.experts) experts, hidden \(o.hidden), expert width \(o.width), \(o.dtype.rawValue)")
    var description: ModelDescription!
    let writeTime = try seconds { description = try writeCheckpoint(o, to: checkpointURL) }
    let checkpointBytes = try CheckpointDirectory(url: checkpointURL).storedBytes
    let perExpertStored = 3 * o.hidden * o.width * o.dtype.byteSize
    let allExperts = o.layers * o.experts
    print(String(format: "checkpoint: %@ (experts %@) written in %.2f s", mib(checkpointBytes), mib(allExperts * perExpertStored), writeTime))

    var summary: ImportSummary!
    var committed = [Double]()
    let importStart = DispatchTime.now().uptimeNanoseconds
    func elapsed() -> Double { Double(DispatchTime.now().uptimeNanoseconds - importStart) / 1e9 }
    let importTime = try seconds {
        summary = try StoreImporter(checkpoint: checkpointURL, store: storeURL).run { event in
            switch event {
            case .started, .denseCommitted, .layerCommitted: committed.append(elapsed())
            default: break
            }
        }
    }
    let storeFile = (try? FileManager.default.attributesOfItem(atPath: storeURL.appendingPathComponent("data.mdb").path)[.size] as? Int) ?? 0
    print(String(format: "import: %.2f s (%.2f GB/s of tensor data), data.mdb %@; checks + fingerprint %.2f s, dense txn %.2f s, "
                 + "expert layers %.2f s", importTime,
                 Double(summary.bytesWritten) / importTime / 1e9, mib(storeFile), committed[0], committed[1] - committed[0],
                 committed.last! - committed[1]))
    print("")
    // Each row is measured `rounds` times, alternating, and the fastest run is reported, so
    // that no row gains from running after another (allocator state, page cache).
    struct Row { var time = Double.infinity; var rss = 0; var expertBytes = 0; var count = 0 }
    var baseline = Row()
    var rows = [Row](repeating: Row(), count: 3)
    let fractions = [1.0, 0.5, 0.25]
    let all = (0..<o.layers).flatMap { l in (0..<o.experts).map { ExpertID(layer: l, expert: $0) } }
    for _ in 0..<o.rounds {
        // Baseline: the whole checkpoint, every expert widened to f32 (what `MoEModel(directory:)` does).
        do {
            let before = residentBytes()
            var experts: LoadedExperts?
            let time = try seconds {
                let checkpoint = try CheckpointDirectory(url: checkpointURL)
                experts = try LoadedExperts(description: description, tensors: checkpoint)
            }
            if time < baseline.time { baseline = Row(time: time, rss: residentBytes() - before, expertBytes: experts!.residentBytes, count: all.count) }
            experts = nil
        }
        for (i, fraction) in fractions.enumerated() {
            var generator = SeededGenerator(seed: 42)
            let ids = Array(all.shuffled(using: &generator).prefix(Int(Double(all.count) * fraction)))
            let before = residentBytes()
            var source: StoreExpertSource?
            let time = try seconds {
                let store = try ExpertStore(url: storeURL)
                source = try StoreExpertSource(store: store, allowing: Set(ids))
                try source!.load(ids)
            }
            if time < rows[i].time { rows[i] = Row(time: time, rss: residentBytes() - before, expertBytes: source!.residentBytes, count: ids.count) }
            source = nil
        }
    }
    print("load (best of \(o.rounds), page cache warm)   time      resident (RSS Δ)   expert f32 bytes   vs safetensors (time, RSS)")
    print(String(format: "safetensors, whole checkpoint     %8.3f s   %@       %@", baseline.time, mib(baseline.rss), mib(baseline.expertBytes)))
    for (i, fraction) in fractions.enumerated() {
        let r = rows[i]
        print(String(format: "store, %3.0f%% of experts (%4d)     %8.3f s   %@       %@     %5.2fx, %5.2fx", fraction * 100, r.count,
                     r.time, mib(r.rss), mib(r.expertBytes), r.time / baseline.time, Double(r.rss) / Double(max(baseline.rss, 1))))
    }
    print(String(format: "store load throughput, all experts: %.2f GB/s of %@ records read%@", Double(rows[0].count * perExpertStored) / rows[0].time / 1e9,
                 o.dtype.rawValue, o.dtype == .f32 ? " and checked (used in place, no copy)" : ", checked and widened to f32"))

    // Raw read throughput: one cursor over every expert record, checking each CRC-32C in place.
    let store = try ExpertStore(url: storeURL)
    var best = Double.infinity
    var report: VerificationReport!
    for _ in 0..<3 { best = min(best, try seconds { report = try store.verifyExperts() }) }
    print("")
    print(String(format: "store read throughput (cursor walk + CRC-32C of %d records, %@, best of 3): %.2f GB/s",
                 report.records, mib(report.bytes), Double(report.bytes) / best / 1e9))
}

/// SplitMix64, so the expert subsets are the same in every run.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

do { try run() } catch {
    FileHandle.standardError.write(Data("store-bench: \(error)\n".utf8))
    exit(1)
}
