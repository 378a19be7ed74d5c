import Foundation
import Routing

/// A loaded MoE language model: the dense weights in memory, routed experts pulled from an
/// `ExpertSource`. `forward` runs new tokens through the model, extending a `KVCache`.
public final class MoEModel: Sendable {
    public let description: ModelDescription
    public let experts: any ExpertSource
    let embedding: any LinearWeight       // [vocab, hidden]
    let outputHead: any LinearWeight      // [vocab, hidden]; the embedding itself when tied
    let tiedHead: Bool
    let finalNorm: [Float]
    let layers: [DecoderLayer]
    let rope: RotaryEmbedding

    /// Loads the dense weights from `tensors`, checking every shape against `description`.
    /// Experts come from `experts`, or are all loaded from `tensors` when it is nil.
    /// `expertMaps` (by layer) applies a compression plan's routing; absent layers are unchanged,
    /// and `experts` is then asked for slots rather than original experts. `precision` says how
    /// BF16/F16 weights are held: as stored (the default) or widened to f32.
    public init(description: ModelDescription, tensors: some TensorProvider, experts: (any ExpertSource)? = nil,
                expertMaps: [Int: ExpertMap] = [:], precision: WeightPrecision = .stored) throws {
        self.description = description
        let n = description.names
        let (vocab, hidden) = (description.vocabularySize, description.hiddenSize)
        embedding = try tensors.weight(n.embedding, shape: [vocab, hidden], precision: precision)
        tiedHead = description.tieWordEmbeddings && !tensors.contains(n.outputHead)
        outputHead = tiedHead ? embedding : try tensors.weight(n.outputHead, shape: [vocab, hidden], precision: precision)
        finalNorm = try tensors.vector(n.finalNorm, count: hidden)
        layers = try (0..<description.layerCount).map {
            try DecoderLayer(layer: $0, description: description, tensors: tensors, precision: precision, expertMap: expertMaps[$0])
        }
        rope = RotaryEmbedding(description.rope)
        self.experts = try experts ?? LoadedExperts(description: description, tensors: tensors, precision: precision)
    }

    /// Opens a Hugging Face checkpoint folder and loads everything into memory.
    public convenience init(directory: URL, precision: WeightPrecision = .stored) throws {
        let checkpoint = try CheckpointDirectory(url: directory)
        let configFile = directory.appendingPathComponent("config.json").path
        let description = try Architectures.describe(configData: try checkpoint.configData(), file: configFile)
        try description.checkConfigAgainstTensors(file: configFile) { checkpoint.contains($0) ? try checkpoint.shape($0) : nil }
        try self.init(description: description, tensors: checkpoint, precision: precision)
    }

    public func makeCache() -> KVCache { KVCache(layerCount: description.layerCount) }

    /// Runs `tokens` (which follow the `cache.length` tokens already cached) and returns
    /// their next-token logits, one row of `vocabularySize` per token.
    /// An observer, when given, receives every MoE layer's routing and expert outputs.
    public func forward(_ tokens: [Int], cache: inout KVCache, skip: SkipOverride? = nil, observer: (any RoutingObserver)? = nil) throws -> Matrix {
        // A batch of one: the cache moves into the batch and back, without a copy.
        var caches = [KVCache]()
        caches.append(cache)
        cache = KVCache(layerCount: 0)
        defer { cache = caches[0] }
        return try forward(batch: [tokens], caches: &caches, skips: skip.map { [$0] }, observer: observer)[0]
    }

