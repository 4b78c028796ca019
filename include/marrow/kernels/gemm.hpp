#pragma once
// The one entry point for dense matrix products: every GEMM of ops/ and
// kernels/ goes through gemm() / gemm_add(), and this header alone decides how
// many threads a product gets.
//
// Left to itself, Eigen spreads a product over OpenMP threads whenever the
// calling thread is alone in its team (outside a parallel region, or inside one
// that runs on one thread) and the product holds 50,000 multiply-adds per thread.
// Two things go wrong with that:
//  - time: products that small gain nothing from a second thread, and a team
//    started inside another region is not taken from libgomp's pool of threads
//    but created anew; `colorize apply` on 2 threads spent half its time in
//    Eigen's GEMM set-up and a third spinning in libgomp, 10x slower than on 1;
//  - bits: with more than one thread Eigen cuts the k-sum into blocks of 320
//    instead of 624 (float, AVX-512), so a product with K > 320 rounds
//    differently on 2 threads than on 1 (256×256×384, 768×128×512).
// So Eigen never threads a product here. Inside any parallel region (even one
// running on one thread: splitting the colorizer's per-image products there cost
// 12 ms an image against 1.7 ms on one thread), or below
// kernel_config().gemm_parallel_min multiply-adds, the product runs on the
// calling thread. Above it, at the top level, the destination is cut into one
// piece per thread along Eigen's register blocks (rows in multiples of nr,
// columns in multiples of mr, for a row-major destination) and each thread runs
// its piece alone. A one-thread product blocks k by K alone, and every entry
// stays in the same register block, so each entry is summed in the same order
// as in the whole product: the result is bitwise the same on any number of
// threads (tests/unit_ops_reduce_matmul.cpp checks it).
//
// Float products run on our own kernel instead (kernels/sgemm.hpp) wherever the
// build targets AVX-512 or AVX2+FMA, unless kernel_config().gemm_engine says
// Eigen: 1.3x Eigen's speed on the models' shapes, the same thread rules (split
// only at the top level, above gemm_parallel_min) and the same promise of equal
// bits on any thread count. double (the gradient checks) stays on Eigen.
// kernel_config().gemm_precision = Bf16 sends every float product to the bf16
// kernel (kernels/sgemm_bf16.hpp), which has no fallback: without AVX512-BF16
// it throws.
#include <Eigen/Core>
#include <algorithm>
#include <type_traits>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "../shape.hpp"
#include "config.hpp"
#include "sgemm.hpp"
#include "sgemm_bf16.hpp"

namespace marrow::detail {

template <class T> using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T> using MatView = Eigen::Map<RowMat<T>>;
template <class T> using CMatView = Eigen::Map<const RowMat<T>>;

// Eigen threads a product when omp_get_max_threads() > 1 and the calling thread is
// alone in its team; lowering this thread's own thread count for the product stops
// that without touching any other thread or Eigen's global setting.
class EigenOnThisThread {
 public:
  EigenOnThisThread() {
#ifdef _OPENMP
    if (omp_get_num_threads() == 1 && (saved_ = omp_get_max_threads()) > 1) omp_set_num_threads(1);
#endif
  }
  ~EigenOnThisThread() {
#ifdef _OPENMP
    if (saved_ > 1) omp_set_num_threads(saved_);
#endif
  }
  EigenOnThisThread(const EigenOnThisThread&) = delete;
  EigenOnThisThread& operator=(const EigenOnThisThread&) = delete;

