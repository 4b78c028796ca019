#pragma once
// Our own fp32 GEMM: C = act(alpha·op(A)·op(B) + beta·C + bias), row-major, op
// the identity or the transpose, any leading dimensions; sgemm_batched for many
// products of one shape.
//
// The loops are BLIS's, with C read row-major: vectors run along C's rows (B's
// columns) and A's entries are broadcast. For each block of MB rows of C and KC
// steps of k, A's block is packed into MR-row panels (or read in place, see
// plan()); for each block of NB columns B's KC×NB block is packed into NR-column
// panels (sized to stay in L2); then every MR×NR tile of C runs one micro-kernel
// call, the A panel staying in L1 while the B panels stream past it.
//
// Bits: every entry of C is summed over k in the same order whatever the
// thread count, the tile it falls in or the packing: KC depends on nothing but the
// constant below, each block's sum starts from zero in registers and is added to
// C in k order, and threads only ever split C into blocks of rows or columns. So
// a product gives the same bits on 1 and 2 threads, and a piece of a product the
// same bits as the whole (tests/unit_gemm.cpp checks both).
#include <Eigen/Core>
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "config.hpp"
#include "sgemm_avx2.hpp"
#include "sgemm_avx512.hpp"
#include "sgemm_tile.hpp"

namespace marrow::detail {

enum class Trans : std::uint8_t { N, T };

// How one product is cut: k in blocks of kc, C's rows in blocks of mb (A's packed
// block), C's columns in blocks of nb (B's packed block); and whether A and B are
// packed or read in place (B only untransposed, A always packed at a ragged edge).
struct SgemmPlan {
  index_t kc, mb, nb;
  bool pack_a, pack_b;
};

#ifdef MARROW_SGEMM_X86
// 12×32 tile: 24 of the 32 zmm hold C, 2 hold B's row, 1 the broadcast of A.
// Measured against 6×64, 8×48 and 14×32 in bench/sgemm_bench.cpp (see plan()).
struct Avx512Arch {
  static constexpr int MR = 12, NV = 2, NR = 32;
  static constexpr const char* name = "avx512";
  template <bool AK, bool BMask>
  static void tile(index_t kc, const float* a, index_t lda, const float* b, index_t ldb, float* c, index_t ldc, int m, int n,
                   const TileStore& st) {
    avx512::tile<MR, NV, AK, BMask>(kc, a, lda, b, ldb, c, ldc, m, n, st);
  }
  static bool supported() { return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                                   __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq"); }
};

// 6×16: 12 of the 16 ymm hold C, 2 hold B's row, 1 the broadcast of A.
struct Avx2Arch {
  static constexpr int MR = 6, NV = 2, NR = 16;
  static constexpr const char* name = "avx2";
  template <bool AK, bool BMask>
  static void tile(index_t kc, const float* a, index_t lda, const float* b, index_t ldb, float* c, index_t ldc, int m, int n,
                   const TileStore& st) {
    avx2::tile<MR, NV, AK, BMask>(kc, a, lda, b, ldb, c, ldc, m, n, st);
  }
  static bool supported() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
};
#endif

// Blocking, measured on the project's AMD EPYC (Zen 5: 48 KB L1d, 1 MB L2 per
// core) with one thread, CPU time of the thread (the machine was shared), GFLOP/s
// of the 12×32 tile with A read in place, at 1024³ / 2048³:
//   KC 192: 186 / 171;  KC 256: 189 / 182;  KC 384: 179 / 176 (and 194-206 vs
//   198-211 on the GPT's products): KC 256 keeps a B panel (256·32·4 = 32 KB) and
//   the A rows (12 KB) in L1 together; KC 384's 48 KB B panel evicts A.
//   NB 256 / 512 / 1024 (the packed B block, KC·NB·4 bytes in L2): 176 / 186 / 179
//   at 1024³; MB (rows per B packing) 384 vs 1536: 173 vs 186.
// Prefetching C's tile before the k loop took 1024³ from 149 to 179.
inline constexpr index_t kSgemmKC = 256;

// The k-block for depth k: k cut into equal blocks of at most kSgemmKC (multiples
// of 8), so 384 runs as 2 × 192, not 256 + a 128 that pays a whole pass over C.
// It fixes the summation order, so it depends on k alone, never on the thread
// count or on which piece of C is being computed.
inline index_t sgemm_kc(index_t k) {
  if (k <= 0) return kSgemmKC;
  const index_t blocks = (k + kSgemmKC - 1) / kSgemmKC;
  return std::max<index_t>(8, ((k + blocks - 1) / blocks + 7) / 8 * 8);
}

template <class Arch>
SgemmPlan sgemm_plan(Trans ta, Trans tb, index_t m, index_t n, index_t k) {
  SgemmPlan p{sgemm_kc(k), 1536, 512, false, true};
  // A is read in place: packing it (a transpose for A untransposed) cost more than
  // it saved on every shape measured (the GPT's products: 163-196 GFLOP/s packed,
  // 181-206 in place; 2048³: 143 vs 158).
  // B read in place when only a few tiles of rows pass over each B panel: packing
  // then costs as much as the product.
  p.pack_b = tb == Trans::T || m > 4 * Arch::MR;
  return p;
}

// Per-thread packing buffers, kept between calls (a training step's products would
// otherwise allocate on every call).
struct SgemmBuffer {
  float* data = nullptr;
  std::size_t size = 0;
  ~SgemmBuffer() { std::free(data); }
  float* get(std::size_t n) {
    if (n > size) {
      std::free(data);
      size = (n + 1023) & ~std::size_t(1023);
      data = static_cast<float*>(std::aligned_alloc(64, size * sizeof(float)));
      if (!data) throw std::bad_alloc();
    }
    return data;
  }
};
struct SgemmWorkspace {
  SgemmBuffer a, b, edge;
};
inline SgemmWorkspace& sgemm_workspace() {
  thread_local SgemmWorkspace ws;
  return ws;
}

// A's rows [i0, i0+mb) × k [p0, p0+kc) as MR-row panels, panel-major, each k-major:
// out[panel·MR·kc + k·MR + r]; rows past m are zero.
template <int MR>
void sgemm_pack_a(Trans ta, const float* a, index_t lda, index_t mb, index_t kc, float* out) {
  for (index_t i = 0; i < mb; i += MR, out += MR * kc) {
    const int mr = int(std::min<index_t>(MR, mb - i));
    if (ta == Trans::T) {
      for (index_t p = 0; p < kc; ++p) {
        const float* src = a + p * lda + i;
        float* dst = out + p * MR;
        for (int r = 0; r < mr; ++r) dst[r] = src[r];
        for (int r = mr; r < MR; ++r) dst[r] = 0.0f;
      }
    } else {
      for (int r = 0; r < mr; ++r) {
        const float* src = a + (i + r) * lda;
        for (index_t p = 0; p < kc; ++p) out[p * MR + r] = src[p];
      }
      for (int r = mr; r < MR; ++r)
        for (index_t p = 0; p < kc; ++p) out[p * MR + r] = 0.0f;
    }
  }
}

// B's k [p0, p0+kc) × columns [j0, j0+nb) as NR-column panels, each k-major:
// out[panel·NR·kc + k·NR + j]; columns past n are zero.
template <int NR>
void sgemm_pack_b(Trans tb, const float* b, index_t ldb, index_t kc, index_t nb, float* out) {
  for (index_t j = 0; j < nb; j += NR, out += NR * kc) {
    const int nr = int(std::min<index_t>(NR, nb - j));
    if (tb == Trans::N) {
      for (index_t p = 0; p < kc; ++p) {
        const float* src = b + p * ldb + j;
        float* dst = out + p * NR;
        for (int c = 0; c < nr; ++c) dst[c] = src[c];
        for (int c = nr; c < NR; ++c) dst[c] = 0.0f;
      }
    } else {
      for (int c = 0; c < nr; ++c) {
        const float* src = b + (j + c) * ldb;
        for (index_t p = 0; p < kc; ++p) out[p * NR + c] = src[p];
      }
      for (int c = nr; c < NR; ++c)
        for (index_t p = 0; p < kc; ++p) out[p * NR + c] = 0.0f;
    }
  }
}

// C = act(beta·C + bias) for a product with nothing to sum (k = 0).
inline void sgemm_scale_only(index_t m, index_t n, float beta, float* c, index_t ldc, const GemmEpilogue& ep) {
  for (index_t i = 0; i < m; ++i)
    for (index_t j = 0; j < n; ++j) {
      float x = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
      if (ep.bias_kind == GemmBias::PerCol) x += ep.bias[j];
      else if (ep.bias_kind == GemmBias::PerRow) x += ep.bias[i];
      if (ep.act == GemmAct::Relu) x = std::max(x, 0.0f);
      else if (ep.act == GemmAct::Gelu) x = gelu_tanh_ref(x);
      c[i * ldc + j] = x;
    }
}

// The whole product on the calling thread.
template <class Arch>
void sgemm_serial(const SgemmPlan& pl, Trans ta, Trans tb, index_t m, index_t n, index_t k, float alpha, const float* a,
                  index_t lda, const float* b, index_t ldb, float beta, float* c, index_t ldc, const GemmEpilogue& ep) {
  constexpr int MR = Arch::MR, NR = Arch::NR;
  if (m <= 0 || n <= 0) return;
  if (k <= 0) return sgemm_scale_only(m, n, beta, c, ldc, ep);
  SgemmWorkspace& ws = sgemm_workspace();
  const bool pack_b = pl.pack_b || tb == Trans::T;
  const index_t mb_max = std::min(pl.mb, m), nb_max = std::min(pl.nb, n), kc_max = std::min(pl.kc, k);
  float* abuf = pl.pack_a ? ws.a.get(std::size_t((mb_max + MR - 1) / MR * MR * kc_max)) : nullptr;
  float* bbuf = pack_b ? ws.b.get(std::size_t((nb_max + NR - 1) / NR * NR * kc_max)) : nullptr;
  float* ebuf = ws.edge.get(std::size_t(MR * kc_max));
  for (index_t i0 = 0; i0 < m; i0 += pl.mb) {
    const index_t mb = std::min(pl.mb, m - i0);
    for (index_t p0 = 0; p0 < k; p0 += pl.kc) {
      const index_t kc = std::min(pl.kc, k - p0);
      const float* ablk = ta == Trans::N ? a + i0 * lda + p0 : a + p0 * lda + i0;  // A(i0, p0)
      if (pl.pack_a) sgemm_pack_a<MR>(ta, ablk, lda, mb, kc, abuf);
      TileStore st{alpha, beta, p0 == 0, p0 + kc == k, nullptr, ep.bias_kind, ep.act};
      for (index_t j0 = 0; j0 < n; j0 += pl.nb) {
        const index_t nb = std::min(pl.nb, n - j0);
        const float* bblk = tb == Trans::N ? b + p0 * ldb + j0 : b + j0 * ldb + p0;  // B(p0, j0)
        if (pack_b) sgemm_pack_b<NR>(tb, bblk, ldb, kc, nb, bbuf);
        for (index_t ir = 0; ir < mb; ir += MR) {
          const int mr = int(std::min<index_t>(MR, mb - ir));
          const float* ap;
          index_t alda;
          bool ak = true;
          if (pl.pack_a) {
            ap = abuf + ir * kc;
            alda = MR;
          } else if (mr < MR) {
            sgemm_pack_a<MR>(ta, ta == Trans::N ? ablk + ir * lda : ablk + ir, lda, mr, kc, ebuf);
            ap = ebuf;
            alda = MR;
          } else if (ta == Trans::T) {
            ap = ablk + ir;
            alda = lda;
          } else {
            ap = ablk + ir * lda;
            alda = lda;
            ak = false;
          }
          float* crow = c + (i0 + ir) * ldc + j0;
          for (index_t jr = 0; jr < nb; jr += NR) {
            const int nr = int(std::min<index_t>(NR, nb - jr));
            if (ep.bias_kind == GemmBias::PerCol) st.bias = ep.bias + j0 + jr;
            else if (ep.bias_kind == GemmBias::PerRow) st.bias = ep.bias + i0 + ir;
            if (pack_b) {
              const float* bp = bbuf + jr * kc;
              if (ak) Arch::template tile<true, false>(kc, ap, alda, bp, NR, crow + jr, ldc, mr, nr, st);
              else Arch::template tile<false, false>(kc, ap, alda, bp, NR, crow + jr, ldc, mr, nr, st);
            } else {
              const float* bp = bblk + jr;
              if (nr < NR) {
                if (ak) Arch::template tile<true, true>(kc, ap, alda, bp, ldb, crow + jr, ldc, mr, nr, st);
                else Arch::template tile<false, true>(kc, ap, alda, bp, ldb, crow + jr, ldc, mr, nr, st);
              } else {
                if (ak) Arch::template tile<true, false>(kc, ap, alda, bp, ldb, crow + jr, ldc, mr, nr, st);
                else Arch::template tile<false, false>(kc, ap, alda, bp, ldb, crow + jr, ldc, mr, nr, st);
              }
            }
          }
        }
      }
    }
  }
}

// Multiply-adds from which a product made at the top level is split over the team:
// kernel_config().gemm_parallel_min, the same crossover as Eigen's products had.
// `sgemm_bench --threads` on the idle machine, µs on 1 thread vs 2: 64³ (262k)
// 3.3 vs 4.0, 80³ (512k) 7.1 vs 6.6, the colorizer's 64×64×128 (524k) 6.2 vs 6.2,
// 128³ 22 vs 16, the GPT's linear products 1.6-1.9x. Below ~0.5M a second thread
// loses (its wake-up costs ~2.5 µs).
inline double sgemm_parallel_min() { return kernel_config().gemm_parallel_min; }

// How many threads a product may use: the team's, outside every parallel region.
inline int sgemm_team() {
#ifdef _OPENMP
  return omp_get_level() > 0 ? 1 : omp_get_max_threads();
#else
  return 1;
#endif
}

// Cuts C into `threads` pieces of whole MR-row or NR-column blocks (threads 0: the
// team's threads at the top level, above sgemm_parallel_min() multiply-adds) and runs
// part(m, n, a, b, c, ep) for each piece on its own thread, the operands, C and
// the bias offset to the piece. Every GEMM of ours (fp32 and bf16) splits so.
template <int MR, int NR, class Part>
void sgemm_split(Trans ta, Trans tb, index_t m, index_t n, index_t k, const float* a, index_t lda, const float* b,
                 index_t ldb, float* c, index_t ldc, const GemmEpilogue& ep, int threads, const Part& part) {
  if (threads <= 0)
    threads = double(m) * double(n) * double(k) >= sgemm_parallel_min() ? sgemm_team() : 1;
  // Rows when every thread gets a few panels of them, else the longer side.
  const bool by_rows = m / MR >= 2 * threads || m / MR >= n / NR;
  const index_t blocks = by_rows ? (m + MR - 1) / MR : (n + NR - 1) / NR;
  threads = int(std::min<index_t>(threads, blocks));
  if (threads <= 1) return part(m, n, a, b, c, ep);
#pragma omp parallel num_threads(threads)
  {
    int nt = 1, t = 0;
#ifdef _OPENMP
    nt = omp_get_num_threads();
    t = omp_get_thread_num();
#endif
    const index_t b0 = t * blocks / nt, b1 = (t + 1) * blocks / nt;
    GemmEpilogue pe = ep;
    if (by_rows) {
      const index_t r0 = b0 * MR, r1 = std::min(m, b1 * MR);
      if (ep.bias_kind == GemmBias::PerRow) pe.bias = ep.bias + r0;
      const float* pa = ta == Trans::N ? a + r0 * lda : a + r0;
      if (r1 > r0) part(r1 - r0, n, pa, b, c + r0 * ldc, pe);
    } else {
      const index_t c0 = b0 * NR, c1 = std::min(n, b1 * NR);
      if (ep.bias_kind == GemmBias::PerCol) pe.bias = ep.bias + c0;
      const float* pb = tb == Trans::N ? b + c0 : b + c0 * ldb;
      if (c1 > c0) part(m, c1 - c0, a, pb, c + c0, pe);
    }
  }
}

// threads: 0 lets the product decide (the team's threads at the top level, above
// sgemm_parallel_min() multiply-adds); otherwise the number of pieces to cut C into.
template <class Arch>
void sgemm_with(Trans ta, Trans tb, index_t m, index_t n, index_t k, float alpha, const float* a, index_t lda,
                const float* b, index_t ldb, float beta, float* c, index_t ldc, const GemmEpilogue& ep = {},
                int threads = 0) {
  sgemm_split<Arch::MR, Arch::NR>(
      ta, tb, m, n, k, a, lda, b, ldb, c, ldc, ep, threads,
      [&](index_t pm, index_t pn, const float* pa, const float* pb, float* pc, const GemmEpilogue& pe) {
        sgemm_serial<Arch>(sgemm_plan<Arch>(ta, tb, pm, pn, k), ta, tb, pm, pn, k, alpha, pa, lda, pb, ldb, beta, pc,
                           ldc, pe);
      });
}

// Many products of one shape, operand i at a + i·stride_a (b, c likewise). Each
// product runs whole on one thread, so the bits do not depend on the thread count.
template <class Arch>
void sgemm_batched_with(Trans ta, Trans tb, index_t m, index_t n, index_t k, float alpha, const float* a, index_t lda,
                        index_t stride_a, const float* b, index_t ldb, index_t stride_b, float beta, float* c,
                        index_t ldc, index_t stride_c, index_t count, const GemmEpilogue& ep = {}, int threads = 0) {
  if (count == 1) return sgemm_with<Arch>(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, ep, threads);
  if (threads <= 0)
    threads = double(m) * double(n) * double(k) * double(count) >= sgemm_parallel_min() ? sgemm_team() : 1;
  threads = int(std::min<index_t>(threads, count));
  const SgemmPlan pl = sgemm_plan<Arch>(ta, tb, m, n, k);
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (index_t i = 0; i < count; ++i)
    sgemm_serial<Arch>(pl, ta, tb, m, n, k, alpha, a + i * stride_a, lda, b + i * stride_b, ldb, beta, c + i * stride_c,
                       ldc, ep);
}

// Where no kernel of ours fits the target: Eigen's product on this thread, then
// the epilogue.
inline void sgemm_eigen(Trans ta, Trans tb, index_t m, index_t n, index_t k, float alpha, const float* a, index_t lda,
                        const float* b, index_t ldb, float beta, float* c, index_t ldc, const GemmEpilogue& ep = {}) {
  using Row = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Col = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
  using S = Eigen::OuterStride<>;
  Eigen::Map<Row, 0, S> cm(c, m, n, S(ldc));
  if (beta == 0.0f) cm.setZero();
  else if (beta != 1.0f) cm *= beta;
  auto run = [&](const auto& am, const auto& bm) { cm.noalias() += alpha * (am * bm); };
  if (k > 0) {
    if (ta == Trans::N && tb == Trans::N) run(Eigen::Map<const Row, 0, S>(a, m, k, S(lda)), Eigen::Map<const Row, 0, S>(b, k, n, S(ldb)));
    else if (ta == Trans::N) run(Eigen::Map<const Row, 0, S>(a, m, k, S(lda)), Eigen::Map<const Col, 0, S>(b, k, n, S(ldb)));
    else if (tb == Trans::N) run(Eigen::Map<const Col, 0, S>(a, m, k, S(lda)), Eigen::Map<const Row, 0, S>(b, k, n, S(ldb)));
    else run(Eigen::Map<const Col, 0, S>(a, m, k, S(lda)), Eigen::Map<const Col, 0, S>(b, k, n, S(ldb)));
  }
  if (ep.bias_kind != GemmBias::None || ep.act != GemmAct::None) sgemm_scale_only(m, n, 1.0f, c, ldc, ep);
}

// The kernel this build runs: AVX-512 when the compiler targets it, else AVX2+FMA,
// else Eigen.
#if defined(MARROW_SGEMM_X86) && defined(__AVX512F__) && defined(__AVX512VL__) && defined(__AVX512BW__) && \
    defined(__AVX512DQ__)
using SgemmArch = Avx512Arch;
#define MARROW_SGEMM_NATIVE 1
#elif defined(MARROW_SGEMM_X86) && defined(__AVX2__) && defined(__FMA__)
using SgemmArch = Avx2Arch;
#define MARROW_SGEMM_NATIVE 1
#endif

// C (m×n, leading dimension ldc) = act(alpha·op(A)·op(B) + beta·C + bias);
// op(A) is m×k (A stored m×k, or k×m when ta is T), op(B) k×n likewise.
inline void sgemm(Trans ta, Trans tb, index_t m, index_t n, index_t k, float alpha, const float* a, index_t lda,
                  const float* b, index_t ldb, float beta, float* c, index_t ldc, const GemmEpilogue& ep = {},
                  int threads = 0) {
#ifdef MARROW_SGEMM_NATIVE
  sgemm_with<SgemmArch>(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, ep, threads);
#else
  sgemm_eigen(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, ep);
#endif
}

inline void sgemm_batched(Trans ta, Trans tb, index_t m, index_t n, index_t k, float alpha, const float* a, index_t lda,
                          index_t stride_a, const float* b, index_t ldb, index_t stride_b, float beta, float* c,
                          index_t ldc, index_t stride_c, index_t count, const GemmEpilogue& ep = {}, int threads = 0) {
#ifdef MARROW_SGEMM_NATIVE
  sgemm_batched_with<SgemmArch>(ta, tb, m, n, k, alpha, a, lda, stride_a, b, ldb, stride_b, beta, c, ldc, stride_c,
                                count, ep, threads);
#else
  for (index_t i = 0; i < count; ++i)
    sgemm_eigen(ta, tb, m, n, k, alpha, a + i * stride_a, lda, b + i * stride_b, ldb, beta, c + i * stride_c, ldc, ep);
#endif
}

}  // namespace marrow::detail
