import ExpertStore
import Foundation
import MoE

/// In memory or layer by layer: chosen from the memory this process may actually use (its
/// cgroup's limit if one is set, else MemAvailable), forced by `--streaming`, and said on
/// stderr with the reason, so a user knows why a command runs the way it does.
enum ExecutionMode {
    /// Whether a command that would hold `neededBytes` at once should stream instead.
    static func streams(_ command: String, neededBytes: Int, forced: Bool) -> Bool {
        let available = AvailableMemory.current()
        let streams = forced || neededBytes > available.bytes
        let reason = forced ? "--streaming given" : "needs \(ByteCount.text(neededBytes)) in memory, \(ByteCount.text(available.bytes)) available (\(available.source))"
        let mode = streams ? "streaming layer by layer" : "whole model in memory"
        FileHandle.standardError.write(Data("moekit \(command): \(mode) (\(reason))\n".utf8))
        return streams
    }

    /// Bytes of a model held whole, with room for activations and the allocator (a tenth more).
    static func inMemoryBytes(_ footprint: ModelFootprint, expertBytes: Int? = nil) -> Int {
        let bytes = footprint.denseBytes + (expertBytes ?? footprint.expertBytes)
        return bytes + bytes / 10
    }
}
