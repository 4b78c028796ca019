#pragma once
// The colorizer's training objective: the colour loss of its head (L2 or
// smooth-L1 on ab for regression, Zhang et al.'s rebalanced soft cross entropy
// for classification) plus α times the class loss of the global features
// (Iizuka et al.'s joint training with the scene labels).
#include <algorithm>

#include <marrow/loss.hpp>
#include <marrow/ops/elementwise.hpp>

#include "data.hpp"
#include "network.hpp"

namespace marrow::colorizer {

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

}  // namespace marrow::colorizer
