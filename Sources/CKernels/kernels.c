#include "CKernels.h"
#include <immintrin.h>
#include <string.h>
#include <malloc.h>

static inline float load_scalar(int kind, const void *src, size_t i) {
    switch (kind) {
    case QKIT_KIND_BF16: {
        uint32_t v = (uint32_t)((const uint16_t *)src)[i] << 16;
        float f;
        memcpy(&f, &v, 4);
        return f;
    }
    case QKIT_KIND_F16: return _cvtsh_ss(((const uint16_t *)src)[i]);
    default: {
        float f;
        memcpy(&f, (const char *)src + 4 * i, 4);
        return f;
    }
    }
}

static inline __m256 load8(int kind, const void *src, size_t i) {
    switch (kind) {
    case QKIT_KIND_BF16:
        return _mm256_castsi256_ps(_mm256_slli_epi32(
            _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)src + i))), 16));
    case QKIT_KIND_F16: return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)src + i)));
    default: return _mm256_loadu_ps((const float *)src + i);
    }
}

/// `dst[i] = src[i]` widened to f32 with non-temporal stores from the first 32-byte aligned `dst + i` on.
static inline void stream_body(int kind, const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    while (i < n && ((uintptr_t)(dst + i) & 31) != 0) { dst[i] = load_scalar(kind, src, i); i++; }
    for (; i + 16 <= n; i += 16) {
        _mm256_stream_ps(dst + i, load8(kind, src, i));
        _mm256_stream_ps(dst + i + 8, load8(kind, src, i + 8));
    }
    _mm_sfence();
    for (; i < n; i++) dst[i] = load_scalar(kind, src, i);
}

void qkit_bf16_to_f32_stream(const uint16_t *src, float *dst, size_t n) { stream_body(QKIT_KIND_BF16, src, dst, n); }

void qkit_f16_to_f32_stream(const uint16_t *src, float *dst, size_t n) { stream_body(QKIT_KIND_F16, src, dst, n); }

static inline double hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return (double)_mm_cvtss_f32(s);
}

