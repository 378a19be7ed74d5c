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
        // Cut to the terminal's width, so the line redraws in place instead of wrapping.
        FileHandle.standardError.write(Data("\r\u{1B}[2K\(String(text().prefix(max(Self.columns() - 1, 20))))".utf8))
    }

    /// The terminal's width in columns (80 when it cannot be read).
    static func columns() -> Int {
        var size = winsize()
        guard ioctl(STDERR_FILENO, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 else { return 80 }
        return Int(size.ws_col)
    }

    /// "ETA 3m12s" from the time spent on the first `fraction` of the work.
    static func eta(elapsed: Double, fraction: Double) -> String {
        guard fraction > 0, fraction < 1, elapsed > 0 else { return "" }
        let remaining = Int((elapsed / fraction * (1 - fraction)).rounded())
        return remaining >= 60 ? "ETA \(remaining / 60)m\(String(format: "%02d", remaining % 60))s" : "ETA \(remaining)s"
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
