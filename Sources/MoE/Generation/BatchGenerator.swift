import Foundation

/// Generation for many concurrent requests with one model (continuous batching): a thread of
/// its own runs steps, and each step is a single forward pass over the next tokens of every
/// sequence in flight. A new request joins at the next step, its prompt prefilled alongside
/// the others' decode tokens, and leaves as soon as it ends, so short answers never wait for
/// long ones. Decoding is memory-bound, so one step for several sequences reads each weight,
/// and each expert any of them chose, once instead of once per sequence.
///
/// Each sequence samples with its own `Sampler`, so a greedy or seeded answer is what
/// `Generator` produces for the same request, up to rounding: products over a stack of rows
/// sum in another order than over one row, which can flip a near-tie in the logits.
public final class BatchGenerator: @unchecked Sendable {
    /// Counters over the generator's life.
    public struct Statistics: Sendable, Equatable {
        /// Forward passes run.
        public var steps = 0
        /// Sum over steps of the sequences in each (steps × mean batch size).
        public var sequenceSteps = 0
        /// The most sequences one forward pass has carried.
        public var largestBatch = 0

        public init() {}
    }

    public let model: MoEModel
    public let maxBatchSize: Int
    private let scheduler: Scheduler

    public init(model: MoEModel, maxBatchSize: Int) {
        precondition(maxBatchSize > 0, "a batch holds at least one sequence")
        self.model = model
        self.maxBatchSize = maxBatchSize
        scheduler = Scheduler(model: model, maxBatchSize: maxBatchSize)
        let scheduler = self.scheduler
        let thread = Thread { scheduler.run() }
        thread.name = "moekit-batch"
        thread.stackSize = 8 << 20
        thread.start()
    }

    deinit { scheduler.close() }

    public var statistics: Statistics { scheduler.condition.withLock { scheduler.statistics } }

    /// Generates up to `maxTokens` tokens after `prompt` as part of the running batch, with
    /// `Generator.generate`'s contract: stops at any of `stopTokens` (not emitted), when
    /// `onToken` returns false, or at the end of the context. Blocks the calling thread until
    /// this sequence ends; `onToken` runs on the batch's thread, between steps.
    /// A failing forward pass fails every sequence of that step with its error.
    @discardableResult
    public func generate(prompt: [Int], maxTokens: Int, sampling: SamplingParameters = .init(),
                         stopTokens: Set<Int> = [], onToken: (Int) throws -> Bool = { _ in true }) throws -> [Int] {
        try generate(prompt: prompt, maxTokens: maxTokens, sampling: sampling, stopTokens: stopTokens, logprobs: nil) { token, _ in try onToken(token) }
    }

    /// `generate`, also handing `onChoice` each token's `TokenLogprobs` (log-softmax of the raw
    /// logits, with the `logprobs` most likely alternatives) when `logprobs` is set.
    @discardableResult
    /// `skip` replaces the plan's skip rule for this sequence only (see `SkipOverride`).
    public func generate(prompt: [Int], maxTokens: Int, sampling: SamplingParameters = .init(), stopTokens: Set<Int> = [],
                         logprobs: Int?, skip: SkipOverride? = nil, onChoice: (Int, TokenLogprobs?) throws -> Bool) throws -> [Int] {
        // The checks a forward pass would make, here, so one bad request cannot fail the batch.
        guard !prompt.isEmpty else { throw ModelError.emptyInput }
        let (vocab, limit) = (model.description.vocabularySize, model.description.maxPositionEmbeddings)
        if let bad = prompt.first(where: { $0 < 0 || $0 >= vocab }) {
            throw ModelError.tokenOutOfRange(token: bad, vocabularySize: vocab)
        }
        guard prompt.count <= limit else { throw ModelError.contextOverflow(requested: prompt.count, limit: limit) }
        guard maxTokens > 0 else { return [] }
        // The scheduler calls `onChoice` only until this sequence's outcome is set, and this
        // call waits for that, so the closure does not outlive the call.
        return try withoutActuallyEscaping(onChoice) { onChoice in
            let sequence = Sequence(prompt: prompt, maxTokens: maxTokens, sampler: Sampler(sampling, prompt: prompt), stopTokens: stopTokens,
                                    logprobs: logprobs, skip: skip, onToken: onChoice, cache: model.makeCache())
            return try scheduler.submitAndWait(sequence)
        }
    }

