#pragma once
// A small declarative command-line parser for the example binaries.
//
//   Cli cli("mnist_mlp", "an MLP on MNIST");
//   cli.command("train", "train the model").command("eval", "evaluate a checkpoint");
//   cli.flag("steps", steps, "optimizer steps").min(1);
//   cli.flag("resume", resume, "resume from --ckpt");
//   std::string cmd = cli.parse_or_exit(argc, argv);
//
// A flag's default is its target's value when registered; --help prints it.
// Values: `--name value` or `--name=value`; bools also `--name` / `--no-name`.
// Bad usage throws UsageError naming the flag; parse_or_exit() and
// run_main() map it to exit code 2 (runtime failures: 1).
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <exception>
#include <iostream>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "../config.hpp"
#include "json.hpp"

namespace marrow {

struct UsageError : Error {
  using Error::Error;
};

class Cli {
 public:
  using Target = std::variant<int*, std::int64_t*, double*, float*, bool*, std::string*>;

  class Flag {
   public:
    // Inclusive bounds for numeric flags (e.g. a size must be >= 1).
    Flag& min(double v) { min_ = v; return *this; }
    Flag& max(double v) { max_ = v; return *this; }

   private:
    friend class Cli;
    std::string name_, help_, default_;
    Target target_;
    std::optional<double> min_, max_;
  };

  Cli(std::string program, std::string description = "") : program_(std::move(program)), about_(std::move(description)) {}

  Cli& command(const std::string& name, const std::string& help) {
    commands_.push_back({name, help});
    return *this;
  }

  template <class V> Flag& flag(const std::string& name, V& target, const std::string& help) {
    static_assert(std::is_same_v<V, int> || std::is_same_v<V, std::int64_t> || std::is_same_v<V, double> ||
                      std::is_same_v<V, float> || std::is_same_v<V, bool> || std::is_same_v<V, std::string>,
                  "Cli::flag: target must be int, int64_t, double, float, bool or std::string");
    MARROW_CHECK(!name.empty() && name[0] != '-', "Cli: flag name '", name, "' must be given without dashes");
    MARROW_CHECK(name != "help" && !find(name), "Cli: flag --", name, " registered twice");
    Flag f;
    f.name_ = name;
    f.help_ = help;
    f.target_ = &target;
    f.default_ = format(f.target_);
    flags_.push_back(std::move(f));
    return flags_.back();
  }

  // Parse arguments (without the program name). Returns the command ("" when
  // none are registered). Sets help_requested() instead of printing.
  std::string parse(const std::vector<std::string>& args) {
    help_ = false;
    std::string cmd;
    for (std::size_t i = 0; i < args.size(); ++i) {
      const std::string& a = args[i];
      if (a == "--help" || a == "-h") {
        help_ = true;
        return cmd;
      }
      if (a.rfind("--", 0) != 0 || a == "--") {
        if (!commands_.empty() && cmd.empty()) {
          bool known = false;
          for (auto& c : commands_) known = known || c.first == a;
          if (!known) throw UsageError(detail::cat("unknown command '", a, "' (expected one of: ", command_list(), ")"));
          cmd = a;
          continue;
        }
        throw UsageError(detail::cat("unexpected argument '", a, "'"));
      }
      std::string name = a.substr(2);
      std::optional<std::string> value;
      if (auto eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
      }
      Flag* f = find(name);
      if (!f && name.rfind("no-", 0) == 0) {  // --no-flag
        Flag* g = find(name.substr(3));
        if (g && std::holds_alternative<bool*>(g->target_)) {
          if (value) throw UsageError(detail::cat("--", name, " takes no value"));
          *std::get<bool*>(g->target_) = false;
          continue;
        }
      }
      if (!f) throw UsageError(detail::cat("unknown flag --", name, suggest(name)));
      if (std::holds_alternative<bool*>(f->target_) && !value) {
        *std::get<bool*>(f->target_) = true;
        continue;
      }
      if (!value) {
        if (i + 1 >= args.size()) throw UsageError(detail::cat("--", name, ": missing value"));
        value = args[++i];
      }
      assign(*f, *value);
    }
    if (!commands_.empty() && cmd.empty())
      throw UsageError(detail::cat("missing command (expected one of: ", command_list(), ")"));
    return cmd;
  }
  std::string parse(int argc, const char* const* argv) { return parse(std::vector<std::string>(argv + 1, argv + argc)); }

  // For main(): --help prints help and exits 0; bad usage prints the error and
  // a hint and exits 2.
  std::string parse_or_exit(int argc, const char* const* argv) {
    try {
      std::string cmd = parse(argc, argv);
      if (help_) {
        std::cout << help();
        std::exit(0);
      }
      return cmd;
    } catch (const UsageError& e) {
      std::cerr << program_ << ": " << e.what() << "\n(run " << program_ << " --help for usage)\n";
      std::exit(2);
    }
  }

