#pragma once
// How good and how diverse are generated digits, measured through the LeNet
// classifier (models/lenet.hpp) instead of Inception:
//
//   FID    ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁^½ Σ₂ Σ₁^½)^½   on penultimate features
//   score  exp(E_x[KL(p(y|x) ‖ p(y))])                         (the Inception Score's formula)
//   class histogram of the argmax labels: mode collapse shows as empty classes
//
// tr (Σ₁Σ₂)^½ needs no general matrix square root: Σ₁^½ Σ₂ Σ₁^½ is symmetric
// positive semi-definite and similar to Σ₁Σ₂, so the trace is Σ √λᵢ of its
// eigenvalues, all from Eigen's SelfAdjointEigenSolver (scipy's sqrtm, which
// pytorch-fid uses, goes through a Schur form and can return complex noise).
// Statistics accumulate in double: 10,000 × 128 features summed in float lose
// the digits that FID differences live in.
#include <Eigen/Core>
#include <Eigen/Eigenvalues>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <marrow/tape.hpp>
#include <marrow/ops/nn.hpp>
#include "../lenet.hpp"

namespace marrow::gan {

// Mean and covariance (unbiased, N − 1, as numpy's cov) of feature rows.
struct FeatureStats {
  Eigen::VectorXd mean;
  Eigen::MatrixXd cov;
  index_t count = 0;
};

// features (N, D), N >= 2.
template <class T> FeatureStats feature_stats(const Tensor<T>& features) {
  MARROW_CHECK(features.ndim() == 2 && features.dim(0) >= 2, "feature_stats: features ", features.shape().str(),
               " must be (N, D) with N >= 2");
  const index_t N = features.dim(0);
  const Eigen::MatrixXd X = features.mat().template cast<double>();
  FeatureStats s;
  s.count = N;
  s.mean = X.colwise().mean().transpose();
  const Eigen::MatrixXd C = X.rowwise() - s.mean.transpose();
  s.cov = (C.transpose() * C) / double(N - 1);
  return s;
}

// Square root of a symmetric PSD matrix; eigenvalues below zero (round-off) count as zero.
inline Eigen::MatrixXd sqrt_psd(const Eigen::MatrixXd& S) {
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(S);
  MARROW_CHECK(es.info() == Eigen::Success, "sqrt_psd: eigen-decomposition of a ", S.rows(), "x", S.cols(),
               " matrix did not converge");
  const Eigen::VectorXd r = es.eigenvalues().cwiseMax(0.0).cwiseSqrt();
  return es.eigenvectors() * r.asDiagonal() * es.eigenvectors().transpose();
}

// tr (S1 S2)^½ for symmetric PSD S1, S2, via the eigenvalues of S1^½ S2 S1^½.
inline double trace_sqrt_product(const Eigen::MatrixXd& S1, const Eigen::MatrixXd& S2) {
  MARROW_CHECK(S1.rows() == S1.cols() && S2.rows() == S2.cols() && S1.rows() == S2.rows(),
               "trace_sqrt_product: covariances ", S1.rows(), "x", S1.cols(), " and ", S2.rows(), "x", S2.cols(),
               " differ");
  const Eigen::MatrixXd R = sqrt_psd(S1);
  Eigen::MatrixXd M = R * S2 * R;
  M = 0.5 * (M + M.transpose());  // exact symmetry for the solver
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(M, Eigen::EigenvaluesOnly);
  MARROW_CHECK(es.info() == Eigen::Success, "trace_sqrt_product: eigen-decomposition did not converge");
  return es.eigenvalues().cwiseMax(0.0).cwiseSqrt().sum();
}

inline double frechet_distance(const FeatureStats& a, const FeatureStats& b) {
  MARROW_CHECK(a.mean.size() == b.mean.size() && a.mean.size() > 0, "frechet_distance: feature sizes ",
               a.mean.size(), " and ", b.mean.size(), " differ");
  const double d = (a.mean - b.mean).squaredNorm() + a.cov.trace() + b.cov.trace() -
                   2.0 * trace_sqrt_product(a.cov, b.cov);
  return std::max(d, 0.0);  // round-off can dip a hair below zero for identical sets
}

// exp(mean_x KL(p(y|x) ‖ p(y))) with p(y) the mean of the rows. probs (N, C), rows summing to 1.
// 1 when every row is the same; C when the rows are confident and the classes balanced.
template <class T> double classifier_score(const Tensor<T>& probs) {
  MARROW_CHECK(probs.ndim() == 2 && probs.dim(0) >= 1 && probs.dim(1) >= 1, "classifier_score: probs ",
               probs.shape().str(), " must be (N, C)");
  const index_t N = probs.dim(0), C = probs.dim(1);
  std::vector<double> py(std::size_t(C), 0.0);
  for (index_t i = 0; i < N; ++i)
    for (index_t c = 0; c < C; ++c) py[std::size_t(c)] += double(probs[i * C + c]) / double(N);
  double kl = 0.0;
  for (index_t i = 0; i < N; ++i)
    for (index_t c = 0; c < C; ++c) {
      const double p = double(probs[i * C + c]);
      if (p > 0.0) kl += p * (std::log(p) - std::log(py[std::size_t(c)]));  // 0·log 0 = 0
    }
  return std::exp(kl / double(N));
}

// Fraction of rows whose most probable class is c, for each c. probs (N, C).
template <class T> std::vector<double> class_histogram(const Tensor<T>& probs) {
  MARROW_CHECK(probs.ndim() == 2 && probs.dim(0) >= 1, "class_histogram: probs ", probs.shape().str(),
               " must be (N, C) with N >= 1");
  const index_t N = probs.dim(0), C = probs.dim(1);
  std::vector<double> h(std::size_t(C), 0.0);
  for (index_t i = 0; i < N; ++i) {
    const T* r = probs.data() + i * C;
    h[std::size_t(std::max_element(r, r + C) - r)] += 1.0 / double(N);
  }
  return h;
}

// Classes holding less than `min_fraction` of the samples: the collapse warning.
inline std::vector<int> rare_classes(const std::vector<double>& hist, double min_fraction = 0.05) {
  std::vector<int> r;
  for (std::size_t c = 0; c < hist.size(); ++c)
    if (hist[c] < min_fraction) r.push_back(int(c));
  return r;
}

// ---- running the classifier --------------------------------------------------------
struct Classified {
  Tensor<float> features;  // (N, hidden)
  Tensor<float> probs;     // (N, classes)
};

// The classifier in eval mode over images (N, C, H, W) in [-1, 1], `batch` at a time.
// The caller's train/eval flags are restored afterwards.
inline Classified classify(lenet::LeNet<float>& net, const Tensor<float>& images, index_t batch = 500) {
  MARROW_CHECK(images.ndim() == 4, "classify: images ", images.shape().str(), " must be (N, C, H, W)");
  MARROW_CHECK(batch >= 1, "classify: batch ", batch, " must be >= 1");
  const index_t N = images.dim(0), per = images.numel() / std::max<index_t>(N, 1);
  const bool was_training = net.bn1.training;
  set_training<float>(net, false);
  Classified out{Tensor<float>::uninitialized({N, net.cfg.hidden}), Tensor<float>::uninitialized({N, net.cfg.classes})};
  Tape<float> t;
  auto guard = t.no_grad();
  for (index_t s = 0; s < N; s += batch) {
    const index_t n = std::min(batch, N - s);
    Shape bs = images.shape();
    bs[0] = n;
    Tensor<float> xb = Tensor<float>::uninitialized(bs);
    std::copy_n(images.data() + s * per, n * per, xb.data());
    auto o = net.forward(t, t.input(xb));
    Var<float> p = softmax(t, o.logits, -1);
    std::copy_n(o.features.value().data(), n * net.cfg.hidden, out.features.data() + s * net.cfg.hidden);
    std::copy_n(p.value().data(), n * net.cfg.classes, out.probs.data() + s * net.cfg.classes);
    t.reset();
  }
  set_training<float>(net, was_training);
  return out;
}

// Everything the monitor reports about one set of images.
struct SampleReport {
  double fid = 0.0;                  // against the reference statistics
  double score = 0.0;                // exp(E KL(p(y|x) ‖ p(y)))
  std::vector<double> histogram;     // class fractions
  std::vector<int> rare;             // classes under 5 %
};

inline SampleReport report(lenet::LeNet<float>& net, const Tensor<float>& images, const FeatureStats& reference,
                           double min_fraction = 0.05) {
  Classified c = classify(net, images);
  SampleReport r;
  r.fid = frechet_distance(feature_stats(c.features), reference);
  r.score = classifier_score(c.probs);
  r.histogram = class_histogram(c.probs);
  r.rare = rare_classes(r.histogram, min_fraction);
  return r;
}

}  // namespace marrow::gan
