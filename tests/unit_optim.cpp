#include "testing.hpp"

#include <map>
#include <marrow/optim.hpp>

using namespace marrow;

// Every trajectory starts from p = (1, -2) and applies two fixed gradients,
// g1 = (0.5, -1) then g2 = (0.1, 0.3). Expected values come from PyTorch's
// update rules written out by hand (the formulas block at the end of optim.hpp).
namespace {
const std::vector<double> kG1 = {0.5, -1.0}, kG2 = {0.1, 0.3};

struct Fixture {
  Param<double> p{Tensor<double>({2}, {1.0, -2.0})};
  ParamList<double> params() { return {{"p", &p}}; }
  void set_grad(const std::vector<double>& g) {
    p.grad()[0] = g[0];
    p.grad()[1] = g[1];
  }
};

// Apply g1, check, apply g2, check.
template <class Opt>
void check_two_steps(Fixture& f, Opt& opt, std::vector<double> after1, std::vector<double> after2, double tol = 1e-12) {
  f.set_grad(kG1);
  opt.step();
  CHECK(f.p.value()[0] == doctest::Approx(after1[0]).epsilon(tol));
  CHECK(f.p.value()[1] == doctest::Approx(after1[1]).epsilon(tol));
  f.set_grad(kG2);
  opt.step();
  CHECK(f.p.value()[0] == doctest::Approx(after2[0]).epsilon(tol));
  CHECK(f.p.value()[1] == doctest::Approx(after2[1]).epsilon(tol));
}
}  // namespace

TEST_CASE("optim: SGD plain, weight decay, momentum with dampening, nesterov") {
  SUBCASE("plain: p − lr·g") {
    Fixture f;
    SGD<double> opt(f.params(), {.lr = 0.1});
    // (1 − 0.05, −2 + 0.1) = (0.95, −1.9); then (0.95 − 0.01, −1.9 − 0.03)
    check_two_steps(f, opt, {0.95, -1.9}, {0.94, -1.93});
  }
  SUBCASE("weight decay: g + wd·p") {
    Fixture f;
    SGD<double> opt(f.params(), {.lr = 0.1, .weight_decay = 0.1});
    // g = (0.5 + 0.1, −1 − 0.2) → (0.94, −1.88); g = (0.1 + 0.094, 0.3 − 0.188) → (0.9206, −1.8912)
    check_two_steps(f, opt, {0.94, -1.88}, {0.9206, -1.8912});
  }
  SUBCASE("momentum 0.9, dampening 0.5: first buffer is the raw gradient") {
    Fixture f;
    SGD<double> opt(f.params(), {.lr = 0.1, .momentum = 0.9, .dampening = 0.5});
    // b1 = g1 → (0.95, −1.9); b2 = 0.9·(0.5, −1) + 0.5·(0.1, 0.3) = (0.5, −0.75) → (0.9, −1.825)
    check_two_steps(f, opt, {0.95, -1.9}, {0.9, -1.825});
  }
  SUBCASE("nesterov 0.9 with weight decay 0.01") {
    Fixture f;
    SGD<double> opt(f.params(), {.lr = 0.1, .momentum = 0.9, .nesterov = true, .weight_decay = 0.01});
    // g = (0.51, −1.02) = b; step g + 0.9·b = (0.969, −1.938) → (0.9031, −1.8062)
    // g = (0.109031, 0.281938); b = 0.9·b + g = (0.568031, −0.636062); g + 0.9b = (0.6202589, −0.2904178)
    check_two_steps(f, opt, {0.9031, -1.8062}, {0.84107411, -1.77714822});
  }
  Fixture f;
  CHECK_THROWS_WITH_AS(SGD<double>(f.params(), {.lr = 0.1, .nesterov = true}),
                       doctest::Contains("sgd: nesterov needs momentum > 0"), Error);
  CHECK_THROWS_WITH_AS(SGD<double>(f.params(), {.lr = -1.0}), doctest::Contains("sgd: negative learning rate"), Error);
}

