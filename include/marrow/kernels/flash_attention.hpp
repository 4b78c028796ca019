#pragma once
// Tiled attention in the manner of FlashAttention-2 (Dao 2023): memory that grows
// with T, not T². For one (b, h) slice, a block of Br query rows meets the key
// blocks of Bc keys one after another; only a running row maximum m, a running
// sum l and the output rows live across key blocks:
//   S = scale·Q_i·K_jᵀ;  m' = max(m, rowmax S);  P = exp(S − m');
//   l = l·exp(m − m') + rowsum P;  O = O·exp(m − m') + P·V_j;  at the end O /= l
// and one log-sum-exp per query row, L = m + log l, is kept for backward, which
// recomputes P = exp(S − L) tile by tile with D = rowsum(dO ∘ O):
//   dV_j += Pᵀ·dO_i;  dP = dO_i·V_jᵀ;  dS = P ∘ (dP − D);
//   dQ_i += scale·dS·K_j;  dK_j += scale·dSᵀ·Q_i.
// Nothing of size Tq × Tk lives longer than one Br × Bc tile.
//
// Causal (Tq ≤ Tk; the queries are the last Tq positions, a KV cache when
// Tq < Tk): query i sees keys j ≤ i + Tk − Tq. Tiles wholly above that diagonal
// are skipped; the tiles it crosses are masked entry by entry.
//
// Dropout on the probabilities (P̃ = P ∘ Z, Z = [kept]/(1 − p), O = P̃·V) is drawn
// by a counter-based hash of (seed, b, h, i, j), so backward regenerates the mask
// instead of storing it: dV += P̃ᵀ·dO, dS = P ∘ (Z ∘ dP̃ − D), D = rowsum(dO ∘ O).
//
// Row entropy, when asked for: H_i = L_i − Σ_j p_ij·s_ij, with the sum carried
// online like l (e = e·exp(m − m') + Σ exp(s − m')·s; Σ p·s = e / l).
//
// Threads: forward over (b·h, query block) pairs, each computed alone; backward
// over (b, h) slices, each slice's dQ, dK, dV written by one thread only in a
// fixed order. Tile products go through detail::gemm, which runs on the calling
// thread inside a parallel region: bits do not depend on the thread count.
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <memory>

#include "../shape.hpp"
#include "config.hpp"
#include "gemm.hpp"

