#pragma once
// Line plots to PNG with no dependency beyond stb_image_write: several series,
// axes with "nice" ticks and numeric labels, a legend, a title, optional log-y.
// Text uses our own 5x7 bitmap font (font5x7.hpp), scaled by an integer.
//
//   plot_png("runs/x/loss.png", {{"train", steps, train_loss}, {"val", steps, val_loss}},
//            {.title = "loss", .xlabel = "step", .log_y = true});
//   plot_metrics("runs/x/metrics.jsonl", "runs/x/loss.png", {"loss", "val_loss"});
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "font5x7.hpp"
#include "fs.hpp"
#include "metrics.hpp"

// stb_image_write, compiled into every including TU as static functions so the
// library stays header-only. data/image.hpp includes it the same way behind the
// same guard, so both headers can share one TU (stb's own guard covers only
// the declarations, not the implementation). A TU that already included
// stb_image_write.h non-statically must include marrow headers first.
#ifndef MARROW_STB_WRITE_INCLUDED
#define MARROW_STB_WRITE_INCLUDED
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wconversion"
#ifndef STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_STATIC
#endif
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop
#endif

namespace marrow {

struct Rgb {
  std::uint8_t r = 0, g = 0, b = 0;
};

// An RGB8 image with antialiased drawing primitives.
class Canvas {
 public:
  Canvas(int width, int height, Rgb background = {255, 255, 255}) : w_(width), h_(height) {
    MARROW_CHECK(width > 0 && height > 0 && width <= 16384 && height <= 16384, "Canvas: bad size ", width, "x", height);
    rgb_.resize(std::size_t(w_) * std::size_t(h_) * 3);
    for (std::size_t i = 0; i < rgb_.size(); i += 3) {
      rgb_[i] = background.r;
      rgb_[i + 1] = background.g;
      rgb_[i + 2] = background.b;
    }
  }
  int width() const { return w_; }
  int height() const { return h_; }
  const std::vector<std::uint8_t>& pixels() const { return rgb_; }
  Rgb at(int x, int y) const {
    const std::size_t i = (std::size_t(y) * std::size_t(w_) + std::size_t(x)) * 3;
    return {rgb_[i], rgb_[i + 1], rgb_[i + 2]};
  }

  void blend(int x, int y, Rgb c, double alpha) {
    if (x < 0 || y < 0 || x >= w_ || y >= h_ || alpha <= 0) return;
    alpha = std::min(alpha, 1.0);
    std::uint8_t* p = &rgb_[(std::size_t(y) * std::size_t(w_) + std::size_t(x)) * 3];
    p[0] = std::uint8_t(std::lround(p[0] + (c.r - p[0]) * alpha));
    p[1] = std::uint8_t(std::lround(p[1] + (c.g - p[1]) * alpha));
    p[2] = std::uint8_t(std::lround(p[2] + (c.b - p[2]) * alpha));
  }
  void fill_rect(int x0, int y0, int x1, int y1, Rgb c) {  // inclusive corners
    for (int y = std::max(0, y0); y <= std::min(h_ - 1, y1); ++y)
      for (int x = std::max(0, x0); x <= std::min(w_ - 1, x1); ++x) blend(x, y, c, 1.0);
  }
  void hline(int x0, int x1, int y, Rgb c) { fill_rect(x0, y, x1, y, c); }
  void vline(int x, int y0, int y1, Rgb c) { fill_rect(x, y0, x, y1, c); }

