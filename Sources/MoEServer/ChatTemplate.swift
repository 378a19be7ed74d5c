import Foundation

/// How chat messages become one prompt. MoEKit does not run Jinja templates; it recognises
/// the common ChatML template and otherwise falls back to a documented plain-text default.
///
/// - `chatML` (used when the store's `tokenizer_config.json` has a `chat_template` built from
///   `<|im_start|>` / `<|im_end|>`): every message is `<|im_start|>{role}\n{content}<|im_end|>\n`,
///   followed by `<|im_start|>assistant\n`; generation also stops at `<|im_end|>`.
/// - `plain` (no template, or one MoEKit cannot run): every message is `{role}: {content}\n`,
///   followed by `assistant:`. Plain text works with any tokenizer, special tokens or not.
public enum ChatTemplate: String, Sendable, Equatable {
    case chatML = "chatml"
    case plain

    /// The template a tokenizer config asks for (`plain` when the data is absent or unreadable).
    public init(tokenizerConfig data: Data?) {
        guard let data, let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let template = object["chat_template"] as? String,
              template.contains("<|im_start|>"), template.contains("<|im_end|>") else {
            self = .plain
            return
        }
        self = .chatML
    }

    public func render(_ messages: [ChatMessage]) -> String {
        switch self {
        case .chatML:
            return messages.map { "<|im_start|>\($0.role)\n\($0.content)<|im_end|>\n" }.joined() + "<|im_start|>assistant\n"
        case .plain:
            return messages.map { "\($0.role): \($0.content)\n" }.joined() + "assistant:"
        }
    }

    /// Text that ends an assistant turn besides the model's end-of-sequence tokens.
    public var endOfTurn: String? { self == .chatML ? "<|im_end|>" : nil }
}

/// One chat message, reduced to its role and text.
public struct ChatMessage: Sendable, Equatable {
    public var role: String
    public var content: String

    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }
}
