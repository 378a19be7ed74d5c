extension Matrix {
    /// The logits themselves, after checking that every one is a number. Where logits reach
    /// a user (printed, or scored into perplexity and KL) a NaN or infinity is an error
    /// rather than an answer; rows are positions, columns token ids.
    public func checkedFinite() throws -> Matrix {
        // One pass with no branch per value in the common case: a sum is finite only if
        // every term is (NaN and ±inf propagate), and overflow of the sum alone is rare
        // enough to be resolved by the exact scan below.
        if values.reduce(0, +).isFinite { return self }
        guard let index = values.firstIndex(where: { !$0.isFinite }) else { return self }
        throw ModelError.nonFiniteLogits(position: index / columns, token: index % columns, value: values[index])
    }
}
