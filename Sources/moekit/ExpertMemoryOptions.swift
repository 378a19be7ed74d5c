import ArgumentParser
import Foundation

/// `--max-expert-memory MB`, shared by `generate` and `serve`: a bound on the memory experts
/// may take. Given, the experts come through an LRU cache of that size, misses read from
/// the store; not given, they are loaded at start when they fit the memory available (the
/// cgroup limit or MemAvailable) and come through a cache sized to it when they do not.
struct ExpertMemoryOptions: ParsableArguments {
    @Option(help: "Bound on resident expert memory in MB (MiB): experts then come through an LRU cache of that size. Default: all loaded when they fit the memory available, else a cache sized to it.")
    var maxExpertMemory: Double?

    func validate() throws {
        if let maxExpertMemory, !(maxExpertMemory > 0) { throw ValidationError("--max-expert-memory must be positive (MB)") }
    }

    /// The bound in bytes; nil when not given.
    var limitBytes: Int? { maxExpertMemory.map { Int($0 * 1_048_576) } }
}
