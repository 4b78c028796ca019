#pragma once
// Scores of a membrane segmentation, as in the ISBI 2012 challenge
// (Arganda-Carreras et al., "Crowdsourcing the creation of image segmentation
// algorithms for connectomics", Front. Neuroanat. 2015):
//
//   pixel error        fraction of pixels whose thresholded class differs
//   IoU, Dice          of the membrane class (the thin structure; cells are easy)
//   V-Rand, V-Info     foreground-restricted Rand and information scores of the
//                      cell segmentations: connected components of the
//                      thresholded prediction against those of the truth
//
// Foreground restriction, as in the challenge's scripts: only pixels inside a
// true cell count (true membrane pixels are ignored); a pixel the prediction
// calls membrane is its own singleton segment, so thick predicted membranes
// split cells rather than vanish. With p_ij the joint distribution of
// (predicted segment i, true segment j) over the counted pixels, s_i and t_j its
// marginals:
//   V-Rand split = Σ p_ij² / Σ t_j²     V-Rand merge = Σ p_ij² / Σ s_i²
//   V-Info split = I(S;T) / H(S)        V-Info merge = I(S;T) / H(T)
// and V-Rand, V-Info are the harmonic means (α = ½) of split and merge.
// Higher is better for the V scores; 1 is a perfect segmentation.
//
// The threshold: a pixel is called cell when its cell probability reaches it.
// The challenge scores each figure at its own best threshold; a user needs one
// mask, so training picks one threshold on the validation slices by the
// challenge's primary figure, the pixel error (choose_threshold), and keeps it
// in the checkpoint for predict and eval.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "weights.hpp"

