#pragma once
// Automatic colorization after Iizuka, Simo-Serra & Ishikawa 2016 ("Let there
// be Color!"): from the L channel of CIE Lab predict the a and b channels.
// The network of their Figure 2, top to bottom:
//
//   L ── low-level features (4 convs, strides 2 1 2 1) ──┬── mid-level features (2 convs) ──┐
//                                                        │                                   │ fusion: the global vector
//                                                        └── global features: 2 strided      │ joined to every position,
//                                                            convs, flatten, 2 fc ── g ──────┤ then a 1×1 conv
//                                                                └── class head (aux.)       │
//                                    colorization network: convs and 2× upsamplings ── ab ──┘
//
// The global features see the image at the training size S (Iizuka resize it
// to 224²): at another size the low-level features run a second time on a
// resized copy, so the fully connected layers keep their input size while the
// colorization path works at any size divisible by 4.
//
// Two output heads (ColorizerConfig::bins):
//   0   regression: tanh output = ab / 110 at full resolution (L2 or smooth-L1 loss)
//   Q   classification (Zhang et al., bins.hpp): logits over Q ab bins at
//       half resolution, decoded by annealed mean and upsampled bilinearly
//       (predict.hpp). Half resolution loses nothing on CIFAR-10, whose JPEG
//       chroma is stored at 16×16, and makes the Q-way softmax 4× cheaper
//       (Zhang predict at 1/4).
//
// Shape letters: N batch, S training size, (H, W) input size.
#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <marrow/nn/layers.hpp>
#include <marrow/nn/module.hpp>
#include <marrow/ops/shape.hpp>

#include "bins.hpp"

namespace marrow::colorizer {

inline constexpr double kAbScale = 110.0;  // network ab = Lab ab / 110, in [-1, 1]
inline constexpr double kLScale = 100.0;   // network input = L / 100, in [0, 1]

struct ColorizerConfig {
  int image_size = 32;                  // S: the global features' input size (a multiple of 16)
  int low1 = 32, low2 = 64, low3 = 64, low4 = 128;  // low-level features: strides 2, 1, 2, 1
  int mid1 = 128, mid2 = 64;            // mid-level features at S/4
  int glob1 = 128, glob2 = 128;         // global convs, stride 2 each, down to S/16
  int glob_fc1 = 128, glob_fc2 = 64;    // global fully connected layers (fc2 feeds the fusion)
  int fuse = 64;                        // fusion 1×1 conv width
  int dec1 = 64, dec2 = 32, dec3 = 16;  // colorization network widths at S/4, S/2, S
  int num_classes = 10;                 // auxiliary class head on the global features (0: none)
  int class_hidden = 64;                // its hidden width
  int bins = 0;                         // 0: regression head; Q: classification over Q ab bins
  Decoding decoding;                    // classification: how predict_ab turns bins into colours

