/// The element types of the safetensors format, spelled exactly as the format spells them.
///
/// The list and the bit sizes follow the reference implementation (safetensors 0.8): sub-byte types
/// (`F4`, `F6_E2M3`, `F6_E3M2`) pack several elements per byte, and a tensor of them must fill whole bytes.
public enum DType: String, CaseIterable, Sendable, Codable {
    case bool = "BOOL"
    case f4 = "F4"
    case f6E2M3 = "F6_E2M3"
    case f6E3M2 = "F6_E3M2"
    case u8 = "U8"
    case i8 = "I8"
    case f8E5M2 = "F8_E5M2"
    case f8E4M3 = "F8_E4M3"
    case f8E8M0 = "F8_E8M0"
    case f8E4M3FNUZ = "F8_E4M3FNUZ"
    case f8E5M2FNUZ = "F8_E5M2FNUZ"
    case i16 = "I16"
    case u16 = "U16"
    case f16 = "F16"
    case bf16 = "BF16"
    case i32 = "I32"
    case u32 = "U32"
    case f32 = "F32"
    case c64 = "C64"
    case f64 = "F64"
    case i64 = "I64"
    case u64 = "U64"

    /// Bits one element occupies.
    public var bitSize: Int {
        switch self {
        case .f4: 4
        case .f6E2M3, .f6E3M2: 6
        case .bool, .u8, .i8, .f8E5M2, .f8E4M3, .f8E8M0, .f8E4M3FNUZ, .f8E5M2FNUZ: 8
        case .i16, .u16, .f16, .bf16: 16
        case .i32, .u32, .f32: 32
        case .c64, .f64, .i64, .u64: 64
        }
    }

    /// The natural alignment of one element in bytes (1 for sub-byte types).
    public var alignment: Int { max(1, bitSize / 8) }

    /// Whether the type holds real floating-point values (complex excluded).
    public var isFloatingPoint: Bool {
        switch self {
        case .f4, .f6E2M3, .f6E3M2, .f8E5M2, .f8E4M3, .f8E8M0, .f8E4M3FNUZ, .f8E5M2FNUZ, .f16, .bf16, .f32, .f64:
            true
        default: false
        }
    }

    /// Whether the type is an integer type (BOOL counts as one).
    public var isInteger: Bool { !isFloatingPoint && self != .c64 }

    /// Bytes taken by `count` elements, or `nil` when the bit count overflows or does not fill whole bytes.
    public func byteCount(elements count: Int) -> Int? {
        let (bits, overflow) = count.multipliedReportingOverflow(by: bitSize)
        guard !overflow, bits % 8 == 0 else { return nil }
        return bits / 8
    }
}

/// Element count of a shape, or `nil` on overflow. The empty shape is a scalar (one element).
public func elementCount(_ shape: [Int]) -> Int? {
    var n = 1
    for d in shape {
        guard d >= 0 else { return nil }
        let (p, o) = n.multipliedReportingOverflow(by: d)
        if o { return nil }
        n = p
    }
    return n
}
