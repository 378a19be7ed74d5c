import Foundation
import MoE
import Routing

/// Quality of a slimmed model against the full one on held-out text.
public struct EvaluationResult: Codable, Sendable, Equatable {
    public var plan: String
    public var data: String
    /// Tokens scored (predicted), summed over windows.
    public var tokens: Int
    public var perplexity: Double
    public var referencePerplexity: Double
    /// (perplexity / reference − 1) · 100.
    public var perplexityChangePercent: Double
    /// Mean KL(full ‖ slim) of the next-token distributions, in nats.
    public var meanKL: Double
    /// Share of positions where the slim model's argmax equals the full model's.
    public var topOneAgreement: Double
    public var expertBytes: Int
    /// Bytes of the dense weights in memory (as stored, or as the plan quantized them).
    public var denseBytes: Int
    /// Tokens per second of this model's forward passes (prefill of each window).
    public var tokensPerSecond: Double
    /// Experts run per token, averaged over MoE layers, and per MoE layer in order: the
    /// family's top-k unless the plan's routing rule changes or skips them.
    public var expertsPerToken: Double
    public var expertsPerTokenByLayer: [Double]
}

/// One model to score, under its plan's name.
public struct EvaluationCandidate {
    public var plan: String
    public var model: MoEModel
    public var expertBytes: Int
    public var denseBytes: Int

    public init(plan: String, model: MoEModel, expertBytes: Int) {
        self.plan = plan
        self.model = model
        self.expertBytes = expertBytes
        denseBytes = model.denseByteCount
    }
}

/// Scores held-out text in fixed windows: each window is its own sequence and every token
/// after the first is predicted. The full model runs once per window and every candidate is
/// compared with it there, so a table of plans costs one reference pass.
public struct Evaluator {
    public var window: Int

    public init(window: Int = 256) {
        precondition(window >= 2)
        self.window = window
    }

    /// Splits a token stream into windows of `window` tokens (a shorter tail is kept if ≥ 2).
    public func windows(_ tokens: [Int]) -> [[Int]] {
        stride(from: 0, to: tokens.count, by: window).map { Array(tokens[$0..<min($0 + window, tokens.count)]) }.filter { $0.count >= 2 }
    }

    public func evaluate(_ candidates: [EvaluationCandidate], reference: MoEModel, windows: [[Int]], data: String,
                         progress: (Int, Int) -> Void = { _, _ in }) throws -> [EvaluationResult] {
        var scores = Scores(candidates: candidates.count)
        let usage = scores.usage
        for (w, ids) in windows.enumerated() {
            let referenceLogits = try reference.logits(ids).checkedFinite()
            let logits = try candidates.enumerated().map { c, candidate in
                try scores.timed(c) { try candidate.model.logits(ids, observer: usage[c]) }.checkedFinite()
            }
            scores.add(ids: ids, reference: referenceLogits, candidates: logits)
            progress(w + 1, windows.count)
        }
        return scores.results(plans: candidates.map(\.plan), expertBytes: candidates.map(\.expertBytes),
                              denseBytes: candidates.map(\.denseBytes), data: data, windows: windows)
    }

    /// The same evaluation for models bigger than memory: each model (the reference, then each
    /// candidate) runs all windows through one layer at a time, holding one layer's weights and
    /// every window's hidden state; the output head then scores the windows. Each window runs
    /// through each layer on its own, with the kernels a model in memory uses, so the results
    /// equal `evaluate`'s bit for bit (tokens per second aside).
    public func evaluateStreaming(_ candidates: [StreamedCandidate], reference: StreamedCandidate, runner: LayerwiseRunner,
                                  windows: [[Int]], data: String,
                                  progress: (String, Int, Int) -> Void = { _, _, _ in }) throws -> [EvaluationResult] {
        var scores = Scores(candidates: candidates.count)
        let usage = scores.usage
        let layerCount = runner.description.layerCount
        // A plan that quantized dense weights reads them through its own tensors.
        func runnerFor(_ model: StreamedCandidate) -> LayerwiseRunner {
            model.tensors.map { LayerwiseRunner(description: runner.description, tensors: $0, precision: runner.precision) } ?? runner
        }
        func lastHiddenStates(_ model: StreamedCandidate, usage: ExpertUsageCounter? = nil) throws -> [Matrix] {
            let runner = runnerFor(model)
            var hidden = try runner.embed(windows)
            for l in 0..<layerCount {
                let layer = try runner.layer(l, expertMap: model.expertMaps[l])
                let experts = try model.expertsForLayer(l)
                for w in hidden.indices { try layer.run(&hidden[w], experts: experts, observer: usage) }
                progress(model.plan, l + 1, layerCount)
            }
            return hidden
        }
        let referenceHidden = try lastHiddenStates(reference)
        var candidateHidden = [[Matrix]]()
        for (c, candidate) in candidates.enumerated() {
            candidateHidden.append(try scores.timed(c) { try lastHiddenStates(candidate, usage: usage[c]) })
        }
        // The reference head stays loaded; each candidate's (its own when it quantized it) is
        // loaded in turn, so at most two heads are in memory and no logits are kept.
        let referenceHead = try runner.head()
        let referenceLogits = { (w: Int) in try referenceHead.logits(referenceHidden[w]).checkedFinite() }
        for (w, ids) in windows.enumerated() {
            scores.addReference(ids: ids, logProbabilities: Scores.logProbabilities(try referenceLogits(w), count: ids.count - 1))
        }
        for (c, candidate) in candidates.enumerated() {
            let head = candidate.tensors == nil ? referenceHead : try runnerFor(candidate).head()
            for (w, ids) in windows.enumerated() {
                let q = Scores.logProbabilities(try referenceLogits(w), count: ids.count - 1)
                let logits = try scores.timed(c) { head.logits(candidateHidden[c][w]) }.checkedFinite()
                scores.add(candidate: c, ids: ids, referenceLogProbabilities: q, logits: logits)
            }
        }
        return scores.results(plans: candidates.map(\.plan), expertBytes: candidates.map(\.expertBytes),
                              denseBytes: candidates.map(\.denseBytes), data: data, windows: windows)
    }

