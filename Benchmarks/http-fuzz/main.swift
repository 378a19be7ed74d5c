// A seeded fuzz run against `moekit serve`: malformed and mutated HTTP requests over raw
// sockets, each on its own connection, with the server in a child process so that a crash
// is seen (and counted) instead of ending the run. Prints counts per kind of request:
// 2xx, 4xx, 5xx (must be 0), answered by closing without a response, timeouts, and crashes
// (must be 0).
//
//   http-fuzz --moekit .build/debug/moekit --store S [--plan full] [--cases 2000] [--seed 16]
import Foundation
import HTTPProbe
import MoE

struct Options {
    var moekit = ".build/debug/moekit"
    var store = ""
    var plan = "full"
    var cases = 2000
    var seed: UInt64 = 16

    init(_ arguments: [String]) {
        var rest = arguments[...]
        while let flag = rest.popFirst() {
            guard let value = rest.popFirst() else { Self.usage("\(flag) needs a value") }
            switch flag {
            case "--moekit": moekit = value
            case "--store": store = value
            case "--plan": plan = value
            case "--cases": cases = Int(value) ?? { Self.usage("--cases takes a number") }()
            case "--seed": seed = UInt64(value) ?? { Self.usage("--seed takes a number") }()
            default: Self.usage("unknown option \(flag)")
            }
        }
        if store.isEmpty { Self.usage("--store is required") }
    }

    static func usage(_ problem: String) -> Never {
        FileHandle.standardError.write(Data("http-fuzz: \(problem)\nusage: http-fuzz --moekit PATH --store S [--plan P] [--cases N] [--seed N]\n".utf8))
        exit(2)
    }
}

/// The server under test, restarted if it dies.
final class ServerProcess {
    let options: Options
    let port: Int
    private(set) var process = Process()

    init(options: Options, port: Int) throws {
        self.options = options
        self.port = port
        try start()
    }

    func start() throws {
        process = Process()
        process.executableURL = URL(fileURLWithPath: options.moekit)
        // Short timeouts so stalled bodies cost a second, not thirty; a small body limit so
        // oversized bodies are cheap to send.
        process.arguments = ["serve", "--store", options.store, "--plan", options.plan, "--port", String(port),
                             "--request-timeout", "1", "--idle-timeout", "2", "--max-body-bytes", "65536", "--max-concurrency", "4"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        for _ in 0..<600 {
            if let connection = try? RawHTTPConnection(port: port) {
                connection.send("GET /health HTTP/1.1\r\nHost: fuzz\r\n\r\n")
                if connection.readResponse(timeout: 2)?.status == 200 { return }
            }
            guard process.isRunning else { break }
            usleep(100_000)
        }
        throw RawHTTPConnection.Failure(description: "moekit serve did not come up on port \(port)")
    }

    func stop() {
        process.terminate()
        process.waitUntilExit()
    }
}

/// Seeded choices.
struct Dice {
    var generator: SeededGenerator
    mutating func int(_ range: Range<Int>) -> Int { Int.random(in: range, using: &generator) }
    mutating func pick<T>(_ values: [T]) -> T { values[int(0..<values.count)] }
    mutating func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &generator) < p }
}

/// One request as bytes, with the kind it was made as.
struct Case {
    var kind: String
    var bytes: [UInt8]
    /// Close the sending side after the bytes (the server then sees end of input).
    var shutdown: Bool
}

struct RequestMaker {
    var dice: Dice
    let plan: String

    static let fields = ["model", "prompt", "max_tokens", "temperature", "top_p", "top_k", "min_p", "seed", "stop", "stream",
                         "logprobs", "top_logprobs", "n", "presence_penalty", "frequency_penalty", "repetition_penalty", "echo",
                         "tools", "response_format", "stream_options", "user", "logit_bias", "suffix", "best_of", "messages",
                         "max_completion_tokens", "tool_choice", "zzz_unknown"]

    mutating func value(depth: Int = 0) -> Any {
        switch dice.int(0..<17) {
        case 0: return dice.int(-3..<5)
        case 1: return 0
        case 2: return dice.pick([Int.max, Int.min, Int(Int32.max), 1 << 40])
        case 3: return dice.pick([-1.5, 0.5, 1e308, -1e308, 1e-310, 2.0, 100.0])
        case 4: return ""
        case 5: return String(repeating: dice.pick(["a", "é", "🙂", "\u{0}", "\\", "\""]), count: dice.int(1..<300))
        case 6: return NSNull()
        case 7: return true
        case 8: return false
        case 9: return depth > 3 ? [] : (0..<dice.int(0..<4)).map { _ in value(depth: depth + 1) }
        case 10: return depth > 3 ? [:] : [dice.pick(Self.fields): value(depth: depth + 1)]
        case 11: return dice.pick(["\n", "def", "[DONE]", "<|im_end|>"])
        case 12: return plan
        case 13: return "nosuch-plan"
        case 14: return [["role": dice.pick(["user", "system", "assistant", "tool", "bogus"]), "content": value(depth: depth + 1)]]
        case 15: return dice.int(1..<4)
        default: return "def add(a, b):"
        }
    }

