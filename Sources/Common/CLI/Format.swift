#if canImport(Glibc)
import Glibc
#endif

/// printf-style formatting of one number (the C library's, so no Foundation is loaded).
public func cFormat(_ format: String, _ args: any CVarArg...) -> String {
    var buf = [CChar](repeating: 0, count: 64)
    let n = withVaList(args) { vsnprintf(&buf, buf.count, format, $0) }
    if n >= buf.count {
        buf = [CChar](repeating: 0, count: Int(n) + 1)
        _ = withVaList(args) { vsnprintf(&buf, buf.count, format, $0) }
    }
    return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// `v` with a fixed number of decimals (0–6), rounded half away from zero, like %.Nf for the magnitudes
/// the size columns show; pure Swift, because a table of thousands of rows should not pay for vsnprintf.
public func fixedDecimals(_ v: Double, _ decimals: Int) -> String {
    guard v.isFinite, abs(v) < 9e15 else { return cFormat("%.\(decimals)f", v) }
    var scale = 1
    for _ in 0..<decimals { scale *= 10 }
    let scaled = Int((abs(v) * Double(scale)).rounded(.toNearestOrAwayFromZero))
    let whole = String(scaled / scale)
    let sign = v < 0 && scaled != 0 ? "-" : ""
    guard decimals > 0 else { return sign + whole }
    let frac = String(scaled % scale)
    return sign + whole + "." + String(repeating: "0", count: decimals - frac.count) + frac
}

/// A count with a decimal suffix: 134.5M, 4.2k, 12.
public func humanCount(_ n: Int) -> String {
    let v = Double(n)
    if abs(v) >= 1e9 { return fixedDecimals(v / 1e9, 2) + "B" }
    if abs(v) >= 1e6 { return fixedDecimals(v / 1e6, 1) + "M" }
    if abs(v) >= 1e4 { return fixedDecimals(v / 1e3, 1) + "k" }
    return String(n)
}

/// Bytes in decimal units (GB = 10^9 bytes): 538.1 MB.
public func humanBytes(_ n: Int) -> String {
    let v = Double(n)
    if v >= 1e9 { return fixedDecimals(v / 1e9, 2) + " GB" }
    if v >= 1e6 { return fixedDecimals(v / 1e6, 1) + " MB" }
    if v >= 1e3 { return fixedDecimals(v / 1e3, 1) + " kB" }
    return "\(n) B"
}

/// A float in at most `digits` significant digits (%g).
public func shortFloat(_ v: Double, digits: Int = 4) -> String {
    if v.isNaN { return "nan" }
    if v.isInfinite { return v > 0 ? "inf" : "-inf" }
    return cFormat("%.\(digits)g", v)
}

/// A shape as `[a, b]`.
public func shapeText(_ s: [Int]) -> String { "[" + s.map(String.init).joined(separator: ", ") + "]" }

/// Renders rows as aligned columns; `rightAligned` marks numeric columns.
public func renderTable(header: [String], rows: [[String]], rightAligned: Set<Int> = []) -> String {
    var widths = header.map(\.count)
    for r in rows { for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) } }
    var out = ""
    func line(_ cells: [String]) {
        var l = ""
        for (i, c) in cells.enumerated() {
            let pad = String(repeating: " ", count: max(0, widths[i] - c.count))
            if i > 0 { l += "  " }
            if i == cells.count - 1 && !rightAligned.contains(i) { l += c; continue }
            l += rightAligned.contains(i) ? pad + c : c + pad
        }
        out += l + "\n"
    }
    line(header)
    for r in rows { line(r) }
    return out
}

/// A one-line histogram with block characters (▁…█), linear or logarithmic in the counts.
public func sparkline(_ counts: [Int], logarithmic: Bool) -> String {
    let bars = Array(" ▁▂▃▄▅▆▇█")
    let values = counts.map { logarithmic ? log1p(Double($0)) : Double($0) }
    guard let top = values.max(), top > 0 else { return String(repeating: " ", count: counts.count) }
    return String(values.map { v in v == 0 ? bars[0] : bars[max(1, Int((v / top * 8).rounded()))] })
}
