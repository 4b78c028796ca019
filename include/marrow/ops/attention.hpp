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
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "../kernels/flash_attention.hpp"
#include "../tape.hpp"
#include "elementwise.hpp"
#include "matmul.hpp"

namespace marrow {

namespace detail {
// Causal attention works in blocks of query rows: a block needs only the keys
// up to its last row, which skips ~40% of the GEMM work at T = 64.
inline constexpr index_t kAttnRowBlock = 16;

// The materialised path, for few keys: one (b, h) slice of the forward pass,
// P = softmax(scale·Q·Kᵀ) row by row (hidden keys get probability exactly 0), kept
// whole for backward; with dropout also P̃ = P ∘ Z in pd; then O = P̃·V. ent (may be
// null) receives each row's entropy −Σ p·log p.
template <class T>
void attention_forward_slice(const T* q, const T* k, const T* v, T* p, T* pd, T* o, T* ent, const AttnRows& g,
                             index_t D, index_t Dv, T scale, const AttnMask& mask, std::uint64_t mask_base) {
  using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
  const index_t Tq = g.Tq, Tk = g.Tk, block = g.causal ? kAttnRowBlock : Tq;
  const T inv_keep = mask.inv_keep<T>();
  MatView<T> P(p, Tq, Tk), O(o, Tq, Dv);
  CMatView<T> Q(q, Tq, D), K(k, Tk, D), V(v, Tk, Dv);
  for (index_t r0 = 0; r0 < Tq; r0 += block) {
    const index_t nr = std::min(block, Tq - r0), kend = g.kend(r0 + nr);
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
      if (ent) ent[i] = -(r * (r > T(0)).select(r.log(), T(0))).sum();
      if (mask.on) {
        mask.row(pd + i * Tk, mask_base + std::uint64_t(i * Tk), Tk, inv_keep);
        Eigen::Map<Arr>(pd + i * Tk, Tk) *= Eigen::Map<const Arr>(row, Tk);
      }
    }
    if (mask.on) gemm(O.middleRows(r0, nr), CMatView<T>(pd, Tq, Tk).block(r0, 0, nr, kend), V.topRows(kend));
    else gemm(O.middleRows(r0, nr), Pb, V.topRows(kend));
  }
}

// One (b, h) slice of the materialised backward pass; ds is scratch for one row block
// of dS. pd is P̃ (or P itself without dropout): dS = P̃ ∘ dP̃ − P·rowsum(P̃ ∘ dP̃).
template <class T>
void attention_backward_slice(const T* q, const T* k, const T* v, const T* p, const T* pd, const T* go, T* dq, T* dk,
                              T* dv, T* ds, const AttnRows& g, index_t D, index_t Dv, T scale) {
  using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
  const index_t Tq = g.Tq, Tk = g.Tk, block = g.causal ? kAttnRowBlock : Tq;
  CMatView<T> Pd(pd, Tq, Tk), dO(go, Tq, Dv), Q(q, Tq, D), K(k, Tk, D), V(v, Tk, Dv);
  for (index_t r0 = 0; r0 < Tq; r0 += block) {
    const index_t nr = std::min(block, Tq - r0), kend = g.kend(r0 + nr);
    auto dOb = dO.middleRows(r0, nr);
    if (dv) gemm_add(MatView<T>(dv, Tk, Dv).topRows(kend), Pd.block(r0, 0, nr, kend).transpose(), dOb);
    if (!dq && !dk) continue;
    MatView<T> dS(ds, nr, kend);
    gemm(dS, dOb, V.topRows(kend).transpose());  // dP̃, turned into dS in place
    for (index_t i = 0; i < nr; ++i) {
      const index_t lim = g.visible(r0 + i);
      Eigen::Map<Arr> d(ds + i * kend, lim);
      Eigen::Map<const Arr> pr(p + (r0 + i) * Tk, lim), pdr(pd + (r0 + i) * Tk, lim);
      if (p == pd) {
        d = pr * (d - (d * pr).sum());
      } else {
        const T Di = (d * pdr).sum();
        d = pdr * d - pr * Di;
      }
      std::fill(ds + i * kend + lim, ds + (i + 1) * kend, T(0));
    }
    if (dq) gemm_add(MatView<T>(dq, Tq, D).middleRows(r0, nr), dS, K.topRows(kend), scale);
    if (dk) gemm_add(MatView<T>(dk, Tk, D).topRows(kend), dS.transpose(), Q.middleRows(r0, nr), scale);
  }
}
}  // namespace detail