  // A polyline of `width` pixels with round joins, antialiased by the
  // distance from each pixel centre to the segment. Coverage is the max over
  // segments (not a sum), so joints do not darken. NaN points break the line.
  // Pixels outside the clip rectangle [cx0, cx1] x [cy0, cy1] are left alone.
  void polyline(const std::vector<double>& xs, const std::vector<double>& ys, Rgb c, double width, int cx0, int cy0,
                int cx1, int cy1) {
    cx0 = std::max(cx0, 0), cy0 = std::max(cy0, 0), cx1 = std::min(cx1, w_ - 1), cy1 = std::min(cy1, h_ - 1);
    if (cx1 < cx0 || cy1 < cy0) return;
    const int cw = cx1 - cx0 + 1;
    std::vector<float> cov(std::size_t(cw) * std::size_t(cy1 - cy0 + 1), 0.0f);
    const double r = width / 2;
    auto seg = [&](double x0, double y0, double x1, double y1) {
      // Keep coordinates sane: points far outside are clamped (the clip rect
      // hides them anyway) so the pixel loops stay bounded.
      const double lim = 4.0 * std::max(w_, h_);
      x0 = std::clamp(x0, -lim, lim), x1 = std::clamp(x1, -lim, lim);
      y0 = std::clamp(y0, -lim, lim), y1 = std::clamp(y1, -lim, lim);
      const int bx0 = std::max(cx0, int(std::floor(std::min(x0, x1) - r - 1)));
      const int bx1 = std::min(cx1, int(std::ceil(std::max(x0, x1) + r + 1)));
      const int by0 = std::max(cy0, int(std::floor(std::min(y0, y1) - r - 1)));
      const int by1 = std::min(cy1, int(std::ceil(std::max(y0, y1) + r + 1)));
      const double dx = x1 - x0, dy = y1 - y0, len2 = dx * dx + dy * dy;
      const bool steep = std::abs(dy) > std::abs(dx);
      // Walk the major axis; on the minor axis visit only a band around the line.
      const int a0 = steep ? by0 : bx0, a1 = steep ? by1 : bx1;
      for (int a = a0; a <= a1; ++a) {
        double m;  // minor coordinate of the line at this major coordinate
        if (steep) m = dy != 0 ? x0 + dx * std::clamp((a + 0.5 - y0) / dy, 0.0, 1.0) : x0;
        else m = dx != 0 ? y0 + dy * std::clamp((a + 0.5 - x0) / dx, 0.0, 1.0) : y0;
        const int lo = int(std::floor(m - r - 1.5)), hi = int(std::ceil(m + r + 1.5));
        for (int b = lo; b <= hi; ++b) {
          const int px = steep ? b : a, py = steep ? a : b;
          if (px < bx0 || px > bx1 || py < by0 || py > by1) continue;
          const double qx = px + 0.5 - x0, qy = py + 0.5 - y0;
          const double t = len2 > 0 ? std::clamp((qx * dx + qy * dy) / len2, 0.0, 1.0) : 0.0;
          const double ex = qx - t * dx, ey = qy - t * dy;
          const double d = std::sqrt(ex * ex + ey * ey);
          const float k = float(std::clamp(r + 0.5 - d, 0.0, 1.0));
          float& cv = cov[std::size_t(py - cy0) * std::size_t(cw) + std::size_t(px - cx0)];
          cv = std::max(cv, k);
        }
      }
    };
    const std::size_t n = std::min(xs.size(), ys.size());
    for (std::size_t i = 0; i + 1 < n; ++i)
      if (std::isfinite(xs[i]) && std::isfinite(ys[i]) && std::isfinite(xs[i + 1]) && std::isfinite(ys[i + 1]))
        seg(xs[i], ys[i], xs[i + 1], ys[i + 1]);
    for (std::size_t i = 0; i < n; ++i)  // isolated points show as dots
      if (std::isfinite(xs[i]) && std::isfinite(ys[i]) && (i == 0 || !std::isfinite(ys[i - 1])) &&
          (i + 1 == n || !std::isfinite(ys[i + 1])))
        seg(xs[i], ys[i], xs[i], ys[i]);
    for (int y = cy0; y <= cy1; ++y)
      for (int x = cx0; x <= cx1; ++x) blend(x, y, c, cov[std::size_t(y - cy0) * std::size_t(cw) + std::size_t(x - cx0)]);
  }