TEST_CASE("optim: Adam, L2 weight decay, amsgrad, AdamW decoupled decay") {
  SUBCASE("adam") {
    Fixture f;
    Adam<double> opt(f.params(), {.lr = 0.1});
    // step 1: m̂ = g, v̂ = g², so p −= 0.1·g/(|g| + 1e-8) ≈ 0.1·sign(g) → (0.900000002, −1.900000001)
    // step 2: m = (0.055, −0.06), v = (0.00025975, 0.00108891); bc1 = 0.19, bc2 = 0.001999
    check_two_steps(f, opt, {0.900000002, -1.900000001}, {0.8196959063846517, -1.8572151424292265});
  }
  SUBCASE("adam with L2 weight decay 0.1") {
    Fixture f;
    Adam<double> opt(f.params(), {.lr = 0.1, .weight_decay = 0.1});
    // g1 = (0.6, −1.2): step 1 is again ≈ 0.1·sign(g); step 2 uses g2 + 0.1·p1
    check_two_steps(f, opt, {0.9000000016666666, -1.9000000008333333}, {0.8136483454297575, -1.8400703555381717});
  }
  SUBCASE("amsgrad keeps the larger second moment (beta2 0.5 makes v shrink)") {
    Fixture f;
    Adam<double> plain(f.params(), {.lr = 0.1, .beta2 = 0.5});
    // v2 = 0.5·(0.125, 0.5) + 0.5·(0.01, 0.09) = (0.0675, 0.295) < v1 = (0.125, 0.5)
    check_two_steps(f, plain, {0.900000002, -1.900000001}, {0.8035087771461987, -1.8496479383178588});
    Fixture f2;
    Adam<double> ams(f2.params(), {.lr = 0.1, .beta2 = 0.5, .amsgrad = true});
    check_two_steps(f2, ams, {0.900000002, -1.900000001}, {0.8290937217089079, -1.8613238476402656});
  }
  SUBCASE("adamw: p·(1 − lr·wd) then the Adam step") {
    Fixture f;
    AdamW<double> opt(f.params(), {.lr = 0.1, .weight_decay = 0.1});
    // step 1: (1·0.99 − 0.1, −2·0.99 + 0.1) = (0.89, −1.88)
    check_two_steps(f, opt, {0.890000002, -1.880000001}, {0.8007959063646517, -1.8184151424192265});
    AdamW<double> def(f.params(), {.lr = 0.1});
    CHECK(def.options().weight_decay == 0.01);  // PyTorch's AdamW default survives setting lr alone
  }
  Fixture f;
  CHECK_THROWS_WITH_AS(Adam<double>(f.params(), {.beta1 = 1.0}), doctest::Contains("adam: betas must lie in [0, 1)"),
                       Error);
  ParamList<double> twice = {{"a", &f.p}, {"b", &f.p}};
  SGD<double> sgd(f.params(), {.lr = 0.1});
  f.p.value() = Tensor<double>({3});  // swapped for a tensor the state was not sized for
  f.p.grad();
  CHECK_THROWS_WITH_AS(sgd.step(), doctest::Contains("sgd: parameter 'p' now has shape (3,) but had 2 elements"), Error);
  CHECK_THROWS_WITH_AS(AdamW<double>(twice, {}), doctest::Contains("adamw: parameter 'b' is listed twice (also as 'a')"), Error);
}

