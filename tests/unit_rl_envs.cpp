// Hand-computed transitions of each environment, from its equations.
#include "testing.hpp"

#include <marrow/rl/acrobot.hpp>
#include <marrow/rl/cartpole.hpp>
#include <marrow/rl/mountain_car.hpp>
#include <marrow/rl/pendulum.hpp>
#include <marrow/rl/vec_env.hpp>

using namespace marrow;
using namespace marrow::rl;

namespace {
// The same double arithmetic as the environment, maybe in another order: equal to
// rounding, relative to the value (Approx's default scale of 1 would let a value of
// 0.0006 be off by 2 %).
doctest::Approx near(double x) { return doctest::Approx(x).epsilon(1e-12).scale(0); }
}  // namespace

TEST_CASE("rl: CartPole transition from rest, push right") {
  CartPole env;  // all state zero
  auto s = env.step({1.0});
  // temp = 10/1.1; thetaacc = -temp / (0.5·(4/3 − 0.1/1.1)); xacc = temp − 0.05·thetaacc/1.1
  const double temp = 10.0 / 1.1;
  const double thetaacc = -temp / (0.5 * (4.0 / 3.0 - 0.1 / 1.1));
  const double xacc = temp - 0.05 * thetaacc / 1.1;
  CHECK(s.obs[0] == 0.0);  // Euler: position uses the old velocity
  CHECK(s.obs[1] == near(0.02 * xacc));
  CHECK(s.obs[2] == 0.0);
  CHECK(s.obs[3] == near(0.02 * thetaacc));
  CHECK(s.obs[3] == doctest::Approx(-0.2926829).epsilon(1e-6).scale(0));  // −(10/1.1)/0.6212121·0.02
  CHECK(s.reward == 1.0);
  CHECK_FALSE(s.terminated);
}

TEST_CASE("rl: CartPole terminates past 12 degrees and truncates at 500") {
  CartPole env;
  env.theta = 0.2094;  // just under 12° = 0.20944
  env.theta_dot = 1.0;
  auto s = env.step({1.0});
  CHECK(s.terminated);
  CHECK(s.reward == 1.0);
  Rng rng(0);
  CartPole e2;
  e2.reset(rng);
  e2.steps = 499;
  e2.x = e2.x_dot = e2.theta = e2.theta_dot = 0;
  auto s2 = e2.step({0.0});
  CHECK(s2.truncated);
  CHECK_FALSE(s2.terminated);
}

TEST_CASE("rl: CartPole reset distribution is U(-0.05, 0.05)") {
  Rng rng(1);
  CartPole env;
  for (int i = 0; i < 100; ++i) {
    auto o = env.reset(rng);
    for (int k = 0; k < 4; ++k) CHECK(std::abs(o[k]) <= 0.05);
  }
}

TEST_CASE("rl: Pendulum transition") {
  Pendulum env;
  env.th = 1.0;
  env.thdot = 0.5;
  auto s = env.step({3.0});  // torque clipped to 2
  const double cost = 1.0 + 0.1 * 0.25 + 0.001 * 4.0;
  const double nthdot = 0.5 + (3 * 10.0 / 2 * std::sin(1.0) + 3.0 * 2.0) * 0.05;
  CHECK(s.reward == near(-cost));
  CHECK(s.obs[2] == near(nthdot));
  CHECK(s.obs[0] == near(std::cos(1.0 + nthdot * 0.05)));
  CHECK(s.obs[1] == near(std::sin(1.0 + nthdot * 0.05)));
  CHECK_FALSE(s.terminated);
  // The angle cost uses θ normalized to [-π, π): θ = 2π + 0.1 costs like 0.1.
  Pendulum e2;
  e2.th = 2 * std::numbers::pi + 0.1;
  e2.thdot = 0;
  CHECK(e2.step({0.0}).reward == near(-0.01));
  Pendulum e3;
  e3.steps = 199;
  CHECK(e3.step({0.0}).truncated);
  // speed is clipped to 8
  Pendulum e4;
  e4.th = 1.5;
  e4.thdot = 7.9;
  CHECK(e4.step({2.0}).obs[2] == 8.0);
}

