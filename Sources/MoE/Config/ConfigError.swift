/// A `config.json` value outside what the model can run with. It names the file, the key
/// as the file spells it, the value found and the values allowed, so that the file can be
/// fixed without reading MoEKit's source.
public enum ConfigError: Error, CustomStringConvertible, Equatable {
    case outOfRange(file: String, key: String, value: String, allowed: String)
    /// A key whose value is fine on its own but does not fit the checkpoint's tensors.
    case tensorMismatch(file: String, key: String, value: Int, tensor: String, shape: [Int])
    /// A key that implies a tensor the checkpoint does not have.
    case tensorMissing(file: String, key: String, value: Int, tensor: String)

    public var key: String {
        switch self {
        case let .outOfRange(_, key, _, _), let .tensorMismatch(_, key, _, _, _), let .tensorMissing(_, key, _, _): return key
        }
    }

    public var description: String {
        switch self {
        case let .outOfRange(file, key, value, allowed):
            return "\(file): '\(key)' is \(value); allowed: \(allowed)"
        case let .tensorMismatch(file, key, value, tensor, shape):
            return "\(file): '\(key)' is \(value) but tensor '\(tensor)' has shape \(shape)"
        case let .tensorMissing(file, key, value, tensor):
            return "\(file): '\(key)' is \(value) but the checkpoint has no tensor '\(tensor)'"
        }
    }
}
