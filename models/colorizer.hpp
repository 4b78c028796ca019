#pragma once
// Automatic colorization after Iizuka, Simo-Serra & Ishikawa 2016 ("Let there
// be Color!"): from the L channel of CIE Lab predict the a and b channels.
//
//   L ──low-level trunk (strided)──┬─ mid-level ──────────────┐
//                                  └─ global: strided convs,   │ fusion: concat the global
//                                     flatten, 2 fc ── g ──────┤ vector at every position,
//                                        └── class head        │ 1×1 conv
//                                                     decoder: convs + 2× upsampling ── ab
//
// The global branch sees the image at the training size (Iizuka resize it to
// 224²): at another size the trunk runs a second time on a resized copy, so
// the fully connected layers keep their input size while the colorization
// path works at any size divisible by 4.
//
// Two output heads (ColorizerConfig::bins):
//   0   regression: tanh output = ab / 110 at full resolution (L2 or smooth-L1 loss)
//   Q   classification (Zhang et al., color_bins.hpp): logits over Q ab bins at
//       half resolution, decoded by annealed mean and upsampled bilinearly. Half
//       resolution loses nothing on CIFAR-10, whose JPEG chroma is stored at
//       16×16, and makes the Q-way softmax 4× cheaper (Zhang predict at 1/4).
//
// Shape letters: N batch, S training size, (H, W) input size.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <marrow/data/color.hpp>
#include <marrow/loss.hpp>
#include <marrow/nn/layers.hpp>
#include <marrow/nn/module.hpp>
#include <marrow/ops/reduce.hpp>

#include "color_bins.hpp"

