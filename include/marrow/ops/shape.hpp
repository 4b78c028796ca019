#pragma once
// Differentiable shape ops: reshape, flatten, permute, transpose, slice,
// concat, split, concat_global, pad2d, index_select, embedding,
// token_position_embedding; and one_hot (no tape).
// Each op: forward beside backward. Backward always accumulates (+=).
// Shape letters: (outer, n, inner) = the dims before, at and after the op's axis.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "../tape.hpp"

namespace marrow {

namespace shape_detail {
inline constexpr index_t kShapeParallelMin = 1 << 15;  // below this, threads cost more than they save

// fn(i, off) once per row (last dim) of a contiguous tensor of shape `os`: i is
// the row's flat start, off the offset of its first element in a source whose
// per-axis strides (in `os` order) are `stride`. The caller runs the row loop,
// so it stays a tight loop the compiler can vectorize.
template <class F> void strided_rows(const Shape& os, const index_t* stride, F&& fn) {
  const int r = os.rank();
  const index_t n = os.numel();
  if (n == 0) return;
  if (r == 0) {
    fn(index_t(0), index_t(0));
    return;
  }
  const index_t last = os[r - 1];
  index_t idx[Shape::kMaxRank] = {};
  index_t off = 0;
  for (index_t i = 0; i < n; i += last) {
    fn(i, off);
    for (int d = r - 2; d >= 0; --d) {  // odometer over the outer dims
      off += stride[d];
      if (++idx[d] < os[d]) break;
      off -= stride[d] * os[d];
      idx[d] = 0;
    }
  }
}

// (outer, n, inner) around `axis`.
struct AxisSplit {
  index_t outer, n, inner;
};
inline AxisSplit axis_split(const Shape& s, int a) { return {s.prod(0, a), s[a], s.prod(a + 1, s.rank())}; }

// Resolve a possibly negative axis, naming the op on failure.
inline int resolve_axis(const Shape& s, int axis, const char* op) {
  const int a = axis < 0 ? axis + s.rank() : axis;
  MARROW_CHECK(a >= 0 && a < s.rank(), op, ": axis ", axis, " out of range for input ", s.str());
  return a;
}
}  // namespace shape_detail

// ---- reshape / flatten ------------------------------------------------------------
// A view of x's storage with a new shape (one dim may be -1); the gradient is reshaped back.
template <class T> Var<T> reshape(Tape<T>& t, const Arg<T>& x, std::vector<index_t> dims) {
  t.check(x, "reshape");
  Tensor<T> out = x.value().reshape(dims);  // throws "reshape: ..." on a bad target
  Var<T> res = t.push(std::move(out), x);
  t.on_backward(res, [x, res] { x.grad().arr() += res.grad().arr(); });
  return res;
}

// Merge dims [start_dim, end] into one (PyTorch's flatten with end_dim = -1).
template <class T> Var<T> flatten(Tape<T>& t, const Arg<T>& x, int start_dim = 1) {
  t.check(x, "flatten");
  const Shape& s = x.shape();
  if (s.rank() == 0) return reshape(t, x, {1});
  const int a = shape_detail::resolve_axis(s, start_dim, "flatten");
  std::vector<index_t> dims(s.begin(), s.begin() + a);
  dims.push_back(s.prod(a, s.rank()));
  return reshape(t, x, std::move(dims));
}

// ---- permute / transpose ----------------------------------------------------------
// Output axis i is input axis perm[i] (a copy; storage stays contiguous).
template <class T> Var<T> permute(Tape<T>& t, const Arg<T>& x, std::vector<int> perm) {
  t.check(x, "permute");
  const Shape& s = x.shape();
  const int r = s.rank();
  MARROW_CHECK(int(perm.size()) == r, "permute: ", perm.size(), " axes given for input ", s.str());
  bool seen[Shape::kMaxRank] = {};
  for (int& p : perm) {
    p = shape_detail::resolve_axis(s, p, "permute");
    MARROW_CHECK(!seen[p], "permute: axis ", p, " repeated for input ", s.str());
    seen[p] = true;
  }
  Tensor<T> out = x.value().permute(perm);
  Var<T> res = t.push(std::move(out), x);
  t.on_backward(res, [x, res, perm = std::move(perm)] {
    const Shape& os = res.shape();
    index_t in_strides[Shape::kMaxRank], src[Shape::kMaxRank];
    contiguous_strides(x.shape(), in_strides);
    for (std::size_t i = 0; i < perm.size(); ++i) src[i] = in_strides[perm[i]];
    const T* g = res.grad().data();
    T* dx = x.grad().data();
    const index_t last = os.rank() ? os[os.rank() - 1] : 1, ls = os.rank() ? src[os.rank() - 1] : 1;
    shape_detail::strided_rows(os, src, [&](index_t i, index_t off) {
      for (index_t j = 0; j < last; ++j) dx[off + j * ls] += g[i + j];
    });
  });
  return res;
}

template <class T> Var<T> transpose(Tape<T>& t, const Arg<T>& x, int a, int b) {
  t.check(x, "transpose");
  const Shape& s = x.shape();
  const int ia = shape_detail::resolve_axis(s, a, "transpose"), ib = shape_detail::resolve_axis(s, b, "transpose");
  std::vector<int> perm(std::size_t(s.rank()));
  for (int i = 0; i < s.rank(); ++i) perm[std::size_t(i)] = i;
  std::swap(perm[std::size_t(ia)], perm[std::size_t(ib)]);
  return permute(t, x, std::move(perm));
}

// ---- slice -------------------------------------------------------------------------
// Elements [start, stop) along `axis`; negative bounds count from the end.
template <class T> Var<T> slice(Tape<T>& t, const Arg<T>& x, int axis, index_t start, index_t stop) {
  t.check(x, "slice");
  const Shape& s = x.shape();
  const int a = shape_detail::resolve_axis(s, axis, "slice");
  const index_t n = s[a];
  if (start < 0) start += n;
  if (stop < 0) stop += n;
  MARROW_CHECK(0 <= start && start <= stop && stop <= n, "slice: [", start, ", ", stop, ") out of range for axis ",
               axis, " of input ", s.str());
  Tensor<T> out = x.value().slice(a, start, stop);
  Var<T> res = t.push(std::move(out), x);
  t.on_backward(res, [x, res, a, start, stop] {
    const auto [outer, n, inner] = shape_detail::axis_split(x.shape(), a);
    const index_t len = (stop - start) * inner;
    const T* g = res.grad().data();
    T* dx = x.grad().data();
    for (index_t o = 0; o < outer; ++o) {
      T* d = dx + (o * n + start) * inner;
      const T* gs = g + o * len;
      for (index_t j = 0; j < len; ++j) d[j] += gs[j];
    }
  });
  return res;
}

// ---- concat / split ----------------------------------------------------------------
// Join along `axis`; every other dim must agree.
template <class T> Var<T> concat(Tape<T>& t, const std::vector<Var<T>>& xs, int axis) {
  for (auto& x : xs) t.check(x, "concat");
  MARROW_CHECK(!xs.empty(), "concat: no inputs");
  const Shape& s0 = xs[0].shape();
  const int a = shape_detail::resolve_axis(s0, axis, "concat");
  Shape os = s0;
  os[a] = 0;
  for (std::size_t k = 0; k < xs.size(); ++k) {
    const Shape& s = xs[k].shape();
    bool ok = s.rank() == s0.rank();
    for (int i = 0; ok && i < s.rank(); ++i) ok = i == a || s[i] == s0[i];
    MARROW_CHECK(ok, "concat: input ", k, " has shape ", s.str(), ", input 0 has ", s0.str(),
                 "; they must match except on axis ", axis);
    os[a] += s[a];
  }
  Tensor<T> out = Tensor<T>::uninitialized(os);
  const index_t outer = os.prod(0, a), inner = os.prod(a + 1, os.rank()), row = os[a] * inner;
  index_t off = 0;  // start of input k within an output row, in elements
  for (auto& x : xs) {
    const index_t len = x.dim(a) * inner;
    const T* px = x.value().data();
    for (index_t o = 0; o < outer; ++o) std::copy_n(px + o * len, len, out.data() + o * row + off);
    off += len;
  }
  Var<T> res = t.push_list(std::move(out), xs);
  t.on_backward(res, [xs, res, a, outer, inner, row] {
    const T* g = res.grad().data();
    index_t off = 0;
    for (auto& x : xs) {
      const index_t len = x.dim(a) * inner;
      if (x.requires_grad()) {
        T* dx = x.grad().data();
        for (index_t o = 0; o < outer; ++o) {
          const T* gs = g + o * row + off;
          T* d = dx + o * len;
          for (index_t j = 0; j < len; ++j) d[j] += gs[j];
        }
      }
      off += len;
    }
  });
  return res;
}

// Cut `axis` into consecutive pieces of the given sizes (which must sum to its length).
template <class T>
std::vector<Var<T>> split(Tape<T>& t, const Arg<T>& x, const std::vector<index_t>& sizes, int axis) {
  t.check(x, "split");
  const int a = shape_detail::resolve_axis(x.shape(), axis, "split");
  index_t total = 0;
  for (index_t sz : sizes) {
    MARROW_CHECK(sz >= 0, "split: negative size ", sz, " for input ", x.shape().str());
    total += sz;
  }
  MARROW_CHECK(total == x.dim(a), "split: sizes sum to ", total, " but axis ", axis, " of input ", x.shape().str(),
               " has ", x.dim(a));
  std::vector<Var<T>> out;
  out.reserve(sizes.size());
  index_t start = 0;
  for (index_t sz : sizes) {
    out.push_back(slice(t, x, a, start, start + sz));
    start += sz;
  }
  return out;
}

// x (N, C, H, W), g (N, D) -> (N, C + D, H, W): g repeated at every position after
// x's channels (the fusion layer of Iizuka et al.'s colorizer joins its global
// feature vector to the mid-level map this way).
template <class T> Var<T> concat_global(Tape<T>& t, const Arg<T>& x, const Arg<T>& g) {
  t.check(x, "concat_global");
  t.check(g, "concat_global");
  MARROW_CHECK(x.ndim() == 4 && g.ndim() == 2 && g.dim(0) == x.dim(0), "concat_global: map ", x.shape().str(),
               " must be (N, C, H, W) and vector ", g.shape().str(), " (N, D) with the same N");
  const index_t N = x.dim(0), C = x.dim(1), D = g.dim(1), P = x.dim(2) * x.dim(3);
  Tensor<T> out = Tensor<T>::uninitialized({N, C + D, x.dim(2), x.dim(3)});
  for (index_t n = 0; n < N; ++n) {
    std::copy_n(x.value().data() + n * C * P, C * P, out.data() + n * (C + D) * P);
    for (index_t d = 0; d < D; ++d) std::fill_n(out.data() + (n * (C + D) + C + d) * P, P, g.value()[n * D + d]);
  }
  Var<T> res = t.push(std::move(out), x, g);
  t.on_backward(res, [x, g, res, N, C, D, P] {
    const T* gy = res.grad().data();
    if (x.requires_grad()) {
      T* dx = x.grad().data();
      for (index_t n = 0; n < N; ++n)
        Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>(dx + n * C * P, C * P) +=
            Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>(gy + n * (C + D) * P, C * P);
    }
    if (g.requires_grad()) {
      T* dg = g.grad().data();
      for (index_t n = 0; n < N; ++n)
        for (index_t d = 0; d < D; ++d)
          dg[n * D + d] += Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>(gy + (n * (C + D) + C + d) * P, P).sum();
    }
  });
  return res;
}

// ---- pad2d -------------------------------------------------------------------------
enum class PadMode { Zeros, Reflect };

// Pad the last two dims (H, W) of any-rank input: (..., H, W) -> (..., H+top+bottom, W+left+right).
// Reflect mirrors without repeating the edge (PyTorch's ReflectionPad2d), so each pad must be < its dim.
template <class T>
Var<T> pad2d(Tape<T>& t, const Arg<T>& x, int top, int bottom, int left, int right, PadMode mode = PadMode::Zeros) {
  t.check(x, "pad2d");
  const Shape& s = x.shape();
  MARROW_CHECK(s.rank() >= 2, "pad2d: input ", s.str(), " needs at least 2 dims (..., H, W)");
  MARROW_CHECK(top >= 0 && bottom >= 0 && left >= 0 && right >= 0, "pad2d: pads (top ", top, ", bottom ", bottom,
               ", left ", left, ", right ", right, ") must be >= 0 for input ", s.str());
  const index_t H = s.dim(-2), W = s.dim(-1), Ho = H + top + bottom, Wo = W + left + right;
  const bool reflect = mode == PadMode::Reflect;
  if (reflect) {
    const int hp = std::max(top, bottom), wp = std::max(left, right);
    MARROW_CHECK(hp == 0 || hp < H, "pad2d: reflect pad ", hp, " must be smaller than height ", H, " of input ",
                 s.str());
    MARROW_CHECK(wp == 0 || wp < W, "pad2d: reflect pad ", wp, " must be smaller than width ", W, " of input ",
                 s.str());
  }
  // Source row/column of each output row/column; -1 where a zero pad lands.
  auto make_map = [reflect](index_t no, index_t n, index_t before) {
    std::vector<index_t> m(static_cast<std::size_t>(no));
    for (index_t o = 0; o < no; ++o) {
      const index_t i = o - before;
      m[std::size_t(o)] = i >= 0 && i < n ? i : (reflect ? reflect_index(i, n) : -1);
    }
    return m;
  };
  std::vector<index_t> rmap = make_map(Ho, H, top), cmap = make_map(Wo, W, left);
  Shape os = s;
  os[os.rank() - 2] = Ho;
  os[os.rank() - 1] = Wo;
  Tensor<T> out = Tensor<T>::uninitialized(os);
  const index_t planes = s.prod(0, s.rank() - 2);
  const T* px = x.value().data();
  T* po = out.data();
#pragma omp parallel for if (os.numel() >= shape_detail::kShapeParallelMin)
  for (index_t p = 0; p < planes; ++p) {
    for (index_t oh = 0; oh < Ho; ++oh) {
      T* dst = po + (p * Ho + oh) * Wo;
      const index_t ih = rmap[std::size_t(oh)];
      if (ih < 0) {
        std::fill_n(dst, Wo, T(0));
        continue;
      }
      const T* src = px + (p * H + ih) * W;
      for (index_t ow = 0; ow < left; ++ow) dst[ow] = cmap[std::size_t(ow)] < 0 ? T(0) : src[cmap[std::size_t(ow)]];
      std::copy_n(src, W, dst + left);
      for (index_t ow = left + W; ow < Wo; ++ow)
        dst[ow] = cmap[std::size_t(ow)] < 0 ? T(0) : src[cmap[std::size_t(ow)]];
    }
  }
  Var<T> res = t.push(std::move(out), x);
  t.on_backward(res, [x, res, rmap = std::move(rmap), cmap = std::move(cmap), planes, H, W, Ho, Wo, left] {
    const T* g = res.grad().data();
    T* dx = x.grad().data();
    // Planes are independent; reflected rows of one plane collide, so a plane stays on one thread.
#pragma omp parallel for if (res.numel() >= shape_detail::kShapeParallelMin)
    for (index_t p = 0; p < planes; ++p) {
      for (index_t oh = 0; oh < Ho; ++oh) {
        const index_t ih = rmap[std::size_t(oh)];
        if (ih < 0) continue;
        const T* gr = g + (p * Ho + oh) * Wo;
        T* d = dx + (p * H + ih) * W;
        for (index_t w = 0; w < W; ++w) d[w] += gr[left + w];
        for (index_t ow = 0; ow < left; ++ow)
          if (cmap[std::size_t(ow)] >= 0) d[cmap[std::size_t(ow)]] += gr[ow];
        for (index_t ow = left + W; ow < Wo; ++ow)
          if (cmap[std::size_t(ow)] >= 0) d[cmap[std::size_t(ow)]] += gr[ow];
      }
    }
  });
  return res;
}

// ---- index_select / embeddings -----------------------------------------------------
// Gather entries idx[k] along `axis`: (..., n, ...) -> (..., K, ...). idx is 1-D; repeats allowed.
template <class T> Var<T> index_select(Tape<T>& t, const Arg<T>& x, int axis, const Tensor<std::int32_t>& idx) {
  t.check(x, "index_select");
  const Shape& s = x.shape();
  const int a = shape_detail::resolve_axis(s, axis, "index_select");
  MARROW_CHECK(idx.ndim() == 1, "index_select: index must be 1-D, got ", idx.shape().str());
  const index_t K = idx.numel();
  // Plain names, not a structured binding: OpenMP regions and lambdas below capture them
  // (clang before 16 cannot capture structured bindings).
  const shape_detail::AxisSplit split = shape_detail::axis_split(s, a);
  const index_t outer = split.outer, n = split.n, inner = split.inner;
  for (index_t k = 0; k < K; ++k)
    MARROW_CHECK(idx[k] >= 0 && idx[k] < n, "index_select: index ", idx[k], " out of range for axis ", axis,
                 " of size ", n, " (input ", s.str(), ")");
  Shape os = s;
  os[a] = K;
  Tensor<T> out = Tensor<T>::uninitialized(os);
  const T* px = x.value().data();
  T* po = out.data();
#pragma omp parallel for if (os.numel() >= shape_detail::kShapeParallelMin)
  for (index_t o = 0; o < outer; ++o)
    for (index_t k = 0; k < K; ++k) std::copy_n(px + (o * n + idx[k]) * inner, inner, po + (o * K + k) * inner);
  Var<T> res = t.push(std::move(out), x);
  t.on_backward(res, [x, res, idx, outer, n, inner, K] {
    const T* g = res.grad().data();
    T* dx = x.grad().data();
    // Repeated indices hit the same row, so k runs serially within each outer slice.
#pragma omp parallel for if (res.numel() >= shape_detail::kShapeParallelMin && outer > 1)
    for (index_t o = 0; o < outer; ++o)
      for (index_t k = 0; k < K; ++k) {
        T* d = dx + (o * n + idx[k]) * inner;
        const T* gs = g + (o * K + k) * inner;
        for (index_t j = 0; j < inner; ++j) d[j] += gs[j];
      }
  });
  return res;
}

// Look up rows of weight (V, C) for ids of any shape -> ids.shape + (C).
template <class T> Var<T> embedding(Tape<T>& t, const Arg<T>& weight, const Tensor<std::int32_t>& ids) {
  t.check(weight, "embedding");
  MARROW_CHECK(weight.ndim() == 2, "embedding: weight must be (V, C), got ", weight.shape().str());
  const index_t V = weight.dim(0), C = weight.dim(1), N = ids.numel();
  for (index_t i = 0; i < N; ++i)
    MARROW_CHECK(ids[i] >= 0 && ids[i] < V, "embedding: id ", ids[i], " at position ", i, " out of range for V = ", V,
                 " (weight ", weight.shape().str(), ")");
  Shape os = ids.shape();
  os.push_back(C);
  Tensor<T> out = Tensor<T>::uninitialized(os);
  const T* pw = weight.value().data();
  T* po = out.data();
#pragma omp parallel for if (os.numel() >= shape_detail::kShapeParallelMin)
  for (index_t i = 0; i < N; ++i) std::copy_n(pw + index_t(ids[i]) * C, C, po + i * C);
  Var<T> res = t.push(std::move(out), weight);
  t.on_backward(res, [weight, res, ids, N, C] {
    const T* g = res.grad().data();
    T* dw = weight.grad().data();
    for (index_t i = 0; i < N; ++i) {  // serial: repeated ids accumulate into the same row
      T* d = dw + index_t(ids[i]) * C;
      const T* gs = g + i * C;
      for (index_t j = 0; j < C; ++j) d[j] += gs[j];
    }
  });
  return res;
}

// ids (B, T) -> wte[ids[b, t]] + wpe[pos0 + t]: (B, T, C). One op instead of
// two lookups and a broadcast add (three nodes, two (B, T, C) temporaries).
template <class T>
Var<T> token_position_embedding(Tape<T>& t, const Arg<T>& wte, const Arg<T>& wpe, const Tensor<std::int32_t>& ids,
                                index_t pos0 = 0) {
  t.check(wte, "token_position_embedding");
  t.check(wpe, "token_position_embedding");
  MARROW_CHECK(wte.ndim() == 2 && wpe.ndim() == 2 && wte.dim(1) == wpe.dim(1),
               "token_position_embedding: wte ", wte.shape().str(), " and wpe ", wpe.shape().str(),
               " must be (V, C) and (block_size, C)");
  MARROW_CHECK(ids.ndim() == 2, "token_position_embedding: ids must be (B, T), got ", ids.shape().str());
  const index_t V = wte.dim(0), C = wte.dim(1), P = wpe.dim(0), B = ids.dim(0), Tn = ids.dim(1);
  MARROW_CHECK(pos0 >= 0 && pos0 + Tn <= P, "token_position_embedding: positions [", pos0, ", ", pos0 + Tn,
               ") exceed block_size ", P, " (ids ", ids.shape().str(), ")");
  for (index_t i = 0; i < B * Tn; ++i)
    MARROW_CHECK(ids[i] >= 0 && ids[i] < V, "token_position_embedding: token id ", ids[i], " at position ", i,
                 " out of range for vocabulary size ", V);
  Tensor<T> out = Tensor<T>::uninitialized(Shape{B, Tn, C});
  const T* pe = wte.value().data();
  const T* pp = wpe.value().data() + pos0 * C;
  T* po = out.data();
  for (index_t i = 0; i < B * Tn; ++i) {
    const T* e = pe + index_t(ids[i]) * C;
    const T* p = pp + (i % Tn) * C;
    T* o = po + i * C;
#pragma omp simd
    for (index_t j = 0; j < C; ++j) o[j] = e[j] + p[j];
  }
  Var<T> res = t.push(std::move(out), wte, wpe);
  t.on_backward(res, [wte, wpe, res, ids, B, Tn, C, pos0] {
    const T* g = res.grad().data();
    T* dwte = wte.requires_grad() ? wte.grad().data() : nullptr;
    T* dwpe = wpe.requires_grad() ? wpe.grad().data() + pos0 * C : nullptr;
    for (index_t i = 0; i < B * Tn; ++i) {  // serial: repeated ids and positions share rows
      const T* gi = g + i * C;
      if (dwte) {
        T* d = dwte + index_t(ids[i]) * C;
#pragma omp simd
        for (index_t j = 0; j < C; ++j) d[j] += gi[j];
      }
      if (dwpe) {
        T* d = dwpe + (i % Tn) * C;
#pragma omp simd
        for (index_t j = 0; j < C; ++j) d[j] += gi[j];
      }
    }
  });
  return res;
}

// ---- one_hot (no tape) -------------------------------------------------------------
// labels of any shape -> labels.shape + (classes), 1 at each label.
template <class T> Tensor<T> one_hot(const Tensor<std::int32_t>& labels, int classes) {
  MARROW_CHECK(classes > 0, "one_hot: classes must be > 0, got ", classes);
  Shape os = labels.shape();
  os.push_back(classes);
  Tensor<T> out(os);
  for (index_t i = 0; i < labels.numel(); ++i) {
    MARROW_CHECK(labels[i] >= 0 && labels[i] < classes, "one_hot: label ", labels[i], " at position ", i,
                 " out of range for ", classes, " classes");
    out[i * classes + labels[i]] = T(1);
  }
  return out;
}

}  // namespace marrow

/* Backward rules (g = upstream gradient):
   reshape / flatten  dx += g viewed in x's shape
   permute            dx += g permuted back (dx[perm-mapped index] += g)    transpose: its own inverse
   slice              dx[start:stop along axis] += g
   concat             dx_k += the slab of g that x_k filled
   split              one slice per piece
   concat_global      dx += g[:, :C]      dg[n, d] += Σ_{h,w} g[n, C + d, h, w]
   pad2d zeros        dx += g cropped to the interior
   pad2d reflect      dx[src(i)] += g[i] for every output i (edges fold back onto the mirrored entries)
   index_select       dx[idx[k] along axis] += g[k]        (repeated indices accumulate)
   embedding          dW[ids[i]] += g[i]                   (repeated ids accumulate)
   token_position_embedding  dwte[ids[b, t]] += g[b, t]     dwpe[pos0 + t] += Σ_b g[b, t]
*/
