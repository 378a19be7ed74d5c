import Foundation

/// Byte-pair encoding by merge rank: a word starts as single characters, and the adjacent
/// pair with the lowest rank in `merges` is merged (leftmost first) until none is left.
final class BPEModel: @unchecked Sendable {
    let vocabulary: [String: Int]
    private let ranks: [String: Int]          // "left right" → rank
    let ignoreMerges: Bool
    private var cache: [Substring: [Int]] = [:]
    private let lock = NSLock()

    init(vocabulary: [String: Int], merges: [(String, String)], ignoreMerges: Bool) {
        self.vocabulary = vocabulary
        var ranks = [String: Int](minimumCapacity: merges.count)
        for (rank, pair) in merges.enumerated() where ranks[pair.0 + " " + pair.1] == nil {
            ranks[pair.0 + " " + pair.1] = rank
        }
        self.ranks = ranks
        self.ignoreMerges = ignoreMerges
    }

    /// Token ids of one pre-tokenized, byte-level-mapped word.
    func encode(_ word: Substring) throws -> [Int] {
        lock.lock()
        if let hit = cache[word] { lock.unlock(); return hit }
        lock.unlock()
        let ids = try merge(word)
        lock.lock()
        if cache.count > 100_000 { cache.removeAll(keepingCapacity: true) }
        cache[word] = ids
        lock.unlock()
        return ids
    }

    private func merge(_ word: Substring) throws -> [Int] {
        if ignoreMerges, let id = vocabulary[String(word)] { return [id] }
        var symbols = word.unicodeScalars.map { String($0) }
        while symbols.count > 1 {
            var best: (rank: Int, index: Int)?
            for i in 0..<(symbols.count - 1) {
                if let rank = ranks[symbols[i] + " " + symbols[i + 1]], rank < (best?.rank ?? .max) { best = (rank, i) }
            }
            guard let best else { break }
            symbols[best.index] += symbols[best.index + 1]
            symbols.remove(at: best.index + 1)
        }
        return try symbols.map { symbol in
            guard let id = vocabulary[symbol] else { throw TokenizerError.unknownSymbol(symbol) }
            return id
        }
    }
}
