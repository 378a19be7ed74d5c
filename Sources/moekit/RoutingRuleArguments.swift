import ArgumentParser
import Compression

/// `--top-k 6` (every MoE layer) or `--top-k 8,8,6,6` (one per MoE layer, in order).
struct TopKList: ExpressibleByArgument, Equatable {
    var counts: [Int]

    init?(argument: String) {
        let counts = argument.split(separator: ",", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !counts.isEmpty, counts.allSatisfy({ ($0 ?? 0) >= 1 }) else { return nil }
        self.counts = counts.map { $0! }
    }
}
