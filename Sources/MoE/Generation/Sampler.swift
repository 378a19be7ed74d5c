import Foundation

/// How the next token is chosen from the logits. The defaults change nothing: greedy, no
/// truncation, no penalty.
public struct SamplingParameters: Sendable, Equatable {
    /// 0 means greedy (argmax of the penalized logits).
    public var temperature: Float
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches `topP`.
    public var topP: Float
    /// Keep only the `topK` most likely tokens; 0 keeps all.
    public var topK: Int
    /// Keep only tokens whose probability is at least `minP` times the most likely one's; 0 keeps all.
    public var minP: Float
    /// CTRL's (and Hugging Face's) repetition penalty over the prompt and the tokens generated
    /// so far: a seen token's positive logit is divided by it, a negative one multiplied; 1: off.
    public var repetitionPenalty: Float
    /// OpenAI's presence penalty: subtracted once from the logit of every token generated so far.
    public var presencePenalty: Float
    /// OpenAI's frequency penalty: subtracted from a token's logit once per time it was generated so far.
    public var frequencyPenalty: Float
    public var seed: UInt64

    public init(temperature: Float = 0, topP: Float = 1, topK: Int = 0, minP: Float = 0, repetitionPenalty: Float = 1,
                presencePenalty: Float = 0, frequencyPenalty: Float = 0, seed: UInt64 = 0) {
        self.temperature = temperature
        self.topP = topP
        self.topK = topK
        self.minP = minP
        self.repetitionPenalty = repetitionPenalty
        self.presencePenalty = presencePenalty
        self.frequencyPenalty = frequencyPenalty
        self.seed = seed
    }

    var hasPenalties: Bool { repetitionPenalty != 1 || presencePenalty != 0 || frequencyPenalty != 0 }
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

/// Picks tokens from logits, in the order vLLM applies the same settings: penalties on the raw
/// logits, then greedy (temperature 0) or temperature, top-k, top-p and min-p, then a draw
/// from a seeded generator. It remembers the tokens it picked, for the penalties.
public struct Sampler: Sendable {
    public let parameters: SamplingParameters
    private var generator: SeededGenerator
    /// Tokens seen by the repetition penalty (prompt and generated).
    private var seen: Set<Int>
    /// Times each token was generated (presence and frequency penalties).
    private var generatedCounts = [Int: Int]()

    /// `prompt`: the tokens the repetition penalty also counts as seen.
    public init(_ parameters: SamplingParameters, prompt: [Int] = []) {
        self.parameters = parameters
        generator = SeededGenerator(seed: parameters.seed)
        seen = parameters.repetitionPenalty != 1 ? Set(prompt) : []
    }

    /// Chooses the next token and records it as generated.
    public mutating func sample(_ logits: ArraySlice<Float>) -> Int {
        let values = parameters.hasPenalties ? penalized(logits) : Array(logits)
        let chosen = pick(values)
        record(chosen)
        return chosen
    }

    /// The logits after the penalties, by the definitions on `SamplingParameters`.
    public func penalized(_ logits: ArraySlice<Float>) -> [Float] {
        var values = Array(logits)
        let penalty = parameters.repetitionPenalty
        if penalty != 1 {
            for token in seen where token >= 0 && token < values.count {
                values[token] = values[token] > 0 ? values[token] / penalty : values[token] * penalty
            }
        }
        for (token, count) in generatedCounts where token >= 0 && token < values.count {
            values[token] -= Float(count) * parameters.frequencyPenalty + parameters.presencePenalty
        }
        return values
    }

    private mutating func record(_ token: Int) {
        if parameters.repetitionPenalty != 1 { seen.insert(token) }
        if parameters.presencePenalty != 0 || parameters.frequencyPenalty != 0 { generatedCounts[token, default: 0] += 1 }
    }

    /// The probabilities each candidate keeps after temperature, top-k, top-p and min-p,
    /// most likely first (not renormalized). Empty for greedy decoding.
    public func candidates(_ values: [Float]) -> [(token: Int, probability: Float)] {
        guard parameters.temperature > 0 else { return [] }
        let maxLogit = values.max()!
        var probabilities = values.map { exp(($0 - maxLogit) / parameters.temperature) }
        let total = probabilities.reduce(0, +)
        for i in probabilities.indices { probabilities[i] /= total }
        var order = probabilities.indices.sorted { probabilities[$0] > probabilities[$1] }
        if parameters.topK > 0 && parameters.topK < order.count { order = Array(order.prefix(parameters.topK)) }
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
        if parameters.minP > 0, let top = order.first {
            let floor = parameters.minP * probabilities[top]
            order = order.filter { probabilities[$0] >= floor }
        }
        return order.map { ($0, probabilities[$0]) }
    }

    private mutating func pick(_ values: [Float]) -> Int {
        guard parameters.temperature > 0 else {
            return values.indices.max(by: { values[$0] < values[$1] })!
        }
        let kept = candidates(values)
        let mass = kept.reduce(Float(0)) { $0 + $1.probability }
        var target = Float.random(in: 0..<1, using: &generator) * mass
        for candidate in kept {
            target -= candidate.probability
            if target < 0 { return candidate.token }
        }
        return kept.last!.token
    }
}

/// One chosen token's log-probability and the most likely alternatives', taken from the raw
/// logits (log-softmax before penalties, temperature and truncation, as vLLM reports by
/// default), so they describe the model, not the sampling settings.
public struct TokenLogprobs: Sendable, Equatable {
    public var token: Int
    public var logprob: Float
    /// The `count` most likely tokens, most likely first.
    public var top: [Alternative]

    public struct Alternative: Sendable, Equatable {
        public var token: Int
        public var logprob: Float
    }

    /// Log-softmax of `logits` (in double precision), for `token` and the `top` most likely.
    public init(logits: ArraySlice<Float>, token: Int, top count: Int) {
        let base = logits.startIndex
        let maxLogit = Double(logits.max()!)
        let logSum = log(logits.reduce(0.0) { $0 + exp(Double($1) - maxLogit) }) + maxLogit
        func logSoftmax(_ index: Int) -> Float { Float(Double(logits[base + index]) - logSum) }
        self.token = token
        logprob = logSoftmax(token)
        var best = [Int]()
        if count > 0 {
            // A partial selection: keep the `count` largest in a small sorted list.
            for index in 0..<logits.count {
                let value = logits[base + index]
                if best.count < count || value > logits[base + best[best.count - 1]] {
                    let at = best.firstIndex { value > logits[base + $0] } ?? best.count
                    best.insert(index, at: at)
                    if best.count > count { best.removeLast() }
                }
            }
        }
        top = best.map { Alternative(token: $0, logprob: logSoftmax($0)) }
    }
}
