#pragma once
// Neural-network ops with fused kernels: softmax, log_softmax, layer_norm,
// batch_norm, dropout. Each op: forward beside backward. Backward always
// accumulates (+=).
// Shape letters: softmax (outer, n, inner) around its axis; layer_norm (R rows, C);
// batch_norm (N, C, S) with S the flattened spatial dims (1 for (N, C) input).
#include <Eigen/Core>
#include <cmath>
#include <vector>

#include "../tape.hpp"
#include "running_stats.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace marrow {

namespace nn_detail {
inline constexpr index_t kNnParallelMin = 1 << 15;  // below this, threads cost more than they save

#ifdef _OPENMP
inline int nn_max_threads() { return omp_get_max_threads(); }
inline int nn_thread_num() { return omp_get_thread_num(); }
#else
inline int nn_max_threads() { return 1; }
inline int nn_thread_num() { return 0; }
#endif

// Unaligned array views: rows start anywhere inside a tensor (Eigen's exp is vectorized, std::exp is not).
template <class T> using ArrView = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T> using CArrView = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

inline int nn_axis(const Shape& s, int axis, const char* op) {
  const int a = axis < 0 ? axis + s.rank() : axis;
  MARROW_CHECK(a >= 0 && a < s.rank(), op, ": axis ", axis, " out of range for input ", s.str());
  return a;
}

// y = softmax or log_softmax of x over the middle dim of (outer, n, inner), max-shifted.
template <class T> void softmax_forward(const T* x, T* y, index_t outer, index_t n, index_t inner, bool log) {
  if (n == 0) return;
  const bool par = outer * n * inner >= kNnParallelMin && outer > 1;
  if (inner == 1) {  // rows: the common case (logits, attention scores)
#pragma omp parallel for if (par)
    for (index_t r = 0; r < outer; ++r) {
      CArrView<T> xr(x + r * n, n);
      ArrView<T> yr(y + r * n, n);
      const T m = xr.maxCoeff();
      if (log) {
        const T lse = std::log((xr - m).exp().sum());
        yr = (xr - m) - lse;  // (x − m) first: exact for close values, unlike x − (m + lse)
      } else {
        yr = (xr - m).exp();
        yr *= T(1) / yr.sum();
      }
    }
    return;
  }
  // Middle axis: sweep the n rows of each (n, inner) block, keeping per-column max and sum.
#pragma omp parallel if (par)
  {
    std::vector<T> m(static_cast<std::size_t>(inner)), s(static_cast<std::size_t>(inner));
#pragma omp for
    for (index_t o = 0; o < outer; ++o) {
      const T* xb = x + o * n * inner;
      T* yb = y + o * n * inner;
      ArrView<T> M(m.data(), inner), S(s.data(), inner);
      M = CArrView<T>(xb, inner);
      for (index_t k = 1; k < n; ++k) M = M.max(CArrView<T>(xb + k * inner, inner));
      S.setZero();
      for (index_t k = 0; k < n; ++k) {
        ArrView<T> yr(yb + k * inner, inner);
        yr = (CArrView<T>(xb + k * inner, inner) - M).exp();
        S += yr;
      }
      if (log) {
        S = S.log();
        for (index_t k = 0; k < n; ++k)
          ArrView<T>(yb + k * inner, inner) = (CArrView<T>(xb + k * inner, inner) - M) - S;
      } else {
        S = S.inverse();
        for (index_t k = 0; k < n; ++k) ArrView<T>(yb + k * inner, inner) *= S;
      }
    }
  }
}

// dx += backward of softmax (dx = y(g − Σ g·y)) or log_softmax (dx = g − e^y Σ g).
template <class T>
void softmax_backward(const T* g, const T* y, T* dx, index_t outer, index_t n, index_t inner, bool log) {
  if (n == 0) return;
  const bool par = outer * n * inner >= kNnParallelMin && outer > 1;
  if (inner == 1) {
#pragma omp parallel for if (par)
    for (index_t r = 0; r < outer; ++r) {
      CArrView<T> gr(g + r * n, n), yr(y + r * n, n);
      ArrView<T> dr(dx + r * n, n);
      if (log) dr += gr - yr.exp() * gr.sum();
      else dr += yr * (gr - (gr * yr).sum());
    }
    return;
  }
#pragma omp parallel if (par)
  {
    std::vector<T> acc(static_cast<std::size_t>(inner));
#pragma omp for
    for (index_t o = 0; o < outer; ++o) {
      const index_t base = o * n * inner;
      ArrView<T> A(acc.data(), inner);
      A.setZero();
      for (index_t k = 0; k < n; ++k) {
        CArrView<T> gr(g + base + k * inner, inner), yr(y + base + k * inner, inner);
        if (log) A += gr;
        else A += gr * yr;
      }
      for (index_t k = 0; k < n; ++k) {
        CArrView<T> gr(g + base + k * inner, inner), yr(y + base + k * inner, inner);
        ArrView<T> dr(dx + base + k * inner, inner);
        if (log) dr += gr - yr.exp() * A;
        else dr += yr * (gr - A);
      }
    }
  }
}

template <class T> Var<T> softmax_op(Tape<T>& t, const Arg<T>& x, int axis, bool log, const char* name) {
  t.check(x, name);
  const Shape& s = x.shape();
  const int a = nn_axis(s, axis, name);
  const index_t outer = s.prod(0, a), n = s[a], inner = s.prod(a + 1, s.rank());
  Tensor<T> out = Tensor<T>::uninitialized(s);
  softmax_forward(x.value().data(), out.data(), outer, n, inner, log);
  Var<T> res = t.push(std::move(out), x);
  t.on_backward(res, [x, res, outer, n, inner, log] {
    softmax_backward(res.grad().data(), res.value().data(), x.grad().data(), outer, n, inner, log);
  });
  return res;
}

// Push an op's output with whichever of weight and bias are present (push checks every input it gets).
template <class T> Var<T> push_affine(Tape<T>& t, Tensor<T> out, const Var<T>& x, const Var<T>& w, const Var<T>& b) {
  if (w.defined() && b.defined()) return t.push(std::move(out), x, w, b);
  if (w.defined()) return t.push(std::move(out), x, w);
  if (b.defined()) return t.push(std::move(out), x, b);
  return t.push(std::move(out), x);
}

inline void check_affine(const Shape& p, index_t C, const Shape& xs, const char* op, const char* what) {
  MARROW_CHECK(p.rank() == 1 && p[0] == C, op, ": ", what, " ", p.str(), " does not match the ", C,
               " features of input ", xs.str());
}
}  // namespace nn_detail

