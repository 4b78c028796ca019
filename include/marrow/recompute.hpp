#pragma once
// Activation recompute (gradient checkpointing): trade a second forward pass of
// a segment for not keeping its intermediate tensors between forward and backward.
//
//   Var<T> y = recompute(t, [&](Tape<T>& s, const std::vector<Var<T>>& in) { return block(s, in[0]); },
//                        {x}, {&block.dropout.rng});
//
// Forward runs `segment` on the tape's child (Tape::child()) on leaves that
// share the inputs' storage, keeps its output as ONE node of `t`, and resets
// the child: the segment's intermediates are gone. Backward runs the segment
// again on the child and back-propagates the output's gradient through it.
//
// The result is exact, not close: the gradients are the bits of the plain path.
//  - The re-run's leaves add into their inputs' gradient buffers (or hand over
//    the ones they start), and its output's gradient is the checkpoint node's
//    buffer (Tape::backward_from): every addition happens on the same buffer in
//    the same order as without recompute, even for an input also used outside.
//  - Parameters used inside accumulate straight into their gradients (their
//    nodes outlive tapes), at the same point of the reverse loop as they would.
//  - Random draws replay: `rngs` names every generator the segment draws from
//    (dropout). Their states are saved as the forward starts; the re-run draws
//    from those saved states, and afterwards each generator is put back where
//    it was, so the draws of later steps do not change either.
//  - The parameters used inside are recorded in `t`'s param_uses() at the
//    checkpoint node, whose closure is the one that adds to their gradients:
//    data-parallel bucket overlap (dist/data_parallel.hpp) stays correct.
// Under no_grad (inference, evaluation) the segment just runs on `t`.
//
// The segment must be a function of its inputs, the parameters it reads and
// the generators in `rngs`, and must compute its output with at least one op:
// every tape value it uses comes in through `inputs` (a Var of `t` captured by
// the segment belongs to another tape and is refused), and the inputs' values
// must not be changed in place between forward and backward. Anything it writes
// on the side (attention entropy) is written again by the re-run.
// Memory: one segment's intermediates at a time, on the child, whose buffers
// come back to the pool at each reset (steady-state training allocates nothing new).
#include <initializer_list>
#include <type_traits>
#include <utility>
#include <vector>

#include "rng.hpp"
#include "tape.hpp"

namespace marrow {

namespace detail {
// Leaves on `c` holding the inputs' values (one leaf per distinct input node, as
// the plain path reads one node). With `share_grads`, a leaf whose input already
// has a gradient buffer adds into that very buffer.
template <class T>
std::vector<Var<T>> recompute_leaves(Tape<T>& c, const std::vector<Var<T>>& inputs, bool share_grads) {
  std::vector<Var<T>> leaves;
  leaves.reserve(inputs.size());
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const Var<T>& x = inputs[i];
    std::size_t j = 0;
    while (j < i && inputs[j].node() != x.node()) ++j;
    if (j < i) {
      leaves.push_back(leaves[j]);
      continue;
    }
    Var<T> l = c.leaf(x.value(), x.requires_grad());
    if (share_grads && x.requires_grad() && x.has_grad()) l.node()->grad = x.node()->grad;
    leaves.push_back(l);
  }
  return leaves;
}
template <class T> void check_recomputed_output(const Tape<T>& c, const Var<T>& y, const std::vector<Var<T>>& leaves) {
  MARROW_CHECK(y.defined() && y.tape() == &c, "recompute: the segment must return a value it computed on the tape it is given");
  for (const Var<T>& l : leaves)
    MARROW_CHECK(y.node() != l.node(), "recompute: the segment returned one of its inputs; it must compute its output");
}
}  // namespace detail

// segment(Tape<T>&, const std::vector<Var<T>>&) -> Var<T>, run on `inputs`;
// rngs: every generator the segment draws from.
template <class T, class F>
Var<T> recompute(Tape<T>& t, F&& segment, const std::vector<std::type_identity_t<Var<T>>>& inputs,
                 std::initializer_list<Rng*> rngs = {}) {
  for (const Var<T>& x : inputs) t.check(x, "recompute input");
  if (!t.grad_enabled()) return segment(t, inputs);
  std::vector<std::pair<Rng*, Rng>> saved;  // each generator as the segment's forward found it
  saved.reserve(rngs.size());
  for (Rng* r : rngs) saved.emplace_back(r, *r);
  Tape<T>& c = t.child();
  c.reset();
  std::vector<Var<T>> leaves = detail::recompute_leaves(c, inputs, /*share_grads=*/false);
  const Var<T> y = segment(c, leaves);
  detail::check_recomputed_output(c, y, leaves);
  Tensor<T> value = y.value();
  if (!y.requires_grad()) {  // nothing inside needs a gradient: a constant
    c.reset();
    return t.input(std::move(value));
  }
  // The inputs and every parameter the segment used: their gradients are final
  // only once the checkpoint's closure has run (Tape::param_uses).
  std::vector<Var<T>> uses = inputs;
  for (const auto& [node, at] : c.param_uses()) uses.emplace_back(const_cast<Node<T>*>(node), nullptr, 0);
  c.reset();
  Var<T> out = t.push_list(std::move(value), uses);
  t.on_backward(out, [&c, out, inputs, saved = std::move(saved), segment = std::decay_t<F>(std::forward<F>(segment))]() mutable {
    c.reset();
    std::vector<Rng> now;  // where the generators are; put back after the re-run
    now.reserve(saved.size());
    for (auto& [r, at_forward] : saved) {
      now.push_back(*r);
      *r = at_forward;
    }
    std::vector<Var<T>> leaves = detail::recompute_leaves(c, inputs, /*share_grads=*/true);
    const Var<T> y = segment(c, leaves);
    for (std::size_t i = 0; i < saved.size(); ++i) *saved[i].first = now[i];
    detail::check_recomputed_output(c, y, leaves);
    MARROW_CHECK(y.shape() == out.shape() && y.requires_grad(),
                 "recompute: the segment's re-run gave ", y.shape().str(), " where its forward gave ", out.shape().str());
    c.backward_from(y, out.grad());
    // An input without a gradient buffer before the re-run takes the one its leaf made
    // (the plain path too starts it at zero here); the others were added into in place.
    for (std::size_t i = 0; i < inputs.size(); ++i)
      if (inputs[i].requires_grad() && !inputs[i].has_grad() && leaves[i].has_grad())
        inputs[i].node()->grad = leaves[i].node()->grad;
    c.reset();
  });
  return out;
}

}  // namespace marrow