static inline float hmin(__m256 v) {
    __m128 s = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_min_ps(s, _mm_movehl_ps(s, s));
    s = _mm_min_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

static inline float hmax(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

static inline int64_t hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

/// Software prefetch distance in bytes: page-cache pages mapped just before are cold, and the hardware
/// prefetcher stops at each 4 KiB page boundary.
enum { stats_prefetch = 1024 };

/// Moments and extremes of 8 values into one set of accumulators.
#define STATS_MOMENTS(x, s1, s2, s3, s4)                                                                 \
    do {                                                                                                      \
        __m256 d_ = shifted ? _mm256_sub_ps(x, sh) : x;                                                       \
        __m256 d2_ = _mm256_mul_ps(d_, d_);                                                                   \
        s1 = _mm256_add_ps(s1, d_);                                                                           \
        s2 = _mm256_add_ps(s2, d2_);                                                                          \
        s3 = _mm256_fmadd_ps(d2_, d_, s3);                                                                    \
        s4 = _mm256_fmadd_ps(d2_, d2_, s4);                                                                   \
        mn = _mm256_min_ps(x, mn);                                                                            \
        mx = _mm256_max_ps(x, mx);                                                                            \
    } while (0)

/// The kernel's body. `kind`, `shifted` and whether `cols` is NULL are constants at every call site, so each of
/// the twelve combinations compiles to its own loop with every accumulator in a register (and, unshifted, without
/// the subtraction).
///
/// Pass 1 over a block of 4096 sums the moments in f32 and takes min and max. When the sums are finite, the
/// block holds no NaN and no infinity, and pass 2 (over data now in L1) counts zeros and takes the column
/// maxima. For the 16-bit types pass 2 works on the raw bits, 16 values per instruction: `bits & 0x7FFF` is
/// |x| with the order of |x| (sign-magnitude), and it is 0 exactly for ±0. Otherwise the block is redone
/// element by element in double precision.
static inline __attribute__((always_inline)) void stats_body(int kind, int shifted, const void *src, size_t n,
                                                             float shift, void *cols, qkit_stats *acc) {
    const size_t block = 4096;
    const size_t width = kind == QKIT_KIND_F32 ? 4 : 2;
    const __m256 sh = _mm256_set1_ps(shift), zero = _mm256_setzero_ps();
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    const __m256i absmask16 = _mm256_set1_epi16(0x7FFF), ones16 = _mm256_set1_epi16(1);
    const __m256i high16 = _mm256_set1_epi32((int)0xFFFF0000);
    uint16_t *cols16 = cols;
    float *cols32 = cols;
    for (size_t b = 0; b < n; b += block) {
        size_t len = n - b < block ? n - b : block;
        __m256 a1 = zero, a2 = zero, a3 = zero, a4 = zero, b1 = zero, b2 = zero, b3 = zero, b4 = zero;
        __m256 mn = _mm256_set1_ps(__builtin_inff()), mx = _mm256_set1_ps(-__builtin_inff());
        size_t j = 0;
        for (; j + 16 <= len; j += 16) {
            _mm_prefetch((const char *)src + (b + j) * width + stats_prefetch, _MM_HINT_T0);
            __m256 x, y;
            if (kind == QKIT_KIND_BF16) {  /* even elements in x, odd in y: two instructions for 16 values */
                __m256i r = _mm256_loadu_si256((const __m256i *)((const uint16_t *)src + b + j));
                x = _mm256_castsi256_ps(_mm256_slli_epi32(r, 16));
                y = _mm256_castsi256_ps(_mm256_and_si256(r, high16));
            } else {
                x = load8(kind, src, b + j);
                y = load8(kind, src, b + j + 8);
            }
            STATS_MOMENTS(x, a1, a2, a3, a4);
            STATS_MOMENTS(y, b1, b2, b3, b4);
        }
        double t1 = hsum(_mm256_add_ps(a1, b1)), t2 = hsum(_mm256_add_ps(a2, b2));
        double t3 = hsum(_mm256_add_ps(a3, b3)), t4 = hsum(_mm256_add_ps(a4, b4));
        if (__builtin_isfinite(t1) && __builtin_isfinite(t2) && __builtin_isfinite(t3) && __builtin_isfinite(t4)) {
            acc->s1 += t1; acc->s2 += t2; acc->s3 += t3; acc->s4 += t4;
            acc->finite += (int64_t)j;
            float lo = hmin(mn), hi = hmax(mx);
            if (lo < acc->min) acc->min = lo;
            if (hi > acc->max) acc->max = hi;
            if (kind == QKIT_KIND_F32) {
                __m256i zr = _mm256_setzero_si256();
                for (size_t k = 0; k < j; k += 8) {
                    __m256 x = _mm256_loadu_ps((const float *)src + b + k);
                    zr = _mm256_sub_epi32(zr, _mm256_castps_si256(_mm256_cmp_ps(x, zero, _CMP_EQ_OQ)));
                    if (cols) {
                        float *c = cols32 + b + k;
                        _mm256_storeu_ps(c, _mm256_max_ps(_mm256_and_ps(x, absmask), _mm256_loadu_ps(c)));
                    }
                }
                acc->zeros += hsum_epi32(zr);
            } else {
                __m256i zr = _mm256_setzero_si256();  /* 16-bit counts: at most 256 per lane per block */
                for (size_t k = 0; k < j; k += 16) {
                    __m256i a = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)((const uint16_t *)src + b + k)), absmask16);
                    zr = _mm256_sub_epi16(zr, _mm256_cmpeq_epi16(a, _mm256_setzero_si256()));
                    if (cols) {
                        __m256i *c = (__m256i *)(cols16 + b + k);
                        _mm256_storeu_si256(c, _mm256_max_epu16(a, _mm256_loadu_si256(c)));
                    }
                }
                acc->zeros += hsum_epi32(_mm256_madd_epi16(zr, ones16));
            }
        } else {
            j = 0;  /* a NaN, an infinity or an f32 overflow: redo the block in double precision */
        }
        double u1 = 0, u2 = 0, u3 = 0, u4 = 0;
        for (; j < len; j++) {
            float x = load_scalar(kind, src, b + j);
            if (x != x) { acc->nan++; continue; }
            if (cols) {
                if (kind == QKIT_KIND_F32) {
                    float a = __builtin_fabsf(x);
                    if (a > cols32[b + j]) cols32[b + j] = a;
                } else {
                    uint16_t a = ((const uint16_t *)src)[b + j] & 0x7FFF;
                    if (a > cols16[b + j]) cols16[b + j] = a;
                }
            }
            if (__builtin_isinf(x)) { acc->inf++; continue; }
            double d = (double)x - (double)shift;
            u1 += d; u2 += d * d; u3 += d * d * d; u4 += d * d * d * d;
            acc->finite++;
            if (x == 0) acc->zeros++;
            if (x < acc->min) acc->min = x;
            if (x > acc->max) acc->max = x;
        }
        acc->s1 += u1; acc->s2 += u2; acc->s3 += u3; acc->s4 += u4;
    }
}

#define STATS_CASE(kind, shifted)                                                                        \
    (cols ? stats_body(kind, shifted, src, n, shift, cols, acc) : stats_body(kind, shifted, src, n, shift, NULL, acc))

void qkit_stats_accumulate(int kind, const void *src, size_t n, float shift, void *cols, qkit_stats *acc) {
    int shifted = shift != 0;
    switch (kind) {
    case QKIT_KIND_BF16: shifted ? STATS_CASE(QKIT_KIND_BF16, 1) : STATS_CASE(QKIT_KIND_BF16, 0); break;
    case QKIT_KIND_F16: shifted ? STATS_CASE(QKIT_KIND_F16, 1) : STATS_CASE(QKIT_KIND_F16, 0); break;
    default: shifted ? STATS_CASE(QKIT_KIND_F32, 1) : STATS_CASE(QKIT_KIND_F32, 0);
    }
}

/* ---- Round to nearest on integer grids ---------------------------------------------------------------- */

/// Sign-magnitude 16-bit floats (bf16, f16) as signed integers in the order of their values: -0 just below +0,
/// NaNs beyond the infinities. The map is its own inverse.
static inline __m256i ordered16(__m256i x) {
    return _mm256_xor_si256(x, _mm256_and_si256(_mm256_srai_epi16(x, 15), _mm256_set1_epi16(0x7FFF)));
}

