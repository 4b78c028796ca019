#pragma once
// One run's lifecycle, shared by every training binary: the output folder,
// resume, metrics.jsonl, step timing, the non-finite guard, Ctrl-C
// save-and-exit, the progress line, checkpoints, summary.json and the plots.
// The training step itself stays in the binary, where a reader looks for it:
//
//   Run run(common, {.name = "unet", .steps = total, .items_per_step = batch}, cli.values());
//   std::int64_t step = run.resume(ckpt);                 // 0, or the checkpoint's step with --resume
//   for (; step < total; ++step) {
//     run.start_step();
//     ... forward, loss, backward, optimizer step ...    // the part a reader came to see
//     run.check_finite(loss, step + 1);
//     const double ms = run.stop_step();
//     run.log({{"step", step + 1}, {"loss", loss}, {"ms", ms}});
//     run.progress(step + 1, {{"loss", loss}});
//     if (run.every(step + 1, eval_interval) || run.interrupted()) run.save(ckpt, step + 1);
//     if (run.interrupted()) return run.interrupted_exit();
//   }
//   run.finish({{"val_loss", v}});                        // plots, summary.json, printed on stdout
//
// Under mpirun every rank runs the same loop: rank 0 alone writes metrics,
// progress, checkpoints and the summary; the others compute their shards
// (dist::DataParallel over run.world() and run.shards()) and wait at each save.
#include <omp.h>

#include <concepts>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "../dist/comm.hpp"
#include "../dist/shards.hpp"
#include "../kernels/gemm.hpp"
#include "checkpoint.hpp"
#include "cli.hpp"
#include "metrics.hpp"
#include "monitor.hpp"
#include "plot.hpp"
#include "progress.hpp"

namespace marrow {

// A picture drawn from metrics.jsonl when the run finishes.
struct RunPlot {
  std::string file;                 // under --out, e.g. "loss.png"
  std::vector<std::string> keys;    // metrics to draw
  PlotOptions options = {};
  std::string x_key = "step";
};

struct RunOptions {
  std::string name;                 // progress label and message prefix ("unet")
  std::int64_t steps = 0;           // the step the run ends at (progress total; 0: unknown)
  std::int64_t items_per_step = 1;  // for items/s on the progress line
  std::int64_t log_every = 0;       // pipes: a progress line every N steps (0: by time)
  std::vector<RunPlot> plots;       // drawn by finish()
};

// A metrics line with the last data-parallel step's all-reduce figures, when
// there is more than one process: milliseconds, and the share hidden behind backward.
inline Json with_allreduce(const dist::AllReduceTiming& t, Json line) {
  if (t.processes > 1) {
    line.set("allreduce_ms", t.ms);
    line.set("allreduce_hidden", t.ms > 0 ? t.hidden_ms / t.ms : 0.0);
  }
  return line;
}

class Run {
 public:
  // Creates --out, opens metrics.jsonl (appending when resuming), installs the
  // Ctrl-C handler and starts the wall clock. `config` (the flags' values) goes
  // into every checkpoint and into summary.json.
  Run(const CommonFlags& flags, RunOptions options, Json config = Json::object())
      : flags_(flags), o_(std::move(options)), config_(std::move(config)), config_text_(config_.dump()),
        world_(dist::Comm::world()), shards_(flags.shards > 0 ? flags.shards : world_.size()),
        log_(world_.is_root() ? MetricsLog(flags.out, flags.resume) : MetricsLog()),
        bar_(ProgressOptions{.total = o_.steps, .items_per_step = o_.items_per_step, .label = o_.name,
                             .every = o_.log_every}) {
    // Every rank the same command (flags, shards, threads), or a clear error at once.
    world_.agree(o_.name + " configuration", config_text_);
    dist::check_shards(shards_, world_);
    if (flags_.resume) last_good_ = flags_.checkpoint_path();
    apply_precision();
    install_interrupt_handler();
  }
  Run(const Run&) = delete;
  Run& operator=(const Run&) = delete;

  std::string path(const std::string& file) const { return flags_.out + "/" + file; }
  std::string checkpoint_path() const { return flags_.checkpoint_path(); }
  bool resuming() const { return flags_.resume; }
  const Json& config() const { return config_; }
  const std::string& config_text() const { return config_text_; }

  // The processes of this run (one without mpirun) and the shards each global
  // batch is cut into (--shards, default one per process).
  const dist::Comm& world() const { return world_; }
  int shards() const { return shards_; }
  bool is_root() const { return world_.is_root(); }
  // Rank 0's value on every rank: for decisions made from a clock (a time
  // budget), which must come out the same everywhere.
  double agreed(double value) const {
    world_.broadcast(&value, sizeof value);
    return value;
  }

  // --resume: load `ckpt` from --ckpt (or OUT/checkpoint.safetensors) and
  // return the step it was saved at; a fresh run returns 0. The checkpoint
  // becomes the one a non-finite loss points back to.
  template <class T> std::int64_t resume(Checkpoint<T>& ckpt) { return resume_info(ckpt).step; }
  template <class T> CheckpointInfo resume_info(Checkpoint<T>& ckpt) {
    if (!flags_.resume) return {};
    const CheckpointInfo info = ckpt.resume(checkpoint_path(), true);
    MARROW_CHECK(o_.steps <= 0 || info.step <= o_.steps, "--resume: ", checkpoint_path(), " is at step ", info.step,
                 ", past the run's end at step ", o_.steps);
    return info;
  }
  // ---- one step ------------------------------------------------------------------------------
  void start_step() { timer_.start(); }
  double stop_step() { return timer_.stop(); }  // the step's milliseconds
  const StepTimer& timer() const { return timer_; }

