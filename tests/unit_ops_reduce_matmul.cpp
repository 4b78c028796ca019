#include "testing.hpp"

#include <cstring>
#include <limits>
#ifdef _OPENMP
#include <omp.h>
#endif

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
  CHECK(var(t, x, {1}, false, 0).value()[0] == doctest::Approx(2.0 / 3.0).scale(0));
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
  for (const auto& shapes : cases) {
    const Shape &sa = shapes.first, &sb = shapes.second;
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

#ifdef _OPENMP
namespace {
// Every form of product the ops use, on one thread and then on two: split over both
// threads (threshold 0) and kept on the calling thread (threshold out of reach, where
// Eigen would otherwise thread it itself and cut the k-sum where one thread does not).
template <class T> void check_gemm_bits(index_t m, index_t n, index_t k) {
  using detail::RowMat;
  Rng rng(std::uint64_t(m * 1000003 + n * 1009 + k));
  const RowMat<T> A = randn<T>({m, k}, rng).mat(), At = A.transpose(), B = randn<T>({k, n}, rng).mat(),
                  Bt = B.transpose(), C0 = randn<T>({m, n}, rng).mat();
  RowMat<T> wide = RowMat<T>::Constant(m, n + 5, std::numeric_limits<T>::quiet_NaN());
  const auto forms = [&](int form) {  // the product's destination after form `form`
    RowMat<T> C = C0;
    auto band = Eigen::Map<RowMat<T>, 0, Eigen::OuterStride<>>(wide.data() + 2, m, n, Eigen::OuterStride<>(n + 5));
    switch (form) {
      case 0: C.fill(std::numeric_limits<T>::quiet_NaN()); detail::gemm(C, A, B); break;  // every entry written
      case 1: detail::gemm_add(C, At.transpose(), B); break;
      case 2: detail::gemm(C, A, Bt.transpose(), T(0.37)); break;
      case 3: detail::gemm_add(C, At.transpose(), Bt.transpose(), T(-1.5)); break;
      case 4: band = C0; detail::gemm_add(band, A, B); C = band; break;
    }
    return C;
  };
  const int saved = omp_get_max_threads();
  for (int form = 0; form < 5; ++form) {
    CAPTURE(form);
    omp_set_num_threads(1);
    const RowMat<T> want = forms(form);
    omp_set_num_threads(2);
    for (double threshold : {0.0, 1e300}) {
      CAPTURE(threshold);
      KernelConfig c = kernel_config();
      c.gemm_parallel_min = threshold;
      const ScopedKernelConfig scope(c);
      const RowMat<T> got = forms(form);
      CHECK(std::memcmp(got.data(), want.data(), sizeof(T) * std::size_t(m * n)) == 0);
    }
    omp_set_num_threads(saved);
  }
}
}  // namespace

TEST_CASE("kernels: gemm gives the same bits on one thread and on two, split either way") {
  // Ragged ends (rows not a multiple of 4, columns not of 48), splits by rows and (with
  // fewer than 8 rows) by columns, and depths on both sides of Eigen's k-blocks: 320 (where its own
  // threaded GEMM cuts the sum, float AVX-512) and 624 (where one thread cuts it).
  struct S { index_t m, n, k; };
  for (S s : {S{9, 6, 7}, S{13, 200, 33}, S{96, 97, 384}, S{130, 70, 700}, S{33, 300, 1300}, S{768, 65, 128},
              S{10, 1000, 64}, S{7, 3, 500}, S{5, 400, 700}}) {
    CAPTURE(s.m);
    CAPTURE(s.n);
    CAPTURE(s.k);
    for (GemmEngine engine : {GemmEngine::Own, GemmEngine::Eigen}) {  // float: our kernel and Eigen's
      CAPTURE(int(engine));
      KernelConfig c = kernel_config();
      c.gemm_engine = engine;
      const ScopedKernelConfig scope(c);
      check_gemm_bits<float>(s.m, s.n, s.k);
    }
    check_gemm_bits<double>(s.m, s.n, s.k);
  }
}
#endif
