/// Anything that can hand out named checkpoint tensors: a safetensors checkpoint
/// directory today, the expert store tomorrow. Names are the checkpoint's own.
public protocol TensorProvider: Sendable {
    /// Human-readable location used in error messages.
    var location: String { get }
    func contains(_ name: String) -> Bool
    func shape(_ name: String) throws -> [Int]
    func matrix(_ name: String) throws -> Matrix
    /// A 2-D tensor stored as BF16/F16, copied in its stored format; nil for other dtypes.
    func halfMatrix(_ name: String) throws -> HalfMatrix?
    /// The weight `name` as the forward pass holds it, after checking its shape. Checkpoints
    /// and the store give it as stored or widened (`precision`); a plan's provider may give a
    /// quantized replacement instead. The default is `storedWeight`.
    func weight(_ name: String, shape: [Int], precision: WeightPrecision) throws -> any LinearWeight
}

extension TensorProvider {
    /// The tensor, after checking that its shape is exactly `expected`.
    public func matrix(_ name: String, shape expected: [Int]) throws -> Matrix {
        let actual = try shape(name)
        guard actual == expected else {
            throw CheckpointError.wrongShape(file: location, tensor: name, expected: expected, actual: actual)
        }
        return try matrix(name)
    }

    /// A 1-D tensor of `count` elements.
    public func vector(_ name: String, count: Int) throws -> [Float] {
        try matrix(name, shape: [count]).values
    }
}
