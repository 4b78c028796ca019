#include <marrow/ops/attention.hpp>

#include "testing.hpp"

using namespace marrow;
using marrow::testing::project;

namespace {
// softmax(scale·Q·Kᵀ + mask)·V built from tape ops, in double: the reference
// the fused kernel must reproduce. The mask is an additive −1e30 on hidden keys.
Tensor<double> naive_attention(const Tensor<double>& q, const Tensor<double>& k, const Tensor<double>& v, bool causal,
                               double scale) {
  Tape<double> t;
  const index_t Tq = q.dim(2), Tk = k.dim(2);
  Tensor<double> mask({Tq, Tk});
  if (causal)
    for (index_t i = 0; i < Tq; ++i)
      for (index_t j = i + (Tk - Tq) + 1; j < Tk; ++j) mask.at({i, j}) = -1e30;
  auto s = add(t, mul_scalar(t, matmul(t, t.input(q), t.input(k.transpose(2, 3))), scale), t.input(mask));
  auto p = exp(t, sub(t, s, logsumexp(t, s, {-1}, true)));
  return matmul(t, p, t.input(v)).value();
}

struct Case {
  index_t B, H, Tq, Tk, D, Dv;
  bool causal;
};
const Case kCases[] = {
    {2, 2, 5, 5, 3, 3, true},   // GPT training: Tq == Tk
    {2, 2, 5, 5, 3, 3, false},  // encoder / full attention
    {1, 2, 3, 6, 5, 5, true},   // KV cache: queries are the last 3 of 6 positions
    {2, 1, 3, 6, 5, 2, false},  // cross attention with Dv != D
    {1, 1, 1, 4, 3, 3, true},   // one new token against a cache
    {1, 2, 37, 37, 3, 3, true}, // several causal row blocks (the kernel works in blocks of 16 rows)
    {1, 1, 18, 35, 5, 4, true}, // row blocks with a KV-cache offset
};
}  // namespace

TEST_CASE("attention: forward equals the naive softmax(QKᵀ)V on the tape") {
  for (const Case& c : kCases) {
    CAPTURE(c.Tq);
    CAPTURE(c.Tk);
    CAPTURE(c.causal);
    Rng rng(3);
    auto q = randn<double>({c.B, c.H, c.Tq, c.D}, rng), k = randn<double>({c.B, c.H, c.Tk, c.D}, rng),
         v = randn<double>({c.B, c.H, c.Tk, c.Dv}, rng);
    Tape<double> t;
    Tensor<double> probs;
    auto o = scaled_dot_product_attention(t, t.input(q), t.input(k), t.input(v), c.causal, 0.0, &probs);
    CHECK(o.shape() == Shape{c.B, c.H, c.Tq, c.Dv});
    auto ref = naive_attention(q, k, v, c.causal, 1.0 / std::sqrt(double(c.D)));
    double err = 0.0;
    for (index_t i = 0; i < ref.numel(); ++i) err = std::max(err, std::abs(o.value()[i] - ref[i]));
    CHECK(err < 1e-12);
    // probabilities: rows sum to 1, hidden keys exactly 0
    CHECK(probs.shape() == Shape{c.B, c.H, c.Tq, c.Tk});
    double sum_err = 0.0, hidden = 0.0;
    for (index_t r = 0; r < probs.numel() / c.Tk; ++r) {
      double s = 0;
      for (index_t j = 0; j < c.Tk; ++j) s += probs[r * c.Tk + j];
      sum_err = std::max(sum_err, std::abs(s - 1.0));
      const index_t i = r % c.Tq;
      if (c.causal)
        for (index_t j = i + (c.Tk - c.Tq) + 1; j < c.Tk; ++j) hidden = std::max(hidden, std::abs(probs[r * c.Tk + j]));
    }
    CHECK(sum_err < 1e-12);
    CHECK(hidden == 0.0);
  }
}