// ---- softmax / log_softmax ---------------------------------------------------------
template <class T> Var<T> softmax(Tape<T>& t, const Arg<T>& x, int axis = -1) {
  return nn_detail::softmax_op(t, x, axis, false, "softmax");
}
template <class T> Var<T> log_softmax(Tape<T>& t, const Arg<T>& x, int axis = -1) {
  return nn_detail::softmax_op(t, x, axis, true, "log_softmax");
}

// ---- layer_norm --------------------------------------------------------------------
// Normalize each row of x (..., C) over its last dim, then scale and shift by
// weight (C) and bias (C) when given (pass Var<T>() to skip either).
template <class T>
Var<T> layer_norm(Tape<T>& t, const Arg<T>& x, const Arg<T>& weight, const Arg<T>& bias, T eps = T(1e-5)) {
  t.check(x, "layer_norm");
  if (weight.defined()) t.check(weight, "layer_norm");
  if (bias.defined()) t.check(bias, "layer_norm");
  const Shape& s = x.shape();
  MARROW_CHECK(s.rank() >= 1 && s.dim(-1) > 0, "layer_norm: input ", s.str(), " needs a non-empty last dim");
  const index_t C = s.dim(-1), R = s.numel() / C;
  if (weight.defined()) nn_detail::check_affine(weight.shape(), C, s, "layer_norm", "weight");
  if (bias.defined()) nn_detail::check_affine(bias.shape(), C, s, "layer_norm", "bias");
  Tensor<T> out = Tensor<T>::uninitialized(s);
  // Per-row statistics for backward; x̂ is recomputed from them instead of stored (as llm.c does).
  std::vector<T> mean(static_cast<std::size_t>(R)), rstd(static_cast<std::size_t>(R));
  const T* px = x.value().data();
  const T* pw = weight.defined() ? weight.value().data() : nullptr;
  const T* pb = bias.defined() ? bias.value().data() : nullptr;
  T* py = out.data();
  const T invC = T(1) / T(C);
#pragma omp parallel for if (R * C >= nn_detail::kNnParallelMin)
  for (index_t r = 0; r < R; ++r) {
    const T* xr = px + r * C;
    T* yr = py + r * C;
    // Reductions through Eigen: gcc's `omp simd reduction` ends each row with a slow scalar
    // sweep over its lane buffer (it cost more than the arithmetic at C = 128).
    nn_detail::CArrView<T> xa(xr, C);
    const T mu = xa.sum() * invC;
    const T sq = (xa - mu).square().sum();  // two passes: E[(x−μ)²] stays accurate where E[x²]−μ² cancels
    const T rs = T(1) / std::sqrt(sq * invC + eps);
    mean[std::size_t(r)] = mu;
    rstd[std::size_t(r)] = rs;
    if (pw && pb) {
#pragma omp simd
      for (index_t j = 0; j < C; ++j) yr[j] = (xr[j] - mu) * rs * pw[j] + pb[j];
    } else if (pw) {
#pragma omp simd
      for (index_t j = 0; j < C; ++j) yr[j] = (xr[j] - mu) * rs * pw[j];
    } else if (pb) {
#pragma omp simd
      for (index_t j = 0; j < C; ++j) yr[j] = (xr[j] - mu) * rs + pb[j];
    } else {
#pragma omp simd
      for (index_t j = 0; j < C; ++j) yr[j] = (xr[j] - mu) * rs;
    }
  }
  Var<T> res = nn_detail::push_affine(t, std::move(out), x, weight, bias);
  t.on_backward(res, [x, weight, bias, res, mean = std::move(mean), rstd = std::move(rstd), R, C] {
    const T* g = res.grad().data();
    const T* px = x.value().data();
    const T* pw = weight.defined() ? weight.value().data() : nullptr;
    T* dx = x.requires_grad() ? x.grad().data() : nullptr;
    T* dw = weight.defined() && weight.requires_grad() ? weight.grad().data() : nullptr;
    T* db = bias.defined() && bias.requires_grad() ? bias.grad().data() : nullptr;
    const T invC = T(1) / T(C);
    const bool par = R * C >= nn_detail::kNnParallelMin;
    // dweight/dbias sum over rows: each thread keeps its own partial sums, added in
    // thread order afterwards so the result is the same on every run.
    const int nthreads = par ? nn_detail::nn_max_threads() : 1;
    std::vector<T> part((dw || db) ? std::size_t(nthreads) * std::size_t(2 * C) : 0, T(0));
#pragma omp parallel if (par) num_threads(nthreads)
    {
      T* pdw = part.empty() ? nullptr : part.data() + std::size_t(nn_detail::nn_thread_num()) * std::size_t(2 * C);
      T* pdb = pdw ? pdw + C : nullptr;
#pragma omp for schedule(static)
      for (index_t r = 0; r < R; ++r) {
        const T* xr = px + r * C;
        const T* gr = g + r * C;
        const T mu = mean[std::size_t(r)], rs = rstd[std::size_t(r)];
        if (dx) {
          // s1 = mean(ĝ), s2 = mean(ĝ·x̂), with ĝ = g·w
          nn_detail::CArrView<T> ga(gr, C), xa(xr, C);
          T s1, s2;
          if (pw) {
            nn_detail::CArrView<T> wa(pw, C);
            s1 = (ga * wa).sum() * invC;
            s2 = (ga * wa * (xa - mu)).sum() * rs * invC;
          } else {
            s1 = ga.sum() * invC;
            s2 = (ga * (xa - mu)).sum() * rs * invC;
          }
          T* dr = dx + r * C;
          if (pw) {
#pragma omp simd
            for (index_t j = 0; j < C; ++j) dr[j] += rs * (gr[j] * pw[j] - s1 - (xr[j] - mu) * rs * s2);
          } else {
#pragma omp simd
            for (index_t j = 0; j < C; ++j) dr[j] += rs * (gr[j] - s1 - (xr[j] - mu) * rs * s2);
          }
        }
        if (dw) {
#pragma omp simd
          for (index_t j = 0; j < C; ++j) pdw[j] += gr[j] * (xr[j] - mu) * rs;
        }
        if (db) {
#pragma omp simd
          for (index_t j = 0; j < C; ++j) pdb[j] += gr[j];
        }
      }
    }
    for (int th = 0; th < nthreads && !part.empty(); ++th) {
      const T* p = part.data() + std::size_t(th) * std::size_t(2 * C);
      if (dw)
        for (index_t j = 0; j < C; ++j) dw[j] += p[j];
      if (db)
        for (index_t j = 0; j < C; ++j) db[j] += p[C + j];
    }
  });
  return res;
}

