import ChatTemplates
import Foundation
import XCTest

/// The interpreter on hand-written templates, one Jinja feature each. Every expected string
/// is what Python's Jinja (3.1.6) renders in transformers' chat-template environment
/// (`trim_blocks`, `lstrip_blocks`, its `tojson`), so a mismatch is a difference from
/// transformers, not a change of taste.
final class InterpreterTests: XCTestCase {
    /// (what it shows, template, context as JSON, expected output)
    static let cases: [(name: String, template: String, context: String, expected: String)] = [
        ("dash strips both sides", "a  {{- 'b' -}}  \n c", "{}", "abc"),
        ("trim_blocks drops the newline after a block", "{% if true %}\nx\n{% endif %}\ny", "{}", "x\ny"),
        ("lstrip_blocks drops indentation before a block", "  {% if true %}\n  x\n  {% endif %}\n", "{}", "  x\n"),
        ("plus keeps indentation and newline", "  {%+ if true +%}\nx{% endif %}", "{}", "  \nx"),
        ("output tags are not trimmed", "  {{ 'x' }}\n  {{ 'y' }}\n", "{}", "  x\n  y"),
        ("comment is trimmed like a block", "a\n  {# note #}\nb", "{}", "a\nb"),
        ("dash on a comment", "a  {#- note -#}  b", "{}", "ab"),
        ("one trailing newline dropped", "x\n\n", "{}", "x\n"),
        ("loop variables", "{% for x in items %}{{ loop.index0 }}{{ loop.index }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.revindex }};{% endfor %}", "{\"items\": [\"a\", \"b\", \"c\"]}", "01TrueFalse33;12FalseFalse32;23FalseTrue31;"),
        ("previtem and nextitem", "{% for x in items %}[{{ loop.previtem }}|{{ loop.nextitem }}]{% endfor %}", "{\"items\": [1, 2, 3]}", "[|2][1|3][2|]"),
        ("loop filter counts kept items", "{% for x in items if x > 1 %}{{ x }}/{{ loop.length }} {% endfor %}", "{\"items\": [1, 2, 3]}", "2/2 3/2 "),
        ("loop else", "{% for x in [] %}x{% else %}empty{% endfor %}", "{}", "empty"),
        ("tuple unpacking over items()", "{% for k, v in d.items() %}{{ k }}={{ v }},{% endfor %}", "{\"d\": {\"b\": 1, \"a\": [2]}}", "b=1,a=[2],"),
        ("set in a loop does not leak", "{% set x = 0 %}{% for i in [1,2] %}{{ x }}{% set x = i %}{{ x }}{% endfor %}|{{ x }}", "{}", "0102|0"),
        ("namespace carries state out", "{% set ns = namespace(total=0, seen=false) %}{% for i in [1,2,3] %}{% set ns.total = ns.total + i %}{% endfor %}{{ ns.total }} {{ ns.seen }}", "{}", "6 False"),
        ("break and continue", "{% for i in range(10) %}{% if i == 1 %}{% continue %}{% endif %}{% if i == 4 %}{% break %}{% endif %}{{ i }}{% endfor %}", "{}", "023"),
        ("reversed slice", "{% for m in messages[::-1] %}{{ m }}{% endfor %}|{{ messages[1:] }}|{{ 'hello'[1:4] }}|{{ messages[-1] }}", "{\"messages\": [\"a\", \"b\", \"c\"]}", "cba|['b', 'c']|ell|c"),
        ("undefined renders empty and is falsy", "[{{ nothing }}]{% if not nothing %}no{% endif %}{{ nothing is defined }}{{ nothing|length }}{{ nothing|default('d') }}", "{}", "[]noFalse0d"),
        ("missing key is undefined", "{{ m.tool_calls is defined }}{{ m['x'] is undefined }}{{ m.get('x', 'fallback') }}", "{\"m\": {\"role\": \"user\"}}", "FalseTruefallback"),
        ("concatenating undefined with ~", "{{ 'a' ~ nothing ~ 'b' }}", "{}", "ab"),
        ("arithmetic", "{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 10 / 4 }} {{ 2 ** 10 }} {{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }}", "{}", "3 -4 1 2 2.5 1024 7 9"),
        ("string and list operators", "{{ 'ab' * 2 }} {{ [1] + [2] }} {{ 'x' ~ 1 ~ none }} {{ 'b' in 'abc' }} {{ 3 not in [1, 2] }}", "{}", "abab [1, 2] x1None True True"),
        ("comparisons and logic", "{{ 1 < 2 and 'a' < 'b' }} {{ not 1 == 1.0 }} {{ none or 'x' }} {{ 0 and 1 }} {{ true != false }}", "{}", "True False x 0 True"),
        ("inline if", "{{ 'yes' if flag else 'no' }}{{ 'hidden' if not flag }}", "{\"flag\": true}", "yes"),
        ("printing values as Python does", "{{ none }} {{ true }} {{ 1.0 }} {{ 0.5 }} {{ [1, 'a', none, false] }} {{ {'k': 'v', 'n': 1} }} {{ \"it's\" }}", "{}", "None True 1.0 0.5 [1, 'a', None, False] {'k': 'v', 'n': 1} it's"),
        ("string escapes", "{{ 'tab\\tnew\\nline \\u00e9 \\x41 \\\\ \\'' }}", "{}", "tab\tnew\nline é A \\ '"),
        ("filters bind tighter than operators", "{{ 'a' + ' b ' | trim + 'c' }}", "{}", "abc"),
        ("tests", "{{ x is string }}{{ x is mapping }}{{ d is mapping }}{{ l is iterable }}{{ n is none }}{{ 3 is odd }}{{ 4 is even }}{{ 9 is divisibleby 3 }}{{ 1 is number }}{{ l is sequence }}{{ x is not none }}", "{\"x\": \"s\", \"d\": {}, \"l\": [1], \"n\": null}", "TrueFalseTrueTrueTrueTrueTrueTrueTrueTrueTrue"),
        ("string filters", "{{ '  a b  '|trim }}|{{ 'ab'|upper }}|{{ 'AB'|lower }}|{{ 'hello world'|title }}|{{ 'hELLO'|capitalize }}|{{ 'a-b-c'|replace('-', '+') }}|{{ 5|string }}", "{}", "a b|AB|ab|Hello World|Hello|a+b+c|5"),
        ("list filters", "{{ [3, 1, 2]|length }} {{ [3, 1, 2]|first }} {{ [3, 1, 2]|last }} {{ ['a', 'b']|join(', ') }} {{ 'abc'|list }} {{ [1, 2, 2, 1]|unique|list }} {{ [3, 1, 2]|sort }} {{ [1, 2]|reverse|list }}", "{}", "3 3 2 a, b ['a', 'b', 'c'] [1, 2] [1, 2, 3] [2, 1]"),
        ("selectattr, rejectattr and map", "{{ ms|selectattr('role', 'equalto', 'user')|map(attribute='content')|join(',') }} {{ ms|rejectattr('role', 'equalto', 'user')|list|length }} {{ ms|map(attribute='role')|list }}", "{\"ms\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": \"b\"}, {\"role\": \"user\", \"content\": \"c\"}]}", "a,c 1 ['user', 'assistant', 'user']"),
        ("items filter", "{% for k, v in d|items %}{{ k }}:{{ v }} {% endfor %}", "{\"d\": {\"x\": 1, \"y\": 2}}", "x:1 y:2 "),
        ("int and float", "{{ '42'|int + 1 }} {{ 3.9|int }} {{ 'x'|int }} {{ 2|float }} {{ '2.5'|float }}", "{}", "43 3 0 2.0 2.5"),
        ("indent", "{{ 'a\\nb\\n\\nc'|indent(2) }}|{{ 'a\\nb'|indent(2, true) }}", "{}", "a\n  b\n\n  c|  a\n  b"),
        ("default with boolean", "{{ ''|default('empty', true) }} {{ ''|default('unused') }} {{ none|default('kept none') }}", "{}", "empty  None"),
        ("tojson as transformers writes it", "{{ v|tojson }}", "{\"v\": {\"b\": \"ü \\\"q\\\" \\\\ \\n\", \"a\": [1, 2.5, null, true, false], \"e\": {}, \"l\": []}}", "{\"b\": \"ü \\\"q\\\" \\\\ \\n\", \"a\": [1, 2.5, null, true, false], \"e\": {}, \"l\": []}"),
        ("tojson indent", "{{ v|tojson(indent=2) }}", "{\"v\": {\"a\": [1, {\"b\": []}], \"c\": \"x\"}}", "{\n  \"a\": [\n    1,\n    {\n      \"b\": []\n    }\n  ],\n  \"c\": \"x\"\n}"),
        ("tojson ensure_ascii and sort_keys", "{{ v|tojson(ensure_ascii=True, sort_keys=True) }}", "{\"v\": {\"z\": \"é🙂\", \"a\": 1}}", "{\"a\": 1, \"z\": \"\\u00e9\\ud83d\\ude42\"}"),
        ("tojson separators", "{{ v|tojson(separators=(',', ':')) }}", "{\"v\": {\"a\": [1, 2]}}", "{\"a\":[1,2]}"),
        ("string methods", "{{ ' x '.strip() }}|{{ 'xxhixx'.strip('x') }}|{{ '  l'.lstrip() }}|{{ 'r  '.rstrip() }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith(('x', 'c')) }}|{{ 'they\\'re here'.title() }}|{{ 'aXa'.replace('a', 'b') }}|{{ 'Hi'.upper() }}{{ 'Hi'.lower() }}", "{}", "x|hi|l|r|['a', 'b', '', 'c']|['a', 'b']|TrueTrue|They'Re Here|bXb|HIhi"),
        ("think splitting as Qwen3 does", "{{ c.split('</think>')[-1].lstrip('\\n') }}|{{ c.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') }}", "{\"c\": \"<think>\\nreason\\n</think>\\n\\nanswer\"}", "answer|reason"),
        ("dict methods", "{{ d.keys()|list }} {{ d.values()|list }} {{ d.get('a') }} {{ d.get('zz') }}", "{\"d\": {\"a\": 1, \"b\": 2}}", "['a', 'b'] [1, 2] 1 None"),
        ("macro with defaults and keywords", "{% macro tag(name, body='-') %}<{{ name }}>{{ body }}</{{ name }}>{% endmacro %}{{ tag('a') }}{{ tag('b', 'x') }}{{ tag('c', body='y') }}", "{}", "<a>-</a><b>x</b><c>y</c>"),
        ("set block", "{% set greeting %}Hello {{ who }}{% endset %}[{{ greeting }}]", "{\"who\": \"you\"}", "[Hello you]"),
        ("set tuple", "{% set a, b = [1, 2] %}{{ b }}{{ a }}", "{}", "21"),
        ("dict and list literals", "{% set d = {'k': [1, 2], 'n': {'x': 'y'}} %}{{ d.k[1] }}{{ d['n'].x }}{{ d|length }}", "{}", "2y2"),
        ("unicode is code points", "{{ s|length }} {{ s[1] }} {{ s == t }} {{ s[::-1] }}", "{\"s\": \"éa\", \"t\": \"éa\"}", "3 ́ False áe"),
    ]

