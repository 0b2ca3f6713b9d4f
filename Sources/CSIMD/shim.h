// Byte classification 64 bytes at a time for the JSON validator. Swift's SIMD types
// have no movemask (a compare result cannot become a bit mask in one instruction),
// so this one kernel is C: AVX2 where the CPU has it (checked at run time), SSE2 on
// every other x86-64, and a portable loop elsewhere.
// SwiftPM does not track this header for rebuilds: after editing it, touch a Swift
// file of PXGuardCore (or remove .build) before building and testing.
#ifndef PXGUARD_CSIMD_SHIM_H
#define PXGUARD_CSIMD_SHIM_H
#include <stddef.h>
#include <stdint.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

/* For the 64-byte blocks at p: bit i of masks[2b] is set when byte 64b+i is '"', bit i
   of masks[2b+1] when it is something a JSON string cannot hold verbatim or that needs
   a closer look: '\\', a control character (< 0x20), or a non-ASCII byte (>= 0x80). */
static inline void pxg_string_masks_portable(const uint8_t *p, size_t blocks, uint64_t *masks) {
    for (size_t b = 0; b < blocks; b++) {
        uint64_t q = 0, s = 0;
        for (int i = 0; i < 64; i++) {
            uint8_t c = p[64 * b + i];
            if (c == '"') q |= (uint64_t)1 << i;
            if (c == '\\' || c < 0x20 || c >= 0x80) s |= (uint64_t)1 << i;
        }
        masks[2 * b] = q;
        masks[2 * b + 1] = s;
    }
}

#if defined(__x86_64__)
static inline void pxg_string_masks_sse2(const uint8_t *p, size_t blocks, uint64_t *masks) {
    const __m128i quote = _mm_set1_epi8('"');
    const __m128i backslash = _mm_set1_epi8('\\');
    const __m128i flip = _mm_set1_epi8((char)0x80);
    const __m128i controlLimit = _mm_set1_epi8((char)(0x20 ^ 0x80));
    for (size_t b = 0; b < blocks; b++) {
        uint64_t q = 0, s = 0;
        for (int k = 0; k < 4; k++) {
            __m128i v = _mm_loadu_si128((const __m128i *)(p + 64 * b + 16 * k));
            /* Unsigned v < 0x20 is signed (v ^ 0x80) < (0x20 ^ 0x80). */
            __m128i control = _mm_cmplt_epi8(_mm_xor_si128(v, flip), controlLimit);
            __m128i odd = _mm_or_si128(_mm_cmpeq_epi8(v, backslash), control);
            q |= (uint64_t)(uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(v, quote)) << (16 * k);
            s |= (uint64_t)(uint32_t)(_mm_movemask_epi8(odd) | _mm_movemask_epi8(v)) << (16 * k);
        }
        masks[2 * b] = q;
        masks[2 * b + 1] = s;
    }
}

__attribute__((target("avx2"))) static void pxg_string_masks_avx2(const uint8_t *p, size_t blocks, uint64_t *masks) {
    const __m256i quote = _mm256_set1_epi8('"');
    const __m256i backslash = _mm256_set1_epi8('\\');
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    const __m256i controlLimit = _mm256_set1_epi8((char)(0x20 ^ 0x80));
    for (size_t b = 0; b < blocks; b++) {
        __m256i lo = _mm256_loadu_si256((const __m256i *)(p + 64 * b));
        __m256i hi = _mm256_loadu_si256((const __m256i *)(p + 64 * b + 32));
        /* A byte is special when it is a backslash, below 0x20 or at least 0x80: the
           last two are one signed compare after flipping the top bit. */
        __m256i oddLo = _mm256_or_si256(_mm256_cmpeq_epi8(lo, backslash), _mm256_cmpgt_epi8(controlLimit, _mm256_xor_si256(lo, flip)));
        __m256i oddHi = _mm256_or_si256(_mm256_cmpeq_epi8(hi, backslash), _mm256_cmpgt_epi8(controlLimit, _mm256_xor_si256(hi, flip)));
        oddLo = _mm256_or_si256(oddLo, lo);
        oddHi = _mm256_or_si256(oddHi, hi);
        masks[2 * b] = (uint64_t)(uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(lo, quote))
            | (uint64_t)(uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(hi, quote)) << 32;
        masks[2 * b + 1] = (uint64_t)(uint32_t)_mm256_movemask_epi8(oddLo) | (uint64_t)(uint32_t)_mm256_movemask_epi8(oddHi) << 32;
    }
}
#endif

/* The masks of `blocks` whole 64-byte blocks at p, into masks[0..<2*blocks]. */
static inline void pxg_string_masks(const uint8_t *p, size_t blocks, uint64_t *masks) {
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx2")) {
        pxg_string_masks_avx2(p, blocks, masks);
    } else {
        pxg_string_masks_sse2(p, blocks, masks);
    }
#else
    pxg_string_masks_portable(p, blocks, masks);
#endif
}
#endif
