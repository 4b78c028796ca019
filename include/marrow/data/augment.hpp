#pragma once
// Data augmentation on float planes, applied identically to an image and its mask.
//
// A Sample holds an image (C, H, W) (or (H, W)) and optionally a mask with the
// same H and W (any number of channels). Geometric transforms move both the
// same way; the image is resampled bilinearly, the mask by nearest neighbour
// so labels stay labels. Photometric transforms touch the image only.
// Every random choice comes from the Rng& argument: the same seed gives the
// same sample on every machine (pair with loader.hpp's per-batch Rng).
// Single-threaded on purpose: augmentation runs on the loader's background
// thread, beside the training threads, and must not compete with them.
#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "../config.hpp"
#include "../rng.hpp"
#include "../tensor.hpp"

namespace marrow::data {

template <class T> struct Sample {
  Tensor<T> image;  // (C, H, W) or (H, W)
  Tensor<T> mask;   // same H, W, or undefined (no mask)

  Sample() = default;
  Sample(Tensor<T> image_, Tensor<T> mask_ = {}) : image(std::move(image_)), mask(std::move(mask_)) {}
};

// What a geometric transform samples outside the image: mirrored content (without
// repeating the edge pixel, like numpy's "reflect"), or a constant (0 for the mask).
enum class Border { Reflect, Constant };

namespace aug_detail {
template <class T> void check(const Sample<T>& s, const char* op) {
  MARROW_CHECK(s.image.defined() && (s.image.ndim() == 2 || s.image.ndim() == 3), op,
               ": image must be (C, H, W) or (H, W), got ", s.image.defined() ? s.image.shape().str() : "undefined");
  if (s.mask.defined())
    MARROW_CHECK((s.mask.ndim() == 2 || s.mask.ndim() == 3) && s.mask.dim(-2) == s.image.dim(-2) &&
                     s.mask.dim(-1) == s.image.dim(-1),
                 op, ": mask ", s.mask.shape().str(), " does not match image ", s.image.shape().str(), " in H and W");
}

// out[p, i, j] = in[p, src(i, j)] for every plane p of a (..., H, W) tensor; out is (..., oh, ow).
template <class T, class F> Tensor<T> remap_int(const Tensor<T>& x, index_t oh, index_t ow, F src) {
  const index_t H = x.dim(-2), W = x.dim(-1), P = x.numel() / std::max<index_t>(H * W, 1);
  Shape os = x.shape();
  os[os.rank() - 2] = oh;
  os[os.rank() - 1] = ow;
  Tensor<T> out = Tensor<T>::uninitialized(os);
  for (index_t p = 0; p < P; ++p) {
    const T* in = x.data() + p * H * W;
    T* o = out.data() + p * oh * ow;
    for (index_t i = 0; i < oh; ++i)
      for (index_t j = 0; j < ow; ++j) {
        const auto [si, sj] = src(i, j);
        o[i * ow + j] = in[si * W + sj];
      }
  }
  return out;
}

// Continuous coordinate mirrored into [0, n-1] (period 2(n-1)).
inline double reflect(double x, index_t n) {
  if (n == 1) return 0.0;
  const double period = 2.0 * double(n - 1);
  x = std::fmod(std::abs(x), period);
  return x > double(n - 1) ? period - x : x;
}

// Resample every plane at source coordinates (sy, sx) per output pixel (same H, W).
// Bilinear for images, nearest for masks.
template <class T>
Tensor<T> warp(const Tensor<T>& x, const std::vector<double>& sy, const std::vector<double>& sx, bool nearest,
               Border border, T fill) {
  const index_t H = x.dim(-2), W = x.dim(-1), HW = H * W, P = x.numel() / std::max<index_t>(HW, 1);
  Tensor<T> out = Tensor<T>::uninitialized(x.shape());
  for (index_t p = 0; p < P; ++p) {
    const T* in = x.data() + p * HW;
    T* o = out.data() + p * HW;
    for (index_t k = 0; k < HW; ++k) {
      double y = sy[std::size_t(k)], xx = sx[std::size_t(k)];
      if (border == Border::Reflect) {
        y = reflect(y, H);
        xx = reflect(xx, W);
      }
      if (nearest) {
        const index_t yi = index_t(std::floor(y + 0.5)), xi = index_t(std::floor(xx + 0.5));
        const bool inside = yi >= 0 && yi < H && xi >= 0 && xi < W;
        o[k] = inside ? in[yi * W + xi] : fill;
        continue;
      }
      const double fy = std::floor(y), fx = std::floor(xx);
      const index_t y0 = index_t(fy), x0 = index_t(fx);
      const T wy = T(y - fy), wx = T(xx - fx);
      auto tap = [&](index_t yy, index_t xq) -> T {
        if (yy >= 0 && yy < H && xq >= 0 && xq < W) return in[yy * W + xq];
        return border == Border::Reflect ? in[std::clamp<index_t>(yy, 0, H - 1) * W + std::clamp<index_t>(xq, 0, W - 1)]
                                         : fill;
      };
      // Zero weights skip their tap, so integer coordinates reproduce the input bit for bit.
      T v = (T(1) - wy) * (T(1) - wx) * tap(y0, x0);
      if (wx != T(0)) v += (T(1) - wy) * wx * tap(y0, x0 + 1);
      if (wy != T(0)) v += wy * (T(1) - wx) * tap(y0 + 1, x0);
      if (wy != T(0) && wx != T(0)) v += wy * wx * tap(y0 + 1, x0 + 1);
      o[k] = v;
    }
  }
  return out;
}

template <class T>
Sample<T> warp_sample(const Sample<T>& s, const std::vector<double>& sy, const std::vector<double>& sx, Border border,
                      T fill) {
  Sample<T> r{warp(s.image, sy, sx, false, border, fill), {}};
  if (s.mask.defined()) r.mask = warp(s.mask, sy, sx, true, border, T(0));
  return r;
}

// Keys cubic convolution weights (a = -0.5, Catmull-Rom) for taps at t+1, t, 1-t, 2-t.
inline void cubic_weights(double t, double w[4]) {
  const double a = -0.5;
  auto near = [a](double d) { return ((a + 2) * d - (a + 3)) * d * d + 1; };          // |d| <= 1
  auto far = [a](double d) { return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a; };     // 1 < |d| < 2
  w[0] = far(t + 1);
  w[1] = near(t);
  w[2] = near(1 - t);
  w[3] = far(2 - t);
}

// Upsample a (g, g) grid spanning the image corners to (H, W) by bicubic interpolation.
inline std::vector<double> upsample_bicubic(const std::vector<double>& grid, int g, index_t H, index_t W) {
  auto taps = [g](index_t n, index_t i, int idx[4], double w[4]) {
    const double u = n > 1 ? double(i) * (g - 1) / double(n - 1) : 0.0;
    const int base = std::min(int(std::floor(u)), g - 1);
    cubic_weights(u - base, w);
    for (int k = 0; k < 4; ++k) idx[k] = std::clamp(base - 1 + k, 0, g - 1);  // edge-clamped grid
  };
  std::vector<double> rows(std::size_t(g) * std::size_t(W));  // each grid row interpolated along x
  for (index_t j = 0; j < W; ++j) {
    int idx[4];
    double w[4];
    taps(W, j, idx, w);
    for (int r = 0; r < g; ++r) {
      double v = 0;
      for (int k = 0; k < 4; ++k) v += w[k] * grid[std::size_t(r * g + idx[k])];
      rows[std::size_t(r * W + j)] = v;
    }
  }
  std::vector<double> out(std::size_t(H * W));
  for (index_t i = 0; i < H; ++i) {
    int idx[4];
    double w[4];
    taps(H, i, idx, w);
    for (index_t j = 0; j < W; ++j) {
      double v = 0;
      for (int k = 0; k < 4; ++k) v += w[k] * rows[std::size_t(idx[k] * W + j)];
      out[std::size_t(i * W + j)] = v;
    }
  }
  return out;
}
}  // namespace aug_detail

// ---- exact geometric transforms ------------------------------------------------------

// Mirror left-right.
template <class T> Sample<T> hflip(const Sample<T>& s) {
  aug_detail::check(s, "hflip");
  const index_t W = s.image.dim(-1);
  auto f = [&](const Tensor<T>& x) {
    return aug_detail::remap_int(x, x.dim(-2), W, [W](index_t i, index_t j) { return std::pair{i, W - 1 - j}; });
  };
  return {f(s.image), s.mask.defined() ? f(s.mask) : Tensor<T>()};
}

// Mirror top-bottom.
template <class T> Sample<T> vflip(const Sample<T>& s) {
  aug_detail::check(s, "vflip");
  const index_t H = s.image.dim(-2);
  auto f = [&](const Tensor<T>& x) {
    return aug_detail::remap_int(x, H, x.dim(-1), [H](index_t i, index_t j) { return std::pair{H - 1 - i, j}; });
  };
  return {f(s.image), s.mask.defined() ? f(s.mask) : Tensor<T>()};
}

// Rotate by k quarter turns counter-clockwise as displayed (numpy.rot90); H and W swap for odd k.
template <class T> Sample<T> rot90(const Sample<T>& s, int k = 1) {
  aug_detail::check(s, "rot90");
  k = ((k % 4) + 4) % 4;
  const index_t H = s.image.dim(-2), W = s.image.dim(-1);
  auto f = [&](const Tensor<T>& x) -> Tensor<T> {
    switch (k) {
      case 1: return aug_detail::remap_int(x, W, H, [W](index_t i, index_t j) { return std::pair{j, W - 1 - i}; });
      case 2: return aug_detail::remap_int(x, H, W, [H, W](index_t i, index_t j) { return std::pair{H - 1 - i, W - 1 - j}; });
      case 3: return aug_detail::remap_int(x, W, H, [H](index_t i, index_t j) { return std::pair{H - 1 - j, i}; });
      default: return x.clone();
    }
  };
  return {f(s.image), s.mask.defined() ? f(s.mask) : Tensor<T>()};
}

// One of the 8 symmetries of the square (flip or not, then 0..3 quarter turns), uniformly.
template <class T> Sample<T> random_dihedral(const Sample<T>& s, Rng& rng) {
  const bool flip = rng.below(2) == 1;
  const int k = int(rng.below(4));
  return rot90(flip ? hflip(s) : s, k);
}

// A random h x w window, the same for image and mask.
template <class T> Sample<T> random_crop(const Sample<T>& s, Rng& rng, index_t h, index_t w) {
  aug_detail::check(s, "random_crop");
  const index_t H = s.image.dim(-2), W = s.image.dim(-1);
  MARROW_CHECK(h > 0 && w > 0 && h <= H && w <= W, "random_crop: crop ", h, "x", w, " does not fit image ",
               s.image.shape().str());
  const index_t y0 = index_t(rng.below(std::uint64_t(H - h + 1))), x0 = index_t(rng.below(std::uint64_t(W - w + 1)));
  auto f = [&](const Tensor<T>& x) {
    return aug_detail::remap_int(x, h, w, [y0, x0](index_t i, index_t j) { return std::pair{y0 + i, x0 + j}; });
  };
  return {f(s.image), s.mask.defined() ? f(s.mask) : Tensor<T>()};
}

// ---- resampling transforms --------------------------------------------------------------

// Rotate by `degrees` counter-clockwise as displayed, about the image centre; same size out.
template <class T>
Sample<T> rotate(const Sample<T>& s, double degrees, Border border = Border::Reflect, T fill = T(0)) {
  aug_detail::check(s, "rotate");
  const index_t H = s.image.dim(-2), W = s.image.dim(-1);
  const double th = degrees * 3.14159265358979323846 / 180.0, c = std::cos(th), sn = std::sin(th);
  const double cy = 0.5 * double(H - 1), cx = 0.5 * double(W - 1);
  std::vector<double> sy(std::size_t(H * W)), sx(std::size_t(H * W));
  for (index_t i = 0; i < H; ++i)
    for (index_t j = 0; j < W; ++j) {  // inverse map: where each output pixel comes from
      const double dy = double(i) - cy, dx = double(j) - cx;
      sx[std::size_t(i * W + j)] = cx + c * dx - sn * dy;
      sy[std::size_t(i * W + j)] = cy + sn * dx + c * dy;
    }
  return aug_detail::warp_sample(s, sy, sx, border, fill);
}

template <class T>
Sample<T> random_rotate(const Sample<T>& s, Rng& rng, double max_degrees, Border border = Border::Reflect,
                        T fill = T(0)) {
  return rotate(s, rng.uniform(-max_degrees, max_degrees), border, fill);
}

// Elastic deformation (U-Net paper): displacements ~ N(0, sigma px) on a coarse grid x grid
// lattice spanning the image, upsampled bicubically to a smooth dense field.
template <class T>
Sample<T> elastic_deform(const Sample<T>& s, Rng& rng, double sigma, int grid = 3, Border border = Border::Reflect,
                         T fill = T(0)) {
  aug_detail::check(s, "elastic_deform");
  MARROW_CHECK(grid >= 2 && sigma >= 0, "elastic_deform: grid ", grid, " (want >= 2) and sigma ", sigma,
               " (want >= 0)");
  const index_t H = s.image.dim(-2), W = s.image.dim(-1);
  std::vector<double> gy(std::size_t(grid * grid)), gx(gy.size());
  for (std::size_t k = 0; k < gy.size(); ++k) {
    gy[k] = rng.normal(0.0, sigma);
    gx[k] = rng.normal(0.0, sigma);
  }
  std::vector<double> sy = aug_detail::upsample_bicubic(gy, grid, H, W), sx = aug_detail::upsample_bicubic(gx, grid, H, W);
  for (index_t i = 0; i < H; ++i)
    for (index_t j = 0; j < W; ++j) {
      sy[std::size_t(i * W + j)] += double(i);
      sx[std::size_t(i * W + j)] += double(j);
    }
  return aug_detail::warp_sample(s, sy, sx, border, fill);
}

// ---- photometric transforms (image only) ------------------------------------------------

// x -> (x - mean)·c + mean + b with c ~ U[1-contrast, 1+contrast], b ~ U[-brightness, brightness];
// mean over the whole image, so contrast changes keep the average brightness.
template <class T> Sample<T> brightness_contrast(const Sample<T>& s, Rng& rng, double brightness, double contrast) {
  aug_detail::check(s, "brightness_contrast");
  MARROW_CHECK(brightness >= 0 && contrast >= 0, "brightness_contrast: brightness ", brightness, " and contrast ",
               contrast, " must be >= 0");
  const T b = T(rng.uniform(-brightness, brightness)), c = T(rng.uniform(1.0 - contrast, 1.0 + contrast));
  double sum = 0;
  for (const T v : s.image) sum += double(v);
  const T mean = s.image.numel() ? T(sum / double(s.image.numel())) : T(0), shift = mean * (T(1) - c) + b;
  Sample<T> r{Tensor<T>::uninitialized(s.image.shape()), s.mask};
  const T* in = s.image.data();
  T* out = r.image.data();
  for (index_t i = 0; i < s.image.numel(); ++i) out[i] = in[i] * c + shift;
  return r;
}

// Add N(0, stddev) noise to every image value.
template <class T> Sample<T> gaussian_noise(const Sample<T>& s, Rng& rng, double stddev) {
  aug_detail::check(s, "gaussian_noise");
  MARROW_CHECK(stddev >= 0, "gaussian_noise: stddev ", stddev, " must be >= 0");
  Sample<T> r{s.image.clone(), s.mask};
  for (T& v : r.image) v += T(rng.normal(0.0, stddev));
  return r;
}

}  // namespace marrow::data