TEST_CASE("optim: RMSprop plain and centered with momentum and weight decay") {
  SUBCASE("plain") {
    Fixture f;
    RMSprop<double> opt(f.params(), {.lr = 0.01});
    // s1 = 0.01·g² → p −= 0.01·g/(0.1|g| + 1e-8) ≈ 0.1·sign(g)
    check_two_steps(f, opt, {0.900000019999996, -1.900000009999999}, {0.8802934383202046, -1.9288675206817028});
  }
  SUBCASE("centered, momentum 0.9, weight decay 0.1") {
    Fixture f;
    RMSprop<double> opt(f.params(), {.lr = 0.01, .weight_decay = 0.1, .momentum = 0.9, .centered = true});
    // g1 = (0.6, −1.2); s = 0.01g², ḡ = 0.01g; d = √(0.01g² − 0.0001g²) + ε = 0.099499|g| + ε
    check_two_steps(f, opt, {0.8994962353090928, -1.8994962268915865}, {0.7784826402260491, -1.8182583083047712});
  }
}

TEST_CASE("optim: parameter groups, set_lr keeps group scaling, skipped parameters") {
  Param<double> w(Tensor<double>({1, 2}, {1.0, 1.0})), b(Tensor<double>({2}, {1.0, 1.0})),
      emb(Tensor<double>({2, 1}, {1.0, 1.0})), unused(Tensor<double>({2}, {5.0, 5.0}));
  ParamList<double> all = {{"w", &w}, {"b", &b}, {"emb.weight", &emb}, {"unused", &unused}};
  auto groups = decay_groups(all, [](const NamedParam<double>& p) { return p.name.rfind("emb", 0) == 0; });
  REQUIRE(groups.size() == 2);
  CHECK(groups[0].name == "decay");
  CHECK(groups[0].params.size() == 1);  // only w: emb is excluded by name, b and unused by rank
  CHECK(groups[1].params.size() == 3);
  groups[1].lr_scale = 2.0;
  SGD<double> opt(groups, {.lr = 0.1, .weight_decay = 0.5});
  CHECK(opt.groups()[0].weight_decay == 0.5);
  CHECK(opt.groups()[1].weight_decay == 0.0);
  CHECK(opt.groups()[1].lr == doctest::Approx(0.2).scale(0));
  opt.set_lr(0.05);
  CHECK(opt.lr() == 0.05);
  CHECK(opt.groups()[0].lr == doctest::Approx(0.05).scale(0));
  CHECK(opt.groups()[1].lr == doctest::Approx(0.1).scale(0));
  w.grad().fill(1.0);
  b.grad().fill(1.0);
  emb.grad().fill(1.0);
  opt.step();
  CHECK(w.value()[0] == doctest::Approx(1.0 - 0.05 * (1.0 + 0.5)).scale(0));  // decayed
  CHECK(b.value()[0] == doctest::Approx(1.0 - 0.1 * 1.0).scale(0));            // no decay, lr × 2
  CHECK(emb.value()[0] == doctest::Approx(0.9).scale(0));
  CHECK(unused.value()[0] == 5.0);  // never got a gradient: skipped
  CHECK(!unused.has_grad());
  opt.zero_grad();
  CHECK(w.grad()[0] == 0.0);
  CHECK(opt.steps() == 1);
}

