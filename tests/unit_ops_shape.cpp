#include "testing.hpp"

#include <marrow/ops/shape.hpp>

using namespace marrow;
using marrow::testing::project;

namespace {
using Fn = std::function<Var<double>(Tape<double>&, const Var<double>&)>;
// Gradcheck fn(x) projected to a scalar, x random of shape s.
void check_grad(const Shape& s, const Fn& fn, std::uint64_t seed = 3) {
  Rng rng(seed);
  Param<double> x(randn<double>(s, rng));
  auto r = gradcheck({&x}, [&](Tape<double>& t) { return project(t, fn(t, Var<double>(x))); });
  MARROW_CHECK_GRAD(r, 1e-6);
  CHECK(r.checked > 0);
}
Tensor<std::int32_t> ints(const Shape& s, std::vector<std::int32_t> v) { return Tensor<std::int32_t>(s, v); }
}  // namespace

TEST_CASE("shape: reshape and flatten gradients, values and errors") {
  check_grad({2, 3, 4}, [](auto& t, auto& x) { return reshape(t, x, {4, -1}); });
  check_grad({2, 3, 4}, [](auto& t, auto& x) { return reshape(t, x, {24}); });
  check_grad({2, 3, 4}, [](auto& t, auto& x) { return flatten(t, x); });
  check_grad({2, 3, 4}, [](auto& t, auto& x) { return flatten(t, x, 0); });
  check_grad({2, 3, 4}, [](auto& t, auto& x) { return flatten(t, x, -1); });
  check_grad({2, 3, 2, 2}, [](auto& t, auto& x) { return flatten(t, x, 2); });
  Tape<double> t;
  auto x = t.input(arange<double>(24).reshape({2, 3, 4}));
  CHECK(reshape(t, x, {-1, 6}).shape() == Shape{4, 6});
  CHECK(flatten(t, x).shape() == Shape{2, 12});
  CHECK(flatten(t, x, 2).shape() == Shape{2, 3, 4});
  CHECK(flatten(t, x, 0).shape() == Shape{24});
  CHECK(flatten(t, x).value().at({1, 5}) == 17.0);
  CHECK_THROWS_WITH_AS(reshape(t, x, {5, -1}), doctest::Contains("reshape: cannot infer -1"), Error);
  CHECK_THROWS_WITH_AS(reshape(t, x, {5, 5}), doctest::Contains("reshape: (2, 3, 4) (24 elements) to (5, 5)"), Error);
  CHECK_THROWS_WITH_AS(flatten(t, x, 3), doctest::Contains("flatten: axis 3 out of range for input (2, 3, 4)"), Error);
}

TEST_CASE("shape: permute and transpose gradients over several orders") {
  const std::vector<std::vector<int>> perms = {{0, 1, 2}, {2, 1, 0}, {1, 2, 0}, {2, 0, 1}, {0, 2, 1}, {-1, 0, 1}};
  for (auto& p : perms) {
    CAPTURE(p[0]);
    CAPTURE(p[1]);
    check_grad({2, 3, 4}, [p](auto& t, auto& x) { return permute(t, x, p); });
  }
  check_grad({2, 3, 4, 2}, [](auto& t, auto& x) { return permute(t, x, {0, 2, 1, 3}); });  // attention's head swap
  check_grad({3, 4}, [](auto& t, auto& x) { return transpose(t, x, 0, 1); });
  check_grad({2, 3, 4}, [](auto& t, auto& x) { return transpose(t, x, -1, -2); });
  Tape<double> t;
  auto x = t.input(arange<double>(24).reshape({2, 3, 4}));
  auto y = permute(t, x, {2, 0, 1});
  CHECK(y.shape() == Shape{4, 2, 3});
  CHECK(y.value().at({3, 1, 2}) == x.value().at({1, 2, 3}));
  CHECK(transpose(t, x, 0, 2).value().at({1, 2, 0}) == x.value().at({0, 2, 1}));
  CHECK_THROWS_WITH_AS(permute(t, x, {0, 1}), doctest::Contains("permute: 2 axes given for input (2, 3, 4)"), Error);
  CHECK_THROWS_WITH_AS(permute(t, x, {0, 1, 1}), doctest::Contains("permute: axis 1 repeated"), Error);
  CHECK_THROWS_WITH_AS(transpose(t, x, 0, 3), doctest::Contains("transpose: axis 3 out of range"), Error);
}

