#pragma once
// How good is a colorization: PSNR of the 8-bit RGB result, colorfulness
// (Hasler & Süsstrunk 2003) relative to the truth's, and Zhang et al.'s AuC of
// the per-pixel ab-error CDF for thresholds 0..150.
//
// PSNR is taken on the values an 8-bit PNG would hold: both images are clamped
// to [0, 1] and rounded to 0..255 first. The headline figure pools the squared
// errors of the whole set (10·log10(255² / MSE over every value)): per-image
// PSNRs averaged reward already-easy gray images (CIFAR-10's gray baseline is
// 22.0 dB pooled but 25.5 dB averaged), so both are reported. An image
// identical to the truth counts as kMaxPsnr dB in the per-image mean.
//
// Images are planar (3, H, W) sRGB floats in [0, 1]; ab planes are (2, H, W) in Lab units.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

#include <marrow/tensor.hpp>

namespace marrow::colorizer {

inline constexpr double kMaxPsnr = 100.0;

inline double to_u8(double v) { return std::round(std::clamp(v, 0.0, 1.0) * 255.0); }

// Sum of squared differences of two 8-bit-quantized images of n values each.
template <class T> double squared_error_rgb8(const T* x, const T* y, index_t n) {
  double se = 0;
  for (index_t i = 0; i < n; ++i) {
    const double d = to_u8(double(x[i])) - to_u8(double(y[i]));
    se += d * d;
  }
  return se;
}
inline double psnr_from_mse(double mse) {
  return mse > 0 ? std::min(kMaxPsnr, 10.0 * std::log10(255.0 * 255.0 / mse)) : kMaxPsnr;
}
// PSNR in dB between two 8-bit-quantized images of n values each.
template <class T> double psnr_rgb8(const T* x, const T* y, index_t n) {
  MARROW_CHECK(n > 0, "psnr_rgb8: empty image");
  return psnr_from_mse(squared_error_rgb8(x, y, n) / double(n));
}

// Hasler & Süsstrunk's colorfulness of one planar RGB image with P pixels, on the 0..255 scale:
//   rg = R − G, yb = (R + G)/2 − B,  M = √(σ_rg² + σ_yb²) + 0.3·√(μ_rg² + μ_yb²).
template <class T> double colorfulness(const T* rgb, index_t P) {
  MARROW_CHECK(P > 0, "colorfulness: empty image");
  double srg = 0, syb = 0, qrg = 0, qyb = 0;
  for (index_t i = 0; i < P; ++i) {
    const double r = to_u8(double(rgb[i])), g = to_u8(double(rgb[P + i])), b = to_u8(double(rgb[2 * P + i]));
    const double rg = r - g, yb = 0.5 * (r + g) - b;
    srg += rg;
    syb += yb;
    qrg += rg * rg;
    qyb += yb * yb;
  }
  const double mrg = srg / double(P), myb = syb / double(P);
  const double vrg = std::max(0.0, qrg / double(P) - mrg * mrg), vyb = std::max(0.0, qyb / double(P) - myb * myb);
  return std::sqrt(vrg + vyb) + 0.3 * std::sqrt(mrg * mrg + myb * myb);
}

// Cumulative distribution of per-pixel ab errors (Euclidean, Lab units) at the
// integer thresholds 0..150, and the area under it, normalized to [0, 1].
class AbErrorCdf {
 public:
  static constexpr int kMax = 150;

  // Error e counts for every threshold t >= e: bucket ceil(e), beyond kMax in the last.
  void add(double err) {
    const double c = std::ceil(std::max(0.0, err));
    ++hist_[std::size_t(c > kMax ? kMax + 1 : int(c))];
    ++n_;
  }
  template <class T> void add_planes(const T* ab_pred, const T* ab_true, index_t P) {
    for (index_t i = 0; i < P; ++i) {
      const double da = double(ab_pred[i]) - double(ab_true[i]), db = double(ab_pred[P + i]) - double(ab_true[P + i]);
      add(std::sqrt(da * da + db * db));
    }
  }
  // Fraction of errors <= t.
  double cdf(int t) const {
    std::int64_t c = 0;
    for (int i = 0; i <= std::min(t, kMax); ++i) c += hist_[std::size_t(i)];
    return n_ ? double(c) / double(n_) : 0.0;
  }
  // Trapezoidal area under the CDF over [0, kMax], divided by kMax.
  double auc() const {
    if (!n_) return 0.0;
    double area = 0, prev = cdf(0), c = double(hist_[0]);
    for (int t = 1; t <= kMax; ++t) {
      c += double(hist_[std::size_t(t)]);
      const double cur = c / double(n_);
      area += 0.5 * (prev + cur);
      prev = cur;
    }
    return area / kMax;
  }
  std::int64_t count() const { return n_; }

 private:
  std::array<std::int64_t, kMax + 2> hist_{};
  std::int64_t n_ = 0;
};

// Everything `colorize eval` reports, accumulated image by image.
struct ColorizationMetrics {
  double se = 0, gray_se = 0;  // pooled squared errors (8-bit units)
  double psnr_sum = 0, gray_psnr_sum = 0, colorful_ours = 0, colorful_truth = 0, colorful_gray = 0;
  std::int64_t images = 0, values = 0;
  AbErrorCdf cdf, gray_cdf;

  // truth, ours, gray: (3, H, W) RGB; ab_true, ab_pred: (2, H, W) Lab units.
  template <class T>
  void add(const T* truth, const T* ours, const T* gray, const T* ab_true, const T* ab_pred, index_t P) {
    const double e = squared_error_rgb8(ours, truth, 3 * P), ge = squared_error_rgb8(gray, truth, 3 * P);
    se += e, gray_se += ge, values += 3 * P;
    psnr_sum += psnr_from_mse(e / double(3 * P));
    gray_psnr_sum += psnr_from_mse(ge / double(3 * P));
    colorful_ours += colorfulness(ours, P);
    colorful_truth += colorfulness(truth, P);
    colorful_gray += colorfulness(gray, P);
    cdf.add_planes(ab_pred, ab_true, P);
    for (index_t i = 0; i < P; ++i) gray_cdf.add(std::hypot(double(ab_true[i]), double(ab_true[P + i])));
    ++images;
  }
  // Pooled over the set (the headline figure).
  double psnr() const { return values ? psnr_from_mse(se / double(values)) : 0.0; }
  double gray_psnr() const { return values ? psnr_from_mse(gray_se / double(values)) : 0.0; }
  // Mean of per-image PSNRs.
  double psnr_mean() const { return images ? psnr_sum / double(images) : 0.0; }
  double gray_psnr_mean() const { return images ? gray_psnr_sum / double(images) : 0.0; }
  // Mean colorfulness of ours over the truth's.
  double colorfulness_ratio() const { return colorful_truth > 0 ? colorful_ours / colorful_truth : 0.0; }
  double auc() const { return cdf.auc(); }
  double gray_auc() const { return gray_cdf.auc(); }
};

}  // namespace marrow::colorizer
