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
