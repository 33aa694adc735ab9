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

#endif
