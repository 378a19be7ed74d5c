import Foundation
import MoE

/// A fingerprint that tells one model from another: a 64-bit FNV-1a hash and a CRC-32C of
/// a manifest listing `config.json`'s CRC and size and, for every tensor in name order, its
/// dtype, shape and the CRC-32C of its bytes. Two checkpoints get the same fingerprint when
/// they have the same config and the same weights, however they are sharded. It is an
/// identity check against mistakes (importing the wrong model into a store), not a
/// cryptographic hash.
public enum ModelFingerprint {
    public static func compute(checkpoint: CheckpointDirectory, config: Data) throws -> String {
        var manifest = "config.json \(config.count) \(hex(config.withUnsafeBytes { CRC32C.checksum($0) }))\n"
        // Stored tensors, not derived ones: the identity is what the files hold, and deriving
        // (dequantizing) every tensor twice would double an import's work.
        for name in checkpoint.storedTensorNames {
            let file = try checkpoint.file(for: name)
            let info = try file.info(name)
            let crc = CRC32C.checksum(try file.rawBytes(name))
            manifest += "\(name) \(info.dtype.rawValue) \(info.shape) \(hex(crc))\n"
        }
        let bytes = Array(manifest.utf8)
        return fnv1a64Hex(bytes) + "-" + String(hex(CRC32C.checksum(bytes)).dropFirst(2))
    }

    /// FNV-1a, 64-bit (offset basis 0xcbf29ce484222325, prime 0x100000001b3), as 16 hex digits.
    static func fnv1a64Hex(_ bytes: [UInt8]) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        let digits = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}
