/// Where one sequence's new tokens lie in the activations of a batched step, and how many
/// of its positions are already cached. Several sequences share a forward pass by stacking
/// their rows: every projection, norm and expert runs once on the stack, and only rotary
/// positions, the KV cache and attention are per sequence.
struct SequenceSegment: Sendable {
    let rows: Range<Int>
    let past: Int
    /// The sequence's own skip rule (nil: the plan's).
    var skip: SkipOverride? = nil
}

extension [SequenceSegment] {
    /// Runs `body` on each segment's rows of `inputs` (segment index, its row slices) and
    /// stacks the results in row order. One segment gets the matrices themselves, uncopied,
    /// so a batch of one computes exactly what an unbatched forward pass does.
    func stackingRows(of inputs: [Matrix], _ body: (Int, [Matrix]) -> Matrix) -> Matrix {
        if count == 1 { return body(0, inputs) }
        var parts = [Matrix]()
        parts.reserveCapacity(count)
        for (index, segment) in enumerated() {
            parts.append(body(index, inputs.map { $0.rows(segment.rows) }))
        }
        var stacked = parts[0]
        stacked.rows = parts.reduce(0) { $0 + $1.rows }
        stacked.values = parts.flatMap(\.values)
        return stacked
    }
}
