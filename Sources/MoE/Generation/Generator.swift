/// Autoregressive generation: one prefill of the prompt, then one decode step per token.
public struct Generator {
    public let model: MoEModel

    public init(model: MoEModel) { self.model = model }

    /// Generates up to `maxTokens` tokens after `prompt`, calling `onToken` for each as soon
    /// as it is chosen; stops early at any of `stopTokens` (not emitted) or when `onToken`
    /// returns false. Throws if the prompt is empty or would not fit the context.
    @discardableResult
    public func generate(prompt: [Int], maxTokens: Int, sampling: SamplingParameters = .init(),
                         stopTokens: Set<Int> = [], onToken: (Int) throws -> Bool = { _ in true }) throws -> [Int] {
        guard !prompt.isEmpty else { throw ModelError.emptyInput }
        let limit = model.description.maxPositionEmbeddings
        guard prompt.count <= limit else { throw ModelError.contextOverflow(requested: prompt.count, limit: limit) }
        var sampler = Sampler(sampling, prompt: prompt)
        var cache = model.makeCache()
        // A NaN or infinity would be sampled as some token: an error rather than a wrong answer.
        var logits = try model.forward(prompt, cache: &cache).checkedFinite()
        var produced = [Int]()
        while produced.count < maxTokens {
            let last = logits.rows - 1
            let next = sampler.sample(logits.values[(last * logits.columns)..<((last + 1) * logits.columns)])
            if stopTokens.contains(next) { break }
            produced.append(next)
            guard try onToken(next), produced.count < maxTokens, cache.length < limit else { break }
            logits = try model.forward([next], cache: &cache).checkedFinite()
        }
        return produced
    }
}
