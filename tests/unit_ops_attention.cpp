#include <marrow/ops/attention.hpp>

#include <cstring>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "testing.hpp"

using namespace marrow;
using marrow::testing::project;

namespace {
// Forces one of the op's two kernels for the life of the object. The tiled one gets
// small tiles (bq query rows × bk keys) so that tests of a few dozen positions cross
// many tile edges, none of them aligned with T.
struct AttnPath {
  ScopedKernelConfig scope;
  static KernelConfig make(bool tiled, index_t bq, index_t bk) {
    KernelConfig c = kernel_config();
    c.attn_flash_min_keys = tiled ? 0 : index_t(1) << 40;
    c.attn_block_q = bq;
    c.attn_block_k = bk;
    return c;
  }
  explicit AttnPath(bool tiled, index_t bq = 4, index_t bk = 3) : scope(make(tiled, bq, bk)) {}
};

// Row entropies −Σ p·log p of softmax(scale·Q·Kᵀ + mask), in double, the long way.
Tensor<double> naive_entropy(const Tensor<double>& q, const Tensor<double>& k, bool causal, double scale) {
  const index_t BH = q.dim(0) * q.dim(1), Tq = q.dim(2), Tk = k.dim(2), D = q.dim(3);
  Tensor<double> e({q.dim(0), q.dim(1), Tq});
  for (index_t bh = 0; bh < BH; ++bh)
    for (index_t i = 0; i < Tq; ++i) {
      const index_t lim = causal ? i + Tk - Tq + 1 : Tk;
      std::vector<double> s(static_cast<std::size_t>(lim));
      for (index_t j = 0; j < lim; ++j) {
        double d = 0;
        for (index_t c = 0; c < D; ++c) d += q[(bh * Tq + i) * D + c] * k[(bh * Tk + j) * D + c];
        s[std::size_t(j)] = scale * d;
      }
      const double m = *std::max_element(s.begin(), s.end());
      double z = 0;
      for (double x : s) z += std::exp(x - m);
      double h = 0;
      for (double x : s) {
        const double p = std::exp(x - m) / z;
        if (p > 0) h -= p * std::log(p);
      }
      e[bh * Tq + i] = h;
    }
  return e;
}

// max |a − b| / max |b|: the error relative to the tensor's scale.
template <class T> double rel_err(const Tensor<T>& a, const Tensor<T>& b) {
  double num = 0, den = 0;
  for (index_t i = 0; i < b.numel(); ++i) {
    num = std::max(num, std::abs(double(a[i]) - double(b[i])));
    den = std::max(den, std::abs(double(b[i])));
  }
  return num / den;
}

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

TEST_CASE("attention: forward and row entropies equal the naive softmax(QKᵀ)V, both kernels") {
  for (bool tiled : {false, true}) {
    AttnPath path(tiled);
    for (const Case& c : kCases) {
      CAPTURE(tiled);
      CAPTURE(c.Tq);
      CAPTURE(c.Tk);
      CAPTURE(c.causal);
      Rng rng(3);
      auto q = randn<double>({c.B, c.H, c.Tq, c.D}, rng), k = randn<double>({c.B, c.H, c.Tk, c.D}, rng),
           v = randn<double>({c.B, c.H, c.Tk, c.Dv}, rng);
      Tape<double> t;
      Tensor<double> ent;
      auto o = scaled_dot_product_attention(t, t.input(q), t.input(k), t.input(v), c.causal, 0.0, {}, &ent);
      CHECK(o.shape() == Shape{c.B, c.H, c.Tq, c.Dv});
      const double scale = 1.0 / std::sqrt(double(c.D));
      auto ref = naive_attention(q, k, v, c.causal, scale);
      double err = 0.0;
      for (index_t i = 0; i < ref.numel(); ++i) err = std::max(err, std::abs(o.value()[i] - ref[i]));
      CHECK(err < 1e-12);
      REQUIRE(ent.shape() == Shape{c.B, c.H, c.Tq});
      auto eref = naive_entropy(q, k, c.causal, scale);
      double eerr = 0.0;
      for (index_t i = 0; i < eref.numel(); ++i) eerr = std::max(eerr, std::abs(ent[i] - eref[i]));
      CHECK(eerr < 1e-12);
    }
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

TEST_CASE("attention: gradients match central differences (causal, full, Tq < Tk, odd D), both kernels") {
  for (bool tiled : {false, true})
  for (const Case& c : kCases) {
    AttnPath path(tiled);
    CAPTURE(tiled);
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

// ---- the tiled kernel ------------------------------------------------------------------------

TEST_CASE("attention tiled: gradients match central differences (head sizes, ragged tiles, KV cache, dropout)") {
  struct TCase {
    index_t B, H, Tq, Tk, D;
    bool causal;
    float p;
  };
  const TCase cases[] = {
      {1, 2, 13, 13, 8, true, 0.0f},   {1, 1, 13, 13, 32, false, 0.0f}, {1, 1, 11, 11, 48, true, 0.0f},
      {1, 1, 9, 9, 64, true, 0.0f},    {1, 2, 5, 19, 8, true, 0.0f},    {1, 1, 7, 17, 32, false, 0.0f},
      {1, 2, 13, 13, 8, true, 0.3f},   {2, 1, 6, 15, 8, true, 0.5f},    {1, 1, 10, 10, 48, false, 0.2f},
  };
  AttnPath path(true, 4, 5);  // 13 rows: blocks of 4, 4, 4, 1; keys in blocks of 5
  for (const TCase& c : cases) {
    CAPTURE(c.Tq);
    CAPTURE(c.Tk);
    CAPTURE(c.D);
    CAPTURE(c.causal);
    CAPTURE(c.p);
    Rng rng(21);
    Param<double> q(randn<double>({c.B, c.H, c.Tq, c.D}, rng)), k(randn<double>({c.B, c.H, c.Tk, c.D}, rng)),
        v(randn<double>({c.B, c.H, c.Tk, c.D}, rng));
    // The same seed at every evaluation: the mask backward regenerates must be forward's.
    auto r = gradcheck({&q, &k, &v}, [&](Tape<double>& t) {
      return project(t, scaled_dot_product_attention(t, Var<double>(q), Var<double>(k), Var<double>(v), c.causal,
                                                     0.0, {.p = c.p, .seed = 77}));
    }, {.h = 1e-5, .samples_per_tensor = 24});
    MARROW_CHECK_GRAD(r, 1e-6);
  }
}

TEST_CASE("attention tiled: float agrees with the materialised kernel (values, gradients, entropy, dropout)") {
  struct FCase {
    index_t B, H, Tq, Tk, D;
    bool causal;
    float p;
  };
  for (const FCase& c : {FCase{2, 3, 300, 300, 32, true, 0.0f}, FCase{1, 2, 100, 300, 64, true, 0.1f},
                         FCase{2, 2, 77, 130, 48, false, 0.2f}}) {
    CAPTURE(c.Tq);
    CAPTURE(c.p);
    Rng rng(4);
    Tensor<float> q = randn<float>({c.B, c.H, c.Tq, c.D}, rng), k = randn<float>({c.B, c.H, c.Tk, c.D}, rng),
                  v = randn<float>({c.B, c.H, c.Tk, c.D}, rng), g = randn<float>({c.B, c.H, c.Tq, c.D}, rng);
    struct Out {
      Tensor<float> o, e, dq, dk, dv;
    };
    auto run = [&](bool tiled) {
      AttnPath path(tiled, 64, 64);
      Param<float> pq(q.clone()), pk(k.clone()), pv(v.clone());
      Tape<float> t;
      Out r;
      auto o = scaled_dot_product_attention(t, Var<float>(pq), Var<float>(pk), Var<float>(pv), c.causal, 0.0f,
                                            {.p = c.p, .seed = 5}, &r.e);
      t.backward(sum(t, mul(t, o, t.input(g))));
      r.o = o.value().clone();
      r.dq = pq.grad().clone();
      r.dk = pk.grad().clone();
      r.dv = pv.grad().clone();
      return r;
    };
    const Out a = run(true), b = run(false);
    // Relative to each tensor's largest entry; float sums of 300 terms in another order.
    CHECK(rel_err(a.o, b.o) < 2e-6);
    CHECK(rel_err(a.e, b.e) < 2e-6);
    CHECK(rel_err(a.dq, b.dq) < 1e-5);
    CHECK(rel_err(a.dk, b.dk) < 1e-5);
    CHECK(rel_err(a.dv, b.dv) < 1e-5);
  }
}

#ifdef _OPENMP
TEST_CASE("attention: 1 and 2 threads give the same bits, both kernels, with dropout") {
  Rng rng(6);
  const index_t B = 2, H = 3, Tq = 200, Tk = 333, D = 32;
  Tensor<float> q = randn<float>({B, H, Tq, D}, rng), k = randn<float>({B, H, Tk, D}, rng),
                v = randn<float>({B, H, Tk, D}, rng), g = randn<float>({B, H, Tq, D}, rng);
  for (bool tiled : {true, false}) {
    CAPTURE(tiled);
    AttnPath path(tiled, 64, 64);
    std::vector<Tensor<float>> res[2];
    for (int threads : {1, 2}) {
      const int saved = omp_get_max_threads();
      omp_set_num_threads(threads);
      Param<float> pq(q.clone()), pk(k.clone()), pv(v.clone());
      Tape<float> t;
      Tensor<float> e;
      auto o = scaled_dot_product_attention(t, Var<float>(pq), Var<float>(pk), Var<float>(pv), true, 0.0f,
                                            {.p = 0.1f, .seed = 9}, &e);
      t.backward(sum(t, mul(t, o, t.input(g))));
      omp_set_num_threads(saved);
      res[threads - 1] = {o.value().clone(), e, pq.grad().clone(), pk.grad().clone(), pv.grad().clone()};
    }
    for (std::size_t i = 0; i < res[0].size(); ++i) {
      CAPTURE(i);
      CHECK(std::memcmp(res[0][i].data(), res[1][i].data(), sizeof(float) * std::size_t(res[0][i].numel())) == 0);
    }
  }
}
#endif

TEST_CASE("attention: dropout keeps 1 − p of the probabilities, scaled by 1/(1 − p), the same mask on both kernels") {
  // q = 0: every probability is 1/Tk; V = identity: O[i, j] = P̃_ij, so Tk·O is the mask Z.
  const index_t B = 2, H = 2, Tq = 64, Tk = 96;
  const float p = 0.25f;
  Rng rng(1);
  Tensor<float> q({B, H, Tq, 8}), k = randn<float>({B, H, Tk, 8}, rng), v({B, H, Tk, Tk});
  for (index_t bh = 0; bh < B * H; ++bh)
    for (index_t j = 0; j < Tk; ++j) v[(bh * Tk + j) * Tk + j] = 1.0f;
  Tensor<float> z[2];
  for (bool tiled : {false, true}) {
    AttnPath path(tiled, 16, 32);
    Tape<float> t;
    z[tiled] = scaled_dot_product_attention(t, t.input(q), t.input(k), t.input(v), false, 0.0f, {.p = p, .seed = 3})
                   .value()
                   .clone();
  }
  CHECK(std::memcmp(z[0].data(), z[1].data(), sizeof(float) * std::size_t(z[0].numel())) == 0);
  double dropped = 0, mean = 0;
  bool two_values = true;
  for (index_t i = 0; i < z[1].numel(); ++i) {
    const double zi = double(z[1][i]) * Tk;
    dropped += zi == 0.0;
    mean += zi;
    two_values &= zi == 0.0 || std::abs(zi - 1.0 / (1.0 - p)) < 1e-5;
  }
  const double n = double(z[1].numel());  // 24,576 entries: one standard deviation of the share is 0.003
  CHECK(two_values);
  CHECK(std::abs(dropped / n - p) < 0.012);
  CHECK(std::abs(mean / n - 1.0) < 0.015);  // E[Z] = 1: unbiased
  // Another seed, another mask; p = 0 (or no dropout argument) is the plain attention.
  Tape<float> t;
  auto other = scaled_dot_product_attention(t, t.input(q), t.input(k), t.input(v), false, 0.0f, {.p = p, .seed = 4});
  CHECK(std::memcmp(other.value().data(), z[1].data(), sizeof(float) * std::size_t(z[1].numel())) != 0);
  auto plain = scaled_dot_product_attention(t, t.input(q), t.input(k), t.input(v), false, 0.0f, {.p = 0.0f, .seed = 3});
  CHECK(plain.value()[0] == doctest::Approx(1.0 / Tk).epsilon(1e-6));
  CHECK_THROWS_WITH_AS(scaled_dot_product_attention(t, t.input(q), t.input(k), t.input(v), false, 0.0f, {.p = 1.0f}),
                       doctest::Contains("dropout p = 1 must be in [0, 1)"), Error);
}
