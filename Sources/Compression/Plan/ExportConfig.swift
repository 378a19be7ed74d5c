import Foundation
import MoE

/// The `config.json` a plan export writes: the original text with the expert count changed,
/// and every key spelling each family has had across transformers 4.x and 5.x present, so
/// older readers (transformers 4, mlx-lm, vLLM's config classes) load it as well as
/// transformers 5 does:
/// - the routed expert count under each name the family has used (`num_experts` and
///   `num_local_experts` for qwen3_moe; one name for the others, which never changed);
/// - `rope_theta` and `rope_scaling` (4.x) next to `rope_parameters` (5.x), whichever the
///   file has, built from the other (YaRN's factor, original length, betas and mscales too);
/// - `torch_dtype` (4.x) next to `dtype` (5.x).
///
/// Values are edited in the original text rather than re-encoded: re-encoding would turn
/// floats such as `0.0` or `10000.0` into integers, which transformers' strict configs
/// reject. Added values are copied from the text of the value they mirror for the same reason.
enum ExportConfig {
    /// Expert count keys per `model_type`, every spelling a transformers release has saved.
    static let expertCountKeys: [String: [String]] = [
        "qwen2_moe": ["num_experts"],
        "qwen3_moe": ["num_experts", "num_local_experts"],
        "olmoe": ["num_experts"],
        "mixtral": ["num_local_experts"],
        "deepseek_v3": ["n_routed_experts"],
        "glm4_moe": ["n_routed_experts"],
    ]

    /// The key holding the routed experts' width, per `model_type` (the others: `moe_intermediate_size`).
    static let expertWidthKeys: [String: String] = ["mixtral": "intermediate_size", "olmoe": "intermediate_size", "gpt_oss": "intermediate_size"]

    /// `expertWidth`: the experts' width when a shrunk plan exports narrower experts.
    static func rewrite(_ data: Data, expertCount: Int, expertWidth: Int? = nil) throws -> Data {
        var document = try JSONText(data, file: "config.json")
        let modelType = document.rawValue("model_type").flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8), options: .fragmentsAllowed) as? String }
        if let expertWidth { document.set(modelType.flatMap { expertWidthKeys[$0] } ?? "moe_intermediate_size", raw: String(expertWidth)) }
        let present = ["num_experts", "num_local_experts", "n_routed_experts"].filter { document.rawValue($0) != nil }
        for key in Set(present + (modelType.flatMap { expertCountKeys[$0] } ?? [])) {
            document.set(key, raw: String(expertCount))
        }
        // DeepSeek's group-limited routing needs the count to split into `n_group` groups of
        // at least two; when it no longer does, groups are switched off (as PreMoe does).
        if let groups = document.rawValue("n_group").flatMap({ Int($0) }), groups > 1, expertCount % groups != 0 || expertCount / groups < 2 {
            document.set("n_group", raw: "1")
            if document.rawValue("topk_group") != nil { document.set("topk_group", raw: "1") }
        }
        try addRopeSpellings(&document)
        if let dtype = document.rawValue("dtype"), document.rawValue("torch_dtype") == nil { document.set("torch_dtype", raw: dtype) }
        if let dtype = document.rawValue("torch_dtype"), document.rawValue("dtype") == nil { document.set("dtype", raw: dtype) }
        return Data(document.text.utf8)
    }

    /// `rope_theta`/`rope_scaling` from `rope_parameters`, or the reverse. transformers 5 also
    /// moves `partial_rotary_factor` (GLM-4.5) into `rope_parameters`; older readers look for
    /// it at the top level, so it is copied there and left out of `rope_scaling`.
    static func addRopeSpellings(_ document: inout JSONText) throws {
        if let parameters = document.rawValue("rope_parameters"), parameters.hasPrefix("{") {
            let entries = try JSONText(Data(parameters.utf8), file: "config.json rope_parameters").entries
            if document.rawValue("rope_theta") == nil, let theta = entries.first(where: { $0.key == "rope_theta" }) {
                document.set("rope_theta", raw: theta.raw)
            }
            if document.rawValue("partial_rotary_factor") == nil, let fraction = entries.first(where: { $0.key == "partial_rotary_factor" }) {
                document.set("partial_rotary_factor", raw: fraction.raw)
            }
            if document.rawValue("rope_scaling") == nil {
                let type = entries.first { $0.key == "rope_type" }?.raw ?? "\"default\""
                let others = entries.filter { !["rope_theta", "rope_type", "type", "partial_rotary_factor"].contains($0.key) }
                if type == "\"default\"" && others.isEmpty {
                    document.set("rope_scaling", raw: "null")
                } else {
                    let fields = [("type", type), ("rope_type", type)] + others.map { ($0.key, $0.raw) }
                    document.set("rope_scaling", raw: "{" + fields.map { "\(SafetensorsWriter.quoted($0.0)): \($0.1)" }.joined(separator: ", ") + "}")
                }
            }
        } else if document.rawValue("rope_parameters") == nil, let theta = document.rawValue("rope_theta") {
            var fields = [("rope_theta", theta)]
            if let scaling = document.rawValue("rope_scaling"), scaling.hasPrefix("{") {
                let entries = try JSONText(Data(scaling.utf8), file: "config.json rope_scaling").entries
                let type = entries.first { $0.key == "rope_type" }?.raw ?? entries.first { $0.key == "type" }?.raw ?? "\"default\""
                fields.append(("rope_type", type))
                fields += entries.filter { $0.key != "type" && $0.key != "rope_type" }.map { ($0.key, $0.raw) }
            } else {
                fields.append(("rope_type", "\"default\""))
            }
            document.set("rope_parameters", raw: "{" + fields.map { "\(SafetensorsWriter.quoted($0.0)): \($0.1)" }.joined(separator: ", ") + "}")
        }
    }
}

