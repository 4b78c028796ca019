#include "testing.hpp"

#include <marrow/ops/nn.hpp>

using namespace marrow;
using marrow::testing::project;

namespace {
// Gradcheck a function of x (and optional affine params), all parameters at once.
template <class F>
void check_grad(std::initializer_list<Param<double>*> ps, F fn, double tol = 1e-6, GradcheckOptions o = {}) {
  auto r = gradcheck(ps, [&](Tape<double>& t) { return project(t, fn(t)); }, o);
  MARROW_CHECK_GRAD(r, tol);
  CHECK(r.checked > 0);
}
template <class T> Var<T> opt(bool on, Param<T>& p) { return on ? Var<T>(p) : Var<T>(); }
}  // namespace

TEST_CASE("nn: softmax and log_softmax gradients over every axis") {
  Rng rng(21);
  Param<double> x(randn<double>({2, 3, 4}, rng, 0.0, 2.0));
  for (int axis : {0, 1, 2, -1, -2}) {
    CAPTURE(axis);
    // 2e-6: at -O1 (sanitizer build) rounding alone reaches 1.1e-6 on the smallest entries
    check_grad({&x}, [&](Tape<double>& t) { return softmax(t, Var<double>(x), axis); }, 2e-6);
    check_grad({&x}, [&](Tape<double>& t) { return log_softmax(t, Var<double>(x), axis); }, 2e-6);
  }
  Param<double> v(randn<double>({5}, rng));  // 1-D: one row
  check_grad({&v}, [&](Tape<double>& t) { return softmax(t, Var<double>(v)); });
  check_grad({&v}, [&](Tape<double>& t) { return log_softmax(t, Var<double>(v), 0); });
}

TEST_CASE("nn: softmax values, stability and errors") {
  Tape<double> t;
  auto x = t.input(Tensor<double>({2, 3}, {1, 2, 3, 1000, 1000, 1000}));
  auto y = softmax(t, x).value();
  CHECK(y.at({0, 0}) == doctest::Approx(0.09003057317038046).scale(0));
  CHECK(y.at({0, 2}) == doctest::Approx(0.6652409557748219).scale(0));
  CHECK(y.at({1, 1}) == doctest::Approx(1.0 / 3.0).scale(0));
  auto ly = log_softmax(t, x).value();
  CHECK(ly.at({0, 0}) == doctest::Approx(-2.40760596444438));
  CHECK(ly.at({1, 2}) == doctest::Approx(-std::log(3.0)));
  for (double v : ly) CHECK(std::isfinite(v));
  // along axis 0 of (2, 3): each column [a, b] -> [σ(a−b), σ(b−a)]
  auto y0 = softmax(t, x, 0).value();
  CHECK(y0.at({0, 0}) == doctest::Approx(0.0).epsilon(1e-12));
  CHECK(y0.at({1, 0}) == doctest::Approx(1.0));
  // rows sum to 1 on every axis, in float too, even at ±1000
  Tape<float> tf;
  Rng rng(3);
  Tensor<float> big = randn<float>({3, 4, 5}, rng, 0.0, 1000.0);
  auto xf = tf.input(big);
  for (int axis : {0, 1, 2}) {
    CAPTURE(axis);
    auto s = sum(tf, softmax(tf, xf, axis), {axis});
    for (float v : s.value()) CHECK(v == doctest::Approx(1.0f).epsilon(1e-5));
    auto ls = log_softmax(tf, xf, axis).value();
    for (float v : ls) CHECK(std::isfinite(v));
  }
  CHECK_THROWS_WITH_AS(softmax(t, x, 2), doctest::Contains("softmax: axis 2 out of range for input (2, 3)"), Error);
  CHECK_THROWS_WITH_AS(log_softmax(t, x, -3), doctest::Contains("log_softmax: axis -3 out of range"), Error);
}

TEST_CASE("nn: layer_norm gradients with affine on and off") {
  Rng rng(5);
  Param<double> x(randn<double>({2, 3, 5}, rng, 0.5, 2.0)), w(randn<double>({5}, rng)), b(randn<double>({5}, rng));
  for (bool use_w : {false, true})
    for (bool use_b : {false, true}) {
      CAPTURE(use_w);
      CAPTURE(use_b);
      check_grad({&x, &w, &b}, [&](Tape<double>& t) { return layer_norm(t, Var<double>(x), opt(use_w, w), opt(use_b, b)); });
    }
}