  bool help_requested() const { return help_; }

  // The value of `--name VALUE` (or `--name=VALUE`) in argv, or `fallback`: for
  // a flag that picks the defaults of others (a preset), read before they are
  // registered so that --help shows the defaults it picked.
  static std::string peek(int argc, const char* const* argv, const std::string& name, const std::string& fallback) {
    const std::string key = "--" + name;
    for (int i = 1; i < argc; ++i) {
      const std::string s = argv[i];
      if (s == key && i + 1 < argc) return argv[i + 1];
      if (s.rfind(key + "=", 0) == 0) return s.substr(key.size() + 1);
    }
    return fallback;
  }

  std::string help() const {
    std::string s = "usage: " + program_ + (commands_.empty() ? "" : " <command>") + " [flags]\n";
    if (!about_.empty()) s += about_ + "\n";
    if (!commands_.empty()) {
      s += "\ncommands:\n";
      for (auto& [c, h] : commands_) s += "  " + pad(c, 12) + " " + h + "\n";
    }
    s += "\nflags:\n";
    for (auto& f : flags_) {
      const bool is_bool = std::holds_alternative<bool*>(f.target_);
      std::string left = is_bool ? "--[no-]" + f.name_ : "--" + f.name_ + " " + metavar(f.target_);
      std::string line = "  " + pad(left, 24) + " " + f.help_ + " (default: " +
                         (f.default_.empty() && std::holds_alternative<std::string*>(f.target_) ? "\"\"" : f.default_) + ")";
      if (f.min_ || f.max_) {
        line += " [";
        if (f.min_) line += ">= " + Cli::num(*f.min_);
        if (f.min_ && f.max_) line += ", ";
        if (f.max_) line += "<= " + Cli::num(*f.max_);
        line += "]";
      }
      s += line + "\n";
    }
    s += "  " + pad("--help", 24) + " show this help and exit\n";
    return s;
  }

  // Current values of every flag as a JSON object: the run's config, for
  // summary.json and checkpoints.
  Json values() const {
    Json j = Json::object();
    for (auto& f : flags_)
      std::visit([&](auto* p) { j.set(f.name_, Json(*p)); }, f.target_);
    return j;
  }

 private:
  Flag* find(const std::string& name) {
    for (auto& f : flags_)
      if (f.name_ == name) return &f;
    return nullptr;
  }

  static std::string num(double v) {
    std::string s;
    Json::append_number(s, v);
    return s;
  }
  static std::string format(const Target& t) {
    return std::visit(
        [](auto* p) -> std::string {
          using V = std::remove_pointer_t<decltype(p)>;
          if constexpr (std::is_same_v<V, bool>) return *p ? "true" : "false";
          else if constexpr (std::is_same_v<V, std::string>) return *p;
          else if constexpr (std::is_integral_v<V>) return std::to_string(*p);
          else return num(double(*p));
        },
        t);
  }
  static const char* metavar(const Target& t) {
    if (std::holds_alternative<std::string*>(t)) return "STR";
    if (std::holds_alternative<double*>(t) || std::holds_alternative<float*>(t)) return "X";
    return "N";
  }
  static std::string pad(std::string s, std::size_t w) {
    if (s.size() < w) s.append(w - s.size(), ' ');
    return s;
  }
  std::string command_list() const {
    std::string s;
    for (auto& c : commands_) s += (s.empty() ? "" : ", ") + c.first;
    return s;
  }

  void assign(Flag& f, const std::string& v) {
    const std::string& n = f.name_;
    auto bad = [&](const char* what) { return UsageError(detail::cat("--", n, ": expected ", what, ", got '", v, "'")); };
    auto check_bounds = [&](double x) {
      if (f.min_ && x < *f.min_) throw UsageError(detail::cat("--", n, ": must be >= ", num(*f.min_), ", got ", v));
      if (f.max_ && x > *f.max_) throw UsageError(detail::cat("--", n, ": must be <= ", num(*f.max_), ", got ", v));
    };
    std::visit(
        [&](auto* p) {
          using V = std::remove_pointer_t<decltype(p)>;
          if constexpr (std::is_same_v<V, bool>) {
            if (v == "true" || v == "1" || v == "yes" || v == "on") *p = true;
            else if (v == "false" || v == "0" || v == "no" || v == "off") *p = false;
            else throw bad("true or false");
          } else if constexpr (std::is_same_v<V, std::string>) {
            *p = v;
          } else if constexpr (std::is_integral_v<V>) {
            V x{};
            auto r = std::from_chars(v.data(), v.data() + v.size(), x);
            if (r.ec == std::errc::result_out_of_range) throw bad("an integer in range");
            if (v.empty() || r.ec != std::errc() || r.ptr != v.data() + v.size()) throw bad("an integer");
            check_bounds(double(x));
            *p = x;
          } else {
            double x = 0;
            auto r = std::from_chars(v.data(), v.data() + v.size(), x);
            if (v.empty() || r.ec != std::errc() || r.ptr != v.data() + v.size() || !std::isfinite(x))
              throw bad("a finite number");
            check_bounds(x);
            *p = V(x);
          }
        },
        f.target_);
  }