/// The f32 value of a 16-bit float's ordered key.
static inline float from_ordered16(int kind, int16_t key) {
    uint16_t bits = (uint16_t)(key ^ ((key >> 15) & 0x7FFF));
    return load_scalar(kind, &bits, 0);
}

/// Minimum and maximum of the `g` values at `src[s…]` (a NaN is skipped); four accumulators per bound.
static inline __attribute__((always_inline)) void group_range_floats(int kind, const void *src, size_t s, size_t g, float *mn, float *mx) {
    __m256 lo[4], hi[4];
    for (int a = 0; a < 4; a++) { lo[a] = _mm256_set1_ps(__builtin_inff()); hi[a] = _mm256_set1_ps(-__builtin_inff()); }
    size_t j = 0;
    for (; j + 32 <= g; j += 32)
        for (int a = 0; a < 4; a++) {
            __m256 v = load8(kind, src, s + j + 8 * a);
            lo[a] = _mm256_min_ps(v, lo[a]);  /* a NaN v leaves lo as it was */
            hi[a] = _mm256_max_ps(v, hi[a]);
        }
    for (; j < g; j += 8) {
        __m256 v = load8(kind, src, s + j);
        lo[0] = _mm256_min_ps(v, lo[0]);
        hi[0] = _mm256_max_ps(v, hi[0]);
    }
    *mn = hmin(_mm256_min_ps(_mm256_min_ps(lo[0], lo[1]), _mm256_min_ps(lo[2], lo[3])));
    *mx = hmax(_mm256_max_ps(_mm256_max_ps(hi[0], hi[1]), _mm256_max_ps(hi[2], hi[3])));
}

/// The same on bf16 or f16 bits, 16 values per instruction on their ordered keys. A group holding a NaN is
/// redone on f32 values, so that the NaN is skipped. Only the sign of a zero bound can differ from the f32
/// loop's (whose pick between +0 and -0 depends on their order): no scale or zero point depends on it.
static inline __attribute__((always_inline)) void range_16(int kind, const void *src, size_t k, size_t g, float *mins, float *maxs) {
    const int16_t top = kind == QKIT_KIND_BF16 ? 0x7F80 : 0x7C00;  /* +inf; -inf's key is -1 - top */
    const uint16_t *p = (const uint16_t *)src;
    for (size_t s = 0, gi = 0; s < k; s += g, gi++) {
        __m256i lo = _mm256_set1_epi16(0x7FFF), hi = _mm256_set1_epi16(-0x8000);
        size_t j = 0;
        for (; j + 16 <= g; j += 16) {
            __m256i key = ordered16(_mm256_loadu_si256((const __m256i *)(p + s + j)));
            lo = _mm256_min_epi16(lo, key);
            hi = _mm256_max_epi16(hi, key);
        }
        __m128i l = _mm_min_epi16(_mm256_castsi256_si128(lo), _mm256_extracti128_si256(lo, 1));
        __m128i h = _mm_max_epi16(_mm256_castsi256_si128(hi), _mm256_extracti128_si256(hi, 1));
        if (j < g) {  /* a tail of 8 */
            __m128i key = _mm256_castsi256_si128(ordered16(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(p + s + j)))));
            l = _mm_min_epi16(l, key);
            h = _mm_max_epi16(h, key);
        }
        /* minpos takes unsigned words: x ^ 0x8000 keeps the signed order, x ^ 0x7FFF reverses it */
        int16_t kmin = (int16_t)(_mm_cvtsi128_si32(_mm_minpos_epu16(_mm_xor_si128(l, _mm_set1_epi16(-0x8000)))) ^ 0x8000);
        int16_t kmax = (int16_t)(_mm_cvtsi128_si32(_mm_minpos_epu16(_mm_xor_si128(h, _mm_set1_epi16(0x7FFF)))) ^ 0x7FFF);
        if (kmax > top || kmin < -1 - top) {
            group_range_floats(kind, src, s, g, mins + gi, maxs + gi);
        } else {
            mins[gi] = from_ordered16(kind, kmin);
            maxs[gi] = from_ordered16(kind, kmax);
        }
    }
}

void qkit_group_range(int kind, const void *src, size_t k, size_t g, float *mins, float *maxs) {
    switch (kind) {
    case QKIT_KIND_BF16: range_16(QKIT_KIND_BF16, src, k, g, mins, maxs); break;
    case QKIT_KIND_F16: range_16(QKIT_KIND_F16, src, k, g, mins, maxs); break;
    default:
        for (size_t s = 0, gi = 0; s < k; s += g, gi++) group_range_floats(QKIT_KIND_F32, src, s, g, mins + gi, maxs + gi);
    }
}

/// The low bytes of the eight 32-bit lanes of `v`, in order.
static inline uint64_t low_bytes(__m256i v) {
    const __m256i pick = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                          0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    __m256i b = _mm256_shuffle_epi8(v, pick);
    uint32_t lo = (uint32_t)_mm256_extract_epi32(b, 0), hi = (uint32_t)_mm256_extract_epi32(b, 4);
    return (uint64_t)lo | ((uint64_t)hi << 32);
}

