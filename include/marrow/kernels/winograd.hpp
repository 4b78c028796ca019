#pragma once
// Winograd F(4x4, 3x3) kernels for 3x3 stride-1 undilated convolutions, the
// layers U-Net-like models spend most of their time in. conv2d (ops/conv.hpp)
// dispatches here; this header holds kernels only, no ops.
//
// Why: on the machines we target, the im2col GEMM already runs near Eigen's
// peak, so the only way to go faster is to do fewer multiplies. F(4x4, 3x3)
// computes a 4x4 output tile from a 6x6 input tile with 36 products per channel
// pair instead of 144 (Lavin & Gray, "Fast Algorithms for Convolutional Neural
// Networks", 2016):
//   Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A        U = G g Gᵀ,  V = Bᵀ d B,  M = U ⊙ V
// Summed over input channels, the ⊙ becomes one GEMM per transform coordinate ξ
// (36 of them): M_ξ (O, tiles) = U_ξ (O, C) · V_ξ (C, tiles).
//
// Backward is the exact adjoint of that forward, so gradients are those of the
// function actually computed (gradcheck in double passes at 1e-6):
//   M̄ = A dY Aᵀ (per output tile, zero outside the output)
//   dU_ξ += M̄_ξ · V_ξᵀ,    dW = Gᵀ dU G
//   V̄_ξ = U_ξᵀ · M̄_ξ,     dx += overlap-add of B V̄ Bᵀ (6x6 patches, stride 4)
// One pass over dY feeds both products, and V̄_ξ overwrites V_ξ once dU_ξ used it.
//
// Tiles are processed one tile row at a time with the row's tiles as the vector
// lane: an image row is split into its 4 column phases (x[4j+q] -> ph[q][j]), so
// every transform is a handful of contiguous axpy-like loops. Tile rows are
// grouped into blocks whose V and M fit in L2; blocks are independent work items
// when there are enough of them for every thread, otherwise all threads share
// each block (transforms split by channel, GEMMs by ξ).
//
// Float accuracy: the transforms amplify rounding ~10x over im2col's GEMM
// (measured: max error 2e-6 to 1.2e-5 of the largest entry of y, dx and dW on random
// data, against 2e-7 to 8e-7); the tests hold it to 1e-5 at their shapes.
//
// Shape letters: N batch, C input channels, O output channels, (H, W) input and
// (Ho, Wo) = (H + 2·pad − 2, W + 2·pad − 2) output size; th x tw tiles per image.
#include <Eigen/Core>
#include <algorithm>
#include <vector>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "../shape.hpp"
#include "config.hpp"
#include "gemm.hpp"

