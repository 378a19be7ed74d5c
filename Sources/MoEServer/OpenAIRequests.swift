import Foundation
import MoE

/// What both generation endpoints ask for once their JSON is checked: the prompt text, the
/// plan (`model`) and the sampling settings. Unknown JSON fields are ignored, as OpenAI
/// clients send many that do not apply here.
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

    /// Parses a `/v1/completions` body.
    public static func completion(json: Data) throws -> GenerationRequest {
        let body = try decode(CompletionBody.self, json)
        guard !body.prompt.isEmpty else { throw APIError.invalidParameter("prompt", "prompt must not be empty") }
        return try body.common.request(prompt: body.prompt, endOfTurn: nil)
    }

    /// Parses a `/v1/chat/completions` body and renders its messages with `template`.
    public static func chat(json: Data, template: ChatTemplate) throws -> GenerationRequest {
        let body = try decode(ChatBody.self, json)
        guard !body.messages.isEmpty else { throw APIError.invalidParameter("messages", "messages must hold at least one message") }
        var request = try body.common.request(prompt: template.render(body.messages), endOfTurn: template.endOfTurn)
        request.addSpecialTokens = template.addsSpecialTokens
        return request
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

/// Fields shared by both endpoints, checked against OpenAI's ranges.
struct CommonFields: Decodable {
    var model: String?
    var maxTokens: Int?
    var temperature: Double?
    var topP: Double?
    var seed: Int?
    var stop: StopField?
    var stream: Bool?
    var n: Int?

    enum CodingKeys: String, CodingKey {
        case model, temperature, seed, stop, stream, n
        case maxTokens = "max_tokens"
        case maxCompletionTokens = "max_completion_tokens"
        case topP = "top_p"
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        model = try c.decodeIfPresent(String.self, forKey: .model)
        maxTokens = try c.decodeIfPresent(Int.self, forKey: .maxTokens) ?? c.decodeIfPresent(Int.self, forKey: .maxCompletionTokens)
        temperature = try c.decodeIfPresent(Double.self, forKey: .temperature)
        topP = try c.decodeIfPresent(Double.self, forKey: .topP)
        seed = try c.decodeIfPresent(Int.self, forKey: .seed)
        stop = try c.decodeIfPresent(StopField.self, forKey: .stop)
        stream = try c.decodeIfPresent(Bool.self, forKey: .stream)
        n = try c.decodeIfPresent(Int.self, forKey: .n)
    }

    func request(prompt: String, endOfTurn: String?) throws -> GenerationRequest {
        if let maxTokens, maxTokens < 0 { throw APIError.invalidParameter("max_tokens", "max_tokens must be at least 0, got \(maxTokens)") }
        let temperature = self.temperature ?? 0
        guard temperature.isFinite, (0...2).contains(temperature) else {
            throw APIError.invalidParameter("temperature", "temperature must be between 0 and 2, got \(temperature)")
        }
        let topP = self.topP ?? 1
        guard topP.isFinite, topP > 0, topP <= 1 else { throw APIError.invalidParameter("top_p", "top_p must be in (0, 1], got \(topP)") }
        if let seed, seed < 0 { throw APIError.invalidParameter("seed", "seed must be at least 0, got \(seed)") }
        if let n, n != 1 { throw APIError.invalidParameter("n", "only n = 1 is supported, got \(n)") }
        let stops = stop?.values ?? []
        guard stops.count <= 4 else { throw APIError.invalidParameter("stop", "at most 4 stop sequences, got \(stops.count)") }
        return GenerationRequest(
            model: model, prompt: prompt, maxTokens: maxTokens,
            sampling: SamplingParameters(temperature: Float(temperature), topP: Float(topP), seed: UInt64(seed ?? 0)),
            stop: stops, stream: stream ?? false, endOfTurn: endOfTurn)
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

    enum CodingKeys: String, CodingKey { case prompt }

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
        common = try CommonFields(from: decoder)
    }
}

struct ChatBody: Decodable {
    var messages: [ChatMessage]
    var common: CommonFields

    enum CodingKeys: String, CodingKey { case messages }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        messages = try c.decode([MessageBody].self, forKey: .messages).map { ChatMessage(role: $0.role, content: $0.content) }
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