    /// A valid completion or chat body with a few fields set to random values.
    mutating func mutatedJSON(chat: Bool) -> Case {
        var body: [String: Any] = ["model": plan, "max_tokens": dice.int(1..<4)]
        if chat { body["messages"] = [["role": "user", "content": "hi"]] } else { body["prompt"] = "def add(a, b):" }
        // A quarter stay valid, so the fuzz also runs generation between the broken ones.
        for _ in 0..<dice.int(0..<4) { body[dice.pick(Self.fields)] = value() }
        // Keep the run bounded: a budget the fuzz made huge is put back in range half the time.
        if let tokens = body["max_tokens"] as? Int, tokens > 8, dice.chance(0.5) { body["max_tokens"] = 4 }
        let json = (try? JSONSerialization.data(withJSONObject: body, options: [.fragmentsAllowed])) ?? Data("{}".utf8)
        return post(chat ? "/v1/chat/completions" : "/v1/completions", Array(json), kind: chat ? "chat fields" : "completion fields")
    }

    /// Bodies that are not JSON, or JSON at its edges.
    mutating func brokenJSON() -> Case {
        let valid = Array("{\"model\":\"\(plan)\",\"prompt\":\"x\",\"max_tokens\":2}".utf8)
        var bytes: [UInt8]
        switch dice.int(0..<8) {
        case 0: bytes = Array(valid.prefix(dice.int(0..<valid.count)))
        case 1:
            bytes = valid
            for _ in 0..<dice.int(1..<4) { bytes[dice.int(0..<bytes.count)] = UInt8(dice.int(0..<256)) }
        case 2: bytes = Array(String(repeating: "[", count: dice.pick([100, 1000, 100_000])).utf8)
        case 3: bytes = Array("{\"model\":\"\(plan)\",\"prompt\":\"x\",\"max_tokens\":1e400}".utf8)
        case 4: bytes = Array("{\"prompt\":\"x\",\"prompt\":[1,2],\"model\":\"\(plan)\",\"max_tokens\":1}".utf8)
        case 5: bytes = [0xFF, 0xFE] + valid
        case 6: bytes = Array("{\"model\":\"\(plan)\",\"prompt\":\"\\ud800\",\"max_tokens\":1}".utf8)
        default: bytes = (0..<dice.int(1..<200)).map { _ in UInt8(dice.int(0..<256)) }
        }
        return post(dice.chance(0.5) ? "/v1/completions" : "/v1/chat/completions", bytes, kind: "broken JSON")
    }

    /// Requests whose framing is wrong: lengths, chunks, headers, request lines.
    mutating func badFraming() -> Case {
        let body = Array("{\"model\":\"\(plan)\",\"prompt\":\"x\",\"max_tokens\":1}".utf8)
        let head = "POST /v1/completions HTTP/1.1\r\nHost: fuzz\r\nContent-Type: application/json\r\n"
        func text(_ s: String, shutdown: Bool = false) -> Case { Case(kind: "framing", bytes: Array(s.utf8), shutdown: shutdown) }
        switch dice.int(0..<14) {
        case 0: return Case(kind: "framing", bytes: Array((head + "Content-Length: \(body.count + dice.int(1..<50))\r\n\r\n").utf8) + body, shutdown: true)
        case 1: return Case(kind: "framing", bytes: Array((head + "Content-Length: \(body.count + 20)\r\n\r\n").utf8) + body, shutdown: false)
        case 2: return text(head + "Content-Length: \(dice.pick(["-1", "abc", "99999999999999999999", "1, 2"]))\r\n\r\n")
        case 3: return text(head + "Content-Length: 5\r\nContent-Length: 7\r\n\r\n12345")
        case 4: return text(head + "Transfer-Encoding: chunked\r\n\r\n\(dice.pick(["zz", "-5", "FFFFFFFFFFFFFFFFFF", "3;x"]))\r\nabc\r\n0\r\n\r\n")
        case 5: return text(head + "Transfer-Encoding: chunked\r\n\r\n5\r\nab", shutdown: true)
        case 6: return text(head + "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
        case 7: return Case(kind: "framing", bytes: Array((head + "Content-Length: 70000\r\n\r\n").utf8) + [UInt8](repeating: 0x20, count: 70000), shutdown: false)
        case 8: return text(head + "X-Long: " + String(repeating: "a", count: dice.pick([9000, 70000])) + "\r\nContent-Length: 0\r\n\r\n")
        case 9: return text(head + "no colon here\r\nContent-Length: 0\r\n\r\n")
        case 10: return text(dice.pick(["GARBAGE\r\n\r\n", "GET\r\n\r\n", "GET / HTTP/9.9\r\n\r\n", "\r\n\r\n", "POST /v1/completions\r\n\r\n"]))
        case 11: return Case(kind: "framing", bytes: (0..<dice.int(1..<500)).map { _ in UInt8(dice.int(0..<256)) } + Array("\r\n\r\n".utf8), shutdown: false)
        case 12: return text("POST /v1/completions HTTP/1.0\r\nContent-Length: \(body.count)\r\n\r\n" + String(decoding: body, as: UTF8.self))
        default: return text(head + "Content-Length: 0\r\n\r\n")
        }
    }

    /// Methods and paths, known and not.
    mutating func methodAndPath() -> Case {
        let method = dice.pick(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "BREW", "get"])
        let path = dice.pick(["/", "/health", "/metrics", "/v1/models", "/v1/completions", "/v1/chat/completions", "/v1/../metrics",
                              "/v1/completions?x=%zz", "/%00", "/" + String(repeating: "a", count: 5000), "/v1/embeddings", "*"])
        return Case(kind: "method/path", bytes: Array("\(method) \(path) HTTP/1.1\r\nHost: fuzz\r\nContent-Length: 0\r\n\r\n".utf8), shutdown: false)
    }

