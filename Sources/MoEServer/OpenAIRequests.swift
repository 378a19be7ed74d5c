import Foundation
import MoE

/// What both generation endpoints ask for once their JSON is checked: the prompt text, the
/// plan (`model`), the sampling settings and what to report. Fields the server does not
/// implement are refused (see `UnsupportedFields`, which also lists the ones ignored).
///
/// Implemented beyond OpenAI's `temperature`, `top_p`, `seed`, `stop`, `max_tokens`: vLLM's
/// `top_k`, `min_p` and `repetition_penalty`, OpenAI's `presence_penalty` and
/// `frequency_penalty` (see `SamplingParameters`), `logprobs` (completions: `logprobs: N`;
/// chat: `logprobs: true` with `top_logprobs: N`; log-softmax of the raw logits, see
/// `TokenLogprobs`), and `stream_options.include_usage`.
public struct GenerationRequest: Sendable, Equatable {
    /// The plan name, `auto`, or nil (the server's default).
    public var model: String?
    public var prompt: String
    /// nil: the endpoint's default (16 for completions, the rest of the context for chat).
    public var maxTokens: Int?
    public var sampling: SamplingParameters
    public var stop: [String]
    public var stream: Bool
    /// Set for chat requests: text that also ends the answer (ChatML's `<|im_end|>`).
    public var endOfTurn: String?
    /// Whether tokenizing the prompt adds the tokenizer's special tokens (a BOS): false
    /// for a prompt rendered by the model's chat template, which writes them itself.
    public var addSpecialTokens = true
    /// Report each token's log-probability with this many alternatives; nil: no log-probabilities.
    public var logprobs: Int?
    /// Streams only: end with a chunk carrying `usage` and no choices (`stream_options.include_usage`).
    public var includeUsage: Bool = false
    /// MoEKit's own extension, `"moekit": {"skip": RULE}`: this request's expert-skipping rule
    /// in place of the plan's (`lu`, `lu:Q`, `ser:KMIN,T`, `top-p:P`, or `none` for no
    /// skipping), as `moekit slim --skip` names them; nil keeps the plan's.
    public var skip: SkipRequest?

    /// Parses a `/v1/completions` body; `defaults` fill the sampling fields it leaves out.
    public static func completion(json: Data, defaults: SamplingDefaults = .init()) throws -> GenerationRequest {
        try UnsupportedFields.check(json, chat: false)
        let body = try decode(CompletionBody.self, json)
        guard !body.prompt.isEmpty else { throw APIError.invalidParameter("prompt", "prompt must not be empty") }
        var request = try body.common.request(prompt: body.prompt, endOfTurn: nil, defaults: defaults)
        if let count = body.logprobs {
            guard (0...20).contains(count) else { throw APIError.invalidParameter("logprobs", "logprobs must be between 0 and 20, got \(count)") }
            request.logprobs = count
        }
        try request.checkLogprobsWithStream()
        return request
    }

    /// Parses a `/v1/chat/completions` body and renders its messages with `template`.
    public static func chat(json: Data, template: ChatTemplate, defaults: SamplingDefaults = .init()) throws -> GenerationRequest {
        try UnsupportedFields.check(json, chat: true)
        let body = try decode(ChatBody.self, json)
        guard !body.messages.isEmpty else { throw APIError.invalidParameter("messages", "messages must hold at least one message") }
        var request = try body.common.request(prompt: template.render(body.messages), endOfTurn: template.endOfTurn, defaults: defaults)
        request.addSpecialTokens = template.addsSpecialTokens
        if let top = body.topLogprobs {
            guard (0...20).contains(top) else { throw APIError.invalidParameter("top_logprobs", "top_logprobs must be between 0 and 20, got \(top)") }
            guard body.logprobs == true else { throw APIError.invalidParameter("top_logprobs", "top_logprobs needs logprobs: true") }
        }
        if body.logprobs == true { request.logprobs = body.topLogprobs ?? 0 }
        try request.checkLogprobsWithStream()
        return request
    }

