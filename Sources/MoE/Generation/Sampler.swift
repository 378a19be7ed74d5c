import Foundation

/// How the next token is chosen from the logits.
public struct SamplingParameters: Sendable, Equatable {
    /// 0 means greedy (argmax).
    public var temperature: Float
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches `topP`.
    public var topP: Float
    public var seed: UInt64

    public init(temperature: Float = 0, topP: Float = 1, seed: UInt64 = 0) {
        self.temperature = temperature
        self.topP = topP
        self.seed = seed
    }
}

/// A small deterministic generator (SplitMix64), so a seed reproduces a sample on every platform.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Picks tokens from logits: greedy, or temperature + top-p sampling with a seeded generator.
public struct Sampler: Sendable {
    public let parameters: SamplingParameters
    private var generator: SeededGenerator

    public init(_ parameters: SamplingParameters) {
        self.parameters = parameters
        generator = SeededGenerator(seed: parameters.seed)
    }

    public mutating func sample(_ logits: ArraySlice<Float>) -> Int {
        let base = logits.startIndex
        guard parameters.temperature > 0 else {
            return logits.indices.max(by: { logits[$0] < logits[$1] })! - base
        }
        let maxLogit = logits.max()!
        var probabilities = logits.map { exp(($0 - maxLogit) / parameters.temperature) }
        let total = probabilities.reduce(0, +)
        for i in probabilities.indices { probabilities[i] /= total }
        var order = probabilities.indices.sorted { probabilities[$0] > probabilities[$1] }
        if parameters.topP < 1 {
            var cumulative: Float = 0
            var keep = 0
            for index in order {
                cumulative += probabilities[index]
                keep += 1
                if cumulative >= parameters.topP { break }
            }
            order = Array(order.prefix(keep))
        }
        let mass = order.reduce(Float(0)) { $0 + probabilities[$1] }
        var target = Float.random(in: 0..<1, using: &generator) * mass
        for index in order {
            target -= probabilities[index]
            if target < 0 { return index }
        }
        return order.last!
    }
}
