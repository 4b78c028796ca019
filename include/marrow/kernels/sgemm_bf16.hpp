#pragma once
// fp32 in, fp32 out, bf16 products: sgemm_bf16 / sgemm_bf16_batched have sgemm's
// signatures and meaning, C = act(alpha·op(A)·op(B) + beta·C + bias), but round
// A's and B's entries to bf16 (to nearest, ties to even; NaN stays NaN) as they
// are packed and multiply them with VDPBF16PS (_mm512_dpbf16_ps), which adds two
// products of bf16 pairs into each fp32 lane. A bf16 product is exact in fp32,
// so the only new error is the operands' rounding: 2⁻⁹ relative per entry, up to
// ~2⁻⁸·Σ|a·b| on each entry of C. Twice fp32's FMA rate (845 GFLOP/s on the
// project's 2 Zen 5 cores against 420).
//
// Needs AVX512-BF16 in the CPU (bf16_gemm_supported()); where it is missing
// sgemm_bf16 throws rather than quietly computing something else. The kernel is
// compiled with function target attributes, so this header builds under any
// -march.
//
// Loops as sgemm.hpp's, except that both operands are always packed (they change
// type): for each block of MB rows of C and KC steps of k, A's block is packed
// into MR-row panels of k-pairs (panel[q·MR + r] = A(r, 2q), A(r, 2q+1) as two
// bf16 in one 32-bit word, broadcast whole); for each block of NB columns B's
// KC×NB block into NR-column panels of k-pairs (panel[q·NR + j] = B(2q, j),
// B(2q+1, j)), so one VDPBF16PS of a broadcast A pair against a B vector is two
// steps of k for 16 columns. An odd k pads its last pair with zeros (in both).
//
// Bits: as sgemm's. KC depends on k alone (and is even, so the pairs are the same
// whatever piece of C is computed), each k-block is summed from zero in registers
// and added to C in k order, and threads only split C into whole tiles; so 1 and
// 2 threads give the same bits, and a piece of C the bits of the whole.
#include <stdexcept>

#include "sgemm.hpp"

#ifdef MARROW_SGEMM_X86
#define MARROW_TARGET_AVX512BF16 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,fma,avx512bf16")))
#endif

