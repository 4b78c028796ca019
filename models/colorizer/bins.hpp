#pragma once
// Colorization as classification, after Zhang, Isola & Efros 2016 ("Colorful
// Image Colorization"): the ab plane is cut into bins of 10×10 Lab units, only
// bins that real colors reach are kept (Q of them), each pixel's target is a
// soft distribution over its k = 5 nearest bins (Gaussian, σ = 5), rare colors
// are up-weighted by the inverse of a smoothed, flattened empirical prior
// (λ = 0.5), and a predicted distribution is turned back into (a, b) by its
// annealed mean (temperature T = 0.38 sits between the mean, T = 1, which is
// desaturated, and the mode, T → 0, which is noisy).
//
// In-gamut bins: a bin is kept when some 8-bit sRGB color falls in its cell
// (every such color lies in the cell around its nearest bin centre, so real
// pixels always have their nearest bin in the set). With data/color.hpp's
// conversion that is Q = 261 bins (Zhang's 313 came from ImageNet statistics
// over a slightly different Lab range; the construction is the same).
//
// The loss that trains against these targets is soft_cross_entropy (loss.hpp);
// nothing here is differentiated: it only makes targets and decodes.
//
// Shape letters: N batch, Q bins, K nearest bins per pixel, (H, W) the
// resolution of the prediction, P = H·W.
#include <Eigen/Core>
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

#include <marrow/data/color.hpp>
#include <marrow/loss.hpp>

namespace marrow::colorizer {

struct ColorBins {
  static constexpr int kGrid = 23;         // centres -110, -100, ..., 110 on each axis
  static constexpr double kStep = 10.0;    // bin size in Lab units
  static constexpr double kMin = -110.0;   // first centre

  std::vector<float> a, b;                 // (Q) bin centres
  std::array<int, kGrid * kGrid> cell{};   // grid cell (i_a·kGrid + i_b) -> bin, or -1 when out of gamut

  int size() const { return int(a.size()); }

  // The bins every 8-bit sRGB color reaches. A step of 3 over each channel
  // (86³ colors) already marks the same 261 cells as all 256³.
  static ColorBins in_gamut() {
    bool hit[kGrid * kGrid] = {};
    for (int r = 0; r < 256; r += 3)
      for (int g = 0; g < 256; g += 3)
        for (int bl = 0; bl < 256; bl += 3) {
          const auto lab = data::rgb_to_lab<double>(r / 255.0, g / 255.0, bl / 255.0);
          const int i = grid_index(lab[1]), j = grid_index(lab[2]);
          if (i >= 0 && j >= 0) hit[i * kGrid + j] = true;
        }
    ColorBins bins;
    bins.cell.fill(-1);
    for (int i = 0; i < kGrid; ++i)
      for (int j = 0; j < kGrid; ++j)
        if (hit[i * kGrid + j]) {
          bins.cell[std::size_t(i * kGrid + j)] = bins.size();
          bins.a.push_back(float(kMin + kStep * i));
          bins.b.push_back(float(kMin + kStep * j));
        }
    return bins;
  }
  // Computed once per process (0.1 s).
  static const ColorBins& standard() {
    static const ColorBins bins = in_gamut();
    return bins;
  }

  // Grid index of the cell around v, or -1 outside the grid.
  static int grid_index(double v) {
    const long i = std::lround((v - kMin) / kStep);
    return i >= 0 && i < kGrid ? int(i) : -1;
  }

  double dist2(int q, double av, double bv) const {
    const double da = av - a[std::size_t(q)], db = bv - b[std::size_t(q)];
    return da * da + db * db;
  }

  // The bin whose centre is nearest to (av, bv).
  int nearest(double av, double bv) const {
    const int i = grid_index(av), j = grid_index(bv);
    if (i >= 0 && j >= 0 && cell[std::size_t(i * kGrid + j)] >= 0) return cell[std::size_t(i * kGrid + j)];
    int best = 0;  // off the grid or in an empty cell (only for synthetic ab): search them all
    for (int q = 1; q < size(); ++q)
      if (dist2(q, av, bv) < dist2(best, av, bv)) best = q;
    return best;
  }