namespace marrow::detail {

// Whether conv2d runs a kernel (kh, kw) with this stride and dilation over C input
// channels here (see KernelConfig::winograd) rather than through im2col.
inline bool use_winograd(index_t kh, index_t kw, int stride, int dilation, index_t C) {
  const WinogradMode mode = kernel_config().winograd;
  if (mode == WinogradMode::Off || kh != 3 || kw != 3 || stride != 1 || dilation != 1) return false;
  return mode == WinogradMode::On || C >= 3;
}

struct WinoGeom {
  index_t N, C, O, H, W, pad;
  index_t Ho() const { return H + 2 * pad - 2; }
  index_t Wo() const { return W + 2 * pad - 2; }
  index_t th() const { return (Ho() + 3) / 4; }
  index_t tw() const { return (Wo() + 3) / 4; }
};

// Scratch per thread and slot that only grows: steady-state training allocates nothing.
template <class T> T* wino_scratch(int slot, std::size_t n) {
  thread_local std::vector<T> buf[5];
  if (buf[slot].size() < n) buf[slot].resize(n);
  return buf[slot].data();
}
inline index_t wino_row_scratch(index_t tw) { return 56 * (tw + 1); }

// ---- the four 1-D transforms, each over n lanes (tiles) --------------------------
// o_k = Σ_i Bᵀ[k][i]·d_i
template <class T> inline void wino_bt(const T* const* d, T* const* o, index_t n) {
  const T *d0 = d[0], *d1 = d[1], *d2 = d[2], *d3 = d[3], *d4 = d[4], *d5 = d[5];
  T *o0 = o[0], *o1 = o[1], *o2 = o[2], *o3 = o[3], *o4 = o[4], *o5 = o[5];
#pragma omp simd
  for (index_t j = 0; j < n; ++j) {
    const T x0 = d0[j], x1 = d1[j], x2 = d2[j], x3 = d3[j], x4 = d4[j], x5 = d5[j];
    const T a = x4 - T(4) * x2, b = x3 - T(4) * x1, c = x4 - x2, e = T(2) * (x3 - x1);
    o0[j] = T(4) * x0 - T(5) * x2 + x4;
    o1[j] = a + b;
    o2[j] = a - b;
    o3[j] = c + e;
    o4[j] = c - e;
    o5[j] = T(4) * x1 - T(5) * x3 + x5;
  }
}
// The adjoint: o_i = Σ_k Bᵀ[k][i]·d_k
template <class T> inline void wino_b(const T* const* d, T* const* o, index_t n) {
  const T *d0 = d[0], *d1 = d[1], *d2 = d[2], *d3 = d[3], *d4 = d[4], *d5 = d[5];
  T *o0 = o[0], *o1 = o[1], *o2 = o[2], *o3 = o[3], *o4 = o[4], *o5 = o[5];
#pragma omp simd
  for (index_t j = 0; j < n; ++j) {
    const T x0 = d0[j], x1 = d1[j], x2 = d2[j], x3 = d3[j], x4 = d4[j], x5 = d5[j];
    o0[j] = T(4) * x0;
    o1[j] = T(4) * (x2 - x1 + x5) + T(2) * (x4 - x3);
    o2[j] = -T(5) * x0 - T(4) * (x1 + x2) - x3 - x4;
    o3[j] = x1 - x2 + T(2) * (x3 - x4) - T(5) * x5;
    o4[j] = x0 + x1 + x2 + x3 + x4;
    o5[j] = x5;
  }
}
// o_i = Σ_a Aᵀ[i][a]·d_a (6 -> 4)
template <class T> inline void wino_at(const T* const* d, T* const* o, index_t n) {
  const T *d0 = d[0], *d1 = d[1], *d2 = d[2], *d3 = d[3], *d4 = d[4], *d5 = d[5];
  T *o0 = o[0], *o1 = o[1], *o2 = o[2], *o3 = o[3];
#pragma omp simd
  for (index_t j = 0; j < n; ++j) {
    const T s1 = d1[j] + d2[j], t1 = d1[j] - d2[j], s2 = d3[j] + d4[j], t2 = d3[j] - d4[j];
    o0[j] = d0[j] + s1 + s2;
    o1[j] = t1 + T(2) * t2;
    o2[j] = s1 + T(4) * s2;
    o3[j] = t1 + T(8) * t2 + d5[j];
  }
}
// The adjoint: o_a = Σ_i Aᵀ[i][a]·d_i (4 -> 6)
template <class T> inline void wino_a(const T* const* d, T* const* o, index_t n) {
  const T *d0 = d[0], *d1 = d[1], *d2 = d[2], *d3 = d[3];
  T *o0 = o[0], *o1 = o[1], *o2 = o[2], *o3 = o[3], *o4 = o[4], *o5 = o[5];
#pragma omp simd
  for (index_t j = 0; j < n; ++j) {
    const T e = d0[j] + d2[j], f = d1[j] + d3[j], e4 = d0[j] + T(4) * d2[j], f4 = T(2) * d1[j] + T(8) * d3[j];
    o0[j] = d0[j];
    o1[j] = e + f;
    o2[j] = e - f;
    o3[j] = e4 + f4;
    o4[j] = e4 - f4;
    o5[j] = d3[j];
  }
}

// Tiles j in [lo, hi) read all four phases x[4j + q − pad] inside a row of W:
// there one loop moves whole groups of four, which the compiler turns into
// vector loads and shuffles (a loop per phase stays scalar: strided access).
inline void wino_inner(index_t W, index_t pad, index_t L, index_t& lo, index_t& hi) {
  lo = std::min(L, (pad + 3) / 4);
  hi = std::max(lo, std::min(L, (W + pad) / 4));
}

// Column phases of image row r (zero outside the image or the row range):
// ph[q·L + j] = row[4j + q − pad] for j < L.
template <class T>
inline void wino_split_row(const T* plane, index_t H, index_t W, index_t pad, index_t r, index_t L, T* ph) {
  if (r < 0 || r >= H) {
    std::fill(ph, ph + 4 * L, T(0));
    return;
  }
  const T* row = plane + r * W;
  index_t lo, hi;
  wino_inner(W, pad, L, lo, hi);
  auto edge = [&](index_t j) {
    for (index_t q = 0; q < 4; ++q) {
      const index_t c = 4 * j + q - pad;
      ph[q * L + j] = c >= 0 && c < W ? row[c] : T(0);
    }
  };
  for (index_t j = 0; j < lo; ++j) edge(j);
  const T* s = row - pad;
  T *p0 = ph, *p1 = ph + L, *p2 = ph + 2 * L, *p3 = ph + 3 * L;
#pragma omp simd
  for (index_t j = lo; j < hi; ++j) {
    p0[j] = s[4 * j];
    p1[j] = s[4 * j + 1];
    p2[j] = s[4 * j + 2];
    p3[j] = s[4 * j + 3];
  }
  for (index_t j = hi; j < L; ++j) edge(j);
}

// ---- one tile row of one channel ----------------------------------------------------
// V_ξ[j] = (Bᵀ d_j B)[ξ] for the tw tiles of tile row ti; ξ-th output at v + ξ·sxi.
template <class T>
void wino_in_row(const T* plane, index_t H, index_t W, index_t pad, index_t ti, index_t tw, T* v, index_t sxi, T* s) {
  const index_t L = tw + 1;  // tile j reads phases j and j+1
  T* ph = s;                 // 6 rows x 4 phases x L
  T* tmp = s + 24 * L;       // 6 x 4 x L
  for (index_t i = 0; i < 6; ++i) wino_split_row(plane, H, W, pad, 4 * ti + i - pad, L, ph + i * 4 * L);
  {
    const T* d[6];
    T* o[6];
    for (int i = 0; i < 6; ++i) d[i] = ph + i * 4 * L, o[i] = tmp + i * 4 * L;
    wino_bt(d, o, 4 * L);  // down the columns: all phases at once
  }
  for (index_t a = 0; a < 6; ++a) {  // along the rows: column k of tile j is phase k%4 at j + k/4
    const T* t = tmp + a * 4 * L;
    const T* d[6] = {t, t + L, t + 2 * L, t + 3 * L, t + 1, t + L + 1};
    T* o[6];
    for (int b = 0; b < 6; ++b) o[b] = v + (a * 6 + b) * sxi;
    wino_bt(d, o, tw);
  }
}

// Output tile row: y = Aᵀ m A + bias, clipped to (Ho, Wo). m_ξ[j] at m + ξ·sxi.
template <class T>
void wino_out_row(const T* m, index_t sxi, index_t Ho, index_t Wo, index_t ti, index_t tw, T bias, T* plane, T* s) {
  T* h = s;               // 6 x 4 x tw: rows of m after the horizontal pass
  T* rows = s + 24 * tw;  // 4 x 4 x tw
  for (index_t a = 0; a < 6; ++a) {
    const T* d[6];
    for (int b = 0; b < 6; ++b) d[b] = m + (a * 6 + b) * sxi;
    T* o[4] = {h + a * 4 * tw, h + a * 4 * tw + tw, h + a * 4 * tw + 2 * tw, h + a * 4 * tw + 3 * tw};
    wino_at(d, o, tw);
  }
  {
    const T* d[6];
    for (int a = 0; a < 6; ++a) d[a] = h + a * 4 * tw;
    T* o[4] = {rows, rows + 4 * tw, rows + 8 * tw, rows + 12 * tw};
    wino_at(d, o, 4 * tw);
  }
  const index_t full = Wo / 4;
  for (index_t i = 0; i < 4 && 4 * ti + i < Ho; ++i) {
    T* dst = plane + (4 * ti + i) * Wo;
    const T* r = rows + i * 4 * tw;
    const T *r0 = r, *r1 = r + tw, *r2 = r + 2 * tw, *r3 = r + 3 * tw;
#pragma omp simd
    for (index_t j = 0; j < full; ++j) {
      dst[4 * j] = r0[j] + bias;
      dst[4 * j + 1] = r1[j] + bias;
      dst[4 * j + 2] = r2[j] + bias;
      dst[4 * j + 3] = r3[j] + bias;
    }
    for (index_t c = 4 * full; c < Wo; ++c) dst[c] = r[(c % 4) * tw + c / 4] + bias;
  }
}

// Adjoint of wino_out_row: m̄_ξ[j] = (A ȳ_j Aᵀ)[ξ], ȳ zero outside (Ho, Wo).
template <class T>
void wino_dy_row(const T* plane, index_t Ho, index_t Wo, index_t ti, index_t tw, T* m, index_t sxi, T* s) {
  T* rows = s;            // 4 x 4 x tw
  T* h = s + 16 * tw;     // 6 x 4 x tw
  for (index_t i = 0; i < 4; ++i) wino_split_row(plane, Ho, Wo, 0, 4 * ti + i, tw, rows + i * 4 * tw);
  {
    const T* d[4] = {rows, rows + 4 * tw, rows + 8 * tw, rows + 12 * tw};
    T* o[6];
    for (int a = 0; a < 6; ++a) o[a] = h + a * 4 * tw;
    wino_a(d, o, 4 * tw);
  }
  for (index_t a = 0; a < 6; ++a) {
    const T* t = h + a * 4 * tw;
    const T* d[4] = {t, t + tw, t + 2 * tw, t + 3 * tw};
    T* o[6];
    for (int b = 0; b < 6; ++b) o[b] = m + (a * 6 + b) * sxi;
    wino_a(d, o, tw);
  }
}

// Adjoint of wino_in_row: plane += overlap-add of the 6x6 patches B v̄_j Bᵀ.
template <class T>
void wino_scatter_row(const T* v, index_t sxi, index_t H, index_t W, index_t pad, index_t ti, index_t tw, T* plane, T* s) {
  const index_t L = tw + 1;
  T* acc = s;               // 6 x 4 x L: per row a, the column phases
  T* rows = s + 24 * L;     // 6 x 4 x L
  T* y = s + 48 * L;        // 6 x tw
  for (index_t a = 0; a < 6; ++a) {
    const T* d[6];
    for (int b = 0; b < 6; ++b) d[b] = v + (a * 6 + b) * sxi;
    T* o[6] = {y, y + tw, y + 2 * tw, y + 3 * tw, y + 4 * tw, y + 5 * tw};
    wino_b(d, o, tw);
    T* t = acc + a * 4 * L;
    for (index_t q = 0; q < 4; ++q) {
      std::copy_n(y + q * tw, tw, t + q * L);
      t[q * L + tw] = T(0);
    }
    for (index_t q = 0; q < 2; ++q)  // columns 4 and 5 of tile j are phases 0 and 1 of tile j + 1
#pragma omp simd
      for (index_t j = 0; j < tw; ++j) t[q * L + j + 1] += y[(4 + q) * tw + j];
  }
  {
    const T* d[6];
    T* o[6];
    for (int a = 0; a < 6; ++a) d[a] = acc + a * 4 * L, o[a] = rows + a * 4 * L;
    wino_b(d, o, 4 * L);
  }
  for (index_t i = 0; i < 6; ++i) {
    const index_t r = 4 * ti + i - pad;
    if (r < 0 || r >= H) continue;
    T* row = plane + r * W;
    const T* src = rows + i * 4 * L;
    index_t lo, hi;
    wino_inner(W, pad, L, lo, hi);
    auto edge = [&](index_t j) {
      for (index_t q = 0; q < 4; ++q) {
        const index_t c = 4 * j + q - pad;
        if (c >= 0 && c < W) row[c] += src[q * L + j];
      }
    };
    for (index_t j = 0; j < lo; ++j) edge(j);
    T* d = row - pad;
    const T *s0 = src, *s1 = src + L, *s2 = src + 2 * L, *s3 = src + 3 * L;
#pragma omp simd
    for (index_t j = lo; j < hi; ++j) {
      d[4 * j] += s0[j];
      d[4 * j + 1] += s1[j];
      d[4 * j + 2] += s2[j];
      d[4 * j + 3] += s3[j];
    }
    for (index_t j = hi; j < L; ++j) edge(j);
  }
}

// ---- small planes: every tile of a block as the lane ------------------------------
// On 8x8 and 16x16 planes a tile row holds 2 or 4 tiles, so the row kernels above
// ran each transform 2 or 4 lanes wide (a third of the colorizer's step went
// there). For planes at most KernelConfig::wino_gather_max_tw tiles wide, the tiles of all nr tile
// rows of a block (one channel) are gathered into lane-contiguous rows, one entry
// per tile, and each transform runs over all L = nr·tw tiles at once. Tile
// t = r·tw + j is tile j of the block's tile row r, the layout V and M use anyway.
// Planes of image n start at base + n·pstride; (n, ti) of block row r come from r0 + r.
inline index_t wino_gather_scratch(index_t L) { return 72 * L; }

// A 2-D transform as two passes of 1-D ones over lane rows (L lanes each): `down`
// maps every column k of the Ri x Ki input grid (rows i -> a), `along` every row a
// of that Ro x Ki result (columns k -> b). in(i, k) and out(a, b) give row pointers.
template <class T, int Ri, int Ro, int Ki, int Ko, class In, class Down, class Along, class Out>
void wino_two_pass(In in, Down down, Along along, Out out, T* mid, index_t L) {
  for (int k = 0; k < Ki; ++k) {
    const T* d[Ri];
    T* o[Ro];
    for (int i = 0; i < Ri; ++i) d[i] = in(i, k);
    for (int a = 0; a < Ro; ++a) o[a] = mid + (a * Ki + k) * L;
    down(d, o, L);
  }
  for (int a = 0; a < Ro; ++a) {
    const T* d[Ki];
    T* o[Ko];
    for (int k = 0; k < Ki; ++k) d[k] = mid + (a * Ki + k) * L;
    for (int b = 0; b < Ko; ++b) o[b] = out(a, b);
    along(d, o, L);
  }
}

// V_ξ[t] = (Bᵀ d_t B)[ξ] for the block's tiles of one channel; ξ-th output at v + ξ·sxi.
template <class T>
void wino_in_block(const T* base, index_t pstride, index_t H, index_t W, index_t pad, index_t th, index_t tw,
                   index_t r0, index_t nr, T* v, index_t sxi, T* s) {
  const index_t L = nr * tw;
  T* d = s;            // d[(6i + k)·L + t]: row i, column k of tile t's 6x6 input patch
  T* tmp = s + 36 * L;
  // The 6 image rows a tile row reads, zero-padded to the Wp = 4·tw + 2 columns its
  // tiles span (>= W + 2·pad), so the gather below needs no bounds. They sit in tmp,
  // which is free until the transforms (36·L >= 6·Wp).
  const index_t Wp = 4 * tw + 2;
  for (index_t r = 0; r < nr; ++r) {
    const index_t n = (r0 + r) / th, ti = (r0 + r) % th;
    const T* plane = base + n * pstride;
    for (index_t i = 0; i < 6; ++i) {
      T* pr = tmp + i * Wp;
      const index_t row = 4 * ti + i - pad;
      if (row >= 0 && row < H) {  // zero only the padding (whole-row fills showed up in profiles as memset)
        for (index_t c = 0; c < pad; ++c) pr[c] = T(0);
        for (index_t c = 0; c < W; ++c) pr[pad + c] = plane[row * W + c];
        for (index_t c = pad + W; c < Wp; ++c) pr[c] = T(0);
      } else {
        for (index_t c = 0; c < Wp; ++c) pr[c] = T(0);
      }
      for (index_t k = 0; k < 6; ++k) {
        T* dst = d + (6 * i + k) * L + r * tw;
        const T* src = pr + k;
        for (index_t j = 0; j < tw; ++j) dst[j] = src[4 * j];
      }
    }
  }
  wino_two_pass<T, 6, 6, 6, 6>([&](int i, int k) { return d + (6 * i + k) * L; }, wino_bt<T>, wino_bt<T>,
                               [&](int a, int b) { return v + (6 * a + b) * sxi; }, tmp, L);
}

// Output tiles of the block, one output channel: y = Aᵀ m A + bias, clipped to (Ho, Wo).
template <class T>
void wino_out_block(const T* m, index_t sxi, index_t Ho, index_t Wo, index_t th, index_t tw, index_t r0, index_t nr,
                    T bias, T* base, index_t pstride, T* s) {
  const index_t L = nr * tw;
  T* y = s + 24 * L;  // y[(4p + q)·L + t]
  wino_two_pass<T, 6, 4, 6, 4>([&](int a, int b) { return m + (6 * a + b) * sxi; }, wino_at<T>, wino_at<T>,
                               [&](int p, int q) { return y + (4 * p + q) * L; }, s, L);
  for (index_t r = 0; r < nr; ++r) {
    const index_t n = (r0 + r) / th, ti = (r0 + r) % th;
    T* plane = base + n * pstride;
    for (index_t p = 0; p < 4 && 4 * ti + p < Ho; ++p) {
      T* dst = plane + (4 * ti + p) * Wo;
      for (index_t j = 0; j < tw; ++j)
        for (index_t q = 0; q < 4 && 4 * j + q < Wo; ++q) dst[4 * j + q] = y[(4 * p + q) * L + r * tw + j] + bias;
    }
  }
}

// Adjoint of wino_out_block: m̄_ξ[t] = (A ȳ_t Aᵀ)[ξ], ȳ zero outside (Ho, Wo).
template <class T>
void wino_dy_block(const T* base, index_t pstride, index_t Ho, index_t Wo, index_t th, index_t tw, index_t r0,
                   index_t nr, T* m, index_t sxi, T* s) {
  const index_t L = nr * tw;
  T* yb = s;            // yb[(4p + q)·L + t]
  T* h = s + 16 * L;    // h[(4a + q)·L + t]
  for (index_t r = 0; r < nr; ++r) {
    const index_t n = (r0 + r) / th, ti = (r0 + r) % th;
    const T* plane = base + n * pstride;
    for (index_t p = 0; p < 4; ++p) {
      const index_t row = 4 * ti + p;
      for (index_t q = 0; q < 4; ++q) {
        T* dst = yb + (4 * p + q) * L + r * tw;
        for (index_t j = 0; j < tw; ++j) {
          const index_t col = 4 * j + q;
          dst[j] = row < Ho && col < Wo ? plane[row * Wo + col] : T(0);
        }
      }
    }
  }
  wino_two_pass<T, 4, 6, 4, 6>([&](int p, int q) { return yb + (4 * p + q) * L; }, wino_a<T>, wino_a<T>,
                               [&](int a, int b) { return m + (6 * a + b) * sxi; }, h, L);
}

// Adjoint of wino_in_block: planes += overlap-add of the 6x6 patches B v̄_t Bᵀ. The block's
// tile rows are added one after another (neighbouring rows share two image rows).
template <class T>
void wino_scatter_block(const T* v, index_t sxi, index_t H, index_t W, index_t pad, index_t th, index_t tw, index_t r0,
                        index_t nr, T* base, index_t pstride, T* s) {
  const index_t L = nr * tw;
  T* P = s + 36 * L;  // P[(6i + k)·L + t]: the patch
  wino_two_pass<T, 6, 6, 6, 6>([&](int a, int b) { return v + (6 * a + b) * sxi; }, wino_b<T>, wino_b<T>,
                               [&](int i, int k) { return P + (6 * i + k) * L; }, s, L);
  for (index_t r = 0; r < nr; ++r) {
    const index_t n = (r0 + r) / th, ti = (r0 + r) % th;
    T* plane = base + n * pstride;
    for (index_t i = 0; i < 6; ++i) {
      const index_t row = 4 * ti + i - pad;
      if (row < 0 || row >= H) continue;
      T* dst = plane + row * W;
      for (index_t j = 0; j < tw; ++j)
        for (index_t k = 0; k < 6; ++k) {
          const index_t col = 4 * j + k - pad;
          if (col >= 0 && col < W) dst[col] += P[(6 * i + k) * L + r * tw + j];
        }
    }
  }
}

// ---- a block's tile rows, by either kind of kernel ---------------------------------------
// gather: the block kernels (every tile one lane); else the row kernels, one tile row at a
// time. Arguments as for the block kernels; tile row r of the block is (n, ti) = divmod(r0 + r, th).
template <class T>
void wino_in_tiles(bool gather, const T* base, index_t pstride, index_t H, index_t W, index_t pad, index_t th,
                   index_t tw, index_t r0, index_t nr, T* v, index_t sxi, T* s) {
  if (gather) return wino_in_block(base, pstride, H, W, pad, th, tw, r0, nr, v, sxi, s);
  for (index_t r = 0; r < nr; ++r)
    wino_in_row(base + (r0 + r) / th * pstride, H, W, pad, (r0 + r) % th, tw, v + r * tw, sxi, s);
}
template <class T>
void wino_out_tiles(bool gather, const T* m, index_t sxi, index_t Ho, index_t Wo, index_t th, index_t tw, index_t r0,
                    index_t nr, T bias, T* base, index_t pstride, T* s) {
  if (gather) return wino_out_block(m, sxi, Ho, Wo, th, tw, r0, nr, bias, base, pstride, s);
  for (index_t r = 0; r < nr; ++r)
    wino_out_row(m + r * tw, sxi, Ho, Wo, (r0 + r) % th, tw, bias, base + (r0 + r) / th * pstride, s);
}
template <class T>
void wino_dy_tiles(bool gather, const T* base, index_t pstride, index_t Ho, index_t Wo, index_t th, index_t tw,
                   index_t r0, index_t nr, T* m, index_t sxi, T* s) {
  if (gather) return wino_dy_block(base, pstride, Ho, Wo, th, tw, r0, nr, m, sxi, s);
  for (index_t r = 0; r < nr; ++r)
    wino_dy_row(base + (r0 + r) / th * pstride, Ho, Wo, (r0 + r) % th, tw, m + r * tw, sxi, s);
}
template <class T>
void wino_scatter_tiles(bool gather, const T* v, index_t sxi, index_t H, index_t W, index_t pad, index_t th, index_t tw,
                        index_t r0, index_t nr, T* base, index_t pstride, T* s) {
  if (gather) return wino_scatter_block(v, sxi, H, W, pad, th, tw, r0, nr, base, pstride, s);
  for (index_t r = 0; r < nr; ++r)
    wino_scatter_row(v + r * tw, sxi, H, W, pad, (r0 + r) % th, tw, base + (r0 + r) / th * pstride, s);
}

// ---- weights -----------------------------------------------------------------------
inline constexpr double kWinoG[6][3] = {{1.0 / 4, 0, 0},           {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                        {-1.0 / 6, 1.0 / 6, -1.0 / 6}, {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                        {1.0 / 24, -1.0 / 12, 1.0 / 6}, {0, 0, 1}};
// (o, c) pairs per chunk: the lane of the weight transforms, whose per-pair form
// (36 scattered stores each) took as long as the GEMMs at 256 channels.
inline constexpr index_t kWinoWChunk = 128;

// U[ξ][o][c] = (G w[o][c] Gᵀ)[ξ]; w: (O, C, 3, 3).
template <class T> void wino_weights(const T* w, index_t O, index_t C, T* U) {
  const index_t n = O * C;
#pragma omp parallel for if (n >= 4096)
  for (index_t k0 = 0; k0 < n; k0 += kWinoWChunk) {
    const index_t m = std::min(kWinoWChunk, n - k0);
    T g[9][kWinoWChunk], h[6][3][kWinoWChunk];  // taps of the chunk; G g
    for (index_t j = 0; j < m; ++j)
      for (int k = 0; k < 9; ++k) g[k][j] = w[(k0 + j) * 9 + k];
    for (int a = 0; a < 6; ++a)
      for (int c = 0; c < 3; ++c) {
        const T g0 = T(kWinoG[a][0]), g1 = T(kWinoG[a][1]), g2 = T(kWinoG[a][2]);
#pragma omp simd
        for (index_t j = 0; j < m; ++j) h[a][c][j] = g0 * g[c][j] + g1 * g[3 + c][j] + g2 * g[6 + c][j];
      }
    for (int a = 0; a < 6; ++a)
      for (int b = 0; b < 6; ++b) {
        const T g0 = T(kWinoG[b][0]), g1 = T(kWinoG[b][1]), g2 = T(kWinoG[b][2]);
        T* u = U + (a * 6 + b) * n + k0;
#pragma omp simd
        for (index_t j = 0; j < m; ++j) u[j] = h[a][0][j] * g0 + h[a][1][j] * g1 + h[a][2][j] * g2;
      }
  }
}
// dw[o][c] += Gᵀ dU[·][o][c] G
template <class T> void wino_weights_grad(const T* dU, index_t O, index_t C, T* dw) {
  const index_t n = O * C;
#pragma omp parallel for if (n >= 4096)
  for (index_t k0 = 0; k0 < n; k0 += kWinoWChunk) {
    const index_t m = std::min(kWinoWChunk, n - k0);
    T h[6][3][kWinoWChunk], g[9][kWinoWChunk];  // dU G; Gᵀ dU G
    for (int a = 0; a < 6; ++a)
      for (int c = 0; c < 3; ++c) {
        T* hp = h[a][c];
        std::fill(hp, hp + m, T(0));
        for (int b = 0; b < 6; ++b) {
          const T gb = T(kWinoG[b][c]);
          if (gb == T(0)) continue;
          const T* d = dU + (a * 6 + b) * n + k0;
#pragma omp simd
          for (index_t j = 0; j < m; ++j) hp[j] += d[j] * gb;
        }
      }
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 3; ++c) {
        T* gp = g[r * 3 + c];
        std::fill(gp, gp + m, T(0));
        for (int a = 0; a < 6; ++a) {
          const T ga = T(kWinoG[a][r]);
          if (ga == T(0)) continue;
#pragma omp simd
          for (index_t j = 0; j < m; ++j) gp[j] += ga * h[a][c][j];
        }
      }
    for (index_t j = 0; j < m; ++j)
      for (int k = 0; k < 9; ++k) dw[(k0 + j) * 9 + k] += g[k][j];
  }
}

// ---- planning ------------------------------------------------------------------------
// Blocks hold KernelConfig::wino_block_bytes of V and M (all 36 coordinates).
inline constexpr index_t kWinoMinTiles = 64;  // a narrower GEMM spends its time packing U

struct WinoPlan {
  index_t th, tw, rows;  // tile grid; rows = N·th tile rows in all
  index_t R, nblocks;    // tile rows per block
  bool par, shared;      // shared: all threads work on each block together
};
inline WinoPlan wino_plan(const WinoGeom& g, std::size_t elem) {
  WinoPlan p;
  p.th = g.th();
  p.tw = g.tw();
  p.rows = g.N * p.th;
  const index_t per_tile = 36 * (g.C + g.O) * index_t(elem);
  const std::size_t block_bytes = kernel_config().wino_block_bytes;
  const bool tiny = block_bytes < 4096;  // tests: one tile row per block
  index_t tiles = std::max<index_t>(1, index_t(block_bytes) / per_tile);
  if (!tiny) tiles = std::max(tiles, kWinoMinTiles);
  p.R = std::clamp<index_t>(tiles / p.tw, 1, p.rows);
  p.nblocks = (p.rows + p.R - 1) / p.R;
  int threads = 1;
#ifdef _OPENMP
  threads = omp_get_max_threads();
#endif
  p.par = threads > 1 && double(g.N) * g.C * g.O * g.Ho() * g.Wo() * 9 > double(1 << 18);
  p.shared = p.par && p.nblocks < 3 * threads;
  return p;
}

// Loop i over [0, n): split across the team when shared, else all on this thread.
template <class F> inline void wino_for(bool shared, index_t n, F&& f) {
  if (shared) {
#pragma omp for schedule(dynamic)
    for (index_t i = 0; i < n; ++i) f(i);
  } else {
    for (index_t i = 0; i < n; ++i) f(i);
  }
}

// Transformed inputs kept from forward for backward's dW (`keep` below), so backward
// does not transform x a second time: V's 36·C·rows·tw values, 2.25x the input
// (conv2d keeps them up to KernelConfig::wino_keep_max_bytes).
inline std::size_t wino_kept_size(const WinoGeom& g) { return std::size_t(36 * g.C * g.N * g.th() * g.tw()); }

// y (N, O, Ho, Wo) = conv(x, w) + bias with U = wino_weights(w). keep (or null):
// wino_kept_size(g) values that receive every block's V for wino_backward.
template <class T> void wino_forward(const WinoGeom& g, const T* x, const T* U, const T* bias, T* y, T* keep = nullptr) {
  const WinoPlan p = wino_plan(g, sizeof(T));
  const index_t C = g.C, O = g.O, th = p.th, tw = p.tw, Ho = g.Ho(), Wo = g.Wo(), ldmax = p.R * tw;
  const bool gather = tw <= kernel_config().wino_gather_max_tw;
  T* sharedV = p.shared ? wino_scratch<T>(0, std::size_t(36 * C * ldmax)) : nullptr;
  T* sharedM = p.shared ? wino_scratch<T>(1, std::size_t(36 * O * ldmax)) : nullptr;
#pragma omp parallel if (p.par)
  {
    T* V = p.shared ? sharedV : wino_scratch<T>(0, std::size_t(36 * C * ldmax));
    T* M = p.shared ? sharedM : wino_scratch<T>(1, std::size_t(36 * O * ldmax));
    T* s = wino_scratch<T>(2, std::size_t(gather ? wino_gather_scratch(ldmax) : wino_row_scratch(tw)));
    auto block = [&](index_t b) {
      const index_t r0 = b * p.R, nr = std::min(p.R, p.rows - r0), ld = nr * tw;
      T* Vb = keep ? keep + 36 * C * r0 * tw : V;
      wino_for(p.shared, C, [&](index_t c) {
        wino_in_tiles(gather, x + c * g.H * g.W, C * g.H * g.W, g.H, g.W, g.pad, th, tw, r0, nr, Vb + c * ld, C * ld, s);
      });
      wino_for(p.shared, 36, [&](index_t xi) {
        gemm(MatView<T>(M + xi * O * ld, O, ld), CMatView<T>(U + xi * O * C, O, C), CMatView<T>(Vb + xi * C * ld, C, ld));
      });
      wino_for(p.shared, O, [&](index_t o) {
        wino_out_tiles(gather, M + o * ld, O * ld, Ho, Wo, th, tw, r0, nr, bias ? bias[o] : T(0), y + o * Ho * Wo,
                       O * Ho * Wo, s);
      });
    };
    if (p.shared) {
      for (index_t b = 0; b < p.nblocks; ++b) block(b);
    } else {
#pragma omp for schedule(dynamic)
      for (index_t b = 0; b < p.nblocks; ++b) block(b);
    }
  }
}

// dx += ∂/∂x and dw += ∂/∂w of <dy, conv(x, w)>; either may be null. U = wino_weights(w).
// kept (or null): the V that wino_forward left in its `keep`, so dw needs no transform of x.
template <class T>
void wino_backward(const WinoGeom& g, const T* x, const T* U, const T* dy, T* dx, T* dw, const T* kept = nullptr) {
  const WinoPlan p = wino_plan(g, sizeof(T));
  const index_t C = g.C, O = g.O, th = p.th, tw = p.tw, Ho = g.Ho(), Wo = g.Wo(), ldmax = p.R * tw;
  const bool gather = tw <= kernel_config().wino_gather_max_tw;
  T* sharedV = p.shared ? wino_scratch<T>(0, std::size_t(36 * C * ldmax)) : nullptr;
  T* sharedM = p.shared ? wino_scratch<T>(1, std::size_t(36 * O * ldmax)) : nullptr;
  T* dU = dw ? wino_scratch<T>(4, std::size_t(36 * O * C)) : nullptr;
  if (dw) std::fill(dU, dU + 36 * O * C, T(0));
#pragma omp parallel if (p.par)
  {
    T* V = p.shared ? sharedV : wino_scratch<T>(0, std::size_t(36 * C * ldmax));
    T* M = p.shared ? sharedM : wino_scratch<T>(1, std::size_t(36 * O * ldmax));
    T* s = wino_scratch<T>(2, std::size_t(gather ? wino_gather_scratch(ldmax) : wino_row_scratch(tw)));
    // Independent blocks sum dU privately; shared blocks split ξ, so each dU_ξ has one writer.
    T* part = dw && !p.shared ? wino_scratch<T>(3, std::size_t(36 * O * C)) : dU;
    if (dw && !p.shared) std::fill(part, part + 36 * O * C, T(0));
    auto block = [&](index_t b) {
      const index_t r0 = b * p.R, nr = std::min(p.R, p.rows - r0), ld = nr * tw;
      const T* Vb = kept ? kept + 36 * C * r0 * tw : V;  // x's transform, for dU
      if (dw && !kept)
        wino_for(p.shared, C, [&](index_t c) {
          wino_in_tiles(gather, x + c * g.H * g.W, C * g.H * g.W, g.H, g.W, g.pad, th, tw, r0, nr, V + c * ld, C * ld,
                        s);
        });
      wino_for(p.shared, O, [&](index_t o) {
        wino_dy_tiles(gather, dy + o * Ho * Wo, O * Ho * Wo, Ho, Wo, th, tw, r0, nr, M + o * ld, O * ld, s);
      });
      wino_for(p.shared, 36, [&](index_t xi) {
        CMatView<T> Mb(M + xi * O * ld, O, ld);
        MatView<T> Vx(V + xi * C * ld, C, ld);
        if (dw) gemm_add(MatView<T>(part + xi * O * C, O, C), Mb, CMatView<T>(Vb + xi * C * ld, C, ld).transpose());
        if (dx) gemm(Vx, CMatView<T>(U + xi * O * C, O, C).transpose(), Mb);  // V̄ replaces V (or fills it)
      });
      if (dx)  // tile rows of one channel overlap: keep a channel's rows on one thread
        wino_for(p.shared, C, [&](index_t c) {
          wino_scatter_tiles(gather, V + c * ld, C * ld, g.H, g.W, g.pad, th, tw, r0, nr, dx + c * g.H * g.W,
                             C * g.H * g.W, s);
        });
    };
    if (p.shared) {
      for (index_t b = 0; b < p.nblocks; ++b) block(b);
    } else {
      // Blocks two apart never touch the same dx row (a block spans >= 4 rows, patches
      // overlap by 2), so even blocks, then odd blocks, run without locks.
      const index_t half = (p.nblocks + 1) / 2;
      for (index_t phase = 0; phase < 2; ++phase) {
#pragma omp for schedule(dynamic)
        for (index_t i = 0; i < half; ++i)
          if (2 * i + phase < p.nblocks) block(2 * i + phase);
      }
      if (dw) {
#pragma omp critical(marrow_wino_reduce)
        for (index_t i = 0; i < 36 * O * C; ++i) dU[i] += part[i];
      }
    }
  }
  if (dw) wino_weights_grad(dU, O, C, dw);
}

}  // namespace marrow::detail

/* Backward rules (the adjoint of each forward step, in reverse order):
   forward   V_ξ = (Bᵀ d B)_ξ   M_ξ = U_ξ·V_ξ   y = Aᵀ M A + b          U_ξ = (G w Gᵀ)_ξ
   backward  M̄ = A dY Aᵀ        dU_ξ += M̄_ξ·V_ξᵀ   V̄_ξ = U_ξᵀ·M̄_ξ
             dx += overlap-add (B V̄ Bᵀ)        dW += Gᵀ dU G          (db: conv.hpp)
*/
