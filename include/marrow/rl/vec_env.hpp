#pragma once
// N copies of one environment stepped in lockstep, auto-resetting.
//
// When an episode ends, the copy resets at once and `obs` holds the first
// observation of the new episode, while `final_obs` keeps the last
// observation of the old one: PPO bootstraps a truncated episode from
// V(final_obs). Finished episodes' returns and lengths are reported.
#include <vector>

#include "env.hpp"

namespace marrow::rl {

struct EpisodeStats {
  double ret;
  int length;
};

template <class Env> class VecEnv {
 public:
  VecEnv(int n, std::uint64_t seed) : envs_(std::size_t(n)), obs_(std::size_t(n)), ret_(std::size_t(n), 0.0),
                                      len_(std::size_t(n), 0) {
    Rng root(seed);
    for (int i = 0; i < n; ++i) rngs_.push_back(root.fork());
    for (int i = 0; i < n; ++i) obs_[std::size_t(i)] = envs_[std::size_t(i)].reset(rngs_[std::size_t(i)]);
  }

  int size() const { return int(envs_.size()); }
  const std::vector<Obs>& obs() const { return obs_; }
  Env& env(int i) { return envs_[std::size_t(i)]; }

  struct Result {
    std::vector<double> reward;
    std::vector<char> terminated, truncated;
    std::vector<Obs> final_obs;  // valid where terminated or truncated
  };

  // Step every copy with its action; finished copies reset. Appends finished episodes to `done`.
  const Result& step(const std::vector<Obs>& actions, std::vector<EpisodeStats>* done = nullptr) {
    const std::size_t n = envs_.size();
    res_.reward.assign(n, 0.0);
    res_.terminated.assign(n, 0);
    res_.truncated.assign(n, 0);
    res_.final_obs.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      Step s = envs_[i].step(actions[i]);
      res_.reward[i] = s.reward;
      res_.terminated[i] = s.terminated;
      res_.truncated[i] = s.truncated;
      ret_[i] += s.reward;
      ++len_[i];
      if (s.terminated || s.truncated) {
        res_.final_obs[i] = s.obs;
        if (done) done->push_back({ret_[i], len_[i]});
        ret_[i] = 0.0;
        len_[i] = 0;
        obs_[i] = envs_[i].reset(rngs_[i]);
      } else {
        obs_[i] = s.obs;
      }
    }
    return res_;
  }

  // RNG states, for bitwise resume.
  std::vector<Rng>& rngs() { return rngs_; }

 private:
  std::vector<Env> envs_;
  std::vector<Rng> rngs_;
  std::vector<Obs> obs_;
  std::vector<double> ret_;
  std::vector<int> len_;
  Result res_;
};

}  // namespace marrow::rl
