#include "CKernels.h"
#include <immintrin.h>
#include <string.h>

static inline void store_bf16(const uint16_t *src, float *dst) {
    uint32_t v = (uint32_t)*src << 16;
    memcpy(dst, &v, 4);
}

static inline void store_f16(const uint16_t *src, float *dst) {
    *dst = _cvtsh_ss(*src);
}

void qkit_bf16_to_f32_stream(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    while (i < n && ((uintptr_t)(dst + i) & 31) != 0) { store_bf16(src + i, dst + i); i++; }
    for (; i + 16 <= n; i += 16) {
        __m128i a = _mm_loadu_si128((const __m128i *)(src + i));
        __m128i b = _mm_loadu_si128((const __m128i *)(src + i + 8));
        _mm256_stream_si256((__m256i *)(dst + i), _mm256_slli_epi32(_mm256_cvtepu16_epi32(a), 16));
        _mm256_stream_si256((__m256i *)(dst + i + 8), _mm256_slli_epi32(_mm256_cvtepu16_epi32(b), 16));
    }
    _mm_sfence();
    for (; i < n; i++) store_bf16(src + i, dst + i);
}

void qkit_f16_to_f32_stream(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    while (i < n && ((uintptr_t)(dst + i) & 31) != 0) { store_f16(src + i, dst + i); i++; }
    for (; i + 16 <= n; i += 16) {
        __m128i a = _mm_loadu_si128((const __m128i *)(src + i));
        __m128i b = _mm_loadu_si128((const __m128i *)(src + i + 8));
        _mm256_stream_ps(dst + i, _mm256_cvtph_ps(a));
        _mm256_stream_ps(dst + i + 8, _mm256_cvtph_ps(b));
    }
    _mm_sfence();
    for (; i < n; i++) store_f16(src + i, dst + i);
}