TEST_CASE("attention: hand-computed values and explicit scale") {
  // One head, 2 positions, D = 1: q = [1, 2], k = [0, ln 3], v = [10, 20], scale 1.
  // Row 0 causal sees only key 0 -> 10. Row 1: softmax(2·[0, ln 3]) = [1/10, 9/10] -> 19.
  Tape<double> t;
  auto q = t.input(Tensor<double>({1, 1, 2, 1}, {1, 2}));
  auto k = t.input(Tensor<double>({1, 1, 2, 1}, {0, std::log(3.0)}));
  auto v = t.input(Tensor<double>({1, 1, 2, 1}, {10, 20}));
  auto o = scaled_dot_product_attention(t, q, k, v, true, 1.0);
  CHECK(o.value()[0] == doctest::Approx(10.0));
  CHECK(o.value()[1] == doctest::Approx(19.0));
  // non-causal row 0: softmax([0, ln 3]) = [1/4, 3/4] -> 17.5
  auto o2 = scaled_dot_product_attention(t, q, k, v, false, 1.0);
  CHECK(o2.value()[0] == doctest::Approx(17.5));
  // default scale 1/√D: D = 4, q·k = 4 -> the same as scale 1 with q·k = 2
  auto q4 = t.input(full<double>({1, 1, 1, 4}, 1.0));
  auto k4 = t.input(Tensor<double>({1, 1, 2, 4}, {0, 0, 0, 0, 1, 1, 1, 1}));
  auto o3 = scaled_dot_product_attention(t, q4, k4, v, false);
  const double e2 = std::exp(2.0);
  CHECK(o3.value()[0] == doctest::Approx((10.0 + 20.0 * e2) / (1.0 + e2)));
}

TEST_CASE("attention: gradients match central differences (causal, full, Tq < Tk, odd D)") {
  for (const Case& c : kCases) {
    CAPTURE(c.Tq);
    CAPTURE(c.Tk);
    CAPTURE(c.causal);
    Rng rng(17);
    Param<double> q(randn<double>({c.B, c.H, c.Tq, c.D}, rng)), k(randn<double>({c.B, c.H, c.Tk, c.D}, rng)),
        v(randn<double>({c.B, c.H, c.Tk, c.Dv}, rng));
    auto r = gradcheck({&q, &k, &v}, [&](Tape<double>& t) {
      return project(t, scaled_dot_product_attention(t, Var<double>(q), Var<double>(k), Var<double>(v), c.causal, 0.7));
    }, {.h = 1e-5});  // at 1e-6, rounding noise of the larger cases' loss reaches 1e-6 relative on small entries
    MARROW_CHECK_GRAD(r, 1e-6);
  }
}

TEST_CASE("attention: gradients accumulate and flow only to inputs that need them") {
  Rng rng(5);
  Param<double> q(randn<double>({1, 2, 4, 3}, rng)), k(randn<double>({1, 2, 4, 3}, rng));
  Tensor<double> v = randn<double>({1, 2, 4, 3}, rng);
  auto r = gradcheck({&q, &k}, [&](Tape<double>& t) {
    auto o = scaled_dot_product_attention(t, Var<double>(q), Var<double>(k), t.input(v), true);
    return add(t, project(t, o, 1), project(t, o, 2));  // two uses of one output
  }, {.h = 1e-5});  // the summed loss is larger: a bigger step keeps rounding noise below 1e-6 relative
  MARROW_CHECK_GRAD(r, 1e-6);
  // self-attention with q = k = v one parameter: the three gradients add up
  Param<double> x(randn<double>({2, 1, 4, 3}, rng));
  auto r2 = gradcheck({&x}, [&](Tape<double>& t) {
    Var<double> xv(x);
    return project(t, scaled_dot_product_attention(t, xv, xv, xv, true));
  });
  MARROW_CHECK_GRAD(r2, 1e-6);
}

TEST_CASE("attention: causal output at a position ignores later keys and values") {
  Rng rng(8);
  auto q = randn<double>({1, 2, 4, 3}, rng), k = randn<double>({1, 2, 6, 3}, rng), v = randn<double>({1, 2, 6, 3}, rng);
  auto run = [&](const Tensor<double>& kk, const Tensor<double>& vv) {
    Tape<double> t;
    return scaled_dot_product_attention(t, t.input(q), t.input(kk), t.input(vv), true).value();
  };
  auto base = run(k, v);
  auto k2 = k.clone(), v2 = v.clone();
  for (index_t h = 0; h < 2; ++h)
    for (index_t d = 0; d < 3; ++d) {
      k2.at({0, h, 5, d}) += 3.0;  // the last position: visible only to the last query
      v2.at({0, h, 5, d}) -= 2.0;
    }
  auto moved = run(k2, v2);
  for (index_t h = 0; h < 2; ++h)
    for (index_t i = 0; i < 4; ++i)
      for (index_t d = 0; d < 3; ++d) {
        CAPTURE(i);
        if (i < 3) CHECK(moved.at({0, h, i, d}) == base.at({0, h, i, d}));  // exactly unchanged
        else CHECK(moved.at({0, h, i, d}) != base.at({0, h, i, d}));
      }
  // Tq == Tk: row 0 depends only on key/value 0
  auto qs = randn<double>({1, 1, 4, 3}, rng), ks = randn<double>({1, 1, 4, 3}, rng), vs = randn<double>({1, 1, 4, 3}, rng);
  auto row0 = [&](const Tensor<double>& kk, const Tensor<double>& vv) {
    Tape<double> t;
    auto o = scaled_dot_product_attention(t, t.input(qs), t.input(kk), t.input(vv), true).value();
    return std::vector<double>(o.data(), o.data() + 3);
  };
  auto ks2 = ks.clone(), vs2 = vs.clone();
  for (index_t j = 1; j < 4; ++j)
    for (index_t d = 0; d < 3; ++d) ks2.at({0, 0, j, d}) = 100.0, vs2.at({0, 0, j, d}) = -100.0;
  CHECK(row0(ks2, vs2) == row0(ks, vs));
  CHECK(row0(ks, vs)[0] == vs[0]);  // probability exactly 1 on key 0: O = 1·v₀ + 0·…
}

