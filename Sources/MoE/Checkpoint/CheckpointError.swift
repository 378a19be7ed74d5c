/// Everything that can be wrong with a checkpoint on disk. Each case names the file
/// (and the tensor, where there is one) so that a user can find the problem.
public enum CheckpointError: Error, CustomStringConvertible, Equatable {
    case unreadable(file: String, reason: String)
    case truncated(file: String, reason: String)
    case malformedHeader(file: String, reason: String)
    case unknownDType(file: String, tensor: String, dtype: String)
    case badOffsets(file: String, tensor: String, reason: String)
    case overlappingTensors(file: String, tensor: String, other: String)
    case lengthMismatch(file: String, tensor: String, expectedBytes: Int, actualBytes: Int)
    case missingTensor(tensor: String, location: String)
    case wrongShape(file: String, tensor: String, expected: [Int], actual: [Int])
    case unsupportedDType(file: String, tensor: String, dtype: String, purpose: String)
    case malformedConfig(file: String, reason: String)
    case unknownModelType(file: String, modelType: String, supported: [String])
    case malformedIndex(file: String, reason: String)
    /// A tensor whose shape or companions do not fit the layout it is stored in (a fused
    /// expert tensor of the wrong shape, a quantized tensor without its scales, …).
    case malformedTensor(file: String, tensor: String, reason: String)
    /// An FP8 checkpoint read without asking for its weights to be widened.
    case needsDequantization(file: String, tensor: String, dtype: String)

    public var description: String {
        switch self {
        case let .unreadable(file, reason):
            return "\(file): cannot read: \(reason)"
        case let .truncated(file, reason):
            return "\(file): file is truncated: \(reason)"
        case let .malformedHeader(file, reason):
            return "\(file): malformed safetensors header: \(reason)"
        case let .unknownDType(file, tensor, dtype):
            return "\(file): tensor '\(tensor)' has unknown dtype '\(dtype)'"
        case let .badOffsets(file, tensor, reason):
            return "\(file): tensor '\(tensor)': \(reason)"
        case let .overlappingTensors(file, tensor, other):
            return "\(file): tensor '\(tensor)' overlaps tensor '\(other)' in the data section"
        case let .lengthMismatch(file, tensor, expected, actual):
            return "\(file): tensor '\(tensor)' needs \(expected) bytes for its shape and dtype but its data_offsets span \(actual)"
        case let .missingTensor(tensor, location):
            return "\(location): tensor '\(tensor)' is missing"
        case let .wrongShape(file, tensor, expected, actual):
            return "\(file): tensor '\(tensor)' has shape \(actual), expected \(expected)"
        case let .unsupportedDType(file, tensor, dtype, purpose):
            return "\(file): tensor '\(tensor)' has dtype \(dtype), which cannot be used as \(purpose)"
        case let .malformedConfig(file, reason):
            return "\(file): \(reason)"
        case let .unknownModelType(file, modelType, supported):
            return "\(file): unknown model_type '\(modelType)'; supported: \(supported.joined(separator: ", "))"
        case let .malformedIndex(file, reason):
            return "\(file): malformed shard index: \(reason)"
        case let .malformedTensor(file, tensor, reason):
            return "\(file): tensor '\(tensor)': \(reason)"
        case let .needsDequantization(file, tensor, dtype):
            return "\(file): tensor '\(tensor)' is stored as \(dtype) (block-scaled FP8), which MoEKit does not keep as stored; "
                + "pass --dequantize to widen the FP8 weights to BF16 at import"
        }
    }
}