namespace marrow::detail {

// fp32 → bf16 (its top 16 bits), exactly as VCVTNE2PS2BF16 rounds: to nearest,
// ties to even; NaN stays NaN (made quiet); inputs below 2⁻¹²⁶ (fp32 denormals)
// become zero of their sign (the instruction treats them as zero).
inline std::uint16_t bf16_bits(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return std::uint16_t((u >> 16) | 0x40u);
  if ((u & 0x7f800000u) == 0) return std::uint16_t((u >> 16) & 0x8000u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return std::uint16_t(u >> 16);
}
inline float bf16_to_float(std::uint16_t h) {
  const std::uint32_t u = std::uint32_t(h) << 16;
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}
// x rounded to the nearest bf16, as an fp32.
inline float bf16_round(float x) { return bf16_to_float(bf16_bits(x)); }

// Whether sgemm_bf16 runs here: compiled for x86 by GCC or Clang, and a CPU with
// AVX-512 (F, VL, BW, DQ) and AVX512-BF16.
inline bool bf16_gemm_supported() {
#ifdef MARROW_SGEMM_X86
  static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
                         __builtin_cpu_supports("avx512bf16");
  return ok;
#else
  return false;
#endif
}

#ifdef MARROW_SGEMM_X86
namespace avx512bf16 {

using avx512::lane_mask;

// Two rows of fp32 (16 lanes each, x0 = k even, x1 = k odd) as 16 k-pairs:
// word j = bf16(x0[j]) | bf16(x1[j]) << 16.
MARROW_TARGET_AVX512BF16 inline __m512i pair_rows(__m512 x0, __m512 x1) {
  // cvtne2ps puts x0's 16 bf16 in the low half, x1's in the high; interleave them.
  const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21,
                                       5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  return _mm512_permutexvar_epi16(idx, (__m512i)_mm512_cvtne2ps_pbh(x1, x0));
}

// r[i] = 8 float pairs (64-bit) of row i → r[q] = pair q of rows 0..7 (an 8×8
// transpose of 64-bit elements).
MARROW_TARGET_AVX512BF16 inline void transpose8(__m512d (&r)[8]) {
  __m512d t[8], s[8];
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm512_unpacklo_pd(r[2 * i], r[2 * i + 1]);      // pairs 0 2 4 6 of rows 2i, 2i+1
    t[2 * i + 1] = _mm512_unpackhi_pd(r[2 * i], r[2 * i + 1]);  // pairs 1 3 5 7
  }
#pragma GCC unroll 2
  for (int h = 0; h < 2; ++h)  // rows 4h..4h+3: s[4h + {0,1,2,3}] = pairs {0|4, 2|6, 1|5, 3|7}
#pragma GCC unroll 2
    for (int o = 0; o < 2; ++o) {
      s[4 * h + 2 * o] = _mm512_shuffle_f64x2(t[4 * h + o], t[4 * h + 2 + o], 0x88);
      s[4 * h + 2 * o + 1] = _mm512_shuffle_f64x2(t[4 * h + o], t[4 * h + 2 + o], 0xDD);
    }
  const int pair_of[4][2] = {{0, 4}, {2, 6}, {1, 5}, {3, 7}};
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    r[pair_of[i][0]] = _mm512_shuffle_f64x2(s[i], s[4 + i], 0x88);
    r[pair_of[i][1]] = _mm512_shuffle_f64x2(s[i], s[4 + i], 0xDD);
  }
}

// Packs the kc × w block whose k-step p, column j lies at src[p·ld + j] (j
// contiguous; only w ≤ W columns read) into k-pair words: out[q·W + j], the
// columns past w and an odd kc's last half-pair zero.
template <int W>
MARROW_TARGET_AVX512BF16 void pack_cols(const float* src, index_t ld, index_t kc, int w, std::uint32_t* out) {
  constexpr int V = (W + 15) / 16;
  __mmask16 mask[V];
  for (int v = 0; v < V; ++v) mask[v] = lane_mask(std::min(w, W) - 16 * v);
  const index_t kc2 = (kc + 1) / 2;
  for (index_t q = 0; q < kc2; ++q, out += W) {
    const float* r0 = src + 2 * q * ld;
    const bool has1 = 2 * q + 1 < kc;
#pragma GCC unroll 8
    for (int v = 0; v < V; ++v) {
      const __m512 x0 = _mm512_maskz_loadu_ps(mask[v], r0 + 16 * v);
      const __m512 x1 = has1 ? _mm512_maskz_loadu_ps(mask[v], r0 + ld + 16 * v) : _mm512_setzero_ps();
      const __m512i p = pair_rows(x0, x1);
      if (16 * (v + 1) <= W) _mm512_storeu_si512(out + 16 * v, p);
      else _mm512_mask_storeu_epi32(out + 16 * v, lane_mask(W - 16 * v), p);
    }
  }
}

// Packs the kc × w block whose k-step p, column j lies at src[j·ld + p] (k
// contiguous) likewise: 16 columns × 8 pairs at a time, the float pairs transposed
// in registers (two 8×8 transposes of 64-bit elements), then converted, each
// pair's 16 columns by one VCVTNE2PS2BF16, whose output is already the words.
template <int W>
MARROW_TARGET_AVX512BF16 void pack_rows(const float* src, index_t ld, index_t kc, int w, std::uint32_t* out) {
  const index_t kc2 = (kc + 1) / 2;
  for (int j = 0; j < W; j += 16) {
    const int jw = std::min(16, W - j);
    for (index_t q0 = 0; q0 < kc2; q0 += 8) {
      const __mmask16 km = lane_mask(int(std::min<index_t>(16, kc - 2 * q0)));  // an odd kc's pad reads as 0
      __m512d lo[8], hi[8];
#pragma GCC unroll 8
      for (int i = 0; i < 8; ++i) {
        lo[i] = j + i < w ? _mm512_castps_pd(_mm512_maskz_loadu_ps(km, src + (j + i) * ld + 2 * q0)) : _mm512_setzero_pd();
        hi[i] = j + 8 + i < w ? _mm512_castps_pd(_mm512_maskz_loadu_ps(km, src + (j + 8 + i) * ld + 2 * q0))
                              : _mm512_setzero_pd();
      }
      transpose8(lo);
      transpose8(hi);
      const int nq = int(std::min<index_t>(8, kc2 - q0));
#pragma GCC unroll 8
      for (int q = 0; q < 8; ++q) {
        if (q >= nq) break;
        const __m512i p = (__m512i)_mm512_cvtne2ps_pbh(_mm512_castpd_ps(hi[q]), _mm512_castpd_ps(lo[q]));
        if (jw == 16) _mm512_storeu_si512(out + (q0 + q) * W + j, p);
        else _mm512_mask_storeu_epi32(out + (q0 + q) * W + j, lane_mask(jw), p);
      }
    }
  }
}

// An MR × 16·NV tile of C over kc2 k-pairs: a = the A panel (MR words per pair),
// b = the B panel (16·NV words per pair); rows [0, m) and columns [0, n) stored
// through the epilogue (avx512::store_tile, the fp32 kernel's).
template <int MR, int NV>
MARROW_TARGET_AVX512BF16 void tile(index_t kc2, const std::uint32_t* __restrict a, const std::uint32_t* __restrict b,
                                   float* __restrict c, index_t ldc, int m, int n, const TileStore& st) {
  __m512 acc[MR][NV];
#pragma GCC unroll 32
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();
  __mmask16 mask[NV];
#pragma GCC unroll 8
  for (int v = 0; v < NV; ++v) mask[v] = lane_mask(n - 16 * v);
  avx512::prefetch_tile<MR, NV>(c, ldc, st);

  for (index_t q = 0; q < kc2; ++q) {
    __m512bh bv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) bv[v] = (__m512bh)_mm512_loadu_si512(b + 16 * v);
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r) {
      const __m512bh av = (__m512bh)_mm512_set1_epi32(int(a[r]));
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], av, bv[v]);
    }
    a += MR;
    b += 16 * NV;
  }

  avx512::store_tile<MR, NV>(acc, mask, c, ldc, m, st);
}

}  // namespace avx512bf16

