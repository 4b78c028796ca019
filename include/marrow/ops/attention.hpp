#pragma once
// Fused scaled dot-product attention: softmax(scale·Q·Kᵀ [+ causal mask])·V in
// one op, so the (T, T) scores never become tape nodes and no mask tensor is built;
// and the two head-reshuffling ops around it, split_heads and merge_heads, which
// do in one copy what split + view + transpose do in PyTorch (three ops, two
// copies each way).
//
// Shapes: B batch, H heads, Tq queries, Tk keys, D head size, Dv value size.
//   q (B, H, Tq, D), k (B, H, Tk, D), v (B, H, Tk, Dv) -> (B, H, Tq, Dv)
// Causal with Tq < Tk: the queries are the last Tq positions (a KV cache), so
// query i sees keys j <= i + (Tk − Tq).
// Heads: C channels, nh heads, hs = C / nh head size.
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "../tape.hpp"
#include "elementwise.hpp"
#include "matmul.hpp"

namespace marrow {

namespace detail {
// Causal attention works in blocks of query rows: a block needs only the keys
// up to its last row, which skips ~40% of the GEMM work at T = 64.
inline constexpr index_t kAttnRowBlock = 16;

// Rows [r0, r1) of a slice see keys [0, kend(r1)); row i sees keys [0, i + shift + 1).
struct AttnRows {
  index_t Tq, Tk;
  bool causal;
  index_t block() const { return causal ? kAttnRowBlock : Tq; }
  index_t kend(index_t r1) const { return causal ? std::min(Tk, r1 + Tk - Tq) : Tk; }
  index_t visible(index_t i) const { return causal ? i + Tk - Tq + 1 : Tk; }
};

// One (b, h) slice of the forward pass: P = softmax(scale·Q·Kᵀ) row by row
// (hidden keys get probability exactly 0), then O = P·V.
template <class T>
void attention_forward_slice(const T* q, const T* k, const T* v, T* p, T* o, const AttnRows& g, index_t D, index_t Dv,
                             T scale) {
  using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
  const index_t Tq = g.Tq, Tk = g.Tk;
  MatView<T> P(p, Tq, Tk), O(o, Tq, Dv);
  CMatView<T> Q(q, Tq, D), K(k, Tk, D), V(v, Tk, Dv);
  for (index_t r0 = 0; r0 < Tq; r0 += g.block()) {
    const index_t nr = std::min(g.block(), Tq - r0), kend = g.kend(r0 + nr);
    auto Pb = P.block(r0, 0, nr, kend);
    gemm(Pb, Q.middleRows(r0, nr), K.topRows(kend).transpose(), scale);
    for (index_t i = r0; i < r0 + nr; ++i) {
      T* row = p + i * Tk;
      const index_t lim = g.visible(i);
      Eigen::Map<Arr> r(row, lim);
      const T m = r.maxCoeff();
      r = (r - m).exp();
      r *= T(1) / r.sum();
      std::fill(row + lim, row + Tk, T(0));
    }
    gemm(O.middleRows(r0, nr), Pb, V.topRows(kend));
  }
}

// One (b, h) slice of the backward pass; ds is scratch for one row block of dS.
template <class T>
void attention_backward_slice(const T* q, const T* k, const T* v, const T* p, const T* go, T* dq, T* dk, T* dv, T* ds,
                              const AttnRows& g, index_t D, index_t Dv, T scale) {
  using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
  const index_t Tq = g.Tq, Tk = g.Tk;
  CMatView<T> P(p, Tq, Tk), dO(go, Tq, Dv), Q(q, Tq, D), K(k, Tk, D), V(v, Tk, Dv);
  for (index_t r0 = 0; r0 < Tq; r0 += g.block()) {
    const index_t nr = std::min(g.block(), Tq - r0), kend = g.kend(r0 + nr);
    auto Pb = P.block(r0, 0, nr, kend);
    auto dOb = dO.middleRows(r0, nr);
    if (dv) gemm_add(MatView<T>(dv, Tk, Dv).topRows(kend), Pb.transpose(), dOb);
    if (!dq && !dk) continue;
    MatView<T> dS(ds, nr, kend);
    gemm(dS, dOb, V.topRows(kend).transpose());  // dP, turned into dS in place
    for (index_t i = 0; i < nr; ++i) {
      const index_t lim = g.visible(r0 + i);
      Eigen::Map<Arr> d(ds + i * kend, lim);
      Eigen::Map<const Arr> pr(p + (r0 + i) * Tk, lim);
      d = pr * (d - (d * pr).sum());
      std::fill(ds + i * kend + lim, ds + (i + 1) * kend, T(0));
    }
    if (dq) gemm_add(MatView<T>(dq, Tq, D).middleRows(r0, nr), dS, K.topRows(kend), scale);
    if (dk) gemm_add(MatView<T>(dk, Tk, D).topRows(kend), dS.transpose(), Q.middleRows(r0, nr), scale);
  }
}
}  // namespace detail

// q, k, v: (B, H, Tq|Tk, D|Dv). scale 0 means 1/√D. If probs_out is given it
// receives a copy of the attention probabilities (B, H, Tq, Tk), e.g. to log
// attention entropy; masked entries are 0.
template <class T>
Var<T> scaled_dot_product_attention(Tape<T>& t, const Arg<T>& q, const Arg<T>& k, const Arg<T>& v, bool causal,
                                    std::type_identity_t<T> scale = T(0), Tensor<T>* probs_out = nullptr) {
  using namespace detail;
  t.check(q, "scaled_dot_product_attention");
  t.check(k, "scaled_dot_product_attention");
  t.check(v, "scaled_dot_product_attention");
  MARROW_CHECK(q.ndim() == 4 && k.ndim() == 4 && v.ndim() == 4,
               "scaled_dot_product_attention: q, k, v must be (B, H, T, D), got q ", q.shape().str(), ", k ",
               k.shape().str(), ", v ", v.shape().str());
  const index_t B = q.dim(0), H = q.dim(1), Tq = q.dim(2), D = q.dim(3), Tk = k.dim(2), Dv = v.dim(3);
  MARROW_CHECK(k.dim(0) == B && k.dim(1) == H && k.dim(3) == D,
               "scaled_dot_product_attention: k ", k.shape().str(), " does not match q ", q.shape().str(),
               " (expected (", B, ", ", H, ", Tk, ", D, "))");
  MARROW_CHECK(v.dim(0) == B && v.dim(1) == H && v.dim(2) == Tk,
               "scaled_dot_product_attention: v ", v.shape().str(), " does not match k ", k.shape().str(),
               " (expected (", B, ", ", H, ", ", Tk, ", Dv))");
  MARROW_CHECK(Tk > 0, "scaled_dot_product_attention: no keys (k ", k.shape().str(), ")");
  MARROW_CHECK(!causal || Tq <= Tk, "scaled_dot_product_attention: causal needs Tq <= Tk, got q ", q.shape().str(),
               " and k ", k.shape().str(), " (the first queries would see no key)");
  if (scale == T(0)) scale = T(1) / std::sqrt(T(D));

  const index_t BH = B * H;
  Tensor<T> out = Tensor<T>::uninitialized(Shape{B, H, Tq, Dv});
  Tensor<T> probs = Tensor<T>::uninitialized(Shape{B, H, Tq, Tk});
  const T* pq = q.value().data();
  const T* pk = k.value().data();
  const T* pv = v.value().data();
  T* pp = probs.data();
  T* po = out.data();
  // Each slice is a few small GEMMs; threads pay off once there are several slices of real size.
  const bool par = BH > 1 && BH * Tq * Tk * (D + Dv) >= kParallelMin;
  const AttnRows rows{Tq, Tk, causal};
#pragma omp parallel for schedule(static) if (par)
  for (index_t bh = 0; bh < BH; ++bh)
    attention_forward_slice(pq + bh * Tq * D, pk + bh * Tk * D, pv + bh * Tk * Dv, pp + bh * Tq * Tk,
                            po + bh * Tq * Dv, rows, D, Dv, T(scale));
  if (probs_out) *probs_out = probs.clone();

  Var<T> res = t.push(std::move(out), q, k, v);
  t.on_backward(res, [q, k, v, res, probs, rows, BH, D, Dv, scale, par] {
    const index_t Tq = rows.Tq, Tk = rows.Tk;
    // Fetch gradient buffers here: ensure_grad allocates and is not thread-safe.
    T* dq = q.requires_grad() ? q.grad().data() : nullptr;
    T* dk = k.requires_grad() ? k.grad().data() : nullptr;
    T* dv = v.requires_grad() ? v.grad().data() : nullptr;
    const T* pq = q.value().data();
    const T* pk = k.value().data();
    const T* pv = v.value().data();
    const T* pp = probs.data();
    const T* g = res.grad().data();
#pragma omp parallel if (par)
    {
      std::vector<T> ds(std::size_t(rows.block() * Tk));
#pragma omp for schedule(static)
      for (index_t bh = 0; bh < BH; ++bh)
        attention_backward_slice(pq + bh * Tq * D, pk + bh * Tk * D, pv + bh * Tk * Dv, pp + bh * Tq * Tk,
                                 g + bh * Tq * Dv, dq ? dq + bh * Tq * D : nullptr, dk ? dk + bh * Tk * D : nullptr,
                                 dv ? dv + bh * Tk * Dv : nullptr, ds.data(), rows, D, Dv, T(scale));
    }
  });
  return res;
}

// ---- heads ---------------------------------------------------------------------------
// qkv (B, T, parts·C) -> part `which` as heads (B, nh, T, hs):
//   out[b, h, t, d] = qkv[b, t, which·C + h·hs + d]
template <class T> Var<T> split_heads(Tape<T>& t, const Arg<T>& qkv, int parts, int which, int n_head) {
  t.check(qkv, "split_heads");
  MARROW_CHECK(qkv.ndim() == 3, "split_heads: input must be (B, T, parts*C), got ", qkv.shape().str());
  MARROW_CHECK(parts > 0 && which >= 0 && which < parts && n_head > 0, "split_heads: bad part ", which, " of ",
               parts, " or n_head ", n_head);
  const index_t B = qkv.dim(0), Tn = qkv.dim(1), W = qkv.dim(2);
  MARROW_CHECK(W % (index_t(parts) * n_head) == 0, "split_heads: last dim of ", qkv.shape().str(),
               " is not divisible into ", parts, " parts of ", n_head, " heads");
  const index_t C = W / parts, hs = C / n_head, nh = n_head;
  Tensor<T> out = Tensor<T>::uninitialized(Shape{B, nh, Tn, hs});
  const T* src = qkv.value().data() + index_t(which) * C;
  T* dst = out.data();
#pragma omp parallel for if (out.numel() >= detail::kParallelMin)
  for (index_t bh = 0; bh < B * nh; ++bh) {
    const index_t b = bh / nh, h = bh % nh;
    for (index_t s = 0; s < Tn; ++s)
      std::copy_n(src + (b * Tn + s) * W + h * hs, hs, dst + (bh * Tn + s) * hs);
  }
  Var<T> res = t.push(std::move(out), qkv);
  t.on_backward(res, [qkv, res, which, B, Tn, W, C, nh, hs] {
    const T* g = res.grad().data();
    T* dq = qkv.grad().data() + index_t(which) * C;
#pragma omp parallel for if (res.numel() >= detail::kParallelMin)
    for (index_t bh = 0; bh < B * nh; ++bh) {  // each (b, h) owns a disjoint block of dq
      const index_t b = bh / nh, h = bh % nh;
      for (index_t s = 0; s < Tn; ++s) {
        T* d = dq + (b * Tn + s) * W + h * hs;
        const T* gs = g + (bh * Tn + s) * hs;
        for (index_t j = 0; j < hs; ++j) d[j] += gs[j];
      }
    }
  });
  return res;
}

// y (B, nh, T, hs) -> (B, T, nh·hs): out[b, t, h·hs + d] = y[b, h, t, d].
template <class T> Var<T> merge_heads(Tape<T>& t, const Arg<T>& y) {
  t.check(y, "merge_heads");
  MARROW_CHECK(y.ndim() == 4, "merge_heads: input must be (B, nh, T, hs), got ", y.shape().str());
  const index_t B = y.dim(0), nh = y.dim(1), Tn = y.dim(2), hs = y.dim(3), C = nh * hs;
  Tensor<T> out = Tensor<T>::uninitialized(Shape{B, Tn, C});
  const T* src = y.value().data();
  T* dst = out.data();
#pragma omp parallel for if (out.numel() >= detail::kParallelMin)
  for (index_t bh = 0; bh < B * nh; ++bh) {
    const index_t b = bh / nh, h = bh % nh;
    for (index_t s = 0; s < Tn; ++s) std::copy_n(src + (bh * Tn + s) * hs, hs, dst + (b * Tn + s) * C + h * hs);
  }
  Var<T> res = t.push(std::move(out), y);
  t.on_backward(res, [y, res, B, Tn, nh, hs, C] {
    const T* g = res.grad().data();
    T* dy = y.grad().data();
#pragma omp parallel for if (res.numel() >= detail::kParallelMin)
    for (index_t bh = 0; bh < B * nh; ++bh) {
      const index_t b = bh / nh, h = bh % nh;
      for (index_t s = 0; s < Tn; ++s) {
        T* d = dy + (bh * Tn + s) * hs;
        const T* gs = g + (b * Tn + s) * C + h * hs;
        for (index_t j = 0; j < hs; ++j) d[j] += gs[j];
      }
    }
  });
  return res;
}

}  // namespace marrow

/* Backward rules:
   scaled_dot_product_attention   per (b, h); S = scale·Q·Kᵀ, P = softmax(S) over keys, O = P·V, masked P = 0:
     dV += Pᵀ·dO
     dP  = dO·Vᵀ
     dS  = P ⊙ (dP − rowsum(dP ⊙ P))          (0 at masked entries, since P is 0 there)
     dQ += scale·dS·K
     dK += scale·dSᵀ·Q
   split_heads   dqkv[b, t, which·C + h·hs + d] += g[b, h, t, d]
   merge_heads   dy[b, h, t, d] += g[b, t, h·hs + d]
*/
