import Routing

/// One transformer decoder layer: pre-norm attention and pre-norm feed-forward, each
/// added back to the residual stream.
struct DecoderLayer: Sendable {
    enum Attention: Sendable {
        case grouped(GroupedQueryAttention)
        case latent(LatentAttention)
    }

    enum FeedForwardBlock: Sendable {
        case dense(any Expert)
        case moe(MoEBlock)
    }

    let inputNorm: [Float]
    let postAttentionNorm: [Float]
    let attention: Attention
    let feedForward: FeedForwardBlock

    init(layer l: Int, description d: ModelDescription, tensors: some TensorProvider, precision: WeightPrecision,
         expertMap: ExpertMap? = nil) throws {
        let n = d.names
        inputNorm = try tensors.vector(n.inputNorm(l), count: d.hiddenSize)
        postAttentionNorm = try tensors.vector(n.postAttentionNorm(l), count: d.hiddenSize)
        attention = d.attention.latent == nil
            ? .grouped(try GroupedQueryAttention(layer: l, description: d, tensors: tensors, precision: precision))
            : .latent(try LatentAttention(layer: l, description: d, tensors: tensors, precision: precision))
        switch d.layers[l] {
        case let .dense(intermediateSize):
            feedForward = .dense(try tensors.feedForward(gate: n.denseMLP(l, .gate), up: n.denseMLP(l, .up), down: n.denseMLP(l, .down),
                                                         hidden: d.hiddenSize, intermediate: intermediateSize, precision: precision))
        case .moe:
            feedForward = .moe(try MoEBlock(layer: l, description: d, tensors: tensors, precision: precision, expertMap: expertMap))
        }
    }

    /// Runs the stacked rows of the sequences in `segments`, each extending its cache in `caches`.
    func forward(_ hidden: inout Matrix, rope: RotaryEmbedding, caches: inout [KVCache.Layer], segments: [SequenceSegment],
                 epsilon: Float, experts: some ExpertSource, observer: (any RoutingObserver)? = nil) throws {
        var normed = hidden
        Functions.rmsNorm(&normed, weight: inputNorm, epsilon: epsilon)
        let attended: Matrix
        switch attention {
        case let .grouped(block): attended = block.forward(normed, rope: rope, caches: &caches, segments: segments, epsilon: epsilon)
        case let .latent(block): attended = block.forward(normed, rope: rope, caches: &caches, segments: segments, epsilon: epsilon)
        }
        LinearAlgebra.add(&hidden, attended)

        normed = hidden
        Functions.rmsNorm(&normed, weight: postAttentionNorm, epsilon: epsilon)
        let mixed: Matrix
        switch feedForward {
        case let .dense(block): mixed = block.forward(normed)
        case let .moe(block):
            mixed = try block.forward(normed, experts: experts, residual: observer == nil ? nil : hidden,
                                      skips: block.rowSkips(segments), observer: observer)
        }
        LinearAlgebra.add(&hidden, mixed)
    }
}
