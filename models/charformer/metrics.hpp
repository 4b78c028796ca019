#pragma once
// What a run measures besides its training loss: loss estimates on a split
// (nanoGPT's estimate_loss, and every character once for `eval`), and the
// per-block norms and attention entropy logged on diagnostic steps.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include <marrow/data/text.hpp>

#include "model.hpp"

namespace marrow::charformer {

// ---- loss estimates ---------------------------------------------------------------------------
// Mean loss over `iters` random batches of (batch, block_size) windows drawn from `seed`
// (nanoGPT's estimate_loss, with batches fixed so evaluations compare like with like).
template <class T>
double mean_loss_random(GPT<T>& model, const std::vector<std::int32_t>& tokens, int batch, int iters,
                        std::uint64_t seed, Tape<T>& tape) {
  set_training<T>(model, false);
  Rng r(seed);
  double total = 0;
  for (int i = 0; i < iters; ++i) {
    data::TextBatch b = data::sample_text_batch(tokens, batch, model.config.block_size, r);
    tape.reset();
    auto guard = tape.no_grad();
    total += double(model.loss(tape, b.x, b.y).item());
  }
  set_training<T>(model, true);
  return total / iters;
}

// Mean loss over every character of `tokens` but the first, in consecutive windows of
// block_size (the last one shorter): each character is predicted exactly once.
template <class T> double mean_loss_full(GPT<T>& model, const std::vector<std::int32_t>& tokens, Tape<T>& tape) {
  const index_t bs = model.config.block_size, n = index_t(tokens.size()) - 1;
  MARROW_CHECK(n > 0, "charformer eval: need at least 2 characters, got ", tokens.size());
  constexpr index_t kRows = 32;  // windows per forward pass
  set_training<T>(model, false);
  double total = 0;
  for (index_t s = 0; s < n;) {
    // full windows go kRows at a time; the short tail alone
    const index_t rows = n - s >= bs ? std::min(kRows, (n - s) / bs) : 1, len = std::min(bs, n - s);
    Tensor<std::int32_t> x = Tensor<std::int32_t>::uninitialized(Shape{rows, len});
    Tensor<std::int32_t> y = Tensor<std::int32_t>::uninitialized(Shape{rows, len});
    for (index_t r = 0; r < rows; ++r) {
      std::copy_n(tokens.data() + s + r * len, len, x.data() + r * len);
      std::copy_n(tokens.data() + s + r * len + 1, len, y.data() + r * len);
    }
    tape.reset();
    auto guard = tape.no_grad();
    total += double(model.loss(tape, x, y).item()) * double(rows * len);
    s += rows * len;
  }
  set_training<T>(model, true);
  return total / double(n);
}

// ---- diagnostics ----------------------------------------------------------------------------
// Per block, the L2 norms of the attention sub-layer's parameters (ln_1 + attn)
// and of the MLP's (ln_2 + mlp), and their gradients.
struct BlockNorms {
  double attn_grad = 0, attn_weight = 0, mlp_grad = 0, mlp_weight = 0;
};
template <class T> std::vector<BlockNorms> block_norms(GPT<T>& model) {
  std::vector<BlockNorms> out(model.h.size());
  auto sq = [](const Tensor<T>& x) {
    double s = 0;
    for (index_t i = 0; i < x.numel(); ++i) s += double(x[i]) * double(x[i]);
    return s;
  };
  for (std::size_t i = 0; i < model.h.size(); ++i) {
    auto acc = [&](auto& part, const char* name, double& g, double& w) {
      for (auto& p : parameters<T>(part, name)) {
        w += sq(p.param->value());
        if (p.param->has_grad()) g += sq(p.param->grad());
      }
    };
    BlockNorms& b = out[i];
    acc(model.h[i].ln_1, "ln_1", b.attn_grad, b.attn_weight);
    acc(model.h[i].attn, "attn", b.attn_grad, b.attn_weight);
    acc(model.h[i].ln_2, "ln_2", b.mlp_grad, b.mlp_weight);
    acc(model.h[i].mlp, "mlp", b.mlp_grad, b.mlp_weight);
    for (double* v : {&b.attn_grad, &b.attn_weight, &b.mlp_grad, &b.mlp_weight}) *v = std::sqrt(*v);
  }
  return out;
}

// Mean entropy (nats) of the attention rows, from the per-row entropies (B, nh, T) the
// attention op returns. A head that collapses onto one key gives 0; uniform causal
// attention over T keys ≈ log T − 1.
template <class T> double attention_entropy(const Tensor<T>& row_entropy) {
  MARROW_CHECK(row_entropy.ndim() == 3, "attention_entropy: row entropies must be (B, nh, T), got ",
               row_entropy.shape().str());
  double total = 0;
  for (index_t r = 0; r < row_entropy.numel(); ++r) total += double(row_entropy[r]);
  return row_entropy.numel() ? total / double(row_entropy.numel()) : 0.0;
}

}  // namespace marrow::charformer