  // The k nearest bins of (av, bv), nearest first, with weights
  // exp(−d²/2σ²) normalized to sum 1.
  void soft_encode(double av, double bv, int k, double sigma, std::int32_t* idx, float* w) const {
    constexpr int kMaxK = 16;
    MARROW_CHECK(k >= 1 && k <= kMaxK && k <= size(), "soft_encode: k = ", k, " must be in 1..", std::min(kMaxK, size()));
    double d[kMaxK];
    int found = 0;
    auto offer = [&](int q) {  // insertion into the sorted top-k
      const double dq = dist2(q, av, bv);
      if (found == k && dq >= d[k - 1]) return;
      int pos = found < k ? found++ : k - 1;
      while (pos > 0 && d[pos - 1] > dq) {
        d[pos] = d[pos - 1];
        idx[pos] = idx[pos - 1];
        --pos;
      }
      d[pos] = dq;
      idx[pos] = q;
    };
    // Bins outside a 7×7 window of cells lie at least 2.5 cells away; when the
    // window already holds k bins closer than that, none outside can beat them.
    constexpr int kReach = 3;
    const double ci = std::round((av - kMin) / kStep), cj = std::round((bv - kMin) / kStep);
    bool exact = false;
    if (ci >= 0 && ci < kGrid && cj >= 0 && cj < kGrid) {
      const int i0 = int(ci), j0 = int(cj);
      for (int i = std::max(0, i0 - kReach); i <= std::min(kGrid - 1, i0 + kReach); ++i)
        for (int j = std::max(0, j0 - kReach); j <= std::min(kGrid - 1, j0 + kReach); ++j)
          if (cell[std::size_t(i * kGrid + j)] >= 0) offer(cell[std::size_t(i * kGrid + j)]);
      const double guard = (kReach + 0.5) * kStep - std::max(std::abs(av - (kMin + kStep * ci)), std::abs(bv - (kMin + kStep * cj)));
      exact = found == k && d[k - 1] <= guard * guard;
    }
    if (!exact) {
      found = 0;
      for (int q = 0; q < size(); ++q) offer(q);
    }
    double s = 0;
    for (int i = 0; i < k; ++i) s += (d[i] = std::exp(-d[i] / (2 * sigma * sigma)));
    for (int i = 0; i < k; ++i) w[i] = float(d[i] / s);
  }
};

// ---- targets --------------------------------------------------------------------------

// Soft-encode ab (N, 2, H, W) in Lab units into soft_cross_entropy's targets
// (loss.hpp): each pixel's K nearest bins, nearest first. `rebalance` (Q) gives
// each pixel the weight of its nearest bin; nullptr weighs every pixel 1.
template <class T>
SoftTargets<T> soft_encode(const ColorBins& bins, const Tensor<T>& ab, const Tensor<T>* rebalance = nullptr, int k = 5,
                           double sigma = 5.0) {
  MARROW_CHECK(ab.ndim() == 4 && ab.dim(1) == 2, "soft_encode: ab must be (N, 2, H, W), got ", ab.shape().str());
  if (rebalance)
    MARROW_CHECK(rebalance->numel() == bins.size(), "soft_encode: ", rebalance->numel(), " rebalancing weights for ",
                 bins.size(), " bins");
  const index_t N = ab.dim(0), H = ab.dim(2), W = ab.dim(3), P = H * W;
  SoftTargets<T> s{Tensor<std::int32_t>::uninitialized({N, k, H, W}), Tensor<T>::uninitialized({N, k, H, W}),
                   Tensor<T>::uninitialized({N, H, W})};
  std::int32_t id[16];
  float w[16];
  for (index_t n = 0; n < N; ++n)
    for (index_t p = 0; p < P; ++p) {
      bins.soft_encode(double(ab[(n * 2) * P + p]), double(ab[(n * 2 + 1) * P + p]), k, sigma, id, w);
      for (int j = 0; j < k; ++j) {
        s.idx[(n * k + j) * P + p] = id[j];
        s.weight[(n * k + j) * P + p] = T(w[j]);
      }
      s.pixel_weight[n * P + p] = rebalance ? (*rebalance)[id[0]] : T(1);
    }
  return s;
}

// ---- the prior and the rebalancing weights ------------------------------------------

// Counts of pixels per nearest bin, accumulated over a training set.
struct BinHistogram {
  std::vector<double> counts;
  explicit BinHistogram(const ColorBins& bins) : counts(std::size_t(bins.size()), 0.0) {}
  // a and b planes of n pixels, in Lab units.
  template <class T> void add(const ColorBins& bins, const T* a, const T* b, index_t n) {
    for (index_t i = 0; i < n; ++i) counts[std::size_t(bins.nearest(double(a[i]), double(b[i])))] += 1.0;
  }
  // The empirical distribution p (Q), summing to 1.
  template <class T> Tensor<T> prior() const {
    double total = 0;
    for (double c : counts) total += c;
    MARROW_CHECK(total > 0, "BinHistogram: no pixels counted");
    Tensor<T> p = Tensor<T>::uninitialized({index_t(counts.size())});
    for (std::size_t q = 0; q < counts.size(); ++q) p[index_t(q)] = T(counts[q] / total);
    return p;
  }
};

// Zhang's class-rebalancing weights: p̃ = p smoothed by a Gaussian (σ in Lab
// units) over the ab plane, w ∝ ((1 − λ)·p̃ + λ/Q)⁻¹, scaled so that
// E_p̃[w] = Σ_q p̃_q·w_q = 1 (the loss keeps its scale).
template <class T>
Tensor<T> rebalance_weights(const ColorBins& bins, const Tensor<T>& prior, double lambda = 0.5, double sigma = 5.0) {
  const int Q = bins.size();
  MARROW_CHECK(prior.numel() == Q, "rebalance_weights: prior has ", prior.numel(), " entries for ", Q, " bins");
  MARROW_CHECK(lambda >= 0 && lambda <= 1, "rebalance_weights: lambda ", lambda, " must be in [0, 1]");
  MARROW_CHECK(sigma > 0, "rebalance_weights: sigma ", sigma, " must be positive");
  std::vector<double> smooth(std::size_t(Q), 0.0);
  double total = 0;
  for (int q = 0; q < Q; ++q) {
    for (int r = 0; r < Q; ++r)
      smooth[std::size_t(q)] += double(prior[r]) * std::exp(-bins.dist2(r, bins.a[std::size_t(q)], bins.b[std::size_t(q)]) / (2 * sigma * sigma));
    total += smooth[std::size_t(q)];
  }
  MARROW_CHECK(total > 0, "rebalance_weights: prior sums to 0");
  double expect = 0;
  std::vector<double> w(static_cast<std::size_t>(Q));
  for (int q = 0; q < Q; ++q) {
    smooth[std::size_t(q)] /= total;
    w[std::size_t(q)] = 1.0 / ((1 - lambda) * smooth[std::size_t(q)] + lambda / Q);
    expect += smooth[std::size_t(q)] * w[std::size_t(q)];
  }
  Tensor<T> out = Tensor<T>::uninitialized({Q});
  for (int q = 0; q < Q; ++q) out[q] = T(w[std::size_t(q)] / expect);
  return out;
}

// ---- decoding ---------------------------------------------------------------------------

// Annealed mean of logits (N, Q, H, W) -> ab (N, 2, H, W) in Lab units:
// f_T(z) = softmax(log z / T) = softmax(x / T); ab = Σ_q f_T(z)_q · centre_q.
//
// Prior correction (ours, not in Zhang's paper). A net trained with the
// rebalanced loss predicts z_q ∝ w_q·P(q | x) (the weighted cross entropy is
// minimized there), so its colours lean towards the rare bins by the factor w.
// `rebalance` (the Q weights w) with strength β decodes z·w^(−β) instead: β = 0
// is Zhang's decoding, β = 1 removes the rebalancing from the output, and in
// between the output keeps w^(1−β) of it: vivid colours without paying for
// every rare-bin guess in accuracy.
// How classification outputs become colours: the two knobs of annealed_mean.
struct Decoding {
  double temperature = 0.38;      // Zhang's annealed-mean temperature
  double prior_correction = 0.4;  // β: how much of the rebalancing to take back out (0: Zhang's decoding)
};

template <class T>
Tensor<T> annealed_mean(const Tensor<T>& logits, const ColorBins& bins, double temperature = 0.38,
                        const Tensor<T>* rebalance = nullptr, double beta = 0.0) {
  MARROW_CHECK(logits.ndim() == 4 && logits.dim(1) == bins.size(), "annealed_mean: logits ", logits.shape().str(),
               " must be (N, ", bins.size(), ", H, W)");
  MARROW_CHECK(temperature > 0, "annealed_mean: temperature ", temperature, " must be positive");
  MARROW_CHECK(beta >= 0 && beta <= 1, "annealed_mean: prior correction ", beta, " must be in [0, 1]");
  MARROW_CHECK(!rebalance || rebalance->numel() == bins.size(), "annealed_mean: ", rebalance ? rebalance->numel() : 0,
               " rebalancing weights for ", bins.size(), " bins");
  using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
  using CMap = Eigen::Map<const Arr>;
  const index_t N = logits.dim(0), Q = logits.dim(1), P = logits.dim(2) * logits.dim(3);
  Tensor<T> ab = Tensor<T>::uninitialized({N, 2, logits.dim(2), logits.dim(3)});
  const T inv = T(1.0 / temperature);
  std::vector<T> shift(static_cast<std::size_t>(Q), T(0));  // β·log w_q, taken off each bin's logits
  if (rebalance && beta > 0)
    for (index_t q = 0; q < Q; ++q) {
      MARROW_CHECK((*rebalance)[q] > 0, "annealed_mean: rebalancing weight ", q, " is not positive");
      shift[std::size_t(q)] = T(beta * std::log(double((*rebalance)[q])));
    }
#pragma omp parallel for if (N * Q * P >= (1 << 16))
  for (index_t n = 0; n < N; ++n) {
    const T* xn = logits.data() + n * Q * P;
    Arr m = CMap(xn, P) - shift[0];
    for (index_t q = 1; q < Q; ++q) m = m.max(CMap(xn + q * P, P) - shift[std::size_t(q)]);
    Arr s = Arr::Zero(P), sa = Arr::Zero(P), sb = Arr::Zero(P);
    for (index_t q = 0; q < Q; ++q) {
      const Arr e = ((CMap(xn + q * P, P) - shift[std::size_t(q)] - m) * inv).exp();
      s += e;
      sa += e * T(bins.a[std::size_t(q)]);
      sb += e * T(bins.b[std::size_t(q)]);
    }
    Eigen::Map<Arr>(ab.data() + n * 2 * P, P) = sa / s;
    Eigen::Map<Arr>(ab.data() + (n * 2 + 1) * P, P) = sb / s;
  }
  return ab;
}

}  // namespace marrow::colorizer
