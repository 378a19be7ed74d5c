import CKernels

/// CRC-32C (Castagnoli), the checksum of every store record. The kernel lives in C
/// (`Sources/CKernels/crc32c.c`) so that it runs on the SSE4.2 `crc32` instruction at
/// several GB/s; a portable slicing-by-8 path gives the same values everywhere.
public enum CRC32C {
    /// The CRC of `bytes`, continuing from `crc` (the CRC of whatever came before them).
    public static func checksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return crc }
        return moe_crc32c_update(crc, base, bytes.count)
    }

    public static func checksum(_ bytes: [UInt8], continuing crc: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0, continuing: crc) }
    }

    /// The table-driven path alone, so tests can check it against the hardware one.
    static func portableChecksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return crc }
        return moe_crc32c_update_portable(crc, base, bytes.count)
    }

    static var usesHardware: Bool { moe_crc32c_is_hardware() != 0 }
}
