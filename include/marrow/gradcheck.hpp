#pragma once
// Finite-difference gradient checking (central differences, in double).
//
// The loss function builds a scalar on the tape it is given. gradcheck runs it
// once with backward() to get analytic gradients, then perturbs sampled
// entries of each parameter by ±h and compares. Relative error per entry:
//   max(0, |a − n| − r) / max(|a|, |n|, floor)
// The floor keeps entries whose true gradient is ~0 from dominating. r is the
// rounding error of the central difference itself, 4 ulps of the loss over 2h:
// below it the two evaluations cannot tell a gradient from noise (a key bias of
// attention, whose true gradient is 0, reads 2.2e-10 when the two losses differ
// in their last bit).
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "tape.hpp"

namespace marrow {

struct GradcheckOptions {
  double h = 1e-6;
  int samples_per_tensor = 64;  // entries checked per parameter; all when it has fewer
  double floor = 1e-6;          // denominator floor of the relative error
  std::uint64_t seed = 1234;    // which entries are sampled
};

struct GradcheckResult {
  double max_rel_err = 0.0;
  std::string worst;  // "name[index]: analytic a, numeric n"
  int checked = 0;
};

inline GradcheckResult gradcheck(const ParamList<double>& params, const std::function<Var<double>(Tape<double>&)>& loss,
                                 GradcheckOptions opt = {}) {
  for (auto& p : params) p.param->zero_grad();
  {
    Tape<double> tape;
    Var<double> l = loss(tape);
    tape.backward(l);
  }
  auto eval = [&] {
    Tape<double> tape;
    auto guard = tape.no_grad();
    return loss(tape).item();
  };
  GradcheckResult r;
  Rng rng(opt.seed);
  for (auto& np : params) {
    Param<double>& p = *np.param;
    const index_t n = p.numel();
    MARROW_CHECK(n > 0, "gradcheck: parameter ", np.name, " is empty");
    const Tensor<double> analytic = p.has_grad() ? p.grad().clone() : Tensor<double>(p.shape());
    std::vector<index_t> idx;
    if (n <= opt.samples_per_tensor) {
      for (index_t i = 0; i < n; ++i) idx.push_back(i);
    } else {
      for (int s = 0; s < opt.samples_per_tensor; ++s) idx.push_back(index_t(rng.below(std::uint64_t(n))));
    }
    for (index_t i : idx) {
      double& v = p.value()[i];
      const double orig = v;
      v = orig + opt.h;
      const double lp = eval();
      v = orig - opt.h;
      const double lm = eval();
      v = orig;
      const double num = (lp - lm) / (2 * opt.h);
      const double a = analytic[i];
      const double rounding = 4 * std::numeric_limits<double>::epsilon() * std::max(std::abs(lp), std::abs(lm)) / (2 * opt.h);
      const double err = std::max(0.0, std::abs(a - num) - rounding) / std::max({std::abs(a), std::abs(num), opt.floor});
      ++r.checked;
      if (err > r.max_rel_err || !std::isfinite(err)) {
        r.max_rel_err = std::isfinite(err) ? err : 1e300;
        r.worst = detail::cat(np.name, "[", i, "]: analytic ", a, ", numeric ", num);
      }
    }
  }
  return r;
}

// Convenience: unnamed parameters are called p0, p1, ...
inline GradcheckResult gradcheck(std::initializer_list<Param<double>*> params,
                                 const std::function<Var<double>(Tape<double>&)>& loss, GradcheckOptions opt = {}) {
  ParamList<double> list;
  int k = 0;
  for (auto* p : params) {
    std::string name = "p";  // not "p" + to_string(): GCC 12 warns falsely (-Wstringop-overflow) on that
    name += std::to_string(k++);
    list.push_back({std::move(name), p});
  }
  return gradcheck(list, loss, opt);
}

}  // namespace marrow
