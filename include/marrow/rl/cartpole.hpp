#pragma once
// CartPole-v1 (Barto, Sutton & Anderson 1983) with Gymnasium's constants:
// Euler integration at tau = 0.02 s, force ±10 N, termination at |x| > 2.4 or
// |theta| > 12°, reward 1 per step (the terminating step included), 500-step limit.
#include "env.hpp"

namespace marrow::rl {

struct CartPole {
  static constexpr const char* kName = "CartPole-v1";
  static constexpr int obs_dim = 4, act_dim = 2;
  static constexpr bool discrete = true;
  static constexpr int max_episode_steps = 500;
  static constexpr double threshold = 475.0;

  static constexpr double gravity = 9.8, masscart = 1.0, masspole = 0.1, total_mass = masspole + masscart;
  static constexpr double length = 0.5;  // half the pole's length
  static constexpr double polemass_length = masspole * length, force_mag = 10.0, tau = 0.02;
  static constexpr double theta_threshold = 12 * 2 * std::numbers::pi / 360, x_threshold = 2.4;

  double x = 0, x_dot = 0, theta = 0, theta_dot = 0;
  int steps = 0;

  Obs obs() const { return {x, x_dot, theta, theta_dot}; }

  Obs reset(Rng& rng) {
    x = rng.uniform(-0.05, 0.05);
    x_dot = rng.uniform(-0.05, 0.05);
    theta = rng.uniform(-0.05, 0.05);
    theta_dot = rng.uniform(-0.05, 0.05);
    steps = 0;
    return obs();
  }

  Step step(const Obs& action) {
    const double force = action[0] >= 0.5 ? force_mag : -force_mag;
    const double c = std::cos(theta), s = std::sin(theta);
    const double temp = (force + polemass_length * theta_dot * theta_dot * s) / total_mass;
    const double thetaacc = (gravity * s - c * temp) / (length * (4.0 / 3.0 - masspole * c * c / total_mass));
    const double xacc = temp - polemass_length * thetaacc * c / total_mass;
    x += tau * x_dot;
    x_dot += tau * xacc;
    theta += tau * theta_dot;
    theta_dot += tau * thetaacc;
    ++steps;
    Step r;
    r.obs = obs();
    r.reward = 1.0;
    r.terminated = x < -x_threshold || x > x_threshold || theta < -theta_threshold || theta > theta_threshold;
    r.truncated = !r.terminated && steps >= max_episode_steps;
    return r;
  }
};

}  // namespace marrow::rl
