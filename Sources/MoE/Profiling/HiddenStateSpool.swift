import Foundation

/// Hidden states of many sequences kept between layers of a streaming pass. They stay in
/// memory up to `memoryBudget` bytes; beyond that each further sequence is written to a
/// temporary file and read back when its turn comes.
public final class HiddenStateSpool {
    private var inMemory: [Int: Matrix] = [:]
    private var onDisk: [Int: (url: URL, rows: Int, columns: Int)] = [:]
    private let directory: URL
    private let memoryBudget: Int
    private var bytesInMemory = 0

    public init(memoryBudget: Int) throws {
        self.memoryBudget = memoryBudget
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("moekit-spool-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(at: directory) }

    public var count: Int { inMemory.count + onDisk.count }
    public var spilledCount: Int { onDisk.count }

    public func store(_ hidden: Matrix, for sequence: Int) throws {
        let bytes = hidden.count * MemoryLayout<Float>.size
        if let old = inMemory.removeValue(forKey: sequence) { bytesInMemory -= old.count * MemoryLayout<Float>.size }
        if bytesInMemory + bytes <= memoryBudget && onDisk[sequence] == nil {
            inMemory[sequence] = hidden
            bytesInMemory += bytes
            return
        }
        let url = directory.appendingPathComponent("\(sequence).f32")
        try hidden.values.withUnsafeBytes { try Data($0).write(to: url) }
        onDisk[sequence] = (url, hidden.rows, hidden.columns)
    }

    public func load(_ sequence: Int) throws -> Matrix {
        if let hidden = inMemory[sequence] { return hidden }
        guard let entry = onDisk[sequence] else { preconditionFailure("no hidden state for sequence \(sequence)") }
        let data = try Data(contentsOf: entry.url)
        let values = data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        return Matrix(rows: entry.rows, columns: entry.columns, values: values)
    }
}
