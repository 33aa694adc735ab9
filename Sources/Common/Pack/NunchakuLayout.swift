/// Nunchaku's SVDQuant W4A4 tile layout (formats.md §5; mit-han-lab/deepcompressor: backend/nunchaku/utils.py
/// `NunchakuWeightPacker`, backend/utils.py `MmaWeightPackerBase`, the packer Nunchaku's own models were converted
/// with). Index maps only; the container is `Nunchaku.swift`.
///
/// Dimensions are padded: `Np = ⌈N/128⌉·128`, `Kp = ⌈K/128⌉·128`, the rank to a multiple of 16. Codes pad with 0;
/// scales, bias and smooth pad with 1 (as `pad_scale` does); low-rank weights pad with 0.
public enum NunchakuLayout {
    /// Output channels per tile.
    public static let tileN = 128
    /// K padding (64-wide MMA tiles, two unrolled).
    public static let padK = 128
    /// Low-rank tiles are 16 × 16.
    public static let rankTile = 16

    /// `x` rounded up to a multiple of `m`.
    @inline(__always) public static func padded(_ x: Int, _ m: Int) -> Int { (x + m - 1) / m * m }

    /// The byte of `qweight` (`[Np, Kp/2]`, int8) holding code (n, k), and whether it is the high nibble.
    /// `nt = n/128, np = n%128/16, ns = n%16/8, nl = n%8, kt = k/64, ks = k%64/32, kl = k%32/8, r = k%8`: the code is
    /// nibble r of little-endian word `((((((nt·KT + kt)·8 + np)·8 + nl)·4 + kl)·2 + ns)·2 + ks)`, `KT = Kp/64`.
    @inline(__always)
    public static func weightByte(n: Int, k: Int, kp: Int) -> (byte: Int, high: Bool) {
        let (nt, np, ns, nl) = (n / 128, (n % 128) / 16, (n % 16) / 8, n % 8)
        let (kt, ks, kl, r) = (k / 64, (k % 64) / 32, (k % 32) / 8, k % 8)
        let word = ((((((nt * (kp / 64) + kt) * 8 + np) * 8 + nl) * 4 + kl) * 2 + ns) * 2 + ks)
        return (4 * word + r / 2, r % 2 == 1)
    }

    /// Where local channel `c` (0..<128) of a tile sits in `pack_scale`'s order: stored `q = L·16 + F·4 + S·2 + T`
    /// holds channel `L·16 + S·8 + F·2 + T` (the start of the order is 0, 1, 8, 9, 2, 3, 10, 11, …).
    @inline(__always)
    public static func scalePosition(_ c: Int) -> Int {
        let (l, s, f, t) = (c / 16, (c % 16) / 8, (c % 8) / 2, c % 2)
        return l * 16 + f * 4 + s * 2 + t
    }

    /// Index of scale (n, group g) in INT4 `wscales` (`[Gp, Np]` declared; memory `[n-tile][group][128 permuted]`).
    @inline(__always)
    public static func scaleIndex(n: Int, group g: Int, groups: Int) -> Int { ((n / 128) * groups + g) * 128 + scalePosition(n % 128) }

    /// Index of NVFP4 micro-scale (n, 16-wide group g) in `wscales` (`pack_micro_scale`): per (128-channel tile,
    /// 64-wide k chunk) 512 bytes ordered (E 0..7, F 0..3, s 0..3, j 0..3) holding channel `s·32 + F·8 + E`, group j.
    @inline(__always)
    public static func microScaleIndex(n: Int, group g: Int, groups: Int) -> Int {
        let (nt, c) = (n / 128, n % 128)
        let (s, f, e) = (c / 32, (c % 32) / 8, c % 8)
        let (chunk, j) = (g / 4, g % 4)
        return ((nt * (groups / 4) + chunk) * 512) + ((e * 4 + f) * 4 + s) * 4 + j
    }

    /// Index of element (i, j) of a low-rank matrix in `pack_lowrank_weight`'s order. `lora_down` `[R, K]` is stored
    /// `[Kp, Rp]`: i runs over R, j over K, tiles ordered K-major; `lora_up` `[N, R]` is stored `[Np, Rp]`: i over N,
    /// j over R, tiles N-major. Inside a 16 × 16 tile, `i = ns·8 + nl`, `j = ks·8 + kl·2 + rk` sits at
    /// `(((nl·4 + kl)·2 + ns)·2 + ks)·2 + rk`.
    @inline(__always)
    public static func lowRankIndex(i: Int, j: Int, rows: Int, columns: Int, down: Bool) -> Int {
        let (ti, tj) = (i / 16, j / 16)
        let tile = down ? tj * (rows / 16) + ti : ti * (columns / 16) + tj
        let (ns, nl) = ((i % 16) / 8, i % 8)
        let (ks, kl, rk) = ((j % 16) / 8, (j % 8) / 2, j % 2)
        return tile * 256 + ((((nl * 4 + kl) * 2 + ns) * 2 + ks) * 2 + rk)
    }
}