// ---- batch_norm --------------------------------------------------------------------
namespace nn_detail {
// The kernels below take raw pointers and spell out their loops: the same loops written
// as lambdas over a flat index compiled to gathers under `omp simd` (backward ran 6x slower).

// Per-channel sums over an (N, C, S) layout, added to out[c] in double:
// kDot false: Σ a;  kDot true: Σ (a − ma[c])·(b − mb[c]).
template <bool kDot, class T>
void bn_reduce(const T* a, const T* ma, const T* b, const T* mb, index_t N, index_t C, index_t S, double* out,
               bool par) {
  if (S == 1) {  // (N, C): channels are contiguous, so vectorize across them
    for (index_t n = 0; n < N; ++n) {
      const T* ar = a + n * C;
      const T* br = kDot ? b + n * C : nullptr;
#pragma omp simd
      for (index_t c = 0; c < C; ++c) {
        if constexpr (kDot) out[c] += double((ar[c] - ma[c]) * (br[c] - mb[c]));
        else out[c] += double(ar[c]);
      }
    }
    return;
  }
#pragma omp parallel for if (par)
  for (index_t c = 0; c < C; ++c) {
    double acc = 0;
    for (index_t n = 0; n < N; ++n) {
      const T* ap = a + (n * C + c) * S;
      // One plane summed in T by Eigen keeps the loop SIMD-wide; planes add up in double.
      if constexpr (kDot)
        acc += double(((CArrView<T>(ap, S) - ma[c]) * (CArrView<T>(b + (n * C + c) * S, S) - mb[c])).sum());
      else
        acc += double(CArrView<T>(ap, S).sum());
    }
    out[c] += acc;
  }
}

enum class BnPass { Forward, ForwardRelu, EvalBackward, TrainBackward };
// Forward:       y  = x·A + B
// ForwardRelu:   y  = max(x·A + B, 0)
// EvalBackward:  y += x·A                          (x = upstream gradient)
// TrainBackward: y += A·(x − B − (z − M)·K)        (x = upstream gradient, z = input)
template <BnPass kPass, class T>
void bn_apply(const T* x, const T* z, const T* A, const T* B, const T* M, const T* K, T* y, index_t N, index_t C,
              index_t S, bool par) {
  auto run = [&](index_t off, index_t len, index_t c0, index_t cstep) {
    // len entries from flat offset off; the channel is c0 + j·cstep
    const T* xp = x + off;
    T* yp = y + off;
    [[maybe_unused]] const T* zp = kPass == BnPass::TrainBackward ? z + off : nullptr;
    if (cstep == 0) {  // one channel: per-channel values are scalars
      const T a = A[c0];
      [[maybe_unused]] const T b = kPass == BnPass::EvalBackward ? T(0) : B[c0];
      [[maybe_unused]] const T m = kPass == BnPass::TrainBackward ? M[c0] : T(0);
      [[maybe_unused]] const T k = kPass == BnPass::TrainBackward ? K[c0] : T(0);
#pragma omp simd
      for (index_t j = 0; j < len; ++j) {
        if constexpr (kPass == BnPass::Forward) yp[j] = xp[j] * a + b;
        else if constexpr (kPass == BnPass::ForwardRelu) { const T v = xp[j] * a + b; yp[j] = v > T(0) ? v : T(0); }  // relu's own rule
        else if constexpr (kPass == BnPass::EvalBackward) yp[j] += xp[j] * a;
        else yp[j] += a * (xp[j] - b - (zp[j] - m) * k);
      }
    } else {  // a row of an (N, C) input: every entry its own channel
#pragma omp simd
      for (index_t j = 0; j < len; ++j) {
        if constexpr (kPass == BnPass::Forward) yp[j] = xp[j] * A[j] + B[j];
        else if constexpr (kPass == BnPass::ForwardRelu) { const T v = xp[j] * A[j] + B[j]; yp[j] = v > T(0) ? v : T(0); }
        else if constexpr (kPass == BnPass::EvalBackward) yp[j] += xp[j] * A[j];
        else yp[j] += A[j] * (xp[j] - B[j] - (zp[j] - M[j]) * K[j]);
      }
    }
  };
  if (S == 1) {
#pragma omp parallel for if (par)
    for (index_t n = 0; n < N; ++n) run(n * C, C, 0, 1);
    return;
  }
#pragma omp parallel for if (par)
  for (index_t p = 0; p < N * C; ++p) run(p * S, S, p % C, 0);
}
}  // namespace nn_detail