TEST_CASE("nn: layer_norm threaded path matches the serial one") {
  // 256 x 160 rows crosses the threading threshold (2^15 entries); each 64-row chunk stays
  // below it. Rows are independent, so chunk-wise dx must match and chunk dweight/dbias must sum up.
  const index_t R = 256, C = 160, chunk = 64;
  Rng rng(17);
  Tensor<double> xv = randn<double>({R, C}, rng), gv = randn<double>({R, C}, rng);
  Param<double> x(xv.clone()), w(randn<double>({C}, rng)), b(randn<double>({C}, rng));
  {
    Tape<double> t;
    t.backward(layer_norm(t, Var<double>(x), Var<double>(w), Var<double>(b)), gv);
  }
  Tensor<double> dw_ref(Shape{C}), db_ref(Shape{C});
  double worst = 0;
  for (index_t r0 = 0; r0 < R; r0 += chunk) {
    Tape<double> t;
    auto xc = t.leaf(xv.slice(0, r0, r0 + chunk));
    Param<double> wc(w.value().clone()), bc(b.value().clone());
    t.backward(layer_norm(t, xc, Var<double>(wc), Var<double>(bc)), gv.slice(0, r0, r0 + chunk));
    for (index_t i = 0; i < chunk * C; ++i) worst = std::max(worst, std::abs(xc.grad()[i] - x.grad()[r0 * C + i]));
    dw_ref.arr() += wc.grad().arr();
    db_ref.arr() += bc.grad().arr();
  }
  CHECK(worst < 1e-12);
  for (index_t j = 0; j < C; ++j) {
    CHECK(w.grad()[j] == doctest::Approx(dw_ref[j]).epsilon(1e-12));
    CHECK(b.grad()[j] == doctest::Approx(db_ref[j]).epsilon(1e-12));
  }
}

TEST_CASE("nn: layer_norm values and errors") {
  Tape<double> t;
  auto x = t.input(Tensor<double>({2, 3}, {1, 2, 3, 10, 20, 60}));
  auto y = layer_norm(t, x, Var<double>(), Var<double>(), 0.0).value();
  const double s = std::sqrt(1.5);  // (x − 2)/sqrt(2/3)
  CHECK(y.at({0, 0}) == doctest::Approx(-s));
  CHECK(y.at({0, 1}) == doctest::Approx(0.0));
  CHECK(y.at({0, 2}) == doctest::Approx(s));
  Rng rng(2);
  Tape<float> tf;
  auto xf = tf.input(randn<float>({64, 48}, rng, 3.0, 5.0));
  auto yf = layer_norm(tf, xf, Var<float>(), Var<float>()).value();
  for (index_t r = 0; r < 64; ++r) {
    double m = 0, v = 0;
    for (index_t j = 0; j < 48; ++j) m += yf.at({r, j}) / 48.0;
    for (index_t j = 0; j < 48; ++j) v += (yf.at({r, j}) - m) * (yf.at({r, j}) - m) / 48.0;
    CHECK(m == doctest::Approx(0.0).epsilon(1e-5));
    CHECK(v == doctest::Approx(1.0).epsilon(1e-3));
  }
  Param<double> w(Tensor<double>({3}, {2, 2, 2})), b(Tensor<double>({3}, {1, 1, 1}));
  auto ya = layer_norm(t, x, Var<double>(w), Var<double>(b), 0.0).value();
  CHECK(ya.at({0, 2}) == doctest::Approx(2 * s + 1));
  Param<double> w4(zeros<double>({4}));
  CHECK_THROWS_WITH_AS(layer_norm(t, x, Var<double>(w4), Var<double>()),
                       doctest::Contains("layer_norm: weight (4,) does not match the 3 features of input (2, 3)"), Error);
}

