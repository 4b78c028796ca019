#pragma once
// The kernels conv2d and conv_transpose2d lower to when they do not run Winograd:
// GEMM over im2col columns. Two kernels do that work:
//   gather_gemm   cols = im2col(img); out (=) A·cols and/or dA += B·colsᵀ
//                 (conv2d forward and dW; conv_transpose2d dx and dW)
//   scatter_gemm  cols = Aᵀ·src; img += col2im(cols)
//                 (conv2d dx; conv_transpose2d forward)
// Columns are built one band of output rows at a time into a per-thread
// scratch buffer sized to stay in L2 (KernelConfig::conv_band_bytes): writing the
// whole im2col matrix of an image (C·kh·kw × Ho·Wo, often > 10 MB) and reading it
// back made the 3x3 forward ~1.5x slower when measured. Bands of all images are
// the unit of parallel work, so a batch of 1 still uses every core; small images
// are grouped instead, so the GEMM stays wide (see conv_plan).
//
// Shape letters: N batch, C input channels, O output channels, (H, W) input
// and (Ho, Wo) output spatial size, (kh, kw) kernel.
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

inline int conv_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// A band of a row-major (rows, ld) matrix: `cols` columns starting at a column offset.
template <class T> using BandView = Eigen::Map<RowMat<T>, 0, Eigen::OuterStride<>>;
template <class T> using CBandView = Eigen::Map<const RowMat<T>, 0, Eigen::OuterStride<>>;

// Per-thread scratch that only grows: steady-state training allocates nothing here.
template <class T> T* conv_scratch(int slot, std::size_t n) {
  thread_local std::vector<T> buf[4];
  if (buf[slot].size() < n) buf[slot].resize(n);
  return buf[slot].data();
}

// The geometry im2col/col2im work on. The "image" side (C, H, W) is what the
// kernel slides over; (Ho, Wo) is the grid of kernel placements. For conv2d the
// image is the input; for conv_transpose2d it is the output.
struct ConvGeom {
  index_t C, H, W, Ho, Wo;
  int kh, kw, stride, pad, dil;
  index_t krows() const { return C * kh * kw; }  // rows of the column matrix
  index_t plane() const { return H * W; }
  index_t grid() const { return Ho * Wo; }
  // 1x1, stride 1, same size: the column matrix *is* the image, no copy needed.
  bool identity() const { return kh == 1 && kw == 1 && stride == 1 && pad == 0 && H == Ho && W == Wo; }
  // Placement columns [lo, hi) whose tap at column offset `off` lands inside the image.
  void valid_cols(index_t off, index_t& lo, index_t& hi) const {
    lo = off >= 0 ? 0 : (-off + stride - 1) / stride;
    hi = W - 1 - off < 0 ? 0 : std::min<index_t>(Wo, (W - 1 - off) / stride + 1);
    lo = std::min(lo, hi);
  }
};

// How the placements are cut into work items. Large images: bands of R placement
// rows whose columns fill KernelConfig::conv_band_bytes (cache resident) but are
// at least kMinCols wide (a narrower GEMM spends its time repacking the weight
// matrix), and at least the kernel's reach, so bands two apart never touch the
// same image rows (scatter_gemm runs even and odd bands in separate phases
// without locks).
// Small images (one band each): up to G whole images side by side in one GEMM, so
// deep low-resolution layers (DCGAN's 7x7, U-Net's bottleneck) still get wide
// products. The groups come in a multiple of the thread count and differ in size
// by at most one image: 64 images in groups of 20, 20, 20 and 4 kept one of two
// threads busy for 40 images while the other did 24.
inline constexpr index_t kMinCols = 512;
struct ConvPlan {
  index_t R, nbands, G, ngroups;  // G: the largest group
  bool par;
  // Images [first, first + count) of group gi, out of N.
  struct Group {
    index_t first, count;
  };
  Group group(index_t gi, index_t N) const {
    const index_t a = gi * N / ngroups, b = (gi + 1) * N / ngroups;
    return {a, b - a};
  }
};
inline ConvPlan conv_plan(index_t N, const ConvGeom& g, index_t M, std::size_t elem) {
  const std::size_t band_bytes = kernel_config().conv_band_bytes;
  const index_t target = index_t(band_bytes / elem), K = g.krows(), P = g.grid();
  const index_t min_cols = band_bytes >= elem * 1024 ? kMinCols : 1;  // tiny test bands stay tiny
  const index_t reach = (index_t(g.dil) * (g.kh - 1) + g.stride - 1) / g.stride;
  ConvPlan p;
  const index_t want = std::max({target / std::max<index_t>(1, K * g.Wo), (min_cols + g.Wo - 1) / std::max<index_t>(1, g.Wo), reach});
  p.R = std::clamp<index_t>(want, 1, std::max<index_t>(1, g.Ho));
  p.nbands = (g.Ho + p.R - 1) / p.R;
  p.par = double(N) * double(M) * double(K) * double(P) > double(1 << 18);
  p.G = 1;
  if (p.nbands == 1) {
    const index_t gw = std::max(target / std::max<index_t>(1, K * P), (min_cols + P - 1) / std::max<index_t>(1, P));
    p.G = std::clamp<index_t>(gw, 1, std::max<index_t>(1, N));
    if (p.par) p.G = std::min(p.G, (N + conv_threads() - 1) / conv_threads());  // keep every thread busy
  }
  p.ngroups = (N + p.G - 1) / p.G;
  if (p.par && p.G > 1) {  // a multiple of the threads, then images spread evenly
    const index_t T = conv_threads();
    p.ngroups = std::min(N, (p.ngroups + T - 1) / T * T);
    p.G = (N + p.ngroups - 1) / p.ngroups;
  }
  p.par = p.par && p.ngroups * p.nbands > 1;
  return p;
}

