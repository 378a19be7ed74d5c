import Foundation
import ExpertStore
import MoE
import MoEServer
import XCTest

/// Where the server's chat template comes from, when it falls back to the plain format,
/// what ends a turn, and how a template's refusal reaches the client.
final class ChatTemplateServerTests: XCTestCase {
    static let chatMLSource = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    static let chatML = ChatTemplate(tokenizerConfig: config(["chat_template": chatMLSource]))

    static let templates = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/chat_templates/templates")

    static func config(_ object: [String: Any]) -> Data {
        try! JSONSerialization.data(withJSONObject: object)
    }

    static func published(_ name: String) throws -> String {
        try String(contentsOf: templates.appendingPathComponent("\(name).jinja"), encoding: .utf8)
    }

    let conversation = [ChatMessage(role: "system", content: "Be brief."), ChatMessage(role: "user", content: "Hi")]

    func testTemplateFromTokenizerConfigString() throws {
        let template = Self.chatML
        XCTAssertEqual(template.kind, .model)
        XCTAssertEqual(template.origin, "tokenizer_config.json chat_template")
        XCTAssertNil(template.warning)
        XCTAssertEqual(template.endOfTurn, "<|im_end|>")
        XCTAssertFalse(template.addsSpecialTokens)
        XCTAssertEqual(try template.render(conversation), "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    }

    func testNamedTemplateListUsesDefault() throws {
        let data = Self.config(["chat_template": [["name": "tool_use", "template": "TOOLS"], ["name": "default", "template": "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}"]],
                                "bos_token": ["content": "<s>", "lstrip": false]])
        let template = ChatTemplate(tokenizerConfig: data)
        XCTAssertEqual(template.origin, "tokenizer_config.json chat_template \"default\"")
        XCTAssertEqual(try template.render(conversation), "<s>[system]Be brief.[user]Hi")
    }

    func testChatTemplateJinjaFileWinsOverTheConfig() throws {
        let template = ChatTemplate(tokenizerConfig: Self.config(["chat_template": Self.chatMLSource, "eos_token": "</s>"]),
                                    templateFile: Data("{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}".utf8))
        XCTAssertEqual(template.origin, "chat_template.jinja")
        XCTAssertEqual(try template.render(conversation), "Be brief.</s>Hi</s>")
        XCTAssertEqual(template.endOfTurn, "</s>")
    }

    func testNoTemplateIsThePlainFormat() throws {
        for template in [ChatTemplate(tokenizerConfig: nil), ChatTemplate(tokenizerConfig: Self.config(["eos_token": "</s>"]))] {
            XCTAssertEqual(template, .plain)
            XCTAssertNil(template.warning)
            XCTAssertNil(template.endOfTurn)
            XCTAssertTrue(template.addsSpecialTokens)
            XCTAssertEqual(try template.render(conversation), "system: Be brief.\nuser: Hi\nassistant:")
        }
    }

    func testUnusableTemplateFallsBackToPlainWithAWarning() throws {
        let broken = ChatTemplate(tokenizerConfig: Self.config(["chat_template": "{% for m in messages %}\n{{ m.content }"]))
        XCTAssertEqual(broken.kind, .plain)
        let warning = try XCTUnwrap(broken.warning)
        XCTAssertTrue(warning.contains("tokenizer_config.json chat_template"), warning)
        XCTAssertTrue(warning.contains("line 2"), warning)
        XCTAssertEqual(try broken.render(conversation), "system: Be brief.\nuser: Hi\nassistant:")

        let unsupported = ChatTemplate(tokenizerConfig: Self.config(["chat_template": "{% for m in messages %}{{ m.content | wordwrap(5) }}{% endfor %}"]))
        XCTAssertEqual(unsupported.kind, .plain)
        XCTAssertTrue(unsupported.warning?.contains("no filter named 'wordwrap'") ?? false, unsupported.warning ?? "")
    }

    func testRefusedConversationIsA400OnMessages() throws {
        let mixtral = ChatTemplate(tokenizerConfig: Self.config(["chat_template": try Self.published("mixtral"), "bos_token": "<s>", "eos_token": "</s>"]))
        XCTAssertEqual(mixtral.kind, .model)
        XCTAssertThrowsError(try mixtral.render([ChatMessage(role: "user", content: "a"), ChatMessage(role: "user", content: "b")])) { error in
            let apiError = error as? APIError
            XCTAssertEqual(apiError?.param, "messages")
            XCTAssertEqual(apiError?.status.code, 400)
            XCTAssertTrue(apiError?.message.contains("conversation roles must alternate user/assistant/user/assistant/...") ?? false)
        }
    }

    /// The turn end of each family as its published template and tokenizer config give it.
    func testEndOfTurnPerFamily() throws {
        let cases: [(template: String, eos: String, endOfTurn: String)] = [
            ("mixtral", "</s>", "</s>"),
            ("qwen2", "<|im_end|>", "<|im_end|>"),
            ("qwen3", "<|im_end|>", "<|im_end|>"),
            ("olmoe", "<|endoftext|>", "<|endoftext|>"),
            ("deepseek-v3", "<｜end▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
        ]
        for (name, eos, expected) in cases {
            let template = ChatTemplate(tokenizerConfig: Self.config(["chat_template": try Self.published(name), "eos_token": eos]))
            XCTAssertEqual(template.kind, .model, name)
            XCTAssertEqual(template.endOfTurn, expected, name)
        }
    }
}

/// The chat endpoint end to end with a template other than ChatML: the default model
/// imported with OLMoE's published template as its `chat_template.jinja`, served as `full`.
final class ChatTemplateHTTPTests: XCTestCase {
    func testChatEndpointRendersTheStoresOwnTemplate() async throws {
        try XCTSkipUnless(ServeFixture.hasWeights, "the default model has no weights here")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("moekit-chat-template-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let checkpoint = directory.appendingPathComponent("checkpoint")
        try FileManager.default.createDirectory(at: checkpoint, withIntermediateDirectories: true)
        for name in ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"] {
            try FileManager.default.copyItem(at: ServeFixture.checkpoint.appendingPathComponent(name), to: checkpoint.appendingPathComponent(name))
        }
        try FileManager.default.createSymbolicLink(at: checkpoint.appendingPathComponent("model.safetensors"),
                                                   withDestinationURL: ServeFixture.checkpoint.appendingPathComponent("model.safetensors"))
        try Data(try ChatTemplateServerTests.published("olmoe").utf8).write(to: checkpoint.appendingPathComponent("chat_template.jinja"))
        let storeURL = directory.appendingPathComponent("store")
        _ = try StoreImporter(checkpoint: checkpoint, store: storeURL).run()
        let store = try ExpertStore(url: storeURL)

        let engine = try ServingEngine(store: store, configuration: ServerConfiguration(plans: ["full"], port: 0))
        XCTAssertEqual(engine.chatTemplate.origin, "chat_template.jinja")
        XCTAssertEqual(engine.chatTemplate.endOfTurn, "<|endoftext|>")
        let server = MoEServer(engine: engine)
        let running = try await server.start()
        let client = Client(port: running.port)

        // The Tulu/OLMoE template by hand: bos_token (the tiny model's is <|endoftext|>), each
        // message as <|role|>\ncontent\n, then the generation prompt.
        let rendered = "<|endoftext|><|system|>\nYou write Python.\n<|user|>\nSort a list.\n<|assistant|>\n"
        let tokenizer = engine.tokenizer
        let promptTokens = tokenizer.encode(rendered, addSpecialTokens: false)
        let endOfText = try XCTUnwrap(tokenizer.tokenID("<|endoftext|>"))
        XCTAssertEqual(promptTokens.first, endOfText)
        var detokenizer = StreamingDetokenizer(tokenizer: tokenizer)
        var expected = ""
        let model = try store.loadModel()
        _ = try Generator(model: model).generate(prompt: promptTokens, maxTokens: 10, stopTokens: Set(model.description.eosTokenIDs).union([endOfText])) { token in
            expected += detokenizer.append(token)
            return true
        }
        expected += detokenizer.flush()

        let (status, body) = try await client.post("/v1/chat/completions", json: [
            "model": "full", "max_tokens": 10,
            "messages": [["role": "system", "content": "You write Python."], ["role": "user", "content": "Sort a list."]],
        ])
        XCTAssertEqual(status, 200, String(decoding: body, as: UTF8.self))
        let answer = try object(body)
        let message = try XCTUnwrap((answer["choices"] as? [[String: Any]])?.first?["message"] as? [String: Any])
        XCTAssertEqual(message["content"] as? String, expected.components(separatedBy: "<|endoftext|>")[0])
        XCTAssertEqual((answer["usage"] as? [String: Int])?["prompt_tokens"], promptTokens.count)
        await running.stop()
        withExtendedLifetime(server) {}
    }
}
