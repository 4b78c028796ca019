#pragma once
// The GAN objectives, composed from bce_with_logits, relu and mean (their
// backward rules are those ops'; the gradients they add up to are listed at the end).
//
// NonSaturating: D  BCE(D(x), 1) + BCE(D(G(z)), 0);   G  BCE(D(G(z)), 1)   (−log D(G(z)))
// Minimax:       D  as above;                          G  −BCE(D(G(z)), 0)  (log(1 − D(G(z))), saturates)
// Hinge:         D  mean relu(1 − D(x)) + mean relu(1 + D(G(z)));   G  −mean D(G(z))
#include <string>

#include <marrow/loss.hpp>
#include <marrow/ops/reduce.hpp>

namespace marrow::gan {

enum class GanLoss { NonSaturating, Minimax, Hinge };

inline GanLoss parse_gan_loss(const std::string& s) {
  if (s == "ns" || s == "non-saturating") return GanLoss::NonSaturating;
  if (s == "minimax") return GanLoss::Minimax;
  if (s == "hinge") return GanLoss::Hinge;
  throw Error("unknown GAN loss '" + s + "' (expected ns, minimax or hinge)");
}
inline const char* gan_loss_name(GanLoss l) {
  return l == GanLoss::Hinge ? "hinge" : l == GanLoss::Minimax ? "minimax" : "ns";
}

// real_target < 1 is one-sided label smoothing (only the real side is softened;
// softening the fake side would reward D for leaving fakes where they are).
// The hinge loss has no labels and ignores it.
template <class T>
Var<T> discriminator_loss(Tape<T>& t, const Arg<T>& real_logits, const Arg<T>& fake_logits, GanLoss kind,
                          T real_target = T(1)) {
  t.check(real_logits, "discriminator_loss");
  t.check(fake_logits, "discriminator_loss");
  MARROW_CHECK(real_logits.ndim() == 1 && fake_logits.ndim() == 1, "discriminator_loss: logits ",
               real_logits.shape().str(), " and ", fake_logits.shape().str(), " must be (N)");
  if (kind == GanLoss::Hinge)
    return add(t, mean(t, relu(t, add_scalar(t, neg(t, real_logits), T(1)))),
               mean(t, relu(t, add_scalar(t, fake_logits, T(1)))));
  return add(t, bce_with_logits(t, real_logits, full<T>(real_logits.shape(), real_target)),
             bce_with_logits(t, fake_logits, zeros<T>(fake_logits.shape())));
}

template <class T> Var<T> generator_loss(Tape<T>& t, const Arg<T>& fake_logits, GanLoss kind) {
  t.check(fake_logits, "generator_loss");
  MARROW_CHECK(fake_logits.ndim() == 1, "generator_loss: logits ", fake_logits.shape().str(), " must be (N)");
  switch (kind) {
    case GanLoss::NonSaturating: return bce_with_logits(t, fake_logits, ones<T>(fake_logits.shape()));
    case GanLoss::Minimax: return neg(t, bce_with_logits(t, fake_logits, zeros<T>(fake_logits.shape())));
    case GanLoss::Hinge: return neg(t, mean(t, fake_logits));
  }
  return Var<T>();
}

}  // namespace marrow::gan

/* Gradients (s = σ(logit), y = real target):
   D, ns/minimax   ∂/∂D(x) = (s − y)/N          ∂/∂D(G(z)) = s/N
   D, hinge        ∂/∂D(x) = −[D(x) < 1]/N       ∂/∂D(G(z)) = [D(G(z)) > −1]/N
   G, ns           ∂/∂D(G(z)) = (s − 1)/N        G, minimax  −s/N        G, hinge  −1/N
   Instance noise is a constant added to D's inputs: gradients pass through unchanged.
*/