// Strided kernels (DCGAN's 4x4 stride 2, the colorizer's downsampling) on small
// planes: a row of 7 or 14 placements left the general loops below mostly
// bookkeeping (bounds, zero fills, calls per kernel tap and row). These copy
// the image rows a band reads into a zero-padded scratch once, so every tap row
// is a plain strided copy (or add) with no bounds. Padded row r is image row r − pad.
struct PaddedRows {
  index_t r0, nr, Wp;  // first padded row, row count, padded width
  PaddedRows(const ConvGeom& g, index_t oh0, index_t oh1)
      : r0(oh0 * g.stride), nr((oh1 - 1) * g.stride + index_t(g.dil) * (g.kh - 1) + 1 - oh0 * g.stride),
        Wp(std::max<index_t>(g.W + 2 * g.pad, (g.Wo - 1) * g.stride + index_t(g.dil) * (g.kw - 1) + 1)) {}
  std::size_t size(const ConvGeom& g) const { return std::size_t(g.C * nr * Wp); }
  // Image row of padded row r, or −1 where r lies in the padding.
  index_t image_row(const ConvGeom& g, index_t r) const {
    const index_t ih = r0 + r - g.pad;
    return ih >= 0 && ih < g.H ? ih : -1;
  }
};

template <class T, int S = 0>  // S: the stride if known at compile time (the copies then vectorize), else 0
void im2col_padded(const T* img, const ConvGeom& g, index_t oh0, index_t oh1, T* cols, index_t ld) {
  if constexpr (S == 0)
    if (g.stride == 2) return im2col_padded<T, 2>(img, g, oh0, oh1, cols, ld);
  const PaddedRows pr(g, oh0, oh1);
  T* pad = conv_scratch<T>(3, pr.size(g));
  for (index_t c = 0; c < g.C; ++c)
    for (index_t r = 0; r < pr.nr; ++r) {
      T* row = pad + (c * pr.nr + r) * pr.Wp;
      const index_t ih = pr.image_row(g, r);
      std::fill(row, row + pr.Wp, T(0));
      if (ih >= 0) std::copy_n(img + (c * g.H + ih) * g.W, g.W, row + g.pad);
    }
  const index_t s = S ? S : g.stride, dil = g.dil;
  for (index_t c = 0; c < g.C; ++c)
    for (index_t ki = 0; ki < g.kh; ++ki)
      for (index_t oh = oh0; oh < oh1; ++oh) {
        const T* row = pad + (c * pr.nr + oh * s - pr.r0 + ki * dil) * pr.Wp;
        for (index_t kj = 0; kj < g.kw; ++kj) {
          T* dst = cols + ((c * g.kh + ki) * g.kw + kj) * ld + (oh - oh0) * g.Wo;
          const T* src = row + kj * dil;
          for (index_t ow = 0; ow < g.Wo; ++ow) dst[ow] = src[ow * s];
        }
      }
}

