#pragma once
// Tensor<T>: an N-d array with row-major contiguous storage. No autodiff here;
// the tape (tape.hpp) builds on it.
//
// Storage is shared: copying a Tensor or reshaping it gives a view of the same
// buffer (like a PyTorch tensor). clone() makes a deep copy. Buffers come from
// the caching BufferPool so training steps reuse memory instead of faulting it in.
#include <Eigen/Core>
#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "config.hpp"
#include "pool.hpp"
#include "rng.hpp"
#include "shape.hpp"

namespace marrow {

template <class T> class Tensor {
 public:
  using value_type = T;
  using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using MatMap = Eigen::Map<Matrix, Eigen::Aligned64>;
  using CMatMap = Eigen::Map<const Matrix, Eigen::Aligned64>;
  using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
  using ArrMap = Eigen::Map<Array, Eigen::Aligned64>;
  using CArrMap = Eigen::Map<const Array, Eigen::Aligned64>;

  Tensor() = default;
  // Zero-filled tensor of the given shape.
  explicit Tensor(const Shape& shape) : Tensor(uninitialized(shape)) { zero(); }
  Tensor(const Shape& shape, std::initializer_list<T> values) : Tensor(uninitialized(shape)) {
    MARROW_CHECK(index_t(values.size()) == numel(), "Tensor: ", values.size(),
                 " values given for shape ", shape.str());
    std::copy(values.begin(), values.end(), data());
  }
  Tensor(const Shape& shape, const std::vector<T>& values) : Tensor(uninitialized(shape)) {
    MARROW_CHECK(index_t(values.size()) == numel(), "Tensor: ", values.size(),
                 " values given for shape ", shape.str());
    std::copy(values.begin(), values.end(), data());
  }

  // Storage left uninitialized: for outputs a kernel writes in full.
  static Tensor uninitialized(const Shape& shape) {
    Tensor t;
    t.shape_ = shape;
    t.buf_ = std::make_shared<Buffer>(std::size_t(shape.numel()));
    t.data_ = t.buf_->ptr;
    return t;
  }

  // ---- shape -------------------------------------------------------------
  const Shape& shape() const { return shape_; }
  int ndim() const { return shape_.rank(); }
  index_t dim(int i) const { return shape_.dim(i); }
  index_t numel() const { return shape_.numel(); }
  bool defined() const { return data_ != nullptr; }

  // ---- data --------------------------------------------------------------
  T* data() { return data_; }
  const T* data() const { return data_; }
  T* begin() { return data_; }
  T* end() { return data_ + numel(); }
  const T* begin() const { return data_; }
  const T* end() const { return data_ + numel(); }
  T& operator[](index_t i) { return data_[i]; }
  const T& operator[](index_t i) const { return data_[i]; }

  // Multi-index element access, bounds-checked.
  T& at(std::initializer_list<index_t> idx) { return data_[offset(idx)]; }
  const T& at(std::initializer_list<index_t> idx) const { return data_[offset(idx)]; }
  // The single value of a one-element tensor.
  T item() const {
    MARROW_CHECK(numel() == 1, "item(): tensor of shape ", shape_.str(), " has ", numel(), " elements");
    return data_[0];
  }

  // ---- Eigen views (kernels) ---------------------------------------------
  // As a (rows, cols) matrix; default: all leading dims x last dim.
  MatMap mat() { return MatMap(data_, rows_(), cols_()); }
  CMatMap mat() const { return CMatMap(data_, rows_(), cols_()); }
  MatMap mat(index_t r, index_t c) { check_rc(r, c); return MatMap(data_, r, c); }
  CMatMap mat(index_t r, index_t c) const { check_rc(r, c); return CMatMap(data_, r, c); }
  ArrMap arr() { return ArrMap(data_, numel()); }
  CArrMap arr() const { return CArrMap(data_, numel()); }

  // ---- in place ------------------------------------------------------------
  // Large fills are split across threads: one core does not saturate memory
  // bandwidth, and zeroing gradient buffers in backward was otherwise serial
  // work (~3 % of a 2-thread DCGAN step, on one core while the other waited).
  Tensor& fill(T v) {
    T* d = data_;
    split_fill(numel(), [d, v](index_t b, index_t e) { std::fill(d + b, d + e, v); });
    return *this;
  }
  Tensor& zero() {
    T* d = data_;
    split_fill(numel(), [d](index_t b, index_t e) {
      std::memset(static_cast<void*>(d + b), 0, sizeof(T) * std::size_t(e - b));
    });
    return *this;
  }
  // Copy values from a tensor with the same number of elements.
  Tensor& copy_from(const Tensor& o) {
    MARROW_CHECK(o.numel() == numel(), "copy_from: ", o.shape().str(), " into ", shape_.str());
    if (o.data_ != data_) std::memcpy(static_cast<void*>(data_), o.data_, sizeof(T) * std::size_t(numel()));
    return *this;
  }

  // ---- new tensors ---------------------------------------------------------
  Tensor clone() const {
    Tensor t = uninitialized(shape_);
    if (numel()) std::memcpy(static_cast<void*>(t.data_), data_, sizeof(T) * std::size_t(numel()));
    return t;
  }
  template <class U> Tensor<U> cast() const {
    Tensor<U> t = Tensor<U>::uninitialized(shape_);
    for (index_t i = 0; i < numel(); ++i) t[i] = U(data_[i]);
    return t;
  }

  // A view with another shape over the same storage; one dim may be -1.
  Tensor reshape(std::initializer_list<index_t> dims) const { return reshape(std::vector<index_t>(dims)); }
  Tensor reshape(const std::vector<index_t>& dims) const {
    Shape s;
    int infer = -1;
    index_t known = 1;
    for (std::size_t i = 0; i < dims.size(); ++i) {
      if (dims[i] == -1) {
        MARROW_CHECK(infer < 0, "reshape: more than one -1 in target for ", shape_.str());
        infer = int(i);
        s.push_back(0);
      } else {
        MARROW_CHECK(dims[i] >= 0, "reshape: negative dimension ", dims[i]);
        s.push_back(dims[i]);
        known *= dims[i];
      }
    }
    if (infer >= 0) {
      MARROW_CHECK(known > 0 && numel() % known == 0, "reshape: cannot infer -1 reshaping ", shape_.str());
      s[infer] = numel() / known;
    }
    return reshape(s);
  }
  Tensor reshape(const Shape& s) const {
    MARROW_CHECK(s.numel() == numel(), "reshape: ", shape_.str(), " (", numel(), " elements) to ", s.str(),
                 " (", s.numel(), " elements)");
    Tensor t = *this;
    t.shape_ = s;
    return t;
  }
  Tensor flatten() const { return reshape(Shape{numel()}); }

  // Reorder axes (a copy: storage stays contiguous).
  Tensor permute(const std::vector<int>& perm) const {
    const int r = ndim();
    MARROW_CHECK(int(perm.size()) == r, "permute: ", perm.size(), " axes given for shape ", shape_.str());
    Shape os;
    bool seen[Shape::kMaxRank] = {};
    index_t in_strides[Shape::kMaxRank];
    contiguous_strides(shape_, in_strides);
    index_t src_stride[Shape::kMaxRank];
    for (int i = 0; i < r; ++i) {
      const int a = shape_.axis(perm[i]);
      MARROW_CHECK(!seen[a], "permute: axis ", perm[i], " repeated");
      seen[a] = true;
      os.push_back(shape_[a]);
      src_stride[i] = in_strides[a];
    }
    Tensor out = uninitialized(os);
    strided_copy(data_, src_stride, os, out.data_);
    return out;
  }
  Tensor transpose(int a, int b) const {
    std::vector<int> perm(ndim());
    for (int i = 0; i < ndim(); ++i) perm[i] = i;
    std::swap(perm[shape_.axis(a)], perm[shape_.axis(b)]);
    return permute(perm);
  }
  // Elements [start, stop) along one axis (a copy). Negative bounds count from the end.
  Tensor slice(int axis, index_t start, index_t stop) const {
    const int a = shape_.axis(axis);
    const index_t n = shape_[a];
    if (start < 0) start += n;
    if (stop < 0) stop += n;
    MARROW_CHECK(0 <= start && start <= stop && stop <= n, "slice: [", start, ", ", stop, ") out of range for axis ",
                 axis, " of ", shape_.str());
    Shape os = shape_;
    os[a] = stop - start;
    Tensor out = uninitialized(os);
    const index_t outer = shape_.prod(0, a), inner = shape_.prod(a + 1, ndim());
    for (index_t o = 0; o < outer; ++o)
      std::copy_n(data_ + (o * n + start) * inner, (stop - start) * inner, out.data_ + o * (stop - start) * inner);
    return out;
  }

 private:
  // f(begin, end) over [0, n): in 64 KB pieces on all threads when n spans at least 1 MB.
  template <class F> static void split_fill(index_t n, F f) {
    constexpr index_t piece = index_t(65536 / sizeof(T)), parallel_from = 16 * piece;
    if (n < parallel_from) return f(0, n);
#pragma omp parallel for schedule(static)
    for (index_t b = 0; b < n; b += piece) f(b, std::min(n, b + piece));
  }
  template <class U> friend class Tensor;

  // Storage that returns itself to the pool.
  struct Buffer {
    explicit Buffer(std::size_t n) : n(n), ptr(static_cast<T*>(BufferPool::instance().allocate(n * sizeof(T)))) {}
    ~Buffer() { BufferPool::instance().release(ptr, n * sizeof(T)); }
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
    std::size_t n;
    T* ptr;
  };

  index_t rows_() const { return ndim() == 0 ? 1 : shape_.prod(0, ndim() - 1); }
  index_t cols_() const { return ndim() == 0 ? 1 : shape_.dim(-1); }
  void check_rc(index_t r, index_t c) const {
    MARROW_CHECK(r * c == numel(), "mat(", r, ", ", c, ") of tensor with shape ", shape_.str());
  }
  index_t offset(std::initializer_list<index_t> idx) const {
    MARROW_CHECK(int(idx.size()) == ndim(), "at(): ", idx.size(), " indices for shape ", shape_.str());
    index_t off = 0;
    int i = 0;
    for (index_t v : idx) {
      MARROW_CHECK(v >= 0 && v < shape_[i], "at(): index ", v, " out of range for axis ", i, " of ", shape_.str());
      off = off * shape_[i] + v;
      ++i;
    }
    return off;
  }
  // Copy a strided source (strides per output axis) into contiguous dst of shape os.
  static void strided_copy(const T* src, const index_t* stride, const Shape& os, T* dst) {
    const int r = os.rank();
    if (os.numel() == 0) return;
    if (r == 0) {
      *dst = *src;
      return;
    }
    index_t idx[Shape::kMaxRank] = {};
    const index_t last = os[r - 1], ls = stride[r - 1];
    const index_t n = os.numel();
    index_t src_off = 0;
    for (index_t i = 0; i < n; i += last) {
      for (index_t j = 0; j < last; ++j) dst[i + j] = src[src_off + j * ls];
      for (int d = r - 2; d >= 0; --d) {  // odometer over the outer dims
        src_off += stride[d];
        if (++idx[d] < os[d]) break;
        src_off -= stride[d] * os[d];
        idx[d] = 0;
      }
    }
  }

  std::shared_ptr<Buffer> buf_;
  T* data_ = nullptr;
  Shape shape_;
};

// ---- factories ---------------------------------------------------------------
template <class T> Tensor<T> zeros(const Shape& s) { return Tensor<T>(s); }
template <class T> Tensor<T> full(const Shape& s, T v) {
  Tensor<T> t = Tensor<T>::uninitialized(s);
  t.fill(v);
  return t;
}
template <class T> Tensor<T> ones(const Shape& s) { return full<T>(s, T(1)); }
template <class T> Tensor<T> zeros_like(const Tensor<T>& t) { return Tensor<T>(t.shape()); }
// 0, step, 2*step, ... (n values).
template <class T> Tensor<T> arange(index_t n, T start = T(0), T step = T(1)) {
  Tensor<T> t = Tensor<T>::uninitialized(Shape{n});
  for (index_t i = 0; i < n; ++i) t[i] = start + T(i) * step;
  return t;
}
// Normal(mean, std) draws in index order: the same numbers on every machine and thread count.
template <class T> Tensor<T> randn(const Shape& s, Rng& rng, double mean = 0.0, double stddev = 1.0) {
  Tensor<T> t = Tensor<T>::uninitialized(s);
  for (auto& v : t) v = T(rng.normal(mean, stddev));
  return t;
}
template <class T> Tensor<T> uniform(const Shape& s, Rng& rng, double lo = 0.0, double hi = 1.0) {
  Tensor<T> t = Tensor<T>::uninitialized(s);
  for (auto& v : t) v = T(rng.uniform(lo, hi));
  return t;
}

}  // namespace marrow
