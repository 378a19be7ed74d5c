import Foundation

/// Runs model computations (synchronous CPU work) on a fixed set of dedicated threads, so
/// that at most `workers` requests compute at once and the event loops that accept
/// connections never block. Jobs wait in FIFO order.
public final class InferenceQueue: @unchecked Sendable {
    public struct Statistics: Sendable, Equatable {
        public var running: Int
        public var waiting: Int
    }

    private let condition = NSCondition()
    private var jobs = [() -> Void]()
    private var running = 0
    private var closed = false

    public init(workers: Int, name: String = "moekit-inference") {
        precondition(workers > 0, "an inference queue needs at least one worker")
        for i in 0..<workers {
            let thread = Thread { [self] in work() }
            thread.name = "\(name)-\(i)"
            // The forward pass recurses little but keeps large matrices on the heap; the
            // default 512 KiB secondary-thread stack is still tight for debug builds.
            thread.stackSize = 8 << 20
            thread.start()
        }
    }

    public var statistics: Statistics {
        condition.withLock { Statistics(running: running, waiting: jobs.count) }
    }

    /// Queues `job`; it runs on one of the workers.
    public func submit(_ job: @escaping @Sendable () -> Void) {
        condition.withLock {
            jobs.append(job)
            condition.signal()
        }
    }

    /// Runs `work` on a worker and returns its result to the awaiting task.
    public func run<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            submit { continuation.resume(with: Result { try work() }) }
        }
    }

    /// Lets the workers finish the queued jobs, then end.
    public func close() {
        condition.withLock {
            closed = true
            condition.broadcast()
        }
    }

    private func work() {
        while true {
            condition.lock()
            while jobs.isEmpty && !closed { condition.wait() }
            if jobs.isEmpty {
                condition.unlock()
                return
            }
            let job = jobs.removeFirst()
            running += 1
            condition.unlock()
            job()
            condition.withLock { running -= 1 }
        }
    }
}
