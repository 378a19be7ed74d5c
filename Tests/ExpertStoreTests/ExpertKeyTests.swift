import XCTest
@testable import ExpertStore

final class ExpertKeyTests: XCTestCase {
    func testKeyBytesAreBigEndianLayerExpertVariant() {
        let key = ExpertKey(layer: 1, expert: 0x0203, variant: ExpertVariant(rawValue: 0x0A0B0C0D))
        XCTAssertEqual(key.bytes, [0, 0, 0, 1, 0, 0, 2, 3, 0x0A, 0x0B, 0x0C, 0x0D])
        XCTAssertEqual(ExpertKey(bytes: key.bytes), key)
        XCTAssertNil(ExpertKey(bytes: [UInt8](repeating: 0, count: 11)))
    }

    /// Bytewise order (what LMDB uses) must equal numeric (layer, expert, variant) order.
    func testBytewiseOrderWalksLayerByLayer() {
        var keys = [ExpertKey]()
        for layer in [0, 1, 2, 255, 256, 70_000] {
            for expert in [0, 1, 9, 10, 255, 256] {
                for variant: UInt32 in [0, 1, 300] { keys.append(ExpertKey(layer: layer, expert: expert, variant: ExpertVariant(rawValue: variant))) }
            }
        }
        let bytewise = keys.shuffled().sorted { $0.bytes.lexicographicallyPrecedes($1.bytes) }
        XCTAssertEqual(bytewise, keys.sorted())
        XCTAssertEqual(bytewise.first, ExpertKey(layer: 0, expert: 0))
        XCTAssertEqual(bytewise[1], ExpertKey(layer: 0, expert: 0, variant: ExpertVariant(rawValue: 1)))
    }
}