namespace nn_detail {
// batch_norm, followed by a ReLU when relu is set (batch_norm_relu: one pass over the
// output instead of three, and no gradient buffer between the two).
template <class T>
Var<T> batch_norm_impl(bool relu, Tape<T>& t, const Arg<T>& x, const Arg<T>& weight, const Arg<T>& bias,
                       Tensor<T>& running_mean, Tensor<T>& running_var, bool training, T momentum, T eps) {
  const char* op = relu ? "batch_norm_relu" : "batch_norm";  // errors name the op the caller used
  t.check(x, op);
  if (weight.defined()) t.check(weight, op);
  if (bias.defined()) t.check(bias, op);
  const Shape& xs = x.shape();
  MARROW_CHECK(xs.rank() >= 2, op, ": input ", xs.str(), " must be (N, C) or (N, C, H, W)");
  const index_t N = xs[0], C = xs[1], S = xs.prod(2, xs.rank()), cnt = N * S;
  if (weight.defined()) check_affine(weight.shape(), C, xs, op, "weight");
  if (bias.defined()) check_affine(bias.shape(), C, xs, op, "bias");
  check_affine(running_mean.shape(), C, xs, op, "running_mean");
  check_affine(running_var.shape(), C, xs, op, "running_var");
  if (training) MARROW_CHECK(cnt > 1, op, ": training needs more than 1 value per channel, input ", xs.str());
  const bool par = xs.numel() >= kNnParallelMin;
  const std::size_t nc = static_cast<std::size_t>(C);
  const T* px = x.value().data();
  std::vector<T> mean(nc), rstd(nc);
  if (training) {
    std::vector<double> acc(nc, 0.0);
    bn_reduce<false, T>(px, nullptr, nullptr, nullptr, N, C, S, acc.data(), par);
    for (std::size_t c = 0; c < nc; ++c) mean[c] = T(acc[c] / double(cnt));
    std::fill(acc.begin(), acc.end(), 0.0);
    bn_reduce<true, T>(px, mean.data(), px, mean.data(), N, C, S, acc.data(), par);  // Σ (x − μ)²
    std::vector<T> var_unbiased(nc);
    for (std::size_t c = 0; c < nc; ++c) {
      const double var = acc[c] / double(cnt);
      rstd[c] = T(1.0 / std::sqrt(var + double(eps)));
      var_unbiased[c] = T(var * double(cnt) / double(cnt - 1));
    }
    if (RunningStatsLog<T>* log = running_stats_log<T>())
      log->record(running_mean.data(), running_var.data(), mean.data(), var_unbiased.data(), C, momentum);
    update_running_stats(running_mean.data(), running_var.data(), mean.data(), var_unbiased.data(), C, momentum);
  } else {
    for (std::size_t c = 0; c < nc; ++c) {
      mean[c] = running_mean.data()[c];
      rstd[c] = T(1) / std::sqrt(running_var.data()[c] + eps);
    }
  }
  // y = x·a + b' per channel, a = rstd·w, b' = bias − μ·a: one multiply-add per element.
  std::vector<T> scale(nc), shift(nc);
  for (std::size_t c = 0; c < nc; ++c) {
    const T w = weight.defined() ? weight.value().data()[c] : T(1);
    const T b = bias.defined() ? bias.value().data()[c] : T(0);
    scale[c] = rstd[c] * w;
    shift[c] = b - mean[c] * scale[c];
  }
  Tensor<T> out = Tensor<T>::uninitialized(xs);
  const T* none = nullptr;
  if (relu) bn_apply<BnPass::ForwardRelu>(px, none, scale.data(), shift.data(), none, none, out.data(), N, C, S, par);
  else bn_apply<BnPass::Forward>(px, none, scale.data(), shift.data(), none, none, out.data(), N, C, S, par);
  Var<T> res = push_affine(t, std::move(out), x, weight, bias);
  t.on_backward(res, [x, weight, bias, res, mean = std::move(mean), rstd = std::move(rstd),
                      scale = std::move(scale), training, relu, N, C, S, cnt, par] {
    const std::size_t nc = static_cast<std::size_t>(C);
    const T* g = res.grad().data();
    const T* px = x.value().data();
    Tensor<T> masked;  // ReLU's backward first: g where the output is positive, else 0
    if (relu) {
      masked = Tensor<T>::uninitialized(res.shape());
      masked.arr() = (res.value().arr() > T(0)).select(res.grad().arr(), T(0));
      g = masked.data();
    }
    // Σ g and Σ g·(x − μ) per channel: the weight/bias gradients, and the statistics' share of dx.
    std::vector<T> zero(nc, T(0));
    std::vector<double> sg(nc, 0.0), sgx(nc, 0.0);
    bn_reduce<false, T>(g, nullptr, nullptr, nullptr, N, C, S, sg.data(), par);
    bn_reduce<true, T>(g, zero.data(), px, mean.data(), N, C, S, sgx.data(), par);
    if (weight.defined() && weight.requires_grad()) {
      T* dw = weight.grad().data();
      for (std::size_t c = 0; c < nc; ++c) dw[c] += T(sgx[c] * double(rstd[c]));  // Σ g·x̂
    }
    if (bias.defined() && bias.requires_grad()) {
      T* db = bias.grad().data();
      for (std::size_t c = 0; c < nc; ++c) db[c] += T(sg[c]);
    }
    if (!x.requires_grad()) return;
    T* dx = x.grad().data();
    if (!training) {
      const T* none = nullptr;
      bn_apply<BnPass::EvalBackward>(g, none, scale.data(), none, none, none, dx, N, C, S, par);
      return;
    }
    // dx = a·(g − mean(g) − (x − μ)·rstd²·mean(g·(x − μ))), means over the channel's N·S values.
    std::vector<T> mg(nc), k(nc);
    for (std::size_t c = 0; c < nc; ++c) {
      mg[c] = T(sg[c] / double(cnt));
      k[c] = T(sgx[c] / double(cnt) * double(rstd[c]) * double(rstd[c]));
    }
    bn_apply<BnPass::TrainBackward>(g, px, scale.data(), mg.data(), mean.data(), k.data(), dx, N, C, S, par);
  });
  return res;
}
}  // namespace nn_detail

