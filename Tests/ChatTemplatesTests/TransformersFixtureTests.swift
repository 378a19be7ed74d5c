import ChatTemplates
import Foundation
import XCTest

/// Every case of `Tests/Fixtures/chat_templates/*.json` (made by
/// `tools/chat-templates/render.py` with transformers' own `apply_chat_template`) rendered by
/// MoEKit: the same text byte for byte, or the same error where transformers raised one.
final class TransformersFixtureTests: XCTestCase {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/chat_templates")

    struct Fixture {
        var name: String
        var template: String
        var cases: [Value]
    }

    static func fixtures() throws -> [Fixture] {
        let files = try FileManager.default.contentsOfDirectory(at: folder, includingPropertiesForKeys: nil)
            .filter { $0.pathExtension == "json" }.sorted { $0.path < $1.path }
        return try files.map { file in
            guard case let .object(fixture) = try Value(parsingJSON: Data(contentsOf: file)),
                  case let .string(templateFile)? = fixture["template_file"],
                  case let .array(cases)? = fixture["cases"] else {
                throw XCTSkip("\(file.lastPathComponent) is not a chat template fixture")
            }
            let template = try String(contentsOf: folder.appendingPathComponent(templateFile), encoding: .utf8)
            return Fixture(name: file.deletingPathExtension().lastPathComponent, template: template, cases: cases)
        }
    }

    func testEveryFamilyHasAFixture() throws {
        let names = Set(try Self.fixtures().map(\.name))
        for family in ["mixtral", "qwen2", "qwen3", "olmoe", "deepseek-v3"] {
            XCTAssertTrue(names.contains(family), "no fixture for \(family)")
        }
    }

    func testRenderingEqualsTransformers() throws {
        var rendered = 0, raised = 0
        for fixture in try Self.fixtures() {
            let template: Template
            do {
                template = try Template(fixture.template)
            } catch {
                XCTFail("\(fixture.name): \(error)")
                continue
            }
            for case let .object(testCase) in fixture.cases {
                guard case let .string(caseName)? = testCase["name"], case let .object(variables)? = testCase["variables"],
                      let messages = testCase["messages"] else {
                    XCTFail("\(fixture.name): malformed case")
                    continue
                }
                var context = [String: Value]()
                for pair in variables.pairs { context[pair.key] = pair.value }
                context["messages"] = messages
                let label = "\(fixture.name)/\(caseName)"
                if case let .string(expected)? = testCase["expected"] {
                    do {
                        let text = try template.render(context)
                        XCTAssertTrue(Array(text.utf8) == Array(expected.utf8), "\(label):\n got \(text.debugDescription)\nwant \(expected.debugDescription)")
                        rendered += 1
                    } catch {
                        XCTFail("\(label): \(error)")
                    }
                } else if case let .string(message)? = testCase["error"] {
                    do {
                        let text = try template.render(context)
                        XCTFail("\(label): rendered \(text.debugDescription), transformers raised \(message)")
                    } catch {
                        XCTAssertEqual(error.kind, .raised, label)
                        XCTAssertEqual(error.reason, message, label)
                        raised += 1
                    }
                }
            }
        }
        // 8 templates × 15 conversations, 4 of them refused by Mixtral's template.
        XCTAssertEqual(rendered + raised, 120)
        XCTAssertEqual(raised, 4)
    }
}
