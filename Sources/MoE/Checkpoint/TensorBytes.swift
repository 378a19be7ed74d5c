/// A tensor's raw little-endian bytes: a view into a checkpoint's memory map, or bytes a
/// derivation computed. Holding it keeps the bytes alive.
public struct TensorBytes: Sendable {
    private enum Storage: Sendable {
        case mapped(SafetensorsFile, Range<Int>)
        case owned([UInt8])
    }
    private let storage: Storage

    init(file: SafetensorsFile, range: Range<Int>) { storage = .mapped(file, range) }
    init(owned: [UInt8]) { storage = .owned(owned) }

    public var count: Int {
        switch storage {
        case .mapped(_, let range): return range.count
        case .owned(let bytes): return bytes.count
        }
    }

    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        switch storage {
        case .mapped(let file, let range): return try body(file.mappedBytes(range))
        case .owned(let bytes): return try bytes.withUnsafeBytes(body)
        }
    }
}

extension Array where Element == TensorBytes {
    /// Runs `body` with every element's bytes at once (each stays valid for the whole call).
    public func withUnsafeBytesOfEach<R>(_ body: ([UnsafeRawBufferPointer]) throws -> R) rethrows -> R {
        try Self.nest(self[...], [], body)
    }

    private static func nest<R>(_ rest: ArraySlice<TensorBytes>, _ done: [UnsafeRawBufferPointer],
                                _ body: ([UnsafeRawBufferPointer]) throws -> R) rethrows -> R {
        guard let first = rest.first else { return try body(done) }
        return try first.withUnsafeBytes { try nest(rest.dropFirst(), done + [$0], body) }
    }
}