// The register tile and blocking. MR × 16·NV accumulators (MR·NV of the 32 zmm),
// KC k-steps per block (even), NB columns per packed B block, MB rows per packed
// A block. The figures are above SgemmBf16Arch.
template <int MR_, int NV_, index_t KC_, index_t MB_, index_t NB_>
struct Bf16Arch {
  static constexpr int MR = MR_, NV = NV_, NR = 16 * NV_;
  static constexpr index_t KC = KC_, MB = MB_, NB = NB_;
};
#endif

// The k-block for depth k: as sgemm_kc, k cut into equal blocks of at most KC
// (multiples of 8, so every block but the last holds whole pairs); it fixes the
// summation order, so it depends on k alone.
inline index_t sgemm_bf16_kc(index_t k, index_t kc_max) {
  if (k <= 0) return kc_max;
  const index_t blocks = (k + kc_max - 1) / kc_max;
  return std::max<index_t>(8, ((k + blocks - 1) / blocks + 7) / 8 * 8);
}

#ifdef MARROW_SGEMM_X86
// Per-thread packing buffers (bf16 pairs), kept between calls.
struct SgemmBf16Workspace {
  SgemmBuffer a, b;
};
inline SgemmBf16Workspace& sgemm_bf16_workspace() {
  thread_local SgemmBf16Workspace ws;
  return ws;
}

