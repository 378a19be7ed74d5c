import Compression
import ExpertStore
import Foundation
import MoE
import Routing
import Synchronization

/// The model side of the server, free of HTTP: the store's tokenizer and chat template, one
/// runnable model per served plan, the plan selector (with `auto`), and the expert cache
/// (with `auto`, a memory bound, or plans too large to load at start).
/// `prepare` and `generate` are synchronous CPU work; the server calls them on its
/// `InferenceQueue`, never on an event loop.
public final class ServingEngine: @unchecked Sendable {
    /// One plan, ready to run.
    public struct ServedPlan: Sendable {
        public var plan: CompressionPlan
        public var model: MoEModel
        /// Experts loaded at start; nil for plans whose experts live in the cache.
        public var eagerExperts: PlanExpertSource?
        /// Runs this plan's requests in flight together, one forward pass per step.
        public var batcher: BatchGenerator
    }

    /// A request that passed every check, with its plan chosen and its prompt tokenized.
    public struct Prepared: Sendable {
        public var request: GenerationRequest
        public var plan: String
        public var auto: Bool
        public var promptTokens: [Int]
        public var maxTokens: Int
        /// The request's own skip rule, resolved for the plan (nil: the plan's).
        public var skip: SkipOverride?
    }

    public struct Result: Sendable, Equatable {
        public var text: String
        public var tokens: [Int]
        /// `stop` (end of sequence or a stop string) or `length` (max_tokens or the context).
        public var finishReason: String
        /// With `logprobs`: one entry per token whose text starts inside `text` (tokens past a
        /// stop string are left out).
        public var logprobs: [TokenLogprobs]?
    }

    public let store: ExpertStore
    public let tokenizer: Tokenizer
    public let chatTemplate: ChatTemplate
    /// Sampling settings for fields a request leaves out, from the store's `generation_config.json`.
    public let samplingDefaults: SamplingDefaults
    public let description: ModelDescription
    public let configuration: ServerConfiguration
    public let plans: [String: ServedPlan]
    public let selector: PlanSelector?
    /// The experts' cache when they come through one (`--auto`, `--max-expert-memory`, or
    /// plans that do not fit in memory); nil when every plan's experts were loaded at start.
    public let cache: ExpertCache?
    /// Whether the experts were loaded at start or come through `cache`, and why.
    public let residency: ExpertResidency
    /// Served plan names in the order given.
    public let planNames: [String]
    /// Skip rules requests asked for, resolved per plan ("plan rule" → override): Lu et al.'s
    /// thresholds read a stored profile, so each is resolved once.
    private let resolvedSkips = Mutex<[String: SkipOverride]>([:])

    public init(store: ExpertStore, configuration: ServerConfiguration) throws {
        guard !configuration.plans.isEmpty else { throw ServeError.noPlans }
        self.store = store
        self.configuration = configuration
        description = try store.modelDescription()
        guard let tokenizerData = try store.file("tokenizer.json") else { throw ServeError.noTokenizer(store: store.path) }
        tokenizer = try Tokenizer(data: tokenizerData, file: "tokenizer.json in \(store.path)")
        chatTemplate = ChatTemplate(tokenizerConfig: try store.file("tokenizer_config.json"), templateFile: try store.file("chat_template.jinja"))
        samplingDefaults = SamplingDefaults(generationConfig: try store.file("generation_config.json"))
        var names = [String]()
        for name in configuration.plans where !names.contains(name) { names.append(name) }
        planNames = names
        let documents = try names.map { try CompressionPlan.named($0, in: store) }   // "full": the unmodified model

        let footprint = try ExpertFootprint(store: store, plans: documents, precision: configuration.expertPrecision)
        residency = ExpertResidency.decide(footprint: footprint, requestedLimit: configuration.maxExpertMemory,
                                           budget: configuration.memoryBudget ?? AvailableMemory.current(), onDemand: configuration.auto)
        var plans = [String: ServedPlan]()
        switch residency.mode {
        case let .cached(limit):
            // Nothing is loaded up front: every plan's experts come through one shared cache,
            // so plans keeping the same expert hold one copy.
            let cache = ExpertCache(limitBytes: limit)
            let loader = try StoreExpertLoader(store: store, precision: configuration.expertPrecision)
            for plan in documents {
                let model = try CachedPlanExpertSource.model(plan: plan, store: store, cache: cache, loader: loader)
                plans[plan.name] = ServedPlan(plan: plan, model: model, eagerExperts: nil,
                                              batcher: BatchGenerator(model: model, maxBatchSize: configuration.maxConcurrency))
            }
            self.cache = cache
        case .resident:
            for plan in documents {
                let (model, experts) = try PlanLoader.model(plan: plan, store: store, precision: configuration.expertPrecision)
                plans[plan.name] = ServedPlan(plan: plan, model: model, eagerExperts: experts,
                                              batcher: BatchGenerator(model: model, maxBatchSize: configuration.maxConcurrency))
            }
            cache = nil
        }
        selector = configuration.auto ? try PlanSelector(store: store, plans: documents) : nil
        self.plans = plans
    }

    /// Bytes of expert weights held now: the fixed plans' experts, or the cache's.
    public var residentExpertBytes: Int {
        if let cache { return cache.statistics.residentBytes }
        return plans.values.reduce(0) { $0 + ($1.eagerExperts?.residentBytes ?? 0) }
    }

