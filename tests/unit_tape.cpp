#include "testing.hpp"

using namespace marrow;

TEST_CASE("tape: gradients accumulate into parameters across tapes") {
  Param<double> w(Tensor<double>({2}, {1.0, 2.0}));
  for (int step = 0; step < 2; ++step) {
    Tape<double> t;
    auto y = sum(t, mul(t, w, w));  // d/dw Σ w² = 2w
    t.backward(y);
  }
  CHECK(w.grad()[0] == doctest::Approx(4.0));
  CHECK(w.grad()[1] == doctest::Approx(8.0));
  w.zero_grad();
  CHECK(w.grad()[1] == 0.0);
}

TEST_CASE("tape: a reused tape does not grow") {
  Param<float> w(full<float>({64, 64}, 0.01f));
  Tape<float> t;
  Rng rng(1);
  auto x = randn<float>({8, 64}, rng);
  std::size_t fresh_after_warmup = 0;
  for (int step = 0; step < 200; ++step) {
    t.reset();
    auto h = relu(t, linear(t, t.input(x), w));
    t.backward(sum(t, h));
    if (step == 2) fresh_after_warmup = BufferPool::instance().fresh_bytes();
  }
  CHECK(BufferPool::instance().fresh_bytes() == fresh_after_warmup);
}

TEST_CASE("tape: no-grad guard records nothing") {
  Param<double> w(Tensor<double>({2}, {1.0, 2.0}));
  Tape<double> t;
  {
    auto g = t.no_grad();
    auto y = sum(t, mul(t, w, w));
    CHECK_FALSE(y.requires_grad());
    CHECK(t.recorded() == 0);
    CHECK_THROWS_WITH_AS(t.backward(y), doctest::Contains("does not depend"), Error);
  }
  auto y = sum(t, mul(t, w, w));
  CHECK(y.requires_grad());
  CHECK(t.recorded() == 2);
}

TEST_CASE("tape: misuse is a clear error") {
  Param<double> w(Tensor<double>({3}, {1.0, 2.0, 3.0}));
  Tape<double> t, other;
  auto y = mul(t, w, w);
  CHECK_THROWS_WITH_AS(t.backward(y), doctest::Contains("seed"), Error);
  auto l = sum(t, y);
  t.backward(l);
  CHECK_THROWS_WITH_AS(t.backward(l), doctest::Contains("already used"), Error);
  CHECK_THROWS_WITH_AS(add(other, y, y), doctest::Contains("another tape"), Error);
  t.reset();
  CHECK_THROWS_WITH_AS(add(t, y, y), doctest::Contains("stale"), Error);
}

TEST_CASE("tape: backward with a seed for a non-scalar output") {
  Param<double> w(Tensor<double>({2}, {3.0, 4.0}));
  Tape<double> t;
  auto y = mul(t, w, w);
  t.backward(y, Tensor<double>({2}, {1.0, 10.0}));
  CHECK(w.grad()[0] == doctest::Approx(6.0));
  CHECK(w.grad()[1] == doctest::Approx(80.0));
}

TEST_CASE("tape: a leaf's gradient is readable after backward") {
  Tape<double> t;
  auto x = t.leaf(Tensor<double>({2}, {1.0, -2.0}));
  t.backward(sum(t, mul(t, x, x)));
  CHECK(x.grad()[1] == doctest::Approx(-4.0));
}

TEST_CASE("gradcheck: catches a wrong backward rule") {
  // A deliberately wrong op: forward x², backward claims 3x. gradcheck must fail it.
  Rng rng(3);
  Param<double> x(randn<double>({5}, rng));
  auto bad_square = [](Tape<double>& t, const Var<double>& v) {
    return detail::unary_op(t, v, [](double a) { return a * a; }, [](double a, double) { return 3 * a; });
  };
  auto r = gradcheck({&x}, [&](Tape<double>& t) { return sum(t, bad_square(t, x)); });
  CHECK(r.max_rel_err > 0.1);
  auto ok = gradcheck({&x}, [&](Tape<double>& t) { return sum(t, mul(t, x, x)); });
  MARROW_CHECK_GRAD(ok, 1e-7);
}
