#pragma once
// Weight-free spatial resampling over NCHW tensors: max/avg/global pooling and
// nearest/bilinear upsampling, with PyTorch's semantics (F.max_pool2d,
// F.avg_pool2d with count_include_pad, F.interpolate with a scale factor).
//
// Every op works plane by plane (one (n, c) image channel), so planes are the
// unit of parallel work and backward passes never race.
//
// Shape letters: N batch, C channels, (H, W) input and (Ho, Wo) output size.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "../tape.hpp"

namespace marrow {

namespace detail {
inline constexpr index_t kPoolParallelMin = 1 << 15;  // elements; below this threads cost more than they save

struct PoolGeom {
  index_t planes, H, W, Ho, Wo;
  int k, s, p;
};

// Validate a pooling call and work out its output size.
inline PoolGeom pool_geom(const char* op, const Shape& xs, int kernel, int& stride, int padding) {
  MARROW_CHECK(xs.rank() == 4, op, ": input must be (N, C, H, W), got ", xs.str());
  if (stride < 0) stride = kernel;
  MARROW_CHECK(kernel >= 1 && stride >= 1, op, ": kernel ", kernel, " and stride ", stride, " must be >= 1");
  MARROW_CHECK(padding >= 0 && 2 * padding <= kernel, op, ": padding ", padding,
               " must be between 0 and half the kernel ", kernel);
  const index_t H = xs[2], W = xs[3];
  MARROW_CHECK(H + 2 * padding >= kernel && W + 2 * padding >= kernel, op, ": input ", xs.str(), " with padding ",
               padding, " is smaller than the kernel ", kernel);
  return {xs[0] * xs[1], H, W, (H + 2 * padding - kernel) / stride + 1, (W + 2 * padding - kernel) / stride + 1,
          kernel, stride, padding};
}

inline Shape with_hw(const Shape& xs, index_t h, index_t w) { return Shape{xs[0], xs[1], h, w}; }
}  // namespace detail

// Max over kernel×kernel windows (stride −1 means stride = kernel; padding counts
// as −∞). The gradient goes to the first maximum of each window.
template <class T> Var<T> max_pool2d(Tape<T>& t, const Arg<T>& x, int kernel, int stride = -1, int padding = 0) {
  t.check(x, "max_pool2d");
  const detail::PoolGeom g = detail::pool_geom("max_pool2d", x.shape(), kernel, stride, padding);
  Tensor<T> out = Tensor<T>::uninitialized(detail::with_hw(x.shape(), g.Ho, g.Wo));
  const bool need_arg = t.grad_enabled() && x.requires_grad();  // inference keeps no indices
  const index_t OP = g.Ho * g.Wo;
  std::vector<std::int32_t> arg(need_arg ? std::size_t(g.planes * OP) : 0);  // argmax within its input plane
  const T* px = x.value().data();
  T* po = out.data();
  std::int32_t* pa = arg.data();
#pragma omp parallel for if (g.planes * g.H * g.W >= detail::kPoolParallelMin)
  for (index_t pl = 0; pl < g.planes; ++pl) {
    const T* xi = px + pl * g.H * g.W;
    T* yo = po + pl * OP;
    std::int32_t* ai = need_arg ? pa + pl * OP : nullptr;
    if (g.k == 2 && g.s == 2 && g.p == 0) {  // the U-Net case: no clipping, four candidates
      for (index_t oh = 0; oh < g.Ho; ++oh) {
        const T* r0 = xi + 2 * oh * g.W;
        const T* r1 = r0 + g.W;
        for (index_t ow = 0; ow < g.Wo; ++ow) {
          index_t bi = 2 * oh * g.W + 2 * ow;
          T best = r0[2 * ow];
          if (r0[2 * ow + 1] > best) best = r0[2 * ow + 1], bi = 2 * oh * g.W + 2 * ow + 1;
          if (r1[2 * ow] > best) best = r1[2 * ow], bi = (2 * oh + 1) * g.W + 2 * ow;
          if (r1[2 * ow + 1] > best) best = r1[2 * ow + 1], bi = (2 * oh + 1) * g.W + 2 * ow + 1;
          yo[oh * g.Wo + ow] = best;
          if (ai) ai[oh * g.Wo + ow] = std::int32_t(bi);
        }
      }
      continue;
    }
    for (index_t oh = 0; oh < g.Ho; ++oh) {
      const index_t h0 = std::max<index_t>(0, oh * g.s - g.p), h1 = std::min(g.H, oh * g.s - g.p + g.k);
      for (index_t ow = 0; ow < g.Wo; ++ow) {
        const index_t w0 = std::max<index_t>(0, ow * g.s - g.p), w1 = std::min(g.W, ow * g.s - g.p + g.k);
        T best = -std::numeric_limits<T>::infinity();
        index_t bi = h0 * g.W + w0;
        for (index_t h = h0; h < h1; ++h)
          for (index_t w = w0; w < w1; ++w)
            if (xi[h * g.W + w] > best) best = xi[h * g.W + w], bi = h * g.W + w;
        yo[oh * g.Wo + ow] = best;
        if (ai) ai[oh * g.Wo + ow] = std::int32_t(bi);
      }
    }
  }
  Var<T> res = t.push(std::move(out), x);
  t.on_backward(res, [x, res, g, arg = std::move(arg)] {
    const T* gy = res.grad().data();
    T* dx = x.grad().data();
    const index_t OP = g.Ho * g.Wo, IP = g.H * g.W;
#pragma omp parallel for if (g.planes * IP >= detail::kPoolParallelMin)
    for (index_t pl = 0; pl < g.planes; ++pl)
      for (index_t o = 0; o < OP; ++o) dx[pl * IP + arg[std::size_t(pl * OP + o)]] += gy[pl * OP + o];
  });
  return res;
}

// Mean over kernel×kernel windows; padded zeros count (count_include_pad = true),
// so every window divides by kernel².
template <class T> Var<T> avg_pool2d(Tape<T>& t, const Arg<T>& x, int kernel, int stride = -1, int padding = 0) {
  t.check(x, "avg_pool2d");
  const detail::PoolGeom g = detail::pool_geom("avg_pool2d", x.shape(), kernel, stride, padding);
  Tensor<T> out = Tensor<T>::uninitialized(detail::with_hw(x.shape(), g.Ho, g.Wo));
  const T inv = T(1) / T(g.k * g.k);
  const T* px = x.value().data();
  T* po = out.data();
#pragma omp parallel for if (g.planes * g.H * g.W >= detail::kPoolParallelMin)
  for (index_t pl = 0; pl < g.planes; ++pl) {
    const T* xi = px + pl * g.H * g.W;
    T* yo = po + pl * g.Ho * g.Wo;
    for (index_t oh = 0; oh < g.Ho; ++oh) {
      const index_t h0 = std::max<index_t>(0, oh * g.s - g.p), h1 = std::min(g.H, oh * g.s - g.p + g.k);
      for (index_t ow = 0; ow < g.Wo; ++ow) {
        const index_t w0 = std::max<index_t>(0, ow * g.s - g.p), w1 = std::min(g.W, ow * g.s - g.p + g.k);
        T acc = T(0);
        for (index_t h = h0; h < h1; ++h)
          for (index_t w = w0; w < w1; ++w) acc += xi[h * g.W + w];
        yo[oh * g.Wo + ow] = acc * inv;
      }
    }
  }
  Var<T> res = t.push(std::move(out), x);
  t.on_backward(res, [x, res, g, inv] {
    const T* gy = res.grad().data();
    T* dx = x.grad().data();
#pragma omp parallel for if (g.planes * g.H * g.W >= detail::kPoolParallelMin)
    for (index_t pl = 0; pl < g.planes; ++pl) {
      T* di = dx + pl * g.H * g.W;
      const T* go = gy + pl * g.Ho * g.Wo;
      for (index_t oh = 0; oh < g.Ho; ++oh) {
        const index_t h0 = std::max<index_t>(0, oh * g.s - g.p), h1 = std::min(g.H, oh * g.s - g.p + g.k);
        for (index_t ow = 0; ow < g.Wo; ++ow) {
          const index_t w0 = std::max<index_t>(0, ow * g.s - g.p), w1 = std::min(g.W, ow * g.s - g.p + g.k);
          const T v = go[oh * g.Wo + ow] * inv;
          for (index_t h = h0; h < h1; ++h)
            for (index_t w = w0; w < w1; ++w) di[h * g.W + w] += v;
        }
      }
    }
  });
  return res;
}

// Mean over each whole plane: (N, C, H, W) -> (N, C).
template <class T> Var<T> global_avg_pool2d(Tape<T>& t, const Arg<T>& x) {
  t.check(x, "global_avg_pool2d");
  MARROW_CHECK(x.ndim() == 4 && x.dim(2) * x.dim(3) > 0, "global_avg_pool2d: input must be a non-empty (N, C, H, W), got ",
               x.shape().str());
  const index_t planes = x.dim(0) * x.dim(1), P = x.dim(2) * x.dim(3);
  Tensor<T> out = Tensor<T>::uninitialized({x.dim(0), x.dim(1)});
  out.mat(planes, 1) = x.value().mat(planes, P).rowwise().mean();
  Var<T> res = t.push(std::move(out), x);
  t.on_backward(res, [x, res, planes, P] {
    x.grad().mat(planes, P).colwise() += res.grad().mat(planes, 1).col(0) / T(P);
  });
  return res;
}

// Nearest-neighbour upsampling by an integer factor: out[h, w] = x[h / scale, w / scale].
template <class T> Var<T> upsample_nearest2d(Tape<T>& t, const Arg<T>& x, int scale) {
  t.check(x, "upsample_nearest2d");
  MARROW_CHECK(x.ndim() == 4, "upsample_nearest2d: input must be (N, C, H, W), got ", x.shape().str());
  MARROW_CHECK(scale >= 1, "upsample_nearest2d: scale must be >= 1, got ", scale);
  const index_t planes = x.dim(0) * x.dim(1), H = x.dim(2), W = x.dim(3), s = scale, Wo = W * s;
  Tensor<T> out = Tensor<T>::uninitialized(detail::with_hw(x.shape(), H * s, Wo));
  const T* px = x.value().data();
  T* po = out.data();
#pragma omp parallel for if (out.numel() >= detail::kPoolParallelMin)
  for (index_t r = 0; r < planes * H; ++r) {  // one input row -> scale identical output rows
    T* o = po + r * s * Wo;
    for (index_t w = 0; w < W; ++w)
      for (index_t j = 0; j < s; ++j) o[w * s + j] = px[r * W + w];
    for (index_t i = 1; i < s; ++i) std::copy(o, o + Wo, o + i * Wo);
  }
  Var<T> res = t.push(std::move(out), x);
  t.on_backward(res, [x, res, planes, H, W, s, Wo] {
    const T* gy = res.grad().data();
    T* dx = x.grad().data();
#pragma omp parallel for if (res.numel() >= detail::kPoolParallelMin)
    for (index_t r = 0; r < planes * H; ++r) {
      if (s == 2) {  // the common case, written so that it vectorizes
        const T *g0 = gy + 2 * r * Wo, *g1 = g0 + Wo;
        T* d = dx + r * W;
#pragma omp simd
        for (index_t w = 0; w < W; ++w) d[w] += (g0[2 * w] + g0[2 * w + 1]) + (g1[2 * w] + g1[2 * w + 1]);
        continue;
      }
      for (index_t i = 0; i < s; ++i) {
        const T* g = gy + (r * s + i) * Wo;
        for (index_t w = 0; w < W; ++w) {
          T acc = T(0);
          for (index_t j = 0; j < s; ++j) acc += g[w * s + j];
          dx[r * W + w] += acc;
        }
      }
    }
  });
  return res;
}

namespace detail {
// One axis of bilinear interpolation: output i reads in[i0]·l0 + in[i1]·l1.
template <class T> struct LerpTaps {
  std::vector<index_t> i0, i1;
  std::vector<T> l0, l1;
};
// PyTorch's source-index rule for F.interpolate(scale_factor=s): with align_corners
// the corners map onto corners; without, pixel centres map ((o + ½)/s − ½, clamped at 0).
template <class T> LerpTaps<T> lerp_taps(index_t in, index_t out, int scale, bool align_corners) {
  LerpTaps<T> tp;
  tp.i0.resize(std::size_t(out));
  tp.i1.resize(std::size_t(out));
  tp.l0.resize(std::size_t(out));
  tp.l1.resize(std::size_t(out));
  const double ratio = align_corners ? (out > 1 ? double(in - 1) / double(out - 1) : 0.0) : 1.0 / scale;
  for (index_t o = 0; o < out; ++o) {
    double src = align_corners ? ratio * double(o) : std::max(0.0, ratio * (double(o) + 0.5) - 0.5);
    const index_t i0 = std::min<index_t>(index_t(src), in - 1);
    const T l1 = T(src - double(i0));
    tp.i0[std::size_t(o)] = i0;
    tp.i1[std::size_t(o)] = i0 + (i0 < in - 1 ? 1 : 0);
    tp.l1[std::size_t(o)] = l1;
    tp.l0[std::size_t(o)] = T(1) - l1;
  }
  return tp;
}
}  // namespace detail

// Bilinear upsampling by an integer factor (F.interpolate(mode="bilinear", scale_factor=scale)).
template <class T> Var<T> upsample_bilinear2d(Tape<T>& t, const Arg<T>& x, int scale, bool align_corners = false) {
  t.check(x, "upsample_bilinear2d");
  MARROW_CHECK(x.ndim() == 4, "upsample_bilinear2d: input must be (N, C, H, W), got ", x.shape().str());
  MARROW_CHECK(scale >= 1, "upsample_bilinear2d: scale must be >= 1, got ", scale);
  MARROW_CHECK(x.dim(2) >= 1 && x.dim(3) >= 1, "upsample_bilinear2d: empty input ", x.shape().str());
  const index_t planes = x.dim(0) * x.dim(1), H = x.dim(2), W = x.dim(3), Ho = H * scale, Wo = W * scale;
  auto th = detail::lerp_taps<T>(H, Ho, scale, align_corners);
  auto tw = detail::lerp_taps<T>(W, Wo, scale, align_corners);
  Tensor<T> out = Tensor<T>::uninitialized(detail::with_hw(x.shape(), Ho, Wo));
  const T* px = x.value().data();
  T* po = out.data();
  // Separable: lerp each input row along w into tmp (H, Wo), then each output row is
  // a blend of two tmp rows, a contiguous loop that vectorizes.
#pragma omp parallel if (out.numel() >= detail::kPoolParallelMin)
  {
    std::vector<T> tmp(std::size_t(H * Wo));
#pragma omp for
    for (index_t pl = 0; pl < planes; ++pl) {
      const T* xi = px + pl * H * W;
      for (index_t h = 0; h < H; ++h)
        for (index_t ow = 0; ow < Wo; ++ow)
          tmp[std::size_t(h * Wo + ow)] = tw.l0[std::size_t(ow)] * xi[h * W + tw.i0[std::size_t(ow)]] +
                                          tw.l1[std::size_t(ow)] * xi[h * W + tw.i1[std::size_t(ow)]];
      T* yo = po + pl * Ho * Wo;
      for (index_t oh = 0; oh < Ho; ++oh) {
        const T* a = tmp.data() + th.i0[std::size_t(oh)] * Wo;
        const T* b = tmp.data() + th.i1[std::size_t(oh)] * Wo;
        const T la = th.l0[std::size_t(oh)], lb = th.l1[std::size_t(oh)];
        T* y = yo + oh * Wo;
#pragma omp simd
        for (index_t ow = 0; ow < Wo; ++ow) y[ow] = la * a[ow] + lb * b[ow];
      }
    }
  }
  Var<T> res = t.push(std::move(out), x);
  t.on_backward(res, [x, res, planes, H, W, Ho, Wo, th = std::move(th), tw = std::move(tw)] {
    const T* gy = res.grad().data();
    T* dx = x.grad().data();
#pragma omp parallel if (res.numel() >= detail::kPoolParallelMin)
    {
      std::vector<T> dtmp(std::size_t(H * Wo));
#pragma omp for
      for (index_t pl = 0; pl < planes; ++pl) {
        std::fill(dtmp.begin(), dtmp.end(), T(0));
        const T* go = gy + pl * Ho * Wo;
        for (index_t oh = 0; oh < Ho; ++oh) {  // adjoint of the row blend
          T* a = dtmp.data() + th.i0[std::size_t(oh)] * Wo;
          T* b = dtmp.data() + th.i1[std::size_t(oh)] * Wo;
          const T la = th.l0[std::size_t(oh)], lb = th.l1[std::size_t(oh)];
          const T* g = go + oh * Wo;
#pragma omp simd
          for (index_t ow = 0; ow < Wo; ++ow) a[ow] += la * g[ow];
#pragma omp simd
          for (index_t ow = 0; ow < Wo; ++ow) b[ow] += lb * g[ow];
        }
        T* di = dx + pl * H * W;
        for (index_t h = 0; h < H; ++h)  // adjoint of the lerp along w
          for (index_t ow = 0; ow < Wo; ++ow) {
            const T v = dtmp[std::size_t(h * Wo + ow)];
            di[h * W + tw.i0[std::size_t(ow)]] += tw.l0[std::size_t(ow)] * v;
            di[h * W + tw.i1[std::size_t(ow)]] += tw.l1[std::size_t(ow)] * v;
          }
      }
    }
  });
  return res;
}

}  // namespace marrow

/* Backward rules (g = upstream gradient):
   max_pool2d           dx[argmax of window] += g          (first maximum; padding never wins)
   avg_pool2d           dx[window] += g / kernel²          (padded taps drop their share)
   global_avg_pool2d    dx += g / (H·W)
   upsample_nearest2d   dx[h, w] += Σ g over its scale×scale block
   upsample_bilinear2d  dx[taps] += g · (row weight · column weight), the transpose of the forward lerp
*/
