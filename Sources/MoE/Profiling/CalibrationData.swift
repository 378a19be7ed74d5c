import Foundation

/// Calibration or evaluation text: one `{"text": ...}` object per line (JSON Lines).
public struct CalibrationData: Sendable {
    public let file: String
    public let texts: [String]

    public enum LoadError: Error, CustomStringConvertible, Equatable {
        case unreadable(file: String)
        case malformedLine(file: String, line: Int, reason: String)
        case empty(file: String)

        public var description: String {
            switch self {
            case let .unreadable(file): return "\(file): cannot read the file"
            case let .malformedLine(file, line, reason): return "\(file):\(line): \(reason)"
            case let .empty(file): return "\(file): no samples"
            }
        }
    }

    public init(file: String, texts: [String]) {
        self.file = file
        self.texts = texts
    }

    /// Reads a `.jsonl` file, or the `calib.jsonl` inside a domain folder such as `calib/python`.
    public init(contentsOf url: URL) throws {
        var isDirectory: ObjCBool = false
        let target = FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) && isDirectory.boolValue
            ? url.appendingPathComponent("calib.jsonl") : url
        file = target.path
        guard let data = FileManager.default.contents(atPath: target.path) else { throw LoadError.unreadable(file: target.path) }
        var texts = [String]()
        for (number, line) in String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty { continue }
            guard let object = try? JSONSerialization.jsonObject(with: Data(trimmed.utf8)) as? [String: Any] else {
                throw LoadError.malformedLine(file: target.path, line: number + 1, reason: "not a JSON object")
            }
            guard let text = object["text"] as? String else {
                throw LoadError.malformedLine(file: target.path, line: number + 1, reason: "no string field \"text\"")
            }
            texts.append(text)
        }
        guard !texts.isEmpty else { throw LoadError.empty(file: target.path) }
        self.texts = texts
    }
}