    private func checkLogprobsWithStream() throws {
        if logprobs != nil && stream {
            throw APIError.unsupportedParameter("logprobs", "log-probabilities are returned by whole (non-streamed) answers only; drop stream or logprobs")
        }
    }

    /// Decodes with errors that name the offending field (OpenAI's `param`).
    private static func decode<T: Decodable>(_ type: T.Type, _ json: Data) throws -> T {
        do {
            return try JSONDecoder().decode(T.self, from: json)
        } catch let error as APIError {
            throw error
        } catch let DecodingError.typeMismatch(_, context) where context.codingPath.isEmpty {
            throw APIError.malformedJSON("expected a JSON object")
        } catch let DecodingError.typeMismatch(expected, context) {
            throw APIError.invalidParameter(param(context.codingPath), "\(param(context.codingPath)) must be of type \(expected)")
        } catch let DecodingError.valueNotFound(expected, context) {
            throw APIError.invalidParameter(param(context.codingPath), "\(param(context.codingPath)) must be a \(expected), not null")
        } catch let DecodingError.keyNotFound(key, context) {
            let name = param(context.codingPath + [key])
            throw APIError.invalidParameter(name, "\(name) is required")
        } catch let DecodingError.dataCorrupted(context) where !context.codingPath.isEmpty {
            throw APIError.invalidParameter(param(context.codingPath), context.debugDescription)
        } catch {
            throw APIError.malformedJSON(String(describing: (error as? DecodingError).map(underlyingReason) ?? "\(error)"))
        }
    }

    private static func param(_ path: [any CodingKey]) -> String {
        path.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined().drop { $0 == "." }.description
    }

    private static func underlyingReason(_ error: DecodingError) -> String {
        if case let .dataCorrupted(context) = error {
            return (context.underlyingError.map { "\($0.localizedDescription)" }) ?? context.debugDescription
        }
        return "\(error)"
    }
}

/// Sampling settings a request leaves out: the store's `generation_config.json` when it has
/// one (with `do_sample: false` meaning greedy), else greedy decoding.
public struct SamplingDefaults: Sendable, Equatable {
    public var temperature: Double = 0
    public var topP: Double = 1
    public var topK: Int = 0

    public init(temperature: Double = 0, topP: Double = 1, topK: Int = 0) {
        (self.temperature, self.topP, self.topK) = (temperature, topP, topK)
    }

    /// Reads Hugging Face's `generation_config.json` (`do_sample`, `temperature`, `top_p`,
    /// `top_k`); values out of the API's ranges are left at the defaults above.
    public init(generationConfig data: Data?) {
        self.init()
        guard let data, let config = try? JSONDecoder().decode([String: JSONValue].self, from: data) else { return }
        func number(_ key: String) -> Double? {
            if case let .number(value)? = config[key], value.isFinite { return value }
            return nil
        }
        // Hugging Face samples only with do_sample; without it generation is greedy whatever the temperature says.
        guard config["do_sample"] == .bool(true) else { return }
        temperature = number("temperature").flatMap { (0...2).contains($0) ? $0 : nil } ?? 1
        if let topP = number("top_p"), topP > 0, topP <= 1 { self.topP = topP }
        if let topK = number("top_k"), topK >= 0, topK == topK.rounded(), topK < 1e9 { self.topK = Int(topK) }
    }
}

/// Fields shared by both endpoints, checked against OpenAI's (and vLLM's) ranges.
struct CommonFields: Decodable {
    var model: String?
    var maxTokens: Int?
    var temperature: Double?
    var topP: Double?
    var topK: Int?
    var minP: Double?
    var repetitionPenalty: Double?
    var presencePenalty: Double?
    var frequencyPenalty: Double?
    var seed: Int?
    var stop: StopField?
    var stream: Bool?
    var streamOptions: StreamOptions?
    var n: Int?
    var moekit: MoEKitFields?

    /// The `moekit` object: MoEKit's own request fields. Keys it does not know are refused, so
    /// a misspelt knob is not silently ignored.
    struct MoEKitFields: Decodable {
        var skip: String?

        enum CodingKeys: String, CodingKey { case skip }