    /// One request in flight. Touched only by the scheduler thread until `outcome` is set
    /// (under the scheduler's lock), after which only its caller reads it.
    final class Sequence {
        let maxTokens: Int
        var sampler: Sampler
        let stopTokens: Set<Int>
        /// How many alternatives to report with each token's log-probability; nil: none.
        let logprobs: Int?
        let skip: SkipOverride?
        /// Dropped (set to nil) before `outcome` is set: the caller's closure must not outlive its call.
        var onToken: ((Int, TokenLogprobs?) throws -> Bool)?
        var cache: KVCache
        /// Tokens to feed at the next step: the prompt, then the last token chosen.
        var input: [Int]
        var produced = [Int]()
        var outcome: Result<[Int], any Error>?

        init(prompt: [Int], maxTokens: Int, sampler: Sampler, stopTokens: Set<Int>, logprobs: Int?, skip: SkipOverride?,
             onToken: @escaping (Int, TokenLogprobs?) throws -> Bool, cache: KVCache) {
            (input, self.maxTokens, self.sampler, self.stopTokens, self.onToken, self.cache) = (prompt, maxTokens, sampler, stopTokens, onToken, cache)
            (self.logprobs, self.skip) = (logprobs, skip)
        }
    }

    /// The batch loop, separate from `BatchGenerator` so that its thread does not keep the
    /// generator alive: the generator's deinit closes it.
    final class Scheduler: @unchecked Sendable {
        let model: MoEModel
        let maxBatchSize: Int
        let condition = NSCondition()
        // Guarded by `condition`:
        private var waiting = [Sequence]()
        private var closed = false
        var statistics = Statistics()
        // Owned by the scheduler thread:
        private var active = [Sequence]()

        init(model: MoEModel, maxBatchSize: Int) {
            self.model = model
            self.maxBatchSize = maxBatchSize
        }

        func submitAndWait(_ sequence: Sequence) throws -> [Int] {
            condition.lock()
            defer { condition.unlock() }
            guard !closed else { throw ModelError.generatorClosed }
            waiting.append(sequence)
            condition.broadcast()
            while sequence.outcome == nil { condition.wait() }
            return try sequence.outcome!.get()
        }

        func close() {
            condition.withLock {
                closed = true
                condition.broadcast()
            }
        }

        func run() {
            while true {
                condition.lock()
                while active.isEmpty && waiting.isEmpty && !closed { condition.wait() }
                if active.isEmpty && waiting.isEmpty {
                    condition.unlock()
                    return
                }
                let joining = min(maxBatchSize - active.count, waiting.count)
                active += waiting.prefix(joining)
                waiting.removeFirst(joining)
                statistics.steps += 1
                statistics.sequenceSteps += active.count
                statistics.largestBatch = max(statistics.largestBatch, active.count)
                condition.unlock()

                let finished = step()
                if !finished.isEmpty {
                    // Waking the callers only when one of them is done keeps the others asleep.
                    condition.withLock {
                        for (sequence, outcome) in finished {
                            sequence.onToken = nil
                            sequence.outcome = outcome
                        }
                        condition.broadcast()
                    }
                }
            }
        }

        /// One forward pass over every active sequence, then one token chosen for each.
        /// Returns the sequences that ended, with their outcome, and drops them from `active`.
        private func step() -> [(Sequence, Result<[Int], any Error>)] {
            var caches = active.map { sequence in
                defer { sequence.cache = KVCache(layerCount: 0) }
                return sequence.cache
            }
            let logits: [Matrix]
            do {
                logits = try model.forward(batch: active.map(\.input), caches: &caches, skips: active.map(\.skip)).map { try $0.checkedFinite() }
            } catch {
                defer { active.removeAll() }
                return active.map { ($0, .failure(error)) }
            }
            let limit = model.description.maxPositionEmbeddings
            var finished = [(Sequence, Result<[Int], any Error>)]()
            for (i, sequence) in active.enumerated() {
                sequence.cache = caches[i]
                let rows = logits[i]
                let last = rows.values[((rows.rows - 1) * rows.columns)...]
                let next = sequence.sampler.sample(last)
                if sequence.stopTokens.contains(next) {
                    finished.append((sequence, .success(sequence.produced)))
                    continue
                }
                sequence.produced.append(next)
                let logprobs = sequence.logprobs.map { TokenLogprobs(logits: last, token: next, top: $0) }
                do {
                    let listening = try sequence.onToken?(next, logprobs) ?? false
                    if !listening || sequence.produced.count >= sequence.maxTokens || sequence.cache.length >= limit {
                        finished.append((sequence, .success(sequence.produced)))
                    } else {
                        sequence.input = [next]
                    }
                } catch {
                    finished.append((sequence, .failure(error)))
                }
            }
            let ended = Set(finished.map { ObjectIdentifier($0.0) })
            active.removeAll { ended.contains(ObjectIdentifier($0)) }
            return finished
        }
    }
}
