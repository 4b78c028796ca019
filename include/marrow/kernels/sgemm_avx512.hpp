#pragma once
// The AVX-512 fp32 micro-kernel: an MR × (16·NV) tile of C held in MR·NV zmm
// accumulators; each step of k loads NV vectors of B's row k and broadcasts MR
// entries of A's column k. The tile's shape is chosen in sgemm.hpp (Avx512Arch).
#include "sgemm_tile.hpp"

#ifdef MARROW_SGEMM_X86
#include <immintrin.h>

#define MARROW_TARGET_AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,fma")))

namespace marrow::detail::avx512 {

MARROW_TARGET_AVX512 inline __m512 exp_ps(__m512 x) {
  // e^x = 2^n·e^r, n = round(x/ln 2), |r| ≤ ln2/2, e^r by its degree-6 Taylor
  // polynomial (relative error < 2e-7 there); ln 2 split in two so r keeps its bits.
  x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.0f)), _mm512_set1_ps(-88.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.4426950408889634f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-06f), r);
  __m512 p = _mm512_set1_ps(1.0f / 720);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

MARROW_TARGET_AVX512 inline __m512 gelu_ps(__m512 x) {
  const __m512 x3 = _mm512_mul_ps(_mm512_mul_ps(x, x), x);
  const __m512 u = _mm512_mul_ps(_mm512_set1_ps(0.7978845608028654f), _mm512_fmadd_ps(_mm512_set1_ps(0.044715f), x3, x));
  const __m512 e = exp_ps(_mm512_mul_ps(u, _mm512_set1_ps(-2.0f)));
  return _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

MARROW_TARGET_AVX512 inline __mmask16 lane_mask(int n) {
  return n >= 16 ? __mmask16(0xFFFF) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1);
}

// C's tile is only touched after the whole k loop; fetching it before the loop
// hides the misses (its rows lie ldc apart, which no hardware prefetcher follows).
template <int MR, int NV>
MARROW_TARGET_AVX512 __attribute__((always_inline)) inline void prefetch_tile(const float* c, index_t ldc,
                                                                              const TileStore& st) {
  if (!st.first || st.beta != 0.0f)
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + 16 * v), _MM_HINT_T0);
}

// Stores rows [0, m) of an MR × 16·NV tile of sums (columns where mask[v] is set)
// into C through the epilogue (TileStore): every AVX-512 kernel's store, the fp32
// one below and the bf16 one (sgemm_bf16.hpp) alike.
template <int MR, int NV>
MARROW_TARGET_AVX512 __attribute__((always_inline)) inline void store_tile(const __m512 (&acc)[MR][NV],
                                                                           const __mmask16 (&mask)[NV], float* c,
                                                                           index_t ldc, int m, const TileStore& st) {
  const __m512 alpha = _mm512_set1_ps(st.alpha), beta = _mm512_set1_ps(st.beta);
  const bool read_c = !st.first || st.beta != 0.0f;
#pragma GCC unroll 32
  for (int r = 0; r < MR; ++r) {
    if (r >= m) break;
    float* cr = c + r * ldc;
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      const __mmask16 k = mask[v];
      __m512 x;
      if (st.first) {
        x = _mm512_mul_ps(alpha, acc[r][v]);
        if (read_c) x = _mm512_fmadd_ps(beta, _mm512_maskz_loadu_ps(k, cr + 16 * v), x);
      } else {
        x = _mm512_fmadd_ps(alpha, acc[r][v], _mm512_maskz_loadu_ps(k, cr + 16 * v));
      }
      if (st.last) {
        if (st.bias_kind == GemmBias::PerCol) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(k, st.bias + 16 * v));
        else if (st.bias_kind == GemmBias::PerRow) x = _mm512_add_ps(x, _mm512_set1_ps(st.bias[r]));
        if (st.act == GemmAct::Relu) x = _mm512_max_ps(x, _mm512_setzero_ps());
        else if (st.act == GemmAct::Gelu) x = gelu_ps(x);
      }
      _mm512_mask_storeu_ps(cr + 16 * v, k, x);
    }
  }
}

// C[0..m) × [0..n) of the tile (op) = the product of A's MR rows and B's 16·NV
// columns over kc steps. A's entry (r, k) lies at a[k·lda + r] when AK (packed
// panels, lda = MR, or a transposed A read in place) and at a[r·lda + k]
// otherwise; all MR rows must be readable (sgemm.hpp packs a ragged last panel).
// B's row k starts at b + k·ldb; BMask: only the first n columns may be read (B
// read in place at a ragged edge), else all 16·NV are (packed, zero-padded).
template <int MR, int NV, bool AK, bool BMask>
MARROW_TARGET_AVX512 void tile(index_t kc, const float* __restrict a, index_t lda, const float* __restrict b, index_t ldb,
                               float* __restrict c, index_t ldc, int m, int n, const TileStore& st) {
  __m512 acc[MR][NV];
#pragma GCC unroll 32
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();
  __mmask16 mask[NV];
#pragma GCC unroll 8
  for (int v = 0; v < NV; ++v) mask[v] = lane_mask(n - 16 * v);

  prefetch_tile<MR, NV>(c, ldc, st);

  for (index_t k = 0; k < kc; ++k) {
    __m512 bv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) bv[v] = BMask ? _mm512_maskz_loadu_ps(mask[v], b + 16 * v) : _mm512_loadu_ps(b + 16 * v);
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r) {
      const __m512 av = _mm512_set1_ps(AK ? a[r] : a[r * lda]);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
    }
    a += AK ? lda : 1;
    b += ldb;
  }

  store_tile<MR, NV>(acc, mask, c, ldc, m, st);
}

}  // namespace marrow::detail::avx512
#endif
