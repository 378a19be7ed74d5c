/// Builds one request's response bodies in the shape of its endpoint: `text_completion`
/// objects for `/v1/completions`, `chat.completion` (whole) and `chat.completion.chunk`
/// (streamed) for `/v1/chat/completions`. All chunks of one answer share its id.
struct ResponseFormat: Sendable {
    var chat: Bool
    var id: String
    var created: Int

    func whole(_ prepared: ServingEngine.Prepared, _ result: ServingEngine.Result) -> any Encodable {
        let usage = Self.usage(prepared, result)
        if chat {
            return ChatCompletionResponse(
                id: id, object: "chat.completion", created: created, model: prepared.plan,
                choices: [.init(index: 0, message: .init(role: "assistant", content: result.text), finishReason: result.finishReason)],
                usage: usage, moekit: Self.info(prepared))
        }
        return CompletionResponse(id: id, created: created, model: prepared.plan,
                                  choices: [.init(index: 0, text: result.text, finishReason: result.finishReason)],
                                  usage: usage, moekit: Self.info(prepared))
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

    /// The last event before `[DONE]`: the finish reason and the token counts.
    func closing(_ prepared: ServingEngine.Prepared, _ result: ServingEngine.Result) -> any Encodable {
        let usage = Self.usage(prepared, result)
        return chat ? chatChunk(prepared, delta: .init(), finishReason: result.finishReason, usage: usage)
                    : completionChunk(prepared, text: "", finishReason: result.finishReason, usage: usage)
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
