// make-checkpoint: writes a random Qwen3-MoE checkpoint folder that transformers can load
// (Qwen3MoeForCausalLM, per-expert tensor layout, BF16, sharded safetensors with
// `model.safetensors.index.json`), tensor by tensor and chunk by chunk, so its own memory
// stays a few MiB however large the model is. Used by `Benchmarks/scale-bench.sh` to make a
// model several times bigger than the memory MoEKit is given.
//
//     swift build -c release --product make-checkpoint
//     .build/release/make-checkpoint --out DIR [--layers 8] [--hidden 2048] [--experts 128]
//         [--expert-intermediate 768] [--top-k 8] [--heads 32] [--kv-heads 4] [--head-dim 128]
//         [--intermediate 3*hidden] [--seed 1] [--tokenizer-from models/moekit-tiny]
//         [--vocabulary N]
//
// The defaults are Qwen3-30B-A3B's layer shape. Shards: `model-00001-of-N` holds the
// embedding, the final norm and the output head; shard l+2 holds decoder layer l.
// The tokenizer (and the vocabulary size, bos/eos/pad ids) come from `--tokenizer-from`.
// `--vocabulary N` makes the embedding and output head N rows instead (N at least the
// tokenizer's size; config.json says N, the tokenizer stays as it is, ids past it are never
// produced), so a benchmark can have a real model's vocabulary-sized head without a tokenizer
// of that size; llama.cpp's converter pads such a vocabulary with [PAD] tokens.
//
// Values: a counter-based splitmix64 stream per (tensor, 64Ki-element block), so the output
// does not depend on thread count or order; each value is the sum of four 16-bit uniforms
// (Irwin-Hall, close to a normal within ±3.46σ) scaled to σ: 0.5/sqrt(in_features) for
// projections, 1/sqrt(hidden) for the output head, 2/sqrt(hidden) for routers (so routing is
// far from uniform), 1.0 for the embedding; every norm weight is 1.0. f32 → bf16 rounds to
// nearest even.
import Foundation

struct Options {
    var out = ""
    var layers = 8
    var hidden = 2048
    var experts = 128
    var expertIntermediate = 768
    var topK = 8
    var heads = 32
    var kvHeads = 4
    var headDim = 128
    var intermediate: Int?
    var seed: UInt64 = 1
    var tokenizerFrom: String?
    var vocabulary: Int?

    init(_ arguments: [String]) {
        func fail(_ message: String) -> Never {
            FileHandle.standardError.write(Data("make-checkpoint: \(message)\n".utf8))
            exit(2)
        }
        var i = 0
        while i < arguments.count {
            let flag = arguments[i]
            if flag == "--help" || flag == "-h" {
                print("usage: make-checkpoint --out DIR [--layers 8] [--hidden 2048] [--experts 128] [--expert-intermediate 768] [--top-k 8] [--heads 32] [--kv-heads 4] [--head-dim 128] [--intermediate N] [--seed 1] [--tokenizer-from DIR] [--vocabulary N]")
                exit(0)
            }
            guard i + 1 < arguments.count else { fail("\(flag) needs a value") }
            let value = arguments[i + 1]
            func int() -> Int {
                guard let n = Int(value), n > 0 else { fail("\(flag) needs a positive integer, got '\(value)'") }
                return n
            }
            switch flag {
            case "--out": out = value
            case "--layers": layers = int()
            case "--hidden": hidden = int()
            case "--experts": experts = int()
            case "--expert-intermediate": expertIntermediate = int()
            case "--top-k": topK = int()
            case "--heads": heads = int()
            case "--kv-heads": kvHeads = int()
            case "--head-dim": headDim = int()
            case "--intermediate": intermediate = int()
            case "--seed": seed = UInt64(value) ?? { fail("--seed needs an unsigned integer") }()
            case "--tokenizer-from": tokenizerFrom = value
            case "--vocabulary": vocabulary = int()
            default: fail("unknown argument \(flag)")
            }
            i += 2
        }
        if out.isEmpty { fail("--out DIR is required") }
        if topK > experts { fail("--top-k \(topK) exceeds --experts \(experts)") }
        if heads % kvHeads != 0 { fail("--heads \(heads) is not a multiple of --kv-heads \(kvHeads)") }
    }
}