  // A NaN or infinite value stops the run, naming the step and the checkpoint
  // worth resuming from (the weights in memory are already poisoned).
  void check_finite(double value, std::int64_t step, const char* what = "loss") const {
    marrow::check_finite(value, step, what, last_good_);
  }

  void log(const Json& line) {
    if (is_root()) log_.log(line);
  }
  void log(std::initializer_list<Json::Member> fields) { log(Json::object(fields)); }
  void progress(std::int64_t step, std::initializer_list<Progress::Stat> stats = {}) {
    step_ = step;
    if (is_root()) bar_.update(step, stats);
  }
  void message(const std::string& text) {
    if (is_root()) bar_.message(text);
  }

  // True on the steps where a periodic job (eval, checkpoint) is due; an
  // interval of 0 means never.
  static bool every(std::int64_t step, std::int64_t interval) { return interval > 0 && step % interval == 0; }

  // ---- checkpoints ---------------------------------------------------------------------------
  // Written atomically at --ckpt with the run's config in its metadata, by rank
  // 0 alone (every rank holds the same state); the others wait until it is on disk.
  template <class T>
  void save(const Checkpoint<T>& ckpt, std::int64_t step, const std::map<std::string, std::string>& extra = {}) {
    save_with([&](const std::string& path) { ckpt.save(path, step, config_text_, extra); });
  }
  // For models that write their own checkpoint (a trainer with a save(path) of its own).
  void save_with(const std::function<void(const std::string&)>& write) {
    if (is_root()) write(checkpoint_path());
    world_.barrier();
    last_good_ = checkpoint_path();
  }

  // ---- Ctrl-C --------------------------------------------------------------------------------
  // Also true once the step last shown by progress() reaches --stop-at.
  // With several processes a collective: every rank stops at the same step when any was asked to.
  bool interrupted() const { return world_.any(marrow::interrupted()) || stopping_at(); }
  // After the caller saved: say where, and give the exit code of a stopped run
  // (1 for a signal, 0 for --stop-at, which is how the run was meant to end).
  int interrupted_exit() {
    if (stopping_at() && !marrow::interrupted()) {
      message(marrow::detail::cat("stopped after step ", step_, " (--stop-at): checkpoint saved to ", checkpoint_path(),
                                  " (continue with --resume)"));
      return 0;
    }
    message("interrupted: checkpoint saved to " + checkpoint_path() + " (continue with --resume)");
    return 1;
  }

  // The plots from metrics.jsonl as it stands; also mid-run, for a long run worth watching.
  void draw_plots() const {
    if (!is_root()) return;
    for (const RunPlot& p : o_.plots) plot_metrics(log_.path(), path(p.file), p.keys, p.x_key, p.options);
  }

  // ---- the end -------------------------------------------------------------------------------
  // Ends the progress line, draws the plots, writes summary.json (wall_s,
  // ms_per_step median, peak_rss_mb, threads, seed, config, then `fields`) and
  // prints it on stdout.
  // (A template for the reason write_summary's is one.)
  template <std::same_as<Json> J>
  Json finish(const J& fields) {
    Json all = Json::object({{"threads", omp_get_max_threads()}, {"processes", world_.size()}, {"shards", shards_},
                             {"precision", flags_.precision},
                             {"seed", flags_.seed}, {"config", config_}});
    for (auto& [k, v] : fields.members()) all.set(k, v);
    if (!is_root()) return all;
    bar_.finish();
    draw_plots();
    const Json s = write_summary(flags_.out, timer_, all);
    std::printf("%s\n", s.dump().c_str());
    return s;
  }
  Json finish(std::initializer_list<Json::Member> fields = {}) { return finish(Json::object(fields)); }

 private:
  CommonFlags flags_;
  RunOptions o_;
  Json config_;
  std::string config_text_;
  const dist::Comm& world_;
  int shards_;
  MetricsLog log_;
  Progress bar_;
  StepTimer timer_;
  std::string last_good_;
  std::int64_t step_ = 0;  // the last step progress() showed
  std::optional<ScopedKernelConfig> precision_;  // --precision bf16, for the run's lifetime

  // --precision: fp32 leaves the products as they are; bf16 sends them to the
  // bf16 kernel, or stops here, before any step, on a CPU without it.
  void apply_precision() {
    if (flags_.precision == "fp32") return;
    if (flags_.precision != "bf16") throw UsageError("--precision: expected fp32 or bf16, got '" + flags_.precision + "'");
    if (!detail::bf16_gemm_supported())
      throw Error("--precision bf16 needs a CPU with AVX512-BF16 (VDPBF16PS); this one has none (use --precision fp32)");
    KernelConfig c = kernel_config();
    c.gemm_precision = GemmPrecision::Bf16;
    precision_.emplace(c);
  }

  bool stopping_at() const { return flags_.stop_at > 0 && step_ >= flags_.stop_at; }
};

}  // namespace marrow
