import Routing

/// Runs a model one decoder layer at a time over many sequences, so that only one layer's
/// weights are in memory at once: the streaming mode for models bigger than RAM. A caller
/// keeps every sequence's hidden state between layers (see `HiddenStateSpool`).
///
/// Each sequence runs through a layer on its own, with the same kernels and weights (held
/// `precision`, as `MoEModel` holds them) as a model in memory, so a streamed pass computes
/// bit for bit what `MoEModel.logits` computes for each sequence.
public struct LayerwiseRunner: Sendable {
    public let description: ModelDescription
    public let precision: WeightPrecision
    private let tensors: any TensorProvider
    private let rope: RotaryEmbedding

    public init(description: ModelDescription, tensors: any TensorProvider, precision: WeightPrecision = .stored) {
        self.description = description
        self.tensors = tensors
        self.precision = precision
        rope = RotaryEmbedding(description.rope)
    }

    /// The embeddings of each of `sequences`: `[tokens, hidden]` each. The embedding table is
    /// loaded once for all of them and released before this returns.
    public func embed(_ sequences: [[Int]]) throws -> [Matrix] {
        let vocab = description.vocabularySize
        for tokens in sequences {
            guard !tokens.isEmpty else { throw ModelError.emptyInput }
            if let bad = tokens.first(where: { $0 < 0 || $0 >= vocab }) {
                throw ModelError.tokenOutOfRange(token: bad, vocabularySize: vocab)
            }
            guard tokens.count <= description.maxPositionEmbeddings else {
                throw ModelError.contextOverflow(requested: tokens.count, limit: description.maxPositionEmbeddings)
            }
        }
        let embedding = try tensors.weight(description.names.embedding, shape: [vocab, description.hiddenSize], precision: precision)
        return sequences.map { embedding.gatherRows($0) }
    }

    /// The embeddings of `tokens`: `[tokens, hidden]`.
    public func embed(_ tokens: [Int]) throws -> Matrix { try embed([tokens])[0] }

    /// Loads the dense weights of layer `index` (its experts come from an `ExpertSource`);
    /// `expertMap` applies a plan's routing to it.
    public func layer(_ index: Int, expertMap: ExpertMap? = nil) throws -> Layer {
        Layer(index: index, weights: try DecoderLayer(layer: index, description: description, tensors: tensors,
                                                      precision: precision, expertMap: expertMap),
              rope: rope, epsilon: description.rmsNormEpsilon)
    }

    /// The final norm and output head, loaded once to turn many last-layer hidden states into logits.
    public func head() throws -> Head {
        let (vocab, h) = (description.vocabularySize, description.hiddenSize)
        let names = description.names
        let tied = description.tieWordEmbeddings && !tensors.contains(names.outputHead)
        return Head(norm: try tensors.vector(names.finalNorm, count: h),
                    weight: try tensors.weight(tied ? names.embedding : names.outputHead, shape: [vocab, h], precision: precision),
                    epsilon: description.rmsNormEpsilon)
    }

    /// One loaded decoder layer.
    public struct Layer: Sendable {
        public let index: Int
        let weights: DecoderLayer
        let rope: RotaryEmbedding
        let epsilon: Float

        /// Runs one whole sequence through this layer (a prefill from position 0).
        public func run(_ hidden: inout Matrix, experts: some ExpertSource, observer: (any RoutingObserver)? = nil) throws {
            var caches = [KVCache.Layer()]
            try weights.forward(&hidden, rope: rope, caches: &caches, segments: [SequenceSegment(rows: 0..<hidden.rows, past: 0)],
                                epsilon: epsilon, experts: experts, observer: observer)
        }

        /// Bytes of this layer's dense weights as loaded.
        public var denseByteCount: Int { weights.byteCount }
    }

    /// The final norm and the output head.
    public struct Head: Sendable {
        let norm: [Float]
        let weight: any LinearWeight
        let epsilon: Float

        public func logits(_ hidden: Matrix) -> Matrix {
            var normed = hidden
            Functions.rmsNorm(&normed, weight: norm, epsilon: epsilon)
            return weight.linear(normed)
        }
    }
}