TEST_CASE("nn: batch_norm gradients, train and eval, 2-D and 4-D, affine on and off") {
  for (Shape xs : {Shape{5, 3}, Shape{2, 3, 2, 3}}) {
    for (bool training : {true, false})
      for (bool affine : {true, false}) {
        CAPTURE(xs.str());
        CAPTURE(training);
        CAPTURE(affine);
        Rng rng(13);
        Param<double> x(randn<double>(xs, rng, 1.0, 2.0)), w(randn<double>({3}, rng)), b(randn<double>({3}, rng));
        Tensor<double> rm = randn<double>({3}, rng), rv = uniform<double>({3}, rng, 0.5, 2.0);
        // Training gradients of x sum to ~0 per channel, so some entries are tiny (~1e-4) and
        // round-off at h = 1e-6 costs them ~4e-6 relative; at h = 1e-4 the error is ~1e-7.
        check_grad({&x, &w, &b}, [&](Tape<double>& t) {
          return batch_norm(t, Var<double>(x), opt(affine, w), opt(affine, b), rm, rv, training);
        }, 1e-6, {.h = 1e-4});
      }
  }
}

TEST_CASE("nn: batch_norm_relu is relu(batch_norm) to the bit, values, gradients and running statistics") {
  for (Shape xs : {Shape{6, 3}, Shape{3, 3, 4, 5}}) {
    for (bool training : {true, false})
      for (bool affine : {true, false}) {
        CAPTURE(xs.str());
        CAPTURE(training);
        CAPTURE(affine);
        Rng rng(17);
        Param<float> x(randn<float>(xs, rng)), w(randn<float>({3}, rng)), b(randn<float>({3}, rng));
        Tensor<float> rm0 = randn<float>({3}, rng), rv0 = uniform<float>({3}, rng, 0.5f, 2.0f);
        const Tensor<float> gy = randn<float>(xs, rng);
        struct Out { Tensor<float> y, dx, dw, db, rm, rv; };
        auto run = [&](bool fused) {
          for (Param<float>* p : {&x, &w, &b}) p->zero_grad();
          Tensor<float> rm = rm0.clone(), rv = rv0.clone();
          Tape<float> t;
          Var<float> y = fused ? batch_norm_relu(t, Var<float>(x), opt(affine, w), opt(affine, b), rm, rv, training)
                               : relu(t, batch_norm(t, Var<float>(x), opt(affine, w), opt(affine, b), rm, rv, training));
          t.backward(y, gy);
          return Out{y.value().clone(), x.grad().clone(), w.grad().clone(), b.grad().clone(), rm, rv};
        };
        const Out a = run(true), e = run(false);
        CHECK((a.y.arr() == e.y.arr()).all());
        CHECK((a.dx.arr() == e.dx.arr()).all());
        CHECK((a.dw.arr() == e.dw.arr()).all());
        CHECK((a.db.arr() == e.db.arr()).all());
        CHECK((a.rm.arr() == e.rm.arr()).all());
        CHECK((a.rv.arr() == e.rv.arr()).all());
        CHECK((a.y.arr() == 0).count() > 0);  // the ReLU cut something
      }
  }
  // And against finite differences, away from the kink (|BN output| > 1e-3 at this seed).
  Rng rng(19);
  Param<double> x(randn<double>({2, 3, 2, 3}, rng)), w(randn<double>({3}, rng)), b(randn<double>({3}, rng));
  Tensor<double> rm = zeros<double>({3}), rv = ones<double>({3});
  check_grad({&x, &w, &b}, [&](Tape<double>& t) {
    return batch_norm_relu(t, Var<double>(x), Var<double>(w), Var<double>(b), rm, rv, true);
  }, 1e-6, {.h = 1e-5});
  Tape<double> t;
  CHECK_THROWS_WITH_AS(batch_norm_relu(t, t.input(zeros<double>({4})), Var<double>(), Var<double>(), rm, rv, true),
                       doctest::Contains("batch_norm_relu: input (4,) must be (N, C)"), Error);
}