    func testCasesRenderAsPythonJinjaDoes() throws {
        for testCase in Self.cases {
            guard case let .object(object) = try Value(parsingJSON: Data(testCase.context.utf8)) else { return XCTFail(testCase.name) }
            var context = [String: Value]()
            for pair in object.pairs { context[pair.key] = pair.value }
            do {
                let text = try Template(testCase.template).render(context)
                XCTAssertTrue(Array(text.utf8) == Array(testCase.expected.utf8), "\(testCase.name):\n got \(text.debugDescription)\nwant \(testCase.expected.debugDescription)")
            } catch {
                XCTFail("\(testCase.name): \(error)")
            }
        }
    }

    func testRaiseExceptionCarriesTheTemplatesMessage() {
        XCTAssertThrowsError(try Template("{% if messages|length == 0 %}{{ raise_exception('no messages!') }}{% endif %}").render(["messages": []])) { error in
            let error = error as? TemplateError
            XCTAssertEqual(error?.kind, .raised)
            XCTAssertEqual(error?.reason, "no messages!")
            XCTAssertEqual(error?.line, 1)
        }
    }

    func testSyntaxErrorsNameLineAndColumn() {
        func parseError(_ source: String) -> TemplateError? {
            do { _ = try Template(source); return nil } catch { return error }
        }
        let unclosed = parseError("{% for m in messages %}\n  {{ m.content }")
        XCTAssertEqual(unclosed?.kind, .syntax)
        XCTAssertEqual(unclosed?.line, 2)
        XCTAssertEqual(unclosed?.column, 3)
        XCTAssertEqual(unclosed?.reason, "tag not closed with }}")

        let empty = parseError("ok\n{% if %}")
        XCTAssertEqual(empty?.kind, .syntax)
        XCTAssertEqual(empty?.line, 2)
        XCTAssertEqual(empty?.column, 7)
        XCTAssertEqual(empty?.reason, "expected an expression, got end of statement block '%}'")

        XCTAssertEqual(parseError("{% if x %}a")?.reason, "template ended inside a block; expected one of elif, else, endif")
        XCTAssertEqual(parseError("{% endfor %}")?.reason, "unexpected 'endfor' without an opening tag")
        XCTAssertEqual(parseError("{% nosuch %}")?.reason, "encountered unknown tag 'nosuch'")
        XCTAssertEqual(parseError("{{ 'open }}")?.reason, "string not closed")
        let unsupported = parseError("{% call helper() %}x{% endcall %}")
        XCTAssertEqual(unsupported?.kind, .unsupported)
        XCTAssertEqual(unsupported?.reason, "the 'call' tag")
    }

