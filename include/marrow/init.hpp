#pragma once
// Parameter initializers, with torch.nn.init's names and formulas, so a model
// ported from PyTorch starts from the same distributions.
//
// Each fills a Tensor<T>& in place from an Rng& and returns it. Draws happen in
// index order, so the same seed gives the same weights on every machine.
// Fans follow PyTorch: a (out, in) matrix has fan_in = in, fan_out = out; a
// conv weight (O, C, kh, kw) has fan_in = C·kh·kw, fan_out = O·kh·kw (for a
// transposed conv weight (Cin, Cout, kh, kw) that makes fan_in = Cout·kh·kw,
// exactly PyTorch's quirk).
#include <Eigen/Core>
#include <Eigen/QR>
#include <algorithm>
#include <cmath>

#include "tensor.hpp"

namespace marrow {

enum class Nonlinearity { Linear, Conv, Sigmoid, Tanh, ReLU, LeakyReLU, SELU };
enum class FanMode { FanIn, FanOut };

struct Fans {
  index_t fan_in, fan_out;
};

// Fans of a weight of rank >= 2: dims 0 and 1 times the receptive field (the product of the rest).
inline Fans compute_fans(const Shape& s) {
  MARROW_CHECK(s.rank() >= 2, "init: fan in/out needs a weight of rank >= 2, got shape ", s.str());
  const index_t receptive = s.prod(2, s.rank());
  return {s[1] * receptive, s[0] * receptive};
}

// torch.nn.init.calculate_gain: the factor that keeps activations' variance
// steady through the nonlinearity. `param` is leaky_relu's negative slope.
inline double calculate_gain(Nonlinearity nl, double param = 0.01) {
  switch (nl) {
    case Nonlinearity::Linear:
    case Nonlinearity::Conv:
    case Nonlinearity::Sigmoid: return 1.0;
    case Nonlinearity::Tanh: return 5.0 / 3.0;
    case Nonlinearity::ReLU: return std::sqrt(2.0);
    case Nonlinearity::LeakyReLU: return std::sqrt(2.0 / (1.0 + param * param));
    case Nonlinearity::SELU: return 0.75;
  }
  return 1.0;
}

// ---- constants ------------------------------------------------------------------
template <class T> Tensor<T>& constant_(Tensor<T>& t, T value) { return t.fill(value); }
template <class T> Tensor<T>& zeros_(Tensor<T>& t) { return t.fill(T(0)); }
template <class T> Tensor<T>& ones_(Tensor<T>& t) { return t.fill(T(1)); }

// ---- plain distributions ----------------------------------------------------------
template <class T> Tensor<T>& uniform_(Tensor<T>& t, Rng& rng, double lo = 0.0, double hi = 1.0) {
  MARROW_CHECK(lo <= hi, "uniform_: lo ", lo, " > hi ", hi);
  for (auto& v : t) v = T(rng.uniform(lo, hi));
  return t;
}
template <class T> Tensor<T>& normal_(Tensor<T>& t, Rng& rng, double mean = 0.0, double stddev = 1.0) {
  MARROW_CHECK(stddev >= 0, "normal_: negative std ", stddev);
  for (auto& v : t) v = T(rng.normal(mean, stddev));
  return t;
}
// Normal(mean, std) redrawn until inside [lo, hi] (absolute bounds, like torch's
// trunc_normal_). Rejection keeps it exact; the bounds must hold some mass.
template <class T>
Tensor<T>& trunc_normal_(Tensor<T>& t, Rng& rng, double mean = 0.0, double stddev = 1.0, double lo = -2.0,
                         double hi = 2.0) {
  MARROW_CHECK(lo < hi && stddev > 0 && (hi - mean) / stddev > -5 && (lo - mean) / stddev < 5,
               "trunc_normal_: bounds [", lo, ", ", hi, "] hold almost no mass of N(", mean, ", ", stddev, "^2)");
  for (auto& v : t) {
    double x;
    do x = rng.normal(mean, stddev); while (x < lo || x > hi);
    v = T(x);
  }
  return t;
}

// ---- Glorot / He --------------------------------------------------------------------
// std = gain·√(2 / (fan_in + fan_out)); uniform on ±√3·std.
template <class T> Tensor<T>& xavier_uniform_(Tensor<T>& t, Rng& rng, double gain = 1.0) {
  const Fans f = compute_fans(t.shape());
  const double a = std::sqrt(3.0) * gain * std::sqrt(2.0 / double(f.fan_in + f.fan_out));
  return uniform_(t, rng, -a, a);
}
template <class T> Tensor<T>& xavier_normal_(Tensor<T>& t, Rng& rng, double gain = 1.0) {
  const Fans f = compute_fans(t.shape());
  return normal_(t, rng, 0.0, gain * std::sqrt(2.0 / double(f.fan_in + f.fan_out)));
}

namespace detail {
inline double kaiming_std(const Shape& s, double a, FanMode mode, Nonlinearity nl) {
  const Fans f = compute_fans(s);
  const index_t fan = mode == FanMode::FanIn ? f.fan_in : f.fan_out;
  MARROW_CHECK(fan > 0, "kaiming init: zero fan for shape ", s.str());
  return calculate_gain(nl, a) / std::sqrt(double(fan));
}
}  // namespace detail

// std = gain(nonlinearity, a) / √fan; uniform on ±√3·std. The defaults are
// PyTorch's; Linear and Conv layers use a = √5 (giving bound 1/√fan_in).
template <class T>
Tensor<T>& kaiming_uniform_(Tensor<T>& t, Rng& rng, double a = 0.0, FanMode mode = FanMode::FanIn,
                            Nonlinearity nl = Nonlinearity::LeakyReLU) {
  const double bound = std::sqrt(3.0) * detail::kaiming_std(t.shape(), a, mode, nl);
  return uniform_(t, rng, -bound, bound);
}
template <class T>
Tensor<T>& kaiming_normal_(Tensor<T>& t, Rng& rng, double a = 0.0, FanMode mode = FanMode::FanIn,
                           Nonlinearity nl = Nonlinearity::LeakyReLU) {
  return normal_(t, rng, 0.0, detail::kaiming_std(t.shape(), a, mode, nl));
}

// ---- orthogonal ---------------------------------------------------------------------
// A (semi-)orthogonal matrix of shape (dim 0, rest) scaled by gain: QR of a
// normal matrix, with Q's columns signed by diag(R) so the result is uniform
// over the orthogonal group (PyTorch's recipe). Wide matrices get orthonormal
// rows, tall ones orthonormal columns.
template <class T> Tensor<T>& orthogonal_(Tensor<T>& t, Rng& rng, double gain = 1.0) {
  MARROW_CHECK(t.ndim() >= 2, "orthogonal_: needs a tensor of rank >= 2, got shape ", t.shape().str());
  const index_t rows = t.dim(0), cols = t.numel() / std::max<index_t>(rows, 1);
  if (t.numel() == 0) return t;
  using Mat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic>;
  Mat a(rows, cols);
  for (index_t i = 0; i < rows; ++i)  // row-major draws: same order as normal_ on the flattened tensor
    for (index_t j = 0; j < cols; ++j) a(i, j) = rng.normal();
  const bool wide = rows < cols;
  if (wide) a.transposeInPlace();  // QR wants tall: (max, min)
  Eigen::HouseholderQR<Mat> qr(a);
  const index_t k = a.cols();
  Mat q = qr.householderQ() * Mat::Identity(a.rows(), k);  // thin Q
  const Mat r = qr.matrixQR().topRows(k).template triangularView<Eigen::Upper>();
  for (index_t j = 0; j < k; ++j)
    if (r(j, j) < 0) q.col(j) *= -1.0;  // sign(0) counts as + so no column is zeroed
  if (wide) q.transposeInPlace();
  for (index_t i = 0; i < rows; ++i)
    for (index_t j = 0; j < cols; ++j) t[i * cols + j] = T(gain * q(i, j));
  return t;
}

}  // namespace marrow
