#pragma once
// The U-Net's training loss: pixel-wise cross-entropy, optionally weighted by
// the paper's weight map (weights.hpp), soft Dice, or both. Built from
// loss.hpp's losses, so its gradient is theirs.
#include <cmath>
#include <cstdint>
#include <type_traits>

#include <marrow/loss.hpp>
#include <marrow/ops/elementwise.hpp>
#include <marrow/ops/nn.hpp>

namespace marrow::unet {

struct LossOptions {
  bool cross_entropy = true;  // pixel-wise cross-entropy
  bool weight_map = false;    // … multiplied by the paper's weight map (weights.hpp)
  bool dice = false;          // soft Dice on the softmax probabilities
  double dice_weight = 1.0;   // total = CE + dice_weight·Dice
};

template <class T> struct LossParts {
  Var<T> total;
  double ce = 0, dice = 0;  // NaN when not part of the loss
};

// logits (N, K, Ho, Wo), target (N, Ho, Wo), weights (N, Ho, Wo) or nullptr.
template <class T>
LossParts<T> segmentation_loss(Tape<T>& t, const Var<T>& logits, const Tensor<std::int32_t>& target,
                               const std::type_identity_t<Tensor<T>>* weights, const LossOptions& o) {
  MARROW_CHECK(o.cross_entropy || o.dice, "segmentation_loss: choose cross-entropy, Dice or both");
  MARROW_CHECK(!o.weight_map || weights, "segmentation_loss: weight_map set but no weights given");
  LossParts<T> r{Var<T>(), std::nan(""), std::nan("")};
  if (o.cross_entropy) {
    CrossEntropyOptions<T> ce;
    if (o.weight_map) ce.pixel_weights = weights;
    r.total = cross_entropy(t, logits, target, ce);
    r.ce = r.total.item();
  }
  if (o.dice) {
    Var<T> d = soft_dice_loss(t, softmax(t, logits, 1), target);
    r.dice = d.item();
    d = mul_scalar(t, d, T(o.dice_weight));
    r.total = r.total.defined() ? add(t, r.total, d) : d;
  }
  return r;
}

}  // namespace marrow::unet
