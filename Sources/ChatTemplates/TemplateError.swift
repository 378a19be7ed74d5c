/// Why a chat template could not be parsed or rendered, and where in its source.
///
/// `raised` is the template's own `raise_exception(message)` (transformers surfaces the same
/// message); the other kinds are MoEKit's findings. `unsupported` marks Jinja that this
/// interpreter deliberately does not implement, so a caller can fall back instead of guessing.
public struct TemplateError: Error, Equatable, CustomStringConvertible, Sendable {
    public enum Kind: String, Sendable {
        /// The source is not valid Jinja.
        case syntax
        /// Valid Jinja outside the subset Hugging Face chat templates use.
        case unsupported
        /// An operation on an undefined value that Jinja refuses (attribute, call, arithmetic).
        case undefined
        /// An operation the values' types do not allow (Python's TypeError).
        case type
        /// The template called `raise_exception(message)`.
        case raised
    }

    public var kind: Kind
    public var reason: String
    /// 1-based position in the template source (0 when unknown).
    public var line: Int
    public var column: Int

    public init(_ kind: Kind, _ reason: String, at location: SourceLocation = SourceLocation(line: 0, column: 0)) {
        self.kind = kind
        self.reason = reason
        line = location.line
        column = location.column
    }

    public var description: String {
        let place = line > 0 ? "line \(line), column \(column)" : "template"
        switch kind {
        case .raised: return "chat template raised an exception (\(place)): \(reason)"
        case .unsupported: return "chat template uses Jinja MoEKit does not support (\(place)): \(reason)"
        default: return "chat template \(kind.rawValue) error at \(place): \(reason)"
        }
    }
}

/// A position in the template source, 1-based.
public struct SourceLocation: Equatable, Sendable {
    public var line: Int
    public var column: Int

    public init(line: Int, column: Int) {
        self.line = line
        self.column = column
    }
}