/// x/s correctly rounded, from r = RN(1/s): y = RN(x·r) is within an ulp of x/s, the residual x − y·s is exact
/// in an FMA, and one correction step gives RN(x/s) (Markstein's theorem), unless the residual underflows
/// or x·r overflows; `encode_body` only takes this path for scales in [2^-60, 2^60], where neither can change
/// a code (see there).
static inline __m256 quotient(__m256 x, __m256 s, __m256 r) {
    __m256 y = _mm256_mul_ps(x, r);
    __m256 e = _mm256_fnmadd_ps(y, s, x);
    return _mm256_fmadd_ps(e, r, y);
}

/// The low bytes of the 32 lanes of a, b, c, d (f32 bit patterns), `packus` lane order put right by `order`
/// (as in `encode_group`).
static inline __m256i low_bytes32(__m256 a, __m256 b, __m256 c, __m256 d, __m256i order) {
    const __m256i mask = _mm256_set1_epi32(0xFF);
    __m256i ab = _mm256_packus_epi32(_mm256_and_si256(_mm256_castps_si256(a), mask), _mm256_and_si256(_mm256_castps_si256(b), mask));
    __m256i cd = _mm256_packus_epi32(_mm256_and_si256(_mm256_castps_si256(c), mask), _mm256_and_si256(_mm256_castps_si256(d), mask));
    return _mm256_permutevar8x32_epi32(_mm256_packus_epi16(ab, cd), order);
}

/// The float path's code of quotients q: q + z clamped to [lo, hi] in float and rounded to even by adding
/// 1.5·2^23, whose sum's low byte is the code's two's-complement byte (the scalar encoder's trick, so NaN gives
/// the same byte too: max(lo, q) and min(hi, q) return q when q is NaN, as the scalar comparisons do).
static inline __m256 code_float(__m256 q, __m256 z, float lo, float hi) {
    return _mm256_add_ps(_mm256_min_ps(_mm256_set1_ps(hi), _mm256_max_ps(_mm256_set1_ps(lo), _mm256_add_ps(q, z))),
                         _mm256_set1_ps(12582912.0f));
}

/// Codes of 32 values by the float path (x/s by reciprocal and one correction). Out of line: it only runs for
/// a NaN, or a quotient beyond what `encode_group`'s integer path narrows.
static __attribute__((noinline)) __m256i codes32_float(__m256 x0, __m256 x1, __m256 x2, __m256 x3, __m256 sc, __m256 r,
                                                      __m256 z, float lo, float hi, __m256i order) {
    return low_bytes32(code_float(quotient(x0, sc, r), z, lo, hi), code_float(quotient(x1, sc, r), z, lo, hi),
                       code_float(quotient(x2, sc, r), z, lo, hi), code_float(quotient(x3, sc, r), z, lo, hi), order);
}

/// The codes of one group of `g` values whose scale is in [2^-60, 2^60], 32 at a time: x/s + z rounded to even by
/// `cvtps` (MXCSR's default rounding, which nothing here changes), narrowed with saturation to 16 and then 8 bits
/// (signed when lo < 0, unsigned otherwise) and clamped on bytes — the same codes as the float path, since lo
/// and hi are integers. `cvtps` gives INT32_MIN for NaN
/// and for |v| >= 2^31, which is -32768 after the first narrowing: 32 values holding a -32768 are redone by
/// `codes32_float` (a real v <= -32768 goes there too). `has_zero` false skips adding z = 0, which only turns
/// -0 into +0. Prefetches one cache line of `ahead` per 32 values (two for f32).
static inline __attribute__((always_inline)) void encode_group(int kind, int is_signed, int has_zero, const void *src,
                                                               size_t g, __m256 sc, __m256 r, __m256 z, float lo, float hi,
                                                               uint8_t *codes, const char *ahead) {
    const size_t width = kind == QKIT_KIND_F32 ? 4 : 2;
    const __m256i blo = _mm256_set1_epi8((char)(int)lo), bhi = _mm256_set1_epi8((char)(int)hi), least = _mm256_set1_epi16(-0x8000);
    /* bf16 widened in place gives (0-3 8-11 | 4-7 12-15) per 16 values, which `packs` puts back in order; loads
       of 8 consecutive values come out as dwords (0 2 4 6 | 1 3 5 7). */
    const __m256i order = kind == QKIT_KIND_BF16 ? _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7) : _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (size_t j = 0; j + 32 <= g; j += 32) {
        if (ahead) {
            _mm_prefetch(ahead + j * width, _MM_HINT_T0);
            if (width == 4) _mm_prefetch(ahead + j * width + 64, _MM_HINT_T0);
        }
        __m256 x0, x1, x2, x3;
        if (kind == QKIT_KIND_BF16) {
            /* bf16 widens in place: zero words interleaved below 16 values give their f32 bits */
            const uint16_t *p = (const uint16_t *)src + j;
            const __m256i zero = _mm256_setzero_si256();
            __m256i a = _mm256_loadu_si256((const __m256i *)p), b = _mm256_loadu_si256((const __m256i *)(p + 16));
            x0 = _mm256_castsi256_ps(_mm256_unpacklo_epi16(zero, a));
            x1 = _mm256_castsi256_ps(_mm256_unpackhi_epi16(zero, a));
            x2 = _mm256_castsi256_ps(_mm256_unpacklo_epi16(zero, b));
            x3 = _mm256_castsi256_ps(_mm256_unpackhi_epi16(zero, b));
        } else {
            x0 = load8(kind, src, j);
            x1 = load8(kind, src, j + 8);
            x2 = load8(kind, src, j + 16);
            x3 = load8(kind, src, j + 24);
        }
#define QKIT_INT(X) _mm256_cvtps_epi32(has_zero ? _mm256_add_ps(quotient(X, sc, r), z) : quotient(X, sc, r))
        __m256i wa = _mm256_packs_epi32(QKIT_INT(x0), QKIT_INT(x1)), wb = _mm256_packs_epi32(QKIT_INT(x2), QKIT_INT(x3));
#undef QKIT_INT
        __m256i bytes;
        if (_mm256_testz_si256(_mm256_cmpeq_epi16(_mm256_min_epi16(wa, wb), least), _mm256_cmpeq_epi16(least, least)))
            bytes = _mm256_permutevar8x32_epi32(is_signed ? _mm256_min_epi8(bhi, _mm256_max_epi8(blo, _mm256_packs_epi16(wa, wb)))
                                                          : _mm256_min_epu8(bhi, _mm256_max_epu8(blo, _mm256_packus_epi16(wa, wb))), order);
        else
            bytes = codes32_float(x0, x1, x2, x3, sc, r, z, lo, hi, order);
        _mm256_storeu_si256((__m256i *)(codes + j), bytes);
    }
}

