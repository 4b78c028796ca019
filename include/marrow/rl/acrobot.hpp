#pragma once
// Acrobot-v1 (Sutton 1996; Gymnasium's "book" dynamics): two links of 1 m and
// 1 kg, torque in {-1, 0, +1} on the middle joint, RK4 over dt = 0.2 s,
// velocities bounded to 4π and 9π, reward -1 per step and 0 on reaching the
// goal height (-cos θ1 - cos(θ1+θ2) > 1), 500-step limit.
#include "env.hpp"

namespace marrow::rl {

struct Acrobot {
  static constexpr const char* kName = "Acrobot-v1";
  static constexpr int obs_dim = 6, act_dim = 3;
  static constexpr bool discrete = true;
  static constexpr int max_episode_steps = 500;
  static constexpr double threshold = -100.0;

  static constexpr double dt = 0.2, l1 = 1.0, m1 = 1.0, m2 = 1.0, lc1 = 0.5, lc2 = 0.5, I1 = 1.0, I2 = 1.0,
                          g = 9.8;
  static constexpr double max_vel_1 = 4 * std::numbers::pi, max_vel_2 = 9 * std::numbers::pi;

  std::array<double, 4> s{};  // theta1, theta2, dtheta1, dtheta2
  int steps = 0;

  Obs obs() const { return {std::cos(s[0]), std::sin(s[0]), std::cos(s[1]), std::sin(s[1]), s[2], s[3]}; }
  bool at_goal() const { return -std::cos(s[0]) - std::cos(s[1] + s[0]) > 1.0; }

  Obs reset(Rng& rng) {
    for (auto& v : s) v = rng.uniform(-0.1, 0.1);
    steps = 0;
    return obs();
  }

  // d/dt of (theta1, theta2, dtheta1, dtheta2) under torque a.
  static std::array<double, 4> dsdt(const std::array<double, 4>& st, double a) {
    constexpr double pi = std::numbers::pi;
    const double theta1 = st[0], theta2 = st[1], dtheta1 = st[2], dtheta2 = st[3];
    const double d1 = m1 * lc1 * lc1 + m2 * (l1 * l1 + lc2 * lc2 + 2 * l1 * lc2 * std::cos(theta2)) + I1 + I2;
    const double d2 = m2 * (lc2 * lc2 + l1 * lc2 * std::cos(theta2)) + I2;
    const double phi2 = m2 * lc2 * g * std::cos(theta1 + theta2 - pi / 2.0);
    const double phi1 = -m2 * l1 * lc2 * dtheta2 * dtheta2 * std::sin(theta2) -
                        2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * std::sin(theta2) +
                        (m1 * lc1 + m2 * l1) * g * std::cos(theta1 - pi / 2) + phi2;
    const double ddtheta2 = (a + d2 / d1 * phi1 - m2 * l1 * lc2 * dtheta1 * dtheta1 * std::sin(theta2) - phi2) /
                            (m2 * lc2 * lc2 + I2 - d2 * d2 / d1);
    const double ddtheta1 = -(d2 * ddtheta2 + phi1) / d1;
    return {dtheta1, dtheta2, ddtheta1, ddtheta2};
  }

  Step step(const Obs& action) {
    const double torque = double(int(action[0]) - 1);  // actions 0, 1, 2 -> -1, 0, +1
    auto add = [](const std::array<double, 4>& a, const std::array<double, 4>& b, double h) {
      return std::array<double, 4>{a[0] + h * b[0], a[1] + h * b[1], a[2] + h * b[2], a[3] + h * b[3]};
    };
    const auto k1 = dsdt(s, torque);
    const auto k2 = dsdt(add(s, k1, dt / 2), torque);
    const auto k3 = dsdt(add(s, k2, dt / 2), torque);
    const auto k4 = dsdt(add(s, k3, dt), torque);
    for (int i = 0; i < 4; ++i) s[i] += dt / 6.0 * (k1[i] + 2 * k2[i] + 2 * k3[i] + k4[i]);
    s[0] = wrap_angle(s[0]);
    s[1] = wrap_angle(s[1]);
    s[2] = clip(s[2], -max_vel_1, max_vel_1);
    s[3] = clip(s[3], -max_vel_2, max_vel_2);
    ++steps;
    Step r;
    r.obs = obs();
    r.terminated = at_goal();
    r.reward = r.terminated ? 0.0 : -1.0;
    r.truncated = !r.terminated && steps >= max_episode_steps;
    return r;
  }
};

}  // namespace marrow::rl
