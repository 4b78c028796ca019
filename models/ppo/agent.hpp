#pragma once
// The PPO agent (Schulman et al. 2017), as in CleanRL's ppo.py: separate
// actor and critic MLPs with orthogonal init, a state-independent log std for
// continuous actions, and the running statistics its observations are
// normalized with. Shapes: M = rows, O = observation size, A = action size
// (or number of discrete actions).
#include <algorithm>
#include <cmath>
#include <numbers>
#include <string>
#include <vector>

#include <marrow/init.hpp>
#include <marrow/marrow.hpp>
#include <marrow/nn/layers.hpp>
#include <marrow/nn/module.hpp>
#include <marrow/ops/nn.hpp>
#include <marrow/ops/shape.hpp>
#include <marrow/rl/env.hpp>

#include "config.hpp"
#include "normalizer.hpp"

namespace marrow::ppo {

struct AgentShape {
  int obs_dim, act_dim;
  bool discrete;
};

template <class T> struct Agent {
  // O -> H -> H -> A (logits or Gaussian mean) and O -> H -> H -> 1.
  Linear<T> actor1, actor2, actor_head, critic1, critic2, critic_head;
  Param<T> log_std;  // (A), continuous actions only
  bool discrete;
  // Observation statistics (O) and the discounted return's (1): kept with the
  // weights so that `eval` and `--resume` see what training saw.
  RunningMeanStd obs_rms, ret_rms;
  bool norm_obs;
  double clip_obs;

  Agent(AgentShape s, const Args& a, Rng& rng)
      : actor1(s.obs_dim, a.hidden, rng), actor2(a.hidden, a.hidden, rng), actor_head(a.hidden, s.act_dim, rng),
        critic1(s.obs_dim, a.hidden, rng), critic2(a.hidden, a.hidden, rng), critic_head(a.hidden, 1, rng),
        discrete(s.discrete), obs_rms(s.obs_dim), ret_rms(1), norm_obs(a.norm_obs), clip_obs(a.clip_obs) {
    // Orthogonal init: gain √2 for hidden layers, 0.01 for the policy head, 1 for the value head.
    const double root2 = std::numbers::sqrt2;
    for (auto [layer, gain] : {std::pair{&actor1, root2}, {&actor2, root2}, {&actor_head, 0.01},
                               {&critic1, root2}, {&critic2, root2}, {&critic_head, 1.0}}) {
      orthogonal_(layer->weight.value(), rng, gain);
      layer->bias.value().zero();
    }
    if (!discrete) log_std = Param<T>(full<T>({s.act_dim}, T(a.init_log_std)));
  }

  Var<T> actor(Tape<T>& t, const Var<T>& obs) {  // (M, O) -> (M, A)
    Var<T> h = tanh(t, actor1(t, obs));
    h = tanh(t, actor2(t, h));
    return actor_head(t, h);
  }
  Var<T> critic(Tape<T>& t, const Var<T>& obs) {  // (M, O) -> (M)
    Var<T> h = tanh(t, critic1(t, obs));
    h = tanh(t, critic2(t, h));
    return reshape(t, critic_head(t, h), {-1});
  }

  // Raw observations as the networks take them; `update` folds them into obs_rms first (rollouts only).
  Tensor<T> observe(const std::vector<rl::Obs>& raw, bool update) {
    return normalize_obs<T>(obs_rms, raw, norm_obs, update, clip_obs);
  }

  void visit(Visitor<T>& v, const std::string& prefix) {
    actor1.visit(v, join_name(prefix, "actor.0"));
    actor2.visit(v, join_name(prefix, "actor.1"));
    actor_head.visit(v, join_name(prefix, "actor.2"));
    critic1.visit(v, join_name(prefix, "critic.0"));
    critic2.visit(v, join_name(prefix, "critic.1"));
    critic_head.visit(v, join_name(prefix, "critic.2"));
    if (!discrete) v.visit_param(join_name(prefix, "log_std"), log_std);
    obs_rms.visit(v, join_name(prefix, "obs_rms"));
    ret_rms.visit(v, join_name(prefix, "ret_rms"));
  }
};

// ---- the policy: log π(a|s), entropy, sampling ---------------------------------
constexpr double kHalfLog2Pi = 0.91893853320467274178;  // ½ log 2π

// log π(a|s) and the entropy per row, from the actor's output `out` (M, A).
// discrete: actions (M) as indices; continuous: actions (M, A).
template <class T> struct PolicyTerms {
  Var<T> logp;     // (M)
  Var<T> entropy;  // (M)
};
template <class T>
PolicyTerms<T> policy_terms(Tape<T>& t, Agent<T>& agent, const Var<T>& out, const Tensor<T>& actions) {
  const index_t M = out.dim(0), A = out.dim(1);
  if (agent.discrete) {
    Var<T> logp_all = log_softmax(t, out, -1);  // (M, A)
    Tensor<T> onehot(Shape{M, A});
    for (index_t i = 0; i < M; ++i) onehot[i * A + index_t(actions[i])] = T(1);
    Var<T> logp = sum(t, mul(t, logp_all, t.input(onehot)), {1});
    Var<T> entropy = neg(t, sum(t, mul(t, exp(t, logp_all), logp_all), {1}));
    return {logp, entropy};
  }
  // Diagonal Gaussian: log N(a; μ, σ) = −½((a−μ)/σ)² − log σ − ½ log 2π, summed over A.
  const T half_log_2pi = T(kHalfLog2Pi);
  Var<T> z = div(t, sub(t, t.input(actions), out), exp(t, agent.log_std));  // (M, A)
  Var<T> per_dim = sub(t, mul_scalar(t, mul(t, z, z), T(-0.5)), agent.log_std);
  Var<T> logp = add_scalar(t, sum(t, per_dim, {1}), -T(A) * half_log_2pi);
  // Entropy of the Gaussian: Σ (log σ + ½ + ½ log 2π), the same for every row.
  Var<T> ent = add_scalar(t, sum(t, agent.log_std), T(A) * (T(0.5) + half_log_2pi));
  Var<T> entropy = add(t, t.input(Tensor<T>(Shape{M})), ent);
  return {logp, entropy};
}

// Sample an action from one row `out` (A values) of the actor's output;
// returns its log-probability (of the sample, before any clipping to bounds).
template <class T> double sample_action(const Agent<T>& agent, const T* out, int A, Rng& rng, rl::Obs& action) {
  if (agent.discrete) {
    double m = out[0];
    for (int k = 1; k < A; ++k) m = std::max(m, double(out[k]));
    double z = 0;
    for (int k = 0; k < A; ++k) z += std::exp(double(out[k]) - m);
    const double lz = m + std::log(z);
    double u = rng.uniform(), c = 0;
    int pick = A - 1;
    for (int k = 0; k < A; ++k) {
      c += std::exp(double(out[k]) - lz);
      if (u < c) {
        pick = k;
        break;
      }
    }
    action[0] = pick;
    return double(out[pick]) - lz;
  }
  double logp = 0;
  for (int k = 0; k < A; ++k) {
    const double ls = agent.log_std.value()[k], sd = std::exp(ls), eps = rng.normal();
    action[std::size_t(k)] = double(out[k]) + sd * eps;
    logp += -0.5 * eps * eps - ls - kHalfLog2Pi;
  }
  return logp;
}

// The deterministic action for evaluation: the argmax, or the mean clipped to Env's bounds.
template <class Env, class T> rl::Obs act_deterministic(Agent<T>& agent, const rl::Obs& raw) {
  Tape<T> t;
  auto g = t.no_grad();
  Var<T> out = agent.actor(t, t.input(agent.observe({raw}, false)));
  rl::Obs a{};
  if constexpr (Env::discrete) {
    a[0] = double(std::max_element(out.value().begin(), out.value().end()) - out.value().begin());
  } else {
    for (int k = 0; k < Env::act_dim; ++k) a[std::size_t(k)] = rl::clip(out.value()[k], Env::act_low, Env::act_high);
  }
  return a;
}

}  // namespace marrow::ppo