/// How one tensor's values are made.
enum Fill {
    case random(sigma: Float)
    case ones
}

struct TensorSpec {
    var name: String
    var shape: [Int]
    var fill: Fill
    var count: Int { shape.reduce(1, *) }
    var bytes: Int { count * 2 }
}

// MARK: - random values

@inline(__always) func splitmix(_ x: UInt64) -> UInt64 {
    var z = x &+ 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}

/// FNV-1a of a tensor name, so each tensor's stream depends only on its name and the seed.
func nameHash(_ name: String) -> UInt64 {
    var h: UInt64 = 0xCBF2_9CE4_8422_2325
    for byte in name.utf8 { h = (h ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
    return h
}

@inline(__always) func bf16(_ value: Float) -> UInt16 {
    let bits = value.bitPattern
    let rounded = bits &+ 0x7FFF &+ ((bits >> 16) & 1)
    return UInt16(truncatingIfNeeded: rounded >> 16)
}

let blockElements = 1 << 16
let blocksPerChunk = 32 // 2Ki Ki elements, 4 MiB of bf16 per write

/// Fills `out` with block `block` of a tensor's stream.
func fillBlock(_ out: UnsafeMutableBufferPointer<UInt16>, tensorSeed: UInt64, block: Int, sigma: Float) {
    // Sum of four uniforms on [0, 65535]: mean 131070, variance 4 * (65536² - 1) / 12.
    let scale = sigma / (65536.0 * (4.0 / 12.0).squareRoot())
    var state = splitmix(tensorSeed ^ (UInt64(block) &* 0xD1B5_4A32_D192_ED03))
    for i in 0..<out.count {
        state = state &+ 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        let sum = Int32(z & 0xFFFF) + Int32((z >> 16) & 0xFFFF) + Int32((z >> 32) & 0xFFFF) + Int32(z >> 48)
        out[i] = bf16(Float(sum - 131070) * scale)
    }
}

// MARK: - writing

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("make-checkpoint: \(message)\n".utf8))
    exit(1)
}

/// The safetensors header for `tensors` in order, padded with spaces to a multiple of 8.
func header(_ tensors: [TensorSpec]) -> Data {
    var parts = ["\"__metadata__\":{\"format\":\"pt\"}"]
    var offset = 0
    for t in tensors {
        let shape = t.shape.map(String.init).joined(separator: ",")
        parts.append("\"\(t.name)\":{\"dtype\":\"BF16\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + t.bytes)]}")
        offset += t.bytes
    }
    var json = "{" + parts.joined(separator: ",") + "}"
    while (json.utf8.count % 8) != 0 { json += " " }
    var data = Data()
    var length = UInt64(json.utf8.count).littleEndian
    withUnsafeBytes(of: &length) { data.append(contentsOf: $0) }
    data.append(Data(json.utf8))
    return data
}

/// Writes one shard; returns the bytes of tensor data written.
func writeShard(path: String, tensors: [TensorSpec], seed: UInt64, buffer: UnsafeMutableBufferPointer<UInt16>) -> Int {
    guard FileManager.default.createFile(atPath: path, contents: nil) else { fail("cannot create \(path)") }
    guard let handle = FileHandle(forWritingAtPath: path) else { fail("cannot open \(path)") }
    defer { try? handle.close() }
    do {
        try handle.write(contentsOf: header(tensors))
        var written = 0
        for t in tensors {
            let tensorSeed = splitmix(seed ^ nameHash(t.name))
            var done = 0
            var block = 0
            while done < t.count {
                let n = min(buffer.count, t.count - done)
                switch t.fill {
                case .ones:
                    for i in 0..<n { buffer[i] = 0x3F80 }
                case .random(let sigma):
                    let blocks = (n + blockElements - 1) / blockElements
                    // The blocks are disjoint, so the threads never write the same element.
                    nonisolated(unsafe) let base = buffer.baseAddress!
                    let first = block
                    DispatchQueue.concurrentPerform(iterations: blocks) { b in
                        let lo = b * blockElements, hi = min(n, lo + blockElements)
                        fillBlock(UnsafeMutableBufferPointer(start: base + lo, count: hi - lo), tensorSeed: tensorSeed, block: first + b, sigma: sigma)
                    }
                    block += blocks
                }
                try handle.write(contentsOf: UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: buffer[0..<n])))
                done += n
            }
            written += t.bytes
        }
        return written
    } catch {
        fail("writing \(path): \(error)")
    }
}