// The whole product on the calling thread.
template <class Arch>
void sgemm_bf16_serial(Trans ta, Trans tb, index_t m, index_t n, index_t k, float alpha, const float* a, index_t lda,
                       const float* b, index_t ldb, float beta, float* c, index_t ldc, const GemmEpilogue& ep) {
  constexpr int MR = Arch::MR, NR = Arch::NR;
  if (m <= 0 || n <= 0) return;
  if (k <= 0) return sgemm_scale_only(m, n, beta, c, ldc, ep);
  const index_t kc_blk = sgemm_bf16_kc(k, Arch::KC);
  const index_t mb_max = std::min(Arch::MB, m), nb_max = std::min(Arch::NB, n), kc2_max = (std::min(kc_blk, k) + 1) / 2;
  SgemmBf16Workspace& ws = sgemm_bf16_workspace();
  static_assert(sizeof(float) == sizeof(std::uint32_t));
  auto* abuf = reinterpret_cast<std::uint32_t*>(ws.a.get(std::size_t((mb_max + MR - 1) / MR * MR * kc2_max)));
  auto* bbuf = reinterpret_cast<std::uint32_t*>(ws.b.get(std::size_t((nb_max + NR - 1) / NR * NR * kc2_max)));
  for (index_t i0 = 0; i0 < m; i0 += Arch::MB) {
    const index_t mb = std::min(Arch::MB, m - i0);
    for (index_t p0 = 0; p0 < k; p0 += kc_blk) {
      const index_t kc = std::min(kc_blk, k - p0), kc2 = (kc + 1) / 2;
      // A's block as MR-row panels of pairs; rows past m zero.
      for (index_t ir = 0; ir < mb; ir += MR) {
        const int mr = int(std::min<index_t>(MR, mb - ir));
        std::uint32_t* ap = abuf + ir * kc2;
        if (ta == Trans::N) avx512bf16::pack_rows<MR>(a + (i0 + ir) * lda + p0, lda, kc, mr, ap);
        else avx512bf16::pack_cols<MR>(a + p0 * lda + i0 + ir, lda, kc, mr, ap);
      }
      TileStore st{alpha, beta, p0 == 0, p0 + kc == k, nullptr, ep.bias_kind, ep.act};
      for (index_t j0 = 0; j0 < n; j0 += Arch::NB) {
        const index_t nb = std::min(Arch::NB, n - j0);
        // B's block as NR-column panels of pairs; columns past n zero.
        for (index_t jr = 0; jr < nb; jr += NR) {
          const int nr = int(std::min<index_t>(NR, nb - jr));
          std::uint32_t* bp = bbuf + jr * kc2;
          if (tb == Trans::N) avx512bf16::pack_cols<NR>(b + p0 * ldb + j0 + jr, ldb, kc, nr, bp);
          else avx512bf16::pack_rows<NR>(b + (j0 + jr) * ldb + p0, ldb, kc, nr, bp);
        }
        for (index_t ir = 0; ir < mb; ir += MR) {
          const int mr = int(std::min<index_t>(MR, mb - ir));
          float* crow = c + (i0 + ir) * ldc + j0;
          for (index_t jr = 0; jr < nb; jr += NR) {
            const int nr = int(std::min<index_t>(NR, nb - jr));
            if (ep.bias_kind == GemmBias::PerCol) st.bias = ep.bias + j0 + jr;
            else if (ep.bias_kind == GemmBias::PerRow) st.bias = ep.bias + i0 + ir;
            avx512bf16::tile<MR, Arch::NV>(kc2, abuf + ir * kc2, bbuf + jr * kc2, crow + jr, ldc, mr, nr, st);
          }
        }
      }
    }
  }
}

// The tiles, measured with one thread (thread CPU time, the machine shared) in
// GFLOP/s, against our fp32 sgemm on the same shapes (fp32 / 12×32 / 8×48 / 6×64 /
// 14×32 / 8×32):
//   1024³             172 / 300 / 315 / 321 / 299 / 306
//   2048³             172 / 295 / 308 / 318 / 284 / 294
//   GPT NT 768·384·128 187 / 343 / 348 / 343 / 338 / 356
//   GPT NN 768·128·384 190 / 323 / 277 / 301 / 313 / 316
//   GPT TN 512·128·768 193 / 291 / 240 / 249 / 286 / 259
//   attn NT 64·64·32 ×48 104 / 158 / 134 / 166 / 160 / 178
//   attn NN 64·32·64 ×48 133 / 159 / 132 / 103 / 162 / 167
// 12×32 (24 accumulators, 2 B vectors, 1 broadcast) is the best or near it on all
// but the small products, whose 64 rows fill 8-row tiles exactly where 12-row ones
// carry 8 rows of padding: those run 8×32. The tile never changes an entry's
// summation order (each lane sums its own pairs in k order), so the choice has no
// effect on the bits. KC 512 against 256: the same within noise (a B panel is
// 512·32·2 = 32 KB of bf16, fp32's 256-step panel); 512 passes over C half as often.
// MB 384 against 1536: the same within noise.
using SgemmBf16Arch = Bf16Arch<12, 2, 512, 384, 512>;
using SgemmBf16SmallArch = Bf16Arch<8, 2, 512, 384, 512>;

