#include <marrow/loss.hpp>

#include "testing.hpp"

using namespace marrow;
using marrow::testing::rand_away_from_zero;
using I32 = Tensor<std::int32_t>;

namespace {
const Reduction kReductions[] = {Reduction::Mean, Reduction::Sum, Reduction::None};
const char* name(Reduction r) { return r == Reduction::Mean ? "mean" : r == Reduction::Sum ? "sum" : "none"; }

// A scalar from any loss output: per-element losses (None) get a random projection.
Var<double> scalar(Tape<double>& t, const Var<double>& l) {
  return l.numel() == 1 && l.ndim() == 0 ? l : marrow::testing::project(t, l);
}

// The 2-D example shared with the PyTorch reference values below.
Tensor<double> z2() {
  return Tensor<double>({4, 4}, {1.0, 2.0, 3.0, -1.0, 0.5, -0.5, 0.0, 2.0, 3.0, 3.0, -2.0, 1.0, 0.0, 1.0, 0.0, -1.0});
}
I32 y2() { return I32({4}, {2, 0, -100, 3}); }
Tensor<double> w4() { return Tensor<double>({4}, {0.5, 2.0, 1.0, 3.0}); }
}  // namespace

TEST_CASE("cross_entropy: hand-computed values") {
  Tape<double> t;
  // uniform logits: every class has p = 1/C, loss log C, for 2-D and 4-D logits
  CHECK(cross_entropy(t, t.input(zeros<double>({3, 5})), I32({3}, {0, 4, 2})).item() == doctest::Approx(std::log(5.0)));
  CHECK(cross_entropy(t, t.input(zeros<double>({2, 3, 2, 2})), I32({2, 2, 2}, {0, 1, 2, 0, 1, 1, 2, 0})).item() ==
        doctest::Approx(std::log(3.0)));
  // logits [1, 2, 3], target 0: lse − 1 = 2 + log(1 + e⁻¹ + e⁻²)
  auto z = t.input(Tensor<double>({1, 3}, {1, 2, 3}));
  const double lse = 3.0 + std::log(1.0 + std::exp(-1.0) + std::exp(-2.0));
  CHECK(cross_entropy(t, z, I32({1}, {0})).item() == doctest::Approx(lse - 1.0));
  // label smoothing 0.1: target distribution [0.9 + 0.1/3, 0.1/3, 0.1/3] -> lse − (0.9·1 + 0.1·2)
  CHECK(cross_entropy(t, z, I32({1}, {0}), {.label_smoothing = 0.1}).item() == doctest::Approx(lse - 1.1));
  // class weights normalize Mean by Σ w_y: rows [0, 0] -> log 2 (w 1), [0, ln 3] target 1 -> log(4/3) (w 3)
  Tensor<double> w({2}, {1.0, 3.0});
  auto z2r = t.input(Tensor<double>({2, 2}, {0, 0, 0, std::log(3.0)}));
  CHECK(cross_entropy(t, z2r, I32({2}, {0, 1}), {.class_weights = &w}).item() ==
        doctest::Approx((std::log(2.0) + 3.0 * std::log(4.0 / 3.0)) / 4.0).scale(0));
  // class weights + smoothing, one row of zeros, C = 2, ε = 0.2: 0.8·1·log 2 + 0.1·(1 + 3)·log 2
  CHECK(cross_entropy(t, t.input(zeros<double>({1, 2})), I32({1}, {0}), {.class_weights = &w, .label_smoothing = 0.2})
            .item() == doctest::Approx(1.2 * std::log(2.0)).scale(0));
  // ignored rows count for nothing; pixel weights scale the loss but not the normalizer
  Tensor<double> pw({2}, {2.0, 5.0});
  CHECK(cross_entropy(t, z2r, I32({2}, {0, -100}), {.pixel_weights = &pw}).item() == doctest::Approx(2.0 * std::log(2.0)));
  CHECK(cross_entropy(t, z2r, I32({2}, {0, 1}), {.pixel_weights = &pw}).item() ==
        doctest::Approx((2.0 * std::log(2.0) + 5.0 * std::log(4.0 / 3.0)) / 2.0));
}

