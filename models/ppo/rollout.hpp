#pragma once
// The rollout: S steps of E environments under the current policy, stored
// step-major (row s·E + e), then generalized advantage estimation over it.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include <marrow/marrow.hpp>
#include <marrow/rl/env.hpp>
#include <marrow/rl/vec_env.hpp>

#include "agent.hpp"
#include "config.hpp"
#include "normalizer.hpp"

namespace marrow::ppo {

// Generalized advantage estimation over a rollout stored step-major (index s·E + e).
// A termination stops the bootstrap; a truncation bootstraps from V(final obs),
// given in `final_values`; either way the recursion does not cross into the next episode.
inline void compute_gae(int S, int E, const std::vector<double>& rewards, const std::vector<double>& values,
                        const std::vector<char>& terminated, const std::vector<char>& truncated,
                        const std::vector<double>& final_values, const std::vector<double>& next_values,
                        double gamma, double lambda, std::vector<double>& advantages, std::vector<double>& returns) {
  advantages.assign(std::size_t(S * E), 0.0);
  returns.assign(std::size_t(S * E), 0.0);
  for (int e = 0; e < E; ++e) {
    double last = 0.0;
    for (int s = S - 1; s >= 0; --s) {
      const std::size_t i = std::size_t(s * E + e);
      double next_v, carry;
      if (terminated[i]) {
        next_v = 0.0;
        carry = 0.0;
      } else if (truncated[i]) {
        next_v = final_values[i];
        carry = 0.0;
      } else {
        next_v = s == S - 1 ? next_values[std::size_t(e)] : values[i + std::size_t(E)];
        carry = 1.0;
      }
      const double delta = rewards[i] + gamma * next_v - values[i];
      last = delta + gamma * lambda * carry * last;
      advantages[i] = last;
      returns[i] = last + values[i];
    }
  }
}

// E copies of Env stepped in lockstep, and the buffers of one rollout of S steps.
template <class Env, class T = float> struct Rollout {
  static constexpr int O = Env::obs_dim, A = Env::act_dim;
  static constexpr int AD = Env::discrete ? 1 : A;  // stored action width
  const int S, E, B;

  rl::VecEnv<Env> envs;
  std::vector<double> disc_return;           // (E) running discounted returns, for reward scaling
  std::vector<rl::EpisodeStats> episodes;    // every finished training episode
  std::int64_t global_step = 0;              // environment steps over all copies

  Tensor<T> obs, actions;                    // (B, O) normalized as the agent saw them; (B, AD)
  std::vector<double> logp, values, rewards;  // (B) each; rewards scaled when --norm-reward
  std::vector<char> terminated, truncated;    // (B)
  std::vector<double> final_values;           // (B) V(final obs) where an episode was truncated
  std::vector<double> next_values;            // (E) V(obs) after the last step
  std::vector<double> advantages, returns;    // (B), from gae()

  Rollout(int num_envs, int num_steps, std::uint64_t env_seed)
      : S(num_steps), E(num_envs), B(num_envs * num_steps), envs(num_envs, env_seed),
        disc_return(std::size_t(num_envs), 0.0) {}

  // S steps of every environment with actions sampled from the agent's policy.
  void collect(Agent<T>& agent, Rng& rng, const Args& args) {
    obs = Tensor<T>::uninitialized({B, O});
    actions = Tensor<T>::uninitialized({B, AD});
    const auto nB = static_cast<std::size_t>(B);
    logp.assign(nB, 0.0);
    values.assign(nB, 0.0);
    rewards.assign(nB, 0.0);
    final_values.assign(nB, 0.0);
    terminated.assign(nB, 0);
    truncated.assign(nB, 0);
    std::vector<rl::Obs> act(static_cast<std::size_t>(E));
    for (int s = 0; s < S; ++s) {
      Tensor<T> x = agent.observe(envs.obs(), true);
      std::copy(x.begin(), x.end(), obs.data() + std::size_t(s) * E * O);
      {
        tape.reset();
        auto g = tape.no_grad();
        Var<T> xin = tape.input(x);
        Var<T> out = agent.actor(tape, xin);
        Var<T> v = agent.critic(tape, xin);
        for (int e = 0; e < E; ++e) {
          const std::size_t i = std::size_t(s * E + e);
          values[i] = v.value()[e];
          logp[i] = sample_action(agent, out.value().data() + e * A, A, rng, act[std::size_t(e)]);
          for (int k = 0; k < AD; ++k) actions[index_t(i) * AD + k] = T(act[std::size_t(e)][std::size_t(k)]);
        }
      }
      // Continuous actions are clipped to the bounds when stepping; the log-prob stays that of the sample.
      std::vector<rl::Obs> stepped = act;
      if constexpr (!Env::discrete)
        for (auto& a : stepped)
          for (int k = 0; k < A; ++k) a[std::size_t(k)] = rl::clip(a[std::size_t(k)], Env::act_low, Env::act_high);
      const auto& r = envs.step(stepped, &episodes);
      global_step += E;
      std::vector<rl::Obs> finals;
      std::vector<int> final_idx;
      for (int e = 0; e < E; ++e) {
        const std::size_t i = std::size_t(s * E + e), ue = std::size_t(e);
        rewards[i] = args.norm_reward ? scale_reward(agent.ret_rms, disc_return[ue], r.reward[ue],
                                                     r.terminated[ue] || r.truncated[ue], args.gamma, args.clip_reward)
                                      : r.reward[ue];
        terminated[i] = r.terminated[ue];
        truncated[i] = r.truncated[ue];
        if (r.truncated[ue]) {
          finals.push_back(r.final_obs[ue]);
          final_idx.push_back(int(i));
        }
      }
      if (!finals.empty()) {  // V(final obs) for bootstrapping the truncated episodes
        tape.reset();
        auto g = tape.no_grad();
        Var<T> v = agent.critic(tape, tape.input(agent.observe(finals, false)));
        for (std::size_t j = 0; j < finals.size(); ++j) final_values[std::size_t(final_idx[j])] = v.value()[index_t(j)];
      }
    }
    next_values.assign(std::size_t(E), 0.0);
    tape.reset();
    auto g = tape.no_grad();
    Var<T> v = agent.critic(tape, tape.input(agent.observe(envs.obs(), false)));
    for (int e = 0; e < E; ++e) next_values[std::size_t(e)] = v.value()[e];
    tape.reset();
  }

  // Advantages and returns of the collected rollout.
  void gae(double gamma, double lambda) {
    compute_gae(S, E, rewards, values, terminated, truncated, final_values, next_values, gamma, lambda, advantages,
                returns);
  }

  // How much of the returns' variance the value predictions explain: 1 − Var[ret − V] / Var[ret].
  double explained_variance() const {
    double mr = 0, vr = 0, vd = 0;
    for (int i = 0; i < B; ++i) mr += returns[std::size_t(i)] / B;
    for (int i = 0; i < B; ++i) {
      vr += (returns[std::size_t(i)] - mr) * (returns[std::size_t(i)] - mr);
      const double d = returns[std::size_t(i)] - values[std::size_t(i)];
      vd += d * d;
    }
    double md = 0;
    for (int i = 0; i < B; ++i) md += (returns[std::size_t(i)] - values[std::size_t(i)]) / B;
    vd = vd - B * md * md;
    return vr > 0 ? 1.0 - vd / vr : 0.0;
  }

  // Mean return of the last n finished training episodes (NaN when none).
  double mean_return_last(int n) const {
    if (episodes.empty()) return std::nan("");
    const int k = std::min<int>(n, int(episodes.size()));
    double s = 0;
    for (int i = int(episodes.size()) - k; i < int(episodes.size()); ++i) s += episodes[std::size_t(i)].ret;
    return s / k;
  }

 private:
  Tape<T> tape;  // no-grad forwards only
};

}  // namespace marrow::ppo
