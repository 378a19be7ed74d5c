import Foundation
import XCTest

/// Runs the `moekit` executable that `swift build` puts next to the test bundle.
extension StoreTestCase {
    struct Run {
        var status: Int32
        var killed: Bool
        var stdout: String
        var stderr: String
    }

    /// The `moekit` executable built next to this test bundle.
    func moekit() throws -> URL {
        let bundle = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        let binary = bundle.deletingLastPathComponent().appendingPathComponent("moekit")
        guard FileManager.default.isExecutableFile(atPath: binary.path) else { throw MissingExecutable(path: binary.path) }
        return binary
    }

    /// `directory`: the working directory (by default this process's).
    func start(_ arguments: [String], environment: [String: String] = [:], directory: URL? = nil) throws -> (Process, URL, URL) {
        let process = Process()
        if let directory { process.currentDirectoryURL = directory }
        process.executableURL = try moekit()
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let folder = scratchURL("output")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let out = folder.appendingPathComponent("stdout"), err = folder.appendingPathComponent("stderr")
        try Data().write(to: out)
        try Data().write(to: err)
        process.standardOutput = try FileHandle(forWritingTo: out)
        process.standardError = try FileHandle(forWritingTo: err)
        try process.run()
        return (process, out, err)
    }

    func finish(_ started: (Process, URL, URL)) throws -> Run {
        let (process, out, err) = started
        process.waitUntilExit()
        return Run(status: process.terminationStatus, killed: process.terminationReason == .uncaughtSignal && process.terminationStatus == SIGKILL,
                   stdout: try String(contentsOf: out, encoding: .utf8), stderr: try String(contentsOf: err, encoding: .utf8))
    }

    func run(_ arguments: [String], environment: [String: String] = [:], directory: URL? = nil) throws -> Run {
        try finish(try start(arguments, environment: environment, directory: directory))
    }

}

struct MissingExecutable: Error, CustomStringConvertible {
    var path: String
    var description: String { "no moekit executable at \(path); `swift build` (or `swift test`, which builds every target) makes it" }
}