    func testRenderErrorsAreTyped() {
        func renderError(_ source: String, _ context: [String: Value] = [:]) -> TemplateError? {
            do { _ = try Template(source).render(context); return nil } catch { return error }
        }
        let attribute = renderError("{{ x.y }}")
        XCTAssertEqual(attribute?.kind, .undefined)
        XCTAssertEqual(attribute?.reason, "'x' is undefined")
        XCTAssertEqual(attribute?.column, 5)
        XCTAssertEqual(renderError("{{ m.a.b }}", ["m": ["role": "user"]])?.reason, "'dict object' has no attribute 'a'")
        XCTAssertEqual(renderError("{{ missing + 'a' }}")?.kind, .undefined)
        let concatenation = renderError("{{ 'a' + 1 }}")
        XCTAssertEqual(concatenation?.kind, .type)
        XCTAssertEqual(concatenation?.reason, "can only concatenate str (not \"int\") to str")
        XCTAssertEqual(renderError("{% for x in none %}{% endfor %}")?.reason, "'NoneType' object is not iterable")
        XCTAssertEqual(renderError("{% set d = {} %}{% set d.x = 1 %}")?.reason, "cannot assign attribute on non-namespace object")
        let filter = renderError("{{ 'a'|wordwrap(3) }}")
        XCTAssertEqual(filter?.kind, .unsupported)
        XCTAssertEqual(filter?.reason, "no filter named 'wordwrap'")
        XCTAssertEqual(renderError("{{ x|tojson }}")?.kind, .undefined)
        XCTAssertEqual(renderError("{{ 'a'.nope() }}")?.reason, "'str object' has no attribute 'nope'")
    }

