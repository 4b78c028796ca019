#pragma once
// The AVX2+FMA fp32 micro-kernel, for machines without AVX-512: the same loop
// as sgemm_avx512.hpp on 8-lane ymm vectors, MR × (8·NV) tiles.
#include "sgemm_tile.hpp"

#ifdef MARROW_SGEMM_X86
#include <immintrin.h>

#define MARROW_TARGET_AVX2 __attribute__((target("avx2,fma")))

namespace marrow::detail::avx2 {

MARROW_TARGET_AVX2 inline __m256 exp_ps(__m256 x) {
  // As avx512::exp_ps; 2^n is built in the exponent field (n stays within ±127 for
  // |x| ≤ 88).
  x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.0f)), _mm256_set1_ps(-88.0f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.4426950408889634f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187e-06f), r);
  __m256 p = _mm256_set1_ps(1.0f / 720);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

MARROW_TARGET_AVX2 inline __m256 gelu_ps(__m256 x) {
  const __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
  const __m256 u = _mm256_mul_ps(_mm256_set1_ps(0.7978845608028654f), _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), x3, x));
  const __m256 e = exp_ps(_mm256_mul_ps(u, _mm256_set1_ps(-2.0f)));
  return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

MARROW_TARGET_AVX2 inline __m256i lane_mask(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// The contract of avx512::tile, on 8-lane vectors.
template <int MR, int NV, bool AK, bool BMask>
MARROW_TARGET_AVX2 void tile(index_t kc, const float* __restrict a, index_t lda, const float* __restrict b, index_t ldb,
                             float* __restrict c, index_t ldc, int m, int n, const TileStore& st) {
  __m256 acc[MR][NV];
#pragma GCC unroll 32
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_setzero_ps();
  __m256i mask[NV];
#pragma GCC unroll 8
  for (int v = 0; v < NV; ++v) mask[v] = lane_mask(n - 8 * v);

  for (index_t k = 0; k < kc; ++k) {
    __m256 bv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) bv[v] = BMask ? _mm256_maskload_ps(b + 8 * v, mask[v]) : _mm256_loadu_ps(b + 8 * v);
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r) {
      const __m256 av = _mm256_broadcast_ss(AK ? a + r : a + r * lda);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_fmadd_ps(av, bv[v], acc[r][v]);
    }
    a += AK ? lda : 1;
    b += ldb;
  }

  const __m256 alpha = _mm256_set1_ps(st.alpha), beta = _mm256_set1_ps(st.beta);
  const bool read_c = !st.first || st.beta != 0.0f;
#pragma GCC unroll 32
  for (int r = 0; r < MR; ++r) {
    if (r >= m) break;
    float* cr = c + r * ldc;
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      const __m256i k = mask[v];
      __m256 x;
      if (st.first) {
        x = _mm256_mul_ps(alpha, acc[r][v]);
        if (read_c) x = _mm256_fmadd_ps(beta, _mm256_maskload_ps(cr + 8 * v, k), x);
      } else {
        x = _mm256_fmadd_ps(alpha, acc[r][v], _mm256_maskload_ps(cr + 8 * v, k));
      }
      if (st.last) {
        if (st.bias_kind == GemmBias::PerCol) x = _mm256_add_ps(x, _mm256_maskload_ps(st.bias + 8 * v, k));
        else if (st.bias_kind == GemmBias::PerRow) x = _mm256_add_ps(x, _mm256_set1_ps(st.bias[r]));
        if (st.act == GemmAct::Relu) x = _mm256_max_ps(x, _mm256_setzero_ps());
        else if (st.act == GemmAct::Gelu) x = gelu_ps(x);
      }
      _mm256_maskstore_ps(cr + 8 * v, k, x);
    }
  }
}

}  // namespace marrow::detail::avx2
#endif
