#include "testing.hpp"

using namespace marrow;
using marrow::testing::project;
using marrow::testing::rand_away_from_zero;

TEST_CASE("ops: reductions over every axis set, keepdim or not") {
  const std::vector<std::vector<int>> axis_sets = {{}, {0}, {1}, {-1}, {0, 2}, {1, 2}, {0, 1, 2}};
  for (auto& axes : axis_sets) {
    for (bool keep : {false, true}) {
      CAPTURE(axes.size());
      CAPTURE(keep);
      Rng rng(5);
      Param<double> x(rand_away_from_zero({2, 3, 4}, rng));
      auto check = [&](auto fn) {
        auto r = gradcheck({&x}, [&](Tape<double>& t) { return project(t, fn(t, Var<double>(x))); });
        MARROW_CHECK_GRAD(r, 1e-6);
      };
      check([&](auto& t, auto v) { return sum(t, v, axes, keep); });
      check([&](auto& t, auto v) { return mean(t, v, axes, keep); });
      check([&](auto& t, auto v) { return max(t, v, axes, keep); });
      check([&](auto& t, auto v) { return var(t, v, axes, keep, 1); });
      check([&](auto& t, auto v) { return var(t, v, axes, keep, 0); });
      check([&](auto& t, auto v) { return logsumexp(t, v, axes, keep); });
    }
  }
}

TEST_CASE("ops: reduction values and shapes") {
  Tape<double> t;
  auto x = t.input(arange<double>(6).reshape({2, 3}));
  CHECK(sum(t, x).item() == 15.0);
  CHECK(sum(t, x, {1}).shape() == Shape{2});
  CHECK(sum(t, x, {1}, true).shape() == Shape{2, 1});
  CHECK(sum(t, x, {1}).value()[1] == 12.0);
  CHECK(mean(t, x, {0}).value()[2] == 3.5);
  CHECK(max(t, x, {1}).value()[0] == 2.0);
  CHECK(var(t, x, {1}).value()[0] == doctest::Approx(1.0));
  CHECK(var(t, x, {1}, false, 0).value()[0] == doctest::Approx(2.0 / 3.0));
  auto big = t.input(Tensor<double>({2}, {1000.0, 1000.0}));
  CHECK(logsumexp(t, big).item() == doctest::Approx(1000.0 + std::log(2.0)));
  CHECK_THROWS_WITH_AS(sum(t, x, {2}), doctest::Contains("sum: axis 2 out of range"), Error);
}

TEST_CASE("ops: matmul 2-D and batched with broadcast batch dims") {
  const std::vector<std::pair<Shape, Shape>> cases = {
      {{3, 4}, {4, 5}},          // plain
      {{2, 3, 4}, {2, 4, 5}},    // batched
      {{2, 3, 4}, {4, 5}},       // b broadcast over the batch
      {{3, 4}, {2, 4, 5}},       // a broadcast
      {{2, 1, 3, 4}, {3, 4, 2}}, // batch dims broadcast both ways
  };
  for (auto& [sa, sb] : cases) {
    CAPTURE(sa.str());
    CAPTURE(sb.str());
    Rng rng(9);
    Param<double> a(randn<double>(sa, rng)), b(randn<double>(sb, rng));
    auto r = gradcheck({&a, &b}, [&](Tape<double>& t) { return project(t, matmul(t, Var<double>(a), Var<double>(b))); });
    MARROW_CHECK_GRAD(r, 1e-6);
  }
  Tape<double> t;
  auto a = t.input(Tensor<double>({2, 2}, {1, 2, 3, 4}));
  auto b = t.input(Tensor<double>({2, 1}, {5, 6}));
  auto c = matmul(t, a, b);
  CHECK(c.value()[0] == 17.0);
  CHECK(c.value()[1] == 39.0);
  CHECK_THROWS_WITH_AS(matmul(t, a, t.input(zeros<double>({3, 2}))), doctest::Contains("matmul: inner dims"), Error);
}

TEST_CASE("ops: linear with and without bias, any leading dims") {
  Rng rng(4);
  Param<double> x(randn<double>({2, 3, 4}, rng)), w(randn<double>({5, 4}, rng)), b(randn<double>({5}, rng));
  auto r = gradcheck({&x, &w, &b}, [&](Tape<double>& t) { return project(t, linear(t, Var<double>(x), Var<double>(w), Var<double>(b))); });
  MARROW_CHECK_GRAD(r, 1e-6);
  auto r2 = gradcheck({&x, &w}, [&](Tape<double>& t) { return project(t, linear(t, Var<double>(x), Var<double>(w))); });
  MARROW_CHECK_GRAD(r2, 1e-6);
  Tape<double> t;
  CHECK_THROWS_WITH_AS(linear(t, t.input(zeros<double>({2, 3})), Var<double>(w)), doctest::Contains("linear: input (2, 3)"), Error);
}