template <class T, int S = 0>
void col2im_padded(const T* cols, index_t ld, const ConvGeom& g, index_t oh0, index_t oh1, T* img) {
  if constexpr (S == 0)
    if (g.stride == 2) return col2im_padded<T, 2>(cols, ld, g, oh0, oh1, img);
  const PaddedRows pr(g, oh0, oh1);
  T* pad = conv_scratch<T>(3, pr.size(g));
  std::fill(pad, pad + pr.size(g), T(0));
  const index_t s = S ? S : g.stride, dil = g.dil;
  for (index_t c = 0; c < g.C; ++c)
    for (index_t ki = 0; ki < g.kh; ++ki)
      for (index_t oh = oh0; oh < oh1; ++oh) {
        T* row = pad + (c * pr.nr + oh * s - pr.r0 + ki * dil) * pr.Wp;
        for (index_t kj = 0; kj < g.kw; ++kj) {
          const T* src = cols + ((c * g.kh + ki) * g.kw + kj) * ld + (oh - oh0) * g.Wo;
          T* dst = row + kj * dil;
          for (index_t ow = 0; ow < g.Wo; ++ow) dst[ow * s] += src[ow];
        }
      }
  for (index_t c = 0; c < g.C; ++c)
    for (index_t r = 0; r < pr.nr; ++r)
      if (const index_t ih = pr.image_row(g, r); ih >= 0) {
        const T* row = pad + (c * pr.nr + r) * pr.Wp + g.pad;
        T* dst = img + (c * g.H + ih) * g.W;
#pragma omp simd
        for (index_t w = 0; w < g.W; ++w) dst[w] += row[w];
      }
}

// Whether the padded-rows kernels above pay: strided placements over narrow rows.
inline bool use_padded_rows(const ConvGeom& g) { return g.stride > 1 && g.Wo <= 64; }

// cols (krows, (oh1-oh0)·Wo), row stride ld = the image patches under placement rows [oh0, oh1).
template <class T> void im2col(const T* img, const ConvGeom& g, index_t oh0, index_t oh1, T* cols, index_t ld) {
  if (use_padded_rows(g)) return im2col_padded(img, g, oh0, oh1, cols, ld);
  const index_t s = g.stride;
  for (index_t c = 0; c < g.C; ++c)
    for (int ki = 0; ki < g.kh; ++ki)
      for (int kj = 0; kj < g.kw; ++kj) {
        T* dst = cols + ((c * g.kh + ki) * g.kw + kj) * ld;
        const index_t xoff = index_t(kj) * g.dil - g.pad;
        index_t lo, hi;
        g.valid_cols(xoff, lo, hi);
        for (index_t oh = oh0; oh < oh1; ++oh, dst += g.Wo) {
          const index_t ih = oh * s - g.pad + index_t(ki) * g.dil;
          if (ih < 0 || ih >= g.H || lo == hi) {
            std::fill(dst, dst + g.Wo, T(0));
            continue;
          }
          const T* src = img + (c * g.H + ih) * g.W + xoff;
          std::fill(dst, dst + lo, T(0));
          if (s == 1) std::copy(src + lo, src + hi, dst + lo);
          else
            for (index_t ow = lo; ow < hi; ++ow) dst[ow] = src[ow * s];
          std::fill(dst + hi, dst + g.Wo, T(0));
        }
      }
}

// img += the adjoint of im2col for placement rows [oh0, oh1).
template <class T> void col2im(const T* cols, index_t ld, const ConvGeom& g, index_t oh0, index_t oh1, T* img) {
  if (use_padded_rows(g)) return col2im_padded(cols, ld, g, oh0, oh1, img);
  const index_t s = g.stride;
  for (index_t c = 0; c < g.C; ++c)
    for (int ki = 0; ki < g.kh; ++ki)
      for (int kj = 0; kj < g.kw; ++kj) {
        const T* src = cols + ((c * g.kh + ki) * g.kw + kj) * ld;
        const index_t xoff = index_t(kj) * g.dil - g.pad;
        index_t lo, hi;
        g.valid_cols(xoff, lo, hi);
        for (index_t oh = oh0; oh < oh1; ++oh, src += g.Wo) {
          const index_t ih = oh * s - g.pad + index_t(ki) * g.dil;
          if (ih < 0 || ih >= g.H) continue;
          T* dst = img + (c * g.H + ih) * g.W + xoff;
          if (s == 1) {
#pragma omp simd
            for (index_t ow = lo; ow < hi; ++ow) dst[ow] += src[ow];
          } else {
            for (index_t ow = lo; ow < hi; ++ow) dst[ow * s] += src[ow];
          }
        }
      }
}

