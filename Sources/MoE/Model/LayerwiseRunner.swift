import Routing

/// Runs a model one decoder layer at a time over many sequences, so that only one layer's
/// weights are in memory at once: the streaming mode for models bigger than RAM. A caller
/// keeps every sequence's hidden state between layers (see `HiddenStateSpool`).
public struct LayerwiseRunner: Sendable {
    public let description: ModelDescription
    private let tensors: any TensorProvider
    private let rope: RotaryEmbedding

    public init(description: ModelDescription, tensors: any TensorProvider) {
        self.description = description
        self.tensors = tensors
        rope = RotaryEmbedding(description.rope)
    }

    /// The embeddings of `tokens`: `[tokens, hidden]`.
    public func embed(_ tokens: [Int]) throws -> Matrix {
        guard !tokens.isEmpty else { throw ModelError.emptyInput }
        let vocab = description.vocabularySize
        if let bad = tokens.first(where: { $0 < 0 || $0 >= vocab }) {
            throw ModelError.tokenOutOfRange(token: bad, vocabularySize: vocab)
        }
        guard tokens.count <= description.maxPositionEmbeddings else {
            throw ModelError.contextOverflow(requested: tokens.count, limit: description.maxPositionEmbeddings)
        }
        let embedding = try tensors.matrix(description.names.embedding, shape: [vocab, description.hiddenSize])
        return embedding.gatherRows(tokens)
    }

    /// Loads the dense weights of layer `index` (its experts come from an `ExpertSource`).
    public func layer(_ index: Int) throws -> Layer {
        Layer(index: index, weights: try DecoderLayer(layer: index, description: description, tensors: tensors),
              rope: rope, epsilon: description.rmsNormEpsilon)
    }

    /// Final norm and output head applied to the last layer's hidden states.
    public func logits(_ hidden: Matrix) throws -> Matrix {
        let (vocab, h) = (description.vocabularySize, description.hiddenSize)
        var normed = hidden
        Functions.rmsNorm(&normed, weight: try tensors.vector(description.names.finalNorm, count: h), epsilon: description.rmsNormEpsilon)
        let head = description.tieWordEmbeddings && !tensors.contains(description.names.outputHead)
            ? try tensors.matrix(description.names.embedding, shape: [vocab, h])
            : try tensors.matrix(description.names.outputHead, shape: [vocab, h])
        return LinearAlgebra.linear(normed, head)
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
    }
}
