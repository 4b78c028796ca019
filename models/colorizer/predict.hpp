#pragma once
// Colours from a trained colorizer: ab for an L channel, decoded from the
// classification head by annealed mean (bins.hpp) and brought back to full
// resolution, and the Lab image they make together.
#include <algorithm>

#include <marrow/ops/pool.hpp>

#include "bins.hpp"
#include "network.hpp"

namespace marrow::colorizer {

// ab (N, 2, H, W) in Lab units for L (N, 1, H, W) = L / 100; runs without recording.
template <class T> Tensor<T> predict_ab(Tape<T>& t, Colorizer<T>& model, const Tensor<T>& L, const Decoding& dec) {
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
// Decoded the way the model was trained to be.
template <class T> Tensor<T> predict_ab(Tape<T>& t, Colorizer<T>& model, const Tensor<T>& L) {
  return predict_ab(t, model, L, model.cfg.decoding);
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