// img = col2im(cols) + bias when the kernel tiles the image exactly (kernel == stride,
// no padding or dilation: conv_transpose2d's 2x2 stride-2 upsampling). Every pixel
// is written once, so the output needs no zero fill and no separate bias pass.
template <class T, int S>  // S: the stride if known at compile time (the inner loop then vectorizes), else 0
void col2im_tiles(const T* cols, index_t ld, const ConvGeom& g, index_t oh0, index_t oh1, const T* bias, T* img) {
  if constexpr (S == 0)
    if (g.stride == 2) return col2im_tiles<T, 2>(cols, ld, g, oh0, oh1, bias, img);
  const index_t s = S ? S : g.stride;
  for (index_t c = 0; c < g.C; ++c) {
    const T b = bias ? bias[c] : T(0);
    for (index_t ki = 0; ki < s; ++ki)
      for (index_t oh = oh0; oh < oh1; ++oh) {
        T* dst = img + (c * g.H + oh * s + ki) * g.W;
        const T* src = cols + (c * s + ki) * s * ld + (oh - oh0) * g.Wo;
        for (index_t ow = 0; ow < g.Wo; ++ow)
          for (index_t kj = 0; kj < s; ++kj) dst[ow * s + kj] = src[kj * ld + ow] + b;
      }
  }
}

// Copy G per-image (M, P) blocks, image stride M·P, side by side into cat (M, G·P).
template <class T> void concat_images(const T* src, index_t G, index_t M, index_t P, T* cat) {
  for (index_t i = 0; i < G; ++i)
    for (index_t m = 0; m < M; ++m) std::copy_n(src + (i * M + m) * P, P, cat + m * G * P + i * P);
}

// For every image n and band of placements, with cols = im2col(img_n):
//   out_n[:, band] (= or +=) A·cols (+ bias)   when out  (A: (M, krows); out_n: (M, Ho·Wo))
//   dA += B_n[:, band] · colsᵀ                 when dA   (B_n: (M, Ho·Wo))
template <class T>
void gather_gemm(index_t N, const ConvGeom& g, const T* img, index_t M, const T* A, const T* bias, T* out,
                 bool accumulate, const T* B, T* dA) {
  const index_t K = g.krows(), P = g.grid();
  const ConvPlan pl = conv_plan(N, g, M, sizeof(T));
  const bool ident = g.identity();
  using ColVec = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>>;
#pragma omp parallel if (pl.par)
  {
    const index_t width = pl.G * pl.R * g.Wo;  // widest column block of one item
    T* cols = conv_scratch<T>(0, std::size_t(K * width));
    T* tmp = pl.G > 1 ? conv_scratch<T>(1, std::size_t(M * width)) : nullptr;  // grouped GEMM output / B
    T* part = nullptr;  // this thread's share of dA, summed at the end
    if (dA) {
      part = conv_scratch<T>(2, std::size_t(M * K));
      std::fill(part, part + M * K, T(0));
    }
#pragma omp for schedule(dynamic)
    for (index_t it = 0; it < pl.ngroups * pl.nbands; ++it) {
      const auto [n0, gn] = pl.group(it / pl.nbands, N);
      const index_t oh0 = (it % pl.nbands) * pl.R, oh1 = std::min(g.Ho, oh0 + pl.R);
      const index_t p0 = oh0 * g.Wo, np = (oh1 - oh0) * g.Wo, ld = gn * np;
      const T* cp = cols;
      if (ident && gn == 1) cp = img + n0 * g.C * g.plane() + p0;
      else
        for (index_t i = 0; i < gn; ++i) im2col(img + (n0 + i) * g.C * g.plane(), g, oh0, oh1, cols + i * np, ld);
      CBandView<T> Cm(cp, K, ld, Eigen::OuterStride<>(ident && gn == 1 ? P : ld));
      if (out && gn == 1) {
        BandView<T> Y(out + n0 * M * P + p0, M, np, Eigen::OuterStride<>(P));
        if (accumulate) gemm_add(Y, CMatView<T>(A, M, K), Cm);
        else gemm(Y, CMatView<T>(A, M, K), Cm);
        if (bias) Y.colwise() += ColVec(bias, M);
      } else if (out) {
        gemm(MatView<T>(tmp, M, ld), CMatView<T>(A, M, K), Cm);
        for (index_t i = 0; i < gn; ++i) {
          MatView<T> Y(out + (n0 + i) * M * P, M, P);
          CBandView<T> Ti(tmp + i * P, M, P, Eigen::OuterStride<>(ld));
          if (accumulate) Y += Ti;
          else Y = Ti;
          if (bias) Y.colwise() += ColVec(bias, M);
        }
      }
      if (dA && gn == 1) {
        gemm_add(MatView<T>(part, M, K), CBandView<T>(B + n0 * M * P + p0, M, np, Eigen::OuterStride<>(P)), Cm.transpose());
      } else if (dA) {
        concat_images(B + n0 * M * P, gn, M, P, tmp);
        gemm_add(MatView<T>(part, M, K), CMatView<T>(tmp, M, ld), Cm.transpose());
      }
    }
    if (dA) {
#pragma omp critical(marrow_conv_reduce)
      MatView<T>(dA, M, K) += MatView<T>(part, M, K);
    }
  }
}

