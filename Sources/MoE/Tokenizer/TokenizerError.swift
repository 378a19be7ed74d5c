/// Problems with a `tokenizer.json`, each naming the file.
public enum TokenizerError: Error, CustomStringConvertible, Equatable {
    case unreadable(file: String)
    case malformed(file: String, reason: String)
    case unsupported(file: String, what: String)
    /// A byte-level symbol missing from the vocabulary: the vocabulary and merges disagree.
    case unknownSymbol(String)

    public var description: String {
        switch self {
        case let .unreadable(file): return "\(file): cannot read the tokenizer file"
        case let .malformed(file, reason): return "\(file): malformed tokenizer: \(reason)"
        case let .unsupported(file, what): return "\(file): unsupported tokenizer: \(what)"
        case let .unknownSymbol(symbol): return "tokenizer vocabulary has no entry for '\(symbol)'"
        }
    }
}
