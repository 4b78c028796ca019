#pragma once
// MountainCarContinuous-v0 (Moore 1990; Gymnasium): force in [-1, 1] times
// power 0.0015, gravity term 0.0025·cos(3x), speed clipped to ±0.07, position
// to [-1.2, 0.6] (an inelastic left wall); +100 on reaching x ≥ 0.45, minus
// 0.1·action² every step; 999-step limit.
#include "env.hpp"

namespace marrow::rl {

struct MountainCarContinuous {
  static constexpr const char* kName = "MountainCarContinuous-v0";
  static constexpr int obs_dim = 2, act_dim = 1;
  static constexpr bool discrete = false;
  static constexpr int max_episode_steps = 999;
  static constexpr double threshold = 90.0;
  static constexpr double act_low = -1.0, act_high = 1.0;

  static constexpr double min_position = -1.2, max_position = 0.6, max_speed = 0.07, goal_position = 0.45,
                          goal_velocity = 0.0, power = 0.0015;

  double position = 0, velocity = 0;
  int steps = 0;

  Obs obs() const { return {position, velocity}; }

  Obs reset(Rng& rng) {
    position = rng.uniform(-0.6, -0.4);
    velocity = 0.0;
    steps = 0;
    return obs();
  }

  Step step(const Obs& action) {
    const double force = clip(action[0], -1.0, 1.0);
    velocity += force * power - 0.0025 * std::cos(3 * position);
    velocity = clip(velocity, -max_speed, max_speed);
    position += velocity;
    position = clip(position, min_position, max_position);
    if (position == min_position && velocity < 0) velocity = 0;
    ++steps;
    Step r;
    r.obs = obs();
    r.terminated = position >= goal_position && velocity >= goal_velocity;
    // Gymnasium charges the action as given (before clipping) in the reward.
    r.reward = (r.terminated ? 100.0 : 0.0) - 0.1 * action[0] * action[0];
    r.truncated = !r.terminated && steps >= max_episode_steps;
    return r;
  }
};

}  // namespace marrow::rl
