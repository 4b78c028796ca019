#pragma once
// Loss functions with PyTorch's semantics: cross_entropy (fused log-softmax +
// NLL), bce_with_logits, mse, l1, smooth_l1, soft_dice_loss; and
// soft_cross_entropy against sparse soft targets (Zhang et al.'s colorization loss).
// Each returns a scalar Var, or per-element losses with Reduction::None.
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "ops/broadcast.hpp"
#include "ops/elementwise.hpp"
#include "tape.hpp"

namespace marrow {

enum class Reduction { Mean, Sum, None };

template <class T> struct CrossEntropyOptions {
  int ignore_index = -100;                   // targets equal to this add no loss and no count
  const Tensor<T>* class_weights = nullptr;  // (C): rescales each class's loss
  const Tensor<T>* pixel_weights = nullptr;  // target's shape: multiplies each element's loss (U-Net weight map)
  T label_smoothing = 0;                     // ε: target = (1 − ε)·one_hot + ε/C
  Reduction reduction = Reduction::Mean;
};

namespace detail {
// "[1, 2, 3]": the multi-index of flat position i in shape s, for error messages.
inline std::string target_position_str(const Shape& s, index_t i) {
  std::vector<index_t> idx(std::size_t(s.rank()));
  for (int d = s.rank() - 1; d >= 0; --d) {
    idx[std::size_t(d)] = s[d] ? i % s[d] : 0;
    i = s[d] ? i / s[d] : 0;
  }
  std::string r = "[";
  for (std::size_t d = 0; d < idx.size(); ++d) r += (d ? ", " : "") + std::to_string(idx[d]);
  return r + "]";
}

inline void check_class_targets(const char* op, const Tensor<std::int32_t>& target, index_t C, int ignore_index) {
  const std::int32_t* y = target.data();
  const index_t n = target.numel();
  index_t bad = 0;  // a branch-free count first: the common all-valid case stays one vector pass
#pragma omp simd reduction(+ : bad)
  for (index_t i = 0; i < n; ++i) bad += (y[i] != ignore_index) & (std::uint32_t(y[i]) >= std::uint64_t(C));
  if (bad == 0) return;
  for (index_t i = 0; i < n; ++i)
    MARROW_CHECK(y[i] == ignore_index || (y[i] >= 0 && y[i] < C), op, ": target ", y[i], " at position ",
                 target_position_str(target.shape(), i), " is out of range for ", C, " classes (ignore_index ",
                 ignore_index, ")");
}

// Target shape for class-axis-1 logits: logits with axis 1 removed.
inline Shape class_target_shape(const Shape& logits) {
  Shape s = logits;
  s.erase(1);
  return s;
}

// The scalar (or per-element) output of an elementwise loss, given the per-element values.
template <class T> Tensor<T> reduce_loss(Tensor<T> per_elem, Reduction r) {
  if (r == Reduction::None) return per_elem;
  Tensor<T> out = Tensor<T>::uninitialized(Shape{});
  const T s = per_elem.numel() ? per_elem.arr().sum() : T(0);
  out[0] = r == Reduction::Sum ? s : s / T(per_elem.numel());  // Mean of nothing is NaN, as in PyTorch
  return out;
}

// d(output)/d(element i) factor: the upstream gradient spread back over the elements.
template <class T> struct LossGrad {
  const T* g;
  T scale;
  bool per_elem;
  T operator()(index_t i) const { return per_elem ? g[i] : g[0] * scale; }
};
template <class T> LossGrad<T> loss_grad(const Var<T>& res, Reduction r, index_t n) {
  return {res.grad().data(), r == Reduction::Mean ? T(1) / T(n) : T(1), r == Reduction::None};
}

// An elementwise loss f(a, b) of two same-shape inputs. df gives ∂f/∂a; the
// losses here depend on a − b only, so ∂f/∂b = −∂f/∂a.
template <class T, class F, class DF>
Var<T> difference_loss(Tape<T>& t, const char* name, const Var<T>& a, const Var<T>& b, Reduction r, F f, DF df) {
  t.check(a, name);
  t.check(b, name);
  MARROW_CHECK(a.shape() == b.shape(), name, ": input ", a.shape().str(), " and target ", b.shape().str(),
               " differ in shape");
  const index_t n = a.numel();
  Tensor<T> per = Tensor<T>::uninitialized(a.shape());
  const T* pa = a.value().data();
  const T* pb = b.value().data();
  T* pl = per.data();
#pragma omp parallel if (n >= kParallelMin)
  {
    const F fp = f;  // a private copy vectorizes (see ops/elementwise.hpp unary_op)
#pragma omp for simd
    for (index_t i = 0; i < n; ++i) pl[i] = fp(pa[i] - pb[i]);
  }
  Var<T> res = t.push(reduce_loss(std::move(per), r), a, b);
  t.on_backward(res, [a, b, res, r, n, df] {
    const auto g = loss_grad(res, r, n);
    const T* pa = a.value().data();
    const T* pb = b.value().data();
    T* da = a.requires_grad() ? a.grad().data() : nullptr;
    T* db = b.requires_grad() ? b.grad().data() : nullptr;
    // one loop per input: a null-pointer test inside a vectorized loop costs masked-load assists
#pragma omp parallel if (n >= kParallelMin)
    {
      const DF d = df;
      const auto gi = g;
      if (da)
#pragma omp for simd
        for (index_t i = 0; i < n; ++i) da[i] += d(pa[i] - pb[i]) * gi(i);
      if (db)
#pragma omp for simd
        for (index_t i = 0; i < n; ++i) db[i] -= d(pa[i] - pb[i]) * gi(i);
    }
  });
  return res;
}
}  // namespace detail

// ---- cross entropy ----------------------------------------------------------------
// logits (N, C) with target (N), or (N, C, d1, ...) with target (N, d1, ...): class axis 1.
// Per element i with target y (not ignored), w = class weights (1 if none), ε = label_smoothing:
//   loss_i = pw_i · [ (1 − ε)·w_y·(−log p_y) + (ε/C)·Σ_c w_c·(−log p_c) ]
// Mean divides the sum by Σ_i w_{y_i} over non-ignored elements (their count
// without class weights), exactly PyTorch's normalizer; the pixel weight map
// pw does NOT enter it, so a weight map scales the loss rather than being
// renormalized away (pw ≡ 1 gives PyTorch's value). All targets ignored with
// Mean gives NaN (0/0, as PyTorch) and zero gradients.
template <class T>
Var<T> cross_entropy(Tape<T>& t, const Arg<T>& logits, const Tensor<std::int32_t>& target,
                     const CrossEntropyOptions<T>& opt = {}) {
  using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
  using CArrMap = Eigen::Map<const Arr>;
  t.check(logits, "cross_entropy");
  MARROW_CHECK(logits.ndim() >= 2, "cross_entropy: logits must be (N, C) or (N, C, ...), got ", logits.shape().str());
  const Shape ts = detail::class_target_shape(logits.shape());
  MARROW_CHECK(target.shape() == ts, "cross_entropy: target ", target.shape().str(), " does not match logits ",
               logits.shape().str(), " (expected target ", ts.str(), ")");
  const index_t N = logits.dim(0), C = logits.dim(1), S = logits.numel() / std::max<index_t>(N * C, 1);
  MARROW_CHECK(C > 0, "cross_entropy: logits ", logits.shape().str(), " have no classes");
  const T* cw = nullptr;
  const T* pw = nullptr;
  if (opt.class_weights) {
    MARROW_CHECK(opt.class_weights->shape() == Shape{C}, "cross_entropy: class_weights ",
                 opt.class_weights->shape().str(), " for logits ", logits.shape().str(), " (expected (", C, ",))");
    cw = opt.class_weights->data();
  }
  if (opt.pixel_weights) {
    MARROW_CHECK(opt.pixel_weights->shape() == ts, "cross_entropy: pixel_weights ", opt.pixel_weights->shape().str(),
                 " do not match target ", ts.str());
    pw = opt.pixel_weights->data();
  }
  const T eps = opt.label_smoothing;
  MARROW_CHECK(eps >= T(0) && eps <= T(1), "cross_entropy: label_smoothing ", eps, " outside [0, 1]");
  detail::check_class_targets("cross_entropy", target, C, opt.ignore_index);

  const index_t M = N * S;  // elements (rows or pixels)
  const int ignore = opt.ignore_index;
  const std::int32_t* y = target.data();
  const T* z = logits.value().data();
  T wsum = T(C);  // W = Σ_c w_c: the smoothing term's total weight
  if (cw) wsum = CArrMap(cw, C).sum();
  Tensor<T> lse = Tensor<T>::uninitialized(Shape{M});  // pooled: a fresh large vector would page-fault every step
  Tensor<T> per = Tensor<T>::uninitialized(ts);
  T* pl = per.data();
  T norm = T(0);
  if (S == 1) {
    // (N, C): one contiguous row per element
#pragma omp parallel for reduction(+ : norm) if (M * C >= detail::kParallelMin)
    for (index_t i = 0; i < M; ++i) {
      const T* row = z + i * C;
      if (y[i] == ignore) {
        pl[i] = T(0);
        lse[i] = T(0);
        continue;
      }
      CArrMap r(row, C);
      const T m = r.maxCoeff();
      const T l = m + std::log((r - m).exp().sum());
      lse[i] = l;
      const T wy = cw ? cw[y[i]] : T(1);
      T li = (T(1) - eps) * wy * (l - row[y[i]]);
      if (eps != T(0)) li += eps / T(C) * (wsum * l - (cw ? (r * CArrMap(cw, C)).sum() : r.sum()));
      pl[i] = pw ? pw[i] * li : li;
      norm += wy;
    }
  } else {
    // (N, C, S): class planes of S pixels; work on pixel blocks so every inner loop is contiguous
    constexpr index_t kBlock = 256;
    const index_t nblk = (S + kBlock - 1) / kBlock;
#pragma omp parallel for reduction(+ : norm) if (M * C >= detail::kParallelMin)
    for (index_t job = 0; job < N * nblk; ++job) {
      const index_t n = job / nblk, s0 = (job % nblk) * kBlock, len = std::min(kBlock, S - s0);
      const T* zn = z + n * C * S + s0;
      const std::int32_t* yb = y + n * S + s0;
      // per pixel: max logit, Σ exp, target logit z_y, target weight w_y (0 when ignored), Σ_c w_c·z_c
      T mx[kBlock], se[kBlock], zy[kBlock], wy[kBlock], wz[kBlock];
      std::copy_n(zn, len, mx);
      for (index_t c = 1; c < C; ++c)
#pragma omp simd
        for (index_t s = 0; s < len; ++s) mx[s] = std::max(mx[s], zn[c * S + s]);
      std::fill_n(se, len, T(0));
      std::fill_n(zy, len, T(0));
      std::fill_n(wy, len, T(0));
      std::fill_n(wz, len, T(0));
      Eigen::Map<Arr> sem(se, len), wzm(wz, len);
      CArrMap mxm(mx, len);
      for (index_t c = 0; c < C; ++c) {
        const T* zc = zn + c * S;
        const T wc = cw ? cw[c] : T(1);
        sem += (CArrMap(zc, len) - mxm).exp();
        if (eps != T(0)) wzm += wc * CArrMap(zc, len);
        // gathers written as selects over the classes, so they vectorize
#pragma omp simd
        for (index_t s = 0; s < len; ++s) {
          const bool hit = yb[s] == c && c != ignore;
          zy[s] += hit ? zc[s] : T(0);
          wy[s] += hit ? wc : T(0);
        }
      }
      // lse is kept for ignored pixels too: backward's exp(z − lse) stays ≤ 1 there
      T* ls = lse.data() + n * S + s0;
      Eigen::Map<Arr>(ls, len) = mxm + sem.log();
      T* plb = pl + n * S + s0;
      const T* pwb = pw ? pw + n * S + s0 : nullptr;
      const T ks = eps / T(C);
#pragma omp simd reduction(+ : norm)
      for (index_t s = 0; s < len; ++s) {
        const T keep = yb[s] == ignore ? T(0) : T(1);
        plb[s] = (T(1) - eps) * wy[s] * (ls[s] - zy[s]) + keep * ks * (wsum * ls[s] - wz[s]);
        norm += wy[s];
      }
      // a separate pass: `pw ? pw[s] : 1` inside the loop becomes a masked load from a null
      // pointer, which costs a microcode assist per vector on x86
      if (pwb)
#pragma omp simd
        for (index_t s = 0; s < len; ++s) plb[s] *= pwb[s];
    }
  }

  Tensor<T> out;
  if (opt.reduction == Reduction::None) {
    out = per;
  } else {
    out = Tensor<T>::uninitialized(Shape{});
    const T total = per.arr().sum();
    out[0] = opt.reduction == Reduction::Sum ? total : total / norm;
  }
  Var<T> res = t.push(std::move(out), logits);
  t.on_backward(res, [logits, res, target, cw_t = opt.class_weights ? *opt.class_weights : Tensor<T>(),
                      pw_t = opt.pixel_weights ? *opt.pixel_weights : Tensor<T>(), lse = std::move(lse), N, C, S, M,
                      eps, wsum, norm, ignore, red = opt.reduction] {
    if (red == Reduction::Mean && norm == T(0)) return;  // every target ignored: nothing to learn
    const auto g = detail::loss_grad(res, red, index_t(1));
    const T inv = red == Reduction::Mean ? T(1) / norm : T(1);
    const std::int32_t* y = target.data();
    const T* z = logits.value().data();
    const T* cw = cw_t.defined() ? cw_t.data() : nullptr;
    const T* pw = pw_t.defined() ? pw_t.data() : nullptr;
    T* dz = logits.grad().data();
    // dz_c = k · [ p_c·((1 − ε)·w_y + ε·W/C) − (1 − ε)·w_y·[c = y] − ε·w_c/C ],  k = upstream · pw / normalizer
    auto coeffs = [&](index_t i, T& k, T& a, T& wy) {
      wy = cw ? cw[y[i]] : T(1);
      k = g(i) * inv * (pw ? pw[i] : T(1));
      a = (T(1) - eps) * wy + eps * wsum / T(C);
    };
    if (S == 1) {
#pragma omp parallel for if (M * C >= detail::kParallelMin)
      for (index_t i = 0; i < M; ++i) {
        if (y[i] == ignore) continue;
        T k, a, wy;
        coeffs(i, k, a, wy);
        const T* row = z + i * C;
        T* drow = dz + i * C;
        const T l = lse[i], ka = k * a, ke = k * eps / T(C);
        Eigen::Map<Arr> d(drow, C);
        d += ka * (CArrMap(row, C) - l).exp();
        if (eps != T(0)) {
          if (cw) d -= ke * CArrMap(cw, C);
          else d -= ke;
        }
        drow[y[i]] -= k * (T(1) - eps) * wy;
      }
    } else {
      constexpr index_t kBlock = 256;
      const index_t nblk = (S + kBlock - 1) / kBlock;
#pragma omp parallel for if (M * C >= detail::kParallelMin)
      for (index_t job = 0; job < N * nblk; ++job) {
        const index_t n = job / nblk, s0 = (job % nblk) * kBlock, len = std::min(kBlock, S - s0);
        // per pixel: ka = k·a (0 when ignored), ke = k·ε/C, ky = k·(1 − ε)·w_y
        T ka[kBlock], ke[kBlock], ky[kBlock], l[kBlock];
        for (index_t s = 0; s < len; ++s) {
          const index_t i = n * S + s0 + s;
          l[s] = lse[i];
          if (y[i] == ignore) {
            ka[s] = ke[s] = ky[s] = T(0);
            continue;
          }
          T k, a, wy;
          coeffs(i, k, a, wy);
          ka[s] = k * a;
          ke[s] = k * eps / T(C);
          ky[s] = k * (T(1) - eps) * wy;
        }
        CArrMap kam(ka, len), kem(ke, len), lm(l, len);
        const std::int32_t* yb = y + n * S + s0;
        for (index_t c = 0; c < C; ++c) {
          const index_t off = (n * C + c) * S + s0;
          Eigen::Map<Arr> d(dz + off, len);
          d += kam * (CArrMap(z + off, len) - lm).exp();
          if (eps != T(0)) d -= (cw ? cw[c] : T(1)) * kem;
          T* dc = dz + off;
#pragma omp simd
          for (index_t s = 0; s < len; ++s) dc[s] -= yb[s] == c ? ky[s] : T(0);
        }
      }
    }
  });
  return res;
}

// ---- binary cross entropy on logits -------------------------------------------------
// loss = (1 − z)·x + lw·softplus(−x), lw = 1 + (pos_weight − 1)·z; softplus(−x) =
// max(−x, 0) + log(1 + e^−|x|) never overflows. pos_weight broadcasts against
// logits (usually (C) over the last axis).
template <class T>
Var<T> bce_with_logits(Tape<T>& t, const Arg<T>& logits, const Tensor<T>& target, Reduction r = Reduction::Mean,
                       const Tensor<T>* pos_weight = nullptr) {
  t.check(logits, "bce_with_logits");
  MARROW_CHECK(target.shape() == logits.shape(), "bce_with_logits: target ", target.shape().str(),
               " does not match logits ", logits.shape().str());
  const index_t n = logits.numel();
  // lw per element, materialized once when pos_weight broadcasts (keeps both loops flat)
  Tensor<T> lw;
  if (pos_weight) {
    const Shape bs = broadcast_shapes(pos_weight->shape(), logits.shape(), "bce_with_logits (pos_weight)");
    MARROW_CHECK(bs == logits.shape(), "bce_with_logits: pos_weight ", pos_weight->shape().str(),
                 " does not broadcast to logits ", logits.shape().str());
    lw = Tensor<T>::uninitialized(logits.shape());
    index_t sp[Shape::kMaxRank], zero[Shape::kMaxRank] = {};
    detail::broadcast_strides(pos_weight->shape(), bs, sp);
    const T* pp = pos_weight->data();
    const T* pz = target.data();
    T* pl = lw.data();
    detail::broadcast_for_each(bs, sp, zero, [&](index_t i, index_t ip, index_t) { pl[i] = T(1) + (pp[ip] - T(1)) * pz[i]; });
  }
  const T* px = logits.value().data();
  const T* pz = target.data();
  const T* pl = lw.defined() ? lw.data() : nullptr;
  Tensor<T> per = Tensor<T>::uninitialized(logits.shape());
  T* po = per.data();
#pragma omp parallel for if (n >= detail::kParallelMin)
  for (index_t i = 0; i < n; ++i) {
    const T x = px[i];
    const T sp = std::max(-x, T(0)) + std::log1p(std::exp(-std::abs(x)));  // softplus(−x)
    po[i] = (T(1) - pz[i]) * x + (pl ? pl[i] : T(1)) * sp;
  }
  Var<T> res = t.push(detail::reduce_loss(std::move(per), r), logits);
  t.on_backward(res, [logits, res, target, lw, r, n] {
    const auto g = detail::loss_grad(res, r, n);
    const T* px = logits.value().data();
    const T* pz = target.data();
    const T* pl = lw.defined() ? lw.data() : nullptr;
    T* dx = logits.grad().data();
#pragma omp parallel for if (n >= detail::kParallelMin)
    for (index_t i = 0; i < n; ++i) {
      const T sig_neg = T(1) / (T(1) + std::exp(px[i]));  // σ(−x); exp overflow gives the right limit 0
      dx[i] += g(i) * ((T(1) - pz[i]) - (pl ? pl[i] : T(1)) * sig_neg);
    }
  });
  return res;
}

// ---- regression losses: a is the prediction, b the target (a Var or a constant) ------
template <class T> Var<T> mse(Tape<T>& t, const Arg<T>& a, const Arg<T>& b, Reduction r = Reduction::Mean) {
  return detail::difference_loss(t, "mse", a, b, r, [](T d) { return d * d; }, [](T d) { return T(2) * d; });
}
template <class T> Var<T> mse(Tape<T>& t, const Arg<T>& a, const Tensor<T>& b, Reduction r = Reduction::Mean) {
  return mse(t, a, t.input(b), r);
}

template <class T> Var<T> l1(Tape<T>& t, const Arg<T>& a, const Arg<T>& b, Reduction r = Reduction::Mean) {
  return detail::difference_loss(t, "l1", a, b, r, [](T d) { return std::abs(d); },
                                 [](T d) { return d > T(0) ? T(1) : (d < T(0) ? T(-1) : T(0)); });
}
template <class T> Var<T> l1(Tape<T>& t, const Arg<T>& a, const Tensor<T>& b, Reduction r = Reduction::Mean) {
  return l1(t, a, t.input(b), r);
}

// Quadratic within |a − b| < beta, linear outside (PyTorch's smooth_l1_loss); beta 0 is l1.
template <class T>
Var<T> smooth_l1(Tape<T>& t, const Arg<T>& a, const Arg<T>& b, std::type_identity_t<T> beta = T(1), Reduction r = Reduction::Mean) {
  MARROW_CHECK(beta >= T(0), "smooth_l1: beta ", beta, " is negative");
  if (beta == T(0)) return l1(t, a, b, r);
  return detail::difference_loss(
      t, "smooth_l1", a, b, r,
      [beta](T d) { return std::abs(d) < beta ? T(0.5) * d * d / beta : std::abs(d) - T(0.5) * beta; },
      [beta](T d) { return std::abs(d) < beta ? d / beta : (d > T(0) ? T(1) : T(-1)); });
}
template <class T>
Var<T> smooth_l1(Tape<T>& t, const Arg<T>& a, const Tensor<T>& b, std::type_identity_t<T> beta = T(1), Reduction r = Reduction::Mean) {
  return smooth_l1(t, a, t.input(b), beta, r);
}

// ---- soft Dice ----------------------------------------------------------------------
// probs (N, C, ...) after softmax, target (N, ...) class indices. Per class c, over
// the whole batch: D_c = (2·Σ p·y + s) / (Σ p + Σ y + s), y = one-hot(target);
// loss = 1 − mean_c D_c.
template <class T>
Var<T> soft_dice_loss(Tape<T>& t, const Arg<T>& probs, const Tensor<std::int32_t>& target,
                      std::type_identity_t<T> smooth = T(1)) {
  t.check(probs, "soft_dice_loss");
  MARROW_CHECK(probs.ndim() >= 2, "soft_dice_loss: probs must be (N, C, ...), got ", probs.shape().str());
  const Shape ts = detail::class_target_shape(probs.shape());
  MARROW_CHECK(target.shape() == ts, "soft_dice_loss: target ", target.shape().str(), " does not match probs ",
               probs.shape().str(), " (expected target ", ts.str(), ")");
  const index_t N = probs.dim(0), C = probs.dim(1), S = ts.numel() / std::max<index_t>(N, 1);
  MARROW_CHECK(C > 0, "soft_dice_loss: probs ", probs.shape().str(), " have no classes");
  // no ignore index here: every target must name a class
  detail::check_class_targets("soft_dice_loss", target, C, std::numeric_limits<int>::min());
  std::vector<T> inter(std::size_t(C), T(0)), psum(std::size_t(C), T(0)), ysum(std::size_t(C), T(0));
  const T* p = probs.value().data();
  const std::int32_t* y = target.data();
  for (index_t n = 0; n < N; ++n)
    for (index_t c = 0; c < C; ++c) {
      const T* pc = p + (n * C + c) * S;
      const std::int32_t* yn = y + n * S;
      T ps = T(0), is = T(0), ys = T(0);
#pragma omp simd reduction(+ : ps, is, ys)
      for (index_t s = 0; s < S; ++s) {
        const T hit = yn[s] == c ? T(1) : T(0);
        ps += pc[s];
        is += pc[s] * hit;
        ys += hit;
      }
      psum[std::size_t(c)] += ps;
      inter[std::size_t(c)] += is;
      ysum[std::size_t(c)] += ys;
    }
  T dice = T(0);
  std::vector<T> num(static_cast<std::size_t>(C)), den(static_cast<std::size_t>(C));
  for (std::size_t c = 0; c < std::size_t(C); ++c) {
    num[c] = T(2) * inter[c] + smooth;
    den[c] = psum[c] + ysum[c] + smooth;
    dice += num[c] / den[c];
  }
  Tensor<T> out = Tensor<T>::uninitialized(Shape{});
  out[0] = T(1) - dice / T(C);
  Var<T> res = t.push(std::move(out), probs);
  t.on_backward(res, [probs, res, target, num = std::move(num), den = std::move(den), N, C, S] {
    const T g = res.grad()[0];
    const std::int32_t* y = target.data();
    T* dp = probs.grad().data();
    for (index_t n = 0; n < N; ++n)
      for (index_t c = 0; c < C; ++c) {
        // ∂D_c/∂p = (2y·den − num) / den²; the loss takes −1/C of it
        const T d2 = den[std::size_t(c)] * den[std::size_t(c)];
        const T a = -g / T(C) * T(2) * den[std::size_t(c)] / d2, b = g / T(C) * num[std::size_t(c)] / d2;
        T* dc = dp + (n * C + c) * S;
        const std::int32_t* yn = y + n * S;
#pragma omp simd
        for (index_t s = 0; s < S; ++s) dc[s] += (yn[s] == c ? a : T(0)) + b;
      }
  });
  return res;
}

// ---- cross entropy against sparse soft targets ------------------------------------
// Each pixel's target is a distribution over K of the Q classes (Zhang et al.'s
// soft-encoded colour bins), and the pixel carries a weight (their class rebalancing).
// Shape letters: N batch, Q classes, K target classes per pixel, (H, W) pixels, P = H·W.
template <class T> struct SoftTargets {
  Tensor<std::int32_t> idx;  // (N, K, H, W) classes, nearest first
  Tensor<T> weight;          // (N, K, H, W) target probabilities, summing to 1 over K
  Tensor<T> pixel_weight;    // (N, H, W) weight of each pixel's term
};

// Weighted cross entropy of logits (N, Q, H, W) against soft targets Z, averaged over the N·H·W pixels:
//   loss = (1/NP) Σ_p v_p · Σ_q −Z_{q,p} log softmax(x)_{q,p} = (1/NP) Σ_p v_p (lse_p − Σ_k Z_k x_{idx_k, p})
template <class T> Var<T> soft_cross_entropy(Tape<T>& t, const Arg<T>& logits, const SoftTargets<T>& target) {
  t.check(logits, "soft_cross_entropy");
  MARROW_CHECK(logits.ndim() == 4, "soft_cross_entropy: logits must be (N, Q, H, W), got ", logits.shape().str());
  const index_t N = logits.dim(0), Q = logits.dim(1), H = logits.dim(2), W = logits.dim(3), P = H * W;
  MARROW_CHECK(target.idx.ndim() == 4 && target.idx.dim(0) == N && target.idx.dim(2) == H && target.idx.dim(3) == W &&
                   target.weight.shape() == target.idx.shape() && target.pixel_weight.numel() == N * P,
               "soft_cross_entropy: targets ", target.idx.shape().str(), " (weights ", target.weight.shape().str(),
               ", pixel weights ", target.pixel_weight.shape().str(), ") do not match logits ", logits.shape().str());
  const index_t K = target.idx.dim(1);
  for (index_t i = 0; i < target.idx.numel(); ++i)
    MARROW_CHECK(target.idx[i] >= 0 && target.idx[i] < Q, "soft_cross_entropy: target bin ", target.idx[i],
                 " out of range for ", Q, " bins (logits ", logits.shape().str(), ")");
  using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
  using Map = Eigen::Map<Arr>;
  using CMap = Eigen::Map<const Arr>;
  Tensor<T> lse = Tensor<T>::uninitialized({N, P});  // log Σ_q e^x per pixel, kept for backward
  std::vector<double> per_image(static_cast<std::size_t>(N));
  const T* x = logits.value().data();
  // Rows of one image are contiguous over pixels: every pass below is a vector loop over P.
#pragma omp parallel for if (N * Q * P >= (1 << 16))
  for (index_t n = 0; n < N; ++n) {
    const T* xn = x + n * Q * P;
    Map m(lse.data() + n * P, P);
    m = CMap(xn, P);
    for (index_t q = 1; q < Q; ++q) m = m.max(CMap(xn + q * P, P));
    Arr s = Arr::Zero(P);
    for (index_t q = 0; q < Q; ++q) s += (CMap(xn + q * P, P) - m).exp();
    m += s.log();
    double acc = 0;
    for (index_t p = 0; p < P; ++p) {
      T dot = T(0);
      for (index_t k = 0; k < K; ++k)
        dot += target.weight[(n * K + k) * P + p] * xn[index_t(target.idx[(n * K + k) * P + p]) * P + p];
      acc += double(target.pixel_weight[n * P + p]) * double(m[p] - dot);
    }
    per_image[std::size_t(n)] = acc;
  }
  double total = 0;
  for (double v : per_image) total += v;
  Tensor<T> out = Tensor<T>::uninitialized(Shape{});
  out[0] = T(total / double(N * P));
  Var<T> res = t.push(std::move(out), logits);
  t.on_backward(res, [logits, res, target, lse = std::move(lse), N, Q, P, K] {
    const T scale = res.grad()[0] / T(N * P);
    const T* x = logits.value().data();
    T* dx = logits.grad().data();
#pragma omp parallel for if (N * Q * P >= (1 << 16))
    for (index_t n = 0; n < N; ++n) {  // dx += v_p (softmax − Z) · g / NP
      CMap l(lse.data() + n * P, P);
      const Arr v = CMap(target.pixel_weight.data() + n * P, P) * scale;
      for (index_t q = 0; q < Q; ++q)
        Map(dx + (n * Q + q) * P, P) += v * (CMap(x + (n * Q + q) * P, P) - l).exp();
      for (index_t k = 0; k < K; ++k)
        for (index_t p = 0; p < P; ++p)
          dx[(n * Q + target.idx[(n * K + k) * P + p]) * P + p] -= v[p] * target.weight[(n * K + k) * P + p];
    }
  });
  return res;
}

}  // namespace marrow

/* Backward rules (g = upstream gradient; n = element count; Mean divides by the normalizer):
   cross_entropy   dz_c += g·pw_i/norm · [ p_c·((1−ε)·w_y + ε·W/C) − (1−ε)·w_y·[c=y] − ε·w_c/C ]
                   p = softmax(z_i), W = Σ_c w_c, norm = Σ w_y over kept targets (Mean) else 1;
                   without weights: g·(p − ((1−ε)·one_hot + ε/C)); ignored targets get 0
   bce_with_logits dx += g·((1 − z) − lw·σ(−x)),  lw = 1 + (pos_weight − 1)·z   (= σ(x) − z when lw = 1)
   mse             da += g·2(a − b)          db −= the same
   l1              da += g·sign(a − b)       db −= the same
   smooth_l1       da += g·(|d| < β ? d/β : sign(d)),  d = a − b;  db −= the same
   soft_dice       dp_{n,c,s} += −g/C · (2·y·den_c − num_c)/den_c²,
                   num_c = 2·Σ p·y + s, den_c = Σ p + Σ y + s
   soft_cross_entropy  dx_{q,p} += g · v_p · (s_{q,p} − Z_{q,p}) / (N·H·W)
                   s = softmax over classes, Z = soft target, v = pixel weight
*/