static inline __attribute__((always_inline)) void encode_body(int kind, int is_signed, const void *src, size_t k, size_t g,
                                                              const float *scales, const float *zeros, float lo, float hi,
                                                              uint8_t *codes, const char *ahead) {
    const size_t width = kind == QKIT_KIND_F32 ? 4 : 2;
    for (size_t s = 0, gi = 0; s < k; s += g, gi++) {
        const __m256 sc = _mm256_set1_ps(scales[gi]), z = _mm256_set1_ps(zeros[gi]);
        /* With 2^-60 <= |s| <= 2^60 and |x| <= 2^64·|s| (the header's condition), x·r cannot overflow, and a
           residual that underflows (|x| < 2^-78) leaves |x/s| < 2^-18: with an integer z the code is z on
           either path. */
        const float magnitude = __builtin_fabsf(scales[gi]);
        if (magnitude >= 0x1p-60f && magnitude <= 0x1p60f) {
            const __m256 r = _mm256_set1_ps(1.0f / scales[gi]);
            const void *group = (const char *)src + s * width;
            const char *next = ahead ? ahead + s * width : NULL;
            if (zeros[gi] != 0.0f)
                encode_group(kind, is_signed, 1, group, g, sc, r, z, lo, hi, codes + s, next);
            else
                encode_group(kind, is_signed, 0, group, g, sc, r, z, lo, hi, codes + s, next);
            for (size_t j = g / 32 * 32; j < g; j += 8) {
                uint64_t bytes = low_bytes(_mm256_castps_si256(code_float(quotient(load8(kind, src, s + j), sc, r), z, lo, hi)));
                memcpy(codes + s + j, &bytes, 8);
            }
        } else {
            for (size_t j = 0; j < g; j += 8) {
                uint64_t bytes = low_bytes(_mm256_castps_si256(code_float(_mm256_div_ps(load8(kind, src, s + j), sc), z, lo, hi)));
                memcpy(codes + s + j, &bytes, 8);
            }
        }
    }
}

void qkit_encode_int(int kind, const void *src, size_t k, size_t g, const float *scales, const float *zeros,
                     float lo, float hi, uint8_t *codes, const void *ahead) {
    /* One variant per type and signedness of the codes (lo < 0: signed bytes), so that no test is left in
       the loops. */
    const char *next = (const char *)ahead;
    const int is_signed = lo < 0;
#define QKIT_ENCODE(KIND) do { if (is_signed) encode_body(KIND, 1, src, k, g, scales, zeros, lo, hi, codes, next); \
                               else encode_body(KIND, 0, src, k, g, scales, zeros, lo, hi, codes, next); } while (0)
    switch (kind) {
    case QKIT_KIND_BF16: QKIT_ENCODE(QKIT_KIND_BF16); break;
    case QKIT_KIND_F16: QKIT_ENCODE(QKIT_KIND_F16); break;
    default: QKIT_ENCODE(QKIT_KIND_F32);
    }
#undef QKIT_ENCODE
}

/* ---- Packing 4-bit codes ------------------------------------------------------------------------------ */

void qkit_pack_u4(const uint8_t *codes, size_t count, uint8_t bias, uint32_t *words) {
    const __m256i low = _mm256_set1_epi8(0x0F), weights = _mm256_set1_epi16(0x1001), b = _mm256_set1_epi8((char)bias);
    size_t i = 0;
    for (; i + 32 <= count; i += 32) {
        __m256i v = _mm256_and_si256(_mm256_add_epi8(_mm256_loadu_si256((const __m256i *)(codes + i)), b), low);
        __m256i pairs = _mm256_maddubs_epi16(v, weights);  /* code 2j + 16 · code 2j+1, in 16 bits */
        __m256i bytes = _mm256_permute4x64_epi64(_mm256_packus_epi16(pairs, pairs), 0x08);
        _mm_storeu_si128((__m128i *)(words + i / 8), _mm256_castsi256_si128(bytes));
    }
    for (; i < count; i += 8) {
        uint32_t w = 0;
        for (size_t t = 0; t < 8 && i + t < count; t++) w |= (uint32_t)((uint8_t)(codes[i + t] + bias) & 0x0F) << (4 * t);
        words[i / 8] = w;
    }
}

