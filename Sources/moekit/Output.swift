import Foundation

/// How commands print results: pretty, key-sorted JSON with `--json`, their text otherwise.
enum Output {
    static func json(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    static func print(_ value: some Encodable, json: Bool, text: @autoclosure () -> String) throws {
        Swift.print(json ? try self.json(value) : text())
    }
}