// Dropout on the attention probabilities, inside the op: entry (b, h, i, j) is dropped
// by a hash of (seed, b, h, i, j) with probability p, kept ones scale by 1/(1 − p).
// Backward regenerates the same mask from the seed. p = 0: no dropout. Draw a fresh
// seed for every forward (CausalSelfAttention takes it from its dropout's Rng).
struct AttentionDropout {
  float p = 0;
  std::uint64_t seed = 0;
};

// q, k, v: (B, H, Tq|Tk, D|Dv). scale 0 means 1/√D. If entropy_out is given it
// receives each query row's attention entropy, −Σ_j p_ij·log p_ij in nats, as
// (B, H, Tq) (before dropout).
// Two kernels, the same function: from kernel_config().attn_flash_min_keys keys
// on the tiled one (kernels/flash_attention.hpp), which keeps only O and one
// log-sum-exp per query row for backward; below it the materialised one, which
// keeps the (B, H, Tq, Tk) probabilities (and P̃ with dropout).
template <class T>
Var<T> scaled_dot_product_attention(Tape<T>& t, const Arg<T>& q, const Arg<T>& k, const Arg<T>& v, bool causal,
                                    std::type_identity_t<T> scale = T(0), AttentionDropout dropout = {},
                                    Tensor<T>* entropy_out = nullptr) {
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
  MARROW_CHECK(dropout.p >= 0.0f && dropout.p < 1.0f, "scaled_dot_product_attention: dropout p = ", dropout.p,
               " must be in [0, 1)");
  if (scale == T(0)) scale = T(1) / std::sqrt(T(D));

  const index_t BH = B * H;
  const KernelConfig& cfg = kernel_config();
  const AttnRows rows{Tq, Tk, causal};
  const AttnMask mask(double(dropout.p), dropout.seed);
  Tensor<T> out = Tensor<T>::uninitialized(Shape{B, H, Tq, Dv});
  Tensor<T> ent;
  if (entropy_out) ent = Tensor<T>::uninitialized(Shape{B, H, Tq});
  const T* pq = q.value().data();
  const T* pk = k.value().data();
  const T* pv = v.value().data();
  T* po = out.data();
  T* pe = entropy_out ? ent.data() : nullptr;
  // Each slice is a few small GEMMs; threads pay off once there are several slices of real size.
  const bool par = BH * Tq * Tk * (D + Dv) >= kParallelMin;

  if (Tk >= cfg.attn_flash_min_keys) {  // ---- tiled: O(T) memory
    const index_t Br = std::max<index_t>(1, cfg.attn_block_q), Bc = std::max<index_t>(1, cfg.attn_block_k);
    const index_t nqb = (Tq + Br - 1) / Br;
    Tensor<T> lse = Tensor<T>::uninitialized(Shape{B, H, Tq});
    T* pl = lse.data();
#pragma omp parallel if (par && BH * nqb > 1)
    {
      FlashFwdScratch<T> w(Br, Bc);
#pragma omp for schedule(dynamic)
      for (index_t task = 0; task < BH * nqb; ++task) {
        const index_t bh = task / nqb, r0 = (task % nqb) * Br;
        flash_forward_rows(pq + bh * Tq * D, pk + bh * Tk * D, pv + bh * Tk * Dv, po + bh * Tq * Dv, pl + bh * Tq,
                           pe ? pe + bh * Tq : nullptr, rows, D, Dv, T(scale), r0, std::min(Br, Tq - r0), Bc, mask,
                           std::uint64_t(bh * Tq * Tk), w);
      }
    }
    if (entropy_out) *entropy_out = std::move(ent);
    Var<T> res = t.push(std::move(out), q, k, v);
    t.on_backward(res, [q, k, v, res, lse, rows, BH, D, Dv, scale, par, Br, Bc, mask] {
      const index_t Tq = rows.Tq, Tk = rows.Tk;
      // Fetch gradient buffers here: ensure_grad allocates and is not thread-safe.
      T* dq = q.requires_grad() ? q.grad().data() : nullptr;
      T* dk = k.requires_grad() ? k.grad().data() : nullptr;
      T* dv = v.requires_grad() ? v.grad().data() : nullptr;
      const T* pq = q.value().data();
      const T* pk = k.value().data();
      const T* pv = v.value().data();
      const T* po = res.value().data();
      const T* pl = lse.data();
      const T* g = res.grad().data();
#pragma omp parallel if (par && BH > 1)
      {
        FlashBwdScratch<T> w(Br, Bc, Tq, D, Dv);
#pragma omp for schedule(dynamic)
        for (index_t bh = 0; bh < BH; ++bh)  // one thread owns a slice's dQ, dK, dV: no races, fixed order
          flash_backward_slice(pq + bh * Tq * D, pk + bh * Tk * D, pv + bh * Tk * Dv, po + bh * Tq * Dv,
                               g + bh * Tq * Dv, pl + bh * Tq, dq ? dq + bh * Tq * D : nullptr,
                               dk ? dk + bh * Tk * D : nullptr, dv ? dv + bh * Tk * Dv : nullptr, rows, D, Dv,
                               T(scale), Br, Bc, mask, std::uint64_t(bh * Tq * Tk), w);
      }
    });
    return res;
  }

  // ---- materialised: the (B, H, Tq, Tk) probabilities, for few keys
  Tensor<T> probs = Tensor<T>::uninitialized(Shape{B, H, Tq, Tk});
  Tensor<T> dropped = mask.on ? Tensor<T>::uninitialized(Shape{B, H, Tq, Tk}) : Tensor<T>();
  T* pp = probs.data();
  T* pd = mask.on ? dropped.data() : nullptr;
#pragma omp parallel for schedule(static) if (par && BH > 1)
  for (index_t bh = 0; bh < BH; ++bh)
    attention_forward_slice(pq + bh * Tq * D, pk + bh * Tk * D, pv + bh * Tk * Dv, pp + bh * Tq * Tk,
                            pd ? pd + bh * Tq * Tk : nullptr, po + bh * Tq * Dv, pe ? pe + bh * Tq : nullptr, rows, D,
                            Dv, T(scale), mask, std::uint64_t(bh * Tq * Tk));
  if (entropy_out) *entropy_out = std::move(ent);

  Var<T> res = t.push(std::move(out), q, k, v);
  t.on_backward(res, [q, k, v, res, probs, dropped, rows, BH, D, Dv, scale, par] {
    const index_t Tq = rows.Tq, Tk = rows.Tk;
    T* dq = q.requires_grad() ? q.grad().data() : nullptr;
    T* dk = k.requires_grad() ? k.grad().data() : nullptr;
    T* dv = v.requires_grad() ? v.grad().data() : nullptr;
    const T* pq = q.value().data();
    const T* pk = k.value().data();
    const T* pv = v.value().data();
    const T* pp = probs.data();
    const T* pd = dropped.defined() ? dropped.data() : pp;
    const T* g = res.grad().data();
    const index_t block = rows.causal ? kAttnRowBlock : Tq;
#pragma omp parallel if (par && BH > 1)
    {
      AlignedBuf<T> ds(block * Tk);  // aligned as every thread's: Eigen's row sums then round alike
#pragma omp for schedule(static)
      for (index_t bh = 0; bh < BH; ++bh)
        attention_backward_slice(pq + bh * Tq * D, pk + bh * Tk * D, pv + bh * Tk * Dv, pp + bh * Tq * Tk,
                                 pd + bh * Tq * Tk, g + bh * Tq * Dv, dq ? dq + bh * Tq * D : nullptr,
                                 dk ? dk + bh * Tk * D : nullptr, dv ? dv + bh * Tk * Dv : nullptr, ds.data(), rows, D,
                                 Dv, T(scale));
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
   scaled_dot_product_attention   per (b, h); S = scale·Q·Kᵀ, P = softmax(S) over keys, masked P = 0;
                                  dropout P̃ = P ⊙ Z, Z = [kept]/(1 − p) (P̃ = P without); O = P̃·V:
     dV += P̃ᵀ·dO
     dP̃  = dO·Vᵀ
     dS  = P ⊙ (Z ⊙ dP̃ − D),  D = rowsum(P̃ ⊙ dP̃) = rowsum(dO ⊙ O)   (0 at masked entries)
     dQ += scale·dS·K
     dK += scale·dSᵀ·Q
     (the tiled kernel recomputes P = exp(S − L) per tile from the saved log-sum-exp L)
   split_heads   dqkv[b, t, which·C + h·hs + d] += g[b, h, t, d]
   merge_heads   dy[b, h, t, d] += g[b, t, h·hs + d]
*/
