#pragma once
// Matrix products through the GEMM entry point (kernels/gemm.hpp): matmul (2-D
// and batched with broadcast batch dims) and linear (x·Wᵀ + b).
#include <Eigen/Core>

#include "../kernels/gemm.hpp"
#include "../tape.hpp"
#include "broadcast.hpp"

namespace marrow {

namespace detail {
// Multiply-adds below which a batched product runs on one thread: waking threads costs ~10 µs.
inline constexpr index_t kMatmulParallelMin = 1 << 16;

// Batch geometry of a (..., N, K) @ (..., K, M) product.
struct BatchPlan {
  Shape batch;  // broadcast batch dims
  std::vector<index_t> a_off, b_off;  // per output batch: which a / b matrix
  bool broadcast = false;             // some matrix of a or b feeds several outputs
};
inline BatchPlan batch_plan(const Shape& as, const Shape& bs) {
  Shape ab(as.begin(), as.end() - 2), bb(bs.begin(), bs.end() - 2);
  BatchPlan p;
  p.batch = broadcast_shapes(ab, bb, "matmul (batch dims)");
  index_t sa[Shape::kMaxRank], sb[Shape::kMaxRank];
  broadcast_strides(ab, p.batch, sa);
  broadcast_strides(bb, p.batch, sb);
  const index_t nb = p.batch.numel();
  p.a_off.resize(std::size_t(nb));
  p.b_off.resize(std::size_t(nb));
  if (p.batch.rank() == 0) {
    p.a_off[0] = p.b_off[0] = 0;
  } else {
    broadcast_for_each(p.batch, sa, sb, [&](index_t i, index_t ia, index_t ib) {
      p.a_off[std::size_t(i)] = ia;
      p.b_off[std::size_t(i)] = ib;
    });
  }
  p.broadcast = ab.numel() != nb || bb.numel() != nb;
  return p;
}
}  // namespace detail

// a: (..., N, K), b: (..., K, M) -> (..., N, M); batch dims broadcast.
template <class T> Var<T> matmul(Tape<T>& t, const Arg<T>& a, const Arg<T>& b) {
  using namespace detail;
  t.check(a, "matmul");
  t.check(b, "matmul");
  MARROW_CHECK(a.ndim() >= 2 && b.ndim() >= 2, "matmul: inputs must be at least 2-D, got ", a.shape().str(), " and ",
               b.shape().str());
  const index_t N = a.dim(-2), K = a.dim(-1), M = b.dim(-1);
  MARROW_CHECK(b.dim(-2) == K, "matmul: inner dims differ: ", a.shape().str(), " @ ", b.shape().str());
  BatchPlan p = batch_plan(a.shape(), b.shape());
  Shape os = p.batch;
  os.push_back(N);
  os.push_back(M);
  Tensor<T> out = Tensor<T>::uninitialized(os);
  const index_t nb = p.batch.numel();
  const T* pa = a.value().data();
  const T* pb = b.value().data();
  T* po = out.data();
  if (nb == 1) {
    gemm(MatView<T>(po, N, M), CMatView<T>(pa, N, K), CMatView<T>(pb, K, M));
  } else {
#pragma omp parallel for schedule(static) if (nb * N * K * M >= kMatmulParallelMin)
    for (index_t i = 0; i < nb; ++i)
      gemm(MatView<T>(po + i * N * M, N, M), CMatView<T>(pa + p.a_off[i] * N * K, N, K),
           CMatView<T>(pb + p.b_off[i] * K * M, K, M));
  }
  Var<T> res = t.push(std::move(out), a, b);
  t.on_backward(res, [a, b, res, p = std::move(p), N, K, M] {
    const index_t nb = p.batch.numel();
    const T* g = res.grad().data();
    const T* pa = a.value().data();
    const T* pb = b.value().data();
    T* da = a.requires_grad() ? a.grad().data() : nullptr;
    T* db = b.requires_grad() ? b.grad().data() : nullptr;
    auto one = [&](index_t i) {
      CMatView<T> G(g + i * N * M, N, M);
      if (da) gemm_add(MatView<T>(da + p.a_off[i] * N * K, N, K), G, CMatView<T>(pb + p.b_off[i] * K * M, K, M).transpose());  // dA = dY Bᵀ
      if (db) gemm_add(MatView<T>(db + p.b_off[i] * K * M, K, M), CMatView<T>(pa + p.a_off[i] * N * K, N, K).transpose(), G);  // dB = Aᵀ dY
    };
    if (nb == 1 || p.broadcast) {
      for (index_t i = 0; i < nb; ++i) one(i);  // broadcast inputs accumulate from several batches: serial
    } else {
#pragma omp parallel for schedule(static) if (nb * N * K * M >= kMatmulParallelMin)
      for (index_t i = 0; i < nb; ++i) one(i);
    }
  });
  return res;
}

// x: (..., in), weight: (out, in), bias: (out) or undefined -> (..., out).
template <class T> Var<T> linear(Tape<T>& t, const Arg<T>& x, const Arg<T>& weight, const Arg<T>& bias = Var<T>()) {
  using namespace detail;
  t.check(x, "linear");
  t.check(weight, "linear");
  if (bias.defined()) t.check(bias, "linear");
  MARROW_CHECK(weight.ndim() == 2, "linear: weight must be (out, in), got ", weight.shape().str());
  const index_t in = weight.dim(1), outf = weight.dim(0);
  MARROW_CHECK(x.ndim() >= 1 && x.dim(-1) == in, "linear: input ", x.shape().str(), " does not end in ", in,
               " (weight ", weight.shape().str(), ")");
  const bool has_bias = bias.defined();
  if (has_bias)
    MARROW_CHECK(bias.ndim() == 1 && bias.dim(0) == outf, "linear: bias ", bias.shape().str(), " for weight ",
                 weight.shape().str());
  const index_t rows = x.numel() / in;
  Shape os = x.shape();
  os[os.rank() - 1] = outf;
  Tensor<T> out = Tensor<T>::uninitialized(os);
  MatView<T> Y(out.data(), rows, outf);
  if (has_bias)
    gemm_bias(Y, CMatView<T>(x.value().data(), rows, in), CMatView<T>(weight.value().data(), outf, in).transpose(),
              bias.value().data());
  else
    gemm(Y, CMatView<T>(x.value().data(), rows, in), CMatView<T>(weight.value().data(), outf, in).transpose());
  Var<T> res = has_bias ? t.push(std::move(out), x, weight, bias) : t.push(std::move(out), x, weight);
  t.on_backward(res, [x, weight, bias, res, rows, in, outf, has_bias] {
    CMatView<T> G(res.grad().data(), rows, outf);
    if (x.requires_grad())
      gemm_add(MatView<T>(x.grad().data(), rows, in), G, CMatView<T>(weight.value().data(), outf, in));  // dx = dY W
    if (weight.requires_grad())
      gemm_add(MatView<T>(weight.grad().data(), outf, in), G.transpose(), CMatView<T>(x.value().data(), rows, in));  // dW = dYᵀ x
    if (has_bias && bias.requires_grad())
      Eigen::Map<Eigen::Matrix<T, 1, Eigen::Dynamic>>(bias.grad().data(), outf) += G.colwise().sum();  // db = Σ_rows dY
  });
  return res;
}

}  // namespace marrow

/* Backward rules:
   matmul  dA += dY·Bᵀ     dB += Aᵀ·dY      (summed over broadcast batch dims)
   linear  dx += dY·W      dW += dYᵀ·x      db += Σ_rows dY
*/