    mutating func post(_ path: String, _ body: [UInt8], kind: String) -> Case {
        let head = "POST \(path) HTTP/1.1\r\nHost: fuzz\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\n\r\n"
        return Case(kind: kind, bytes: Array(head.utf8) + body, shutdown: false)
    }

    mutating func next() -> Case {
        switch dice.int(0..<10) {
        case 0, 1, 2: return mutatedJSON(chat: false)
        case 3, 4: return mutatedJSON(chat: true)
        case 5, 6: return brokenJSON()
        case 7, 8: return badFraming()
        default: return methodAndPath()
        }
    }
}

struct Tally {
    var cases = 0, success = 0, clientError = 0, serverError = 0, closedWithoutAnswer = 0, timedOut = 0, crashes = 0
    var line: String {
        "\(cases) cases: \(success) 2xx, \(clientError) 4xx, \(serverError) 5xx, \(closedWithoutAnswer) closed without an answer, \(timedOut) timed out, \(crashes) crashes"
    }
}

func freePort() -> Int {
    // Bind port 0, read the port the kernel chose, close: the server binds it next.
    let probe = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(probe) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(probe, $0, length) } }
    _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(probe, $0, &length) } }
    return Int(UInt16(bigEndian: address.sin_port))
}

let options = Options(Array(CommandLine.arguments.dropFirst()))
let server = try ServerProcess(options: options, port: freePort())
var maker = RequestMaker(dice: Dice(generator: SeededGenerator(seed: options.seed)), plan: options.plan)
var total = Tally()
var byKind = [String: Tally]()
var serverErrors = [String]()
var unanswered = [String]()
let started = Date()
for index in 0..<options.cases {
    let request = maker.next()
    var tally = byKind[request.kind] ?? Tally()
    tally.cases += 1
    total.cases += 1
    if let connection = try? RawHTTPConnection(port: server.port) {
        connection.send(request.bytes)
        if request.shutdown { connection.shutdownWrite() }
        if let response = connection.readResponse(timeout: 30) {
            switch response.status {
            case 200..<300: tally.success += 1; total.success += 1
            case 400..<500: tally.clientError += 1; total.clientError += 1
            default:
                tally.serverError += 1; total.serverError += 1
                serverErrors.append("case \(index) (\(request.kind)): \(response.status) \(String(decoding: response.body.prefix(200), as: UTF8.self))")
            }
        } else {
            let (_, closed) = connection.read(timeout: 0.01)
            unanswered.append("case \(index) (\(request.kind), \(closed ? "closed" : "timed out")): \(String(decoding: request.bytes.prefix(160), as: UTF8.self).debugDescription)")
            if closed { tally.closedWithoutAnswer += 1; total.closedWithoutAnswer += 1 } else { tally.timedOut += 1; total.timedOut += 1 }
        }
    }
    usleep(2_000)
    if !server.process.isRunning {
        tally.crashes += 1
        total.crashes += 1
        FileHandle.standardError.write(Data("case \(index) (\(request.kind)) ended the server (status \(server.process.terminationStatus)): \(String(decoding: request.bytes.prefix(300), as: UTF8.self))\n".utf8))
        try server.start()
    }
    byKind[request.kind] = tally
}
// The server still answers a plain request after the run.
let check = try RawHTTPConnection(port: server.port)
check.send("GET /health HTTP/1.1\r\nHost: fuzz\r\n\r\n")
let healthy = check.readResponse(timeout: 5)?.status == 200
server.stop()

print("http-fuzz (seed \(options.seed), plan \(options.plan)): \(total.line) in \(Int(Date().timeIntervalSince(started))) s; healthy after: \(healthy)")
for (kind, tally) in byKind.sorted(by: { $0.key < $1.key }) { print("  \(kind): \(tally.line)") }
for line in serverErrors.prefix(20) { print("  5xx \(line)") }
for line in unanswered.prefix(20) { print("  no answer: \(line)") }
exit(total.serverError == 0 && total.crashes == 0 && healthy ? 0 : 1)
