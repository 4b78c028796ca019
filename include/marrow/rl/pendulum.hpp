#pragma once
// Pendulum-v1 (Gymnasium): torque in [-2, 2], dt = 0.05, g = 10, m = l = 1,
// speed clipped to ±8, cost θ² + 0.1·θ̇² + 0.001·u² (θ normalized to [-π, π)),
// never terminates, 200-step limit.
#include "env.hpp"

namespace marrow::rl {

struct Pendulum {
  static constexpr const char* kName = "Pendulum-v1";
  static constexpr int obs_dim = 3, act_dim = 1;
  static constexpr bool discrete = false;
  static constexpr int max_episode_steps = 200;
  static constexpr double threshold = -250.0;
  static constexpr double act_low = -2.0, act_high = 2.0;

  static constexpr double max_speed = 8.0, max_torque = 2.0, dt = 0.05, g = 10.0, m = 1.0, l = 1.0;

  double th = 0, thdot = 0;
  int steps = 0;

  Obs obs() const { return {std::cos(th), std::sin(th), thdot}; }

  Obs reset(Rng& rng) {
    th = rng.uniform(-std::numbers::pi, std::numbers::pi);
    thdot = rng.uniform(-1.0, 1.0);
    steps = 0;
    return obs();
  }

  Step step(const Obs& action) {
    const double u = clip(action[0], -max_torque, max_torque);
    const double a = wrap_angle(th);
    const double cost = a * a + 0.1 * thdot * thdot + 0.001 * u * u;
    double newthdot = thdot + (3 * g / (2 * l) * std::sin(th) + 3.0 / (m * l * l) * u) * dt;
    newthdot = clip(newthdot, -max_speed, max_speed);
    th = th + newthdot * dt;
    thdot = newthdot;
    ++steps;
    Step r;
    r.obs = obs();
    r.reward = -cost;
    r.truncated = steps >= max_episode_steps;
    return r;
  }
};

}  // namespace marrow::rl