    /// Running sums of every candidate's scores against the reference, window by window.
    struct Scores {
        var nll: [Double], kl: [Double], seconds: [Double]
        var agree: [Int]
        /// Experts each candidate's layers chose per token.
        let usage: [ExpertUsageCounter]
        var referenceNLL = 0.0
        var count = 0

        init(candidates: Int) {
            usage = (0..<candidates).map { _ in ExpertUsageCounter() }
            (nll, kl, seconds, agree) = (Array(repeating: 0, count: candidates), Array(repeating: 0, count: candidates),
                                         Array(repeating: 0, count: candidates), Array(repeating: 0, count: candidates))
        }

        /// Runs `body`, adding its time to candidate `c`'s.
        mutating func timed<T>(_ c: Int, _ body: () throws -> T) rethrows -> T {
            let start = DispatchTime.now().uptimeNanoseconds
            defer { seconds[c] += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }
            return try body()
        }

        mutating func add(ids: [Int], reference: Matrix, candidates: [Matrix]) {
            let q = Self.logProbabilities(reference, count: ids.count - 1)
            addReference(ids: ids, logProbabilities: q)
            for (c, logits) in candidates.enumerated() { add(candidate: c, ids: ids, referenceLogProbabilities: q, logits: logits) }
        }

        static func logProbabilities(_ logits: Matrix, count: Int) -> [[Double]] {
            (0..<count).map { Evaluator.logSoftmax(logits, row: $0) }
        }

        /// The reference's own score of one window (every position but the last predicts the next token).
        mutating func addReference(ids: [Int], logProbabilities q: [[Double]]) {
            for t in 0..<(ids.count - 1) { referenceNLL -= q[t][ids[t + 1]] }
            count += ids.count - 1
        }

        /// Candidate `c`'s scores on one window against the reference's log-probabilities `q`.
        mutating func add(candidate c: Int, ids: [Int], referenceLogProbabilities q: [[Double]], logits: Matrix) {
            for t in 0..<(ids.count - 1) {
                let p = Evaluator.logSoftmax(logits, row: t)
                nll[c] -= p[ids[t + 1]]
                var divergence = 0.0
                for v in q[t].indices { divergence += exp(q[t][v]) * (q[t][v] - p[v]) }
                kl[c] += divergence
                if Evaluator.argmax(p) == Evaluator.argmax(q[t]) { agree[c] += 1 }
            }
        }

        func results(plans: [String], expertBytes: [Int], denseBytes: [Int], data: String, windows: [[Int]]) -> [EvaluationResult] {
            let n = Double(max(count, 1))
            let referencePerplexity = exp(referenceNLL / n)
            let tokens = Double(windows.reduce(0) { $0 + $1.count })
            return plans.indices.map { c in
                let perplexity = exp(nll[c] / n)
                let experts = usage[c].meanExpertsPerLayer
                return EvaluationResult(
                    plan: plans[c], data: data, tokens: count, perplexity: perplexity, referencePerplexity: referencePerplexity,
                    perplexityChangePercent: (perplexity / referencePerplexity - 1) * 100, meanKL: kl[c] / n,
                    topOneAgreement: Double(agree[c]) / n, expertBytes: expertBytes[c], denseBytes: denseBytes[c],
                    tokensPerSecond: tokens / max(seconds[c], 1e-9), expertsPerToken: usage[c].meanExpertsPerToken,
                    expertsPerTokenByLayer: experts.keys.sorted().map { experts[$0]! })
            }
        }
    }

    /// Log-probabilities of one row of logits, in double precision.
    static func logSoftmax(_ logits: Matrix, row: Int) -> [Double] {
        let slice = logits.values[(row * logits.columns)..<((row + 1) * logits.columns)]
        let maximum = Double(slice.max()!)
        let logSum = log(slice.reduce(0.0) { $0 + exp(Double($1) - maximum) }) + maximum
        return slice.map { Double($0) - logSum }
    }

    static func argmax(_ values: [Double]) -> Int { values.indices.max { values[$0] < values[$1] }! }
}