/* The row of 8 held in nibble i of an AWQ word. */
static const int AWQ_ROW[8] = {0, 2, 4, 6, 1, 3, 5, 7};

/// 32 AWQ words (columns kk … kk+31 of rows r[0], r[k], …, r[7k]) into `w`, in column order.
static inline void awq_words32(const uint8_t *r, size_t k, __m256i bias, uint32_t *w) {
    const __m256i low = _mm256_set1_epi8(0x0F);
    __m256i R[8];
    for (int j = 0; j < 8; j++) R[j] = _mm256_and_si256(_mm256_add_epi8(_mm256_loadu_si256((const __m256i *)(r + j * k)), bias), low);
    /* Word bytes: r0|r2<<4, r4|r6<<4, r1|r3<<4, r5|r7<<4 (nibble i holds row [0,2,4,6,1,3,5,7][i]). */
    __m256i b0 = _mm256_or_si256(R[0], _mm256_slli_epi16(R[2], 4));
    __m256i b1 = _mm256_or_si256(R[4], _mm256_slli_epi16(R[6], 4));
    __m256i b2 = _mm256_or_si256(R[1], _mm256_slli_epi16(R[3], 4));
    __m256i b3 = _mm256_or_si256(R[5], _mm256_slli_epi16(R[7], 4));
    __m256i l01 = _mm256_unpacklo_epi8(b0, b1), h01 = _mm256_unpackhi_epi8(b0, b1);
    __m256i l23 = _mm256_unpacklo_epi8(b2, b3), h23 = _mm256_unpackhi_epi8(b2, b3);
    /* Within each 128-bit lane these hold columns 0-3, 4-7, 8-11, 12-15 (lane 1: +16); put the lanes in order. */
    __m256i w0 = _mm256_unpacklo_epi16(l01, l23), w1 = _mm256_unpackhi_epi16(l01, l23);
    __m256i w2 = _mm256_unpacklo_epi16(h01, h23), w3 = _mm256_unpackhi_epi16(h01, h23);
    _mm256_storeu_si256((__m256i *)(w + 0), _mm256_permute2x128_si256(w0, w1, 0x20));
    _mm256_storeu_si256((__m256i *)(w + 8), _mm256_permute2x128_si256(w2, w3, 0x20));
    _mm256_storeu_si256((__m256i *)(w + 16), _mm256_permute2x128_si256(w0, w1, 0x31));
    _mm256_storeu_si256((__m256i *)(w + 24), _mm256_permute2x128_si256(w2, w3, 0x31));
}

/* dst[j · dstStride + r] = src[r · srcStride + j] for r < rows (≤ 16), j < cols. Sixteen rows go in 8 × 8 blocks,
   and when dst and its stride allow, each dst row goes out as one whole 64-byte line of non-temporal stores: no
   read for ownership of lines that are overwritten whole, and the packed output (read by nothing here) does not
   evict the input. Fewer rows (a ragged edge) are copied one by one. The caller fences (sfence) before the stores
   are read by another thread. */
