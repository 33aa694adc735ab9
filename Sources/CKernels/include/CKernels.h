#ifndef QKIT_CKERNELS_H
#define QKIT_CKERNELS_H
#include <stddef.h>
#include <stdint.h>

/// Widening conversions for large buffers, written with non-temporal (streaming) stores: the destination is
/// not read into the cache before it is overwritten, so a conversion moves 2 bytes in and 4 out per element
/// instead of 2 in, 4 read for ownership and 4 out. Use them only when the output is much larger than the
/// caches (qkit: at least 32 MiB); for small buffers that are read right away, plain stores are faster.
/// Every value converts exactly (bf16: the 16 bits become the high half; f16: vcvtph2ps, IEEE exact).

/// `dst[i] = bits(src[i]) << 16` as f32, i < n.
void qkit_bf16_to_f32_stream(const uint16_t *src, float *dst, size_t n);

/// `dst[i] = (float)(_Float16 bits src[i])`, i < n.
void qkit_f16_to_f32_stream(const uint16_t *src, float *dst, size_t n);

/// Running sums of one tensor's statistics (see `qkit_stats_accumulate`).
typedef struct {
    /// Sums of d, d², d³, d⁴ over the finite values, d = x − shift.
    double s1, s2, s3, s4;
    int64_t finite, nan, inf, zeros;
    /// Over the finite values (+inf / −inf while there are none).
    float min, max;
} qkit_stats;

/// Element types the kernels below read (`DType.kernelKind` in Swift).
enum { QKIT_KIND_F32 = 0, QKIT_KIND_BF16 = 1, QKIT_KIND_F16 = 2 };

/// Adds elements `src[0..<n]` of type `kind` to `acc`. Blocks of 4096 are summed in f32 vectors and folded
/// into the double sums; a block whose f32 sums are not finite (a NaN, an infinity, an overflow) is redone
/// element by element in double precision, so the result is the same as a careful scalar loop up to
/// rounding. Deterministic: the order of operations depends only on `n`.
///
/// `cols`, when not NULL, holds one slot per element (the caller passes the column slots of a row segment)
/// and receives the running maximum of |x| over non-NaN values: `float` slots for F32; for BF16 and F16,
/// `uint16_t` slots holding the bits of |x| (`bits & 0x7FFF`, which orders like |x|).
void qkit_stats_accumulate(int kind, const void *src, size_t n, float shift, void *cols, qkit_stats *acc);

/// Minimum and maximum of each group of `g` values of a row of `k` values of `kind` (a QKIT_KIND_ type),
/// NaN ignored (±inf when a group has no other value); a zero bound may come out as either signed zero.
/// Requires `k % g == 0` and `g % 8 == 0`.
void qkit_group_range(int kind, const void *src, size_t k, size_t g, float *mins, float *maxs);

/// Integer codes of a row: `codes[i] = low byte of clamp(round_even(x_i / scales[i / g] + zeros[i / g]), lo, hi)`
/// (two's complement for negative codes) — the same results as qkit's scalar encoder, byte for byte, when the
/// zero points are integers and every |x| ≤ 2^64·|s| of its group (true of RTN's scales, which come from the
/// group's own range): the quotient is taken by reciprocal and one FMA correction, which is exactly x/s for
/// scales in [2^-60, 2^60] (division outside). Requires `k % g == 0` and `g % 8 == 0`.
/// `ahead`, when not NULL, is the row to be read next (`k` values of `kind`): it is prefetched as this one is
/// encoded, so that its loads overlap this row's arithmetic (a prefetch never faults, whatever the address).
void qkit_encode_int(int kind, const void *src, size_t k, size_t g, const float *scales, const float *zeros,
                     float lo, float hi, uint8_t *codes, const void *ahead);

/// Packs 4-bit codes (low nibbles of `codes[i] + bias`) eight to a word, code t of a word in bits 4t…4t+3:
/// `words[i / 8] |= ((codes[i] + bias) & 15) << 4 (i % 8)`, ⌈count / 8⌉ words. (`bias` 8 turns qkit's signed
/// INT4 codes, read in place, into unsigned ones.)
void qkit_pack_u4(const uint8_t *codes, size_t count, uint8_t bias, uint32_t *words);

/// AutoAWQ's GEMM packing of `[N, k]` 4-bit values (one per byte, each plus `bias`) into `[k, words]` words
/// (words = N / 8), for packed columns c0 ≤ c < c1: `out[kk · words + c]` holds rows 8c + [0, 2, 4, 6, 1, 3, 5, 7]
/// of column kk, nibble i from bit 4i.
void qkit_pack_awq(const uint8_t *values, size_t k, uint8_t bias, size_t words, size_t c0, size_t c1, uint32_t *out);

/// Stores `rows` (≤ 16) rows of `cols` words transposed: `dst[j · dstStride + r] = src[r · srcStride + j]`. With 16
/// rows, `dst` 64-byte aligned and `dstStride % 16 == 0`, each dst row is written as one whole line of
/// non-temporal stores (no read for ownership); the stores are fenced before it returns.
void qkit_store_transposed(const uint32_t *src, size_t rows, size_t srcStride, size_t cols, uint32_t *dst, size_t dstStride);

/// llm-awq TinyChat's v2 packing of four rows of `k` 4-bit values (one per byte, each plus `bias`; `k % 64 == 0`),
/// `rows` and `rows + k`… `rows + 3k`, into one `k`-word row: code [r][c] goes to nibble (c % 32) / 8 of word
/// (c / 64)·64 + r·16 + ((c % 64) / 32)·8 + c % 8.
void qkit_pack_tinychat(const uint8_t *rows, size_t k, uint8_t bias, uint16_t *out);

/// glibc: never map a block of its own (`M_MMAP_MAX` 0) and never trim the heap, so large blocks freed are
/// reused without page faults (`AllocatorTuning.keepFreedBlocks`).
void qkit_keep_freed_blocks(void);

/// A small float format for `qkit_encode_minifloat` (filled in by `MinifloatFormat.kernelFormat` in Swift).
enum { QKIT_MINIFLOAT_IEEE = 0, QKIT_MINIFLOAT_FN = 1, QKIT_MINIFLOAT_FNUZ = 2, QKIT_MINIFLOAT_FINITE = 3 };
typedef struct {
    int exponent_bits, mantissa_bits, bias, special;
    /// The largest finite magnitude's code, and the code a larger one becomes (without the sign).
    uint32_t max_finite_code, overflow_code;
    /// The code of a NaN input (and of an overflow when `overflow_is_nan`); `nan_signed`: the input's sign is added.
    uint32_t nan_code;
    int nan_signed, overflow_is_nan;
} qkit_minifloat;

/// `dst[i]` = the code of `src[i]` in format `f` (one code per byte, 8 bits or fewer), rounded to nearest with
/// ties to even: the same codes as `MinifloatFormat.encode`, 8 values per instruction.
void qkit_encode_minifloat(const float *src, uint8_t *dst, size_t n, const qkit_minifloat *f);

#endif