namespace marrow::detail {

// Which keys the rows of a slice see: rows [r0, r1) need keys [0, kend(r1)); row i
// sees keys [0, visible(i)).
struct AttnRows {
  index_t Tq, Tk;
  bool causal;
  index_t kend(index_t r1) const { return causal ? std::min(Tk, r1 + Tk - Tq) : Tk; }
  index_t visible(index_t i) const { return causal ? std::min(Tk, i + Tk - Tq + 1) : Tk; }
  // The first query row that sees key j.
  index_t first_row(index_t j) const { return causal ? std::max<index_t>(0, j - (Tk - Tq)) : 0; }
};

// Attention dropout by a counter-based hash (splitmix64's finalizer on the entry's
// index in (B, H, Tq, Tk)): entry idx is kept iff the top 32 bits of the hash are
// at least p·2³², and kept entries are scaled by 1/(1 − p).
struct AttnMask {
  std::uint64_t seed = 0;
  std::uint64_t threshold = 0;  // p·2³²
  double p = 0;
  bool on = false;
  AttnMask() = default;
  AttnMask(double p_, std::uint64_t seed_)
      : seed(seed_), threshold(std::uint64_t(p_ * 4294967296.0)), p(p_), on(p_ > 0) {}
  template <class T> T inv_keep() const { return on ? T(1) / (T(1) - T(p)) : T(1); }
  static std::uint64_t mix(std::uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  bool keep(std::uint64_t idx) const { return (mix(seed + (idx + 1) * 0x9E3779B97F4A7C15ull) >> 32) >= threshold; }
  // z[j] = keep(base + j) ? inv : 0, for j < n.
  template <class T> void row(T* z, std::uint64_t base, index_t n, T inv) const {
    for (index_t j = 0; j < n; ++j) z[j] = keep(base + std::uint64_t(j)) ? inv : T(0);
  }
};

// Scratch that starts on a cache line, with tile rows ld(Bc) apart, also cache lines:
// Eigen peels scalar iterations (std::exp, not its vector exp; another order of a
// row's sum) until the first aligned element, so rows that start anywhere else would
// round differently on each thread's buffer.
template <class T> struct AlignedBuf {
  std::unique_ptr<T[], decltype(&std::free)> p{nullptr, &std::free};
  explicit AlignedBuf(index_t n)
      : p(static_cast<T*>(std::aligned_alloc(64, (std::size_t(std::max<index_t>(n, 1)) * sizeof(T) + 63) / 64 * 64)),
          &std::free) {}
  T* data() const { return p.get(); }
  T& operator[](index_t i) const { return p.get()[i]; }
};
template <class T> constexpr index_t tile_ld(index_t n) {
  constexpr index_t line = 64 / index_t(sizeof(T));
  return (n + line - 1) / line * line;
}

// Per-thread scratch of the forward pass: one score tile and the running row statistics.
template <class T> struct FlashFwdScratch {
  index_t ld;
  AlignedBuf<T> s, m, l, e, z;
  FlashFwdScratch(index_t Br, index_t Bc) : ld(tile_ld<T>(Bc)), s(Br * ld), m(Br), l(Br), e(Br), z(ld) {}
};

// Query rows [r0, r0 + nr) of one (b, h) slice. q (Tq, D), k (Tk, D), v (Tk, Dv) and
// o (Tq, Dv) point at the slice; lse and ent (may be null) at its Tq rows;
// mask_base = (b·H + h)·Tq·Tk, the slice's first entry in (B, H, Tq, Tk).
template <class T>
void flash_forward_rows(const T* q, const T* k, const T* v, T* o, T* lse, T* ent, const AttnRows& g, index_t D,
                        index_t Dv, T scale, index_t r0, index_t nr, index_t Bc, const AttnMask& mask,
                        std::uint64_t mask_base, FlashFwdScratch<T>& w) {
  using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
  const index_t Tk = g.Tk, kend = g.kend(r0 + nr);
  const T inf = std::numeric_limits<T>::infinity(), inv_keep = mask.inv_keep<T>();
  CMatView<T> Qb(q + r0 * D, nr, D);
  MatView<T> Ob(o + r0 * Dv, nr, Dv);
  Ob.setZero();
  std::fill_n(w.m.data(), nr, -inf);
  std::fill_n(w.l.data(), nr, T(0));
  std::fill_n(w.e.data(), nr, T(0));
  for (index_t c0 = 0; c0 < kend; c0 += Bc) {
    const index_t nc = std::min(Bc, kend - c0);
    auto S = MatView<T>(w.s.data(), nr, w.ld).leftCols(nc);
    gemm(S, Qb, CMatView<T>(k + c0 * D, nc, D).transpose(), scale);
    for (index_t i = 0; i < nr; ++i) {
      T* row = w.s.data() + i * w.ld;
      const index_t lim = std::clamp<index_t>(g.visible(r0 + i) - c0, 0, nc);
      std::fill(row + lim, row + nc, T(0));
      if (lim == 0) continue;  // this tile is wholly above row i's diagonal
      Eigen::Map<Arr> r(row, lim);
      const T m_old = w.m[i], m_new = std::max(m_old, r.maxCoeff());
      const T alpha = std::exp(m_old - m_new);  // 0 on the first tile (m_old = −∞)
      if (ent) w.e[i] = w.e[i] * alpha + ((r - m_new).exp() * r).sum();
      r = (r - m_new).exp();
      w.l[i] = w.l[i] * alpha + r.sum();
      w.m[i] = m_new;
      if (alpha != T(1)) Ob.row(i) *= alpha;
      if (mask.on) {
        mask.row(w.z.data(), mask_base + std::uint64_t((r0 + i) * Tk + c0), lim, inv_keep);
        r *= Eigen::Map<const Arr>(w.z.data(), lim);
      }
    }
    gemm_add(Ob, S, CMatView<T>(v + c0 * Dv, nc, Dv));
  }
  for (index_t i = 0; i < nr; ++i) {
    Ob.row(i) *= T(1) / w.l[i];
    const T L = w.m[i] + std::log(w.l[i]);
    lse[r0 + i] = L;
    if (ent) ent[r0 + i] = L - w.e[i] / w.l[i];
  }
}

// Per-thread scratch of the backward pass.
template <class T> struct FlashBwdScratch {
  index_t ld;
  AlignedBuf<T> p, dp, pd, dk, dv, d, z;
  FlashBwdScratch(index_t Br, index_t Bc, index_t Tq, index_t D, index_t Dv)
      : ld(tile_ld<T>(Bc)), p(Br * ld), dp(Br * ld), pd(Br * ld), dk(Bc * D), dv(Bc * Dv), d(Tq), z(Br * ld) {}
};

// One (b, h) slice of backward: key blocks outside, query blocks inside, so dK_j and
// dV_j are summed in scratch and added once; dQ is added to dq block by block.
// dq, dk, dv may be null (no gradient wanted); they are added to, never overwritten.
template <class T>
void flash_backward_slice(const T* q, const T* k, const T* v, const T* o, const T* go, const T* lse, T* dq, T* dk,
                          T* dv, const AttnRows& g, index_t D, index_t Dv, T scale, index_t Br, index_t Bc,
                          const AttnMask& mask, std::uint64_t mask_base, FlashBwdScratch<T>& w) {
  using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
  const index_t Tq = g.Tq, Tk = g.Tk;
  const T inv_keep = mask.inv_keep<T>();
  // D_i = rowsum(dO ∘ O)
  for (index_t i = 0; i < Tq; ++i)
    w.d[i] = (Eigen::Map<const Arr>(go + i * Dv, Dv) * Eigen::Map<const Arr>(o + i * Dv, Dv)).sum();
  const index_t ld = w.ld;
  for (index_t c0 = 0; c0 < Tk; c0 += Bc) {
    const index_t nc = std::min(Bc, Tk - c0);
    CMatView<T> Kc(k + c0 * D, nc, D), Vc(v + c0 * Dv, nc, Dv);
    MatView<T> dKc(w.dk.data(), nc, D), dVc(w.dv.data(), nc, Dv);
    if (dk) dKc.setZero();
    if (dv) dVc.setZero();
    const index_t first = (g.first_row(c0) / Br) * Br;
    for (index_t r0 = first; r0 < Tq; r0 += Br) {
      const index_t nr = std::min(Br, Tq - r0);
      CMatView<T> Qr(q + r0 * D, nr, D), dOr(go + r0 * Dv, nr, Dv);
      auto P = MatView<T>(w.p.data(), nr, ld).leftCols(nc);
      gemm(P, Qr, Kc.transpose(), scale);  // S, turned into P in place
      for (index_t i = 0; i < nr; ++i) {
        T* row = w.p.data() + i * ld;
        const index_t lim = std::clamp<index_t>(g.visible(r0 + i) - c0, 0, nc);
        Eigen::Map<Arr> r(row, lim);
        r = (r - lse[r0 + i]).exp();
        std::fill(row + lim, row + nc, T(0));
      }
      // P̃ = P ∘ Z (P itself without dropout); Z regenerated from the hash
      T* pd = w.p.data();
      if (mask.on) {
        pd = w.pd.data();
        for (index_t i = 0; i < nr; ++i) {
          mask.row(w.z.data() + i * ld, mask_base + std::uint64_t((r0 + i) * Tk + c0), nc, inv_keep);
          Eigen::Map<Arr>(pd + i * ld, nc) =
              Eigen::Map<const Arr>(w.p.data() + i * ld, nc) * Eigen::Map<const Arr>(w.z.data() + i * ld, nc);
        }
      }
      if (dv) gemm_add(dVc, CMatView<T>(pd, nr, ld).leftCols(nc).transpose(), dOr);  // dV_j += P̃ᵀ·dO_i
      if (!dq && !dk) continue;
      auto dS = MatView<T>(w.dp.data(), nr, ld).leftCols(nc);
      gemm(dS, dOr, Vc.transpose());  // dP̃, turned into dS in place
      for (index_t i = 0; i < nr; ++i) {
        Eigen::Map<Arr> d(w.dp.data() + i * ld, nc);
        Eigen::Map<const Arr> p(w.p.data() + i * ld, nc);
        const T Di = w.d[r0 + i];
        if (mask.on) d = p * (d * Eigen::Map<const Arr>(w.z.data() + i * ld, nc) - Di);
        else d = p * (d - Di);
      }
      if (dq) gemm_add(MatView<T>(dq + r0 * D, nr, D), dS, Kc, scale);  // dQ_i += scale·dS·K_j
      if (dk) gemm_add(dKc, dS.transpose(), Qr, scale);                 // dK_j += scale·dSᵀ·Q_i
    }
    if (dk) MatView<T>(dk + c0 * D, nc, D) += dKc;
    if (dv) MatView<T>(dv + c0 * Dv, nc, Dv) += dVc;
  }
}

}  // namespace marrow::detail
