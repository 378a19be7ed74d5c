import ArgumentParser
import ExpertStore
import MoE
import Foundation
import MoEServer

/// `moekit serve`: the OpenAI-compatible HTTP server over a store's plans.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve a plan (or choose among several per request) over an OpenAI-compatible HTTP API.",
        discussion: """
        Endpoints: POST /v1/completions, POST /v1/chat/completions (both with "stream": true \
        for server-sent events), GET /v1/models, GET /health, GET /metrics (Prometheus).
        A request's "model" names the plan. With --plan (or --plans without --auto) the plans' \
        experts are loaded at start and nothing else when they fit the memory this process may \
        use (its cgroup limit, or MemAvailable); when they do not, or with --max-expert-memory, \
        they come through an LRU cache of that size (or of what the memory allows) and misses \
        are read from the store. With --plans a,b,c --auto each request \
        gets the plan whose routing signature (first MoE layer's expert-selection shares from the plan's \
        profile, PreMoe) is nearest the prompt's; experts load on demand into a cache bounded by \
        --max-expert-memory (or by the memory available when all plans' experts do not fit). \
        The cache's hits, misses and evictions are in /metrics. Chat prompts use the store's ChatML template when it has one, \
        otherwise "role: content" lines ending in "assistant:".
        Example: moekit serve --store demo.store --plans python-reap50,german-reap50 --auto --max-expert-memory 64
        """)

    @OptionGroup var storeOption: StoreOption
    @Option(help: "The plan to serve.") var plan: String?
    @Option(help: "Plans to serve, comma-separated.") var plans: String?
    @Flag(help: "Choose among --plans per request by routing signature, loading experts on demand.") var auto = false
    @Option(help: "Address to bind; without --api-key keep loopback unless the server is behind a proxy that authenticates.") var host = "127.0.0.1"
    @Option(help: "Port (0 picks a free one).") var port = 8080
    @OptionGroup var memory: ExpertMemoryOptions
    @OptionGroup var threadOptions: ThreadOptions
    @Option(help: "Requests computed at once (they share each forward pass of their plan); others wait in line.") var maxConcurrency = 8
    @Option(help: "Largest request body in bytes.") var maxBodyBytes = 1 << 20
    @Option(help: "stored: BF16/F16 experts stay 16-bit and are read by half-precision kernels; float32: widen them (twice the memory).")
    var expertPrecision: ExpertPrecision = .stored
    @Option(help: "Seconds from a request's head to the end of its body before it gets 408 and the connection closes.") var requestTimeout = 30.0
    @Option(help: "Seconds a connection may stay open without a request (or stall inside one) before it is closed.") var idleTimeout = 60.0
    @Option(help: "Open connections at most; more are answered 503 and closed.") var maxConnections = 256
    @Option(help: "Require 'Authorization: Bearer KEY' on /v1/* (401 otherwise); also read from MOEKIT_API_KEY. /health and /metrics stay open.")
    var apiKey: String?

    /// `--api-key`, else `MOEKIT_API_KEY`; empty means none.
    var resolvedAPIKey: String? {
        (apiKey ?? ProcessInfo.processInfo.environment["MOEKIT_API_KEY"]).flatMap { $0.isEmpty ? nil : $0 }
    }

    var planNames: [String] {
        (plan.map { [$0] } ?? []) + (plans ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    func validate() throws {
        guard !planNames.isEmpty else { throw ValidationError("name a plan: --plan NAME, or --plans a,b,c (with --auto)") }
        guard (0...65535).contains(port) else { throw ValidationError("--port must be in 0...65535") }
        guard maxConcurrency >= 1 else { throw ValidationError("--max-concurrency must be at least 1") }
        guard maxBodyBytes >= 1024 else { throw ValidationError("--max-body-bytes must be at least 1024") }
        guard requestTimeout.isFinite, requestTimeout > 0 else { throw ValidationError("--request-timeout must be a positive number of seconds") }
        guard idleTimeout.isFinite, idleTimeout > 0 else { throw ValidationError("--idle-timeout must be a positive number of seconds") }
        guard maxConnections >= 1 else { throw ValidationError("--max-connections must be at least 1") }
    }

    func run() async throws {
        threadOptions.apply()
        let store = try ExpertStore(url: storeOption.url)
        let configuration = ServerConfiguration(
            plans: planNames, auto: auto, host: host, port: port,
            maxExpertMemory: memory.limitBytes, maxConcurrency: maxConcurrency, maxBodyBytes: maxBodyBytes,
            expertPrecision: expertPrecision, requestTimeout: requestTimeout, idleTimeout: idleTimeout,
            maxConnections: maxConnections, apiKey: resolvedAPIKey)
        if !configuration.bindsLoopback && configuration.apiKey == nil {
            FileHandle.standardError.write(Data("moekit: warning: binding \(host), which other machines can reach, without --api-key (or MOEKIT_API_KEY): anyone who can connect can use the server\n".utf8))
        }
        let engine = try ServingEngine(store: store, configuration: configuration)
        FileHandle.standardError.write(Data("moekit: \(engine.residency.summary)\n".utf8))
        if let warning = engine.chatTemplate.warning {
            FileHandle.standardError.write(Data("moekit: warning: \(warning)\n".utf8))
        } else {
            FileHandle.standardError.write(Data("moekit: chat prompts from \(engine.chatTemplate.origin ?? "the plain 'role: content' format (the model has no chat template)")\n".utf8))
        }
        let server = MoEServer(engine: engine)
        let host = self.host
        let mode = auto ? "choosing per request among \(engine.planNames.joined(separator: ", "))" : "serving \(engine.planNames.joined(separator: ", "))"
        let resident = engine.residentExpertBytes
        let residency = engine.residency.summary
        try await server.run { port in
            // One line a supervisor (or serve-bench) can wait for, written unbuffered so a
            // supervisor reading a pipe sees it at once.
            FileHandle.standardOutput.write(Data("moekit serve: \(mode); \(resident) bytes of experts resident; \(residency); listening on http://\(host):\(port)\n".utf8))
        }
    }
}
