/// Errors of running a model (as opposed to loading one, see `CheckpointError`).
public enum ModelError: Error, CustomStringConvertible, Equatable {
    case emptyInput
    case tokenOutOfRange(token: Int, vocabularySize: Int)
    case contextOverflow(requested: Int, limit: Int)
    case noSuchExpert(layer: Int, expert: Int)
    case invalidExpertMap(layer: Int, reason: String)
    case generatorClosed
    /// A logit that is NaN or infinite: the weights or the config drove the forward pass out
    /// of range, and no number printed or scored from it would mean anything.
    case nonFiniteLogits(position: Int, token: Int, value: Float)

    public var description: String {
        switch self {
        case .emptyInput:
            return "the input is empty: at least one token is needed"
        case let .tokenOutOfRange(token, vocabularySize):
            return "token id \(token) is outside the vocabulary (0..<\(vocabularySize))"
        case let .contextOverflow(requested, limit):
            return "the sequence would be \(requested) tokens long, longer than the model's context of \(limit)"
        case let .noSuchExpert(layer, expert):
            return "layer \(layer) has no expert \(expert)"
        case let .invalidExpertMap(layer, reason):
            return "the plan's expert map for layer \(layer) does not fit the model: \(reason)"
        case .generatorClosed:
            return "the batch generator has been closed and takes no new requests"
        case let .nonFiniteLogits(position, token, value):
            return "the model produced a non-finite logit (\(value)) for token \(token) at position \(position): its weights or config.json values are out of range"
        }
    }
}