TEST_CASE("cross_entropy: matches PyTorch 1.13 F.cross_entropy (values computed there, in double)") {
  Tape<double> t;
  auto z = t.input(z2());
  auto y = y2();
  auto w = w4();
  struct Ref {
    CrossEntropyOptions<double> opt;
    double mean, sum;
    std::vector<double> none;
  };
  const Ref refs[] = {
      {{}, 1.637088437765, 4.911265313295, {0.419716646315, 1.865025291944, 0.0, 2.626523375036}},
      {{.class_weights = &w}, 2.051510981644, 9.231799417396, {0.419716646315, 0.932512645972, 0.0, 7.879570125109}},
      {{.label_smoothing = 0.2}, 1.687088437765, 5.061265313295, {0.769716646315, 1.865025291944, 0.0, 2.426523375036}},
      {{.class_weights = &w, .label_smoothing = 0.2},
       2.079244613497,
       9.356600760738,
       {1.222181227105, 1.252143336659, 0.0, 6.882276196974}},
  };
  for (const Ref& r : refs) {
    CAPTURE(r.mean);
    auto o = r.opt;
    CHECK(cross_entropy(t, z, y, o).item() == doctest::Approx(r.mean).epsilon(1e-10));
    o.reduction = Reduction::Sum;
    CHECK(cross_entropy(t, z, y, o).item() == doctest::Approx(r.sum).epsilon(1e-10));
    o.reduction = Reduction::None;
    auto none = cross_entropy(t, z, y, o);
    CHECK(none.shape() == Shape{4});
    for (index_t i = 0; i < 4; ++i) CHECK(none.value()[i] == doctest::Approx(r.none[std::size_t(i)]).epsilon(1e-10));
  }
  // 4-D (N=1, C=3, 2, 2) with an ignored pixel
  auto z4 = t.input(Tensor<double>({1, 3, 2, 2}, {1.0, -1.0, 0.0, 2.0, 0.5, 0.5, 1.0, -2.0, -1.0, 3.0, 0.0, 0.0}));
  I32 y4({1, 2, 2}, {0, 2, -100, 1});
  Tensor<double> w3({3}, {1.0, 2.0, 0.5});
  CHECK(cross_entropy(t, z4, y4, {.class_weights = &w3, .label_smoothing = 0.3}).item() ==
        doctest::Approx(2.428516327454).epsilon(1e-10));
  auto n4 = cross_entropy(t, z4, y4, {.reduction = Reduction::None});
  CHECK(n4.shape() == Shape{1, 2, 2});
  const double ref4[] = {0.554956919642, 0.095674329414, 0.0, 4.142931628500};
  for (index_t i = 0; i < 4; ++i) CHECK(n4.value()[i] == doctest::Approx(ref4[i]).epsilon(1e-10));
}

TEST_CASE("cross_entropy: gradients for every option, 2-D and 4-D, every reduction") {
  struct Layout {
    Shape logits, target;
  };
  const Layout layouts[] = {{{5, 4}, {5}}, {{2, 3, 2, 3}, {2, 2, 3}}};
  for (const Layout& lay : layouts) {
    Rng rng(21);
    const index_t C = lay.logits[1];
    Param<double> z(randn<double>(lay.logits, rng));
    I32 y(lay.target);
    for (index_t i = 0; i < y.numel(); ++i) y[i] = std::int32_t(rng.below(std::uint64_t(C)));
    y[1] = -100;  // an ignored element in every configuration
    I32 y_ign = y.clone();
    y_ign[1] = y_ign[2] = 7;  // a custom ignore_index
    I32 y_ign0 = y.clone();
    y_ign0[1] = 0;  // ignore_index 0: a real class index (segmentation background) that is skipped
    Tensor<double> cw = uniform<double>({C}, rng, 0.2, 2.0);
    Tensor<double> pw = uniform<double>(lay.target, rng, 0.1, 3.0);
    struct Mode {
      const char* what;
      CrossEntropyOptions<double> opt;
      const I32* target;
    };
    const Mode modes[] = {
        {"plain", {}, &y},
        {"ignore_index 7", {.ignore_index = 7}, &y_ign},
        {"ignore_index 0", {.ignore_index = 0, .class_weights = &cw, .label_smoothing = 0.2}, &y_ign0},
        {"class weights", {.class_weights = &cw}, &y},
        {"pixel weights", {.pixel_weights = &pw}, &y},
        {"label smoothing", {.label_smoothing = 0.15}, &y},
        {"all combined", {.class_weights = &cw, .pixel_weights = &pw, .label_smoothing = 0.3}, &y},
    };
    for (const Mode& m : modes)
      for (Reduction red : kReductions) {
        CAPTURE(lay.logits.str());
        CAPTURE(std::string(m.what));
        CAPTURE(std::string(name(red)));
        auto opt = m.opt;
        opt.reduction = red;
        // h = 1e-5: at 1e-6 rounding noise (~1e-16·|loss|/h) exceeds 1e-6 relative on the smallest entries
        auto r = gradcheck({&z}, [&](Tape<double>& t) { return scalar(t, cross_entropy(t, Var<double>(z), *m.target, opt)); },
                           {.h = 1e-5});
        MARROW_CHECK_GRAD(r, 1e-6);
        // ignored elements get exactly zero gradient
        z.zero_grad();
        Tape<double> t;
        t.backward(scalar(t, cross_entropy(t, Var<double>(z), *m.target, opt)));
        const index_t S = lay.logits.numel() / (lay.logits[0] * C);
        for (index_t c = 0; c < C; ++c) CHECK(z.grad()[(1 / S * C + c) * S + 1 % S] == 0.0);
      }
  }
}

