import Compression
import ExpertStore
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import MoE
import MoEServer
import Routing
import XCTest

/// A store built once per test process from the bundled default model: profiles `python`
/// and `german` from a few calibration lines each, and two REAP plans keeping half the
/// experts (`python-50`, `german-50`). Building takes a few seconds; every test shares it.
final class ServeFixture: @unchecked Sendable {
    static let repository = URL(fileURLWithPath: #filePath).resolvingSymlinksInPath()
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    /// `MOEKIT_TEST_MODEL` overrides the checkpoint (any Qwen3-MoE-style folder with a tokenizer).
    static let checkpoint = ProcessInfo.processInfo.environment["MOEKIT_TEST_MODEL"].map { URL(fileURLWithPath: $0) }
        ?? repository.appendingPathComponent("models/moekit-tiny")
    static var hasWeights: Bool { FileManager.default.fileExists(atPath: checkpoint.appendingPathComponent("model.safetensors").path) }

    static let plans = ["python-50", "german-50"]
    static let calibrationSamples = 24
    static let calibrationTokens = 256

    let directory: URL
    let store: ExpertStore
    let tokenizer: Tokenizer

    private static let lock = NSLock()
    nonisolated(unsafe) private static var built: ServeFixture?

    /// The shared fixture; skips the calling test when the default model has no weights yet.
    static func shared() throws -> ServeFixture {
        try XCTSkipUnless(hasWeights, "\(checkpoint.path)/model.safetensors is absent (the trained default model is not there yet)")
        lock.lock()
        defer { lock.unlock() }
        if let built { return built }
        let made = try ServeFixture()
        built = made
        // Shared by every test class, so removed when the test process ends.
        atexit { if let built = ServeFixture.built { try? FileManager.default.removeItem(at: built.directory) } }
        return made
    }

    private init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("moekit-serve-tests-\(UUID().uuidString)")
        let storeURL = directory.appendingPathComponent("store")
        _ = try StoreImporter(checkpoint: Self.checkpoint, store: storeURL).run()
        let writable = try ExpertStore(url: storeURL, readOnly: false)
        let tokenizer = try Tokenizer(data: try XCTUnwrap(writable.file("tokenizer.json")))
        self.tokenizer = tokenizer
        let full = try writable.loadModel()
        let slimmer = try Slimmer(store: writable)
        for domain in ["python", "german"] {
            let data = try CalibrationData(contentsOf: Self.repository.appendingPathComponent("calib/\(domain)"))
            let sequences = data.texts.prefix(Self.calibrationSamples).map { Array(tokenizer.encode($0).prefix(Self.calibrationTokens)) }.filter { $0.count >= 2 }
            var profiler = CalibrationProfiler(fingerprint: try writable.fingerprint() ?? "", source: data.file)
            profiler.denseSampleStride = 0  // REAP and TCESS need no all-expert samples; they would only slow the test
            let profile = try profiler.profile(model: full, sequences: sequences)
            try writable.profiles.put(profile, named: domain)
            var options = SlimOptions(name: "\(domain)-50")
            options.prune = .reap
            options.keepFraction = 0.5
            try slimmer.commit(slimmer.slim(profile: profile, profileName: domain, options: options))
        }
        store = try ExpertStore(url: storeURL)
    }

    /// Greedy continuation of `prompt` by `plan`, the way `moekit generate` produces it:
    /// `Generator` on the plan's model, stopping at end of sequence, text streamed through
    /// `StreamingDetokenizer`.
    func reference(plan: String, prompt: String, maxTokens: Int, extraStops: Set<Int> = []) throws -> (text: String, tokens: [Int]) {
        let model = try PlanLoader.model(plan: PlanLoader.plan(named: plan, in: store), store: store, precision: .stored).model
        var detokenizer = StreamingDetokenizer(tokenizer: tokenizer)
        var text = ""
        let tokens = try Generator(model: model).generate(prompt: tokenizer.encode(prompt), maxTokens: maxTokens,
                                                          stopTokens: Set(model.description.eosTokenIDs).union(extraStops)) { token in
            text += detokenizer.append(token)
            return true
        }
        return (text + detokenizer.flush(), tokens)
    }

    /// Held-out texts of a domain.
    static func heldout(_ domain: String) throws -> [String] {
        try CalibrationData(contentsOf: repository.appendingPathComponent("calib/\(domain)/heldout.jsonl")).texts
    }
}

/// A real HTTP client (URLSession) talking to a server started in this process on loopback.
struct Client {
    let base: URL
    let session: URLSession

    init(port: Int) {
        base = URL(string: "http://127.0.0.1:\(port)")!
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = 300
        configuration.httpMaximumConnectionsPerHost = 16
        session = URLSession(configuration: configuration)
    }

    func get(_ path: String) async throws -> (status: Int, body: Data) {
        try await send(URLRequest(url: base.appendingPathComponent(path)))
    }

    func post(_ path: String, body: Data) async throws -> (status: Int, body: Data) {
        var request = URLRequest(url: base.appendingPathComponent(path))
        request.httpMethod = "POST"
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.httpBody = body
        return try await send(request)
    }

    func post(_ path: String, json: [String: Any]) async throws -> (status: Int, body: Data) {
        try await post(path, body: JSONSerialization.data(withJSONObject: json))
    }

    private func send(_ request: URLRequest) async throws -> (status: Int, body: Data) {
        let (data, response) = try await session.data(for: request)
        return ((response as! HTTPURLResponse).statusCode, data)
    }
}

func object(_ data: Data, file: StaticString = #filePath, line: UInt = #line) throws -> [String: Any] {
    try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any], "not a JSON object: \(String(decoding: data, as: UTF8.self))", file: file, line: line)
}

/// The `data:` payloads of a server-sent event stream.
func events(_ data: Data) -> [String] {
    String(decoding: data, as: UTF8.self).components(separatedBy: "\n\n").compactMap { event in
        event.hasPrefix("data: ") ? String(event.dropFirst(6)) : nil
    }
}

extension ServeFixture {
    /// Starts a server on an ephemeral loopback port.
    func startServer(_ configuration: ServerConfiguration) async throws -> (MoEServer, RunningServer, Client) {
        var configuration = configuration
        configuration.port = 0
        let server = MoEServer(engine: try ServingEngine(store: store, configuration: configuration))
        let running = try await server.start()
        return (server, running, Client(port: running.port))
    }
}

/// The value of one sample (`name` with its labels, as written) in a Prometheus exposition,
/// read as a number: counters print as integers and gauges as floating point.
func metricSample(_ text: String, _ sample: String) -> Double? {
    text.split(separator: "\n").first { $0.hasPrefix(sample + " ") }.flatMap { Double($0.dropFirst(sample.count + 1)) }
}
