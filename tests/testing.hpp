#pragma once
// Helpers shared by the test suites.
#include <doctest/doctest.h>

#include <marrow/marrow.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace marrow::testing {

// Random tensor whose entries stay at least `gap` away from zero (and from each
// other's kinks): finite differences across a kink (relu, abs, max) are meaningless.
inline Tensor<double> rand_away_from_zero(const Shape& s, Rng& rng, double gap = 0.1) {
  Tensor<double> t = Tensor<double>::uninitialized(s);
  for (auto& v : t) {
    double u = rng.uniform(gap, 1.0);
    v = rng.uniform() < 0.5 ? -u : u;
  }
  return t;
}

// Project an output to a scalar with a fixed random tensor: every output entry
// gets its own weight, so a backward rule that mixes up entries is caught.
inline Var<double> project(Tape<double>& t, const Var<double>& y, std::uint64_t seed = 99) {
  Rng rng(seed);
  return sum(t, mul(t, y, t.input(randn<double>(y.shape(), rng))));
}

// Assert a gradcheck result below tol, printing the worst entry on failure.
#define MARROW_CHECK_GRAD(result, tol) CHECK_MESSAGE((result).max_rel_err < (tol), (result).worst)

// A model's float loss and parameter gradients with its products on our GEMM
// (kernels/sgemm.hpp) against the same on Eigen's. The two sum in different
// orders, so they agree to rounding, not to the bit: the loss within rel_tol of
// itself, each gradient within rel_tol·‖g‖ in norm. Where our kernel is built,
// some bits must differ, or the products did not really run on two engines.
template <class LossFn> void check_gemm_engines(const ParamList<float>& ps, LossFn&& loss_of, double rel_tol) {
  struct Run {
    double loss = 0;
    std::vector<Tensor<float>> grads;
  };
  const auto run = [&](GemmEngine engine) {
    KernelConfig c = kernel_config();
    c.gemm_engine = engine;
    const ScopedKernelConfig scope(c);
    for (const auto& p : ps) p.param->grad().zero();
    Tape<float> t;
    const Var<float> loss = loss_of(t);
    t.backward(loss);
    Run r{double(loss.item()), {}};
    for (const auto& p : ps) r.grads.push_back(p.param->grad().clone());
    return r;
  };
  const Run ours = run(GemmEngine::Own), eigen = run(GemmEngine::Eigen);
  CHECK(std::isfinite(ours.loss));
  CHECK(std::abs(ours.loss - eigen.loss) <= rel_tol * std::abs(eigen.loss));
  bool any_bit_differs = std::memcmp(&ours.loss, &eigen.loss, sizeof(double)) != 0;
  double worst = 0;
  for (std::size_t i = 0; i < ps.size(); ++i) {
    CAPTURE(ps[i].name);
    const auto a = ours.grads[i].arr().template cast<double>(), b = eigen.grads[i].arr().template cast<double>();
    const double diff = std::sqrt((a - b).square().sum()), norm = std::sqrt(b.square().sum());
    CHECK(diff <= rel_tol * norm);
    if (norm > 0) worst = std::max(worst, diff / norm);
    any_bit_differs |= std::memcmp(ours.grads[i].data(), eigen.grads[i].data(),
                                   sizeof(float) * std::size_t(ours.grads[i].numel())) != 0;
  }
  MESSAGE("our GEMM vs Eigen's: loss ", ours.loss, " vs ", eigen.loss, ", worst gradient difference ", worst,
          " of its norm");
#ifdef MARROW_SGEMM_NATIVE
  CHECK(any_bit_differs);
#endif
}

// Bit-for-bit equality of two tensors (shape and every value, the sign of zero included).
template <class T> bool same_bits(const Tensor<T>& a, const Tensor<T>& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), sizeof(T) * std::size_t(a.numel())) == 0;
}

// tape.backward_observed(loss), checking what data-parallel bucket overlap
// (dist/data_parallel.hpp) relies on: once the reverse loop reaches a parameter's
// first use in param_uses(), its gradient is final. Each gradient is copied at
// that moment and compared with its value after backward, bit for bit.
template <class T> void check_param_uses_final(Tape<T>& t, const Var<T>& loss, const ParamList<T>& params) {
  std::vector<std::size_t> first(params.size(), std::size_t(-1));
  for (const auto& [node, at] : t.param_uses())
    for (std::size_t i = 0; i < params.size(); ++i)
      if (params[i].param->node() == node) first[i] = std::min(first[i], at);
  for (const auto& p : params) p.param->grad().zero();
  std::vector<Tensor<T>> at_first_use(params.size());
  t.backward_observed(loss, [&](std::size_t done_from) {
    for (std::size_t i = 0; i < params.size(); ++i)
      if (!at_first_use[i].defined() && first[i] >= done_from) at_first_use[i] = params[i].param->grad().clone();
  });
  for (std::size_t i = 0; i < params.size(); ++i) {
    CAPTURE(params[i].name);
    CHECK(same_bits(at_first_use[i], params[i].param->grad()));
  }
}

}  // namespace marrow::testing