  // Text with its top-left corner at (x, y).
  void text(int x, int y, std::string_view s, Rgb c, int scale = 1) {
    for (char ch : s) {
      const std::uint8_t* g = font5x7::glyph(ch);
      const int y0 = y + font5x7::drop(ch) * scale;
      for (int row = 0; row < font5x7::kHeight; ++row)
        for (int col = 0; col < font5x7::kWidth; ++col)
          if (g[row] & (0x10 >> col)) fill_rect(x + col * scale, y0 + row * scale, x + col * scale + scale - 1, y0 + row * scale + scale - 1, c);
      x += font5x7::kAdvance * scale;
    }
  }
  // Text rotated 90° counter-clockwise (reads bottom to top); (x, y) is the
  // top-left of its bounding box.
  void text_up(int x, int y, std::string_view s, Rgb c, int scale = 1) {
    int base = y + text_width(s, scale) - 1;  // bottom of the box: the first character starts here
    for (char ch : s) {
      const std::uint8_t* g = font5x7::glyph(ch);
      for (int row = 0; row < font5x7::kHeight; ++row)
        for (int col = 0; col < font5x7::kWidth; ++col)
          if (g[row] & (0x10 >> col)) {
            const int px = x + (row + font5x7::drop(ch)) * scale, py = base - col * scale;
            fill_rect(px, py - scale + 1, px + scale - 1, py, c);
          }
      base -= font5x7::kAdvance * scale;
    }
  }
  static int text_width(std::string_view s, int scale = 1) {
    return s.empty() ? 0 : int(s.size()) * font5x7::kAdvance * scale - scale;
  }
  static int text_height(int scale = 1) { return font5x7::kHeight * scale; }

  std::string encode_png() const {
    std::string out;
    auto sink = [](void* ctx, void* data, int size) { static_cast<std::string*>(ctx)->append(static_cast<const char*>(data), std::size_t(size)); };
    const int ok = stbi_write_png_to_func(sink, &out, w_, h_, 3, rgb_.data(), w_ * 3);
    MARROW_CHECK(ok, "Canvas: PNG encoding failed");
    return out;
  }
  // Atomic, like every file marrow writes.
  void write_png(const std::string& path) const { atomic_write_file(path, encode_png()); }