  template <class F> void fields(F& f) {
    f("image_size", image_size);
    f("low1", low1), f("low2", low2), f("low3", low3), f("low4", low4);
    f("mid1", mid1), f("mid2", mid2);
    f("glob1", glob1), f("glob2", glob2), f("glob_fc1", glob_fc1), f("glob_fc2", glob_fc2);
    f("fuse", fuse);
    f("dec1", dec1), f("dec2", dec2), f("dec3", dec3);
    f("num_classes", num_classes), f("class_hidden", class_hidden);
    f("bins", bins);
    f("temperature", decoding.temperature), f("prior_correction", decoding.prior_correction);
  }
  void validate() const {
    MARROW_CHECK(image_size >= 16 && image_size % 16 == 0, "Colorizer: image_size ", image_size,
                 " must be a positive multiple of 16 (the global features' total stride)");
    for (int w : {low1, low2, low3, low4, mid1, mid2, glob1, glob2, glob_fc1, glob_fc2, fuse, dec1, dec2, dec3})
      MARROW_CHECK(w > 0, "Colorizer: every width must be positive, got ", w);
    MARROW_CHECK(num_classes >= 0 && bins >= 0 && bins != 1, "Colorizer: num_classes ", num_classes,
                 " must be >= 0 and bins ", bins, " 0 (regression) or >= 2");
    MARROW_CHECK(num_classes == 0 || class_hidden > 0, "Colorizer: class_hidden must be positive");
  }
};

// The network of shared/bench/colorizer_peer.py, layer for layer (no class head).
inline ColorizerConfig peer_config(int image_size = 32) {
  ColorizerConfig c;
  c.image_size = image_size;
  c.num_classes = 0;
  return c;
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

// ---- the network ------------------------------------------------------------------------

template <class T> struct ColorizerOutput {
  Var<T> color;         // regression: (N, 2, H, W) ab / 110; classification: (N, Q, H/2, W/2) logits
  Var<T> class_logits;  // (N, classes), undefined without a class head
};

template <class T> struct Colorizer {
  ColorizerConfig cfg;
  ConvBnRelu<T> low1, low2, low3, low4;  // low-level features  -> (N, low4, H/4, W/4)
  ConvBnRelu<T> mid1, mid2;              // mid-level features  -> (N, mid2, H/4, W/4)
  ConvBnRelu<T> glob1, glob2;            // global features     -> (N, glob2, S/16, S/16)
  Linear<T> gfc1, gfc2;                  //                     -> (N, glob_fc1) -> (N, glob_fc2)
  Conv2d<T> fuse;                        // fusion: 1×1 over concat_global(mid, g)
  ConvBnRelu<T> dec1, dec2a, dec2b;      // colorization network: S/4, then S/2 after upsampling
  std::optional<ConvBnRelu<T>> dec3;     //   S (regression only)
  Conv2d<T> out;                         //   regression: 3×3 -> 2; classification: 1×1 -> Q
  std::optional<Linear<T>> cls1, cls2;   // class head on gfc1's features
  Tensor<T> bin_prior, bin_weights;      // (Q) classification: empirical prior and rebalancing weights

  // Layers are built in data-flow order: that order fixes the draws from rng.
  Colorizer(const ColorizerConfig& c, Rng& rng)
      : cfg(validated(c)),
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
    Var<T> low = low_level(t, L);                                          // (N, low4, H/4, W/4)
    Var<T> mid = mid2(t, mid1(t, low));                                    // (N, mid2, H/4, W/4)
    Var<T> gin = L.dim(2) == S && L.dim(3) == S ? low : low_level(t, t.input(resize_area(L.value(), S)));
    Var<T> h = relu(t, gfc1(t, flatten(t, glob2(t, glob1(t, gin)), 1)));  // (N, glob_fc1)
    Var<T> g = relu(t, gfc2(t, h));                                        // (N, glob_fc2)
    Var<T> x = relu(t, fuse(t, concat_global(t, mid, g)));                 // (N, fuse, H/4, W/4)
    x = upsample_nearest2d(t, dec1(t, x), 2);
    x = dec2b(t, dec2a(t, x));                                             // (N, dec2, H/2, W/2)
    ColorizerOutput<T> o;
    if (classification()) o.color = out(t, x);                             // (N, Q, H/2, W/2)
    else o.color = tanh(t, out(t, (*dec3)(t, upsample_nearest2d(t, x, 2))));  // (N, 2, H, W)
    if (cls1) o.class_logits = (*cls2)(t, relu(t, (*cls1)(t, h)));         // (N, num_classes)
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
  Var<T> low_level(Tape<T>& t, const Var<T>& L) { return low4(t, low3(t, low2(t, low1(t, L)))); }

  static const ColorizerConfig& validated(const ColorizerConfig& c) {
    c.validate();
    return c;
  }
  Conv2d<T> make_out(const ColorizerConfig& c, Rng& rng) {
    if (c.bins > 0) return Conv2d<T>(c.dec2, c.bins, 1, rng);
    dec3.emplace(c.dec2, c.dec3, 1, rng);  // built here so the draw order follows the data flow
    return Conv2d<T>(c.dec3, 2, 3, rng, {.padding = 1});
  }
};

}  // namespace marrow::colorizer