TEST_CASE("cross_entropy: every target ignored gives NaN (as PyTorch) and zero gradient, large logits stay finite") {
  Param<double> z(Tensor<double>({2, 3}, {1, 2, 3, 4, 5, 6}));
  Tape<double> t;
  auto l = cross_entropy(t, Var<double>(z), I32({2}, {-100, -100}));
  CHECK(std::isnan(l.item()));
  t.backward(l);
  for (double g : z.grad()) CHECK(g == 0.0);
  Tape<float> tf;
  auto big = tf.input(Tensor<float>({2, 3}, {1000.f, -1000.f, 0.f, -1000.f, -1000.f, 1000.f}));
  CHECK(cross_entropy(tf, big, I32({2}, {0, 1})).item() == doctest::Approx(1000.0f));
  auto big4 = tf.input(big.value().reshape({1, 3, 2}).clone());  // as planes: pixel 0 = [1000, 0, -1000]
  CHECK(std::isfinite(cross_entropy(tf, big4, I32({1, 2}, {2, 1})).item()));
}

TEST_CASE("cross_entropy: errors name the bad target, its position and C") {
  Tape<double> t;
  auto z = t.input(zeros<double>({2, 5}));
  CHECK_THROWS_WITH_AS(cross_entropy(t, z, I32({2}, {1, 5})),
                       doctest::Contains("cross_entropy: target 5 at position [1] is out of range for 5 classes"), Error);
  CHECK_THROWS_WITH_AS(cross_entropy(t, t.input(zeros<double>({2, 3, 2, 2})), I32({2, 2, 2}, {0, 0, 0, 0, 0, -1, 0, 0})),
                       doctest::Contains("target -1 at position [1, 0, 1] is out of range for 3 classes"), Error);
  CHECK_THROWS_WITH_AS(cross_entropy(t, z, I32({3}, {0, 0, 0})),
                       doctest::Contains("cross_entropy: target (3,) does not match logits (2, 5) (expected target (2,))"),
                       Error);
  Tensor<double> cw({4}, {1, 1, 1, 1});
  CHECK_THROWS_WITH_AS(cross_entropy(t, z, I32({2}, {0, 0}), {.class_weights = &cw}),
                       doctest::Contains("cross_entropy: class_weights (4,) for logits (2, 5)"), Error);
}

