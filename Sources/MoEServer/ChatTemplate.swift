import ChatTemplates
import Foundation

/// How chat messages become one prompt: the model's own Jinja chat template, rendered as
/// transformers' `apply_chat_template(messages, add_generation_prompt=True, tokenize=False)`
/// does, or the documented plain format when the model has none.
///
/// - The template comes from the store's `chat_template.jinja` (transformers' newer layout)
///   or else `tokenizer_config.json`'s `chat_template` (a string, or the list of named
///   templates, of which `default` is used). It sees `messages`, `add_generation_prompt`
///   (true), `tools` and `documents` (none), and the tokenizer config's `bos_token`,
///   `eos_token`, `unk_token` and `pad_token` as strings.
/// - `plain` (no template, or one MoEKit cannot run, see `warning`): every message is
///   `{role}: {content}\n`, followed by `assistant:`. Plain text works with any tokenizer.
///
/// The rendered template already holds the model's special tokens (a BOS, say), so its
/// prompt is tokenized without the tokenizer's post-processor (`addsSpecialTokens` false),
/// as transformers' `apply_chat_template(tokenize=True)` does.
public struct ChatTemplate: Sendable {
    public enum Kind: String, Sendable, Equatable {
        case model
        case plain
    }

    public let kind: Kind
    /// Where the template came from, e.g. `tokenizer_config.json chat_template`.
    public let origin: String?
    /// Why a template the model has is not used (it failed to parse, or to render a
    /// one-message conversation); the server prints it at startup.
    public let warning: String?
    /// Text that ends an assistant turn besides the model's end-of-sequence tokens: the
    /// template family's turn marker (`<|im_end|>`, `<|eot_id|>`, …) or the tokenizer's
    /// `eos_token` the template writes after each answer (`</s>`, `<｜end▁of▁sentence｜>`).
    public let endOfTurn: String?
    public var addsSpecialTokens: Bool { kind == .plain }

    private let template: Template?
    private let specialTokens: [String: String]

    /// The documented plain format.
    public static let plain = ChatTemplate(kind: .plain, origin: nil, warning: nil, endOfTurn: nil, template: nil, specialTokens: [:])

    private init(kind: Kind, origin: String?, warning: String?, endOfTurn: String?, template: Template?, specialTokens: [String: String]) {
        self.kind = kind
        self.origin = origin
        self.warning = warning
        self.endOfTurn = endOfTurn
        self.template = template
        self.specialTokens = specialTokens
    }

    /// The template a store's files ask for; `plain` (with a `warning` when there was a
    /// template) when there is none or it cannot be used.
    public init(tokenizerConfig: Data?, templateFile: Data? = nil) {
        let config = tokenizerConfig.flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] } ?? [:]
        var tokens = [String: String]()
        for key in ["bos_token", "eos_token", "unk_token", "pad_token"] {
            // A token is a string, or (older configs) an AddedToken object with its content.
            if let text = config[key] as? String { tokens[key] = text }
            else if let text = (config[key] as? [String: Any])?["content"] as? String { tokens[key] = text }
        }
        let source: (text: String, origin: String)?
        if let templateFile, let text = String(data: templateFile, encoding: .utf8) {
            source = (text, "chat_template.jinja")
        } else if let text = config["chat_template"] as? String {
            source = (text, "tokenizer_config.json chat_template")
        } else if let named = config["chat_template"] as? [[String: Any]],
                  let text = named.first(where: { $0["name"] as? String == "default" })?["template"] as? String {
            source = (text, "tokenizer_config.json chat_template \"default\"")
        } else {
            source = nil
        }
        guard let source else {
            self = .plain
            return
        }
        let endOfTurn = ChatTemplate.endOfTurn(template: source.text, eosToken: tokens["eos_token"])
        do {
            let template = try Template(source.text)
            do {
                // A template can parse and still use something this interpreter refuses at
                // render time; find out now rather than on the first request.
                _ = try ChatTemplate.render(template, [ChatMessage(role: "user", content: "Hello")], specialTokens: tokens)
            } catch where error.kind == .raised {
                // The template refused even one user message (it may require a system
                // message): it is still the model's template, and requests get its message.
            }
            self.init(kind: .model, origin: source.origin, warning: nil, endOfTurn: endOfTurn, template: template, specialTokens: tokens)
        } catch {
            self.init(kind: .plain, origin: source.origin,
                      warning: "the model's chat template (\(source.origin)) cannot be used, so chat uses the plain 'role: content' format: \(error)",
                      endOfTurn: nil, template: nil, specialTokens: [:])
        }
    }

    /// The prompt for `messages`.
    /// - Throws: `APIError` 400 on `messages` when the template refuses the conversation
    ///   (its `raise_exception`, e.g. roles that do not alternate) or fails on it.
    public func render(_ messages: [ChatMessage]) throws -> String {
        guard let template else {
            return messages.map { "\($0.role): \($0.content)\n" }.joined() + "assistant:"
        }
        do {
            return try ChatTemplate.render(template, messages, specialTokens: specialTokens)
        } catch {
            let reason = error.kind == .raised ? error.reason : error.description
            throw APIError.invalidParameter("messages", "the model's chat template refused these messages: \(reason)")
        }
    }

    private static func render(_ template: Template, _ messages: [ChatMessage], specialTokens: [String: String]) throws(TemplateError) -> String {
        var context: [String: Value] = ["add_generation_prompt": true, "tools": nil, "documents": nil]
        for (key, token) in specialTokens { context[key] = .string(token) }
        context["messages"] = .array(messages.map { ["role": .string($0.role), "content": .string($0.content)] })
        return try template.render(context)
    }

    /// Turn markers of the common template families, in the order they are looked for.
    static let turnMarkers = ["<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endofturn|>", "<|END_OF_TURN_TOKEN|>"]

    static func endOfTurn(template: String, eosToken: String?) -> String? {
        if let marker = turnMarkers.first(where: { template.contains($0) }) { return marker }
        // Otherwise the answer ends with the end-of-sequence token the template writes
        // (as `eos_token` or spelled out, e.g. Mixtral's `</s>`, DeepSeek's `<｜end▁of▁sentence｜>`).
        if let eosToken, !eosToken.isEmpty, template.contains("eos_token") || template.contains(eosToken) { return eosToken }
        return nil
    }
}

extension ChatTemplate: Equatable {
    public static func == (a: ChatTemplate, b: ChatTemplate) -> Bool {
        a.kind == b.kind && a.origin == b.origin && a.template?.source == b.template?.source && a.specialTokens == b.specialTokens
    }
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