TEST_CASE("shape: slice gradients on every axis, values and errors") {
  check_grad({4, 3, 5}, [](auto& t, auto& x) { return slice(t, x, 0, 1, 3); });
  check_grad({4, 3, 5}, [](auto& t, auto& x) { return slice(t, x, 1, 0, 2); });
  check_grad({4, 3, 5}, [](auto& t, auto& x) { return slice(t, x, -1, -3, -1); });
  // two overlapping slices of the same input: gradients must add
  check_grad({6, 2}, [](auto& t, auto& x) { return add(t, slice(t, x, 0, 0, 4), slice(t, x, 0, 2, 6)); });
  Tape<double> t;
  auto x = t.input(arange<double>(12).reshape({3, 4}));
  auto s = slice(t, x, 1, 1, 3);
  CHECK(s.shape() == Shape{3, 2});
  CHECK(s.value().at({2, 0}) == 9.0);
  CHECK_THROWS_WITH_AS(slice(t, x, 1, 2, 5), doctest::Contains("slice: [2, 5) out of range for axis 1 of input (3, 4)"),
                       Error);
}

TEST_CASE("shape: concat over several axes and split") {
  Rng rng(1);
  for (int axis : {0, 1, 2, -1}) {
    CAPTURE(axis);
    const int a = axis < 0 ? 2 : axis;
    Shape sa{2, 3, 4}, sb{2, 3, 4}, sc{2, 3, 4};
    sb[a] = 1;
    sc[a] = 2;
    Param<double> pa(randn<double>(sa, rng)), pb(randn<double>(sb, rng)), pc(randn<double>(sc, rng));
    auto r = gradcheck({&pa, &pb, &pc}, [&](Tape<double>& t) {
      return project(t, concat(t, {Var<double>(pa), Var<double>(pb), Var<double>(pc)}, axis));
    });
    MARROW_CHECK_GRAD(r, 1e-6);
    // split undoes concat
    Tape<double> t;
    auto cat = concat(t, {Var<double>(pa), Var<double>(pb), Var<double>(pc)}, axis);
    auto parts = split(t, cat, {sa[a], sb[a], sc[a]}, axis);
    REQUIRE(parts.size() == 3);
    CHECK(parts[1].shape() == sb);
    for (index_t i = 0; i < pc.numel(); ++i) CHECK(parts[2].value()[i] == pc.value()[i]);
  }
  // split gradients: pieces used with different weights
  check_grad({2, 7}, [](auto& t, auto& x) {
    auto p = split(t, x, {2, 0, 5}, 1);
    return concat(t, {mul_scalar(t, p[2], 3.0), p[0]}, 1);
  });
  Tape<double> t;
  auto a = t.input(Tensor<double>({2, 1}, {1, 2}));
  auto b = t.input(Tensor<double>({2, 2}, {3, 4, 5, 6}));
  auto c = concat(t, {a, b}, 1);
  CHECK(c.shape() == Shape{2, 3});
  const std::vector<double> want = {1, 3, 4, 2, 5, 6};
  for (int i = 0; i < 6; ++i) CHECK(c.value()[i] == want[std::size_t(i)]);
  CHECK_THROWS_WITH_AS(concat(t, {a, b}, 0),
                       doctest::Contains("concat: input 1 has shape (2, 2), input 0 has (2, 1)"), Error);
  CHECK_THROWS_WITH_AS(split(t, b, {1, 2}, 1), doctest::Contains("split: sizes sum to 3 but axis 1 of input (2, 2)"),
                       Error);
}