namespace marrow::colorizer {

inline constexpr double kAbScale = 110.0;  // network ab = Lab ab / 110, in [-1, 1]
inline constexpr double kLScale = 100.0;   // network input = L / 100, in [0, 1]

struct ColorizerConfig {
  int image_size = 32;                  // S: the global branch's input size (a multiple of 16)
  int low1 = 32, low2 = 64, low3 = 64, low4 = 128;  // low-level trunk: strides 2, 1, 2, 1
  int mid1 = 128, mid2 = 64;            // mid-level branch at S/4
  int glob1 = 128, glob2 = 128;         // global convs, stride 2 each, down to S/16
  int glob_fc1 = 128, glob_fc2 = 64;    // global fully connected layers (fc2 feeds the fusion)
  int fuse = 64;                        // fusion 1×1 conv width
  int dec1 = 64, dec2 = 32, dec3 = 16;  // decoder widths at S/4, S/2, S
  int num_classes = 10;                 // auxiliary class head on the global features (0: none)
  int class_hidden = 64;                // its hidden width
  int bins = 0;                         // 0: regression head; Q: classification over Q ab bins
};

// The network of shared/bench/colorizer_peer.py, layer for layer (no class head).
inline ColorizerConfig peer_config(int image_size = 32) {
  ColorizerConfig c;
  c.image_size = image_size;
  c.num_classes = 0;
  return c;
}

// ---- the fusion op ----------------------------------------------------------------------

// x (N, C, H, W), g (N, D) -> (N, C + D, H, W): g repeated at every position after x's channels.
template <class T> Var<T> concat_global(Tape<T>& t, const Arg<T>& x, const Arg<T>& g) {
  t.check(x, "concat_global");
  t.check(g, "concat_global");
  MARROW_CHECK(x.ndim() == 4 && g.ndim() == 2 && g.dim(0) == x.dim(0), "concat_global: map ", x.shape().str(),
               " must be (N, C, H, W) and vector ", g.shape().str(), " (N, D) with the same N");
  const index_t N = x.dim(0), C = x.dim(1), D = g.dim(1), P = x.dim(2) * x.dim(3);
  Tensor<T> out = Tensor<T>::uninitialized({N, C + D, x.dim(2), x.dim(3)});
  for (index_t n = 0; n < N; ++n) {
    std::copy_n(x.value().data() + n * C * P, C * P, out.data() + n * (C + D) * P);
    for (index_t d = 0; d < D; ++d) std::fill_n(out.data() + (n * (C + D) + C + d) * P, P, g.value()[n * D + d]);
  }
  Var<T> res = t.push(std::move(out), x, g);
  t.on_backward(res, [x, g, res, N, C, D, P] {
    const T* gy = res.grad().data();
    if (x.requires_grad()) {
      T* dx = x.grad().data();
      for (index_t n = 0; n < N; ++n)
        Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>(dx + n * C * P, C * P) +=
            Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>(gy + n * (C + D) * P, C * P);
    }
    if (g.requires_grad()) {
      T* dg = g.grad().data();
      for (index_t n = 0; n < N; ++n)
        for (index_t d = 0; d < D; ++d)
          dg[n * D + d] += Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>(gy + (n * (C + D) + C + d) * P, P).sum();
    }
  });
  return res;
}

// Area resampling of every plane of (N, C, H, W) to (N, C, S, S): each output
// pixel averages the input over its footprint (fractional at the edges), so
// downscaling does not alias. Used on the network input only (no gradient).
template <class T> Tensor<T> resize_area(const Tensor<T>& x, index_t S) {
  MARROW_CHECK(x.ndim() == 4 && S > 0, "resize_area: want (N, C, H, W) and a positive size, got ", x.shape().str(),
               " and ", S);
  const index_t planes = x.dim(0) * x.dim(1), H = x.dim(2), W = x.dim(3);
  // Taps of one axis: output o covers input [o·r, (o+1)·r), r = in / out.
  auto taps = [S](index_t in) {
    std::vector<std::vector<std::pair<index_t, double>>> tp(static_cast<std::size_t>(S));
    const double r = double(in) / double(S);
    for (index_t o = 0; o < S; ++o) {
      const double lo = double(o) * r, hi = double(o + 1) * r;
      for (index_t i = index_t(std::floor(lo)); i < std::min<index_t>(in, index_t(std::ceil(hi))); ++i) {
        const double w = std::min(hi, double(i + 1)) - std::max(lo, double(i));
        if (w > 0) tp[std::size_t(o)].push_back({i, w / r});
      }
    }
    return tp;
  };
  const auto th = taps(H), tw = taps(W);
  Tensor<T> out = Tensor<T>::uninitialized({x.dim(0), x.dim(1), S, S});
  std::vector<double> rows(std::size_t(S * W));
  for (index_t p = 0; p < planes; ++p) {
    const T* xi = x.data() + p * H * W;
    std::fill(rows.begin(), rows.end(), 0.0);
    for (index_t o = 0; o < S; ++o)
      for (auto [i, w] : th[std::size_t(o)])
        for (index_t j = 0; j < W; ++j) rows[std::size_t(o * W + j)] += w * double(xi[i * W + j]);
    for (index_t o = 0; o < S; ++o)
      for (index_t q = 0; q < S; ++q) {
        double v = 0;
        for (auto [j, w] : tw[std::size_t(q)]) v += w * rows[std::size_t(o * W + j)];
        out[(p * S + o) * S + q] = T(v);
      }
  }
  return out;
}

// ---- layers -----------------------------------------------------------------------------

template <class T> struct ColorizerOutput {
  Var<T> color;         // regression: (N, 2, H, W) ab / 110; classification: (N, Q, H/2, W/2) logits
  Var<T> class_logits;  // (N, classes), undefined without a class head
};

template <class T> struct Colorizer {
  ColorizerConfig cfg;
  ConvBnRelu<T> low1, low2, low3, low4;  // shared trunk -> (N, low4, H/4, W/4)
  ConvBnRelu<T> mid1, mid2;              // mid-level   -> (N, mid2, H/4, W/4)
  ConvBnRelu<T> glob1, glob2;            // global      -> (N, glob2, S/16, S/16)
  Linear<T> gfc1, gfc2;                  //             -> (N, glob_fc1) -> (N, glob_fc2)
  Conv2d<T> fuse;                        // 1×1 over concat(mid, g)
  ConvBnRelu<T> dec1, dec2a, dec2b;      // S/4, then S/2 after upsampling
  std::optional<ConvBnRelu<T>> dec3;     // S (regression only)
  Conv2d<T> out;                         // regression: 3×3 -> 2; classification: 1×1 -> Q
  std::optional<Linear<T>> cls1, cls2;   // class head on gfc1's features
  Tensor<T> bin_prior, bin_weights;      // (Q) classification: empirical prior and rebalancing weights

  Colorizer(const ColorizerConfig& c, Rng& rng)
      : cfg(check(c)),
        low1(1, c.low1, 2, rng), low2(c.low1, c.low2, 1, rng), low3(c.low2, c.low3, 2, rng), low4(c.low3, c.low4, 1, rng),
        mid1(c.low4, c.mid1, 1, rng), mid2(c.mid1, c.mid2, 1, rng),
        glob1(c.low4, c.glob1, 2, rng), glob2(c.glob1, c.glob2, 2, rng),
        gfc1(index_t(c.glob2) * (c.image_size / 16) * (c.image_size / 16), c.glob_fc1, rng),
        gfc2(c.glob_fc1, c.glob_fc2, rng),
        fuse(c.mid2 + c.glob_fc2, c.fuse, 1, rng),
        dec1(c.fuse, c.dec1, 1, rng), dec2a(c.dec1, c.dec2, 1, rng), dec2b(c.dec2, c.dec2, 1, rng),
        out(make_out(c, rng)) {
    if (c.num_classes > 0) {
      cls1.emplace(c.glob_fc1, c.class_hidden, rng);
      cls2.emplace(c.class_hidden, c.num_classes, rng);
    }
    if (c.bins > 0) {
      bin_prior = full<T>({c.bins}, T(1.0 / c.bins));
      bin_weights = ones<T>({c.bins});
    }
  }

  bool classification() const { return cfg.bins > 0; }

  // L: (N, 1, H, W) = L / 100, H and W multiples of 4.
  ColorizerOutput<T> operator()(Tape<T>& t, const Var<T>& L) {
    t.check(L, "colorizer");
    MARROW_CHECK(L.ndim() == 4 && L.dim(1) == 1 && L.dim(2) % 4 == 0 && L.dim(3) % 4 == 0 && L.dim(2) > 0 && L.dim(3) > 0,
                 "colorizer: input must be (N, 1, H, W) with H and W multiples of 4, got ", L.shape().str());
    const index_t S = cfg.image_size;
    Var<T> low = trunk(t, L);
    Var<T> mid = mid2(t, mid1(t, low));
    Var<T> gin = L.dim(2) == S && L.dim(3) == S ? low : trunk(t, t.input(resize_area(L.value(), S)));
    Var<T> h = relu(t, gfc1(t, flatten(t, glob2(t, glob1(t, gin)), 1)));  // (N, glob_fc1)
    Var<T> g = relu(t, gfc2(t, h));                                        // (N, glob_fc2)
    Var<T> x = relu(t, fuse(t, concat_global(t, mid, g)));                 // (N, fuse, H/4, W/4)
    x = upsample_nearest2d(t, dec1(t, x), 2);
    x = dec2b(t, dec2a(t, x));                                             // (N, dec2, H/2, W/2)
    ColorizerOutput<T> o;
    if (classification()) o.color = out(t, x);                             // (N, Q, H/2, W/2)
    else o.color = tanh(t, out(t, (*dec3)(t, upsample_nearest2d(t, x, 2))));  // (N, 2, H, W)
    if (cls1) o.class_logits = (*cls2)(t, relu(t, (*cls1)(t, h)));
    return o;
  }

  void visit(Visitor<T>& v, const std::string& prefix) {
    low1.visit(v, join_name(prefix, "low.0"));
    low2.visit(v, join_name(prefix, "low.1"));
    low3.visit(v, join_name(prefix, "low.2"));
    low4.visit(v, join_name(prefix, "low.3"));
    mid1.visit(v, join_name(prefix, "mid.0"));
    mid2.visit(v, join_name(prefix, "mid.1"));
    glob1.visit(v, join_name(prefix, "glob_conv.0"));
    glob2.visit(v, join_name(prefix, "glob_conv.1"));
    gfc1.visit(v, join_name(prefix, "glob_fc.0"));
    gfc2.visit(v, join_name(prefix, "glob_fc.1"));
    fuse.visit(v, join_name(prefix, "fuse"));
    dec1.visit(v, join_name(prefix, "color1"));
    dec2a.visit(v, join_name(prefix, "color2.0"));
    dec2b.visit(v, join_name(prefix, "color2.1"));
    if (dec3) dec3->visit(v, join_name(prefix, "color3"));
    out.visit(v, join_name(prefix, "out"));
    if (cls1) cls1->visit(v, join_name(prefix, "cls.0"));
    if (cls2) cls2->visit(v, join_name(prefix, "cls.1"));
    if (classification()) {
      v.visit_buffer(join_name(prefix, "bins.prior"), bin_prior);
      v.visit_buffer(join_name(prefix, "bins.weights"), bin_weights);
    }
  }

 private:
  Var<T> trunk(Tape<T>& t, const Var<T>& L) { return low4(t, low3(t, low2(t, low1(t, L)))); }

  static const ColorizerConfig& check(const ColorizerConfig& c) {
    MARROW_CHECK(c.image_size >= 16 && c.image_size % 16 == 0, "Colorizer: image_size ", c.image_size,
                 " must be a positive multiple of 16 (the global branch's total stride)");
    for (int w : {c.low1, c.low2, c.low3, c.low4, c.mid1, c.mid2, c.glob1, c.glob2, c.glob_fc1, c.glob_fc2, c.fuse,
                  c.dec1, c.dec2, c.dec3})
      MARROW_CHECK(w > 0, "Colorizer: every width must be positive, got ", w);
    MARROW_CHECK(c.num_classes >= 0 && c.bins >= 0 && c.bins != 1, "Colorizer: num_classes ", c.num_classes,
                 " must be >= 0 and bins ", c.bins, " 0 (regression) or >= 2");
    MARROW_CHECK(c.num_classes == 0 || c.class_hidden > 0, "Colorizer: class_hidden must be positive");
    return c;
  }
  Conv2d<T> make_out(const ColorizerConfig& c, Rng& rng) {
    if (c.bins > 0) return Conv2d<T>(c.dec2, c.bins, 1, rng);
    dec3.emplace(c.dec2, c.dec3, 1, rng);  // built here so the draw order follows the data flow
    return Conv2d<T>(c.dec3, 2, 3, rng, {.padding = 1});
  }
};

// ---- data ------------------------------------------------------------------------------

// A labelled image set held as planar Lab: (N, 3, H, W), L in [0, 100].
struct LabSet {
  Tensor<float> lab;
  Tensor<std::int32_t> labels;  // (N)
  std::vector<std::string> classes;
  index_t size() const { return lab.defined() ? lab.dim(0) : 0; }
};

// RGB in [0, 1] (N, 3, H, W), converted in place to Lab (no second copy of a 600 MB set).
inline void rgb_to_lab_inplace(Tensor<float>& x) {
  MARROW_CHECK(x.ndim() == 4 && x.dim(1) == 3, "rgb_to_lab_inplace: want (N, 3, H, W), got ", x.shape().str());
  const index_t N = x.dim(0), P = x.dim(2) * x.dim(3);
#pragma omp parallel for if (N > 64)
  for (index_t n = 0; n < N; ++n) {
    float* p = x.data() + n * 3 * P;
    for (index_t i = 0; i < P; ++i) {
      const auto v = data::rgb_to_lab(p[i], p[P + i], p[2 * P + i]);
      p[i] = v[0], p[P + i] = v[1], p[2 * P + i] = v[2];
    }
  }
}

struct AugmentOptions {
  int crop_pad = 4;   // random crop of the original size from the image reflect-padded by this much
  bool hflip = true;  // random left-right mirror
};

template <class T> struct ColorBatch {
  Tensor<T> L;                  // (N, 1, H, W) L / 100
  Tensor<T> ab;                 // (N, 2, H, W) ab / 110
  Tensor<std::int32_t> labels;  // (N)
  SoftTargets<T> soft;          // classification: targets at (H/2, W/2)
};

// Samples `idx` of the set, randomly shifted (reflect padding) and mirrored:
// a gather straight into the batch, no intermediate images.
template <class T>
ColorBatch<T> make_batch(const LabSet& set, const std::vector<index_t>& idx, Rng& rng, const AugmentOptions& aug,
                         const Colorizer<T>* model_for_bins = nullptr) {
  const index_t B = index_t(idx.size()), H = set.lab.dim(2), W = set.lab.dim(3), P = H * W;
  ColorBatch<T> b{Tensor<T>::uninitialized({B, 1, H, W}), Tensor<T>::uninitialized({B, 2, H, W}),
                  Tensor<std::int32_t>::uninitialized({B}), {}};
  auto reflect = [](index_t i, index_t n) { return i < 0 ? -i : (i >= n ? 2 * (n - 1) - i : i); };
  for (index_t k = 0; k < B; ++k) {
    const index_t n = idx[std::size_t(k)];
    const int pad = aug.crop_pad;
    const index_t dy = pad ? index_t(rng.below(2 * pad + 1)) - pad : 0, dx = pad ? index_t(rng.below(2 * pad + 1)) - pad : 0;
    const bool flip = aug.hflip && rng.uniform() < 0.5;
    const float* src = set.lab.data() + n * 3 * P;
    for (index_t i = 0; i < H; ++i) {
      const index_t si = reflect(i + dy, H);
      for (index_t j = 0; j < W; ++j) {
        const index_t sj = reflect((flip ? W - 1 - j : j) + dx, W), s = si * W + sj, d = i * W + j;
        b.L[k * P + d] = T(src[s] / kLScale);
        b.ab[(k * 2) * P + d] = T(src[P + s] / kAbScale);
        b.ab[(k * 2 + 1) * P + d] = T(src[2 * P + s] / kAbScale);
      }
    }
    b.labels[k] = set.labels[n];
  }
  if (model_for_bins && model_for_bins->classification()) {  // targets at the head's half resolution
    Tensor<T> half = Tensor<T>::uninitialized({B, 2, H / 2, W / 2});
    const index_t W2 = W / 2, P2 = (H / 2) * W2;
    for (index_t c = 0; c < 2 * B; ++c)
      for (index_t i = 0; i < H / 2; ++i)
        for (index_t j = 0; j < W2; ++j) {
          const T* s = b.ab.data() + c * P + 2 * i * W + 2 * j;
          half[c * P2 + i * W2 + j] = T(0.25 * kAbScale) * (s[0] + s[1] + s[W] + s[W + 1]);
        }
    b.soft = soft_encode(ColorBins::standard(), half, &model_for_bins->bin_weights);
  }
  return b;
}

// The empirical bin distribution of a set's ab (every pixel of every image).
inline Tensor<float> compute_bin_prior(const LabSet& set) {
  const ColorBins& bins = ColorBins::standard();
  const index_t N = set.size(), P = set.lab.dim(2) * set.lab.dim(3);
  BinHistogram hist(bins);
  for (index_t n = 0; n < N; ++n) {
    const float* p = set.lab.data() + n * 3 * P;
    hist.add(bins, p + P, p + 2 * P, P);
  }
  return hist.prior<float>();
}

// ---- loss and prediction ------------------------------------------------------------

enum class ColorLoss { L2, SmoothL1, Classify };

struct LossOptions {
  ColorLoss kind = ColorLoss::L2;
  double alpha = 1.0 / 300.0;   // weight of the class loss (Iizuka's α)
  double smooth_l1_beta = 5.0;  // smooth-L1 transition, in Lab ab units
};

template <class T> struct LossTerms {
  Var<T> total;
  double color = 0, cls = 0, cls_acc = 0;
};

template <class T>
LossTerms<T> colorizer_loss(Tape<T>& t, Colorizer<T>& model, const ColorizerOutput<T>& o, const ColorBatch<T>& b,
                            const LossOptions& opt) {
  LossTerms<T> r;
  Var<T> color;
  if (opt.kind == ColorLoss::Classify) {
    MARROW_CHECK(model.classification(), "colorizer_loss: the classification loss needs a model built with bins > 0");
    color = soft_cross_entropy(t, o.color, b.soft);
  } else {
    MARROW_CHECK(!model.classification(), "colorizer_loss: a regression loss needs a model built with bins = 0");
    color = opt.kind == ColorLoss::L2 ? mse(t, o.color, b.ab) : smooth_l1(t, o.color, b.ab, T(opt.smooth_l1_beta / kAbScale));
  }
  r.color = double(color.item());
  r.total = color;
  if (o.class_logits.defined()) {
    Var<T> ce = cross_entropy(t, o.class_logits, b.labels);
    r.cls = double(ce.item());
    const index_t N = o.class_logits.dim(0), C = o.class_logits.dim(1);
    int right = 0;
    for (index_t n = 0; n < N; ++n) {
      const T* row = o.class_logits.value().data() + n * C;
      right += index_t(std::max_element(row, row + C) - row) == b.labels[n];
    }
    r.cls_acc = double(right) / double(N);
    if (opt.alpha > 0) r.total = add(t, color, mul_scalar(t, ce, T(opt.alpha)));
  }
  return r;
}

// How classification outputs become colours (color_bins.hpp, annealed_mean).
struct Decoding {
  double temperature = 0.38;      // Zhang's annealed-mean temperature
  double prior_correction = 0.4;  // β: how much of the rebalancing to take back out (0: Zhang's decoding)
};

// ab (N, 2, H, W) in Lab units for L (N, 1, H, W) = L / 100; runs without recording.
// Classification outputs are decoded by annealed mean and upsampled to full size.
template <class T>
Tensor<T> predict_ab(Tape<T>& t, Colorizer<T>& model, const Tensor<T>& L, const Decoding& dec = {}) {
  auto guard = t.no_grad();
  ColorizerOutput<T> o = model(t, t.input(L));
  if (!model.classification()) {
    Tensor<T> ab = o.color.value().clone();
    ab.arr() *= T(kAbScale);
    return ab;
  }
  Tensor<T> half =
      annealed_mean(o.color.value(), ColorBins::standard(), dec.temperature, &model.bin_weights, dec.prior_correction);
  return upsample_bilinear2d(t, t.input(half), 2).value();
}

// Planar Lab (N, 3, H, W) from L (N, 1, H, W) in Lab units and ab (N, 2, H, W).
template <class T> Tensor<T> join_lab(const Tensor<T>& L, const Tensor<T>& ab) {
  const index_t N = L.dim(0), P = L.dim(2) * L.dim(3);
  MARROW_CHECK(ab.numel() == 2 * N * P, "join_lab: L ", L.shape().str(), " and ab ", ab.shape().str(), " differ in size");
  Tensor<T> lab = Tensor<T>::uninitialized({N, 3, L.dim(2), L.dim(3)});
  for (index_t n = 0; n < N; ++n) {
    std::copy_n(L.data() + n * P, P, lab.data() + n * 3 * P);
    std::copy_n(ab.data() + n * 2 * P, 2 * P, lab.data() + n * 3 * P + P);
  }
  return lab;
}

}  // namespace marrow::colorizer

/* Backward rules (g = upstream gradient):
   concat_global   dx += g[:, :C]      dg[n, d] += Σ_{h,w} g[n, C + d, h, w]
   (the loss of the classification head is soft_cross_entropy, see color_bins.hpp)
*/
