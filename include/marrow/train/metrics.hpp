#pragma once
// Run records: DIR/metrics.jsonl (one JSON object per logged step, flushed per
// line so a crashed or still-running job can be plotted), DIR/summary.json
// (final figures, written atomically), step timing and peak memory.
#include <algorithm>
#include <chrono>
#include <concepts>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "fs.hpp"
#include "json.hpp"

namespace marrow {

// Peak resident set size of this process in MiB (VmHWM), 0 when unavailable.
inline double peak_rss_mb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::strtod(line.c_str() + 6, nullptr) / 1024.0;  // value is in kB
  return 0.0;
}

class MetricsLog {
 public:
  MetricsLog() = default;
  // Creates DIR. `append` keeps earlier lines (a resumed run continues its log).
  explicit MetricsLog(const std::string& dir, bool append = false) : path_(dir + "/metrics.jsonl") {
    make_dirs(dir);
    f_ = std::fopen(path_.c_str(), append ? "ab" : "wb");
    MARROW_CHECK(f_, "cannot open ", path_, " for writing");
  }
  MetricsLog(MetricsLog&& o) noexcept : path_(std::move(o.path_)), f_(o.f_) { o.f_ = nullptr; }
  MetricsLog& operator=(MetricsLog&& o) noexcept {
    std::swap(path_, o.path_);
    std::swap(f_, o.f_);
    return *this;
  }
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;
  ~MetricsLog() {
    if (f_) std::fclose(f_);
  }

  // log({{"step", step}, {"loss", loss}, {"lr", lr}})
  void log(std::initializer_list<Json::Member> fields) { log(Json::object(fields)); }
  void log(const Json& obj) {
    MARROW_CHECK(f_, "MetricsLog: not open");
    MARROW_CHECK(obj.is_object(), "MetricsLog: each line must be a JSON object, got ", obj.describe());
    std::string line = obj.dump();
    line += '\n';
    MARROW_CHECK(std::fwrite(line.data(), 1, line.size(), f_) == line.size() && std::fflush(f_) == 0,
                 "cannot write ", path_);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::FILE* f_ = nullptr;
};

// Every line of a metrics.jsonl as JSON objects (e.g. for plotting). A torn
// last line (the writer was killed mid-line) is skipped; others must parse.
inline std::vector<Json> read_metrics(const std::string& path) {
  const std::string text = read_file(path);
  std::vector<Json> out;
  std::size_t pos = 0, line_no = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    const bool last = end == std::string::npos;
    if (last) end = text.size();
    ++line_no;
    std::string_view line(text.data() + pos, end - pos);
    pos = end + 1;
    if (line.empty()) continue;
    try {
      out.push_back(Json::parse(line));
    } catch (const Error& e) {
      if (last) break;
      throw Error(detail::cat(path, ":", line_no, ": ", e.what()));
    }
  }
  return out;
}

// Wall-clock and per-step timing. ms_per_step is the median, which ignores
// the warm-up step and the occasional checkpoint/eval step.
class StepTimer {
 public:
  using Clock = std::chrono::steady_clock;
  StepTimer() : run_start_(Clock::now()), step_start_(run_start_) {}

  void start() { step_start_ = Clock::now(); }
  // Ends the step begun by start(); returns its length in ms.
  double stop() {
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - step_start_).count();
    ms_.push_back(ms);
    return ms;
  }
  void record(double ms) { ms_.push_back(ms); }

  std::size_t steps() const { return ms_.size(); }
  double median_ms() const {
    if (ms_.empty()) return 0.0;
    std::vector<double> v = ms_;
    const std::size_t mid = v.size() / 2;
    std::nth_element(v.begin(), v.begin() + std::ptrdiff_t(mid), v.end());
    if (v.size() % 2) return v[mid];
    const double hi = v[mid];
    return (*std::max_element(v.begin(), v.begin() + std::ptrdiff_t(mid)) + hi) / 2;
  }
  double total_ms() const {
    double s = 0;
    for (double m : ms_) s += m;
    return s;
  }
  // Seconds since construction.
  double wall_s() const { return std::chrono::duration<double>(Clock::now() - run_start_).count(); }

 private:
  Clock::time_point run_start_, step_start_;
  std::vector<double> ms_;
};

// DIR/summary.json, written atomically. Always has wall_s, ms_per_step
// (median) and peak_rss_mb; `fields` adds the run's final figures.
// (A template, so that a braced list of members always picks the overload below: as a
// Json, {{"loss", 0.5}} could also read as std::string("loss", 0.5) to some compilers.)
template <std::same_as<Json> J>
Json write_summary(const std::string& dir, const StepTimer& timer, const J& fields) {
  Json s = Json::object({{"wall_s", timer.wall_s()}, {"ms_per_step", timer.median_ms()},
                         {"steps_timed", timer.steps()}, {"peak_rss_mb", peak_rss_mb()}});
  for (auto& [k, v] : fields.members()) s.set(k, v);
  make_dirs(dir);
  atomic_write_file(dir + "/summary.json", s.dump() + "\n");
  return s;
}
inline Json write_summary(const std::string& dir, const StepTimer& timer, std::initializer_list<Json::Member> fields = {}) {
  return write_summary(dir, timer, Json::object(fields));
}
inline void write_json(const std::string& path, const Json& j) { atomic_write_file(path, j.dump() + "\n"); }

}  // namespace marrow