    /// Templates come with the model: ones built to exhaust the stack or memory get a typed
    /// error instead of crashing the server.
    func testHostileTemplatesFailWithoutCrashing() {
        func error(_ source: String) -> TemplateError? {
            do { _ = try Template(source).render([:]); return nil } catch { return error }
        }
        XCTAssertEqual(error("{{ " + String(repeating: "(", count: 5000) + "1" + String(repeating: ")", count: 5000) + " }}")?.reason,
                       "expressions nested more than 32 deep")
        XCTAssertEqual(error("{{ " + String(repeating: "not ", count: 5000) + "x }}")?.kind, .unsupported)
        XCTAssertEqual(error(String(repeating: "{% if true %}", count: 5000))?.kind, .unsupported)
        XCTAssertEqual(error("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}")?.reason, "macro calls nested more than 20 deep")
        XCTAssertEqual(error("{{ 'x' * 100000000 }}")?.kind, .unsupported)
        XCTAssertEqual(error("{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}")?.kind, .unsupported)
        XCTAssertEqual(error("{{ 9223372036854775807 + 1 }}")?.reason, "integer overflow")
    }

    /// The limits leave room on a small stack: the deepest template allowed renders on a
    /// thread with 512 KiB (a secondary thread's default on macOS).
    func testDeepestAllowedTemplateFitsA512KiBStack() throws {
        let nested = "{{ " + String(repeating: "(", count: 30) + "1" + String(repeating: ")", count: 30) + " }}"
        let recursive = "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{% endif %}{{ n }}{% endmacro %}{{ f(19) }}"
        let done = expectation(description: "rendered")
        nonisolated(unsafe) var results = [String]()
        let thread = Thread {
            results = [nested, recursive].map { (try? Template($0).render([:])) ?? "failed" }
            done.fulfill()
        }
        thread.stackSize = 512 << 10
        thread.start()
        wait(for: [done], timeout: 30)
        XCTAssertEqual(results, ["1", (0...19).map(String.init).joined()])
    }

    func testJSONInputKeepsKeyOrderAndNumberTypes() throws {
        let value = try Value(parsingJSON: Data(#"{"z": 1, "a": [2.0, -3, "\u00e9\ud83d\ude42", null, true], "m": {}}"#.utf8))
        XCTAssertEqual(try Template("{{ v|tojson }}").render(["v": value]), #"{"z": 1, "a": [2.0, -3, "é🙂", null, true], "m": {}}"#)
        XCTAssertThrowsError(try Value(parsingJSON: Data("{\"a\": }".utf8)))
        XCTAssertThrowsError(try Value(parsingJSON: Data("[1] 2".utf8)))
    }
}