// MARK: - the model

let options = Options(Array(CommandLine.arguments.dropFirst()))
let fm = FileManager.default

/// The tokenizer's folder: `--tokenizer-from`, else `models/moekit-tiny` found from the
/// current directory upwards or next to this executable's build folder.
func tokenizerFolder() -> URL {
    if let dir = options.tokenizerFrom { return URL(fileURLWithPath: dir) }
    var candidates = [URL(fileURLWithPath: fm.currentDirectoryPath)]
    candidates.append(URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent())
    for start in candidates {
        var dir = start
        for _ in 0..<8 {
            let candidate = dir.appendingPathComponent("models/moekit-tiny")
            if fm.fileExists(atPath: candidate.appendingPathComponent("tokenizer.json").path) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
    }
    fail("models/moekit-tiny not found; pass --tokenizer-from DIR")
}

let source = tokenizerFolder()
guard let sourceConfigData = fm.contents(atPath: source.appendingPathComponent("config.json").path),
      let sourceConfig = (try? JSONSerialization.jsonObject(with: sourceConfigData)) as? [String: Any],
      let tokenizerVocab = sourceConfig["vocab_size"] as? Int else {
    fail("cannot read vocab_size from \(source.path)/config.json")
}
if let n = options.vocabulary, n < tokenizerVocab {
    fail("--vocabulary \(n) is smaller than the tokenizer's \(tokenizerVocab) tokens")
}
let vocab = options.vocabulary ?? tokenizerVocab
func jsonValue(_ key: String) -> String {
    guard let value = sourceConfig[key], !(value is NSNull) else { return "null" }
    if let n = value as? Int { return String(n) }
    if let list = value as? [Int] { return "[" + list.map(String.init).joined(separator: ", ") + "]" }
    return "null"
}

let d = options.hidden, f = options.expertIntermediate, E = options.experts
let qDim = options.heads * options.headDim, kvDim = options.kvHeads * options.headDim
func projection(_ name: String, out: Int, in inFeatures: Int) -> TensorSpec {
    TensorSpec(name: name, shape: [out, inFeatures], fill: .random(sigma: 0.5 / Float(inFeatures).squareRoot()))
}

var shards: [[TensorSpec]] = [[
    TensorSpec(name: "model.embed_tokens.weight", shape: [vocab, d], fill: .random(sigma: 1.0)),
    TensorSpec(name: "model.norm.weight", shape: [d], fill: .ones),
    TensorSpec(name: "lm_head.weight", shape: [vocab, d], fill: .random(sigma: 1.0 / Float(d).squareRoot())),
]]
for l in 0..<options.layers {
    let p = "model.layers.\(l)."
    var layer = [
        TensorSpec(name: p + "input_layernorm.weight", shape: [d], fill: .ones),
        projection(p + "self_attn.q_proj.weight", out: qDim, in: d),
        projection(p + "self_attn.k_proj.weight", out: kvDim, in: d),
        projection(p + "self_attn.v_proj.weight", out: kvDim, in: d),
        projection(p + "self_attn.o_proj.weight", out: d, in: qDim),
        TensorSpec(name: p + "self_attn.q_norm.weight", shape: [options.headDim], fill: .ones),
        TensorSpec(name: p + "self_attn.k_norm.weight", shape: [options.headDim], fill: .ones),
        TensorSpec(name: p + "post_attention_layernorm.weight", shape: [d], fill: .ones),
        TensorSpec(name: p + "mlp.gate.weight", shape: [E, d], fill: .random(sigma: 2.0 / Float(d).squareRoot())),
    ]
    for e in 0..<E {
        layer.append(projection(p + "mlp.experts.\(e).gate_proj.weight", out: f, in: d))
        layer.append(projection(p + "mlp.experts.\(e).up_proj.weight", out: f, in: d))
        layer.append(projection(p + "mlp.experts.\(e).down_proj.weight", out: d, in: f))
    }
    shards.append(layer)
}

let totalBytes = shards.joined().reduce(0) { $0 + $1.bytes }
let outURL = URL(fileURLWithPath: options.out)
do { try fm.createDirectory(at: outURL, withIntermediateDirectories: true) } catch { fail("cannot create \(options.out): \(error)") }

let started = Date()
let gib = Double(1 << 30)
FileHandle.standardError.write(Data(String(format: "make-checkpoint: qwen3_moe, %d layers, hidden %d, %d experts x %d, top-%d, %d/%d heads x %d, vocab %d: %.2f GiB of BF16 in %d shards → %@\n",
                                           options.layers, d, E, f, options.topK, options.heads, options.kvHeads, options.headDim, vocab,
                                           Double(totalBytes) / gib, shards.count, options.out).utf8))

let buffer = UnsafeMutableBufferPointer<UInt16>.allocate(capacity: blockElements * blocksPerChunk)
defer { buffer.deallocate() }
var weightMap: [(String, String)] = []
var written = 0
for (i, tensors) in shards.enumerated() {
    let file = String(format: "model-%05d-of-%05d.safetensors", i + 1, shards.count)
    let shardStart = Date()
    written += writeShard(path: outURL.appendingPathComponent(file).path, tensors: tensors, seed: options.seed, buffer: buffer)
    for t in tensors { weightMap.append((t.name, file)) }
    let elapsed = Date().timeIntervalSince(started)
    FileHandle.standardError.write(Data(String(format: "  %@  %.2f GiB written, %.1f s (shard %.1f s)\n", file, Double(written) / gib, elapsed, Date().timeIntervalSince(shardStart)).utf8))
}

// model.safetensors.index.json
let mapLines = weightMap.sorted { $0.0 < $1.0 }.map { "    \"\($0.0)\": \"\($0.1)\"" }
let index = "{\n  \"metadata\": {\n    \"total_size\": \(totalBytes)\n  },\n  \"weight_map\": {\n" + mapLines.joined(separator: ",\n") + "\n  }\n}\n"

let config = """
{
  "architectures": [
    "Qwen3MoeForCausalLM"
  ],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": \(jsonValue("bos_token_id")),
  "decoder_sparse_step": 1,
  "dtype": "bfloat16",
  "eos_token_id": \(jsonValue("eos_token_id")),
  "head_dim": \(options.headDim),
  "hidden_act": "silu",
  "hidden_size": \(d),
  "initializer_range": 0.02,
  "intermediate_size": \(options.intermediate ?? 3 * d),
  "max_position_embeddings": 4096,
  "mlp_only_layers": [],
  "model_type": "qwen3_moe",
  "moe_intermediate_size": \(f),
  "norm_topk_prob": true,
  "num_attention_heads": \(options.heads),
  "num_experts": \(E),
  "num_experts_per_tok": \(options.topK),
  "num_hidden_layers": \(options.layers),
  "num_key_value_heads": \(options.kvHeads),
  "num_local_experts": \(E),
  "output_router_logits": false,
  "pad_token_id": \(jsonValue("pad_token_id")),
  "rms_norm_eps": 1e-06,
  "rope_parameters": {
    "rope_theta": 1000000.0,
    "rope_type": "default"
  },
  "rope_scaling": null,
  "rope_theta": 1000000.0,
  "router_aux_loss_coef": 0.001,
  "sliding_window": null,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "5.23.0",
  "use_cache": true,
  "use_sliding_window": false,
  "vocab_size": \(vocab)
}

"""
do {
    try Data(index.utf8).write(to: outURL.appendingPathComponent("model.safetensors.index.json"))
    try Data(config.utf8).write(to: outURL.appendingPathComponent("config.json"))
    for name in ["tokenizer.json", "tokenizer_config.json", "generation_config.json", "special_tokens_map.json"] {
        let from = source.appendingPathComponent(name), to = outURL.appendingPathComponent(name)
        guard fm.fileExists(atPath: from.path) else { continue }
        try? fm.removeItem(at: to)
        try fm.copyItem(at: from, to: to)
    }
} catch {
    fail("writing config/index/tokenizer: \(error)")
}

let seconds = Date().timeIntervalSince(started)
print(String(format: "make-checkpoint: wrote %d bytes (%.2f GiB) of tensors in %d shards to %@ in %.1f s (%.0f MiB/s)",
             written, Double(written) / gib, shards.count, options.out, seconds, Double(written) / Double(1 << 20) / max(seconds, 1e-9)))
