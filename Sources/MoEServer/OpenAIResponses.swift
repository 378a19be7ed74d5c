import Foundation

/// Which plan answered, added to every response next to OpenAI's fields.
public struct MoEKitInfo: Codable, Sendable, Equatable {
    public var plan: String
    /// True when the plan was chosen by routing signature (`--auto`), false when requested.
    public var auto: Bool
}

public struct Usage: Codable, Sendable, Equatable {
    public var promptTokens: Int
    public var completionTokens: Int
    public var totalTokens: Int

    enum CodingKeys: String, CodingKey {
        case promptTokens = "prompt_tokens", completionTokens = "completion_tokens", totalTokens = "total_tokens"
    }
}

/// `POST /v1/completions` (non-streaming) and, with `stream`, each server-sent chunk
/// (`object: text_completion` in both, as OpenAI sends).
public struct CompletionResponse: Codable, Sendable {
    public struct Choice: Codable, Sendable {
        public var index: Int
        public var text: String
        public var logprobs: CompletionLogprobs?
        public var finishReason: String?

        enum CodingKeys: String, CodingKey { case index, text, logprobs, finishReason = "finish_reason" }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(index, forKey: .index)
            try c.encode(text, forKey: .text)
            try c.encode(logprobs, forKey: .logprobs)
            try c.encode(finishReason, forKey: .finishReason)
        }
    }
    public var id: String
    public var object = "text_completion"
    public var created: Int
    public var model: String
    public var choices: [Choice]
    public var usage: Usage?
    public var moekit: MoEKitInfo
}

/// `POST /v1/chat/completions`: a whole answer, or (`object: chat.completion.chunk`) one
/// streamed delta.
public struct ChatCompletionResponse: Codable, Sendable {
    public struct Message: Codable, Sendable {
        public var role: String?
        public var content: String?
    }
    public struct Choice: Codable, Sendable {
        public var index: Int
        public var message: Message?
        public var delta: Message?
        public var logprobs: ChatLogprobs?
        public var finishReason: String?

        enum CodingKeys: String, CodingKey { case index, message, delta, logprobs, finishReason = "finish_reason" }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(index, forKey: .index)
            try c.encodeIfPresent(message, forKey: .message)
            try c.encodeIfPresent(delta, forKey: .delta)
            try c.encode(logprobs, forKey: .logprobs)
            try c.encode(finishReason, forKey: .finishReason)
        }
    }
    public var id: String
    public var object: String
    public var created: Int
    public var model: String
    public var choices: [Choice]
    public var usage: Usage?
    public var moekit: MoEKitInfo
}

/// Completions' `logprobs` (OpenAI's legacy shape): per token its text, log-probability, the
/// most likely alternatives and where its text starts in the answer (in characters).
public struct CompletionLogprobs: Codable, Sendable, Equatable {
    public var tokens: [String]
    public var tokenLogprobs: [Float]
    public var topLogprobs: [[String: Float]]
    public var textOffset: [Int]

    enum CodingKeys: String, CodingKey {
        case tokens, tokenLogprobs = "token_logprobs", topLogprobs = "top_logprobs", textOffset = "text_offset"
    }
}

/// Chat's `logprobs`: `content` holds one entry per token.
public struct ChatLogprobs: Codable, Sendable, Equatable {
    public struct Entry: Codable, Sendable, Equatable {
        public var token: String
        public var logprob: Float
        /// The token's UTF-8 bytes (a token may hold part of a character).
        public var bytes: [Int]
        public var topLogprobs: [Alternative]?

        enum CodingKeys: String, CodingKey { case token, logprob, bytes, topLogprobs = "top_logprobs" }
    }
    public struct Alternative: Codable, Sendable, Equatable {
        public var token: String
        public var logprob: Float
        public var bytes: [Int]
    }
    public var content: [Entry]
}

/// `GET /v1/models`: the models this server answers for (its served plans, and `auto` when it
/// chooses per request), in OpenAI's list format with vLLM's `max_model_len`.
public struct ModelList: Codable, Sendable {
    public struct Model: Codable, Sendable {
        public var id: String
        public var object = "model"
        public var created: Int
        public var ownedBy = "moekit"
        /// The context length in tokens (prompt and answer together).
        public var maxModelLen: Int
        /// Bytes of expert weights the plan keeps (from the plan document).
        public var expertBytes: Int
        /// Bytes of dense weights in memory.
        public var denseBytes: Int

        enum CodingKeys: String, CodingKey {
            case id, object, created, ownedBy = "owned_by", maxModelLen = "max_model_len", expertBytes = "expert_bytes", denseBytes = "dense_bytes"
        }
    }
    public var object = "list"
    public var data: [Model]
}

enum ResponseJSON {
    static func encode(_ value: some Encodable) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Every value here is plain strings and numbers, which always encode.
        return (try? encoder.encode(value)) ?? Data()
    }
}
