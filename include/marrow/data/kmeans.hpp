#pragma once
// k-means clustering (Lloyd's iterations from a k-means++ start, Arthur &
// Vassilvitskii 2007) of the rows of an (N, D) matrix.
//
// What it is for here: labels without labels. A GAN conditioned on the clusters
// of its own training images (self-conditioned GAN, Liu et al. 2020) models each
// cluster separately, so it does not have to stretch one continuous latent space
// across digits that have nothing in between.
//
// Distances come from one GEMM per iteration, ‖x − c‖² = ‖x‖² − 2·x·c + ‖c‖², so
// 60,000 MNIST digits into 100 clusters take a few seconds.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include <Eigen/Core>

#include "../kernels/gemm.hpp"
#include "../config.hpp"
#include "../rng.hpp"
#include "../tensor.hpp"

namespace marrow::data {

struct KMeansResult {
  Tensor<float> centroids;          // (k, D)
  Tensor<std::int32_t> assignment;  // (N): the cluster of each row
  std::vector<double> sizes;        // rows per cluster, as fractions of N
  double inertia = 0;               // mean squared distance of a row to its centroid
  int iterations = 0;               // Lloyd iterations run (≤ max_iters)
};

namespace kmeans_detail {
using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstRows = Eigen::Map<const RowMat>;
using Rows = Eigen::Map<RowMat>;

// Squared distance of every row of X to every centroid: (N, k), clamped at 0
// (the expanded form can dip below it by round-off).
inline RowMat squared_distances(const ConstRows& X, const Eigen::VectorXf& x_sq, const RowMat& C) {
  RowMat d(X.rows(), C.rows());
  marrow::detail::gemm(d, X, C.transpose());  // the same bits on any thread count (kernels/gemm.hpp)
  const Eigen::VectorXf c_sq = C.rowwise().squaredNorm();
  d = ((-2.0f * d).colwise() + x_sq).rowwise() + c_sq.transpose();
  return d.cwiseMax(0.0f);
}
}  // namespace kmeans_detail

// Clusters the N rows of x (N, D) into k groups. Deterministic for a given seed.
// A cluster that empties is restarted at the row farthest from its centroid.
inline KMeansResult kmeans(const Tensor<float>& x, int k, std::uint64_t seed, int max_iters = 50) {
  using namespace kmeans_detail;
  MARROW_CHECK(x.ndim() == 2, "kmeans: data must be (N, D), got ", x.shape().str());
  const index_t N = x.dim(0), D = x.dim(1);
  MARROW_CHECK(k >= 1 && index_t(k) <= N, "kmeans: k = ", k, " must be in [1, N = ", N, "]");
  MARROW_CHECK(max_iters >= 1, "kmeans: max_iters ", max_iters, " must be >= 1");
  const ConstRows X(x.data(), N, D);
  const Eigen::VectorXf x_sq = X.rowwise().squaredNorm();
  Rng rng(seed);

  // k-means++: each new centre is a row drawn with probability ∝ its squared
  // distance to the nearest centre so far, which spreads the start over the data.
  RowMat C(k, D);
  C.row(0) = X.row(index_t(rng.below(std::uint64_t(N))));
  std::vector<double> nearest(static_cast<std::size_t>(N));
  for (index_t i = 0; i < N; ++i) nearest[std::size_t(i)] = double((X.row(i) - C.row(0)).squaredNorm());
  for (int c = 1; c < k; ++c) {
    double total = 0;
    for (double v : nearest) total += v;
    const index_t pick = total > 0 ? index_t(rng.pick_weighted(nearest.data(), nearest.size(), total))
                                   : index_t(rng.below(std::uint64_t(N)));  // every row sits on a centre already
    C.row(c) = X.row(pick);
#pragma omp parallel for if (N * D > 65536)
    for (index_t i = 0; i < N; ++i)
      nearest[std::size_t(i)] = std::min(nearest[std::size_t(i)], double((X.row(i) - C.row(c)).squaredNorm()));
  }

  KMeansResult r;
  r.assignment = Tensor<std::int32_t>::uninitialized({N});
  std::int32_t* a = r.assignment.data();
  std::fill_n(a, N, std::int32_t(-1));
  std::vector<float> dist(static_cast<std::size_t>(N));
  std::vector<double> sums(static_cast<std::size_t>(k) * static_cast<std::size_t>(D));
  std::vector<index_t> count(static_cast<std::size_t>(k));
  // Each pass assigns every row to its nearest centroid, then moves the centroids.
  // The pass that changes no assignment, or the one after max_iters moves, is the
  // last: its assignment is the result.
  for (int it = 1;; ++it) {
    const RowMat d2 = squared_distances(X, x_sq, C);
    index_t changed = 0;
    for (index_t i = 0; i < N; ++i) {
      Eigen::Index best;
      dist[std::size_t(i)] = d2.row(i).minCoeff(&best);
      if (a[i] != std::int32_t(best)) a[i] = std::int32_t(best), ++changed;
    }
    r.iterations = std::min(it, max_iters);
    if (changed == 0 || it > max_iters) break;
    std::fill(sums.begin(), sums.end(), 0.0);
    std::fill(count.begin(), count.end(), index_t(0));
    for (index_t i = 0; i < N; ++i) {
      double* s = sums.data() + std::size_t(a[i]) * std::size_t(D);
      const float* row = x.data() + i * D;
      for (index_t j = 0; j < D; ++j) s[j] += double(row[j]);
      ++count[std::size_t(a[i])];
    }
    for (int c = 0; c < k; ++c) {
      if (count[std::size_t(c)] == 0) {  // empty: restart at the worst-served row
        const index_t far = index_t(std::max_element(dist.begin(), dist.end()) - dist.begin());
        C.row(c) = X.row(far);
        dist[std::size_t(far)] = 0;
        continue;
      }
      const double* s = sums.data() + std::size_t(c) * std::size_t(D);
      for (index_t j = 0; j < D; ++j) C(c, j) = float(s[j] / double(count[std::size_t(c)]));
    }
  }

  r.sizes.assign(std::size_t(k), 0.0);
  for (index_t i = 0; i < N; ++i) {
    r.inertia += double(dist[std::size_t(i)]);
    r.sizes[std::size_t(a[i])] += 1.0 / double(N);
  }
  r.inertia /= double(N);
  r.centroids = Tensor<float>::uninitialized({index_t(k), D});
  Rows(r.centroids.data(), k, D) = C;
  return r;
}

}  // namespace marrow::data