TEST_CASE("optim: state save/restore gives identical subsequent steps") {
  auto run = [](auto make_opt) {
    Rng rng(3);
    Param<double> a(randn<double>({3, 4}, rng)), c(randn<double>({4}, rng));
    ParamList<double> ps = {{"a", &a}, {"c", &c}};
    auto opt = make_opt(ps);
    auto grads = [&](int k) {
      Rng g(100 + k);
      for (auto& v : a.grad()) v = g.normal();
      for (auto& v : c.grad()) v = g.normal();
    };
    for (int k = 0; k < 3; ++k) grads(k), opt.step();
    // Snapshot parameters and every state tensor, by name.
    std::map<std::string, Tensor<double>> saved;
    opt.visit_state([&](const std::string& n, Tensor<double>& s) { saved[n] = s.clone(); });
    const Tensor<double> a_saved = a.value().clone(), c_saved = c.value().clone();
    for (int k = 3; k < 5; ++k) grads(k), opt.step();
    const Tensor<double> a_ref = a.value().clone();
    // A fresh optimizer restored from the snapshot must retrace the same two steps bitwise.
    a.value().copy_from(a_saved);
    c.value().copy_from(c_saved);
    auto fresh = make_opt(ps);
    std::size_t restored = 0;
    fresh.visit_state([&](const std::string& n, Tensor<double>& s) {
      REQUIRE(saved.count(n));
      s.copy_from(saved[n]);
      ++restored;
    });
    CHECK(restored == saved.size());
    CHECK(fresh.steps() == 3);
    for (int k = 3; k < 5; ++k) grads(k), fresh.step();
    for (index_t i = 0; i < a.numel(); ++i) CHECK(a.value()[i] == a_ref[i]);
    return saved;
  };
  auto s = run([](ParamList<double>& ps) { return Adam<double>(ps, {.lr = 0.01, .amsgrad = true}); });
  CHECK(s.count("adam.exp_avg.a"));
  CHECK(s.count("adam.max_exp_avg_sq.c"));
  CHECK(s.count("adam.step.a"));
  CHECK(s.at("adam.step.a")[0] == 3.0);
  s = run([](ParamList<double>& ps) { return SGD<double>(ps, {.lr = 0.01, .momentum = 0.9}); });
  CHECK(s.count("sgd.momentum_buffer.c"));
  s = run([](ParamList<double>& ps) { return AdamW<double>(ps, {.lr = 0.01, .weight_decay = 0.1}); });
  CHECK(s.count("adamw.exp_avg_sq.a"));
  s = run([](ParamList<double>& ps) { return RMSprop<double>(ps, {.lr = 0.01, .momentum = 0.5, .centered = true}); });
  CHECK(s.count("rmsprop.grad_avg.a"));
}

TEST_CASE("optim: clip_grad_norm and grad_norm") {
  Param<double> a(Tensor<double>({2}, {0.0, 0.0})), b(Tensor<double>({1}, {0.0})), none(Tensor<double>({3}));
  a.grad()[0] = 3.0;
  a.grad()[1] = 0.0;
  b.grad()[0] = 4.0;
  ParamList<double> ps = {{"a", &a}, {"b", &b}, {"none", &none}};
  CHECK(grad_norm(ps) == doctest::Approx(5.0));
  // Below the limit: untouched.
  CHECK(clip_grad_norm(ps, 10.0) == doctest::Approx(5.0));
  CHECK(a.grad()[0] == 3.0);
  // Above: scaled by 1 / (5 + 1e-6), returns the norm before clipping.
  CHECK(clip_grad_norm(ps, 1.0) == doctest::Approx(5.0));
  CHECK(a.grad()[0] == doctest::Approx(3.0 / (5.0 + 1e-6)).epsilon(1e-12));
  CHECK(b.grad()[0] == doctest::Approx(4.0 / (5.0 + 1e-6)).epsilon(1e-12));
  CHECK(grad_norm(ps) == doctest::Approx(1.0).epsilon(1e-6));
  CHECK(!none.has_grad());
  CHECK_THROWS_WITH_AS(clip_grad_norm(ps, 0.0), doctest::Contains("clip_grad_norm: max_norm must be positive"), Error);
}

TEST_CASE("optim: float parameters, large tensors take the threaded path") {
  Rng rng(1);
  Param<float> w(randn<float>({600, 600}, rng));  // above the threading threshold
  Tensor<float> w0 = w.value().clone();
  ParamList<float> ps = {{"w", &w}};
  Adam<float> opt(ps, {.lr = 1e-2f});
  w.grad().fill(1.0f);
  opt.step();
  // First Adam step moves every entry by ≈ lr against the gradient's sign.
  float max_dev = 0;
  for (index_t i = 0; i < w.numel(); ++i) max_dev = std::max(max_dev, std::abs(w.value()[i] - (w0[i] - 1e-2f)));
  CHECK(max_dev < 1e-6f);
}
