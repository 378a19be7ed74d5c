import Foundation
@testable import MoE

/// Locates committed fixtures under Tests/Fixtures, independent of the working directory.
enum Fixtures {
    static let root = URL(fileURLWithPath: #filePath).resolvingSymlinksInPath()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")

    static func url(_ path: String) -> URL { root.appendingPathComponent(path) }

    /// Families with a transformers reference, each a checkpoint folder with reference.safetensors.
    static let families = ["mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek_v3", "deepseek_v3_nolora", "deepseek_v3_yarn", "glm4_moe", "gpt_oss"]

    /// The reference token ids and logits recorded with transformers.
    static func reference(_ family: String) throws -> (ids: [Int], logits: Matrix) {
        let file = try SafetensorsFile(url: url("\(family)/reference.safetensors"))
        return (try file.integers("input_ids"), try file.matrix("logits"))
    }
}

/// Largest absolute elementwise difference.
func maxAbsDifference(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count, "sizes differ: \(a.count) vs \(b.count)")
    return zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
}

func argmaxPerRow(_ m: Matrix) -> [Int] {
    (0..<m.rows).map { r in
        let row = m.values[(r * m.columns)..<((r + 1) * m.columns)]
        return row.indices.max(by: { row[$0] < row[$1] })! - r * m.columns
    }
}