// Whole-episode check of the dynamics' signs and scales: a hand-written swing-up
// controller (energy pumping, then PD near the top) scores about -150 over 200 steps,
// doing nothing about -1200. A flipped gravity or torque sign breaks both.
TEST_CASE("rl: Pendulum swing-up controller solves it, zero torque does not") {
  auto mean_return = [](bool control) {
    Rng rng(7);
    double total = 0;
    const int episodes = 50;
    for (int ep = 0; ep < episodes; ++ep) {
      Pendulum env;
      Obs o = env.reset(rng);
      for (;;) {
        const double th = std::atan2(o[1], o[0]), w = o[2];
        // Energy relative to upright at rest (θ = 0 is up; 3g/2l = 15).
        const double energy = w * w / 30.0 + (o[0] - 1.0);
        double u = 0;
        if (control) u = o[0] > 0.85 ? -(10.0 * th + 2.0 * w) : (energy < 0 ? 2.0 : -2.0) * (w >= 0 ? 1 : -1);
        Step s = env.step({u});
        total += s.reward;
        o = s.obs;
        if (s.terminated || s.truncated) break;
      }
    }
    return total / episodes;
  };
  CHECK(mean_return(true) > -200.0);
  CHECK(mean_return(false) < -800.0);
}

TEST_CASE("rl: MountainCarContinuous transition, wall and goal") {
  MountainCarContinuous env;
  env.position = -0.5;
  env.velocity = 0.0;
  auto s = env.step({0.5});
  const double v = 0.5 * 0.0015 - 0.0025 * std::cos(3 * -0.5);
  CHECK(s.obs[1] == near(v));
  CHECK(s.obs[0] == near(-0.5 + v));
  CHECK(s.reward == near(-0.1 * 0.25));
  MountainCarContinuous wall;
  wall.position = -1.19;
  wall.velocity = -0.05;
  auto w = wall.step({-1.0});
  CHECK(w.obs[0] == -1.2);
  CHECK(w.obs[1] == 0.0);
  MountainCarContinuous goal;
  goal.position = 0.44;
  goal.velocity = 0.02;
  auto g = goal.step({1.0});
  CHECK(g.terminated);
  CHECK(g.reward == near(100.0 - 0.1));
}

TEST_CASE("rl: Acrobot RK4 step from rest with zero torque stays at rest") {
  Acrobot env;  // hanging straight down, no velocity: an equilibrium
  auto s = env.step({1.0});
  for (int k = 0; k < 6; ++k) CHECK(std::abs(s.obs[k] - (k == 0 || k == 2 ? 1.0 : 0.0)) < 1e-12);
  CHECK(s.reward == -1.0);
}

TEST_CASE("rl: Acrobot derivatives match the book equations at a hand-computed point") {
  // θ1 = 0, θ2 = 0, velocities 0, torque +1:
  // d1 = 0.25 + (1 + 0.25 + 1) + 2 = 4.5; d2 = (0.25 + 0.5) + 1 = 1.75
  // phi2 = 0.5·9.8·cos(−π/2) = 0; phi1 = (0.5 + 1)·9.8·cos(−π/2) + 0 = 0
  // ddθ2 = (1 + 0 − 0 − 0) / (0.25 + 1 − 1.75²/4.5); ddθ1 = −1.75·ddθ2 / 4.5
  auto d = Acrobot::dsdt({0, 0, 0, 0}, 1.0);
  const double dd2 = 1.0 / (0.25 + 1.0 - 1.75 * 1.75 / 4.5);
  CHECK(d[3] == near(dd2));
  CHECK(d[2] == near(-1.75 * dd2 / 4.5));
  Acrobot env;
  env.s = {std::numbers::pi, 0.0, 0.0, 0.0};  // pointing up: -cos(π) - cos(π) = 2 > 1
  CHECK(env.at_goal());
  auto st = env.step({1.0});
  CHECK(st.terminated);
  CHECK(st.reward == 0.0);
}

TEST_CASE("rl: vectorized env auto-resets and keeps the final observation") {
  VecEnv<CartPole> venv(3, 7);
  std::vector<Obs> act(3, Obs{1.0});
  std::vector<EpisodeStats> done;
  int ended = 0;
  for (int t = 0; t < 200 && ended == 0; ++t) {
    auto& r = venv.step(act, &done);
    for (int i = 0; i < 3; ++i)
      if (r.terminated[i]) {
        ++ended;
        CHECK(std::abs(r.final_obs[i][2]) > CartPole::theta_threshold - 0.1);  // the fallen pole
        CHECK(std::abs(venv.obs()[i][2]) <= 0.05);                          // a fresh episode
      }
  }
  CHECK(ended > 0);
  CHECK(done.size() == std::size_t(ended));
  CHECK(done[0].ret == done[0].length);
}