static void transpose_rows(const uint32_t *src, size_t rows, size_t srcStride, size_t cols, uint32_t *dst, size_t dstStride) {
    if (rows < 16) {
        for (size_t j = 0; j < cols; j++)
            for (size_t r = 0; r < rows; r++) dst[j * dstStride + r] = src[r * srcStride + j];
        return;
    }
    int stream = ((uintptr_t)dst & 63) == 0 && (dstStride & 15) == 0;
    size_t j = 0;
    for (; j + 8 <= cols; j += 8) {
        __m256i h[2][8];
        for (int half = 0; half < 2; half++) {
            const uint32_t *s = src + 8 * half * srcStride + j;
            __m256i r0 = _mm256_loadu_si256((const __m256i *)(s)), r1 = _mm256_loadu_si256((const __m256i *)(s + srcStride));
            __m256i r2 = _mm256_loadu_si256((const __m256i *)(s + 2 * srcStride)), r3 = _mm256_loadu_si256((const __m256i *)(s + 3 * srcStride));
            __m256i r4 = _mm256_loadu_si256((const __m256i *)(s + 4 * srcStride)), r5 = _mm256_loadu_si256((const __m256i *)(s + 5 * srcStride));
            __m256i r6 = _mm256_loadu_si256((const __m256i *)(s + 6 * srcStride)), r7 = _mm256_loadu_si256((const __m256i *)(s + 7 * srcStride));
            __m256i t0 = _mm256_unpacklo_epi32(r0, r1), t1 = _mm256_unpackhi_epi32(r0, r1);
            __m256i t2 = _mm256_unpacklo_epi32(r2, r3), t3 = _mm256_unpackhi_epi32(r2, r3);
            __m256i t4 = _mm256_unpacklo_epi32(r4, r5), t5 = _mm256_unpackhi_epi32(r4, r5);
            __m256i t6 = _mm256_unpacklo_epi32(r6, r7), t7 = _mm256_unpackhi_epi32(r6, r7);
            __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
            __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
            __m256i u4 = _mm256_unpacklo_epi64(t4, t6), u5 = _mm256_unpackhi_epi64(t4, t6);
            __m256i u6 = _mm256_unpacklo_epi64(t5, t7), u7 = _mm256_unpackhi_epi64(t5, t7);
            h[half][0] = _mm256_permute2x128_si256(u0, u4, 0x20); h[half][1] = _mm256_permute2x128_si256(u1, u5, 0x20);
            h[half][2] = _mm256_permute2x128_si256(u2, u6, 0x20); h[half][3] = _mm256_permute2x128_si256(u3, u7, 0x20);
            h[half][4] = _mm256_permute2x128_si256(u0, u4, 0x31); h[half][5] = _mm256_permute2x128_si256(u1, u5, 0x31);
            h[half][6] = _mm256_permute2x128_si256(u2, u6, 0x31); h[half][7] = _mm256_permute2x128_si256(u3, u7, 0x31);
        }
        for (int q = 0; q < 8; q++) {
            __m256i *d = (__m256i *)(dst + (j + q) * dstStride);
            if (stream) { _mm256_stream_si256(d, h[0][q]); _mm256_stream_si256(d + 1, h[1][q]); }
            else { _mm256_storeu_si256(d, h[0][q]); _mm256_storeu_si256(d + 1, h[1][q]); }
        }
    }
    for (; j < cols; j++) for (int r = 0; r < 16; r++) dst[j * dstStride + r] = src[r * srcStride + j];
}
void qkit_pack_awq(const uint8_t *values, size_t k, uint8_t bias, size_t words, size_t c0, size_t c1, uint32_t *out) {
    const __m256i b = _mm256_set1_epi8((char)bias);
    /* Tiles of 64 columns × up to 16 packed columns: each input line is used whole once loaded (rows lie k
       apart, a multiple of 4 KiB for most models, so they share L1 sets and would not stay); the tile is built
       as 16 rows of words, one per packed column, and goes out transposed as whole 64-byte lines. */
    enum { TK = 64, TC = 16 };
    uint32_t tile[TC][TK];
    /* Rows start equally far into a line when k % 64 == 0 (a tensor's data need not start on one): the first
       tile is taken where the rows start and the next ones from the first line boundary on (re-packing up to 63
       columns), so that each row of a tile is one line, not parts of two. The last tile may overlap too. */
    size_t head = k % 64 == 0 ? (64 - ((uintptr_t)values & 63)) & 63 : 0;
    size_t kk = 0;
    if (k >= TK)
        for (;;) {
            for (size_t c = c0; c < c1; c += TC) {
                size_t m = c1 - c < TC ? c1 - c : TC;
                for (size_t t = 0; t < m; t++) {
                    const uint8_t *r = values + 8 * (c + t) * k + kk;
                    /* The rows two packed columns on (or the next tile's first ones): demand misses would wait on DRAM. */
                    const uint8_t *ahead = t + 2 < m ? r + 16 * k : values + 8 * (c + t + 2 - m) * k + kk + TK;
                    if (ahead + 8 * k <= values + 8 * c1 * k)
                        for (int j = 0; j < 8; j++) _mm_prefetch((const char *)(ahead + j * k), _MM_HINT_T0);
                    awq_words32(r, k, b, tile[t]);
                    awq_words32(r + 32, k, b, tile[t] + 32);
                }
                transpose_rows(&tile[0][0], m, TK, TK, out + kk * words + c, words);
            }
            if (kk + TK == k) break;
            size_t next = kk == 0 && head ? head : kk + TK;
            kk = next + TK > k ? k - TK : next;
        }
    _mm_sfence();
    if (k < TK)
        for (kk = 0; kk < k; kk++)
            for (size_t c = c0; c < c1; c++) {
                const uint8_t *r = values + 8 * c * k + kk;
                uint32_t w = 0;
                for (int i = 0; i < 8; i++) w |= (uint32_t)((uint8_t)(r[AWQ_ROW[i] * k] + bias) & 15) << (4 * i);
                out[kk * words + c] = w;
            }
}

void qkit_store_transposed(const uint32_t *src, size_t rows, size_t srcStride, size_t cols, uint32_t *dst, size_t dstStride) {
    transpose_rows(src, rows, srcStride, cols, dst, dstStride);
    _mm_sfence();
}

