#pragma once
// The rollout: S steps of E environments under the current policy, stored
// step-major (row s·E + e), then generalized advantage estimation over it.
// Under data parallelism each rank steps a slice of the environments, and the
// ranks exchange every step's outcome so that each holds the whole rollout.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include <marrow/dist/data_parallel.hpp>
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
//
// Data-parallel (K shards over the ranks of `comm`): the E environments are cut
// into K slices of E/K, shard k steps slice k, and this rank steps the slices
// of its shards. Everything a shard computes is computed the same way whatever
// the number of processes: its policy forward takes its E/K rows, its actions
// come from a stream keyed by (the sampler at the rollout's start, k). After
// every step the ranks exchange what their environments did, so that every
// rank holds the whole rollout, folds every observation and reward into the
// normalizers in environment order, and logs every episode. With K = 1 this is
// the plain loop over all E copies, with the sampler's draws of a single process.
template <class Env, class T = float> struct Rollout {
  static constexpr int O = Env::obs_dim, A = Env::act_dim;
  static constexpr int AD = Env::discrete ? 1 : A;  // stored action width
  const int S, E, B;

  const dist::Comm& comm;
  const int K;                               // shards
  const dist::ShardSpan mine;                // this rank's shards
  const int per_shard;                       // environments per shard (E / K)
  rl::VecEnv<Env> envs;                        // this rank's: [mine.begin · per_shard, mine.end · per_shard)
  std::vector<double> disc_return;           // (E) running discounted returns, for reward scaling
  std::vector<rl::EpisodeStats> episodes;    // every finished training episode
  std::int64_t global_step = 0;              // environment steps over all copies

  Tensor<T> obs, actions;                    // (B, O) normalized as the agent saw them; (B, AD)
  std::vector<double> logp, values, rewards;  // (B) each; rewards scaled when --norm-reward
  std::vector<char> terminated, truncated;    // (B)
  std::vector<double> final_values;           // (B) V(final obs) where an episode was truncated
  std::vector<double> next_values;            // (E) V(obs) after the last step
  std::vector<double> advantages, returns;    // (B), from gae()

  Rollout(int num_envs, int num_steps, std::uint64_t env_seed, const dist::Comm& world = dist::Comm::self(),
          int shards = 1)
      : S(num_steps), E(num_envs), B(num_envs * num_steps), comm(world), K(shards),
        mine(dist::local_shards(world, shards)), per_shard(checked_per_shard(num_envs, shards)),
        envs(num_envs, mine.begin * per_shard, (mine.end - mine.begin) * per_shard, env_seed),
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
    const int n = envs.size(), e0 = envs.first();
    const bool sharded = K > 1;
    const Rng at_start = rng;
    std::vector<Rng> streams;
    if (sharded)
      for (int k = mine.begin; k < mine.end; ++k) streams.push_back(dist::shard_stream(at_start, k));
    // The raw observations of all E copies, on every rank: what the normalizer folds in.
    std::vector<rl::Obs> now(static_cast<std::size_t>(E));
    comm.allgather(envs.obs().data(), std::size_t(n), now.data());
    std::vector<StepRecord> step_mine(static_cast<std::size_t>(n)), step_all(static_cast<std::size_t>(E));
    std::vector<rl::Obs> act(static_cast<std::size_t>(n)), final_obs(static_cast<std::size_t>(n));
    for (int s = 0; s < S; ++s) {
      Tensor<T> x = agent.observe(now, true);
      std::copy(x.begin(), x.end(), obs.data() + std::size_t(s) * E * O);
      // One policy forward per shard, of its E/K rows: a row's bits may depend on
      // the batch it is computed in, so that batch must not depend on the process count.
      for (int k = mine.begin; k < mine.end; ++k) {
        Rng& draw = sharded ? streams[std::size_t(k - mine.begin)] : rng;
        const int k0 = k * per_shard;
        tape.reset();
        auto g = tape.no_grad();
        Var<T> xin = tape.input(dist::batch_rows(x, k0, k0 + per_shard));
        Var<T> out = agent.actor(tape, xin);
        Var<T> v = agent.critic(tape, xin);
        for (int j = 0; j < per_shard; ++j) {
          const auto u = std::size_t(k0 + j - e0);
          step_mine[u].value = v.value()[j];
          step_mine[u].logp = sample_action(agent, out.value().data() + j * A, A, draw, act[u]);
          step_mine[u].action = act[u];
        }
      }
      // Continuous actions are clipped to the bounds when stepping; the log-prob stays that of the sample.
      for (int i = 0; i < n; ++i) {
        rl::Obs stepped = act[std::size_t(i)];
        if constexpr (!Env::discrete)
          for (int k = 0; k < A; ++k)
            stepped[std::size_t(k)] = rl::clip(stepped[std::size_t(k)], Env::act_low, Env::act_high);
        const typename rl::VecEnv<Env>::CopyResult r = envs.step(i, stepped);
        StepRecord& rec = step_mine[std::size_t(i)];
        rec.reward = r.reward;
        rec.terminated = r.terminated;
        rec.truncated = r.truncated;
        rec.final_value = 0.0;
        rec.episode = r.episode;
        rec.next_obs = envs.obs()[std::size_t(i)];
        final_obs[std::size_t(i)] = r.final_obs;
      }
      for (int k = mine.begin; k < mine.end; ++k) {  // V(final obs) for bootstrapping the truncated episodes
        std::vector<rl::Obs> finals;
        std::vector<std::size_t> final_idx;
        for (int e = k * per_shard; e < (k + 1) * per_shard; ++e)
          if (step_mine[std::size_t(e - e0)].truncated) {
            finals.push_back(final_obs[std::size_t(e - e0)]);
            final_idx.push_back(std::size_t(e - e0));
          }
        if (finals.empty()) continue;
        tape.reset();
        auto g = tape.no_grad();
        Var<T> v = agent.critic(tape, tape.input(agent.observe(finals, false)));
        for (std::size_t j = 0; j < finals.size(); ++j) step_mine[final_idx[j]].final_value = v.value()[index_t(j)];
      }
      comm.allgather(step_mine.data(), step_mine.size(), step_all.data());
      // Every rank the same: the rows of all E copies, the reward scale's updates
      // and the finished episodes in environment order, as one process has them.
      for (int e = 0; e < E; ++e) {
        const std::size_t i = std::size_t(s * E + e), ue = std::size_t(e);
        const StepRecord& rec = step_all[ue];
        values[i] = rec.value;
        logp[i] = rec.logp;
        for (int k = 0; k < AD; ++k) actions[index_t(i) * AD + k] = T(rec.action[std::size_t(k)]);
        const bool ended = rec.terminated || rec.truncated;
        rewards[i] = args.norm_reward ? scale_reward(agent.ret_rms, disc_return[ue], rec.reward, ended, args.gamma,
                                                     args.clip_reward)
                                      : rec.reward;
        terminated[i] = rec.terminated;
        truncated[i] = rec.truncated;
        final_values[i] = rec.final_value;
        if (ended) episodes.push_back(rec.episode);
        now[ue] = rec.next_obs;
      }
      global_step += E;
    }
    std::vector<double> next_mine(static_cast<std::size_t>(n), 0.0);
    for (int k = mine.begin; k < mine.end; ++k) {
      const int k0 = k * per_shard;
      tape.reset();
      auto g = tape.no_grad();
      std::vector<rl::Obs> last(envs.obs().begin() + (k0 - e0), envs.obs().begin() + (k0 - e0 + per_shard));
      Var<T> v = agent.critic(tape, tape.input(agent.observe(last, false)));
      for (int j = 0; j < per_shard; ++j) next_mine[std::size_t(k0 - e0 + j)] = v.value()[j];
    }
    next_values.assign(std::size_t(E), 0.0);
    comm.allgather(next_mine.data(), next_mine.size(), next_values.data());
    tape.reset();
    // The sampler moves on by one draw whatever K and the process count: the
    // minibatch shuffles that follow draw the same numbers on every rank.
    if (sharded) {
      rng = at_start;
      rng.next_u64();
    }
  }

  // The environments' state (every copy's, and the reward scale's running
  // returns) as text for a checkpoint's metadata. A collective: every rank
  // sends its slice, the text is complete on every rank.
  std::string save_envs() const {
    const std::size_t per = rl::VecEnv<Env>::kStateBytes;
    std::vector<char> mine_bytes(per * std::size_t(envs.size())), all(per * std::size_t(E));
    for (int i = 0; i < envs.size(); ++i) envs.write_state(i, mine_bytes.data() + per * std::size_t(i));
    comm.allgather(mine_bytes.data(), mine_bytes.size(), all.data());
    const auto* d = reinterpret_cast<const char*>(disc_return.data());
    all.insert(all.end(), d, d + sizeof(double) * disc_return.size());
    return to_hex(all);
  }
  // The state save_envs() wrote: this rank takes its slice (checkpoints move between process counts).
  void load_envs(const std::string& text) {
    const std::size_t per = rl::VecEnv<Env>::kStateBytes;
    const std::vector<char> all = from_hex(text);
    MARROW_CHECK(all.size() % (per + sizeof(double)) == 0 && all.size() / (per + sizeof(double)) == std::size_t(E),
                 "ppo: the checkpoint's environment state is not that of ", E, " copies of ", Env::kName,
                 " (was it written with another --num-envs?)");
    for (int i = 0; i < envs.size(); ++i) envs.read_state(i, all.data() + per * std::size_t(envs.first() + i));
    std::memcpy(disc_return.data(), all.data() + per * std::size_t(E), sizeof(double) * disc_return.size());
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
  // What one environment did in one step, sent to every rank: the policy's
  // output for it, the step's outcome, the observation it continues from.
  struct StepRecord {
    rl::Obs action, next_obs;
    double value, logp, reward, final_value;
    rl::EpisodeStats episode;  // where it ended
    bool terminated, truncated;
  };

  static int checked_per_shard(int num_envs, int shards) {
    MARROW_CHECK(num_envs % shards == 0, "--num-envs ", num_envs, " must be a multiple of --shards ", shards,
                 " (each shard steps num-envs / shards environments)");
    return num_envs / shards;
  }
  static std::string to_hex(const std::vector<char>& bytes) {
    static const char* digits = "0123456789abcdef";
    std::string out(bytes.size() * 2, '0');
    for (std::size_t i = 0; i < bytes.size(); ++i) {
      const auto b = static_cast<unsigned char>(bytes[i]);
      out[2 * i] = digits[b >> 4];
      out[2 * i + 1] = digits[b & 15];
    }
    return out;
  }
  static std::vector<char> from_hex(const std::string& text) {
    auto nibble = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      throw Error("ppo: the checkpoint's environment state is not hexadecimal");
    };
    MARROW_CHECK(text.size() % 2 == 0, "ppo: the checkpoint's environment state has an odd number of digits");
    std::vector<char> out(text.size() / 2);
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = char(nibble(text[2 * i]) << 4 | nibble(text[2 * i + 1]));
    return out;
  }

  Tape<T> tape;  // no-grad forwards only
};

}  // namespace marrow::ppo
