import Foundation

/// One self-overwriting progress line on stderr, shown only when stderr is a terminal (and
/// the command was not asked for JSON), so logs and pipes stay clean.
final class TerminalProgress {
    let enabled: Bool
    private var lastDraw = 0.0
    private var drawn = false

    init(quiet: Bool = false) {
        enabled = !quiet && isatty(STDERR_FILENO) != 0
    }

    /// Redraws the line, at most 10 times a second unless `force`.
    func update(_ text: @autoclosure () -> String, force: Bool = false) {
        guard enabled else { return }
        let now = Date().timeIntervalSince1970
        guard force || now - lastDraw >= 0.1 else { return }
        lastDraw = now
        drawn = true
        FileHandle.standardError.write(Data("\r\u{1B}[2K\(text())".utf8))
    }

    /// Clears the line so that the command's own output starts on a clean one.
    func finish() {
        guard enabled, drawn else { return }
        FileHandle.standardError.write(Data("\r\u{1B}[2K".utf8))
        drawn = false
    }

    /// `[#####.....]` for a fraction in 0...1.
    static func bar(_ fraction: Double, width: Int = 30) -> String {
        let filled = Int((min(max(fraction, 0), 1) * Double(width)).rounded())
        return "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "]"
    }
}