void qkit_pack_tinychat(const uint8_t *rows, size_t k, uint8_t bias, uint16_t *out) {
    const __m128i low = _mm_set1_epi8(0x0F), b = _mm_set1_epi8((char)bias);
    int stream = ((uintptr_t)out & 31) == 0;
    /* Per 64 codes of the four rows, the 64 words they make (two whole lines): out of L1 in one go, streamed
       past the cache when aligned (no read for ownership of lines overwritten whole). */
    for (size_t c = 0; c < k; c += 64) {
        __m256i line[4];
        for (size_t r = 0; r < 4; r++) {
            __m128i half[2];
            for (int h = 0; h < 2; h++) {
                /* 32 codes c' … c'+31 make the eight words j: nibble t holds code c' + 8t + j */
                const uint8_t *p = rows + r * k + c + 32 * h;
                __m128i v0 = _mm_and_si128(_mm_add_epi8(_mm_loadu_si128((const __m128i *)p), b), low);
                __m128i v1 = _mm_and_si128(_mm_add_epi8(_mm_loadu_si128((const __m128i *)(p + 16)), b), low);
                __m128i x = _mm_or_si128(v0, _mm_slli_epi16(_mm_srli_si128(v0, 8), 4));  /* byte j: codes j, 8 + j */
                __m128i y = _mm_or_si128(v1, _mm_slli_epi16(_mm_srli_si128(v1, 8), 4));  /* codes 16 + j, 24 + j */
                half[h] = _mm_unpacklo_epi8(x, y);
            }
            line[r] = _mm256_set_m128i(half[1], half[0]);  /* words r·16 … r·16 + 15 of the 64 */
        }
        __m256i *d = (__m256i *)(out + c);
        if (stream)
            for (int r = 0; r < 4; r++) _mm256_stream_si256(d + r, line[r]);
        else
            for (int r = 0; r < 4; r++) _mm256_storeu_si256(d + r, line[r]);
    }
    _mm_sfence();
}

void qkit_keep_freed_blocks(void) {
    mallopt(M_MMAP_MAX, 0);
    mallopt(M_TRIM_THRESHOLD, 0x7FFFFFFF);
}

/* ---- Float32 to small floats (FP8, FP6, FP4 codes) ---------------------------------------------------- */

/// One code per lane, as `MinifloatFormat.encode` computes it, for 8 values at once.
static inline __m256i minifloat8(__m256 x, const qkit_minifloat *f) {
    const int m = f->mantissa_bits, shift = 23 - m;
    const __m256i bits = _mm256_castps_si256(x);
    const __m256i a = _mm256_and_si256(bits, _mm256_set1_epi32(0x7FFFFFFF));
    const __m256i sign = _mm256_slli_epi32(_mm256_srli_epi32(bits, 31), f->exponent_bits + m);
    /* Normal range: round the f32 bits to m mantissa bits, ties to even, then rebias the exponent. */
    __m256i r = _mm256_add_epi32(a, _mm256_set1_epi32((1 << (shift - 1)) - 1));
    r = _mm256_add_epi32(r, _mm256_and_si256(_mm256_srli_epi32(a, shift), _mm256_set1_epi32(1)));
    __m256i code = _mm256_sub_epi32(_mm256_srli_epi32(r, shift), _mm256_set1_epi32((127 - f->bias) << m));
    /* Below the smallest normal: scale one subnormal step to 1 (exact) and round to an integer, ties to even. */
    const __m256i below = _mm256_cmpgt_epi32(_mm256_set1_epi32((128 - f->bias) << 23), a);
    const __m256 step = _mm256_castsi256_ps(_mm256_set1_epi32((127 + m - 1 + f->bias) << 23));
    const __m256i sub = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_castsi256_ps(a), step),
                                                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    code = _mm256_blendv_epi8(code, sub, below);
    /* Past the largest finite code: saturate, infinity or NaN, as the format says. */
    const __m256i over = _mm256_cmpgt_epi32(code, _mm256_set1_epi32((int)f->max_finite_code));
    code = _mm256_blendv_epi8(code, _mm256_set1_epi32((int)f->overflow_code), over);
    code = _mm256_or_si256(code, sign);
    if (f->special == QKIT_MINIFLOAT_FNUZ) {  /* no negative zero: a zero of either sign is 0 */
        const __m256i zero = _mm256_cmpeq_epi32(_mm256_andnot_si256(sign, code), _mm256_setzero_si256());
        code = _mm256_andnot_si256(zero, code);
    }
    const __m256i nan_code = _mm256_or_si256(_mm256_set1_epi32((int)f->nan_code), f->nan_signed ? sign : _mm256_setzero_si256());
    __m256i nan = _mm256_cmpgt_epi32(a, _mm256_set1_epi32(0x7F800000));
    if (f->overflow_is_nan) nan = _mm256_or_si256(nan, over);
    return _mm256_blendv_epi8(code, nan_code, nan);
}

void qkit_encode_minifloat(const float *src, uint8_t *dst, size_t n, const qkit_minifloat *f) {
    size_t i = 0;
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (; i + 32 <= n; i += 32) {
        __m256i c0 = minifloat8(_mm256_loadu_ps(src + i), f), c1 = minifloat8(_mm256_loadu_ps(src + i + 8), f);
        __m256i c2 = minifloat8(_mm256_loadu_ps(src + i + 16), f), c3 = minifloat8(_mm256_loadu_ps(src + i + 24), f);
        /* 32-bit codes (each < 256) to bytes; packs work per 128-bit lane, the permute puts them back in order. */
        __m256i w = _mm256_packus_epi16(_mm256_packus_epi32(c0, c1), _mm256_packus_epi32(c2, c3));
        _mm256_storeu_si256((__m256i *)(dst + i), _mm256_permutevar8x32_epi32(w, order));
    }
    if (i < n) {
        float tail[32] = {0};
        uint8_t out[32];
        memcpy(tail, src + i, (n - i) * sizeof(float));
        qkit_encode_minifloat(tail, out, 32, f);
        memcpy(dst + i, out, n - i);
    }
}