  // " (did you mean --steps?)" for a flag within edit distance 2.
  std::string suggest(const std::string& name) const {
    std::string best;
    std::size_t best_d = 3;
    for (auto& f : flags_) {
      const std::string& b = f.name_;
      std::vector<std::size_t> row(b.size() + 1);
      for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
      for (std::size_t i = 1; i <= name.size(); ++i) {
        std::size_t diag = row[0];
        row[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
          const std::size_t up = row[j];
          row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (name[i - 1] == b[j - 1] ? 0 : 1)});
          diag = up;
        }
      }
      if (row[b.size()] < best_d) {
        best_d = row[b.size()];
        best = b;
      }
    }
    return best.empty() ? "" : " (did you mean --" + best + "?)";
  }

  std::string program_, about_;
  std::vector<std::pair<std::string, std::string>> commands_;
  std::deque<Flag> flags_;  // deque: Flag& handed out by flag() stay valid
  bool help_ = false;
};

// Flags every example binary shares. Defaults are the caller's: set the
// fields before add_to().
struct CommonFlags {
  std::string data = "data";
  std::string out = "runs/out";
  std::string ckpt = "";  // empty: OUT/checkpoint.safetensors
  bool resume = false;
  std::int64_t seed = 0;
  int threads = 0;  // 0: OpenMP's default
  std::int64_t steps = 1000;
  int epochs = 0;  // 0: train by --steps
  int shards = 0;  // data-parallel shards per global batch (0: one per process)
  std::int64_t stop_at = 0;  // save and stop after this step (0: run to the end)
  std::string precision = "fp32";  // fp32 or bf16: the matrix products' operands (Run applies it)

  // The flags a binary offers: it leaves out those it does not use, so that
  // giving one is a usage error rather than silently ignored.
  struct Offer {
    bool data = true, ckpt = true, resume = true, seed = true, threads = true, steps = true, epochs = true;
    bool shards = false;   // binaries whose training step runs through dist::DataParallel
    bool stop_at = false;  // binaries whose loop stops through Run::interrupted()
    bool precision = false;  // binaries that train through Run, which applies --precision
  };

  void add_to(Cli& cli) { add_to(cli, Offer{}); }
  void add_to(Cli& cli, Offer offer) {
    if (offer.data) cli.flag("data", data, "data directory or file");
    cli.flag("out", out, "output directory (metrics.jsonl, summary.json, pictures)");
    if (offer.ckpt) cli.flag("ckpt", ckpt, "checkpoint file (empty: OUT/checkpoint.safetensors)");
    if (offer.resume) cli.flag("resume", resume, "resume training from --ckpt");
    if (offer.seed) cli.flag("seed", seed, "random seed").min(0);
    if (offer.threads) cli.flag("threads", threads, "OpenMP threads (0: all cores)").min(0);
    if (offer.steps) cli.flag("steps", steps, "optimizer steps").min(0);
    if (offer.epochs) cli.flag("epochs", epochs, "epochs (0: use --steps)").min(0);
    if (offer.shards)
      cli.flag("shards", shards,
               "cut each global batch into K shards, summed in a fixed order (a power of two, a multiple of the "
               "processes; 0: one per process): the same K gives the same bits on any number of processes")
          .min(0);
    if (offer.stop_at)
      cli.flag("stop-at", stop_at,
               "save a checkpoint and stop after this step, the schedules still spanning the whole run "
               "(continue with --resume; for job slots shorter than the run; 0: run to the end)")
          .min(0);
    if (offer.precision)
      cli.flag("precision", precision,
               "fp32, or bf16: matrix products on bfloat16 operands with fp32 sums (AVX512-BF16 CPUs); weights, "
               "gradients, optimizer state, norms, softmax, losses and checkpoints stay fp32");
  }
  std::string checkpoint_path() const { return ckpt.empty() ? out + "/checkpoint.safetensors" : ckpt; }
};

// Run a binary's body, mapping failures to exit codes with a message naming
// the cause: UsageError -> 2, any other exception -> 1.
template <class F> int run_main(const char* program, F&& body) {
  try {
    return body();
  } catch (const UsageError& e) {
    std::cerr << program << ": " << e.what() << "\n(run " << program << " --help for usage)\n";
    if (detail::g_on_failure) detail::g_on_failure(2);
    return 2;
  } catch (const std::exception& e) {
    std::cerr << program << ": error: " << e.what() << "\n";
    if (detail::g_on_failure) detail::g_on_failure(1);
    return 1;
  }
}

}  // namespace marrow