// 8-row tiles where they pad fewer rows of a short product than 12-row ones.
inline bool sgemm_bf16_small(index_t m) { return m <= 128 && (m + 7) / 8 * 8 < (m + 11) / 12 * 12; }

template <class Arch>
void sgemm_bf16_with(Trans ta, Trans tb, index_t m, index_t n, index_t k, float alpha, const float* a, index_t lda,
                     const float* b, index_t ldb, float beta, float* c, index_t ldc, const GemmEpilogue& ep = {},
                     int threads = 0) {
  sgemm_split<Arch::MR, Arch::NR>(
      ta, tb, m, n, k, a, lda, b, ldb, c, ldc, ep, threads,
      [&](index_t pm, index_t pn, const float* pa, const float* pb, float* pc, const GemmEpilogue& pe) {
        sgemm_bf16_serial<Arch>(ta, tb, pm, pn, k, alpha, pa, lda, pb, ldb, beta, pc, ldc, pe);
      });
}

template <class Arch>
void sgemm_bf16_batched_with(Trans ta, Trans tb, index_t m, index_t n, index_t k, float alpha, const float* a,
                             index_t lda, index_t stride_a, const float* b, index_t ldb, index_t stride_b, float beta,
                             float* c, index_t ldc, index_t stride_c, index_t count, const GemmEpilogue& ep = {},
                             int threads = 0) {
  if (count == 1) return sgemm_bf16_with<Arch>(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, ep, threads);
  if (threads <= 0)
    threads = double(m) * double(n) * double(k) * double(count) >= sgemm_parallel_min() ? sgemm_team() : 1;
  threads = int(std::min<index_t>(threads, count));
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (index_t i = 0; i < count; ++i)
    sgemm_bf16_serial<Arch>(ta, tb, m, n, k, alpha, a + i * stride_a, lda, b + i * stride_b, ldb, beta,
                            c + i * stride_c, ldc, ep);
}
#endif

[[noreturn]] inline void sgemm_bf16_unsupported() {
  throw std::runtime_error("bf16 needs a CPU with AVX512-BF16 (VDPBF16PS); this one has none");
}

// sgemm (sgemm.hpp) with A's and B's entries rounded to bf16 as they are packed and
// multiplied by VDPBF16PS, summed in fp32. Throws std::runtime_error where
// bf16_gemm_supported() is false.
inline void sgemm_bf16(Trans ta, Trans tb, index_t m, index_t n, index_t k, float alpha, const float* a, index_t lda,
                       const float* b, index_t ldb, float beta, float* c, index_t ldc, const GemmEpilogue& ep = {},
                       int threads = 0) {
  if (!bf16_gemm_supported()) sgemm_bf16_unsupported();
#ifdef MARROW_SGEMM_X86
  if (sgemm_bf16_small(m))
    sgemm_bf16_with<SgemmBf16SmallArch>(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, ep, threads);
  else sgemm_bf16_with<SgemmBf16Arch>(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, ep, threads);
#endif
}

// sgemm_batched likewise: product i at a + i·stride_a (b, c likewise), each whole
// on one thread.
inline void sgemm_bf16_batched(Trans ta, Trans tb, index_t m, index_t n, index_t k, float alpha, const float* a,
                               index_t lda, index_t stride_a, const float* b, index_t ldb, index_t stride_b, float beta,
                               float* c, index_t ldc, index_t stride_c, index_t count, const GemmEpilogue& ep = {},
                               int threads = 0) {
  if (!bf16_gemm_supported()) sgemm_bf16_unsupported();
#ifdef MARROW_SGEMM_X86
  if (sgemm_bf16_small(m))
    sgemm_bf16_batched_with<SgemmBf16SmallArch>(ta, tb, m, n, k, alpha, a, lda, stride_a, b, ldb, stride_b, beta, c, ldc,
                                                stride_c, count, ep, threads);
  else sgemm_bf16_batched_with<SgemmBf16Arch>(ta, tb, m, n, k, alpha, a, lda, stride_a, b, ldb, stride_b, beta, c, ldc,
                                              stride_c, count, ep, threads);
#endif
}

}  // namespace marrow::detail
