#pragma once
// The clipped update: one minibatch's PPO loss (clipped surrogate + clipped
// value loss − entropy bonus), the minibatch a shuffled order selects from a
// rollout, and the statistics an update reports.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include <marrow/dist/shards.hpp>
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

// Where each diagnostic sits in LossTerms::diagnostics(): the plain numbers a
// data-parallel step averages over the shards.
enum LossDiagnostic { kPolicyLoss, kValueLoss, kEntropy, kApproxKl, kClipFrac };

template <class T> struct LossTerms {
  Var<T> total;
  double policy_loss, value_loss, entropy, approx_kl, clip_frac;

  std::vector<double> diagnostics() const { return {policy_loss, value_loss, entropy, approx_kl, clip_frac}; }
};

// Rows [b0, b1) of a minibatch (a data-parallel shard of it); the whole minibatch as it is.
template <class T> Minibatch<T> rows(const Minibatch<T>& mb, std::int64_t b0, std::int64_t b1) {
  return {dist::batch_rows(mb.obs, b0, b1),      dist::batch_rows(mb.actions, b0, b1),
          dist::batch_rows(mb.old_logp, b0, b1), dist::batch_rows(mb.advantages, b0, b1),
          dist::batch_rows(mb.returns, b0, b1),  dist::batch_rows(mb.old_values, b0, b1)};
}

// With --norm-adv, the minibatch's advantages standardized over the whole
// minibatch (CleanRL's per-minibatch normalization). Done before the minibatch
// is cut into shards: a shard's loss must see the minibatch's mean and std, not
// its own, for the update not to depend on the shard count's cuts.
template <class T> void normalize_advantages(Minibatch<T>& mb, const Args& args) {
  const index_t M = mb.advantages.numel();
  if (!args.norm_adv || M <= 1) return;
  Tensor<T> adv = mb.advantages.clone();
  const double m = adv.arr().mean();
  const double sd = std::sqrt((adv.arr() - T(m)).square().sum() / double(M - 1));  // torch.std: unbiased
  adv.arr() = (adv.arr() - T(m)) / T(sd + 1e-8);
  mb.advantages = adv;
}

// Clipped surrogate + (clipped) value loss − entropy bonus, with the
// advantages as they are in `mb` (see normalize_advantages).
template <class T> LossTerms<T> ppo_loss(Tape<T>& t, Agent<T>& agent, const Minibatch<T>& mb, const Args& args,
                                         double clip_coef) {
  const index_t M = mb.obs.dim(0);
  Var<T> obs = t.input(mb.obs);
  PolicyTerms<T> pt = policy_terms(t, agent, agent.actor(t, obs), mb.actions);
  Var<T> logratio = sub(t, pt.logp, t.input(mb.old_logp));
  Var<T> ratio = exp(t, logratio);

  Var<T> neg_adv = t.input(mb.advantages);
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

  // One minibatch's LossTerms::diagnostics() (over all its shards).
  void add(const std::vector<double>& d) {
    policy_loss += d[kPolicyLoss];
    value_loss += d[kValueLoss];
    entropy += d[kEntropy];
    approx_kl += d[kApproxKl];
    clip_frac += d[kClipFrac];
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
