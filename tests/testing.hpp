#pragma once
// Helpers shared by the test suites.
#include <doctest/doctest.h>

#include <marrow/marrow.hpp>

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

}  // namespace marrow::testing
