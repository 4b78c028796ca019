#pragma once
// Index plumbing for NumPy broadcasting, shared by elementwise ops and reductions.
#include "../shape.hpp"

namespace marrow::detail {

// Strides of `in` viewed inside the broadcast shape `out` (0 where `in` is broadcast).
inline void broadcast_strides(const Shape& in, const Shape& out, index_t* strides) {
  index_t s[Shape::kMaxRank];
  contiguous_strides(in, s);
  const int off = out.rank() - in.rank();
  for (int i = 0; i < out.rank(); ++i) {
    const int k = i - off;
    strides[i] = (k < 0 || in[k] == 1) ? 0 : s[k];
  }
}

// Call fn(i, ia, ib) for every flat index i of `out`, with the matching flat
// indices of two broadcast inputs. The innermost dim runs as a tight loop.
template <class F>
inline void broadcast_for_each(const Shape& out, const index_t* sa, const index_t* sb, F&& fn) {
  const index_t n = out.numel();
  if (n == 0) return;
  const int r = out.rank();
  if (r == 0) {
    fn(index_t(0), index_t(0), index_t(0));
    return;
  }
  const index_t last = out[r - 1], la = sa[r - 1], lb = sb[r - 1];
  index_t idx[Shape::kMaxRank] = {};
  index_t oa = 0, ob = 0;
  for (index_t i = 0; i < n; i += last) {
    for (index_t j = 0; j < last; ++j) fn(i + j, oa + j * la, ob + j * lb);
    for (int d = r - 2; d >= 0; --d) {
      oa += sa[d];
      ob += sb[d];
      if (++idx[d] < out[d]) break;
      oa -= sa[d] * out[d];
      ob -= sb[d] * out[d];
      idx[d] = 0;
    }
  }
}

// Sum a gradient of the broadcast shape `g.shape()` back into `dst` of shape `target`
// (accumulating), i.e. the adjoint of broadcasting `target` up to `g.shape()`.
template <class T> void sum_to_shape_accumulate(const T* g, const Shape& gshape, T* dst, const Shape& target) {
  if (gshape == target) {
    for (index_t i = 0, n = gshape.numel(); i < n; ++i) dst[i] += g[i];
    return;
  }
  index_t st[Shape::kMaxRank], zero[Shape::kMaxRank] = {};
  broadcast_strides(target, gshape, st);
  broadcast_for_each(gshape, st, zero, [&](index_t i, index_t it, index_t) { dst[it] += g[i]; });
}

}  // namespace marrow::detail
