/// Cuts generated text at the first of the request's `stop` strings, as OpenAI does (the
/// stop string itself is not returned), while streaming: text that could still turn out to
/// be the beginning of a stop string is held back until the next piece decides it.
struct StopSequenceFilter {
    private let stops: [String]
    private var text = ""
    private var emittedCount = 0
    private(set) var stopped = false

    init(stops: [String]) { self.stops = stops.filter { !$0.isEmpty } }

    /// Adds newly decoded text; returns what may be sent now. After a stop string appears,
    /// `stopped` is true and later calls return nothing.
    mutating func append(_ piece: String) -> String {
        guard !stopped else { return "" }
        text += piece
        if let cut = stops.compactMap({ text.range(of: $0)?.lowerBound }).min() {
            stopped = true
            return take(upTo: text.distance(from: text.startIndex, to: cut))
        }
        return take(upTo: text.count - heldBackCount())
    }

    /// Whatever was held back, at the end of generation.
    mutating func flush() -> String { stopped ? "" : take(upTo: text.count) }

    /// The length of the longest suffix of `text` that begins some stop string.
    private func heldBackCount() -> Int {
        var longest = 0
        for stop in stops {
            for length in stride(from: min(stop.count - 1, text.count), to: longest, by: -1)
            where text.hasSuffix(String(stop.prefix(length))) {
                longest = length
                break
            }
        }
        return longest
    }

    private mutating func take(upTo end: Int) -> String {
        guard end > emittedCount else { return "" }
        let start = text.index(text.startIndex, offsetBy: emittedCount)
        let stop = text.index(text.startIndex, offsetBy: end)
        emittedCount = end
        return String(text[start..<stop])
    }
}