TEST_CASE("bce_with_logits: values, stability at ±1000, pos_weight") {
  Tape<double> t;
  auto x = t.input(Tensor<double>({2, 3}, {1000.0, -1000.0, 0.5, -2.0, 3.0, 0.0}));
  Tensor<double> z({2, 3}, {1.0, 1.0, 0.0, 0.3, 0.0, 1.0});
  auto none = bce_with_logits(t, x, z, Reduction::None).value();
  // x = 1000, z = 1: 0; x = −1000, z = 1: 1000; x = 0: log 2; the rest from PyTorch 1.13
  const double ref[] = {0.0, 1000.0, 0.9740769841801, 0.7269280110430, 3.048587351574, std::log(2.0)};
  for (index_t i = 0; i < 6; ++i) {
    CHECK(std::isfinite(none[i]));
    CHECK(none[i] == doctest::Approx(ref[i]).epsilon(1e-10));
  }
  Tensor<double> pw({3}, {2.0, 0.5, 3.0});
  auto nw = bce_with_logits(t, x, z, Reduction::None, &pw).value();
  const double refw[] = {0.0, 500.0, 0.974076984180, 1.365006414356, 3.048587351574, 2.079441541680};
  for (index_t i = 0; i < 6; ++i) CHECK(nw[i] == doctest::Approx(refw[i]).epsilon(1e-10));
  CHECK(bce_with_logits(t, x, z, Reduction::Mean, &pw).item() == doctest::Approx(84.577852048632).epsilon(1e-10));
  // gradients at ±1000 are finite and right: σ(x) − z
  Param<float> xf(Tensor<float>({4}, {1000.f, -1000.f, 1000.f, -1000.f}));
  Tape<float> tf;
  auto lf = bce_with_logits(tf, Var<float>(xf), Tensor<float>({4}, {1.f, 1.f, 0.f, 0.f}), Reduction::Sum);
  CHECK(lf.item() == doctest::Approx(2000.0f));
  tf.backward(lf);
  const float dref[] = {0.f, -1.f, 1.f, 0.f};
  for (index_t i = 0; i < 4; ++i) CHECK(xf.grad()[i] == dref[i]);
}

TEST_CASE("bce_with_logits: gradients for each reduction, with and without pos_weight") {
  Rng rng(31);
  Param<double> x(randn<double>({3, 4}, rng, 0.0, 2.0));
  Tensor<double> z = uniform<double>({3, 4}, rng);
  Tensor<double> pw = uniform<double>({4}, rng, 0.5, 3.0);
  const Tensor<double>* pos_weights[] = {nullptr, &pw};
  for (Reduction red : kReductions)
    for (const Tensor<double>* p : pos_weights) {
      CAPTURE(std::string(name(red)));
      CAPTURE(p != nullptr);
      auto r = gradcheck({&x}, [&](Tape<double>& t) { return scalar(t, bce_with_logits(t, Var<double>(x), z, red, p)); });
      MARROW_CHECK_GRAD(r, 1e-6);
    }
  Tape<double> t;
  CHECK_THROWS_WITH_AS(bce_with_logits(t, Var<double>(x), zeros<double>({4, 3})),
                       doctest::Contains("bce_with_logits: target (4, 3) does not match logits (3, 4)"), Error);
  Tensor<double> bad({3}, {1, 1, 1});
  CHECK_THROWS_WITH_AS(bce_with_logits(t, Var<double>(x), z, Reduction::Mean, &bad),
                       doctest::Contains("bce_with_logits (pos_weight): shapes (3,) and (3, 4)"), Error);
}

TEST_CASE("mse, l1, smooth_l1: PyTorch values") {
  Tape<double> t;
  auto a = t.input(Tensor<double>({4}, {0.0, 1.0, -2.0, 0.3}));
  Tensor<double> b({4}, {0.5, -1.0, 1.0, 0.3});
  // d = a − b = [−0.5, 2, −3, 0]
  CHECK(mse(t, a, b).item() == doctest::Approx((0.25 + 4.0 + 9.0) / 4.0));
  CHECK(mse(t, a, b, Reduction::Sum).item() == doctest::Approx(13.25));
  CHECK(l1(t, a, b, Reduction::Sum).item() == doctest::Approx(5.5));
  CHECK(l1(t, a, t.input(b)).item() == doctest::Approx(5.5 / 4.0));
  // beta 0.5: |−0.5| is not < beta -> 0.5 − 0.25; 2 − 0.25; 3 − 0.25; 0
  auto sl = smooth_l1(t, a, b, 0.5, Reduction::None).value();
  const double ref[] = {0.25, 1.75, 2.75, 0.0};
  for (index_t i = 0; i < 4; ++i) CHECK(sl[i] == doctest::Approx(ref[i]));
  CHECK(smooth_l1(t, a, b, 0.5).item() == doctest::Approx(1.1875));
  CHECK(smooth_l1(t, a, b).item() == doctest::Approx((0.125 + 1.5 + 2.5 + 0.0) / 4.0));  // beta 1: 0.5·0.25
  CHECK(smooth_l1(t, a, b, 0.0, Reduction::Sum).item() == doctest::Approx(5.5));        // beta 0 is l1
  CHECK_THROWS_WITH_AS(mse(t, a, zeros<double>({2, 2})), doctest::Contains("mse: input (4,) and target (2, 2) differ in shape"),
                       Error);
}

