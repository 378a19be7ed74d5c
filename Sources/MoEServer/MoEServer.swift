import Compression
import Foundation
import Synchronization
import Hummingbird
import HummingbirdCore
import NIOCore
import ServiceLifecycle

/// The OpenAI-compatible HTTP server over a `ServingEngine`:
///
/// - `POST /v1/completions`, `POST /v1/chat/completions`: generation, whole or streamed as
///   server-sent events (`stream: true`: one `data: {chunk}` per piece of text, then
///   `data: [DONE]`); `model` names the plan (or `auto`); the answer's `model` is the plan
///   that ran and `moekit.plan` says so again, with `moekit.auto` telling how it was chosen.
/// - `GET /v1/models`: the store's plans in OpenAI's list format, marked `served` or not.
/// - `GET /health`: `{"status": "ok", …}` once the plans are loaded.
/// - `GET /metrics`: Prometheus text (see `ServerMetrics`).
///
/// Every connection passes a `ConnectionGuard` (connection limit, read timeout, closing after
/// framing errors) and Hummingbird's idle timeout; every request the `APIMiddleware` (API
/// key, method, error bodies).
///
/// Generation runs on an `InferenceQueue` of `maxConcurrency` threads; the event loops only
/// parse, queue and write.
public final class MoEServer: Sendable {
    public let engine: ServingEngine
    public let metrics = ServerMetrics()
    let queue: InferenceQueue
    let started = Int(Date().timeIntervalSince1970)

    static let endpoints: [String: [HTTPRequest.Method]] = [
        "/v1/completions": [.post], "/v1/chat/completions": [.post], "/v1/models": [.get], "/health": [.get], "/metrics": [.get],
    ]
    let connections = ConnectionCounter()

    public init(engine: ServingEngine) {
        self.engine = engine
        queue = InferenceQueue(workers: max(1, engine.configuration.maxConcurrency))
    }

    deinit { queue.close() }

    /// Serves until SIGINT or SIGTERM; `onListening` gets the bound port.
    public func run(onListening: @escaping @Sendable (Int) -> Void = { _ in }) async throws {
        try await application(onListening: onListening).runService()
    }