TEST_CASE("attention: float path agrees with double and stays finite for large scores") {
  Rng rng(12);
  auto qd = randn<double>({2, 2, 8, 5}, rng), kd = randn<double>({2, 2, 8, 5}, rng), vd = randn<double>({2, 2, 8, 5}, rng);
  Tape<float> tf;
  auto of = scaled_dot_product_attention(tf, tf.input(qd.cast<float>()), tf.input(kd.cast<float>()),
                                         tf.input(vd.cast<float>()), true, 100.0f);  // scores ~ ±1000
  Tape<double> td;
  auto od = scaled_dot_product_attention(td, td.input(qd), td.input(kd), td.input(vd), true, 100.0);
  for (index_t i = 0; i < od.numel(); ++i) {
    CHECK(std::isfinite(of.value()[i]));
    CHECK(of.value()[i] == doctest::Approx(od.value()[i]).epsilon(1e-4).scale(0));  // outputs 0.03 to 2.3
  }
}

TEST_CASE("attention: shape errors name the op and the shapes") {
  Tape<double> t;
  auto q = t.input(zeros<double>({1, 2, 4, 3}));
  CHECK_THROWS_WITH_AS(scaled_dot_product_attention(t, q, t.input(zeros<double>({1, 2, 4, 5})), q, false),
                       doctest::Contains("scaled_dot_product_attention: k (1, 2, 4, 5) does not match q (1, 2, 4, 3)"),
                       Error);
  CHECK_THROWS_WITH_AS(scaled_dot_product_attention(t, q, q, t.input(zeros<double>({1, 2, 5, 3})), false),
                       doctest::Contains("v (1, 2, 5, 3) does not match k (1, 2, 4, 3)"), Error);
  CHECK_THROWS_WITH_AS(scaled_dot_product_attention(t, q, t.input(zeros<double>({1, 2, 2, 3})),
                                                    t.input(zeros<double>({1, 2, 2, 3})), true),
                       doctest::Contains("causal needs Tq <= Tk"), Error);
  CHECK_THROWS_WITH_AS(scaled_dot_product_attention(t, t.input(zeros<double>({2, 4, 3})), q, q, true),
                       doctest::Contains("must be (B, H, T, D), got q (2, 4, 3)"), Error);
}

TEST_CASE("attention: split_heads / merge_heads move the right entries") {
  Rng rng(12);
  Param<double> qkv(randn<double>({2, 3, 12}, rng));  // B 2, T 3, 3·C with C 4, 2 heads of 2
  for (int which = 0; which < 3; ++which) {
    auto r = gradcheck({&qkv}, [&](Tape<double>& t) { return project(t, split_heads(t, Var<double>(qkv), 3, which, 2)); });
    MARROW_CHECK_GRAD(r, 1e-6);
  }
  Param<double> y(randn<double>({2, 2, 3, 2}, rng));
  auto r = gradcheck({&y}, [&](Tape<double>& t) { return project(t, merge_heads(t, Var<double>(y))); });
  MARROW_CHECK_GRAD(r, 1e-6);
  Tape<double> t;
  auto k = split_heads(t, Var<double>(qkv), 3, 1, 2);
  CHECK(k.shape() == Shape{2, 2, 3, 2});
  // k[b=1, h=1, t=2, d=0] = qkv[1, 2, 1·4 + 1·2 + 0]
  CHECK(k.value().at({1, 1, 2, 0}) == qkv.value().at({1, 2, 6}));
  auto m = merge_heads(t, k);
  CHECK(m.shape() == Shape{2, 3, 4});
  CHECK(m.value().at({1, 2, 2}) == qkv.value().at({1, 2, 6}));
  CHECK_THROWS_WITH_AS(split_heads(t, Var<double>(qkv), 3, 0, 5), doctest::Contains("split_heads: last dim of (2, 3, 12)"),
                       Error);
}