TEST_CASE("shape: concat_global repeats a vector at every position, gradient, errors") {
  Tape<double> t;
  Var<double> x = t.input(Tensor<double>({1, 1, 1, 2}, {1, 2}));
  Var<double> g = t.input(Tensor<double>({1, 2}, {7, 8}));
  Var<double> y = concat_global(t, x, g);
  CHECK(y.shape() == Shape{1, 3, 1, 2});
  const std::vector<double> want = {1, 2, 7, 7, 8, 8};
  for (int i = 0; i < 6; ++i) CHECK(y.value()[i] == want[std::size_t(i)]);
  Rng rng(2);
  Param<double> px(randn<double>({2, 3, 2, 3}, rng)), pg(randn<double>({2, 4}, rng));
  auto r = gradcheck({&px, &pg}, [&](Tape<double>& tp) { return project(tp, concat_global(tp, Var<double>(px), Var<double>(pg))); });
  MARROW_CHECK_GRAD(r, 1e-6);
  CHECK_THROWS_WITH_AS(concat_global(t, x, t.input(Tensor<double>(Shape{2, 2}))),
                       doctest::Contains("concat_global: map (1, 1, 1, 2)"), Error);
}

TEST_CASE("shape: pad2d zero and reflect with asymmetric pads") {
  for (PadMode mode : {PadMode::Zeros, PadMode::Reflect}) {
    CAPTURE(int(mode));
    check_grad({2, 3, 4}, [mode](auto& t, auto& x) { return pad2d(t, x, 1, 2, 3, 0, mode); });
    check_grad({1, 2, 4, 5}, [mode](auto& t, auto& x) { return pad2d(t, x, 2, 0, 1, 3, mode); });
    check_grad({3, 4}, [mode](auto& t, auto& x) { return pad2d(t, x, 0, 1, 2, 1, mode); });
  }
  Tape<double> t;
  // 3x3 input 1..9, reflect pads top 1, bottom 2, left 2, right 1 (by hand, ReflectionPad2d rule: mirror without repeating the edge)
  auto x = t.input(Tensor<double>({1, 3, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9}));
  auto r = pad2d(t, x, 1, 2, 2, 1, PadMode::Reflect);
  REQUIRE(r.shape() == Shape{1, 6, 6});
  const std::vector<double> want = {6, 5, 4, 5, 6, 5,  //
                                    3, 2, 1, 2, 3, 2,  //
                                    6, 5, 4, 5, 6, 5,  //
                                    9, 8, 7, 8, 9, 8,  //
                                    6, 5, 4, 5, 6, 5,  //
                                    3, 2, 1, 2, 3, 2};
  for (int i = 0; i < 36; ++i) CHECK(r.value()[i] == want[std::size_t(i)]);
  auto z = pad2d(t, x, 1, 0, 0, 2);
  REQUIRE(z.shape() == Shape{1, 4, 5});
  CHECK(z.value().at({0, 0, 1}) == 0.0);
  CHECK(z.value().at({0, 1, 2}) == 3.0);
  CHECK(z.value().at({0, 3, 4}) == 0.0);
  CHECK_THROWS_WITH_AS(pad2d(t, x, 3, 0, 0, 0, PadMode::Reflect),
                       doctest::Contains("pad2d: reflect pad 3 must be smaller than height 3 of input (1, 3, 3)"), Error);
  CHECK_THROWS_WITH_AS(pad2d(t, t.input(zeros<double>({4})), 1, 1, 1, 1),
                       doctest::Contains("pad2d: input (4,) needs at least 2 dims"), Error);
}

