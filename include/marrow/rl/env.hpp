#pragma once
// The environment protocol shared by our classic-control tasks.
//
// An environment is a plain struct with
//   static constexpr const char* kName;  int obs_dim, act_dim; bool discrete;
//   int max_episode_steps; double threshold (the "solved" return);
//   Obs reset(Rng&);  Step step(const Action&);
// Observations and actions are small fixed vectors of doubles (a discrete
// action is its index stored in action[0]). Episodes end either by
// termination (the task's own end: the pole fell) or by truncation (the time
// limit): PPO must bootstrap from V(s') after a truncation and not after a
// termination, so the two are kept apart.
#include <array>
#include <cmath>
#include <numbers>

#include "../rng.hpp"

namespace marrow::rl {

inline constexpr int kMaxObs = 8;
using Obs = std::array<double, kMaxObs>;

struct Step {
  Obs obs{};
  double reward = 0.0;
  bool terminated = false;  // the task ended (no bootstrapping)
  bool truncated = false;   // the time limit cut the episode (bootstrap from obs)
};

// Wrap an angle to [-pi, pi).
inline double wrap_angle(double x) {
  constexpr double pi = std::numbers::pi;
  return std::fmod(std::fmod(x + pi, 2 * pi) + 2 * pi, 2 * pi) - pi;
}
inline double clip(double x, double lo, double hi) { return x < lo ? lo : (x > hi ? hi : x); }

}  // namespace marrow::rl
