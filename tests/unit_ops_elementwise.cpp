#include "testing.hpp"

using namespace marrow;
using marrow::testing::project;
using marrow::testing::rand_away_from_zero;

namespace {
// Check a binary op on a broadcast pattern: both inputs are parameters.
template <class Op> void check_binary(Op op, Shape sa, Shape sb, bool positive_b = false) {
  Rng rng(7);
  Param<double> a(rand_away_from_zero(sa, rng)), b(rand_away_from_zero(sb, rng));
  if (positive_b)
    for (auto& v : b.value()) v = std::abs(v) + 0.5;
  auto r = gradcheck({&a, &b}, [&](Tape<double>& t) { return project(t, op(t, Var<double>(a), Var<double>(b))); });
  MARROW_CHECK_GRAD(r, 1e-6);
}
const std::vector<std::pair<Shape, Shape>> kBroadcastPatterns = {
    {{3, 4}, {3, 4}},        // same shape
    {{3, 4}, {4}},           // row vector (bias)
    {{3, 4}, {3, 1}},        // column
    {{2, 1, 4}, {3, 1}},     // both broadcast
    {{3, 4}, {}},            // scalar
    {{}, {2, 3}},            // scalar on the left
    {{2, 3, 4}, {1, 3, 1}},  // middle axis
};
}  // namespace

TEST_CASE("ops: add/sub/mul/div/maximum/minimum gradients over every broadcast pattern") {
  for (const auto& pattern : kBroadcastPatterns) {
    const Shape &sa = pattern.first, &sb = pattern.second;
    CAPTURE(sa.str());
    CAPTURE(sb.str());
    check_binary([](auto& t, auto a, auto b) { return add(t, a, b); }, sa, sb);
    check_binary([](auto& t, auto a, auto b) { return sub(t, a, b); }, sa, sb);
    check_binary([](auto& t, auto a, auto b) { return mul(t, a, b); }, sa, sb);
    check_binary([](auto& t, auto a, auto b) { return div(t, a, b); }, sa, sb, true);
    check_binary([](auto& t, auto a, auto b) { return maximum(t, a, b); }, sa, sb);
    check_binary([](auto& t, auto a, auto b) { return minimum(t, a, b); }, sa, sb);
  }
}

TEST_CASE("ops: broadcast forward values") {
  Tape<float> t;
  auto a = t.input(arange<float>(6).reshape({2, 3}));
  auto b = t.input(Tensor<float>({3}, {10, 20, 30}));
  auto c = add(t, a, b);
  CHECK(c.value().at({1, 2}) == 35.0f);
  auto d = mul(t, t.input(Tensor<float>({2, 1}, {2, 3})), b);
  CHECK(d.shape() == Shape{2, 3});
  CHECK(d.value().at({1, 0}) == 30.0f);
  CHECK_THROWS_WITH_AS(add(t, a, t.input(zeros<float>({2}))), doctest::Contains("add: shapes (2, 3) and (2,)"), Error);
}

TEST_CASE("ops: where selects and routes gradients") {
  Rng rng(2);
  Param<double> a(randn<double>({2, 3}, rng)), b(randn<double>({3}, rng));
  Tensor<double> cond({2, 3}, {1, 0, 1, 0, 0, 1});
  auto r = gradcheck({&a, &b}, [&](Tape<double>& t) { return project(t, where(t, cond, Var<double>(a), Var<double>(b))); });
  MARROW_CHECK_GRAD(r, 1e-6);
  Tape<double> t;
  auto w = where(t, cond, Var<double>(a), Var<double>(b));
  CHECK(w.value().at({0, 1}) == b.value()[1]);
  CHECK(w.value().at({0, 2}) == a.value().at({0, 2}));
}