// x: (N, C) or (N, C, H, W) (any (N, C, ...)), normalized per channel (axis 1).
// Training: batch statistics (biased variance), running stats updated in place with
// PyTorch's rule (running_var from the unbiased variance), gradient flows through the
// statistics. Eval: running statistics, a fixed affine map. weight/bias (C) optional.
template <class T>
Var<T> batch_norm(Tape<T>& t, const Arg<T>& x, const Arg<T>& weight, const Arg<T>& bias, Tensor<T>& running_mean,
                  Tensor<T>& running_var, bool training, T momentum = T(0.1), T eps = T(1e-5)) {
  return nn_detail::batch_norm_impl(false, t, x, weight, bias, running_mean, running_var, training, momentum, eps);
}

// relu(batch_norm(...)) as one op, with the same values and gradients (the conv → BN → ReLU
// blocks of the colorizer, U-Net, DCGAN's G and LeNet).
template <class T>
Var<T> batch_norm_relu(Tape<T>& t, const Arg<T>& x, const Arg<T>& weight, const Arg<T>& bias, Tensor<T>& running_mean,
                       Tensor<T>& running_var, bool training, T momentum = T(0.1), T eps = T(1e-5)) {
  return nn_detail::batch_norm_impl(true, t, x, weight, bias, running_mean, running_var, training, momentum, eps);
}

