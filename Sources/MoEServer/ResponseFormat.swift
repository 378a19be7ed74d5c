import MoE

/// Builds one request's response bodies in the shape of its endpoint: `text_completion`
/// objects for `/v1/completions`, `chat.completion` (whole) and `chat.completion.chunk`
/// (streamed) for `/v1/chat/completions`. All chunks of one answer share its id.
struct ResponseFormat: Sendable {
    var chat: Bool
    var id: String
    var created: Int
    /// Spells out the tokens of `logprobs`.
    var tokenizer: Tokenizer

    func whole(_ prepared: ServingEngine.Prepared, _ result: ServingEngine.Result) -> any Encodable {
        let usage = Self.usage(prepared, result)
        if chat {
            return ChatCompletionResponse(
                id: id, object: "chat.completion", created: created, model: prepared.plan,
                choices: [.init(index: 0, message: .init(role: "assistant", content: result.text),
                                logprobs: result.logprobs.map(chatLogprobs), finishReason: result.finishReason)],
                usage: usage, moekit: Self.info(prepared))
        }
        return CompletionResponse(id: id, created: created, model: prepared.plan,
                                  choices: [.init(index: 0, text: result.text, logprobs: result.logprobs.map(completionLogprobs),
                                                  finishReason: result.finishReason)],
                                  usage: usage, moekit: Self.info(prepared))
    }

    private func completionLogprobs(_ entries: [TokenLogprobs]) -> CompletionLogprobs {
        var offsets = [Int]()
        var offset = 0
        let texts = entries.map { tokenizer.decode([$0.token]) }
        for text in texts {
            offsets.append(offset)
            offset += text.count
        }
        // Two alternatives may spell the same text; the likelier one is kept under that key.
        let tops = entries.map { entry in
            entry.top.reversed().reduce(into: [String: Float]()) { $0[tokenizer.decode([$1.token])] = $1.logprob }
        }
        return CompletionLogprobs(tokens: texts, tokenLogprobs: entries.map(\.logprob), topLogprobs: tops, textOffset: offsets)
    }

    private func chatLogprobs(_ entries: [TokenLogprobs]) -> ChatLogprobs {
        func spelled(_ token: Int) -> (String, [Int]) { (tokenizer.decode([token]), tokenizer.bytes([token]).map(Int.init)) }
        return ChatLogprobs(content: entries.map { entry in
            let (text, bytes) = spelled(entry.token)
            return ChatLogprobs.Entry(token: text, logprob: entry.logprob, bytes: bytes, topLogprobs: entry.top.map { alternative in
                let (text, bytes) = spelled(alternative.token)
                return ChatLogprobs.Alternative(token: text, logprob: alternative.logprob, bytes: bytes)
            })
        })
    }

    /// The first streamed event: chat announces the assistant role, completions an empty text.
    func opening(_ prepared: ServingEngine.Prepared) -> any Encodable {
        chat ? chatChunk(prepared, delta: .init(role: "assistant", content: ""), finishReason: nil, usage: nil)
             : completionChunk(prepared, text: "", finishReason: nil, usage: nil)
    }

    func chunk(_ prepared: ServingEngine.Prepared, text: String) -> any Encodable {
        chat ? chatChunk(prepared, delta: .init(content: text), finishReason: nil, usage: nil)
             : completionChunk(prepared, text: text, finishReason: nil, usage: nil)
    }

    /// The event with the finish reason.
    func closing(_ prepared: ServingEngine.Prepared, _ result: ServingEngine.Result) -> any Encodable {
        chat ? chatChunk(prepared, delta: .init(), finishReason: result.finishReason, usage: nil)
             : completionChunk(prepared, text: "", finishReason: result.finishReason, usage: nil)
    }

    /// With `stream_options.include_usage`, the last event before `[DONE]`: no choices, the token counts.
    func usageChunk(_ prepared: ServingEngine.Prepared, _ result: ServingEngine.Result) -> any Encodable {
        let usage = Self.usage(prepared, result)
        if chat {
            return ChatCompletionResponse(id: id, object: "chat.completion.chunk", created: created, model: prepared.plan,
                                          choices: [], usage: usage, moekit: Self.info(prepared))
        }
        return CompletionResponse(id: id, created: created, model: prepared.plan, choices: [], usage: usage, moekit: Self.info(prepared))
    }

    private func chatChunk(_ prepared: ServingEngine.Prepared, delta: ChatCompletionResponse.Message, finishReason: String?, usage: Usage?) -> ChatCompletionResponse {
        ChatCompletionResponse(id: id, object: "chat.completion.chunk", created: created, model: prepared.plan,
                               choices: [.init(index: 0, delta: delta, finishReason: finishReason)], usage: usage, moekit: Self.info(prepared))
    }

    private func completionChunk(_ prepared: ServingEngine.Prepared, text: String, finishReason: String?, usage: Usage?) -> CompletionResponse {
        CompletionResponse(id: id, created: created, model: prepared.plan,
                           choices: [.init(index: 0, text: text, finishReason: finishReason)], usage: usage, moekit: Self.info(prepared))
    }

    private static func usage(_ prepared: ServingEngine.Prepared, _ result: ServingEngine.Result) -> Usage {
        Usage(promptTokens: prepared.promptTokens.count, completionTokens: result.tokens.count,
              totalTokens: prepared.promptTokens.count + result.tokens.count)
    }

    private static func info(_ prepared: ServingEngine.Prepared) -> MoEKitInfo { MoEKitInfo(plan: prepared.plan, auto: prepared.auto) }
}
