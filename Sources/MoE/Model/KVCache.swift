/// Keys and values of every position seen so far, per layer, for incremental decoding.
/// Latent attention caches its expanded per-head keys and values too, so both kinds of
/// attention share one kernel.
public struct KVCache: Sendable {
    public struct Layer: Sendable {
        /// `length × (kvHeads · keyDim)` row-major.
        public var keys: [Float] = []
        /// `length × (kvHeads · valueDim)` row-major.
        public var values: [Float] = []
    }

    public var layers: [Layer]
    /// Number of positions cached.
    public internal(set) var length: Int = 0

    public init(layerCount: Int) {
        layers = Array(repeating: Layer(), count: layerCount)
    }

    /// Bytes held by the cache.
    public var byteCount: Int { layers.reduce(0) { $0 + ($1.keys.count + $1.values.count) * 4 } }
}