    /// One step for several sequences at once: `batch[i]` are new tokens of the sequence whose
    /// cache is `caches[i]` (a prompt to prefill, or the one token to decode). Their rows are
    /// stacked so each weight matrix, and each expert chosen by any of them, is read once for
    /// the whole batch. Returns each sequence's logits, one row per new token. `skips[i]`, when
    /// given, replaces the plan's skip rule for sequence `i` (nil entries keep the plan's).
    ///
    /// Batched results equal separate forward passes within rounding (a product over several
    /// rows sums in another order than one over a single row). If it throws, the caches
    /// may hold part of the step and should be discarded.
    public func forward(batch: [[Int]], caches: inout [KVCache], skips: [SkipOverride?]? = nil,
                        observer: (any RoutingObserver)? = nil) throws -> [Matrix] {
        precondition(batch.count == caches.count, "\(batch.count) sequences need as many caches, got \(caches.count)")
        precondition(skips == nil || skips!.count == batch.count, "one skip rule (or nil) per sequence")
        let vocab = description.vocabularySize
        var segments = [SequenceSegment]()
        var start = 0
        for (i, (tokens, cache)) in zip(batch, caches).enumerated() {
            guard !tokens.isEmpty else { throw ModelError.emptyInput }
            if let bad = tokens.first(where: { $0 < 0 || $0 >= vocab }) {
                throw ModelError.tokenOutOfRange(token: bad, vocabularySize: vocab)
            }
            guard cache.length + tokens.count <= description.maxPositionEmbeddings else {
                throw ModelError.contextOverflow(requested: cache.length + tokens.count, limit: description.maxPositionEmbeddings)
            }
            segments.append(SequenceSegment(rows: start..<(start + tokens.count), past: cache.length, skip: skips?[i]))
            start += tokens.count
        }
        guard !segments.isEmpty else { throw ModelError.emptyInput }
        var hidden = embedding.gatherRows(batch.flatMap { $0 })
        for (l, layer) in layers.enumerated() {
            // Move each sequence's layer cache out and back in, so appending never copies it.
            var layerCaches = caches.indices.map { i in
                defer { caches[i].layers[l] = KVCache.Layer() }
                return caches[i].layers[l]
            }
            defer { for i in caches.indices { caches[i].layers[l] = layerCaches[i] } }
            try layer.forward(&hidden, rope: rope, caches: &layerCaches, segments: segments,
                              epsilon: description.rmsNormEpsilon, experts: experts, observer: observer)
        }
        for (i, tokens) in batch.enumerated() { caches[i].length += tokens.count }
        Functions.rmsNorm(&hidden, weight: finalNorm, epsilon: description.rmsNormEpsilon)
        let logits = outputHead.linear(hidden)
        return segments.count == 1 ? [logits] : segments.map { logits.rows($0.rows) }
    }

    /// Logits for a whole sequence in one prefill, without keeping a cache.
    public func logits(_ tokens: [Int], observer: (any RoutingObserver)? = nil) throws -> Matrix {
        var cache = makeCache()
        return try forward(tokens, cache: &cache, observer: observer)
    }

    /// Bytes held by the dense (non-expert) weights as loaded: embedding, attention, norms,
    /// routers, shared experts, dense layers and the output head (counted once when tied).
    public var denseByteCount: Int {
        let floats = MemoryLayout<Float>.size
        var total = embedding.byteCount + finalNorm.count * floats + (tiedHead ? 0 : outputHead.byteCount)
        total += layers.reduce(0) { $0 + $1.byteCount }
        return total
    }
}

extension MoEModel {
    /// Bytes of dense weights one decode step reads: all of them as held, except an untied
    /// embedding, of which it reads one row.
    public var denseBytesPerToken: Int {
        tiedHead ? denseByteCount : denseByteCount - embedding.byteCount + embedding.byteCount / max(embedding.rows, 1)
    }
}

extension DecoderLayer {
    /// Bytes of this layer's dense weights as loaded (experts excluded).
    var byteCount: Int {
        let floats = MemoryLayout<Float>.size
        func bytes(_ w: (any LinearWeight)?) -> Int { w?.byteCount ?? 0 }
        func bytes(_ v: [Float]?) -> Int { (v?.count ?? 0) * floats }
        var total = bytes(inputNorm) + bytes(postAttentionNorm)
        switch attention {
        case let .grouped(a):
            total += bytes(a.q) + bytes(a.k) + bytes(a.v) + bytes(a.o)
            total += bytes(a.qBias) + bytes(a.kBias) + bytes(a.vBias) + bytes(a.oBias) + bytes(a.qNorm) + bytes(a.kNorm) + bytes(a.sinks)
        case let .latent(a):
            total += bytes(a.qProj) + bytes(a.qA) + bytes(a.qANorm) + bytes(a.qB)
            total += bytes(a.kvA) + bytes(a.kvANorm) + bytes(a.kvB) + bytes(a.o)
        }
        switch feedForward {
        case let .dense(f): total += f.residentBytes
        case let .moe(m):
            total += m.routerWeight.byteCount + bytes(m.routerBias) + bytes(m.sharedGate) + (m.shared?.residentBytes ?? 0)
        }
        return total
    }
}