 private:
  int saved_ = 0;
};

// Every product runs on one of four operand forms: a and b each a row-major or a
// column-major (transposed) view with an outer stride, the destination a row-major
// view with an outer stride. Eigen instantiates its product machinery once per
// form, not once per caller's expression type (a block of a map, its transpose,
// the same thing cut by rows for a thread), which is what the library's compile
// time goes on. Eigen picks its kernels by storage order and inner strides stay
// 1, so float products keep their bits; in double, a few tiny products (rows +
// cols + depth under 20, which Eigen computes coefficient-wise) may round their
// last bit differently than through the old expression types.
template <class T, int Order>
using StridedView = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Order>, 0, Eigen::OuterStride<>>;
template <class T> using DstView = Eigen::Map<RowMat<T>, 0, Eigen::OuterStride<>>;

template <class X>
auto strided_view(const X& x) {
  using T = std::remove_const_t<typename X::Scalar>;
  static_assert(bool(X::Flags & Eigen::DirectAccessBit), "gemm: operands must be views of memory (maps, blocks, transposes)");
  eigen_assert(x.innerStride() == 1);
  constexpr int order = X::IsRowMajor ? Eigen::RowMajor : Eigen::ColMajor;
  return StridedView<T, order>(x.data(), x.rows(), x.cols(), Eigen::OuterStride<>(x.outerStride()));
}

// dst (+)= alpha·a·b on this thread, with the expression the ops always used
// (alpha 1: the plain product; else Eigen folds alpha into its GEMM).
template <bool Add, class T, class A, class B>
void gemm_here(DstView<T> dst, const A& a, const B& b, T alpha) {
  EigenOnThisThread one;
  if (alpha == T(1)) {
    if constexpr (Add) dst.noalias() += a * b;
    else dst.noalias() = a * b;
  } else {
    if constexpr (Add) dst.noalias() += alpha * (a * b);
    else dst.noalias() = alpha * (a * b);
  }
}

// How many threads a product may use: the team's, outside every parallel region.
inline int gemm_team() {
#ifdef _OPENMP
  return omp_get_level() > 0 ? 1 : omp_get_max_threads();
#else
  return 1;
#endif
}

// Whether this float product runs on our kernel.
// A view's form for sgemm: a row-major view is op = N with its outer stride as the
// leading dimension; a column-major one (a transposed row-major matrix) is op = T.
template <class X> constexpr Trans gemm_trans() { return X::IsRowMajor ? Trans::N : Trans::T; }

// dst = act(alpha·a·b + beta·dst + bias) on our kernels, where the configuration
// sends float products there (bf16 precision, or the Own engine in a build that
// has one); false leaves the product to the caller's Eigen path.
template <class A, class B>
bool sgemm_product(DstView<float> dst, const A& a, const B& b, float alpha, float beta,
                   const GemmEpilogue& ep = {}) {
  const KernelConfig& config = kernel_config();
  if (config.gemm_precision == GemmPrecision::Bf16) {
    sgemm_bf16(gemm_trans<A>(), gemm_trans<B>(), dst.rows(), dst.cols(), a.cols(), alpha, a.data(), a.outerStride(),
               b.data(), b.outerStride(), beta, dst.data(), dst.outerStride(), ep);
    return true;
  }
#ifdef MARROW_SGEMM_NATIVE
  if (config.gemm_engine == GemmEngine::Own) {
    sgemm(gemm_trans<A>(), gemm_trans<B>(), dst.rows(), dst.cols(), a.cols(), alpha, a.data(), a.outerStride(),
          b.data(), b.outerStride(), beta, dst.data(), dst.outerStride(), ep);
    return true;
  }
#endif
  return false;
}

template <bool Add, class T, class A, class B>
void gemm_into(DstView<T> dst, const A& a, const B& b, T alpha) {
  if constexpr (std::is_same_v<T, float>) {
    if (sgemm_product(dst, a, b, alpha, Add ? 1.0f : 0.0f)) return;
  }
  const index_t rows = dst.rows(), cols = dst.cols(), depth = a.cols(), ld = dst.outerStride();
  const int team = gemm_team();
  // Eigen's register blocks for a row-major destination: nr destination rows by mr columns.
  // Rows whenever every thread gets a block of them (cutting the colorizer's 64×1024×32
  // by columns lost to one thread, 0.86x; by rows it won, 1.24x), else the longer side.
  constexpr index_t nr = Eigen::internal::gebp_traits<T, T>::nr, mr = Eigen::internal::gebp_traits<T, T>::mr;
  const bool by_rows = rows / nr >= team || rows / nr >= cols / mr;
  const index_t blocks = by_rows ? rows / nr : cols / mr;
  // One row or column is a matrix-vector product (another kernel), and Eigen computes
  // products with rows + cols + depth < 20 coefficient-wise: pieces must stay GEMMs too.
  const bool splittable = rows > 1 && cols > 1 && (by_rows ? nr + cols : rows + mr) + depth >= 20;
  if (team < 2 || blocks < 2 || !splittable || double(rows) * double(cols) * double(depth) < kernel_config().gemm_parallel_min)
    return gemm_here<Add>(dst, a, b, alpha);
#pragma omp parallel num_threads(int(std::min<index_t>(team, blocks)))
  {
    index_t n = 1, i = 0;
#ifdef _OPENMP
    n = omp_get_num_threads();
    i = omp_get_thread_num();
#endif
    const index_t b0 = i * blocks / n, b1 = (i + 1) * blocks / n;  // the last piece takes the ragged end
    if (by_rows) {
      const index_t r0 = b0 * nr, r1 = i + 1 == n ? rows : b1 * nr;
      const DstView<T> piece(dst.data() + r0 * ld, r1 - r0, cols, Eigen::OuterStride<>(ld));
      gemm_here<Add>(piece, strided_view(a.middleRows(r0, r1 - r0)), b, alpha);
    } else {
      const index_t c0 = b0 * mr, c1 = i + 1 == n ? cols : b1 * mr;
      const DstView<T> piece(dst.data() + c0, rows, c1 - c0, Eigen::OuterStride<>(ld));
      gemm_here<Add>(piece, a, strided_view(b.middleCols(c0, c1 - c0)), alpha);
    }
  }
}

template <class Dst>
auto dst_view(Dst& dst) {
  using T = typename Dst::Scalar;
  static_assert(Dst::IsRowMajor, "gemm: the destination must be row-major");
  static_assert(bool(Dst::Flags & Eigen::DirectAccessBit), "gemm: the destination must be a view of memory");
  eigen_assert(dst.innerStride() == 1);
  return DstView<T>(dst.data(), dst.rows(), dst.cols(), Eigen::OuterStride<>(dst.outerStride()));
}

// dst = alpha·a·b. dst: a row-major Eigen view (a Map or a block of one); a, b:
// Eigen views with direct access (Maps, blocks, transposes).
template <class Dst, class A, class B>
void gemm(Dst&& dst, const A& a, const B& b, typename std::decay_t<Dst>::Scalar alpha = 1) {
  gemm_into<false>(dst_view(dst), strided_view(a), strided_view(b), alpha);
}
// dst += alpha·a·b.
template <class Dst, class A, class B>
void gemm_add(Dst&& dst, const A& a, const B& b, typename std::decay_t<Dst>::Scalar alpha = 1) {
  gemm_into<true>(dst_view(dst), strided_view(a), strided_view(b), alpha);
}

// dst = a·b + bias, one bias value per column of dst (a linear layer's y = x·Wᵀ + b):
// on our kernel the bias is added as each tile is stored, with no second pass.
template <class Dst, class A, class B>
void gemm_bias(Dst&& dst, const A& a, const B& b, const typename std::decay_t<Dst>::Scalar* bias) {
  using T = typename std::decay_t<Dst>::Scalar;
  auto d = dst_view(dst);
  const auto av = strided_view(a);
  const auto bv = strided_view(b);
  if constexpr (std::is_same_v<T, float>) {
    GemmEpilogue ep;
    ep.bias = bias;
    ep.bias_kind = GemmBias::PerCol;
    if (sgemm_product(d, av, bv, 1.0f, 0.0f, ep)) return;
  }
  gemm_into<false>(d, av, bv, T(1));
  d.rowwise() += Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>(bias, d.cols());
}

}  // namespace marrow::detail
