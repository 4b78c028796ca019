#pragma once
// The clipped update: one minibatch's PPO loss (clipped surrogate + clipped
// value loss − entropy bonus), the minibatch a shuffled order selects from a
// rollout, and the statistics an update reports.
#include <algorithm>
#include <cmath>
#include <vector>

#include <marrow/marrow.hpp>

#include "agent.hpp"
#include "config.hpp"
#include "rollout.hpp"

namespace marrow::ppo {

template <class T> struct Minibatch {
  Tensor<T> obs;         // (M, O), normalized as the agent saw it
  Tensor<T> actions;     // (M) indices or (M, A)
  Tensor<T> old_logp;    // (M)
  Tensor<T> advantages;  // (M)
  Tensor<T> returns;     // (M)
  Tensor<T> old_values;  // (M)
};

// Rows order[start .. start + M) of a rollout, where M is the minibatch's size.
template <class Env, class T> void gather(const Rollout<Env, T>& ro, const std::vector<int>& order, int start,
                                          Minibatch<T>& mb) {
  constexpr int O = Rollout<Env, T>::O, AD = Rollout<Env, T>::AD;
  const int M = int(mb.old_logp.numel());
  for (int j = 0; j < M; ++j) {
    const int i = order[std::size_t(start + j)];
    std::copy_n(ro.obs.data() + std::size_t(i) * O, O, mb.obs.data() + std::size_t(j) * O);
    std::copy_n(ro.actions.data() + std::size_t(i) * AD, AD, mb.actions.data() + std::size_t(j) * AD);
    mb.old_logp[j] = T(ro.logp[std::size_t(i)]);
    mb.advantages[j] = T(ro.advantages[std::size_t(i)]);
    mb.returns[j] = T(ro.returns[std::size_t(i)]);
    mb.old_values[j] = T(ro.values[std::size_t(i)]);
  }
}
template <class Env, class T> Minibatch<T> make_minibatch(int M) {
  constexpr int O = Rollout<Env, T>::O, AD = Rollout<Env, T>::AD;
  return {Tensor<T>::uninitialized({M, O}),
          Env::discrete ? Tensor<T>::uninitialized({M}) : Tensor<T>::uninitialized({M, AD}),
          Tensor<T>::uninitialized({M}), Tensor<T>::uninitialized({M}), Tensor<T>::uninitialized({M}),
          Tensor<T>::uninitialized({M})};
}

template <class T> struct LossTerms {
  Var<T> total;
  double policy_loss, value_loss, entropy, approx_kl, clip_frac;
};

// Clipped surrogate + (clipped) value loss − entropy bonus.
template <class T> LossTerms<T> ppo_loss(Tape<T>& t, Agent<T>& agent, const Minibatch<T>& mb, const Args& args,
                                         double clip_coef) {
  const index_t M = mb.obs.dim(0);
  Var<T> obs = t.input(mb.obs);
  PolicyTerms<T> pt = policy_terms(t, agent, agent.actor(t, obs), mb.actions);
  Var<T> logratio = sub(t, pt.logp, t.input(mb.old_logp));
  Var<T> ratio = exp(t, logratio);

  Tensor<T> adv = mb.advantages.clone();
  if (args.norm_adv && M > 1) {
    const double m = adv.arr().mean();
    const double sd = std::sqrt((adv.arr() - T(m)).square().sum() / double(M - 1));  // torch.std: unbiased
    adv.arr() = (adv.arr() - T(m)) / T(sd + 1e-8);
  }
  Var<T> neg_adv = t.input(adv);
  neg_adv = neg(t, neg_adv);
  const T c = T(clip_coef);
  Var<T> pg1 = mul(t, neg_adv, ratio);
  Var<T> pg2 = mul(t, neg_adv, clamp(t, ratio, T(1) - c, T(1) + c));
  Var<T> pg_loss = mean(t, maximum(t, pg1, pg2));

  Var<T> v = agent.critic(t, obs);
  Var<T> ret = t.input(mb.returns);
  Var<T> err = sub(t, v, ret);
  Var<T> v_loss;
  if (args.clip_vloss) {
    Var<T> old_v = t.input(mb.old_values);
    Var<T> v_clipped = add(t, old_v, clamp(t, sub(t, v, old_v), -c, c));
    Var<T> err_c = sub(t, v_clipped, ret);
    v_loss = mul_scalar(t, mean(t, maximum(t, mul(t, err, err), mul(t, err_c, err_c))), T(0.5));
  } else {
    v_loss = mul_scalar(t, mean(t, mul(t, err, err)), T(0.5));
  }
  Var<T> ent = mean(t, pt.entropy);
  Var<T> total = add(t, sub(t, pg_loss, mul_scalar(t, ent, T(args.ent_coef))), mul_scalar(t, v_loss, T(args.vf_coef)));

  // Diagnostics from values (no tape): approx KL (Schulman's k3 estimator) and clip fraction.
  double kl = 0, clipped = 0;
  for (index_t i = 0; i < M; ++i) {
    const double lr = logratio.value()[i], r = ratio.value()[i];
    kl += (r - 1) - lr;
    clipped += std::abs(r - 1) > clip_coef ? 1 : 0;
  }
  return {total, pg_loss.item(), v_loss.item(), ent.item(), kl / double(M), clipped / double(M)};
}

// One update's losses and diagnostics, averaged over its minibatches.
struct UpdateStats {
  double policy_loss = 0, value_loss = 0, entropy = 0, approx_kl = 0, clip_frac = 0;
  int minibatches = 0, epochs_run = 0;

  template <class T> void add(const LossTerms<T>& lt) {
    policy_loss += lt.policy_loss;
    value_loss += lt.value_loss;
    entropy += lt.entropy;
    approx_kl += lt.approx_kl;
    clip_frac += lt.clip_frac;
    ++minibatches;
  }
  void average() {
    if (minibatches == 0) return;
    policy_loss /= minibatches;
    value_loss /= minibatches;
    entropy /= minibatches;
    approx_kl /= minibatches;
    clip_frac /= minibatches;
  }
};

}  // namespace marrow::ppo