 private:
  int w_, h_;
  std::vector<std::uint8_t> rgb_;
};

struct Series {
  std::string name;
  std::vector<double> x, y;
};

struct PlotOptions {
  std::string title, xlabel, ylabel;
  bool log_y = false;  // y <= 0 points are dropped
  int width = 800, height = 500;
  int text_scale = 2;     // title, axis labels
  int tick_scale = 1;     // tick labels and legend... scaled up on big canvases
  double line_width = 2.0;
};

namespace detail {

// ~`target` round tick values (1, 2, 5 x 10^k steps) covering [lo, hi].
inline std::vector<double> nice_ticks(double lo, double hi, int target = 6) {
  const double raw = (hi - lo) / std::max(1, target);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / mag;
  const double step = (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
  std::vector<double> t;
  for (double v = std::ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9 && t.size() < 50; v += step)
    t.push_back(std::abs(v) < step * 1e-9 ? 0.0 : v);
  return t;
}

inline std::string tick_label(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

inline Rgb palette(std::size_t i) {
  static const Rgb k[] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44},   {214, 39, 40},  {148, 103, 189},
                          {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}};
  return k[i % 10];
}

}  // namespace detail

inline Canvas render_plot(const std::vector<Series>& series, const PlotOptions& o) {
  Canvas cv(o.width, o.height);
  const Rgb ink{0, 0, 0}, grid{225, 225, 225}, frame{90, 90, 90};
  const int ts = o.text_scale, ks = o.tick_scale;
  auto ty = [&](double y) { return o.log_y ? (y > 0 ? std::log10(y) : std::numeric_limits<double>::quiet_NaN()) : y; };

  // Data range over finite points.
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (auto& s : series)
    for (std::size_t i = 0; i < std::min(s.x.size(), s.y.size()); ++i) {
      const double y = ty(s.y[i]);
      if (!std::isfinite(s.x[i]) || !std::isfinite(y)) continue;
      x0 = std::min(x0, s.x[i]), x1 = std::max(x1, s.x[i]), y0 = std::min(y0, y), y1 = std::max(y1, y);
    }
  if (!(x0 <= x1)) x0 = 0, x1 = 1, y0 = 0, y1 = 1;  // nothing to draw: an empty frame
  if (x1 - x0 < 1e-12 * std::max(1.0, std::abs(x0))) x0 -= 0.5, x1 += 0.5;
  if (y1 - y0 < 1e-12 * std::max(1.0, std::abs(y0))) y0 -= 0.5, y1 += 0.5;
  const double pad = 0.05 * (y1 - y0);
  y0 -= pad, y1 += pad;

  // Ticks (in transformed space for log-y).
  std::vector<double> xt = detail::nice_ticks(x0, x1, 6), yt;
  std::vector<std::string> yl;
  if (o.log_y) {
    if (y1 - y0 > 8) {  // many decades: every k-th power of ten
      const double step = std::ceil((y1 - y0) / 6);
      for (double e = std::ceil(y0 / step) * step; e <= y1; e += step) yt.push_back(e);
    } else if (y1 - y0 > 3) {
      for (double e = std::ceil(y0); e <= y1; e += 1) yt.push_back(e);
    } else if (y1 - y0 > 0.7) {  // a few decades: 1, 2, 5 x 10^k
      for (double e = std::floor(y0); e <= y1; e += 1)
        for (double m : {1.0, 2.0, 5.0})
          if (const double t = e + std::log10(m); t >= y0 && t <= y1) yt.push_back(t);
    } else {  // less than ~a decade: round values, placed by their log
      for (double v : detail::nice_ticks(std::pow(10, y0), std::pow(10, y1), 5))
        if (v > 0) yt.push_back(std::log10(v));
    }
    for (double e : yt) yl.push_back(detail::tick_label(std::pow(10, e)));
  } else {
    yt = detail::nice_ticks(y0, y1, 6);
    for (double v : yt) yl.push_back(detail::tick_label(v));
  }

  // Layout: margins fit the labels.
  int ylab_w = 0;
  for (auto& l : yl) ylab_w = std::max(ylab_w, Canvas::text_width(l, ks));
  const int left = 12 + (o.ylabel.empty() ? 0 : Canvas::text_height(ts) + 10) + ylab_w + 8;
  const int top = 12 + (o.title.empty() ? 0 : Canvas::text_height(ts) + 12);
  const int bottom = o.height - (12 + (o.xlabel.empty() ? 0 : Canvas::text_height(ts) + 10) + Canvas::text_height(ks) + 10);
  const int right = o.width - 20;
  MARROW_CHECK(right - left > 20 && bottom - top > 20, "plot: canvas ", o.width, "x", o.height, " too small for its labels");
  auto px = [&](double x) { return left + (x - x0) / (x1 - x0) * (right - left); };
  auto py = [&](double y) { return bottom - (y - y0) / (y1 - y0) * (bottom - top); };

  // Grid, ticks, labels.
  for (std::size_t i = 0; i < xt.size(); ++i) {
    const int x = int(std::lround(px(xt[i])));
    cv.vline(x, top, bottom, grid);
    cv.vline(x, bottom, bottom + 4, frame);
    const std::string l = detail::tick_label(xt[i]);
    cv.text(x - Canvas::text_width(l, ks) / 2, bottom + 7, l, ink, ks);
  }
  for (std::size_t i = 0; i < yt.size(); ++i) {
    const int y = int(std::lround(py(yt[i])));
    cv.hline(left, right, y, grid);
    cv.hline(left - 4, left, y, frame);
    cv.text(left - 7 - Canvas::text_width(yl[i], ks), y - Canvas::text_height(ks) / 2, yl[i], ink, ks);
  }
  cv.hline(left, right, top, frame), cv.hline(left, right, bottom, frame);
  cv.vline(left, top, bottom, frame), cv.vline(right, top, bottom, frame);
  if (!o.title.empty()) cv.text((left + right - Canvas::text_width(o.title, ts)) / 2, 12, o.title, ink, ts);
  if (!o.xlabel.empty())
    cv.text((left + right - Canvas::text_width(o.xlabel, ts)) / 2, o.height - 10 - Canvas::text_height(ts), o.xlabel, ink, ts);
  if (!o.ylabel.empty())
    cv.text_up(12, (top + bottom - Canvas::text_width(o.ylabel, ts)) / 2, o.ylabel, ink, ts);

  // Series.
  for (std::size_t k = 0; k < series.size(); ++k) {
    const auto& s = series[k];
    const std::size_t n = std::min(s.x.size(), s.y.size());
    std::vector<double> xs(n), ys(n);
    for (std::size_t i = 0; i < n; ++i) {
      const double y = ty(s.y[i]);
      const bool ok = std::isfinite(s.x[i]) && std::isfinite(y);
      xs[i] = ok ? px(s.x[i]) : NAN;
      ys[i] = ok ? py(y) : NAN;
    }
    cv.polyline(xs, ys, detail::palette(k), o.line_width, left + 1, top + 1, right - 1, bottom - 1);
  }

  // Legend: top-right inside the frame, on a white box.
  std::size_t named = 0;
  int lw = 0;
  for (auto& s : series)
    if (!s.name.empty()) ++named, lw = std::max(lw, Canvas::text_width(s.name, ks));
  if (named > 0) {
    const int row = Canvas::text_height(ks) + 6, sw = 18;
    const int bw = lw + sw + 18, bh = int(named) * row + 8;
    const int bx = right - bw - 8, by = top + 8;
    cv.fill_rect(bx, by, bx + bw, by + bh, {255, 255, 255});
    cv.hline(bx, bx + bw, by, frame), cv.hline(bx, bx + bw, by + bh, frame);
    cv.vline(bx, by, by + bh, frame), cv.vline(bx + bw, by, by + bh, frame);
    int yy = by + 6;
    for (std::size_t k = 0; k < series.size(); ++k) {
      if (series[k].name.empty()) continue;
      const int mid = yy + Canvas::text_height(ks) / 2;
      cv.fill_rect(bx + 6, mid - 1, bx + 6 + sw, mid + 1, detail::palette(k));
      cv.text(bx + 6 + sw + 6, yy, series[k].name, ink, ks);
      yy += row;
    }
  }
  return cv;
}

inline void plot_png(const std::string& path, const std::vector<Series>& series, const PlotOptions& o = {}) {
  render_plot(series, o).write_png(path);
}

// Plot `keys` against `x_key` from a metrics.jsonl. Lines lacking a key (e.g.
// validation logged every 100 steps) are skipped for that series.
inline void plot_metrics(const std::string& metrics_path, const std::string& png_path, const std::vector<std::string>& keys,
                         const std::string& x_key = "step", PlotOptions o = {}) {
  std::vector<Series> series;
  for (auto& k : keys) series.push_back({k, {}, {}});
  for (const Json& line : read_metrics(metrics_path)) {
    const Json* x = line.find(x_key);
    if (!x || !x->is_number()) continue;
    for (std::size_t i = 0; i < keys.size(); ++i)
      if (const Json* y = line.find(keys[i])) {
        series[i].x.push_back(x->as_double());
        series[i].y.push_back(y->is_number() ? y->as_double() : NAN);  // null (a NaN loss) breaks the line
      }
  }
  if (o.xlabel.empty()) o.xlabel = x_key;
  plot_png(png_path, series, o);
}

}  // namespace marrow