namespace marrow::unet {

struct RandInfoScores {
  double v_rand = 1, v_rand_split = 1, v_rand_merge = 1;
  double v_info = 1, v_info_split = 1, v_info_merge = 1;
};

struct SegmentationScores {
  double pixel_error = 0;
  double iou_membrane = 0, dice_membrane = 0;
  RandInfoScores rand_info;
};

// Foreground-restricted Rand and information scores of two (H, W) label images
// (0 = boundary). `pred` is the proposed segmentation S, `truth` the ground truth T.
inline RandInfoScores rand_info_scores(const Tensor<std::int32_t>& pred, const Tensor<std::int32_t>& truth) {
  MARROW_CHECK(pred.ndim() == 2 && pred.shape() == truth.shape(), "rand_info_scores: prediction ",
               pred.shape().str(), " and truth ", truth.shape().str(), " must be the same (H, W)");
  const index_t N = pred.numel();
  std::vector<std::uint64_t> keys;  // (true label, predicted label) pairs, sorted into a contingency table
  keys.reserve(std::size_t(N));
  double singles = 0;  // counted pixels the prediction calls boundary
  std::int32_t max_t = 0, max_s = 0;
  for (index_t i = 0; i < N; ++i) {
    const std::int32_t t = truth[i], s = pred[i];
    MARROW_CHECK(t >= 0 && s >= 0, "rand_info_scores: negative label at pixel ", i);
    if (t == 0) continue;
    max_t = std::max(max_t, t);
    max_s = std::max(max_s, s);
    if (s == 0) {
      singles += 1;
      continue;
    }
    keys.push_back(std::uint64_t(std::uint32_t(t)) << 32 | std::uint32_t(s));
  }
  const double n = double(keys.size()) + singles;
  RandInfoScores r;
  if (n == 0) return r;  // nothing to score: no true cell
  std::sort(keys.begin(), keys.end());
  std::vector<double> t_size(std::size_t(max_t) + 1, 0.0), s_size(std::size_t(max_s) + 1, 0.0);
  double sum_p2 = 0, h_joint = 0;  // Σ n_ij², −Σ p log p over the joint
  for (std::size_t a = 0; a < keys.size();) {
    std::size_t b = a;
    while (b < keys.size() && keys[b] == keys[a]) ++b;
    const double c = double(b - a);
    sum_p2 += c * c;
    h_joint -= c / n * std::log(c / n);
    s_size[std::size_t(keys[a] & 0xffffffffu)] += c;
    a = b;
  }
  // Boundary-called pixels still belong to their true cell.
  for (index_t i = 0; i < N; ++i)
    if (truth[i] != 0) t_size[std::size_t(truth[i])] += 1;
  double sum_t2 = 0, sum_s2 = singles, h_t = 0, h_s = 0;
  for (double c : t_size)
    if (c > 0) sum_t2 += c * c, h_t -= c / n * std::log(c / n);
  for (double c : s_size)
    if (c > 0) sum_s2 += c * c, h_s -= c / n * std::log(c / n);
  const double single_h = singles / n * std::log(n);  // each singleton: −(1/n)·log(1/n)
  h_s += single_h;
  h_joint += single_h;
  sum_p2 += singles;
  r.v_rand_split = sum_p2 / sum_t2;
  r.v_rand_merge = sum_p2 / sum_s2;
  r.v_rand = 2 * sum_p2 / (sum_t2 + sum_s2);
  const double mi = std::max(0.0, h_s + h_t - h_joint);
  r.v_info_split = h_s > 0 ? mi / h_s : 1.0;  // one predicted segment cannot be over-split
  r.v_info_merge = h_t > 0 ? mi / h_t : 1.0;
  r.v_info = h_s + h_t > 0 ? 2 * mi / (h_s + h_t) : 1.0;
  return r;
}

// The class map (H, W) of a cell probability (H, W): 1 (cell) where it reaches
// the threshold, 0 (membrane) elsewhere.
template <class T> Tensor<std::int32_t> cell_mask(const Tensor<T>& prob_cell, double threshold) {
  MARROW_CHECK(prob_cell.ndim() == 2, "cell_mask: expected an (H, W) probability, got ", prob_cell.shape().str());
  Tensor<std::int32_t> m = Tensor<std::int32_t>::uninitialized(prob_cell.shape());
  for (index_t i = 0; i < m.numel(); ++i) m[i] = double(prob_cell[i]) >= threshold ? 1 : 0;
  return m;
}

namespace metrics_detail {
inline void check_truth(const Tensor<std::int32_t>& truth, index_t i, const char* op) {
  MARROW_CHECK(truth[i] == 0 || truth[i] == 1, op, ": truth class ", truth[i], " at pixel ", i,
               "; expected 0 (membrane) or 1 (cell)");
}
}  // namespace metrics_detail

// All scores of one slice: prob_cell (H, W) is the predicted probability of cell
// interior, truth (H, W) the class map (1 = cell, 0 = membrane), cut at `threshold`.
template <class T>
SegmentationScores segmentation_scores(const Tensor<T>& prob_cell, const Tensor<std::int32_t>& truth,
                                       double threshold = 0.5) {
  MARROW_CHECK(prob_cell.ndim() == 2 && prob_cell.shape() == truth.shape(), "segmentation_scores: prediction ",
               prob_cell.shape().str(), " and truth ", truth.shape().str(), " must be the same (H, W)");
  const index_t N = truth.numel();
  const Tensor<std::int32_t> pred_cls = cell_mask(prob_cell, threshold);
  double wrong = 0, inter = 0, pred_m = 0, true_m = 0;
  for (index_t i = 0; i < N; ++i) {
    metrics_detail::check_truth(truth, i, "segmentation_scores");
    const std::int32_t p = pred_cls[i];
    wrong += p != truth[i];
    pred_m += p == 0;
    true_m += truth[i] == 0;
    inter += p == 0 && truth[i] == 0;
  }
  SegmentationScores s;
  s.pixel_error = N ? wrong / double(N) : 0.0;
  const double uni = pred_m + true_m - inter;
  s.iou_membrane = uni > 0 ? inter / uni : 1.0;  // no membrane anywhere, none predicted: perfect
  s.dice_membrane = pred_m + true_m > 0 ? 2 * inter / (pred_m + true_m) : 1.0;
  s.rand_info = rand_info_scores(connected_components(pred_cls).labels, connected_components(truth).labels);
  return s;
}

// The thresholds training and eval scan: 0.05, 0.10, …, 0.95.
inline std::vector<double> threshold_grid() {
  std::vector<double> g;
  for (int k = 1; k <= 19; ++k) g.push_back(0.05 * k);
  return g;
}

// The threshold of the grid with the lowest mean pixel error over the slices
// (prob_cell[i] against truth[i], each (H, W)); the lowest such threshold on a tie.
template <class T>
double choose_threshold(const std::vector<Tensor<T>>& prob_cell, const std::vector<Tensor<std::int32_t>>& truth) {
  MARROW_CHECK(!prob_cell.empty() && prob_cell.size() == truth.size(), "choose_threshold: ", prob_cell.size(),
               " predictions for ", truth.size(), " truths");
  const std::vector<double> grid = threshold_grid();
  std::vector<double> error(grid.size(), 0.0);  // mean over slices, as the challenge (and mean_scores) averages
  const double k = 1.0 / double(prob_cell.size());
  for (std::size_t s = 0; s < prob_cell.size(); ++s) {
    const Tensor<T>& p = prob_cell[s];
    const Tensor<std::int32_t>& t = truth[s];
    MARROW_CHECK(p.ndim() == 2 && p.shape() == t.shape(), "choose_threshold: prediction ", p.shape().str(),
                 " and truth ", t.shape().str(), " must be the same (H, W)");
    std::vector<double> wrong(grid.size(), 0.0);
    for (index_t i = 0; i < t.numel(); ++i) {
      metrics_detail::check_truth(t, i, "choose_threshold");
      for (std::size_t g = 0; g < grid.size(); ++g) wrong[g] += (double(p[i]) >= grid[g] ? 1 : 0) != t[i];
    }
    for (std::size_t g = 0; g < grid.size(); ++g) error[g] += k * (wrong[g] / double(t.numel()));
  }
  return grid[std::size_t(std::min_element(error.begin(), error.end()) - error.begin())];
}

// Mean of per-slice scores (the challenge averages over slices).
inline SegmentationScores mean_scores(const std::vector<SegmentationScores>& v) {
  SegmentationScores m;
  if (v.empty()) return m;
  m = SegmentationScores{0, 0, 0, RandInfoScores{0, 0, 0, 0, 0, 0}};
  const double k = 1.0 / double(v.size());
  for (auto& s : v) {
    m.pixel_error += k * s.pixel_error;
    m.iou_membrane += k * s.iou_membrane;
    m.dice_membrane += k * s.dice_membrane;
    m.rand_info.v_rand += k * s.rand_info.v_rand;
    m.rand_info.v_rand_split += k * s.rand_info.v_rand_split;
    m.rand_info.v_rand_merge += k * s.rand_info.v_rand_merge;
    m.rand_info.v_info += k * s.rand_info.v_info;
    m.rand_info.v_info_split += k * s.rand_info.v_info_split;
    m.rand_info.v_info_merge += k * s.rand_info.v_info_merge;
  }
  return m;
}

}  // namespace marrow::unet
