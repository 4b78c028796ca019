#pragma once
// Elementwise ops with NumPy broadcasting, and activations.
// Each op: forward beside backward. Backward always accumulates (+=).
// Shapes: any; binary ops broadcast their two inputs to a common shape.
#include <cmath>

#include <Eigen/Core>
#include <unsupported/Eigen/SpecialFunctions>  // vectorized erf for GELU

#include "../tape.hpp"
#include "broadcast.hpp"

namespace marrow {

namespace detail {
inline constexpr index_t kParallelMin = 1 << 15;  // below this, threads cost more than they save

// out = f(a, b) with broadcasting; backward gets (g, a, b, out) per element and
// returns the pair of partial derivatives (∂out/∂a · g, ∂out/∂b · g).
template <class T, class Fwd, class Bwd>
Var<T> binary_op(Tape<T>& t, const char* name, const Arg<T>& a, const Arg<T>& b, Fwd fwd, Bwd bwd) {
  t.check(a, name);
  t.check(b, name);
  const Shape os = broadcast_shapes(a.shape(), b.shape(), name);
  Tensor<T> out = Tensor<T>::uninitialized(os);
  const T* pa = a.value().data();
  const T* pb = b.value().data();
  T* po = out.data();
  const index_t n = os.numel();
  const bool same = a.shape() == os && b.shape() == os;
  if (same) {
#pragma omp parallel for simd if (n >= kParallelMin)
    for (index_t i = 0; i < n; ++i) po[i] = fwd(pa[i], pb[i]);
  } else if (b.numel() == 1 && a.shape() == os) {
    const T s = pb[0];
#pragma omp parallel for simd if (n >= kParallelMin)
    for (index_t i = 0; i < n; ++i) po[i] = fwd(pa[i], s);
  } else {
    index_t sa[Shape::kMaxRank], sb[Shape::kMaxRank];
    broadcast_strides(a.shape(), os, sa);
    broadcast_strides(b.shape(), os, sb);
    broadcast_for_each(os, sa, sb, [&](index_t i, index_t ia, index_t ib) { po[i] = fwd(pa[ia], pb[ib]); });
  }
  Var<T> res = t.push(std::move(out), a, b);
  t.on_backward(res, [a, b, res, bwd, same] {
    const T* g = res.grad().data();
    const T* pa = a.value().data();
    const T* pb = b.value().data();
    const T* po = res.value().data();
    T* da = a.requires_grad() ? a.grad().data() : nullptr;
    T* db = b.requires_grad() ? b.grad().data() : nullptr;
    const Shape& os = res.shape();
    const index_t n = os.numel();
    if (same) {  // separate loops: a branch on da/db inside would stop vectorization
      if (da && db) {
#pragma omp parallel for simd if (n >= kParallelMin)
        for (index_t i = 0; i < n; ++i) {
          auto [ga, gb] = bwd(g[i], pa[i], pb[i], po[i]);
          da[i] += ga;
          db[i] += gb;
        }
      } else if (da) {
#pragma omp parallel for simd if (n >= kParallelMin)
        for (index_t i = 0; i < n; ++i) da[i] += bwd(g[i], pa[i], pb[i], po[i]).a;
      } else if (db) {
#pragma omp parallel for simd if (n >= kParallelMin)
        for (index_t i = 0; i < n; ++i) db[i] += bwd(g[i], pa[i], pb[i], po[i]).b;
      }
      return;
    }
    index_t sa[Shape::kMaxRank], sb[Shape::kMaxRank];
    broadcast_strides(a.shape(), os, sa);
    broadcast_strides(b.shape(), os, sb);
    broadcast_for_each(os, sa, sb, [&](index_t i, index_t ia, index_t ib) {
      auto [ga, gb] = bwd(g[i], pa[ia], pb[ib], po[i]);
      if (da) da[ia] += ga;
      if (db) db[ib] += gb;
    });
  });
  return res;
}

// Record y = f(x) (already computed into `out`) with backward dx += df(x, y) * g.
template <class T, class Deriv> Var<T> push_unary(Tape<T>& t, const Var<T>& x, Tensor<T> out, Deriv deriv) {
  Var<T> res = t.push(std::move(out), x);
  t.on_backward(res, [x, res, deriv] {
    const T* g = res.grad().data();
    const T* px = x.value().data();
    const T* py = res.value().data();
    T* dx = x.grad().data();
    const index_t n = x.numel();
#pragma omp parallel if (n >= kParallelMin)
    {
      const Deriv d = deriv;  // see unary_op
#pragma omp for simd
      for (index_t i = 0; i < n; ++i) dx[i] += d(px[i], py[i]) * g[i];
    }
  });
  return res;
}

// out = f(x) elementwise, f a scalar function.
template <class T, class Fwd, class Deriv>
Var<T> unary_op(Tape<T>& t, const Arg<T>& x, Fwd fwd, Deriv deriv) {
  t.check(x, "elementwise op");
  Tensor<T> out = Tensor<T>::uninitialized(x.shape());
  const T* px = x.value().data();
  T* po = out.data();
  const index_t n = x.numel();
#pragma omp parallel if (n >= kParallelMin)
  {
    // A private copy per thread: read through the region's shared closure, a captured constant
    // (leaky_relu's slope) kept GCC from vectorizing, and the branchy scalar loop that remained
    // cost 2.4 ns an element (50x relu's time on random signs).
    const Fwd f = fwd;
#pragma omp for simd
    for (index_t i = 0; i < n; ++i) po[i] = f(px[i]);
  }
  return push_unary(t, x, std::move(out), deriv);
}

// out = f(x) with f an Eigen array expression (vectorized exp, tanh, log,
// logistic: libm's scalar calls were ~40% of a small MLP's step).
template <class T, class FwdArr, class Deriv>
Var<T> unary_op_arr(Tape<T>& t, const Arg<T>& x, FwdArr fwd, Deriv deriv) {
  t.check(x, "elementwise op");
  Tensor<T> out = Tensor<T>::uninitialized(x.shape());
  const index_t n = x.numel();
  using Map = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
  using CMap = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;
  constexpr index_t kChunk = 1 << 14;
#pragma omp parallel for if (n >= kParallelMin)
  for (index_t c = 0; c < n; c += kChunk) {
    const index_t len = std::min(kChunk, n - c);
    Map(out.data() + c, len) = fwd(CMap(x.value().data() + c, len));
  }
  return push_unary(t, x, std::move(out), deriv);
}

template <class T> struct Pair {
  T a, b;
};
}  // namespace detail

// ---- binary, broadcasting ------------------------------------------------------
template <class T> Var<T> add(Tape<T>& t, const Arg<T>& a, const Arg<T>& b) {
  return detail::binary_op(t, "add", a, b, [](T x, T y) { return x + y; },
                           [](T g, T, T, T) { return detail::Pair<T>{g, g}; });
}
template <class T> Var<T> sub(Tape<T>& t, const Arg<T>& a, const Arg<T>& b) {
  return detail::binary_op(t, "sub", a, b, [](T x, T y) { return x - y; },
                           [](T g, T, T, T) { return detail::Pair<T>{g, -g}; });
}
template <class T> Var<T> mul(Tape<T>& t, const Arg<T>& a, const Arg<T>& b) {
  return detail::binary_op(t, "mul", a, b, [](T x, T y) { return x * y; },
                           [](T g, T x, T y, T) { return detail::Pair<T>{g * y, g * x}; });
}
template <class T> Var<T> div(Tape<T>& t, const Arg<T>& a, const Arg<T>& b) {
  return detail::binary_op(t, "div", a, b, [](T x, T y) { return x / y; },
                           [](T g, T, T y, T o) { return detail::Pair<T>{g / y, -g * o / y}; });
}
// Elementwise maximum/minimum of two tensors; ties send the gradient to `a`.
template <class T> Var<T> maximum(Tape<T>& t, const Arg<T>& a, const Arg<T>& b) {
  return detail::binary_op(t, "maximum", a, b, [](T x, T y) { return x >= y ? x : y; },
                           [](T g, T x, T y, T) { return x >= y ? detail::Pair<T>{g, 0} : detail::Pair<T>{0, g}; });
}
template <class T> Var<T> minimum(Tape<T>& t, const Arg<T>& a, const Arg<T>& b) {
  return detail::binary_op(t, "minimum", a, b, [](T x, T y) { return x <= y ? x : y; },
                           [](T g, T x, T y, T) { return x <= y ? detail::Pair<T>{g, 0} : detail::Pair<T>{0, g}; });
}

// where(cond, a, b): a where cond != 0, else b. cond is a constant mask broadcast with a and b.
template <class T> Var<T> where(Tape<T>& t, const Tensor<T>& cond, const Arg<T>& a, const Arg<T>& b) {
  t.check(a, "where");
  t.check(b, "where");
  const Shape ab = broadcast_shapes(a.shape(), b.shape(), "where");
  const Shape os = broadcast_shapes(cond.shape(), ab, "where");
  // Broadcast a and b to the output, then select: two cheap binary ops keep the rule simple.
  Var<T> c = t.input(cond);
  Var<T> ca = detail::binary_op(t, "where", c, a, [](T m, T x) { return m != T(0) ? x : T(0); },
                                [](T g, T m, T, T) { return detail::Pair<T>{0, m != T(0) ? g : T(0)}; });
  Var<T> cb = detail::binary_op(t, "where", c, b, [](T m, T x) { return m != T(0) ? T(0) : x; },
                                [](T g, T m, T, T) { return detail::Pair<T>{0, m != T(0) ? T(0) : g}; });
  (void)os;
  return add(t, ca, cb);
}

// ---- with a scalar ---------------------------------------------------------------
template <class T> Var<T> add_scalar(Tape<T>& t, const Arg<T>& x, T s) {
  return detail::unary_op(t, x, [s](T v) { return v + s; }, [](T, T) { return T(1); });
}
template <class T> Var<T> mul_scalar(Tape<T>& t, const Arg<T>& x, T s) {
  return detail::unary_op(t, x, [s](T v) { return v * s; }, [s](T, T) { return s; });
}
// x^p for a scalar exponent p.
template <class T> Var<T> pow(Tape<T>& t, const Arg<T>& x, T p) {
  return detail::unary_op(t, x, [p](T v) { return std::pow(v, p); },
                          [p](T v, T) { return p * std::pow(v, p - T(1)); });
}

// ---- unary math --------------------------------------------------------------------
template <class T> Var<T> neg(Tape<T>& t, const Arg<T>& x) {
  return detail::unary_op(t, x, [](T v) { return -v; }, [](T, T) { return T(-1); });
}
template <class T> Var<T> exp(Tape<T>& t, const Arg<T>& x) {
  return detail::unary_op_arr(t, x, [](const auto& v) { return v.exp(); }, [](T, T y) { return y; });
}
template <class T> Var<T> log(Tape<T>& t, const Arg<T>& x) {
  return detail::unary_op_arr(t, x, [](const auto& v) { return v.log(); }, [](T v, T) { return T(1) / v; });
}
template <class T> Var<T> sqrt(Tape<T>& t, const Arg<T>& x) {
  return detail::unary_op(t, x, [](T v) { return std::sqrt(v); }, [](T, T y) { return T(0.5) / y; });
}
template <class T> Var<T> abs(Tape<T>& t, const Arg<T>& x) {
  return detail::unary_op(t, x, [](T v) { return std::abs(v); },
                          [](T v, T) { return v > T(0) ? T(1) : (v < T(0) ? T(-1) : T(0)); });
}
// Clamp to [lo, hi]; the gradient passes only inside the interval.
template <class T> Var<T> clamp(Tape<T>& t, const Arg<T>& x, T lo, T hi) {
  return detail::unary_op(t, x, [lo, hi](T v) { return v < lo ? lo : (v > hi ? hi : v); },
                          [lo, hi](T v, T) { return (v >= lo && v <= hi) ? T(1) : T(0); });
}

// ---- activations ---------------------------------------------------------------------
template <class T> Var<T> relu(Tape<T>& t, const Arg<T>& x) {
  return detail::unary_op(t, x, [](T v) { return v > T(0) ? v : T(0); },
                          [](T v, T) { return v > T(0) ? T(1) : T(0); });
}
template <class T> Var<T> leaky_relu(Tape<T>& t, const Arg<T>& x, T slope = T(0.01)) {
  return detail::unary_op(t, x, [slope](T v) { return v > T(0) ? v : slope * v; },
                          [slope](T v, T) { return v > T(0) ? T(1) : slope; });
}
template <class T> Var<T> elu(Tape<T>& t, const Arg<T>& x, T alpha = T(1)) {
  return detail::unary_op(t, x, [alpha](T v) { return v > T(0) ? v : alpha * (std::exp(v) - T(1)); },
                          [alpha](T v, T y) { return v > T(0) ? T(1) : y + alpha; });
}
template <class T> Var<T> sigmoid(Tape<T>& t, const Arg<T>& x) {
  return detail::unary_op_arr(t, x, [](const auto& v) { return v.logistic(); },
                              [](T, T y) { return y * (T(1) - y); });
}
template <class T> Var<T> tanh(Tape<T>& t, const Arg<T>& x) {
  return detail::unary_op_arr(t, x, [](const auto& v) { return v.tanh(); }, [](T, T y) { return T(1) - y * y; });
}
// softplus(x) = log(1 + e^x), computed without overflow for large |x|.
template <class T> Var<T> softplus(Tape<T>& t, const Arg<T>& x) {
  return detail::unary_op(t, x, [](T v) { return std::max(v, T(0)) + std::log1p(std::exp(-std::abs(v))); },
                          [](T v, T) { return T(1) / (T(1) + std::exp(-v)); });
}

enum class GeluForm { Erf, Tanh };
// GELU: x·Φ(x) exactly (erf form) or with the tanh approximation (GPT-2's).
template <class T> Var<T> gelu(Tape<T>& t, const Arg<T>& x, GeluForm form = GeluForm::Tanh) {
  static constexpr T kSqrt2OverPi = T(0.7978845608028654), kC = T(0.044715), kInvSqrt2 = T(0.7071067811865476),
              kInvSqrt2Pi = T(0.3989422804014327);
  // Both forms run as Eigen array expressions in chunks (vectorized erf/tanh/exp:
  // ~26x faster than scalar libm calls); backward recomputes Φ(x) or th.
  t.check(x, "gelu");
  Tensor<T> out = Tensor<T>::uninitialized(x.shape());
  const index_t n = x.numel();
  using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
  static constexpr index_t kChunk = 1 << 12;
#pragma omp parallel for if (n >= detail::kParallelMin)
  for (index_t c = 0; c < n; c += kChunk) {
    const index_t len = std::min(kChunk, n - c);
    Eigen::Map<const Arr> v(x.value().data() + c, len);
    if (form == GeluForm::Erf)
      Eigen::Map<Arr>(out.data() + c, len) = T(0.5) * v * (T(1) + (v * kInvSqrt2).erf());
    else
      Eigen::Map<Arr>(out.data() + c, len) = T(0.5) * v * (T(1) + (kSqrt2OverPi * (v + kC * v.cube())).tanh());
  }
  Var<T> res = t.push(std::move(out), x);
  t.on_backward(res, [x, res, form] {
    const index_t n = x.numel();
    // grad() allocates a gradient on first use: fetched here, once, never by two threads
    // at a time (each would allocate its own, and one thread's sums would be lost).
    T* dx = x.grad().data();
    const T* dy = res.grad().data();
#pragma omp parallel for if (n >= detail::kParallelMin)
    for (index_t c = 0; c < n; c += kChunk) {
      const index_t len = std::min(kChunk, n - c);
      Eigen::Map<const Arr> v(x.value().data() + c, len), g(dy + c, len);
      if (form == GeluForm::Erf) {  // Φ(x) + x·φ(x)
        Eigen::Map<Arr>(dx + c, len) +=
            g * (T(0.5) * (T(1) + (v * kInvSqrt2).erf()) + v * kInvSqrt2Pi * (T(-0.5) * v.square()).exp());
        continue;
      }
      const Arr th = (kSqrt2OverPi * (v + kC * v.cube())).tanh();
      const Arr du = kSqrt2OverPi * (T(1) + T(3) * kC * v.square());
      Eigen::Map<Arr>(dx + c, len) += g * (T(0.5) * (T(1) + th) + T(0.5) * v * (T(1) - th.square()) * du);
    }
  });
  return res;
}

}  // namespace marrow

/* Backward rules (g = upstream gradient, y = output):
   add      da += g               db += g                    (summed over broadcast dims)
   sub      da += g               db -= g
   mul      da += g·b             db += g·a
   div      da += g/b             db -= g·y/b
   maximum  to the larger input (ties: a)       where   to the selected input
   pow      dx += g·p·x^(p-1)     exp  dx += g·y      log  dx += g/x     sqrt dx += g/(2y)
   abs      dx += g·sign(x)       clamp dx += g·[lo ≤ x ≤ hi]
   relu     dx += g·[x>0]         leaky_relu dx += g·(x>0 ? 1 : slope)
   elu      dx += g·(x>0 ? 1 : y+α)            sigmoid dx += g·y(1−y)    tanh dx += g·(1−y²)
   softplus dx += g·σ(x)
   gelu erf dx += g·(Φ(x) + x·φ(x));  tanh form: g·(½(1+th) + ½x(1−th²)·√(2/π)(1+3·0.044715x²))
*/
