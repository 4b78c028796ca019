#pragma once
// A seeded random number generator that gives the same stream on every
// machine, compiler and thread count (std::normal_distribution does not).
#include <array>
#include <cmath>
#include <cstddef>
#include <algorithm>
#include <cstdint>
#include <utility>

namespace marrow {

// xoshiro256** seeded through splitmix64; normals by Box-Muller.
class Rng {
 public:
  explicit Rng(std::uint64_t seed = 0) { reseed(seed); }

  void reseed(std::uint64_t seed) {
    for (auto& w : s_) {
      seed += 0x9e3779b97f4a7c15ULL;
      std::uint64_t z = seed;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
      w = z ^ (z >> 31);
    }
    has_spare_ = false;
  }

  std::uint64_t next_u64() {
    const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return double(next_u64() >> 11) * 0x1.0p-53; }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }

  // Uniform integer in [0, n), unbiased (Lemire's multiply-shift with rejection).
  std::uint64_t below(std::uint64_t n) {
    if (n == 0) return 0;
    std::uint64_t threshold = (0 - n) % n;
    for (;;) {
      unsigned __int128 m = (unsigned __int128)next_u64() * n;
      if (std::uint64_t(m) >= threshold) return std::uint64_t(m >> 64);
    }
  }

  // Fisher-Yates in place: every permutation equally likely. The one shuffle
  // of the library (data loaders, PPO's minibatches, epoch orders), so a
  // shuffled order is the same numbers wherever it is drawn.
  template <class V> void shuffle(V& v) {
    for (std::size_t i = v.size(); i-- > 1;) std::swap(v[i], v[std::size_t(below(std::uint64_t(i + 1)))]);
  }
  // The first k entries of v become a uniform random sample without
  // replacement (the forward Fisher-Yates, stopped after k draws).
  template <class V> void sample_prefix(V& v, std::size_t k) {
    const std::size_t n = v.size();
    for (std::size_t i = 0; i < std::min(k, n); ++i) std::swap(v[i], v[i + std::size_t(below(std::uint64_t(n - i)))]);
  }

  // An index in [0, n) drawn with probability w[i] / total, where total is the sum
  // of the non-negative weights w. Should round-off carry the draw past the end,
  // the last index with a positive weight is taken.
  template <class W> std::size_t pick_weighted(const W* w, std::size_t n, double total) {
    double u = uniform() * total;
    std::size_t last_positive = 0;
    for (std::size_t i = 0; i < n; ++i) {
      if (w[i] > W(0)) last_positive = i;
      if ((u -= double(w[i])) < 0) return i;
    }
    return last_positive;
  }

  double normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u1;
    do u1 = uniform(); while (u1 <= 0.0);
    const double u2 = uniform();
    const double r = std::sqrt(-2.0 * std::log(u1));
    const double th = 6.283185307179586476925 * u2;
    spare_ = r * std::sin(th);
    has_spare_ = true;
    return r * std::cos(th);
  }
  double normal(double mean, double stddev) { return mean + stddev * normal(); }

  // Derive an independent generator (e.g. one per worker) without disturbing reproducibility.
  Rng fork() { return Rng(next_u64()); }

  // Full state, for checkpoints: 4 words of xoshiro, the spare flag and the spare normal.
  struct State {
    std::array<std::uint64_t, 4> s;
    bool has_spare;
    double spare;
  };
  State state() const { return {s_, has_spare_, spare_}; }
  void set_state(const State& st) {
    s_ = st.s;
    has_spare_ = st.has_spare;
    spare_ = st.spare;
  }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  std::array<std::uint64_t, 4> s_{};
  bool has_spare_ = false;
  double spare_ = 0.0;
};

}  // namespace marrow
