import Foundation

/// A layers × experts heatmap of one criterion as an SVG document: each cell is one
/// (layer, expert), coloured by its value. With `signed`, values are differences between two
/// profiles and a diverging palette shows which domain uses an expert more.
public struct ProfileHeatmap {
    public var title: String
    /// `values[layer][expert]`; layers without experts are left out by the caller.
    public var values: [[Double]]
    public var layerLabels: [String]
    public var signed: Bool

    public init(title: String, values: [[Double]], layerLabels: [String], signed: Bool) {
        self.title = title
        self.values = values
        self.layerLabels = layerLabels
        self.signed = signed
    }

    public func svg(cellSize: Int = 18) -> String {
        let rows = values.count
        let columns = values.map(\.count).max() ?? 0
        let (left, top, legend) = (70, 40, 40)
        let width = left + columns * cellSize + 20
        let height = top + rows * cellSize + legend + 20
        let magnitude = values.joined().map { abs($0) }.max() ?? 0
        let low = signed ? -magnitude : (values.joined().min() ?? 0)
        let high = signed ? magnitude : (values.joined().max() ?? 0)
        var out = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(width)" height="\(height)" font-family="sans-serif" font-size="11">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(left)" y="20" font-size="14">\(Self.escape(title))</text>

        """
        for (r, row) in values.enumerated() {
            let y = top + r * cellSize
            out += "<text x=\"\(left - 6)\" y=\"\(y + cellSize - 5)\" text-anchor=\"end\">\(Self.escape(layerLabels[r]))</text>\n"
            for (c, value) in row.enumerated() {
                let x = left + c * cellSize
                out += "<rect x=\"\(x)\" y=\"\(y)\" width=\"\(cellSize - 1)\" height=\"\(cellSize - 1)\" fill=\"\(color(value, low: low, high: high))\"><title>\(Self.escape(layerLabels[r])), expert \(c): \(String(format: "%.4g", value))</title></rect>\n"
            }
        }
        for c in stride(from: 0, to: columns, by: max(1, columns / 16)) {
            out += "<text x=\"\(left + c * cellSize + cellSize / 2)\" y=\"\(top - 4)\" text-anchor=\"middle\">\(c)</text>\n"
        }
        let legendY = top + rows * cellSize + 16
        out += "<text x=\"\(left)\" y=\"\(legendY + 12)\">\(String(format: "%.3g", low))</text>\n"
        for i in 0..<20 {
            let v = low + (high - low) * Double(i) / 19
            out += "<rect x=\"\(left + 50 + i * 8)\" y=\"\(legendY)\" width=\"8\" height=\"14\" fill=\"\(color(v, low: low, high: high))\"/>\n"
        }
        out += "<text x=\"\(left + 50 + 20 * 8 + 6)\" y=\"\(legendY + 12)\">\(String(format: "%.3g", high))</text>\n</svg>\n"
        return out
    }

    /// Sequential white→dark blue, or diverging red (negative) / white / blue (positive).
    func color(_ value: Double, low: Double, high: Double) -> String {
        func hex(_ r: Double, _ g: Double, _ b: Double) -> String {
            String(format: "#%02x%02x%02x", Int(r.rounded()), Int(g.rounded()), Int(b.rounded()))
        }
        guard high > low else { return "#ffffff" }
        if signed {
            let t = max(-1, min(1, value / max(abs(low), abs(high))))
            return t >= 0 ? hex(255 * (1 - t) + 33 * t, 255 * (1 - t) + 102 * t, 255 * (1 - t) + 172 * t)
                          : hex(255 * (1 + t) + 178 * -t, 255 * (1 + t) + 24 * -t, 255 * (1 + t) + 43 * -t)
        }
        let t = (value - low) / (high - low)
        return hex(255 * (1 - t) + 8 * t, 255 * (1 - t) + 48 * t, 255 * (1 - t) + 107 * t)
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}
