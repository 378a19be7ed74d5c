/// Problems with a `tokenizer.json`; every description names the file.
public enum TokenizerError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The file does not exist or cannot be read.
    case unreadable(file: String)
    /// The file is not a well-formed tokenizer.json (bad JSON, missing or mistyped fields,
    /// merges that refer to tokens missing from the vocabulary, ...).
    case malformed(file: String, reason: String)
    /// A well-formed file that uses something this byte-level BPE tokenizer does not implement.
    case unsupported(file: String, what: String)

    public var description: String {
        switch self {
        case let .unreadable(file): return "\(file): cannot read the tokenizer file"
        case let .malformed(file, reason): return "\(file): malformed tokenizer.json: \(reason)"
        case let .unsupported(file, what): return "\(file): unsupported tokenizer: \(what)"
        }
    }
}