TEST_CASE("mse, l1, smooth_l1: gradients to both inputs, every reduction") {
  Rng rng(41);
  Param<double> a(rand_away_from_zero({2, 5}, rng)), b(rand_away_from_zero({2, 5}, rng, 0.05));
  for (auto& v : b.value()) v *= 0.3;  // differences stay ≥ ~0.03 from zero and away from beta's kink below
  for (Reduction red : kReductions) {
    CAPTURE(std::string(name(red)));
    using Fn = std::function<Var<double>(Tape<double>&, const Var<double>&, const Var<double>&)>;
    const std::vector<std::pair<const char*, Fn>> losses = {
        {"mse", [&](auto& t, auto& x, auto& y) { return mse(t, x, y, red); }},
        {"l1", [&](auto& t, auto& x, auto& y) { return l1(t, x, y, red); }},
        {"smooth_l1 beta 1", [&](auto& t, auto& x, auto& y) { return smooth_l1(t, x, y, 1.0, red); }},
        {"smooth_l1 beta 0.37", [&](auto& t, auto& x, auto& y) { return smooth_l1(t, x, y, 0.37, red); }},
    };
    for (const auto& entry : losses) {
      const char* what = entry.first;
      const Fn& fn = entry.second;
      CAPTURE(std::string(what));
      for (index_t i = 0; i < 10; ++i) {
        const double d = std::abs(a.value()[i] - b.value()[i]);
        REQUIRE((std::abs(d - 1.0) > 1e-3 && std::abs(d - 0.37) > 1e-3 && d > 1e-3));
      }
      auto r = gradcheck({&a, &b}, [&](Tape<double>& t) { return scalar(t, fn(t, Var<double>(a), Var<double>(b))); });
      MARROW_CHECK_GRAD(r, 1e-6);
      // the constant-target overload matches the Var one on a
      auto r2 = gradcheck({&a}, [&](Tape<double>& t) { return scalar(t, fn(t, Var<double>(a), t.input(b.value()))); });
      MARROW_CHECK_GRAD(r2, 1e-6);
    }
  }
}

TEST_CASE("soft_dice_loss: values, gradients, errors") {
  Tape<double> t;
  // perfect one-hot prediction: every class ratio is 1 -> loss 0
  I32 y({1, 2, 2}, {0, 1, 1, 0});
  auto perfect = t.input(Tensor<double>({1, 2, 2, 2}, {1, 0, 0, 1, 0, 1, 1, 0}));
  CHECK(soft_dice_loss(t, perfect, y).item() == doctest::Approx(0.0));
  // uniform 0.5: class 0: (2·1 + 1)/(2 + 2 + 1) = 0.6, class 1 the same -> 0.4
  CHECK(soft_dice_loss(t, t.input(full<double>({1, 2, 2, 2}, 0.5)), y).item() == doctest::Approx(0.4).scale(0));
  // smooth 0 and a class absent from the target: (0)/(Σp) for it
  auto p = t.input(Tensor<double>({1, 2, 1, 2}, {0.75, 0.5, 0.25, 0.5}));
  // class 0 (target both pixels): 2·1.25 / (1.25 + 2) ; class 1 absent: 0 / 0.75
  CHECK(soft_dice_loss(t, p, I32({1, 1, 2}, {0, 0}), 0.0).item() == doctest::Approx(1.0 - 0.5 * (2.5 / 3.25)).scale(0));

  Rng rng(51);
  Param<double> probs(uniform<double>({2, 3, 2, 3}, rng, 0.05, 1.0));
  I32 tgt({2, 2, 3});
  for (auto& v : tgt) v = std::int32_t(rng.below(3));
  for (double s : {1.0, 0.1}) {
    CAPTURE(s);
    auto r = gradcheck({&probs}, [&](Tape<double>& tt) { return soft_dice_loss(tt, Var<double>(probs), tgt, s); });
    MARROW_CHECK_GRAD(r, 1e-6);
  }
  CHECK_THROWS_WITH_AS(soft_dice_loss(t, Var<double>(probs), I32({2, 2, 3}, {0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0})),
                       doctest::Contains("soft_dice_loss: target 3 at position [0, 1, 1] is out of range for 3 classes"),
                       Error);
  CHECK_THROWS_WITH_AS(soft_dice_loss(t, Var<double>(probs), I32({2, 3}, {0, 0, 0, 0, 0, 0})),
                       doctest::Contains("soft_dice_loss: target (2, 3) does not match probs (2, 3, 2, 3)"), Error);
}

