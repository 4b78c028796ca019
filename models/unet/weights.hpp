#pragma once
// The U-Net paper's pixel weight map (Ronneberger et al. 2015, eq. 2) and the
// two image tools it is built from: connected-components labelling and the
// exact Euclidean distance transform.
//
//   w(x) = w_c(x) + w0 · exp(−(d1(x) + d2(x))² / 2σ²)
//
// w_c balances the class frequencies; d1, d2 are the distances to the nearest
// and second-nearest cell. The second term makes the thin membranes that
// separate touching cells expensive to miss, which is what keeps neighbouring
// cells apart after thresholding.
//
// Images are (H, W) tensors; class maps and label images are Tensor<int32_t>.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

#include <marrow/tensor.hpp>

namespace marrow::unet {

enum class Connectivity { Four = 4, Eight = 8 };

struct Components {
  Tensor<std::int32_t> labels;  // (H, W): 0 background, 1..count numbered in raster order of first pixel
  std::int32_t count = 0;
};

namespace weights_detail {
inline void check_plane(const Shape& s, const char* op) {
  MARROW_CHECK(s.rank() == 2, op, ": expected an (H, W) image, got ", s.str());
}

// Union-find with path halving; parents are provisional labels.
inline std::int32_t find_root(std::vector<std::int32_t>& parent, std::int32_t a) {
  while (parent[std::size_t(a)] != a) {
    parent[std::size_t(a)] = parent[std::size_t(parent[std::size_t(a)])];
    a = parent[std::size_t(a)];
  }
  return a;
}
inline std::int32_t unite(std::vector<std::int32_t>& parent, std::int32_t a, std::int32_t b) {
  a = find_root(parent, a);
  b = find_root(parent, b);
  if (a == b) return a;
  if (a > b) std::swap(a, b);
  parent[std::size_t(b)] = a;  // the smaller label wins, so final numbers follow raster order
  return a;
}

constexpr double kInf = std::numeric_limits<double>::infinity();

// Felzenszwalb & Huttenlocher's 1-D squared distance transform of f (n values, stride
// `step`) in place: f(q) ← min_p (q − p)² + f(p). Lower envelope of parabolas: O(n).
inline void edt_1d(double* f, index_t n, index_t step, std::vector<double>& d, std::vector<index_t>& v,
                   std::vector<double>& z) {
  d.resize(std::size_t(n));
  v.resize(std::size_t(n));
  z.resize(std::size_t(n) + 1);
  index_t k = -1;
  for (index_t q = 0; q < n; ++q) {
    const double fq = f[q * step];
    if (fq == kInf) continue;  // an infinite parabola never enters the envelope
    double s = 0;
    while (k >= 0) {
      const index_t p = v[std::size_t(k)];
      s = ((fq + double(q * q)) - (f[p * step] + double(p * p))) / double(2 * (q - p));
      if (s > z[std::size_t(k)]) break;
      --k;
    }
    ++k;
    v[std::size_t(k)] = q;
    z[std::size_t(k)] = k == 0 ? -kInf : s;
    z[std::size_t(k) + 1] = kInf;
  }
  if (k < 0) return;  // no feature on this line: all stay infinite
  index_t j = 0;
  for (index_t q = 0; q < n; ++q) {
    while (z[std::size_t(j) + 1] < double(q)) ++j;
    const index_t p = v[std::size_t(j)];
    d[std::size_t(q)] = double((q - p) * (q - p)) + f[p * step];
  }
  for (index_t q = 0; q < n; ++q) f[q * step] = d[std::size_t(q)];
}

// Squared EDT of an (H, W) grid given as 0 at features and +inf elsewhere, in place.
inline void edt_squared(double* g, index_t H, index_t W) {
  std::vector<double> d, z;
  std::vector<index_t> v;
  for (index_t x = 0; x < W; ++x) edt_1d(g + x, H, W, d, v, z);  // columns, then rows
  for (index_t y = 0; y < H; ++y) edt_1d(g + y * W, W, 1, d, v, z);
}
}  // namespace weights_detail

// Connected components of the nonzero pixels of an (H, W) image. Four-connectivity
// (the default) keeps two cells apart when only a diagonal one-pixel membrane
// separates them.
template <class U> Components connected_components(const Tensor<U>& fg, Connectivity conn = Connectivity::Four) {
  weights_detail::check_plane(fg.shape(), "connected_components");
  const index_t H = fg.dim(0), W = fg.dim(1);
  Components c;
  c.labels = Tensor<std::int32_t>(Shape{H, W});
  std::int32_t* L = c.labels.data();
  const U* f = fg.data();
  std::vector<std::int32_t> parent{0};
  // Pass 1: provisional labels from the already-visited neighbours (W, NW, N, NE).
  for (index_t y = 0; y < H; ++y)
    for (index_t x = 0; x < W; ++x) {
      const index_t i = y * W + x;
      if (f[i] == U(0)) continue;
      std::int32_t lab = 0;
      auto take = [&](index_t j) {
        if (L[j] == 0) return;
        lab = lab == 0 ? weights_detail::find_root(parent, L[j]) : weights_detail::unite(parent, lab, L[j]);
      };
      if (x > 0) take(i - 1);
      if (y > 0) take(i - W);
      if (conn == Connectivity::Eight && y > 0) {
        if (x > 0) take(i - W - 1);
        if (x + 1 < W) take(i - W + 1);
      }
      if (lab == 0) {
        lab = std::int32_t(parent.size());
        parent.push_back(lab);
      }
      L[i] = lab;
    }
  // Pass 2: roots renumbered 1..count in order of first appearance.
  std::vector<std::int32_t> final_label(parent.size(), 0);
  for (index_t i = 0; i < H * W; ++i) {
    if (L[i] == 0) continue;
    const std::int32_t r = weights_detail::find_root(parent, L[i]);
    if (final_label[std::size_t(r)] == 0) final_label[std::size_t(r)] = ++c.count;
    L[i] = final_label[std::size_t(r)];
  }
  return c;
}

// Euclidean distance from every pixel to the nearest nonzero pixel of an (H, W)
// image (0 on those pixels; +inf everywhere when there is none). Exact.
template <class U> Tensor<double> distance_transform(const Tensor<U>& features) {
  weights_detail::check_plane(features.shape(), "distance_transform");
  const index_t H = features.dim(0), W = features.dim(1);
  Tensor<double> d = Tensor<double>::uninitialized(Shape{H, W});
  for (index_t i = 0; i < H * W; ++i) d[i] = features[i] != U(0) ? 0.0 : weights_detail::kInf;
  weights_detail::edt_squared(d.data(), H, W);
  for (auto& v : d) v = std::sqrt(v);
  return d;
}

struct WeightMapOptions {
  double w0 = 10.0;          // border weight (paper: 10)
  double sigma = 5.0;        // border width in pixels (paper: ≈ 5)
  bool balance = true;       // w_c: each class weighted by N / (2·count), so w_c averages to 1
  bool border_only = true;   // the exp term on background (membrane) pixels only, where it separates cells
};

// Distances to the nearest and second-nearest cell of every pixel, given the
// cells' label image (0 = background). A cell's own pixels are at distance 0.
// Each cell's distance field is computed only within its bounding box grown by
// `reach` pixels; beyond that both distances read +inf (for the weight map, a
// reach of 6σ makes the dropped term smaller than w0·e⁻¹⁸).
inline void nearest_two_cells(const Components& cells, index_t reach, Tensor<double>& d1, Tensor<double>& d2) {
  const index_t H = cells.labels.dim(0), W = cells.labels.dim(1);
  d1 = Tensor<double>(Shape{H, W});
  d2 = Tensor<double>(Shape{H, W});
  d1.fill(weights_detail::kInf);
  d2.fill(weights_detail::kInf);
  const std::int32_t* L = cells.labels.data();
  const auto K = std::size_t(cells.count);
  std::vector<index_t> y0(K + 1, H), y1(K + 1, -1), x0(K + 1, W), x1(K + 1, -1);  // bounding boxes, inclusive
  for (index_t y = 0; y < H; ++y)
    for (index_t x = 0; x < W; ++x) {
      const auto k = std::size_t(L[y * W + x]);
      if (k == 0) continue;
      y0[k] = std::min(y0[k], y), y1[k] = std::max(y1[k], y);
      x0[k] = std::min(x0[k], x), x1[k] = std::max(x1[k], x);
    }
  std::vector<double> g;
  for (std::size_t k = 1; k <= K; ++k) {
    const index_t wy0 = std::max<index_t>(0, y0[k] - reach), wy1 = std::min(H - 1, y1[k] + reach);
    const index_t wx0 = std::max<index_t>(0, x0[k] - reach), wx1 = std::min(W - 1, x1[k] + reach);
    const index_t h = wy1 - wy0 + 1, w = wx1 - wx0 + 1;
    g.assign(std::size_t(h * w), weights_detail::kInf);
    for (index_t y = 0; y < h; ++y)
      for (index_t x = 0; x < w; ++x)
        if (std::size_t(L[(wy0 + y) * W + wx0 + x]) == k) g[std::size_t(y * w + x)] = 0.0;
    weights_detail::edt_squared(g.data(), h, w);  // exact inside the window: the whole cell lies in it
    for (index_t y = 0; y < h; ++y)
      for (index_t x = 0; x < w; ++x) {
        const double dist = std::sqrt(g[std::size_t(y * w + x)]);
        const index_t i = (wy0 + y) * W + wx0 + x;
        if (dist < d1[i]) {
          d2[i] = d1[i];
          d1[i] = dist;
        } else if (dist < d2[i]) {
          d2[i] = dist;
        }
      }
  }
}

// The weight map of one (H, W) class map (1 = cell interior, 0 = membrane), as T.
template <class T = float> Tensor<T> unet_weight_map(const Tensor<std::int32_t>& classes, const WeightMapOptions& o = {}) {
  weights_detail::check_plane(classes.shape(), "unet_weight_map");
  MARROW_CHECK(o.sigma > 0 && o.w0 >= 0, "unet_weight_map: sigma ", o.sigma, " must be > 0 and w0 ", o.w0, " >= 0");
  const index_t H = classes.dim(0), W = classes.dim(1), N = H * W;
  index_t n_cell = 0;
  for (index_t i = 0; i < N; ++i) {
    MARROW_CHECK(classes[i] == 0 || classes[i] == 1, "unet_weight_map: class ", classes[i], " at pixel (", i / W, ", ",
                 i % W, "); expected 0 (membrane) or 1 (cell)");
    n_cell += classes[i];
  }
  double wc[2] = {1.0, 1.0};
  if (o.balance && n_cell > 0 && n_cell < N) {
    wc[0] = double(N) / (2.0 * double(N - n_cell));
    wc[1] = double(N) / (2.0 * double(n_cell));
  }
  Tensor<double> d1, d2;
  if (o.w0 > 0) nearest_two_cells(connected_components(classes), index_t(std::ceil(6 * o.sigma)) + 1, d1, d2);
  Tensor<T> w = Tensor<T>::uninitialized(Shape{H, W});
  const double inv = 1.0 / (2.0 * o.sigma * o.sigma);
  for (index_t i = 0; i < N; ++i) {
    double v = wc[classes[i]];
    if (o.w0 > 0 && (!o.border_only || classes[i] == 0) && d2[i] < weights_detail::kInf) {
      const double s = d1[i] + d2[i];
      v += o.w0 * std::exp(-s * s * inv);
    }
    w[i] = T(v);
  }
  return w;
}

}  // namespace marrow::unet