TEST_CASE("shape: index_select and embedding with repeated indices") {
  for (int axis : {0, 1, 2}) {
    CAPTURE(axis);
    check_grad({3, 4, 3}, [axis](auto& t, auto& x) {
      return index_select(t, x, axis, Tensor<std::int32_t>({4}, {2, 0, 2, 2}));
    });
  }
  Rng rng(8);
  Param<double> w(randn<double>({5, 3}, rng));
  auto ids = ints({2, 3}, {4, 1, 4, 0, 4, 1});
  auto r = gradcheck({&w}, [&](Tape<double>& t) { return project(t, embedding(t, Var<double>(w), ids)); });
  MARROW_CHECK_GRAD(r, 1e-6);
  {  // the gradient of a repeated id is the sum of its uses
    w.zero_grad();  // gradcheck leaves its analytic gradient behind
    Tape<double> t;
    auto e = embedding(t, Var<double>(w), ids);
    t.backward(sum(t, e));
    CHECK(w.grad().at({4, 2}) == 3.0);
    CHECK(w.grad().at({1, 0}) == 2.0);
    CHECK(w.grad().at({3, 1}) == 0.0);
    w.zero_grad();
  }
  Tape<double> t;
  auto x = t.input(arange<double>(6).reshape({3, 2}));
  auto sel = index_select(t, x, 0, ints({3}, {2, 2, 0}));
  CHECK(sel.shape() == Shape{3, 2});
  CHECK(sel.value().at({1, 1}) == 5.0);
  CHECK(sel.value().at({2, 0}) == 0.0);
  auto e = embedding(t, Var<double>(w), ids);
  CHECK(e.shape() == Shape{2, 3, 3});
  CHECK(e.value().at({1, 2, 1}) == w.value().at({1, 1}));
  CHECK_THROWS_WITH_AS(embedding(t, Var<double>(w), ints({2}, {1, 5})),
                       doctest::Contains("embedding: id 5 at position 1 out of range for V = 5"), Error);
  CHECK_THROWS_WITH_AS(index_select(t, x, 1, ints({1}, {-1})),
                       doctest::Contains("index_select: index -1 out of range for axis 1 of size 2"), Error);
}

TEST_CASE("shape: token_position_embedding values, gradient and errors") {
  Param<double> wte(Tensor<double>({3, 2}, {1, 2, 3, 4, 5, 6}));
  Param<double> wpe(Tensor<double>({4, 2}, {10, 20, 30, 40, 50, 60, 70, 80}));
  Tensor<std::int32_t> ids({2, 2}, {2, 0, 2, 2});  // repeated id: gradients must add up
  Tape<double> t;
  Var<double> e = token_position_embedding(t, wte, wpe, ids, 1);  // positions 1, 2
  CHECK(e.shape() == Shape{2, 2, 2});
  CHECK(e.value().at({0, 0, 0}) == 5 + 30);
  CHECK(e.value().at({0, 1, 1}) == 2 + 60);
  CHECK(e.value().at({1, 1, 0}) == 5 + 50);
  auto r = gradcheck({&wte, &wpe}, [&](Tape<double>& t) { return project(t, token_position_embedding(t, wte, wpe, ids, 1)); });
  MARROW_CHECK_GRAD(r, 1e-6);
  CHECK(wpe.grad().at({0, 0}) == 0.0);  // position 0 unused
  CHECK(wte.grad().at({1, 1}) == 0.0);  // id 1 unused
  CHECK_THROWS_WITH(token_position_embedding(t, wte, wpe, ids, 3),
                    doctest::Contains("positions [3, 5) exceed block_size 4"));
  Tensor<std::int32_t> bad({1, 2}, {0, 3});
  CHECK_THROWS_WITH(token_position_embedding(t, wte, wpe, bad), doctest::Contains("token id 3 at position 1 out of range for vocabulary size 3"));
}

TEST_CASE("shape: one_hot") {
  auto oh = one_hot<float>(ints({2, 2}, {1, 0, 2, 1}), 3);
  CHECK(oh.shape() == Shape{2, 2, 3});
  const std::vector<float> want = {0, 1, 0, 1, 0, 0, 0, 0, 1, 0, 1, 0};
  for (int i = 0; i < 12; ++i) CHECK(oh[i] == want[std::size_t(i)]);
  CHECK_THROWS_WITH_AS(one_hot<float>(ints({2}, {0, 3}), 3),
                       doctest::Contains("one_hot: label 3 at position 1 out of range for 3 classes"), Error);
}
