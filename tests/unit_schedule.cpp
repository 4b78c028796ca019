#include "testing.hpp"

#include <marrow/optim.hpp>
#include <marrow/schedule.hpp>

using namespace marrow;
using doctest::Approx;

TEST_CASE("schedule: Constant, Step, Exponential") {
  sched::Constant<double> c{0.3};
  CHECK(c.at(0) == 0.3);
  CHECK(c.at(1000000) == 0.3);
  sched::Step<double> s{.base_lr = 1.0, .step_size = 10, .gamma = 0.5};
  CHECK(s.at(0) == 1.0);
  CHECK(s.at(9) == 1.0);
  CHECK(s.at(10) == 0.5);
  CHECK(s.at(25) == 0.25);
  sched::Exponential<double> e{.base_lr = 2.0, .gamma = 0.9};
  CHECK(e.at(0) == 2.0);
  CHECK(e.at(2) == Approx(2.0 * 0.81));
  CHECK_THROWS_WITH_AS(s.at(-1), doctest::Contains("Step: negative step -1"), Error);
  CHECK_THROWS_WITH_AS((sched::Step<double>{1.0, 0}.at(3)), doctest::Contains("Step: step_size must be positive"), Error);
}

TEST_CASE("schedule: WarmupCosine follows nanoGPT's get_lr") {
  sched::WarmupCosine<double> w{.base_lr = 1.0, .warmup_steps = 10, .total_steps = 100, .min_lr = 0.1};
  CHECK(w.at(0) == Approx(1.0 / 11.0).scale(0));   // (0 + 1)/(10 + 1)
  CHECK(w.at(9) == Approx(10.0 / 11.0).scale(0));  // last warmup step
  CHECK(w.at(10) == Approx(1.0));         // cos(0): peak
  CHECK(w.at(55) == Approx(0.55).scale(0));        // halfway: min + ½(base − min)
  CHECK(w.at(100) == Approx(0.1).scale(0));        // cos(π): min
  CHECK(w.at(5000) == 0.1);
  // Monotone decay after warmup.
  for (int i = 10; i < 100; ++i) CHECK(w.at(i + 1) <= w.at(i));
  CHECK_THROWS_WITH_AS((sched::WarmupCosine<double>{1.0, 10, 10}.at(0)), doctest::Contains("WarmupCosine: need 0 <= warmup_steps"),
                       Error);
}

TEST_CASE("schedule: LinearDecay matches CleanRL's PPO annealing") {
  sched::LinearDecay<double> l{.base_lr = 2.5e-4, .end_lr = 0.0, .total_steps = 4};
  // CleanRL: frac = 1 − (iteration − 1)/num_iterations, iteration = step + 1
  CHECK(l.at(0) == Approx(2.5e-4).scale(0));
  CHECK(l.at(1) == Approx(0.75 * 2.5e-4).scale(0));
  CHECK(l.at(3) == Approx(0.25 * 2.5e-4).scale(0));
  CHECK(l.at(4) == 0.0);
  CHECK(l.at(9) == 0.0);
  sched::LinearDecay<float> up{.base_lr = 1.0f, .end_lr = 3.0f, .total_steps = 2};
  CHECK(up.at(1) == Approx(2.0));
}

TEST_CASE("schedule: OneCycle matches torch's two-phase cosine") {
  sched::OneCycle<double> o{.max_lr = 1.0, .total_steps = 100};
  // initial = 1/25 = 0.04; final = 0.04/1e4 = 4e-6; phase 1 ends at 0.3·100 − 1 = 29, phase 2 at 99
  CHECK(o.at(0) == Approx(0.04).scale(0));
  CHECK(o.at(10) == Approx(1.0 + (0.04 - 1.0) / 2 * (std::cos(M_PI * 10.0 / 29.0) + 1)));
  CHECK(o.at(29) == Approx(1.0));
  CHECK(o.at(64) == Approx((1.0 + 4e-6) / 2).scale(0));  // halfway through phase 2
  CHECK(o.at(99) == Approx(4e-6).scale(0));
  CHECK_THROWS_WITH_AS(o.at(101), doctest::Contains("OneCycle: step 101 past total_steps 100"), Error);
}

TEST_CASE("schedule: ReduceOnPlateau patience, threshold, cooldown, min_lr, max mode, state") {
  sched::ReduceOnPlateau<double> r{.lr = 1.0, .factor = 0.5, .patience = 2, .threshold = 0.1, .cooldown = 1, .min_lr = 0.2};
  CHECK(r.update(10.0) == 1.0);  // first metric is always an improvement
  CHECK(r.update(9.5) == 1.0);   // not 10% better: bad 1
  CHECK(r.update(9.2) == 1.0);   // bad 2 (== patience, not more)
  CHECK(r.update(9.9) == 0.5);   // bad 3 > patience: halve, start cooldown
  CHECK(r.update(9.9) == 0.5);   // cooldown: bad count reset
  CHECK(r.update(9.9) == 0.5);   // bad 1
  CHECK(r.update(8.0) == 0.5);   // 20% better: resets
  CHECK(r.num_bad == 0);
  for (int i = 0; i < 3; ++i) r.update(8.0);
  CHECK(r.lr == 0.25);
  for (int i = 0; i < 8; ++i) r.update(8.0);
  CHECK(r.lr == 0.2);  // floored at min_lr
  CHECK(r.at(123) == 0.2);

  sched::ReduceOnPlateau<double> m{.lr = 1.0, .mode = sched::PlateauMode::Max, .patience = 0};
  CHECK(m.update(0.5) == 1.0);
  CHECK(m.update(0.9) == 1.0);  // accuracy went up
  CHECK(m.update(0.9) == Approx(0.1).scale(0));

  // Save and restore the state through the visitor.
  Tensor<double> saved;
  r.visit_state([&](const std::string& n, Tensor<double>& s) {
    CHECK(n == "plateau.state");
    saved = s.clone();
  });
  sched::ReduceOnPlateau<double> fresh{.lr = 1.0, .factor = 0.5, .patience = 2, .threshold = 0.1, .cooldown = 1, .min_lr = 0.2};
  fresh.visit_state([&](const std::string&, Tensor<double>& s) { s.copy_from(saved); });
  CHECK(fresh.lr == 0.2);
  CHECK(fresh.best == 8.0);
  CHECK(fresh.num_bad == r.num_bad);
  CHECK_THROWS_WITH_AS((sched::ReduceOnPlateau<double>{.lr = 1.0, .factor = 2.0}.update(1.0)),
                       doctest::Contains("ReduceOnPlateau: factor must lie in [0, 1)"), Error);
}

TEST_CASE("schedule: driving an optimizer") {
  Param<float> p(Tensor<float>({1}, {0.0f}));
  ParamList<float> ps = {{"p", &p}};
  SGD<float> opt(ps, {.lr = 0.0f});
  sched::WarmupCosine<float> w{.base_lr = 1.0f, .warmup_steps = 1, .total_steps = 3};
  for (int i = 0; i < 4; ++i) {
    opt.set_lr(w.at(opt.steps()));
    p.grad().fill(1.0f);
    opt.step();
  }
  // lr sequence: 0.5, 1.0, 0.5, 0.0 → p = −2
  CHECK(p.value()[0] == Approx(-2.0));
  CHECK(opt.steps() == 4);
}
