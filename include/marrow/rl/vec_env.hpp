#pragma once
// N copies of one environment stepped in lockstep, auto-resetting.
//
// When an episode ends, the copy resets at once and `obs` holds the first
// observation of the new episode, while `final_obs` keeps the last
// observation of the old one: PPO bootstraps a truncated episode from
// V(final_obs). Finished episodes' returns and lengths are reported.
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "env.hpp"

namespace marrow::rl {

struct EpisodeStats {
  double ret;
  int length;
};

template <class Env> class VecEnv {
 public:
  static_assert(std::is_trivially_copyable_v<Env>, "VecEnv: an environment's state is saved byte for byte");
  // One copy's state (write_state): the physics, its reset stream, the current observation, the running episode.
  static constexpr std::size_t kStateBytes =
      sizeof(Env) + sizeof(std::uint64_t) * 4 + 1 + sizeof(double) + sizeof(Obs) + sizeof(double) + sizeof(int);

  VecEnv(int n, std::uint64_t seed) : VecEnv(n, 0, n, seed) {}
  // Copies [first, first + n) of `total`: copy e draws its resets from the e-th
  // stream forked from the seed whichever slice holds it, so a process stepping
  // its slice (data parallelism) sees what one process stepping all would.
  VecEnv(int total, int first, int n, std::uint64_t seed)
      : first_(first), envs_(std::size_t(n)), obs_(std::size_t(n)), ret_(std::size_t(n), 0.0), len_(std::size_t(n), 0) {
    MARROW_CHECK(0 <= first && n >= 0 && first + n <= total, "VecEnv: copies [", first, ", ", first + n, ") of ", total);
    Rng root(seed);
    for (int i = 0; i < total; ++i) {
      Rng r = root.fork();
      if (i >= first && i < first + n) rngs_.push_back(r);
    }
    for (int i = 0; i < n; ++i) obs_[std::size_t(i)] = envs_[std::size_t(i)].reset(rngs_[std::size_t(i)]);
  }

  int first() const { return first_; }
  int size() const { return int(envs_.size()); }
  const std::vector<Obs>& obs() const { return obs_; }
  Env& env(int i) { return envs_[std::size_t(i)]; }

  // Copy i's step: its reward and ends, the final observation and the finished
  // episode where it ended (then it has reset).
  struct CopyResult {
    double reward;
    bool terminated, truncated;
    Obs final_obs;
    EpisodeStats episode;
  };
  CopyResult step(int i, const Obs& action) {
    const auto u = std::size_t(i);
    Step s = envs_[u].step(action);
    CopyResult r{s.reward, s.terminated, s.truncated, {}, {}};
    ret_[u] += s.reward;
    ++len_[u];
    if (s.terminated || s.truncated) {
      r.final_obs = s.obs;
      r.episode = {ret_[u], len_[u]};
      ret_[u] = 0.0;
      len_[u] = 0;
      obs_[u] = envs_[u].reset(rngs_[u]);
    } else {
      obs_[u] = s.obs;
    }
    return r;
  }

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
      const CopyResult r = step(int(i), actions[i]);
      res_.reward[i] = r.reward;
      res_.terminated[i] = r.terminated;
      res_.truncated[i] = r.truncated;
      if (r.terminated || r.truncated) {
        res_.final_obs[i] = r.final_obs;
        if (done) done->push_back(r.episode);
      }
    }
    return res_;
  }

  // RNG states, for bitwise resume.
  std::vector<Rng>& rngs() { return rngs_; }

  // Copy i's whole state as kStateBytes bytes, field by field: a checkpoint
  // resumes the episodes where they were rather than from fresh ones.
  void write_state(int i, char* out) const {
    const auto u = std::size_t(i);
    const Rng::State rs = rngs_[u].state();
    const char spare = rs.has_spare ? 1 : 0;
    out = put(out, envs_[u]);
    out = put(out, rs.s);
    out = put(out, spare);
    out = put(out, rs.spare);
    out = put(out, obs_[u]);
    out = put(out, ret_[u]);
    put(out, len_[u]);
  }
  void read_state(int i, const char* in) {
    const auto u = std::size_t(i);
    Rng::State rs{};
    char spare = 0;
    in = get(in, envs_[u]);
    in = get(in, rs.s);
    in = get(in, spare);
    in = get(in, rs.spare);
    rs.has_spare = spare != 0;
    rngs_[u].set_state(rs);
    in = get(in, obs_[u]);
    in = get(in, ret_[u]);
    get(in, len_[u]);
  }

 private:
  template <class V> static char* put(char* out, const V& v) {
    std::memcpy(out, &v, sizeof(V));
    return out + sizeof(V);
  }
  template <class V> static const char* get(const char* in, V& v) {
    std::memcpy(&v, in, sizeof(V));
    return in + sizeof(V);
  }

  int first_;
  std::vector<Env> envs_;
  std::vector<Rng> rngs_;
  std::vector<Obs> obs_;
  std::vector<double> ret_;
  std::vector<int> len_;
  Result res_;
};

}  // namespace marrow::rl
