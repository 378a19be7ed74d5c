import ArgumentParser
import MoE

/// `-t/--threads`: the compute threads of the forward pass (one pool shared by every kernel;
/// OpenBLAS then runs one thread per call, so the two never compete for cores).
struct ThreadOptions: ParsableArguments {
    @Option(name: [.customShort("t"), .long], help: "Compute threads (default: one per online processor).")
    var threads: Int?

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
    }

    /// Sizes the pool; called at the start of `run()` by every command that runs the model.
    func apply() {
        ComputePool.configure(threads: threads ?? ComputePool.threads)
    }
}