// For every image n and band: cols = Aᵀ · src_n[:, band]; img_n += col2im(cols).
// A: (M, krows); src_n: (M, Ho·Wo). Even bands, then odd bands: bands two apart
// write disjoint image rows (see conv_plan), so no two threads add to one pixel.
// With `tiles` (kernel == stride tiles the image exactly) img_n = col2im(cols) + bias instead.
template <class T>
void scatter_gemm(index_t N, const ConvGeom& g, index_t M, const T* A, const T* src, T* img, bool tiles = false,
                  const T* bias = nullptr) {
  const index_t K = g.krows(), P = g.grid();
  const ConvPlan pl = conv_plan(N, g, M, sizeof(T));
  const index_t half = (pl.nbands + 1) / 2;
  const bool ident = g.identity();
#pragma omp parallel if (pl.par)
  {
    const index_t width = pl.G * pl.R * g.Wo;
    T* cols = conv_scratch<T>(0, std::size_t(K * width));
    T* tmp = pl.G > 1 ? conv_scratch<T>(1, std::size_t(M * width)) : nullptr;
    for (index_t phase = 0; phase < 2; ++phase) {
#pragma omp for schedule(dynamic)
      for (index_t it = 0; it < pl.ngroups * half; ++it) {
        const auto [n0, gn] = pl.group(it / half, N);
        const index_t b = (it % half) * 2 + phase;
        if (b >= pl.nbands) continue;
        const index_t oh0 = b * pl.R, oh1 = std::min(g.Ho, oh0 + pl.R), p0 = oh0 * g.Wo, np = (oh1 - oh0) * g.Wo;
        if (gn == 1) {
          CBandView<T> S(src + n0 * M * P + p0, M, np, Eigen::OuterStride<>(P));
          T* im = img + n0 * g.C * g.plane();
          if (ident) {
            gemm_add(BandView<T>(im + p0, K, np, Eigen::OuterStride<>(P)), CMatView<T>(A, M, K).transpose(), S);
          } else {
            gemm(MatView<T>(cols, K, np), CMatView<T>(A, M, K).transpose(), S);
            if (tiles) col2im_tiles<T, 0>(cols, np, g, oh0, oh1, bias, im);
            else col2im(cols, np, g, oh0, oh1, im);
          }
          continue;
        }
        const index_t ld = gn * P;  // grouped items are whole images: np == P
        concat_images(src + n0 * M * P, gn, M, P, tmp);
        gemm(MatView<T>(cols, K, ld), CMatView<T>(A, M, K).transpose(), CMatView<T>(tmp, M, ld));
        for (index_t i = 0; i < gn; ++i) {
          T* im = img + (n0 + i) * g.C * g.plane();
          if (tiles) col2im_tiles<T, 0>(cols + i * P, ld, g, oh0, oh1, bias, im);
          else col2im(cols + i * P, ld, g, oh0, oh1, im);
        }
      }
    }
  }
}

// db[c] += Σ_{n, pixels} g[n, c, pixels]; g: (N, C, P).
template <class T> void bias_grad(const T* g, index_t N, index_t C, index_t P, T* db) {
#pragma omp parallel for if (N * C * P >= (1 << 16))
  for (index_t c = 0; c < C; ++c)  // one thread per channel: no two threads add to one db entry
    for (index_t n = 0; n < N; ++n) db[c] += Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>(g + (n * C + c) * P, P).sum();
}

}  // namespace marrow::detail