namespace {
// Random soft targets over Q classes at (H, W): K classes per pixel, weights summing to 1.
SoftTargets<double> random_targets(index_t N, int Q, int K, index_t H, index_t W, Rng& rng) {
  SoftTargets<double> s{Tensor<std::int32_t>::uninitialized({N, K, H, W}), Tensor<double>::uninitialized({N, K, H, W}),
                        uniform<double>({N, H, W}, rng, 0.5, 2.0)};
  const index_t P = H * W;
  for (index_t n = 0; n < N; ++n)
    for (index_t p = 0; p < P; ++p) {
      double sum = 0;
      for (int k = 0; k < K; ++k) {
        s.idx[(n * K + k) * P + p] = std::int32_t(rng.below(std::uint64_t(Q)));
        sum += (s.weight[(n * K + k) * P + p] = rng.uniform(0.1, 1.0));
      }
      for (int k = 0; k < K; ++k) s.weight[(n * K + k) * P + p] /= sum;
    }
  return s;
}
}  // namespace

TEST_CASE("soft_cross_entropy: value by hand, gradient by finite differences") {
  // One pixel, Q = 3, logits (1, 2, 3); target 0.25 on class 0, 0.75 on class 2; pixel weight 2.
  Tape<double> t;
  SoftTargets<double> s{I32({1, 2, 1, 1}, {0, 2}), Tensor<double>({1, 2, 1, 1}, {0.25, 0.75}),
                        Tensor<double>({1, 1, 1}, {2.0})};
  Var<double> x = t.leaf(Tensor<double>({1, 3, 1, 1}, {1, 2, 3}));
  Var<double> l = soft_cross_entropy(t, x, s);
  const double lse = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0));
  CHECK(l.item() == doctest::Approx(2.0 * (lse - 0.25 * 1 - 0.75 * 3)).scale(0));
  t.backward(l);
  CHECK(x.grad()[0] == doctest::Approx(2.0 * (std::exp(1.0 - lse) - 0.25)).scale(0));
  CHECK(x.grad()[1] == doctest::Approx(2.0 * std::exp(2.0 - lse)).scale(0));
  CHECK(x.grad()[2] == doctest::Approx(2.0 * (std::exp(3.0 - lse) - 0.75)).scale(0));

  Rng rng(11);
  const int Q = 7;
  Param<double> logits(randn<double>({2, Q, 3, 2}, rng, 0.0, 2.0));
  SoftTargets<double> st = random_targets(2, Q, 3, 3, 2, rng);
  // The loss is O(1) and its gradients O(1/NP): entries below the 1e-4 floor are roundoff-level in
  // central differences, so the floor (not the tolerance) is what is loosened.
  auto r = gradcheck({&logits}, [&](Tape<double>& tp) { return soft_cross_entropy(tp, Var<double>(logits), st); },
                     {.h = 1e-5, .floor = 1e-4});
  MARROW_CHECK_GRAD(r, 1e-6);
  Tape<double> t2;
  SoftTargets<double> bad = random_targets(2, Q, 3, 2, 2, rng);
  CHECK_THROWS_WITH_AS(soft_cross_entropy(t2, Var<double>(logits), bad),
                       doctest::Contains("soft_cross_entropy: targets (2, 3, 2, 2)"), Error);
  bad = random_targets(2, Q, 3, 3, 2, rng);
  bad.idx[4] = Q;
  CHECK_THROWS_WITH_AS(soft_cross_entropy(t2, Var<double>(logits), bad),
                       doctest::Contains("soft_cross_entropy: target bin 7 out of range for 7 bins"), Error);
}
