#include "testing.hpp"

#include <fstream>
#include <latch>
#include <optional>
#include <set>
#include <thread>

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

TEST_CASE("tape: a reused tape does not grow over 10,000 steps") {
  // A small MLP trained for 10,000 steps on one tape: after warm-up, neither the
  // buffer pool nor the process's peak RSS grows (memory is reused, not re-faulted).
  Rng rng(1);
  Param<float> w1(randn<float>({64, 32}, rng, 0.0, 0.1)), w2(randn<float>({1, 64}, rng, 0.0, 0.1));
  Tape<float> t;
  auto x = randn<float>({16, 32}, rng);
  auto peak_kb = [] {
    std::ifstream f("/proc/self/status");
    std::string line;
    while (std::getline(f, line))
      if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
    return 0L;
  };
  std::size_t fresh_after_warmup = 0;
  long peak_after_warmup = 0;
  std::size_t nodes_after_warmup = 0;
  for (int step = 0; step < 10000; ++step) {
    t.reset();
    auto h = tanh(t, linear(t, t.input(x), w1));
    auto loss = mean(t, mul(t, linear(t, h, w2), linear(t, h, w2)));
    t.backward(loss);
    w1.value().arr() -= 1e-3f * w1.grad().arr();
    w2.value().arr() -= 1e-3f * w2.grad().arr();
    w1.zero_grad();
    w2.zero_grad();
    if (step == 10) {
      fresh_after_warmup = BufferPool::instance().fresh_bytes();
      peak_after_warmup = peak_kb();
      nodes_after_warmup = t.size();
    }
  }
  CHECK(t.size() == nodes_after_warmup);
  // MARROW_NO_POOL=1 (sanitizer runs) frees and re-allocates by design, and ASan quarantines freed memory.
  if (BufferPool::instance().enabled()) {
    CHECK(BufferPool::instance().fresh_bytes() == fresh_after_warmup);
    CHECK(peak_kb() - peak_after_warmup < 256);  // KiB: no growth beyond noise
  }
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

TEST_CASE("tape: tapes on different threads at the same time get distinct generations") {
  // Threads start together and reset tapes of both element types as fast as they can:
  // a counter that is not one atomic for all of them hands out some generation twice.
  constexpr int kThreads = 8, kResets = 4000;
  std::vector<std::vector<std::uint64_t>> seen(kThreads);
  std::latch start(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i)
    threads.emplace_back([&, i] {
      Tape<float> tf;
      Tape<double> td;
      start.arrive_and_wait();
      for (int r = 0; r < kResets; ++r) {
        tf.reset();
        td.reset();
        seen[std::size_t(i)].push_back(tf.input(zeros<float>({1})).gen());
        seen[std::size_t(i)].push_back(td.input(zeros<double>({1})).gen());
      }
    });
  for (auto& th : threads) th.join();
  std::set<std::uint64_t> distinct;
  for (const auto& v : seen) distinct.insert(v.begin(), v.end());
  CHECK(distinct.size() == std::size_t(2 * kThreads * kResets));
  // A tape built where another one lived (same address) does not accept that tape's Var.
  std::optional<Tape<double>> slot(std::in_place);
  Var<double> old = slot->input(zeros<double>({1}));
  slot.emplace();
  CHECK_THROWS_WITH_AS(add(*slot, old, old), doctest::Contains("stale"), Error);
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

// A node that feeds several ops, or one op twice (add(x, x), linear(x, x), attention with
// q = k = v), collects the sum of every share: no rule may overwrite another's.
TEST_CASE("tape: a node read by several ops, or twice by one, sums every share") {
  using marrow::testing::project;
  Rng rng(12);
  Param<double> x(randn<double>({4, 4}, rng)), w(randn<double>({4}, rng)), b(randn<double>({4}, rng));
  auto check = [&](const char* what, auto f) {
    CAPTURE(what);
    auto r = gradcheck({&x}, [&](Tape<double>& t) { return project(t, f(t, Var<double>(x))); });
    MARROW_CHECK_GRAD(r, 1e-6);
  };
  check("add(x, x)", [](Tape<double>& t, Var<double> v) { return add(t, v, v); });
  check("mul(x, x)", [](Tape<double>& t, Var<double> v) { return mul(t, v, v); });
  check("linear(x, x)", [](Tape<double>& t, Var<double> v) { return linear(t, v, v); });
  check("gelu + reshape + relu of one leaf", [](Tape<double>& t, Var<double> v) {
    return add(t, gelu(t, v), reshape(t, relu(t, reshape(t, v, {16})), {4, 4}));
  });
  check("layer_norm twice", [&](Tape<double>& t, Var<double> v) {
    return mul(t, layer_norm(t, v, Var<double>(w), Var<double>(b)), layer_norm(t, v, Var<double>(), Var<double>()));
  });
  check("attention with q = k = v", [](Tape<double>& t, Var<double> v) {
    Var<double> h = reshape(t, v, {1, 1, 4, 4});
    return scaled_dot_product_attention(t, h, h, h, true);
  });
  check("attention with q = k", [](Tape<double>& t, Var<double> v) {
    Var<double> h = reshape(t, v, {1, 1, 4, 4});
    return scaled_dot_product_attention(t, h, h, mul_scalar(t, h, 2.0), false);
  });
}

// ---- recompute (recompute.hpp) ---------------------------------------------------------
namespace {
// A small graph with two chained segments: u feeds the first segment, the second
// one and the loss outside both; the second segment's output is read three times.
template <class T> struct RecomputeSegments {
  Param<T> w1, b1, w2, x;
  Rng drop_rng{77};
  T p = T(0);  // dropout inside the second segment
  explicit RecomputeSegments(std::uint64_t seed) {
    Rng rng(seed);
    w1 = Param<T>(randn<T>({4, 3}, rng, 0.0, 0.7)), b1 = Param<T>(randn<T>({4}, rng));
    w2 = Param<T>(randn<T>({3, 4}, rng, 0.0, 0.7)), x = Param<T>(randn<T>({5, 3}, rng));
  }
  ParamList<T> params() { return {{"w1", &w1}, {"b1", &b1}, {"w2", &w2}, {"x", &x}}; }
  // (5, 3) -> (5, 4): in[0] read twice, w1 twice, dropout drawn from drop_rng.
  Var<T> first(Tape<T>& t, const std::vector<Var<T>>& in) {
    Var<T> h = dropout(t, tanh(t, linear(t, in[0], w1, b1)), p, true, drop_rng);
    return add(t, mul(t, h, h), linear(t, mul(t, in[0], in[0]), w1));
  }
  // (5, 4), (5, 3) -> (5, 3), with dropout drawn from drop_rng.
  Var<T> second(Tape<T>& t, const std::vector<Var<T>>& in) {
    Var<T> z = add(t, linear(t, dropout(t, in[0], p, true, drop_rng), w2), in[1]);
    return mul(t, sigmoid(t, z), in[1]);
  }
  Var<T> loss(Tape<T>& t, bool rc) {
    Var<T> u = tanh(t, Var<T>(x));
    auto s1 = [this](Tape<T>& s, const std::vector<Var<T>>& in) { return first(s, in); };
    auto s2 = [this](Tape<T>& s, const std::vector<Var<T>>& in) { return second(s, in); };
    Var<T> a = rc ? recompute(t, s1, {u}, {&drop_rng}) : s1(t, {u});  // both segments draw from drop_rng
    Var<T> b = rc ? recompute(t, s2, {a, u}, {&drop_rng}) : s2(t, {a, u});
    Var<T> y = add(t, mul(t, b, b), mul(t, u, b));  // b three times, u outside the segments
    Rng probe(99);  // a fixed random projection to a scalar
    return sum(t, mul(t, add(t, y, exp(t, b)), t.input(randn<T>(b.shape(), probe))));
  }
};
}  // namespace

TEST_CASE("recompute: gradients of inputs and parameters are the plain path's bits") {
  for (double p : {0.0, 0.3}) {
    CAPTURE(p);
    RecomputeSegments<double> plain(4), rc(4);
    plain.p = rc.p = p;
    for (int step = 0; step < 3; ++step) {  // one tape each, reused: the draws of later steps match too
      CAPTURE(step);
      Tape<double> tp, tr;
      for (auto* m : {&plain, &rc})
        for (auto& q : m->params()) q.param->zero_grad();
      Var<double> lp = plain.loss(tp, false), lr = rc.loss(tr, true);
      CHECK(tr.size() < tp.size());  // the segments' intermediates are not on the tape
      tp.backward(lp);
      tr.backward(lr);
      CHECK(testing::same_bits(lp.value(), lr.value()));
      auto a = plain.params(), b = rc.params();
      for (std::size_t i = 0; i < a.size(); ++i) {
        CAPTURE(a[i].name);
        CHECK(testing::same_bits(a[i].param->grad(), b[i].param->grad()));
      }
      CHECK(plain.drop_rng.next_u64() == rc.drop_rng.next_u64());
    }
  }
}

TEST_CASE("recompute: float, a segment's output used twice, an input used twice and a leaf input") {
  // The same bits in float (where any change of summation order shows), with the
  // differentiated input a tape leaf rather than a parameter.
  Rng rng(8);
  Param<float> w(randn<float>({6, 6}, rng, 0.0, 0.5));
  const Tensor<float> x0 = randn<float>({7, 6}, rng);
  auto seg = [&](Tape<float>& s, const std::vector<Var<float>>& in) {
    return gelu(s, add(s, linear(s, in[0], w), in[1]), GeluForm::Erf);
  };
  auto run = [&](bool rc) {
    w.zero_grad();
    Tape<float> t;
    Var<float> x = t.leaf(x0);
    Var<float> h = tanh(t, x);
    Var<float> y = rc ? recompute(t, seg, {h, h}) : seg(t, {h, h});
    y = rc ? recompute(t, seg, {y, h}) : seg(t, {y, h});
    t.backward(sum(t, mul(t, add(t, y, h), y)));
    return std::pair{x.grad().clone(), w.grad().clone()};
  };
  auto [xp, wp] = run(false);
  auto [xr, wr] = run(true);
  CHECK(testing::same_bits(xp, xr));
  CHECK(testing::same_bits(wp, wr));
}

TEST_CASE("recompute: gradients through a recomputed segment match central differences") {
  RecomputeSegments<double> m(5);
  m.p = 0.25;  // dropout replays: the numeric loss runs under no_grad, the analytic one recomputes
  const Rng start = m.drop_rng;
  auto r = gradcheck(m.params(), [&](Tape<double>& t) {
    m.drop_rng = start;  // every evaluation the same mask
    return m.loss(t, true);
  });
  MARROW_CHECK_GRAD(r, 1e-7);
}

TEST_CASE("recompute: the parameters used inside are final once the checkpoint's closure has run") {
  // What dist's bucket overlap relies on (Tape::param_uses).
  RecomputeSegments<float> m(6);
  m.p = 0.2f;
  Tape<float> t;
  for (int step = 0; step < 2; ++step) {
    t.reset();
    Var<float> l = m.loss(t, true);
    testing::check_param_uses_final(t, l, m.params());
  }
}

TEST_CASE("recompute: under no_grad the segment just runs, and the child tape is reused") {
  RecomputeSegments<double> m(7);
  Tape<double> t;
  double plain = 0;
  {
    auto g = t.no_grad();
    plain = m.loss(t, true).item();
    CHECK(t.recorded() == 0);
    CHECK(t.child().size() == 0);
  }
  t.reset();
  CHECK(m.loss(t, true).item() == plain);
  CHECK(t.child().size() == 0);  // reset after the forward
  t.backward(m.loss(t, true));
  CHECK(t.child().size() == 0);  // and after the backward
  // A segment that returns an input, or reads a Var of the outer tape, is refused.
  Var<double> u = t.input(zeros<double>({2}));
  CHECK_THROWS_WITH_AS(recompute(t, [](Tape<double>&, const std::vector<Var<double>>& in) { return in[0]; }, {u}),
                       doctest::Contains("returned one of its inputs"), Error);
  CHECK_THROWS_WITH_AS(recompute(t, [&](Tape<double>& s, const std::vector<Var<double>>& in) { return add(s, in[0], u); }, {u}),
                       doctest::Contains("another tape"), Error);
}