        init(from decoder: any Decoder) throws {
            let all = try decoder.container(keyedBy: AnyKey.self)
            if let unknown = all.allKeys.first(where: { CodingKeys(stringValue: $0.stringValue) == nil }) {
                throw APIError.unsupportedParameter("moekit.\(unknown.stringValue)", "the moekit object takes only skip")
            }
            skip = try decoder.container(keyedBy: CodingKeys.self).decodeIfPresent(String.self, forKey: .skip)
        }
    }

    struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    struct StreamOptions: Decodable {
        var includeUsage: Bool?
        enum CodingKeys: String, CodingKey { case includeUsage = "include_usage" }
    }

    enum CodingKeys: String, CodingKey {
        case model, temperature, seed, stop, stream, n, moekit
        case maxTokens = "max_tokens"
        case maxCompletionTokens = "max_completion_tokens"
        case topP = "top_p", topK = "top_k", minP = "min_p"
        case repetitionPenalty = "repetition_penalty", presencePenalty = "presence_penalty", frequencyPenalty = "frequency_penalty"
        case streamOptions = "stream_options"
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        model = try c.decodeIfPresent(String.self, forKey: .model)
        maxTokens = try c.decodeIfPresent(Int.self, forKey: .maxTokens) ?? c.decodeIfPresent(Int.self, forKey: .maxCompletionTokens)
        temperature = try c.decodeIfPresent(Double.self, forKey: .temperature)
        topP = try c.decodeIfPresent(Double.self, forKey: .topP)
        topK = try c.decodeIfPresent(Int.self, forKey: .topK)
        minP = try c.decodeIfPresent(Double.self, forKey: .minP)
        repetitionPenalty = try c.decodeIfPresent(Double.self, forKey: .repetitionPenalty)
        presencePenalty = try c.decodeIfPresent(Double.self, forKey: .presencePenalty)
        frequencyPenalty = try c.decodeIfPresent(Double.self, forKey: .frequencyPenalty)
        seed = try c.decodeIfPresent(Int.self, forKey: .seed)
        stop = try c.decodeIfPresent(StopField.self, forKey: .stop)
        stream = try c.decodeIfPresent(Bool.self, forKey: .stream)
        streamOptions = try c.decodeIfPresent(StreamOptions.self, forKey: .streamOptions)
        n = try c.decodeIfPresent(Int.self, forKey: .n)
        moekit = try c.decodeIfPresent(MoEKitFields.self, forKey: .moekit)
    }

    func request(prompt: String, endOfTurn: String?, defaults: SamplingDefaults) throws -> GenerationRequest {
        if let maxTokens, maxTokens < 0 { throw APIError.invalidParameter("max_tokens", "max_tokens must be at least 0, got \(maxTokens)") }
        let temperature = self.temperature ?? defaults.temperature
        guard temperature.isFinite, (0...2).contains(temperature) else {
            throw APIError.invalidParameter("temperature", "temperature must be between 0 and 2, got \(temperature)")
        }
        let topP = self.topP ?? defaults.topP
        guard topP.isFinite, topP > 0, topP <= 1 else { throw APIError.invalidParameter("top_p", "top_p must be in (0, 1], got \(topP)") }
        // vLLM's convention: -1 (or 0) keeps every token.
        let topK = self.topK ?? defaults.topK
        guard topK >= -1 else { throw APIError.invalidParameter("top_k", "top_k must be -1 (off), 0 (off) or positive, got \(topK)") }
        let minP = self.minP ?? 0
        guard minP.isFinite, (0...1).contains(minP) else { throw APIError.invalidParameter("min_p", "min_p must be between 0 and 1, got \(minP)") }
        let repetitionPenalty = self.repetitionPenalty ?? 1
        guard repetitionPenalty.isFinite, repetitionPenalty > 0, repetitionPenalty <= 10 else {
            throw APIError.invalidParameter("repetition_penalty", "repetition_penalty must be in (0, 10], got \(repetitionPenalty)")
        }
        for (name, value) in [("presence_penalty", presencePenalty), ("frequency_penalty", frequencyPenalty)] {
            if let value, !(value.isFinite && (-2...2).contains(value)) {
                throw APIError.invalidParameter(name, "\(name) must be between -2 and 2, got \(value)")
            }
        }
        if let seed, seed < 0 { throw APIError.invalidParameter("seed", "seed must be at least 0, got \(seed)") }
        if let n, n != 1 { throw APIError.unsupportedParameter("n", "only n = 1 is implemented, got \(n)") }
        let stops = stop?.values ?? []
        guard stops.count <= 4 else { throw APIError.invalidParameter("stop", "at most 4 stop sequences, got \(stops.count)") }
        if let stop = stops.first(where: \.isEmpty) { throw APIError.invalidParameter("stop", "stop sequences must not be empty, got \"\(stop)\"") }
        let sampling = SamplingParameters(
            temperature: Float(temperature), topP: Float(topP), topK: max(0, topK), minP: Float(minP),
            repetitionPenalty: Float(repetitionPenalty), presencePenalty: Float(presencePenalty ?? 0),
            frequencyPenalty: Float(frequencyPenalty ?? 0), seed: UInt64(seed ?? 0))
        var request = GenerationRequest(
            model: model, prompt: prompt, maxTokens: maxTokens, sampling: sampling,
            stop: stops, stream: stream ?? false, endOfTurn: endOfTurn, includeUsage: streamOptions?.includeUsage ?? false)
        request.skip = try moekit?.skip.map { try SkipRequest(parsing: $0) }
        return request
    }
}

