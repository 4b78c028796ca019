#pragma once
// Shape: a small fixed-capacity list of dimensions, a value type that never
// touches the heap (ops build many of them per step).
#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <string>
#include <vector>

#include "config.hpp"

namespace marrow {

using index_t = std::int64_t;

class Shape {
 public:
  static constexpr int kMaxRank = 8;

  Shape() = default;
  Shape(std::initializer_list<index_t> dims) { assign(dims.begin(), dims.end()); }
  explicit Shape(const std::vector<index_t>& dims) { assign(dims.begin(), dims.end()); }
  template <class It> Shape(It first, It last) { assign(first, last); }

  int rank() const { return rank_; }
  bool empty() const { return rank_ == 0; }
  index_t operator[](int i) const { return d_[i]; }
  index_t& operator[](int i) { return d_[i]; }
  // Dimension with Python-style negative indexing: dim(-1) is the last.
  index_t dim(int i) const { return d_[axis(i)]; }
  int axis(int i) const {
    const int a = i < 0 ? i + rank_ : i;
    MARROW_CHECK(a >= 0 && a < rank_, "axis ", i, " out of range for shape ", str());
    return a;
  }
  index_t numel() const {
    index_t n = 1;
    for (int i = 0; i < rank_; ++i) n *= d_[i];
    return n;
  }
  const index_t* begin() const { return d_; }
  const index_t* end() const { return d_ + rank_; }

  void push_back(index_t v) {
    MARROW_CHECK(rank_ < kMaxRank, "shape rank exceeds ", kMaxRank);
    d_[rank_++] = v;
  }
  void insert(int pos, index_t v) {
    MARROW_CHECK(rank_ < kMaxRank, "shape rank exceeds ", kMaxRank);
    for (int i = rank_; i > pos; --i) d_[i] = d_[i - 1];
    d_[pos] = v;
    ++rank_;
  }
  void erase(int pos) {
    for (int i = pos; i + 1 < rank_; ++i) d_[i] = d_[i + 1];
    --rank_;
  }
  // Product of dims in [first, last).
  index_t prod(int first, int last) const {
    index_t n = 1;
    for (int i = first; i < last; ++i) n *= d_[i];
    return n;
  }

  std::vector<index_t> vec() const { return {begin(), end()}; }

  std::string str() const {
    std::string s = "(";
    for (int i = 0; i < rank_; ++i) s += (i ? ", " : "") + std::to_string(d_[i]);
    return s + (rank_ == 1 ? ",)" : ")");
  }

  friend bool operator==(const Shape& a, const Shape& b) {
    return a.rank_ == b.rank_ && std::equal(a.begin(), a.end(), b.begin());
  }
  friend std::ostream& operator<<(std::ostream& os, const Shape& s) { return os << s.str(); }

 private:
  template <class It> void assign(It first, It last) {
    rank_ = 0;
    for (; first != last; ++first) {
      MARROW_CHECK(rank_ < kMaxRank, "shape rank exceeds ", kMaxRank);
      MARROW_CHECK(*first >= 0, "negative dimension ", *first, " in shape");
      d_[rank_++] = index_t(*first);
    }
  }
  index_t d_[kMaxRank] = {};
  int rank_ = 0;
};

// Row-major strides of a contiguous shape.
inline void contiguous_strides(const Shape& s, index_t* strides) {
  index_t acc = 1;
  for (int i = s.rank() - 1; i >= 0; --i) {
    strides[i] = acc;
    acc *= s[i];
  }
}

// NumPy broadcasting: align trailing dims; each pair equal or one of them 1.
inline Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op = "broadcast") {
  const int r = std::max(a.rank(), b.rank());
  Shape out;
  for (int i = 0; i < r; ++i) {
    const int ia = i - (r - a.rank()), ib = i - (r - b.rank());
    const index_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
    MARROW_CHECK(da == db || da == 1 || db == 1, op, ": shapes ", a.str(), " and ", b.str(),
                 " cannot be broadcast together");
    out.push_back(da == 1 ? db : da);
  }
  return out;
}

// Mirror index i into [0, n) without repeating the edge (numpy's "reflect"),
// any distance out: -1 -> 1, n -> n - 2. The one reflection of the library
// (pad2d, overlap-tile inference, augmentation's borders).
inline index_t reflect_index(index_t i, index_t n) {
  if (n == 1) return 0;
  const index_t period = 2 * (n - 1);
  i %= period;
  if (i < 0) i += period;
  return i < n ? i : period - i;
}

}  // namespace marrow
