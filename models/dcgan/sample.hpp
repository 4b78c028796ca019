#pragma once
// Sampling a trained DCGAN: class ids from the training set's class
// frequencies (conditioned models), then G in eval mode, in batches.
#include <algorithm>
#include <cstdint>

#include "model.hpp"

namespace marrow::gan {

// n class ids drawn from m.class_prior (empty for an unconditional model).
template <class T> Tensor<std::int32_t> draw_labels(const Dcgan<T>& m, index_t n, Rng& rng) {
  if (m.cfg.classes == 0) return {};
  Tensor<std::int32_t> y = Tensor<std::int32_t>::uninitialized({n});
  for (index_t i = 0; i < n; ++i)  // the prior holds fractions that sum to 1
    y[i] = std::int32_t(rng.pick_weighted(m.class_prior.data(), std::size_t(m.cfg.classes), 1.0));
  return y;
}

// Images of g in eval mode (running BatchNorm statistics) for latent codes z
// (N, z_dim) and class ids (N, conditioned models only), `batch` at a time.
// g's train/eval mode is restored afterwards.
template <class T>
Tensor<T> generate(Generator<T>& g, const Tensor<T>& z, const Tensor<std::int32_t>& labels = {}, index_t batch = 500) {
  MARROW_CHECK(z.ndim() == 2 && z.dim(1) == g.cfg.z_dim, "generate: z ", z.shape().str(), " is not (N, ", g.cfg.z_dim,
               ")");
  const index_t N = z.dim(0), Z = z.dim(1), S = g.cfg.image, C = g.cfg.channels;
  check_labels(labels, N, g.cfg.classes, "generate");
  const bool was_training = g.bn0.training;
  set_training<T>(g, false);
  Tensor<T> out = Tensor<T>::uninitialized({N, C, S, S});
  Tape<T> t;
  auto guard = t.no_grad();
  for (index_t s = 0; s < N; s += batch) {
    const index_t n = std::min(batch, N - s);
    Tensor<T> zb = Tensor<T>::uninitialized({n, Z});
    std::copy_n(z.data() + s * Z, n * Z, zb.data());
    Tensor<std::int32_t> yb;
    if (g.cfg.classes > 0) {
      yb = Tensor<std::int32_t>::uninitialized({n});
      std::copy_n(labels.data() + s, n, yb.data());
    }
    Var<T> x = g(t, t.input(zb), yb);
    std::copy_n(x.value().data(), x.numel(), out.data() + s * C * S * S);
    t.reset();
  }
  set_training<T>(g, was_training);
  return out;
}

}  // namespace marrow::gan