/// `stop`: one string or a list of strings.
struct StopField: Decodable {
    var values: [String]

    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let one = try? c.decode(String.self) { values = [one] } else { values = try c.decode([String].self) }
    }
}

struct CompletionBody: Decodable {
    var prompt: String
    var common: CommonFields
    /// The number of alternatives per token; `false`/null: none.
    var logprobs: Int?

    enum CodingKeys: String, CodingKey { case prompt, logprobs }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        // OpenAI also takes a list of prompts (a batch); MoEKit answers one prompt per request.
        if let list = try? c.decode([String].self, forKey: .prompt) {
            guard list.count == 1 else {
                throw APIError.invalidParameter("prompt", "send one prompt per request (a string, or a list of one); got \(list.count)")
            }
            prompt = list[0]
        } else {
            prompt = try c.decode(String.self, forKey: .prompt)
        }
        if (try? c.decodeIfPresent(Bool.self, forKey: .logprobs)) == false {
            logprobs = nil
        } else {
            logprobs = try c.decodeIfPresent(Int.self, forKey: .logprobs)
        }
        common = try CommonFields(from: decoder)
    }
}

struct ChatBody: Decodable {
    var messages: [ChatMessage]
    var common: CommonFields
    var logprobs: Bool?
    var topLogprobs: Int?

    enum CodingKeys: String, CodingKey { case messages, logprobs, topLogprobs = "top_logprobs" }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        messages = try c.decode([MessageBody].self, forKey: .messages).map { ChatMessage(role: $0.role, content: $0.content) }
        logprobs = try c.decodeIfPresent(Bool.self, forKey: .logprobs)
        topLogprobs = try c.decodeIfPresent(Int.self, forKey: .topLogprobs)
        common = try CommonFields(from: decoder)
    }
}

/// A chat message: `content` is a string or a list of `{"type": "text", "text": …}` parts.
struct MessageBody: Decodable {
    var role: String
    var content: String

    enum CodingKeys: String, CodingKey { case role, content }
    struct Part: Decodable {
        var type: String
        var text: String?
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        role = try c.decode(String.self, forKey: .role)
        guard ["system", "user", "assistant", "developer", "tool"].contains(role) else {
            throw DecodingError.dataCorruptedError(forKey: .role, in: c, debugDescription: "unknown role '\(role)'")
        }
        if let text = try? c.decode(String.self, forKey: .content) {
            content = text
        } else {
            let parts = try c.decode([Part].self, forKey: .content)
            guard parts.allSatisfy({ $0.type == "text" && $0.text != nil }) else {
                throw DecodingError.dataCorruptedError(forKey: .content, in: c, debugDescription: "only text content parts are supported")
            }
            content = parts.compactMap(\.text).joined()
        }
    }
}
