// Byte classification 64 bytes at a time for the JSON validator. Swift's SIMD types
// have no movemask (a compare result cannot become a bit mask in one instruction),
// so this one kernel is C with SSE2 intrinsics, with a portable loop elsewhere.
#ifndef PXGUARD_CSIMD_SHIM_H
#define PXGUARD_CSIMD_SHIM_H
#include <stdint.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* For the 64 bytes at p: bit i of *quotes is set when p[i] is '"', bit i of *special
   when p[i] is something a JSON string cannot hold verbatim or that needs a closer
   look: '\\', a control character (< 0x20), or a non-ASCII byte (>= 0x80). */
static inline void pxg_string_masks64(const uint8_t *p, uint64_t *quotes, uint64_t *special) {
    uint64_t q = 0, s = 0;
#if defined(__SSE2__)
    const __m128i quote = _mm_set1_epi8('"');
    const __m128i backslash = _mm_set1_epi8('\\');
    const __m128i flip = _mm_set1_epi8((char)0x80);
    const __m128i controlLimit = _mm_set1_epi8((char)(0x20 ^ 0x80));
    for (int k = 0; k < 4; k++) {
        __m128i v = _mm_loadu_si128((const __m128i *)(p + 16 * k));
        /* Unsigned v < 0x20 is signed (v ^ 0x80) < (0x20 ^ 0x80). */
        __m128i control = _mm_cmplt_epi8(_mm_xor_si128(v, flip), controlLimit);
        __m128i odd = _mm_or_si128(_mm_cmpeq_epi8(v, backslash), control);
        uint64_t qm = (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(v, quote));
        uint64_t sm = (uint32_t)(_mm_movemask_epi8(odd) | _mm_movemask_epi8(v));
        q |= qm << (16 * k);
        s |= sm << (16 * k);
    }
#else
    for (int i = 0; i < 64; i++) {
        uint8_t c = p[i];
        if (c == '"') q |= (uint64_t)1 << i;
        if (c == '\\' || c < 0x20 || c >= 0x80) s |= (uint64_t)1 << i;
    }
#endif
    *quotes = q;
    *special = s;
}
#endif