/// A JSON object's text with the source text of each top-level value, so values can be
/// replaced or added without re-encoding the others.
struct JSONText {
    struct Entry { var key: String; var raw: String }

    private(set) var text: String
    private let file: String

    init(_ data: Data, file: String) throws {
        guard (try? JSONSerialization.jsonObject(with: data)) is [String: Any] else {
            throw CheckpointError.malformedConfig(file: file, reason: "not a JSON object")
        }
        self.text = String(decoding: data, as: UTF8.self)
        self.file = file
    }

    /// Top-level keys with the text of their values, in file order.
    var entries: [Entry] {
        spans().map { Entry(key: $0.key, raw: String(decoding: Array(text.utf8)[$0.value], as: UTF8.self)) }
    }

    func rawValue(_ key: String) -> String? { entries.first { $0.key == key }?.raw }

    /// Replaces the value of `key`, or adds `key` at the end of the object.
    mutating func set(_ key: String, raw: String) {
        var bytes = Array(text.utf8)
        let spans = spans()
        if let span = spans.first(where: { $0.key == key }) {
            bytes.replaceSubrange(span.value, with: Array(raw.utf8))
        } else {
            // After the last value, in the file's indentation (two spaces when it has none).
            let indent = spans.first.map { span -> String in
                var start = span.keyStart
                while start > 0, bytes[start - 1] == UInt8(ascii: " ") || bytes[start - 1] == UInt8(ascii: "\t") { start -= 1 }
                return String(decoding: bytes[start..<span.keyStart], as: UTF8.self)
            } ?? "  "
            let insertion = (spans.isEmpty ? "\n" : ",\n") + indent + SafetensorsWriter.quoted(key) + ": " + raw
            let at = spans.last?.value.upperBound ?? (bytes.firstIndex(of: UInt8(ascii: "{"))! + 1)
            bytes.insert(contentsOf: Array(insertion.utf8), at: at)
        }
        text = String(decoding: bytes, as: UTF8.self)
    }

    /// Byte ranges of each top-level key and value (the text is known to be a valid object).
    private func spans() -> [(key: String, keyStart: Int, value: Range<Int>)] {
        let b = Array(text.utf8)
        var i = 0
        func skipSpace() { while i < b.count, [0x20, 0x09, 0x0A, 0x0D].contains(b[i]) { i += 1 } }
        func skipString() {   // at the opening quote
            i += 1
            while b[i] != UInt8(ascii: "\"") { i += b[i] == UInt8(ascii: "\\") ? 2 : 1 }
            i += 1
        }
        func skipValue() {
            switch b[i] {
            case UInt8(ascii: "\""): skipString()
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                var depth = 0
                repeat {
                    switch b[i] {
                    case UInt8(ascii: "\""): skipString(); continue
                    case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1
                    case UInt8(ascii: "}"), UInt8(ascii: "]"): depth -= 1
                    default: break
                    }
                    i += 1
                } while depth > 0
            default:
                while i < b.count, ![UInt8(ascii: ","), UInt8(ascii: "}"), UInt8(ascii: "]"), 0x20, 0x09, 0x0A, 0x0D].contains(b[i]) { i += 1 }
            }
        }
        var out = [(key: String, keyStart: Int, value: Range<Int>)]()
        skipSpace()
        i += 1   // {
        while true {
            skipSpace()
            guard i < b.count, b[i] == UInt8(ascii: "\"") else { break }
            let keyStart = i
            skipString()
            let keyText = String(decoding: b[keyStart..<i], as: UTF8.self)
            let key = (try? JSONSerialization.jsonObject(with: Data(keyText.utf8), options: .fragmentsAllowed) as? String) ?? ""
            skipSpace()
            i += 1   // :
            skipSpace()
            let valueStart = i
            skipValue()
            out.append((key, keyStart, valueStart..<i))
            skipSpace()
            if i < b.count, b[i] == UInt8(ascii: ",") { i += 1 }
        }
        return out
    }
}
