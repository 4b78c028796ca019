#pragma once
// sRGB <-> CIE L*a*b* (D65), for colorization: predict (a, b) from L.
//
// sRGB values in [0, 1] are gamma-companded; they are linearised with the
// exact piecewise sRGB curve, taken to XYZ by the sRGB matrix (Lindbloom's,
// D65), and to Lab with the CIE 6/29 piecewise cube root. The white point is
// the matrix's own image of RGB white (its row sums), so white maps to
// a = b = 0 exactly instead of to ~1e-4. The inverse matrix is computed, not
// typed in, so round trips are exact to rounding.
// Ranges: L in [0, 100]; a, b roughly [-128, 127] for in-gamut colours.
#include <array>
#include <cmath>

#include "../config.hpp"
#include "../tensor.hpp"

namespace marrow::data {

namespace color_detail {
using M3 = std::array<std::array<double, 3>, 3>;
inline constexpr M3 kRgbToXyz = {{{0.4124564, 0.3575761, 0.1804375},
                                  {0.2126729, 0.7151522, 0.0721750},
                                  {0.0193339, 0.1191920, 0.9503041}}};
constexpr M3 inverse(const M3& m) {
  const double c00 = m[1][1] * m[2][2] - m[1][2] * m[2][1], c01 = m[1][2] * m[2][0] - m[1][0] * m[2][2],
               c02 = m[1][0] * m[2][1] - m[1][1] * m[2][0];
  const double det = m[0][0] * c00 + m[0][1] * c01 + m[0][2] * c02;
  return {{{c00 / det, (m[0][2] * m[2][1] - m[0][1] * m[2][2]) / det, (m[0][1] * m[1][2] - m[0][2] * m[1][1]) / det},
           {c01 / det, (m[0][0] * m[2][2] - m[0][2] * m[2][0]) / det, (m[0][2] * m[1][0] - m[0][0] * m[1][2]) / det},
           {c02 / det, (m[0][1] * m[2][0] - m[0][0] * m[2][1]) / det, (m[0][0] * m[1][1] - m[0][1] * m[1][0]) / det}}};
}
inline constexpr M3 kXyzToRgb = inverse(kRgbToXyz);
// D65 white = XYZ of linear RGB (1, 1, 1).
inline constexpr double kWhite[3] = {kRgbToXyz[0][0] + kRgbToXyz[0][1] + kRgbToXyz[0][2],
                                     kRgbToXyz[1][0] + kRgbToXyz[1][1] + kRgbToXyz[1][2],
                                     kRgbToXyz[2][0] + kRgbToXyz[2][1] + kRgbToXyz[2][2]};
inline constexpr double kDelta = 6.0 / 29.0;

template <class T> T srgb_to_linear(T c) {
  return c <= T(0.04045) ? c / T(12.92) : std::pow((c + T(0.055)) / T(1.055), T(2.4));
}
// Linear below the knee also for negative inputs, so out-of-gamut values never produce NaN.
template <class T> T linear_to_srgb(T v) {
  return v <= T(0.0031308) ? v * T(12.92) : T(1.055) * std::pow(v, T(1) / T(2.4)) - T(0.055);
}
template <class T> T lab_f(T t) {
  return t > T(kDelta * kDelta * kDelta) ? std::cbrt(t) : t / T(3 * kDelta * kDelta) + T(4.0 / 29.0);
}
template <class T> T lab_finv(T u) {
  return u > T(kDelta) ? u * u * u : T(3 * kDelta * kDelta) * (u - T(4.0 / 29.0));
}
}  // namespace color_detail

// One pixel: sRGB in [0, 1] -> {L, a, b}.
template <class T> std::array<T, 3> rgb_to_lab(T r, T g, T b) {
  using namespace color_detail;
  const T lr = srgb_to_linear(r), lg = srgb_to_linear(g), lb = srgb_to_linear(b);
  T f[3];
  for (int i = 0; i < 3; ++i)
    f[i] = lab_f((T(kRgbToXyz[i][0]) * lr + T(kRgbToXyz[i][1]) * lg + T(kRgbToXyz[i][2]) * lb) / T(kWhite[i]));
  return {T(116) * f[1] - T(16), T(500) * (f[0] - f[1]), T(200) * (f[1] - f[2])};
}

// One pixel: {L, a, b} -> sRGB, not clamped (out-of-gamut colours leave [0, 1]).
template <class T> std::array<T, 3> lab_to_rgb(T L, T a, T b) {
  using namespace color_detail;
  const T fy = (L + T(16)) / T(116);
  const T xyz[3] = {T(kWhite[0]) * lab_finv(fy + a / T(500)), T(kWhite[1]) * lab_finv(fy),
                    T(kWhite[2]) * lab_finv(fy - b / T(200))};
  std::array<T, 3> rgb;
  for (int i = 0; i < 3; ++i)
    rgb[std::size_t(i)] =
        linear_to_srgb(T(kXyzToRgb[i][0]) * xyz[0] + T(kXyzToRgb[i][1]) * xyz[1] + T(kXyzToRgb[i][2]) * xyz[2]);
  return rgb;
}

namespace color_detail {
// Apply a per-pixel 3 -> 3 map over planar (3, H, W) or (N, 3, H, W) data.
template <class T, class F> Tensor<T> map_planes(const Tensor<T>& x, const char* op, F f) {
  MARROW_CHECK((x.ndim() == 3 || x.ndim() == 4) && x.dim(-3) == 3, op, ": want (3, H, W) or (N, 3, H, W), got ",
               x.shape().str());
  const index_t N = x.ndim() == 4 ? x.dim(0) : 1, HW = x.dim(-2) * x.dim(-1);
  Tensor<T> out = Tensor<T>::uninitialized(x.shape());
#pragma omp parallel for if (N * HW > 65536)
  for (index_t n = 0; n < N; ++n) {
    const T* s = x.data() + n * 3 * HW;
    T* d = out.data() + n * 3 * HW;
    for (index_t i = 0; i < HW; ++i) {
      const std::array<T, 3> v = f(s[i], s[HW + i], s[2 * HW + i]);
      d[i] = v[0];
      d[HW + i] = v[1];
      d[2 * HW + i] = v[2];
    }
  }
  return out;
}
}  // namespace color_detail

// Planar sRGB (3, H, W) or (N, 3, H, W) in [0, 1] -> planar (L, a, b).
template <class T> Tensor<T> rgb_to_lab(const Tensor<T>& rgb) {
  return color_detail::map_planes(rgb, "rgb_to_lab", [](T r, T g, T b) { return rgb_to_lab(r, g, b); });
}

// Planar Lab -> planar sRGB; clamped to [0, 1] unless `clamp` is false (predicted
// (a, b) are often out of gamut, and images must be displayable).
template <class T> Tensor<T> lab_to_rgb(const Tensor<T>& lab, bool clamp = true) {
  return color_detail::map_planes(lab, "lab_to_rgb", [clamp](T L, T a, T b) {
    std::array<T, 3> v = lab_to_rgb(L, a, b);
    if (clamp)
      for (T& c : v) c = std::min(std::max(c, T(0)), T(1));
    return v;
  });
}

}  // namespace marrow::data
