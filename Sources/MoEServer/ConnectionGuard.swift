import Foundation
import HTTPTypes
import NIOCore
import NIOHTTPTypes
import Synchronization

/// The number of open connections, shared by every connection's `ConnectionGuard`.
final class ConnectionCounter: Sendable {
    private let count = Mutex(0)

    /// Counts a new connection; false (and not counted) when `limit` are open already.
    func admit(limit: Int) -> Bool {
        count.withLock { open in
            guard open < limit else { return false }
            open += 1
            return true
        }
    }

    func release() { count.withLock { $0 -= 1 } }

    var open: Int { count.withLock { $0 } }
}

/// What `ConnectionGuard` reports to the route reading a request's body, so the route answers
/// with a 4xx instead of treating a cut or stalled body as complete (or as a server failure).
enum RequestFramingError: Error, CustomStringConvertible {
    /// The head arrived but the body did not end within `--request-timeout`.
    case readTimeout(seconds: Double)
    /// The client closed its side before the body reached its declared end.
    case truncatedBody

    var description: String {
        switch self {
        case let .readTimeout(seconds): "the request was not received within \(seconds) seconds"
        case .truncatedBody: "the connection was closed before the request body ended"
        }
    }
}

/// One per connection, between Hummingbird's HTTP codec and its request handling (an
/// `additionalChannelHandlers` entry of `HTTP1Channel`). It adds what Hummingbird leaves out:
///
/// - **Connection limit**: past `maxConnections` open connections, a new one is answered
///   `503` at once and closed (it is accepted, so the client learns why, rather than left
///   waiting in the listen backlog).
/// - **Request read timeout**: a request whose body has not ended `requestTimeout` after its
///   head fails with `RequestFramingError.readTimeout` (the route answers 408). A head that
///   never completes is bounded by Hummingbird's idle timeout, which counts from the last part
///   received.
/// - **Truncated bodies**: input closing between a head and its end fails the body read with
///   `RequestFramingError.truncatedBody` (400), where Hummingbird would end the body early.
/// - **Close after `Connection: close` responses**: once such a response's last part is on the
///   wire the output side is shut (the client sees the end at once) and further input is read
///   and dropped for a short linger before the socket closes, so a client still sending an
///   oversized body gets its 413 instead of a reset or a hang.
final class ConnectionGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    struct Limits: Sendable {
        var maxConnections: Int
        var requestTimeout: TimeAmount
        /// How long input is drained after a closing response before the socket closes.
        var linger: TimeAmount = .seconds(2)
    }

    private let limits: Limits
    private let counter: ConnectionCounter
    private var counted = false
    private var refused = false
    /// Set once a `Connection: close` response has started: its end closes the connection.
    private var closeAfterResponse = false
    /// Set once the connection is closing: input is dropped, output refused.
    private var closing = false
    private var readingRequest = false
    private var requestTimer: Scheduled<Void>?

    init(limits: Limits, counter: ConnectionCounter) {
        self.limits = limits
        self.counter = counter
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { admit(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        admit(context: context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        release()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        requestTimer?.cancel()
        release()
    }

    private func admit(context: ChannelHandlerContext) {
        guard !counted, !refused else { return }
        if counter.admit(limit: limits.maxConnections) {
            counted = true
            return
        }
        refused = true
        let error = APIError(status: .serviceUnavailable, message: "the server has \(limits.maxConnections) connections open, its limit (--max-connections); retry later",
                             type: "server_error", code: "too_many_connections")
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        headers[.contentLength] = String(error.body.count)
        headers[.connection] = "close"
        closeAfterResponse = true
        context.write(wrapOutboundOut(.head(HTTPResponse(status: .serviceUnavailable, headerFields: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(ByteBuffer(bytes: error.body))), promise: nil)
        writeFinalPart(context: context, data: wrapOutboundOut(.end(nil)), promise: nil)
    }

    private func release() {
        guard counted else { return }
        counted = false
        counter.release()
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing, !refused else { return }
        switch unwrapInboundIn(data) {
        case .head:
            readingRequest = true
            let seconds = Double(limits.requestTimeout.nanoseconds) / 1e9
            requestTimer = context.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(in: limits.requestTimeout) { [self] in
                requestTimer = nil
                guard readingRequest, !closing else { return }
                readingRequest = false
                context.fireErrorCaught(RequestFramingError.readTimeout(seconds: seconds))
            }
        case .body:
            break
        case .end:
            readingRequest = false
            requestTimer?.cancel()
            requestTimer = nil
        }
        context.fireChannelRead(data)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed, readingRequest, !closing {
            readingRequest = false
            requestTimer?.cancel()
            context.fireErrorCaught(RequestFramingError.truncatedBody)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // After a closing response nothing more is answered; the decoder may still complain
        // about the rest of a body being dropped.
        guard !closing, !refused else { return }
        context.fireErrorCaught(error)
    }

    // MARK: Outbound

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if closing {
            promise?.fail(ChannelError.outputClosed)
            return
        }
        switch unwrapOutboundIn(data) {
        case let .head(response):
            if response.headerFields[.connection]?.lowercased() == "close" { closeAfterResponse = true }
            context.write(data, promise: promise)
        case .body:
            context.write(data, promise: promise)
        case .end:
            if closeAfterResponse {
                writeFinalPart(context: context, data: data, promise: promise)
            } else {
                context.write(data, promise: promise)
            }
        }
    }

    /// Writes the last part of a closing response, then shuts the output once it is sent and
    /// closes the socket after the linger (or sooner, when the client closes).
    private func writeFinalPart(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(data, promise: written)
        written.futureResult.cascade(to: promise)
        closing = true
        requestTimer?.cancel()
        let channel = context.channel
        let linger = limits.linger
        written.futureResult.whenComplete { _ in
            channel.close(mode: .output, promise: nil)
            channel.eventLoop.scheduleTask(in: linger) { channel.close(promise: nil) }
        }
    }
}