TEST_CASE("nn: batch_norm running statistics and values") {
  // channel 0: {1, 3, 5, 7} (mean 4, biased var 5, unbiased 20/3); channel 1: {2, 2, 2, 2}
  Tape<double> t;
  auto x = t.input(Tensor<double>({2, 2, 1, 2}, {1, 3, 2, 2, 5, 7, 2, 2}));
  Tensor<double> rm({2}, {0.5, 1.0}), rv({2}, {1.0, 2.0});
  auto y = batch_norm(t, x, Var<double>(), Var<double>(), rm, rv, true, 0.1, 1e-12).value();
  CHECK(rm[0] == doctest::Approx(0.9 * 0.5 + 0.1 * 4.0).scale(0));
  CHECK(rm[1] == doctest::Approx(0.9 * 1.0 + 0.1 * 2.0));
  CHECK(rv[0] == doctest::Approx(0.9 * 1.0 + 0.1 * 20.0 / 3.0));
  CHECK(rv[1] == doctest::Approx(0.9 * 2.0));
  CHECK(y.at({0, 0, 0, 0}) == doctest::Approx(-3.0 / std::sqrt(5.0)));
  CHECK(y.at({1, 0, 0, 1}) == doctest::Approx(3.0 / std::sqrt(5.0)));
  // (N, C): per-column statistics, momentum 0.5
  auto x2 = t.input(Tensor<double>({3, 2}, {1, 10, 2, 20, 6, 30}));
  Tensor<double> rm2({2}, {0.0, 0.0}), rv2({2}, {1.0, 1.0});
  Param<double> w(Tensor<double>({2}, {2, 3})), b(Tensor<double>({2}, {-1, 1}));
  auto y2 = batch_norm(t, x2, Var<double>(w), Var<double>(b), rm2, rv2, true, 0.5, 1e-5).value();
  CHECK(rm2[0] == doctest::Approx(1.5));           // 0.5 · 3
  CHECK(rv2[0] == doctest::Approx(0.5 + 0.5 * 7));  // unbiased var of {1, 2, 6} = 7
  CHECK(rv2[1] == doctest::Approx(0.5 + 0.5 * 100));
  CHECK(y2.at({2, 1}) == doctest::Approx(3 * 10 / std::sqrt(200.0 / 3 + 1e-5) + 1));
  // eval uses the running statistics and leaves them alone
  auto ye = batch_norm(t, x2, Var<double>(w), Var<double>(b), rm2, rv2, false, 0.5, 0.0).value();
  CHECK(ye.at({0, 0}) == doctest::Approx(2 * (1 - 1.5) / std::sqrt(4.0) - 1));
  CHECK(rm2[0] == doctest::Approx(1.5));
  Tensor<double> rm3({3}), rv3({3});
  CHECK_THROWS_WITH_AS(batch_norm(t, x2, Var<double>(), Var<double>(), rm3, rv3, true),
                       doctest::Contains("batch_norm: running_mean (3,) does not match the 2 features of input (3, 2)"),
                       Error);
  CHECK_THROWS_WITH_AS(batch_norm(t, t.input(zeros<double>({1, 2})), Var<double>(), Var<double>(), rm2, rv2, true),
                       doctest::Contains("batch_norm: training needs more than 1 value per channel"), Error);
  CHECK_THROWS_WITH_AS(batch_norm(t, t.input(zeros<double>({4})), Var<double>(), Var<double>(), rm2, rv2, true),
                       doctest::Contains("batch_norm: input (4,) must be (N, C)"), Error);
}

TEST_CASE("nn: dropout with a fixed seed") {
  Rng rng(0);
  Param<double> x(randn<double>({4, 6}, rng));
  for (double p : {0.0, 0.3, 0.75}) {
    CAPTURE(p);
    check_grad({&x}, [&](Tape<double>& t) {
      rng.reseed(42);  // the same mask on every finite-difference evaluation
      return dropout(t, Var<double>(x), p, true, rng);
    });
  }
  Tape<float> t;
  Rng r1(7), r2(7);
  auto xf = t.input(ones<float>({100, 100}));
  auto a = dropout(t, xf, 0.25f, true, r1).value();
  auto b = dropout(t, xf, 0.25f, true, r2).value();
  index_t zeros_seen = 0, differ = 0, badly_scaled = 0;
  for (index_t i = 0; i < a.numel(); ++i) {
    differ += a[i] != b[i];  // deterministic for a seed
    if (a[i] == 0.0f) ++zeros_seen;
    else badly_scaled += std::abs(a[i] - 1.0f / 0.75f) > 1e-6f;
  }
  CHECK(differ == 0);
  CHECK(badly_scaled == 0);
  CHECK(zeros_seen > 2300);  // ≈ 2500 expected; 4σ ≈ 170
  CHECK(zeros_seen < 2700);
  auto e = dropout(t, xf, 0.5f, false, r1);
  CHECK(e.node() == xf.node());  // eval: identity
  CHECK_THROWS_WITH_AS(dropout(t, xf, 1.0f, true, r1), doctest::Contains("dropout: p = 1 must be in [0, 1)"), Error);
}
