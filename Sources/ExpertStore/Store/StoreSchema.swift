/// The named databases of a store and the keys of its meta database.
enum StoreSchema {
    /// Store layout version, under `MetaKey.format` as a little-endian UInt32. Bump it when
    /// the meaning of a key or record changes.
    static let formatVersion: UInt32 = 1

    enum Database: String, CaseIterable {
        /// Model metadata: see `MetaKey`.
        case meta
        /// Every non-expert tensor, keyed by its checkpoint name.
        case dense
        /// One record per (layer, expert, variant): see `ExpertKey`.
        case experts
        /// Routing profiles, as JSON documents keyed by name.
        case profiles
        /// Compression plans, as JSON documents keyed by name.
        case plans
    }

    enum MetaKey {
        static let format = "format"
        /// `ModelDescription` as JSON.
        static let description = "description"
        static let fingerprint = "fingerprint"
        /// `ImportState` as JSON.
        static let importState = "import"
        /// An original file of the checkpoint folder, byte for byte.
        static func file(_ name: String) -> String { filePrefix + name }
        static let filePrefix = "file/"
    }

    /// Checkpoint side files kept byte for byte (and written back by export), when present.
    static let sideFiles = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                            "special_tokens_map.json", "chat_template.jinja"]
}