    /// How the plans' batchers have run so far, summed over plans (largest: the largest of any).
    public var batchStatistics: BatchGenerator.Statistics {
        plans.values.map(\.batcher.statistics).reduce(into: BatchGenerator.Statistics()) { total, s in
            total.steps += s.steps
            total.sequenceSteps += s.sequenceSteps
            total.largestBatch = max(total.largestBatch, s.largestBatch)
        }
    }

    /// Tokenizes, picks the plan and checks the request against the context.
    /// - Throws: `APIError` 404 for a plan not served here, 422 for a prompt that leaves no
    ///   room in the context, 400 for an empty prompt.
    public func prepare(_ request: GenerationRequest, defaultMaxTokens: Int?) throws -> Prepared {
        let tokens = tokenizer.encode(request.prompt, addSpecialTokens: request.addSpecialTokens)
        guard !tokens.isEmpty else { throw APIError.invalidParameter("prompt", "the prompt encodes to no tokens") }
        let limit = description.maxPositionEmbeddings
        guard tokens.count < limit else { throw APIError.contextOverflow(promptTokens: tokens.count, limit: limit) }
        let (plan, auto) = try resolvePlan(request.model, tokens: tokens)
        let room = limit - tokens.count
        let maxTokens = min(request.maxTokens ?? defaultMaxTokens ?? room, room)
        let skip = try request.skip.map { try resolveSkip($0, plan: plan) }
        return Prepared(request: request, plan: plan, auto: auto, promptTokens: tokens, maxTokens: maxTokens, skip: skip)
    }

    /// `skip` for the served plan `name`, with the plan's own profile (the first it was built
    /// from), else the store's first, for Lu et al.'s thresholds.
    func resolveSkip(_ skip: SkipRequest, plan name: String) throws -> SkipOverride {
        let key = "\(name) \(skip)"
        if let known = resolvedSkips.withLock({ $0[key] }) { return known }
        let plan = plans[name]!.plan
        let resolved = try skip.resolve(plan: plan, description: description) {
            guard let profileName = try plan.recipe.profiles.first ?? store.profiles.names().sorted().first else { return nil }
            return try store.profiles.get(RoutingProfile.self, named: profileName)
        }
        resolvedSkips.withLock { $0[key] = resolved }
        return resolved
    }

    /// Which served plan answers: the one named, the only one, or (with `auto`, for `auto` or
    /// no model) the one whose routing signature is nearest the prompt's.
    func resolvePlan(_ requested: String?, tokens: [Int]) throws -> (String, Bool) {
        if let requested, requested != "auto" {
            guard plans[requested] != nil else { throw APIError.modelNotFound(requested, served: servedModelNames) }
            return (requested, false)
        }
        if let selector { return (try selector.choose(for: tokens).plan, true) }
        if let requested { throw APIError.modelNotFound(requested, served: servedModelNames) }
        guard planNames.count == 1 else {
            throw APIError.invalidParameter("model", "model is required: this server serves \(planNames.joined(separator: ", "))")
        }
        return (planNames[0], false)
    }

    /// What a request's `model` may name.
    public var servedModelNames: [String] { (selector == nil ? [] : ["auto"]) + planNames }

    /// Generates the answer, passing each piece of text to `onText` as soon as it is final
    /// (stop strings are held back until they are ruled out). `onText` returning false stops
    /// generation (the client went away). The request joins its plan's running batch (see
    /// `BatchGenerator`); greedy decoding matches `Generator` token for token up to rounding
    /// differences of batched products. Blocks the calling thread until the answer ends.
    /// `onToken` runs as each token is chosen (before its text, which a stop-string check may hold back).
    public func generate(_ prepared: Prepared, onToken: () -> Void = {}, onText: (String) -> Bool = { _ in true }) throws -> Result {
        let served = plans[prepared.plan]!
        var stops = prepared.request.stop
        if let endOfTurn = prepared.request.endOfTurn { stops.append(endOfTurn) }
        var filter = StopSequenceFilter(stops: stops)
        var detokenizer = StreamingDetokenizer(tokenizer: tokenizer)
        var text = ""
        var listening = true
        var stopTokens = Set(description.eosTokenIDs)
        if let endOfTurn = prepared.request.endOfTurn, let id = tokenizer.tokenID(endOfTurn) { stopTokens.insert(id) }
        var logprobs = [TokenLogprobs]()
        let tokens = try served.batcher.generate(
            prompt: prepared.promptTokens, maxTokens: prepared.maxTokens, sampling: prepared.request.sampling, stopTokens: stopTokens,
            logprobs: prepared.request.logprobs, skip: prepared.skip
        ) { token, tokenLogprobs in
            onToken()
            if let tokenLogprobs { logprobs.append(tokenLogprobs) }
            let piece = filter.append(detokenizer.append(token))
            if !piece.isEmpty {
                text += piece
                listening = onText(piece)
            }
            return listening && !filter.stopped
        }
        if !filter.stopped {
            let rest = filter.append(detokenizer.flush()) + filter.flush()
            if !rest.isEmpty {
                text += rest
                _ = onText(rest)
            }
        }
        // `length` when the token budget ran out without a stop token or string.
        // (Stop tokens are never emitted, so a full budget means none was produced.)
        let hitLimit = !filter.stopped && tokens.count == prepared.maxTokens
        var result = Result(text: text, tokens: tokens, finishReason: hitLimit ? "length" : "stop")
        if prepared.request.logprobs != nil {
            // Keep the tokens whose text begins before the answer's end (a stop string cuts it).
            let length = text.utf8.count
            var offset = 0
            result.logprobs = logprobs.prefix { entry in
                defer { offset += tokenizer.bytes([entry.token]).count }
                return offset < length
            }
        }
        return result
    }
}