TEST_CASE("ops: unary math and activations gradients") {
  using Fn = std::function<Var<double>(Tape<double>&, const Var<double>&)>;
  const std::vector<std::pair<const char*, Fn>> unary = {
      {"neg", [](auto& t, auto& x) { return neg(t, x); }},
      {"exp", [](auto& t, auto& x) { return exp(t, x); }},
      {"log", [](auto& t, auto& x) { return log(t, abs(t, x)); }},
      {"sqrt", [](auto& t, auto& x) { return sqrt(t, abs(t, x)); }},
      {"pow", [](auto& t, auto& x) { return pow(t, abs(t, x), 2.5); }},
      {"pow int", [](auto& t, auto& x) { return pow(t, x, 3.0); }},
      {"abs", [](auto& t, auto& x) { return abs(t, x); }},
      {"clamp", [](auto& t, auto& x) { return clamp(t, x, -0.55, 0.45); }},
      {"add_scalar", [](auto& t, auto& x) { return add_scalar(t, x, 3.0); }},
      {"mul_scalar", [](auto& t, auto& x) { return mul_scalar(t, x, -2.0); }},
      {"relu", [](auto& t, auto& x) { return relu(t, x); }},
      {"leaky_relu", [](auto& t, auto& x) { return leaky_relu(t, x, 0.2); }},
      {"elu", [](auto& t, auto& x) { return elu(t, x, 1.5); }},
      {"gelu tanh", [](auto& t, auto& x) { return gelu(t, x, GeluForm::Tanh); }},
      {"gelu erf", [](auto& t, auto& x) { return gelu(t, x, GeluForm::Erf); }},
      {"sigmoid", [](auto& t, auto& x) { return sigmoid(t, x); }},
      {"tanh", [](auto& t, auto& x) { return tanh(t, x); }},
      {"softplus", [](auto& t, auto& x) { return softplus(t, x); }},
  };
  for (const auto& entry : unary) {
    const char* name = entry.first;
    const auto& fn = entry.second;
    CAPTURE(name);
    Rng rng(11);
    Param<double> x(rand_away_from_zero({3, 5}, rng));
    for (auto& v : x.value()) v *= 2.0;  // spread over [-2, 2]
    // clamp's kinks at -0.55/0.45 must not be hit within ±h
    auto r = gradcheck({&x}, [&](Tape<double>& t) { return project(t, fn(t, Var<double>(x))); });
    MARROW_CHECK_GRAD(r, 1e-6);
  }
}

TEST_CASE("ops: activation forward values") {
  Tape<double> t;
  auto x = t.input(Tensor<double>({4}, {-1000.0, -1.0, 1.0, 1000.0}));
  auto sp = softplus(t, x).value();
  CHECK(sp[0] == doctest::Approx(0.0));
  CHECK(sp[3] == doctest::Approx(1000.0));
  CHECK(std::isfinite(sp[0]));
  auto ge = gelu(t, x, GeluForm::Erf).value();
  CHECK(ge[2] == doctest::Approx(0.8413447460685429).scale(0));
  auto gt = gelu(t, x, GeluForm::Tanh).value();
  CHECK(gt[2] == doctest::Approx(0.8411919906082768).scale(0));
  auto sg = sigmoid(t, x).value();
  CHECK(sg[0] == doctest::Approx(0.0));
  CHECK(sg[3] == doctest::Approx(1.0));
}

#ifdef _OPENMP
// Backward ops run their loops over the team; a gradient a loop writes must exist before
// the loop starts, or every thread allocates its own and all but one thread's sums are
// lost (GELU lost about half the GPT's MLP gradient this way on 2 threads).
TEST_CASE("ops: gelu backward on 2 threads into a gradient not yet allocated") {
  const int saved = omp_get_max_threads();
  omp_set_num_threads(2);
  // A race shows only when both threads reach the allocation together: 16 tries per form.
  for (int attempt = 0; attempt < 32; ++attempt) {
    const GeluForm form = attempt % 2 ? GeluForm::Tanh : GeluForm::Erf;
    CAPTURE(attempt);
    Rng rng(12);
    const index_t n = 1 << 18;  // 64 chunks of 4096: both threads run
    Param<float> p(randn<float>({n}, rng));
    const Tensor<float> w = randn<float>({n}, rng);
    Tape<float> t;
    const Var<float> x = add(t, p, p);  // an intermediate: its gradient is first allocated by gelu's backward
    t.backward(sum(t, mul(t, gelu(t, x, form), t.input(w))));
    index_t wrong = 0;
    double worst = 0;
    for (index_t i = 0; i < n; ++i) {
      const double v = 2.0 * double(p.value()[i]);
      double d;  // dgelu/dx
      if (form == GeluForm::Erf) {
        d = 0.5 * std::erfc(-v / std::sqrt(2.0)) + v * std::exp(-0.5 * v * v) / std::sqrt(2.0 * M_PI);
      } else {
        const double k = std::sqrt(2.0 / M_PI), th = std::tanh(k * (v + 0.044715 * v * v * v));
        d = 0.5 * (1.0 + th) + 0.5 * v * (1.0 - th * th) * k * (1.0 + 3.0 * 0.044715 * v * v);
      }
      const double want = 2.0 * double(w[i]) * d;
      const double err = std::abs(double(p.grad()[i]) - want) / (1.0 + std::abs(want));
      worst = std::max(worst, err);
      if (err > 1e-4) ++wrong;  // float rounding: up to 2e-5 (the tanh form's 1 − th²); a lost chunk: O(1)
    }
    CAPTURE(worst);
    CHECK(wrong == 0);
  }
  omp_set_num_threads(saved);
}
#endif