// ---- dropout -----------------------------------------------------------------------
// Inverted dropout: zero each entry with probability p and scale the rest by 1/(1−p),
// so eval needs no rescaling. The mask is drawn from rng in index order (the same
// mask for a seed on any thread count). Eval or p == 0 returns x itself.
template <class T> Var<T> dropout(Tape<T>& t, const Arg<T>& x, T p, bool training, Rng& rng) {
  t.check(x, "dropout");
  MARROW_CHECK(p >= T(0) && p < T(1), "dropout: p = ", p, " must be in [0, 1) (input ", x.shape().str(), ")");
  if (!training || p == T(0)) return x;
  const index_t n = x.numel();
  const T keep_scale = T(1) / (T(1) - p);
  Tensor<T> mask = Tensor<T>::uninitialized(x.shape());  // 0 or 1/(1−p): backward is one multiply
  T* pm = mask.data();
  for (index_t i = 0; i < n; ++i) pm[i] = rng.uniform() < double(p) ? T(0) : keep_scale;
  Tensor<T> out = Tensor<T>::uninitialized(x.shape());
  out.arr() = x.value().arr() * mask.arr();
  Var<T> res = t.push(std::move(out), x);
  t.on_backward(res, [x, res, mask = std::move(mask)] { x.grad().arr() += res.grad().arr() * mask.arr(); });
  return res;
}

}  // namespace marrow

/* Backward rules (g = upstream gradient, y = output, sums over the normalized axis):
   softmax      dx += y ⊙ (g − Σ g·y)
   log_softmax  dx += g − exp(y) ⊙ Σ g
   layer_norm   x̂ = (x − μ)·rstd, ĝ = g ⊙ w
                dx += rstd ⊙ (ĝ − mean(ĝ) − x̂ ⊙ mean(ĝ ⊙ x̂))      (per row)
                dw += Σ_rows g ⊙ x̂      db += Σ_rows g
   batch_norm   train: dx += rstd·w ⊙ (g − mean(g) − x̂ ⊙ mean(g ⊙ x̂))   (per channel over N·H·W)
                eval:  dx += rstd·w ⊙ g                                 (running stats are constants)
                dw += Σ g ⊙ x̂       db += Σ g
                batch_norm_relu: the same with g ⊙ [y > 0] for g
   dropout      dx += g ⊙ mask,  mask ∈ {0, 1/(1−p)}
*/
