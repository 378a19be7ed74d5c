import Foundation

/// Byte counts for people: binary units with three significant digits ("812 MiB",
/// "2.50 GiB", "21.3 GiB"), the way memory limits and model sizes are usually quoted.
public enum ByteCount {
    public static func text(_ bytes: Int) -> String {
        let units = ["bytes", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(bytes)
        var unit = 0
        while abs(value) >= 1024, unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        if unit == 0 { return "\(bytes) bytes" }
        let digits = abs(value) < 10 ? 2 : abs(value) < 100 ? 1 : 0
        return String(format: "%.\(digits)f \(units[unit])", value)
    }
}
