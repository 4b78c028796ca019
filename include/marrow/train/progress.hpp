#pragma once
// Training progress on stderr.
//
// On a terminal: one line redrawn in place, at most ~10 times a second
//   [=========>          ] 450/1000  loss 1.234  acc 0.91 | 3.2k items/s | ETA 0:42
// In a pipe or log file (CI, nohup): a plain line every `every` steps or ~10 s,
// whichever comes first, so logs stay readable and small.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

namespace marrow {

struct ProgressOptions {
  std::int64_t total = 0;           // steps; 0 when unknown (no bar, no ETA)
  std::int64_t items_per_step = 1;  // e.g. batch size, for items/s
  std::string label;                // printed first ("train", "epoch 3")
  std::int64_t every = 0;           // plain mode: a line every N steps (0: by time only)
  double plain_interval_s = 10.0;   // plain mode: at least one line this often
  double tty_interval_s = 0.1;      // terminal: redraw at most this often
  enum class Mode { Auto, Tty, Plain } mode = Mode::Auto;
  std::FILE* out = stderr;
  std::function<double()> clock;  // seconds; tests inject a fake clock
};

class Progress {
 public:
  using Stat = std::pair<const char*, double>;

  explicit Progress(ProgressOptions o) : o_(std::move(o)) {
    if (!o_.clock)
      o_.clock = [] { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); };
    tty_ = o_.mode == ProgressOptions::Mode::Tty ||
           (o_.mode == ProgressOptions::Mode::Auto && ::isatty(::fileno(o_.out)));
    start_ = last_ = o_.clock();
  }
  Progress(std::int64_t total, std::string label = "", std::int64_t items_per_step = 1)
      : Progress(make_options(total, std::move(label), items_per_step)) {}
  ~Progress() { finish(); }
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // `step` steps are done (1-based: call with k+1 after step k). A resumed
  // run's first call sets the baseline for throughput and ETA.
  void update(std::int64_t step, std::initializer_list<Stat> stats = {}) {
    const double now = o_.clock();
    if (first_step_ < 0) {  // rates count from here: the first step's own time is unknown
      first_step_ = step;
      start_ = now;
    }
    step_ = step;
    stats_.assign(stats.begin(), stats.end());
    const bool final = o_.total > 0 && step >= o_.total;
    if (tty_) {
      if (final || now - last_ >= o_.tty_interval_s || !drawn_) draw(now, true);
    } else {
      const bool by_count = o_.every > 0 && step % o_.every == 0;
      if (final || by_count || now - last_ >= o_.plain_interval_s || !drawn_) draw(now, false);
    }
  }

  // A line that must not be overwritten (eval results, "saved checkpoint").
  void message(const std::string& text) {
    if (tty_ && drawn_) std::fputs("\r\033[K", o_.out);
    std::fprintf(o_.out, "%s\n", text.c_str());
    if (tty_ && drawn_) draw(o_.clock(), true);
    std::fflush(o_.out);
  }

  // Ends the in-place line. Idempotent; the destructor calls it.
  void finish() {
    if (tty_ && drawn_ && !finished_) {
      std::fputc('\n', o_.out);
      std::fflush(o_.out);
    }
    finished_ = true;
  }

  bool is_tty() const { return tty_; }
  // Items per second since the first update.
  double rate() const {
    const double dt = last_ - start_;
    return dt > 0 ? double((step_ - first_step_) * o_.items_per_step) / dt : 0.0;
  }

  // "1:02:03" / "4:05"
  static std::string format_duration(double s) {
    if (!std::isfinite(s) || s < 0) return "?";
    const auto t = std::int64_t(s + 0.5);
    char buf[32];
    if (t >= 3600) std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", (long long)(t / 3600), (long long)(t / 60 % 60), (long long)(t % 60));
    else std::snprintf(buf, sizeof buf, "%lld:%02lld", (long long)(t / 60), (long long)(t % 60));
    return buf;
  }
  // 950 / 3.2k / 1.5M
  static std::string format_count(double v) {
    char buf[32];
    if (v >= 1e6) std::snprintf(buf, sizeof buf, "%.1fM", v / 1e6);
    else if (v >= 1e4) std::snprintf(buf, sizeof buf, "%.0fk", v / 1e3);
    else if (v >= 1e3) std::snprintf(buf, sizeof buf, "%.1fk", v / 1e3);
    else if (v >= 10) std::snprintf(buf, sizeof buf, "%.0f", v);
    else std::snprintf(buf, sizeof buf, "%.2f", v);
    return buf;
  }

  // The text of the current line (without control characters).
  std::string line(bool with_bar) const {
    std::string s;
    if (!o_.label.empty()) s += o_.label + " ";
    if (with_bar && o_.total > 0) {
      const int width = 20;
      const double frac = std::min(1.0, double(step_) / double(o_.total));
      const int filled = int(frac * width);
      s += '[';
      for (int i = 0; i < width; ++i) s += i < filled ? '=' : (i == filled ? '>' : ' ');
      s += "] ";
    }
    s += o_.total > 0 ? "step " + std::to_string(step_) + "/" + std::to_string(o_.total) : "step " + std::to_string(step_);
    char buf[64];
    for (auto& [k, v] : stats_) {
      std::snprintf(buf, sizeof buf, "  %s %.4g", k, v);
      s += buf;
    }
    const double r = rate();
    if (r > 0) {
      s += " | " + format_count(r) + (o_.items_per_step == 1 ? " it/s" : " items/s");
      if (o_.total > 0 && step_ < o_.total)
        s += " | ETA " + format_duration(double(o_.total - step_) * double(o_.items_per_step) / r);
    }
    s += " | " + format_duration(last_ - start_);
    return s;
  }

 private:
  static ProgressOptions make_options(std::int64_t total, std::string label, std::int64_t items_per_step) {
    ProgressOptions o;
    o.total = total;
    o.label = std::move(label);
    o.items_per_step = items_per_step;
    return o;
  }
  void draw(double now, bool in_place) {
    last_ = now;
    drawn_ = true;
    const std::string text = line(in_place);
    if (in_place) std::fprintf(o_.out, "\r%s\033[K", text.c_str());
    else std::fprintf(o_.out, "%s\n", text.c_str());
    std::fflush(o_.out);
  }

  ProgressOptions o_;
  bool tty_ = false, drawn_ = false, finished_ = false;
  double start_ = 0, last_ = 0;
  std::int64_t step_ = 0, first_step_ = -1;
  std::vector<Stat> stats_;
};

}  // namespace marrow
