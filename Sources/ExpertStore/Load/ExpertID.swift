/// One routed expert of a model: its MoE layer and its index in that layer.
public struct ExpertID: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    public var layer: Int
    public var expert: Int

    public init(layer: Int, expert: Int) {
        self.layer = layer
        self.expert = expert
    }

    public static func < (a: ExpertID, b: ExpertID) -> Bool { (a.layer, a.expert) < (b.layer, b.expert) }

    public var description: String { "layer \(layer), expert \(expert)" }
}
