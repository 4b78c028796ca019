#pragma once
// Reductions over any set of axes: sum, mean, max, var, logsumexp.
// `axes` empty means every axis; keepdim keeps reduced axes as size 1.
#include <cmath>
#include <limits>
#include <vector>

#include "../tape.hpp"
#include "broadcast.hpp"
#include "elementwise.hpp"

namespace marrow {

namespace detail {
// The reduction's geometry: output shapes, and the map from input to output index.
struct ReducePlan {
  Shape in, kept, out;   // kept: reduced axes as 1 (the broadcastable form)
  index_t count = 1;     // elements folded into each output
  index_t stride[Shape::kMaxRank];  // per input axis: stride into `kept`, 0 on reduced axes
};

inline ReducePlan reduce_plan(const Shape& in, const std::vector<int>& axes, bool keepdim, const char* op) {
  ReducePlan p;
  p.in = in;
  bool red[Shape::kMaxRank] = {};
  if (axes.empty())
    for (int i = 0; i < in.rank(); ++i) red[i] = true;
  for (int a : axes) {
    MARROW_CHECK(a >= -in.rank() && a < in.rank(), op, ": axis ", a, " out of range for shape ", in.str());
    red[a < 0 ? a + in.rank() : a] = true;
  }
  for (int i = 0; i < in.rank(); ++i) {
    p.kept.push_back(red[i] ? 1 : in[i]);
    if (red[i]) p.count *= in[i];
    else p.out.push_back(in[i]);
  }
  if (keepdim) p.out = p.kept;
  broadcast_strides(p.kept, in, p.stride);
  return p;
}

// fn(i_in, i_out) for every input element.
template <class F> void reduce_for_each(const ReducePlan& p, F&& fn) {
  index_t zero[Shape::kMaxRank] = {};
  broadcast_for_each(p.in, p.stride, zero, [&](index_t i, index_t o, index_t) { fn(i, o); });
}
}  // namespace detail

template <class T> Var<T> sum(Tape<T>& t, const Arg<T>& x, std::vector<int> axes = {}, bool keepdim = false) {
  t.check(x, "sum");
  auto p = detail::reduce_plan(x.shape(), axes, keepdim, "sum");
  Tensor<T> out(p.out);
  const T* px = x.value().data();
  T* po = out.data();
  if (p.out.numel() == 1) {  // full reduction: a straight vectorized sum
    po[0] = x.value().arr().sum();
  } else {
    detail::reduce_for_each(p, [&](index_t i, index_t o) { po[o] += px[i]; });
  }
  Var<T> res = t.push(std::move(out), x);
  t.on_backward(res, [x, res, p] {
    const T* g = res.grad().data();
    T* dx = x.grad().data();
    if (p.out.numel() == 1) {
      x.grad().arr() += g[0];
      return;
    }
    detail::reduce_for_each(p, [&](index_t i, index_t o) { dx[i] += g[o]; });
  });
  return res;
}

template <class T> Var<T> mean(Tape<T>& t, const Arg<T>& x, std::vector<int> axes = {}, bool keepdim = false) {
  auto p = detail::reduce_plan(x.shape(), axes, keepdim, "mean");
  MARROW_CHECK(p.count > 0, "mean: reducing an empty axis of ", x.shape().str());
  return mul_scalar(t, sum(t, x, axes, keepdim), T(1) / T(p.count));
}

// Max over axes; the gradient goes to the first argmax of each reduced group.
template <class T> Var<T> max(Tape<T>& t, const Arg<T>& x, std::vector<int> axes = {}, bool keepdim = false) {
  t.check(x, "max");
  auto p = detail::reduce_plan(x.shape(), axes, keepdim, "max");
  MARROW_CHECK(p.count > 0, "max: reducing an empty axis of ", x.shape().str());
  Tensor<T> out = full<T>(p.out, -std::numeric_limits<T>::infinity());
  std::vector<index_t> arg(std::size_t(p.out.numel()), -1);
  const T* px = x.value().data();
  T* po = out.data();
  detail::reduce_for_each(p, [&](index_t i, index_t o) {
    if (px[i] > po[o] || arg[o] < 0) {
      po[o] = px[i];
      arg[o] = i;
    }
  });
  Var<T> res = t.push(std::move(out), x);
  t.on_backward(res, [x, res, arg = std::move(arg)] {
    const T* g = res.grad().data();
    T* dx = x.grad().data();
    for (std::size_t o = 0; o < arg.size(); ++o) dx[arg[o]] += g[o];
  });
  return res;
}

// Variance over axes with `correction` (0: population, 1: unbiased).
template <class T>
Var<T> var(Tape<T>& t, const Arg<T>& x, std::vector<int> axes = {}, bool keepdim = false, int correction = 1) {
  t.check(x, "var");
  auto p = detail::reduce_plan(x.shape(), axes, keepdim, "var");
  MARROW_CHECK(p.count - correction > 0, "var: ", p.count, " elements per group with correction ", correction);
  std::vector<T> mu(std::size_t(p.out.numel()), T(0));
  const T* px = x.value().data();
  detail::reduce_for_each(p, [&](index_t i, index_t o) { mu[o] += px[i]; });
  for (auto& m : mu) m /= T(p.count);
  Tensor<T> out(p.out);
  T* po = out.data();
  detail::reduce_for_each(p, [&](index_t i, index_t o) {
    const T d = px[i] - mu[o];
    po[o] += d * d;
  });
  const T denom = T(p.count - correction);
  for (index_t o = 0; o < p.out.numel(); ++o) po[o] /= denom;
  Var<T> res = t.push(std::move(out), x);
  t.on_backward(res, [x, res, p, mu = std::move(mu), denom] {
    const T* g = res.grad().data();
    const T* px = x.value().data();
    T* dx = x.grad().data();
    detail::reduce_for_each(p, [&](index_t i, index_t o) { dx[i] += g[o] * T(2) * (px[i] - mu[o]) / denom; });
  });
  return res;
}

// log Σ exp(x) over axes, shifted by the max so it never overflows.
template <class T>
Var<T> logsumexp(Tape<T>& t, const Arg<T>& x, std::vector<int> axes = {}, bool keepdim = false) {
  t.check(x, "logsumexp");
  auto p = detail::reduce_plan(x.shape(), axes, keepdim, "logsumexp");
  MARROW_CHECK(p.count > 0, "logsumexp: reducing an empty axis of ", x.shape().str());
  const index_t no = p.out.numel();
  std::vector<T> m(std::size_t(no), -std::numeric_limits<T>::infinity());
  const T* px = x.value().data();
  detail::reduce_for_each(p, [&](index_t i, index_t o) { m[o] = std::max(m[o], px[i]); });
  Tensor<T> out(p.out);
  T* po = out.data();
  detail::reduce_for_each(p, [&](index_t i, index_t o) { po[o] += std::exp(px[i] - m[o]); });
  for (index_t o = 0; o < no; ++o) po[o] = std::isinf(m[o]) ? m[o] : m[o] + std::log(po[o]);
  Var<T> res = t.push(std::move(out), x);
  t.on_backward(res, [x, res, p] {
    const T* g = res.grad().data();
    const T* px = x.value().data();
    const T* py = res.value().data();
    T* dx = x.grad().data();
    detail::reduce_for_each(p, [&](index_t i, index_t o) { dx[i] += g[o] * std::exp(px[i] - py[o]); });
  });
  return res;
}

}  // namespace marrow

/* Backward rules (g broadcast back over the reduced axes):
   sum        dx += g
   mean       dx += g / count
   max        dx[argmax] += g              (first maximum of each group)
   var        dx += g · 2(x − μ) / (count − correction)
   logsumexp  dx += g · exp(x − y)         (= g · softmax(x))
*/
