#ifndef MOEKIT_KERNEL_HELPERS_H
#define MOEKIT_KERNEL_HELPERS_H

// Small helpers shared by the kernel files (private to CKernels).

#include <immintrin.h>
#include "ckernels.h"

/// One IEEE half-precision bit pattern as a float.
static inline float half_to_float(uint16_t h) {
    float f;
    moe_f16_to_f32(&h, &f, 1);
    return f;
}

/// The sum of a vector's eight floats.
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline float horizontal_sum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_hadd_ps(s, s);
    s = _mm_hadd_ps(s, s);
    return _mm_cvtss_f32(s);
}

#endif