    /// Starts serving in the background (for tests and embedding); `stop()` ends it.
    public func start() async throws -> RunningServer {
        let (ports, announce) = AsyncStream<Int>.makeStream()
        let app = application { port in
            announce.yield(port)
            announce.finish()
        }
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(services: [app], logger: app.logger))
        let task = Task {
            defer { announce.finish() }
            try await group.run()
        }
        for await port in ports { return RunningServer(port: port, task: task, group: group) }
        // The stream ended without a port: the server failed to start; report why.
        try await task.value
        throw CancellationError()
    }

    func application(onListening: @escaping @Sendable (Int) -> Void) -> some ApplicationProtocol {
        let router = Router()
        router.add(middleware: APIMiddleware(metrics: metrics, endpoints: Self.endpoints, maxBodyBytes: engine.configuration.maxBodyBytes,
                                             apiKey: engine.configuration.apiKey))
        router.post("/v1/completions") { request, _ in try await self.generate(request, chat: false) }
        router.post("/v1/chat/completions") { request, _ in try await self.generate(request, chat: true) }
        router.get("/v1/models") { _, _ in try self.models() }
        router.get("/health") { _, _ in self.json(HealthStatus(status: "ok", plans: self.engine.planNames, auto: self.engine.selector != nil)) }
        router.get("/metrics") { _, _ in
            let text = self.metrics.render(residentExpertBytes: self.engine.residentExpertBytes,
                                           cache: self.engine.cache?.statistics, queue: self.queue.statistics,
                                           batches: self.engine.batchStatistics)
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                            body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
        }
        let configuration = engine.configuration
        let limits = ConnectionGuard.Limits(maxConnections: configuration.maxConnections, requestTimeout: Self.timeAmount(configuration.requestTimeout))
        let counter = connections
        let http = HTTP1Channel.Configuration(additionalChannelHandlers: [ConnectionGuard(limits: limits, counter: counter)],
                                              idleTimeout: Self.timeAmount(configuration.idleTimeout))
        return Application(router: router, server: .http1(configuration: http),
                           configuration: ApplicationConfiguration(address: .hostname(configuration.host, port: configuration.port), serverName: "moekit"),
                           onServerRunning: { channel in onListening(channel.localAddress?.port ?? configuration.port) })
    }

    static func timeAmount(_ seconds: Double) -> TimeAmount { .nanoseconds(Int64(seconds * 1e9)) }

    // MARK: Generation

    private func generate(_ request: Request, chat: Bool) async throws -> Response {
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: engine.configuration.maxBodyBytes)
        } catch let error as any HTTPResponseError where error.status == .contentTooLarge {
            throw APIError.bodyTooLarge(limit: engine.configuration.maxBodyBytes)
        }
        let payload = Data(body.readableBytesView)
        let defaults = engine.samplingDefaults
        let parsed = chat ? try GenerationRequest.chat(json: payload, template: engine.chatTemplate, defaults: defaults)
                          : try GenerationRequest.completion(json: payload, defaults: defaults)
        // OpenAI's completions endpoint defaults to 16 tokens; chat answers run to the end of the context.
        let defaultMaxTokens = chat ? nil : 16
        let format = ResponseFormat(chat: chat, id: (chat ? "chatcmpl-" : "cmpl-") + UUID().uuidString.lowercased(),
                                    created: Int(Date().timeIntervalSince1970), tokenizer: engine.tokenizer)
        let engine = self.engine
        let received = RequestTimer()
        if !parsed.stream {
            let (prepared, result, timer) = try await queue.run {
                var timer = received
                timer.workerStarted()
                return try Self.translatingErrors {
                    let prepared = try engine.prepare(parsed, defaultMaxTokens: defaultMaxTokens)
                    return (prepared, try engine.generate(prepared, onToken: { timer.tokenChosen() }), timer)
                }
            }
            record(prepared, result, timer)
            return json(format.whole(prepared, result))
        }
        return try await stream(parsed, defaultMaxTokens: defaultMaxTokens, format: format, timer: received)
    }

    /// Streams the answer as server-sent events. The request is prepared (plan chosen, prompt
    /// checked) before the response starts, so those failures still get their status code.
    private func stream(_ parsed: GenerationRequest, defaultMaxTokens: Int?, format: ResponseFormat,
                        timer received: RequestTimer) async throws -> Response {
        let (events, sink) = AsyncStream<ByteBuffer>.makeStream()
        let listening = Flag(true)
        sink.onTermination = { _ in listening.set(false) }
        let engine = self.engine
        // Resumed once the request is prepared (or has failed its checks).
        try await withCheckedThrowingContinuation { (start: CheckedContinuation<Void, any Error>) in
            queue.submit {
                defer { sink.finish() }
                var timer = received
                timer.workerStarted()
                let prepared: ServingEngine.Prepared
                do {
                    prepared = try Self.translatingErrors { try engine.prepare(parsed, defaultMaxTokens: defaultMaxTokens) }
                } catch {
                    start.resume(throwing: error)
                    return
                }
                start.resume()
                sink.yield(Self.event(format.opening(prepared)))
                do {
                    let result = try Self.translatingErrors {
                        try engine.generate(prepared, onToken: { timer.tokenChosen() }) { piece in
                            sink.yield(Self.event(format.chunk(prepared, text: piece)))
                            return listening.value
                        }
                    }
                    self.record(prepared, result, timer)
                    sink.yield(Self.event(format.closing(prepared, result)))
                    if parsed.includeUsage { sink.yield(Self.event(format.usageChunk(prepared, result))) }
                } catch {
                    // The status line has gone out already: report the failure as an event.
                    var buffer = ByteBuffer(string: "data: ")
                    buffer.writeBytes((error as? APIError ?? .internalFailure(error)).body)
                    buffer.writeString("\n\n")
                    sink.yield(buffer)
                }
                sink.yield(ByteBuffer(string: "data: [DONE]\n\n"))
            }
        }
        return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
                        body: ResponseBody(asyncSequence: events))
    }

    private func record(_ prepared: ServingEngine.Prepared, _ result: ServingEngine.Result, _ timer: RequestTimer) {
        metrics.recordGeneration(plan: prepared.plan, auto: prepared.auto, promptTokens: prepared.promptTokens.count,
                                 generatedTokens: result.tokens.count, queueWaitSeconds: timer.queueWait, tokenTimes: timer.tokenTimes)
    }

    /// Model and store failures become 500s with their description; `APIError`s pass through.
    static func translatingErrors<T>(_ work: () throws -> T) throws -> T {
        do { return try work() } catch let error as APIError { throw error } catch { throw APIError.internalFailure(error) }
    }

    static func event(_ value: some Encodable) -> ByteBuffer {
        var buffer = ByteBuffer(string: "data: ")
        buffer.writeBytes(ResponseJSON.encode(value))
        buffer.writeString("\n\n")
        return buffer
    }

    // MARK: Other endpoints

    private func models() throws -> Response {
        var entries = [ModelList.Model]()
        let contextLength = engine.description.maxPositionEmbeddings
        if engine.selector != nil {
            entries.append(ModelList.Model(id: "auto", created: started, maxModelLen: contextLength, expertBytes: engine.cache?.limitBytes ?? 0,
                                           denseBytes: engine.plans.values.first?.model.denseByteCount ?? 0))
        }
        for name in engine.planNames {
            guard let served = engine.plans[name] else { continue }
            entries.append(ModelList.Model(id: name, created: started, maxModelLen: contextLength, expertBytes: served.plan.expectedExpertBytes,
                                           denseBytes: served.model.denseByteCount))
        }
        return json(ModelList(data: entries))
    }

    func json(_ value: some Encodable) -> Response {
        Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: ResponseJSON.encode(value))))
    }
}

/// A server started with `MoEServer.start()`.
public final class RunningServer: Sendable {
    public let port: Int
    private let task: Task<Void, any Error>
    private let group: ServiceGroup

    init(port: Int, task: Task<Void, any Error>, group: ServiceGroup) {
        self.port = port
        self.task = task
        self.group = group
    }

    /// Stops accepting connections, lets the requests in flight finish, and waits for the
    /// server to end.
    public func stop() async {
        await group.triggerGracefulShutdown()
        _ = try? await task.value
    }
}

struct HealthStatus: Encodable {
    var status: String
    var plans: [String]
    var auto: Bool
}

/// A Boolean shared between the response writer and the generating thread.
final class Flag: Sendable {
    private let current: Mutex<Bool>
    init(_ value: Bool) { current = Mutex(value) }
    var value: Bool { current.withLock { $0 } }
    func set(_ value: Bool) { current.withLock { $0 = value } }
}
