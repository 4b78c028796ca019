#pragma once
// The colorizer's training data: a labelled photo set held as planar CIE Lab,
// and batches drawn from it with random shifts and mirrors (the augmentation),
// with Zhang et al.'s soft-encoded targets for the classification head.
//
// Shape letters: N images, B batch, (H, W) image size, P = H·W.
#include <cstdint>
#include <string>
#include <vector>

#include <marrow/dist/shards.hpp>
#include <marrow/data/color.hpp>
#include <marrow/loss.hpp>
#include <marrow/rng.hpp>
#include <marrow/shape.hpp>

#include "bins.hpp"
#include "network.hpp"

namespace marrow::colorizer {

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

struct AugmentOptions {
  int crop_pad = 4;   // random crop of the original size from the image reflect-padded by this much
  bool hflip = true;  // random left-right mirror
};

template <class T> struct ColorBatch {
  Tensor<T> L;                  // (B, 1, H, W) L / 100
  Tensor<T> ab;                 // (B, 2, H, W) ab / 110
  Tensor<std::int32_t> labels;  // (B)
  SoftTargets<T> soft;          // classification: targets at (H/2, W/2)
};

// Samples [b0, b1) of a batch: one shard's part under data parallelism.
template <class T> ColorBatch<T> batch_rows(const ColorBatch<T>& b, std::int64_t b0, std::int64_t b1) {
  auto rows = [&](const auto& t) { return t.defined() ? dist::batch_rows(t, b0, b1) : std::decay_t<decltype(t)>(); };
  return {rows(b.L), rows(b.ab), rows(b.labels), {rows(b.soft.idx), rows(b.soft.weight), rows(b.soft.pixel_weight)}};
}

// Images `idx` of the set, randomly shifted (reflect padding) and mirrored: a
// gather straight into the batch, no intermediate images. `bin_weights` (Q, the
// classification head's rebalancing weights) asks for soft targets too.
template <class T>
ColorBatch<T> make_batch(const LabSet& set, const std::vector<index_t>& idx, Rng& rng, const AugmentOptions& aug,
                         const Tensor<T>* bin_weights = nullptr) {
  const index_t B = index_t(idx.size()), H = set.lab.dim(2), W = set.lab.dim(3), P = H * W;
  ColorBatch<T> b{Tensor<T>::uninitialized({B, 1, H, W}), Tensor<T>::uninitialized({B, 2, H, W}),
                  Tensor<std::int32_t>::uninitialized({B}), {}};
  for (index_t k = 0; k < B; ++k) {
    const index_t n = idx[std::size_t(k)];
    const int pad = aug.crop_pad;
    const index_t dy = pad ? index_t(rng.below(2 * pad + 1)) - pad : 0, dx = pad ? index_t(rng.below(2 * pad + 1)) - pad : 0;
    const bool flip = aug.hflip && rng.uniform() < 0.5;
    const float* src = set.lab.data() + n * 3 * P;
    for (index_t i = 0; i < H; ++i) {
      const index_t si = reflect_index(i + dy, H);
      for (index_t j = 0; j < W; ++j) {
        const index_t sj = reflect_index((flip ? W - 1 - j : j) + dx, W), s = si * W + sj, d = i * W + j;
        b.L[k * P + d] = T(src[s] / kLScale);
        b.ab[(k * 2) * P + d] = T(src[P + s] / kAbScale);
        b.ab[(k * 2 + 1) * P + d] = T(src[2 * P + s] / kAbScale);
      }
    }
    b.labels[k] = set.labels[n];
  }
  if (bin_weights) {  // targets at the classification head's half resolution
    Tensor<T> half = Tensor<T>::uninitialized({B, 2, H / 2, W / 2});
    const index_t W2 = W / 2, P2 = (H / 2) * W2;
    for (index_t c = 0; c < 2 * B; ++c)
      for (index_t i = 0; i < H / 2; ++i)
        for (index_t j = 0; j < W2; ++j) {
          const T* s = b.ab.data() + c * P + 2 * i * W + 2 * j;
          half[c * P2 + i * W2 + j] = T(0.25 * kAbScale) * (s[0] + s[1] + s[W] + s[W + 1]);
        }
    b.soft = soft_encode(ColorBins::standard(), half, bin_weights);
  }
  return b;
}

}  // namespace marrow::colorizer
