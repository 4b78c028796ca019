// Training-loop plumbing: CLI, JSON, metrics, progress, plots, monitors, checkpoints.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <marrow/nn/module.hpp>
#include <marrow/train/checkpoint.hpp>
#include <marrow/train/cli.hpp>
#include <marrow/train/json.hpp>
#include <marrow/train/metrics.hpp>
#include <marrow/train/model_config.hpp>
#include <marrow/train/monitor.hpp>
#include <marrow/train/plot.hpp>
#include <marrow/train/progress.hpp>
#include <marrow/train/run.hpp>

#include "testing.hpp"

using namespace marrow;

namespace {

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/marrow_train_XXXXXX";
    const char* p = ::mkdtemp(tmpl);
    REQUIRE(p != nullptr);
    path = p;
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string operator/(const std::string& name) const { return path + "/" + name; }
};

// Run `body` in a forked child with stdout/stderr silenced; returns its wait status.
template <class F> int in_child(F&& body) {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    std::freopen("/dev/null", "w", stdout);
    std::freopen("/dev/null", "w", stderr);
    body();
    ::_exit(0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

struct Flags {
  std::int64_t steps = 1000;
  int batch = 32;
  double lr = 1e-3;
  float wd = 0.5f;
  bool resume = false, amp = true;
  std::string out = "runs/x";
};
Cli make_cli(Flags& f) {
  Cli cli("toy", "a toy model");
  cli.command("train", "train it").command("sample", "sample from it");
  cli.flag("steps", f.steps, "optimizer steps").min(1);
  cli.flag("batch", f.batch, "batch size").min(1).max(4096);
  cli.flag("lr", f.lr, "learning rate").min(0);
  cli.flag("wd", f.wd, "weight decay");
  cli.flag("resume", f.resume, "resume from the checkpoint");
  cli.flag("amp", f.amp, "mixed precision");
  cli.flag("out", f.out, "output directory");
  return cli;
}

}  // namespace

// ---- CLI -----------------------------------------------------------------------

TEST_CASE("cli: parses every value form and type, and subcommands") {
  Flags f;
  Cli cli = make_cli(f);
  CHECK(cli.parse({"train", "--steps", "50", "--batch=8", "--lr", "3e-4", "--wd=0.25", "--resume", "--no-amp", "--out", "a b"}) ==
        "train");
  CHECK(f.steps == 50);
  CHECK(f.batch == 8);
  CHECK(f.lr == 3e-4);
  CHECK(f.wd == 0.25f);
  CHECK(f.resume);
  CHECK(!f.amp);
  CHECK(f.out == "a b");
  CHECK(cli.parse({"--resume=false", "--amp=true", "sample"}) == "sample");
  CHECK(!f.resume);
  CHECK(f.amp);
  CHECK(!cli.help_requested());
  cli.parse({"sample", "--help", "--bogus"});  // help wins and stops parsing
  CHECK(cli.help_requested());
  const Json v = cli.values();
  CHECK(v.at("steps").as_int() == 50);
  CHECK(v.at("out").as_string() == "a b");
}

TEST_CASE("cli: --help lists every flag with its default") {
  Flags f;
  Cli cli = make_cli(f);
  const std::string h = cli.help();
  CHECK(h.find("usage: toy <command> [flags]") != std::string::npos);
  CHECK(h.find("train") != std::string::npos);
  CHECK(h.find("--steps N") != std::string::npos);
  CHECK(h.find("optimizer steps (default: 1000) [>= 1]") != std::string::npos);
  CHECK(h.find("batch size (default: 32) [>= 1, <= 4096]") != std::string::npos);
  CHECK(h.find("(default: 0.001)") != std::string::npos);
  CHECK(h.find("(default: 0.5)") != std::string::npos);
  CHECK(h.find("--[no-]resume") != std::string::npos);
  CHECK(h.find("(default: false)") != std::string::npos);
  CHECK(h.find("(default: runs/x)") != std::string::npos);
  CHECK(h.find("--help") != std::string::npos);
  // Defaults are captured at registration, not at help time.
  cli.parse({"train", "--steps", "7"});
  CHECK(cli.help().find("(default: 1000)") != std::string::npos);
}

TEST_CASE("cli: bad usage throws UsageError naming the flag") {
  Flags f;
  Cli cli = make_cli(f);
  auto err = [&](std::vector<std::string> args, const char* msg) {
    CAPTURE(msg);
    CHECK_THROWS_WITH_AS(cli.parse(args), doctest::Contains(msg), UsageError);
  };
  err({"train", "--stpes", "5"}, "unknown flag --stpes (did you mean --steps?)");
  err({"train", "--zzzzzz"}, "unknown flag --zzzzzz");
  err({"train", "--steps", "abc"}, "--steps: expected an integer, got 'abc'");
  err({"train", "--steps", "12x"}, "--steps: expected an integer, got '12x'");
  err({"train", "--steps", "99999999999999999999"}, "--steps: expected an integer in range");
  err({"train", "--batch", "-3"}, "--batch: must be >= 1, got -3");
  err({"train", "--batch=5000"}, "--batch: must be <= 4096, got 5000");
  err({"train", "--lr", "fast"}, "--lr: expected a finite number, got 'fast'");
  err({"train", "--lr", "nan"}, "--lr: expected a finite number");
  err({"train", "--lr"}, "--lr: missing value");
  err({"train", "--amp=maybe"}, "--amp: expected true or false, got 'maybe'");
  err({"train", "--no-amp=1"}, "--no-amp takes no value");
  err({"train", "--no-steps"}, "unknown flag --no-steps");
  err({"fly"}, "unknown command 'fly' (expected one of: train, sample)");
  err({"--steps", "3"}, "missing command");
  err({"train", "extra"}, "unexpected argument 'extra'");
  CHECK_THROWS_WITH_AS(cli.flag("steps", f.steps, "again"), doctest::Contains("--steps registered twice"), Error);
}

TEST_CASE("cli: parse_or_exit and run_main map outcomes to exit codes 0 / 2 / 1") {
  auto run = [](std::vector<const char*> argv) {
    return in_child([&] {
      Flags f;
      Cli cli = make_cli(f);
      cli.parse_or_exit(int(argv.size()), argv.data());
      std::exit(5);  // parsed fine
    });
  };
  int s = run({"toy", "--help"});
  CHECK((WIFEXITED(s) && WEXITSTATUS(s) == 0));
  s = run({"toy", "train", "--steps", "x"});
  CHECK((WIFEXITED(s) && WEXITSTATUS(s) == 2));
  s = run({"toy", "train"});
  CHECK((WIFEXITED(s) && WEXITSTATUS(s) == 5));
  auto rc_of = [](auto body) {
    const int st = in_child([&] { ::_exit(run_main("toy", body)); });
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  };
  CHECK(rc_of([]() -> int { throw UsageError("--x: bad"); }) == 2);
  CHECK(rc_of([]() -> int { throw Error("data file missing"); }) == 1);
  CHECK(rc_of([] { return 0; }) == 0);
}

TEST_CASE("cli: peek reads one flag's value before the flags are registered") {
  const char* argv[] = {"prog", "train", "--preset", "dcgan", "--batch=8", "--steps"};
  CHECK(Cli::peek(6, argv, "preset", "best") == "dcgan");
  CHECK(Cli::peek(6, argv, "batch", "64") == "8");
  CHECK(Cli::peek(6, argv, "steps", "5") == "5");  // no value follows
  CHECK(Cli::peek(6, argv, "seed", "1") == "1");
}

TEST_CASE("cli: CommonFlags registers the shared flags") {
  CommonFlags c;
  c.steps = 200;
  Cli cli("m");
  c.add_to(cli);
  cli.parse({"--out", "o", "--seed", "9", "--threads", "2", "--resume"});
  CHECK(c.out == "o");
  CHECK(c.seed == 9);
  CHECK(c.threads == 2);
  CHECK(c.resume);
  CHECK(c.checkpoint_path() == "o/checkpoint.safetensors");
  CHECK(cli.help().find("optimizer steps (default: 200)") != std::string::npos);
  CHECK_THROWS_WITH_AS(cli.parse({"--steps", "-1"}), doctest::Contains("--steps: must be >= 0"), UsageError);
}

TEST_CASE("cli: CommonFlags offers only the flags a binary uses") {
  CommonFlags c;
  Cli cli("m");
  c.add_to(cli, {.data = false, .epochs = false});
  CHECK_THROWS_WITH_AS(cli.parse({"--data", "x"}), doctest::Contains("unknown flag --data"), UsageError);
  CHECK_THROWS_WITH_AS(cli.parse({"--epochs", "2"}), doctest::Contains("unknown flag --epochs"), UsageError);
  cli.parse({"--steps", "7", "--seed", "3"});
  CHECK(c.steps == 7);
  CHECK(c.seed == 3);
}

// ---- JSON ----------------------------------------------------------------------

TEST_CASE("json: numbers round-trip bit-exactly, non-finite becomes null") {
  Rng rng(1);
  for (int i = 0; i < 2000; ++i) {
    const double x = std::ldexp(rng.normal(), int(rng.below(200)) - 100);
    const Json back = Json::parse(Json(x).dump());
    CHECK(back.as_double() == x);
  }
  for (double x : {0.1, 1e-300, 5e-324, 1.7976931348623157e308, -0.0, 123456789.125}) CHECK(Json::parse(Json(x).dump()).as_double() == x);
  CHECK(Json(0.1).dump() == "0.1");
  CHECK(Json(3.0f).dump() == "3");
  CHECK(Json(NAN).dump() == "null");
  CHECK(Json(-INFINITY).dump() == "null");
  CHECK(Json(INT64_MIN).dump() == "-9223372036854775808");
  CHECK(Json::parse("9223372036854775807").as_int() == INT64_MAX);
  CHECK(Json::parse("9007199254740993").as_int() == 9007199254740993LL);  // beyond 2^53: exact
  CHECK(!Json::parse("1.0").is_int());
  CHECK(Json::parse("1e999").as_double() == INFINITY);
  CHECK(Json::parse("-1e-999").as_double() == 0.0);
  CHECK(Json::parse("99999999999999999999").as_double() == 1e20);
}

TEST_CASE("json: strings, objects and arrays round-trip") {
  std::string all;
  for (int c = 1; c < 256; ++c) all += char(c);
  Json doc = Json::object({{"s", all}, {"e", ""}, {"t", true}, {"n", nullptr}, {"i", -42}});
  doc.set("a", Json::array({1, 2.5, "x", Json::array(), Json::object()}));
  doc.set("i", 7);  // replace keeps position
  const std::string text = doc.dump();
  CHECK(text.find("\\u0001") != std::string::npos);
  CHECK(text.find('\n') == std::string::npos);
  const Json back = Json::parse(text);
  CHECK(back.dump() == text);
  CHECK(back.at("s").as_string() == all);
  CHECK(back.at("i").as_int() == 7);
  CHECK(back.members()[4].first == "i");
  CHECK(back.at("a").items()[2].as_string() == "x");
  CHECK(back.at("n").is_null());
  CHECK(back.find("missing") == nullptr);
  // Escapes, including a surrogate pair, decode to UTF-8.
  const Json u = Json::parse(R"( { "k" : "a\"\\\/\b\f\n\r\t\u00e9\u20ac\ud83d\ude00" } )");
  CHECK(u.at("k").as_string() == "a\"\\/\b\f\n\r\t\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
  CHECK_THROWS_WITH_AS(u.at("k").as_int(), doctest::Contains("expected an integer, got a string"), Error);
}

TEST_CASE("json: malformed input is rejected with an offset, never a crash") {
  const char* bad[] = {"",        " ",        "{",          "[1,]",        "{\"a\" 1}",   "{\"a\":1,}", "01",
                       "1.",      ".5",       "-",          "+1",          "1e",          "tru",        "nul",
                       "NaN",     "\"abc",    "\"\\x\"",    "\"\\u12\"",   "\"\\ud800\"", "\"\\udc00\"", "[1] x",
                       "{1:2}",   "[1 2]",    "{\"a\":1,\"a\":2}", "\"tab\there\"", "[\"\\",      "'s'",        "{\"a\":}"};
  for (const char* b : bad) {
    CAPTURE(b);
    CHECK_THROWS_WITH_AS(Json::parse(b), doctest::Contains("json: "), Error);
  }
  CHECK_THROWS_WITH_AS(Json::parse("[1,]"), doctest::Contains("at offset 3"), Error);
  CHECK_THROWS_WITH_AS(Json::parse(std::string("\"a\0b\"", 5)), doctest::Contains("control character"), Error);
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  CHECK_THROWS_WITH_AS(Json::parse(deep), doctest::Contains("nesting too deep"), Error);
  CHECK(Json::parse(std::string(60, '[') + std::string(60, ']')).is_array());
  // Random garbage made of JSON's own characters: parse or throw Error, nothing else.
  Rng rng(4);
  const char pool[] = "{}[]\":,0123456789-+.eEtruefalsn \\u\x01\xff";
  int parsed = 0;
  for (int t = 0; t < 5000; ++t) {
    std::string s;
    const int len = int(rng.below(24));
    for (int i = 0; i < len; ++i) s += pool[rng.below(sizeof(pool) - 1)];
    try {
      Json::parse(s);
      ++parsed;
    } catch (const Error&) {
    }
  }
  CHECK(parsed < 5000);
}

// ---- metrics -------------------------------------------------------------------

TEST_CASE("metrics: jsonl lines parse, append on resume, summary has the required fields") {
  TempDir dir;
  {
    MetricsLog log(dir / "run");
    log.log({{"step", 1}, {"loss", 2.5}, {"lr", 1e-3}});
    log.log({{"step", 2}, {"loss", NAN}});
  }
  {
    MetricsLog log(dir / "run", /*append=*/true);
    log.log({{"step", 3}, {"loss", 0.125}, {"tag", "x\"y"}});
    CHECK_THROWS_WITH_AS(log.log(Json(1)), doctest::Contains("must be a JSON object"), Error);
  }
  const std::string text = read_file(dir / "run/metrics.jsonl");
  CHECK(std::count(text.begin(), text.end(), '\n') == 3);
  auto lines = read_metrics(dir / "run/metrics.jsonl");
  REQUIRE(lines.size() == 3);
  CHECK(lines[0].at("loss").as_double() == 2.5);
  CHECK(lines[1].at("loss").is_null());
  CHECK(lines[2].at("step").as_int() == 3);
  CHECK(lines[2].at("tag").as_string() == "x\"y");
  // A torn last line (killed writer) is skipped; a bad middle line is an error naming the line.
  atomic_write_file(dir / "torn.jsonl", "{\"step\":1}\n{\"step\":");
  CHECK(read_metrics(dir / "torn.jsonl").size() == 1);
  atomic_write_file(dir / "bad.jsonl", "{\"step\":1}\n{oops}\n{\"step\":3}\n");
  CHECK_THROWS_WITH_AS(read_metrics(dir / "bad.jsonl"), doctest::Contains("bad.jsonl:2: json:"), Error);

  StepTimer timer;
  for (double ms : {5.0, 1.0, 3.0}) timer.record(ms);
  CHECK(timer.median_ms() == 3.0);
  timer.record(100.0);
  CHECK(timer.median_ms() == 4.0);
  timer.start();
  CHECK(timer.stop() >= 0.0);
  const Json s = write_summary(dir / "run", timer, {{"final_loss", 0.125}});
  const Json back = Json::parse(read_file(dir / "run/summary.json"));
  CHECK(back.dump() == s.dump());
  for (const char* k : {"wall_s", "ms_per_step", "peak_rss_mb", "final_loss"}) CHECK(back.find(k) != nullptr);
  CHECK(back.at("peak_rss_mb").as_double() > 1.0);
  CHECK(!std::filesystem::exists(dir / "run/summary.json.tmp"));
  CHECK(peak_rss_mb() > 1.0);
}

// ---- progress ------------------------------------------------------------------

namespace {
std::string drain(std::FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string s;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
  return s;
}
}  // namespace

TEST_CASE("progress: plain mode prints every N steps or ~10 s, tty mode redraws at most ~10x/s") {
  double now = 0;
  ProgressOptions o;
  o.total = 100;
  o.items_per_step = 32;
  o.label = "train";
  o.every = 25;
  o.mode = ProgressOptions::Mode::Plain;
  o.out = std::tmpfile();
  o.clock = [&] { return now; };
  {
    Progress p(o);
    for (int s = 1; s <= 100; ++s) {
      now += 0.01;
      p.update(s, {{"loss", 1.0 / s}});
    }
    CHECK(!p.is_tty());
    CHECK(p.rate() == doctest::Approx(3200.0));
  }
  std::string out = drain(o.out);
  CHECK(std::count(out.begin(), out.end(), '\n') == 5);  // first step, 25, 50, 75, 100
  CHECK(out.find('\r') == std::string::npos);
  CHECK(out.find("train step 25/100  loss 0.04 | 3.2k items/s | ETA 0:01") != std::string::npos);
  std::fclose(o.out);

  // Slow steps: a line every ~10 s even between multiples of `every`.
  o.out = std::tmpfile();
  o.every = 1000;
  {
    Progress p(o);
    for (int s = 1; s <= 5; ++s) {
      now += 11;
      p.update(s);
    }
  }
  out = drain(o.out);
  CHECK(std::count(out.begin(), out.end(), '\n') == 5);
  std::fclose(o.out);

  o.out = std::tmpfile();
  o.mode = ProgressOptions::Mode::Tty;
  {
    Progress p(o);
    for (int s = 1; s <= 100; ++s) {
      now += 0.01;  // 1 s in all: ~10 redraws
      p.update(s, {{"loss", 0.5}});
    }
    p.message("saved checkpoint");
  }
  out = drain(o.out);
  const auto draws = std::count(out.begin(), out.end(), '\r');
  CHECK(draws >= 9);
  CHECK(draws <= 16);
  CHECK(out.find("[====================] step 100/100") != std::string::npos);
  CHECK(out.find("saved checkpoint\n") != std::string::npos);
  CHECK(out.back() == '\n');
  std::fclose(o.out);

  CHECK(Progress::format_duration(3723) == "1:02:03");
  CHECK(Progress::format_duration(65) == "1:05");
  CHECK(Progress::format_count(1.5e6) == "1.5M");
}

// ---- plot ----------------------------------------------------------------------

TEST_CASE("plot: writes a PNG of the requested size with visible series, legend and log-y") {
  TempDir dir;
  Series a{"train loss", {}, {}}, b{"val", {}, {}};
  for (int i = 0; i <= 200; ++i) {
    a.x.push_back(i * 10);
    a.y.push_back(2.5 * std::exp(-i / 40.0) + 0.05);
    if (i % 20 == 0) b.x.push_back(i * 10), b.y.push_back(2.6 * std::exp(-i / 50.0) + 0.1);
  }
  PlotOptions o;
  o.title = "Loss (MNIST)";
  o.xlabel = "step";
  o.ylabel = "loss";
  o.width = 640;
  o.height = 400;
  plot_png(dir / "loss.png", {a, b}, o);
  const std::string png = read_file(dir / "loss.png");
  REQUIRE(png.size() > 33);
  CHECK(png.substr(1, 3) == "PNG");
  auto be32 = [&](std::size_t off) {
    return (std::uint32_t(std::uint8_t(png[off])) << 24) | (std::uint32_t(std::uint8_t(png[off + 1])) << 16) |
           (std::uint32_t(std::uint8_t(png[off + 2])) << 8) | std::uint32_t(std::uint8_t(png[off + 3]));
  };
  CHECK(be32(16) == 640);
  CHECK(be32(20) == 400);

  const Canvas c = render_plot({a, b}, o);
  CHECK(c.width() == 640);
  int blue = 0, orange = 0, dark = 0;
  for (int y = 0; y < c.height(); ++y)
    for (int x = 0; x < c.width(); ++x) {
      const Rgb p = c.at(x, y);
      blue += p.r == 31 && p.g == 119 && p.b == 180;
      orange += p.r == 255 && p.g == 127 && p.b == 14;
      dark += p.r == 0 && p.g == 0 && p.b == 0;
    }
  CHECK(blue > 300);    // the first series' line
  CHECK(orange > 100);  // the second's, and its legend swatch
  CHECK(dark > 500);    // text

  o.log_y = true;
  a.y[3] = -1;   // dropped on a log axis
  a.y[4] = NAN;  // breaks the line
  plot_png(dir / "log.png", {a, b}, o);
  CHECK(std::filesystem::file_size(dir / "log.png") > 1000);
  // Degenerate inputs still produce a frame.
  plot_png(dir / "empty.png", {}, o);
  plot_png(dir / "flat.png", {{"c", {1, 1}, {5, 5}}}, {});
  PlotOptions tiny;
  tiny.title = "t";
  tiny.width = tiny.height = 30;
  CHECK_THROWS_WITH_AS(plot_png(dir / "tiny.png", {a}, tiny), doctest::Contains("too small"), Error);
  CHECK(Canvas::text_width("abc", 2) == 34);
}

TEST_CASE("plot: plot_metrics reads a metrics.jsonl") {
  TempDir dir;
  {
    MetricsLog log(dir.path);
    for (int s = 1; s <= 50; ++s) {
      if (s % 10 == 0) log.log({{"step", s}, {"loss", 1.0 / s}, {"val_loss", 1.2 / s}});
      else log.log({{"step", s}, {"loss", 1.0 / s}});
    }
  }
  PlotOptions o;
  o.title = "loss";
  o.log_y = true;
  plot_metrics(dir / "metrics.jsonl", dir / "m.png", {"loss", "val_loss"}, "step", o);
  CHECK(read_file(dir / "m.png").substr(1, 3) == "PNG");
}

// ---- monitor -------------------------------------------------------------------

TEST_CASE("monitor: the non-finite guard names what, the step and the last checkpoint") {
  CHECK_NOTHROW(check_finite(1.5, 3, "loss", ""));
  CHECK_THROWS_WITH_AS(check_finite(NAN, 7, "loss", ""), "loss became NaN at step 7; last good checkpoint: none saved yet",
                       Error);
  CHECK_THROWS_WITH_AS(check_finite(INFINITY, 9, "gradient norm", "runs/x/ckpt.safetensors", "Try a lower --lr."),
                       "gradient norm became +inf at step 9; last good checkpoint: runs/x/ckpt.safetensors. Try a lower --lr.",
                       Error);
}

namespace {
enum class Pad { Same, Valid };
struct TinyConfig {
  int width = 4;
  double dropout = 0.5;
  bool bias = true;
  std::string act = "relu";
  Pad pad = Pad::Same;
  float gain = 1.0f;  // added later: optional
  template <class F> void fields(F& f) {
    f("width", width);
    f("dropout", dropout);
    f("bias", bias);
    f("act", act);
    f.choice("pad", pad, {{"same", Pad::Same}, {"valid", Pad::Valid}});
    f.optional("gain", gain);
  }
  void validate() const { MARROW_CHECK(width > 0, "TinyConfig: width must be > 0, got ", width); }
};
}  // namespace

TEST_CASE("model config: one JSON object in the checkpoint, read back strictly by field") {
  TinyConfig c{.width = 7, .dropout = 0.25, .bias = false, .act = "gelu", .pad = Pad::Valid, .gain = 2.0f};
  const Json j = config_to_json(c);
  CHECK(j.dump() == R"({"width":7,"dropout":0.25,"bias":false,"act":"gelu","pad":"valid","gain":2})");
  const TinyConfig r = config_from_json<TinyConfig>(j, "x");
  CHECK(r.width == 7);
  CHECK(r.dropout == 0.25);
  CHECK(!r.bias);
  CHECK(r.act == "gelu");
  CHECK(r.pad == Pad::Valid);
  CHECK(r.gain == 2.0f);
  // optional fields keep their default; required ones must be there and of the right type
  CHECK(config_from_json<TinyConfig>(Json::parse(R"({"width":7,"dropout":0.25,"bias":false,"act":"gelu","pad":"same"})"),
                                     "x").gain == 1.0f);
  CHECK_THROWS_WITH_AS(config_from_json<TinyConfig>(Json::parse(R"({"width":7})"), "checkpoint a.safetensors"),
                       "checkpoint a.safetensors: model config has no field 'dropout'", Error);
  CHECK_THROWS_WITH_AS(
      config_from_json<TinyConfig>(Json::parse(R"({"width":7,"dropout":0.25,"bias":false,"act":"gelu","pad":"wide"})"), "f"),
      "f: model config field 'pad' is 'wide' (expected one of: same, valid)", Error);
  CHECK_THROWS_AS(config_from_json<TinyConfig>(Json::parse(R"({"width":"7","dropout":0.25,"bias":false,"act":"g","pad":"same"})"),
                                               "f"),
                  Error);
  CHECK_THROWS_WITH_AS(
      config_from_json<TinyConfig>(Json::parse(R"({"width":0,"dropout":0.25,"bias":false,"act":"g","pad":"same"})"), "f"),
      "TinyConfig: width must be > 0, got 0", Error);
  // through a checkpoint's metadata
  TempDir dir;
  Rng rng(0);
  Linear<float> net(2, 2, rng);
  Checkpoint<float>(net).save(dir / "c.safetensors", 3, "{}", model_config_metadata(c));
  CHECK(model_config_from_checkpoint<TinyConfig>(dir / "c.safetensors", "tiny").width == 7);
  save_weights<float>(dir / "w.safetensors", net);
  CHECK_THROWS_WITH_AS(model_config_from_checkpoint<TinyConfig>(dir / "w.safetensors", "tiny"),
                       ("checkpoint " + (dir / "w.safetensors") + " has no model config (not a tiny checkpoint?)").c_str(),
                       Error);
}

TEST_CASE("model config: a checkpoint from before the 'model' entry keeps its config in the run's config") {
  TempDir dir;
  Rng rng(0);
  Linear<float> net(2, 2, rng);
  Json run = Json::object({{"steps", 10}});
  run.set("model", Json::parse(R"({"width":5,"dropout":0.5,"bias":true,"act":"relu","pad":"same"})"));
  Checkpoint<float>(net).save(dir / "old.safetensors", 3, run.dump());
  CHECK(model_config_from_checkpoint<TinyConfig>(dir / "old.safetensors", "tiny").width == 5);
  Checkpoint<float>(net).save(dir / "none.safetensors", 3, R"({"steps":10})");
  CHECK_THROWS_WITH_AS(model_config_from_checkpoint<TinyConfig>(dir / "none.safetensors", "tiny"),
                       ("checkpoint " + (dir / "none.safetensors") + " has no model config (not a tiny checkpoint?)").c_str(),
                       Error);
}

TEST_CASE("run: one lifecycle writes metrics, checkpoints, plots and a summary, and resumes where it stopped") {
  TempDir dir;
  CommonFlags flags;
  flags.out = dir / "run";
  flags.seed = 5;
  Rng rng(1);
  Linear<float> net(3, 2, rng);
  Checkpoint<float> ckpt(net);
  {
    Run run(flags, {.name = "test", .steps = 4, .plots = {{.file = "loss.png", .keys = {"loss"}}}},
            Json::object({{"width", 3}}));
    CHECK(run.resume(ckpt) == 0);
    CHECK_THROWS_WITH_AS(run.check_finite(NAN, 1), "loss became NaN at step 1; last good checkpoint: none saved yet", Error);
    for (std::int64_t step = 0; step < 4; ++step) {
      run.start_step();
      run.stop_step();
      run.log({{"step", step + 1}, {"loss", 1.0 / double(step + 1)}});
      if (Run::every(step + 1, 2)) run.save(ckpt, step + 1);
    }
    CHECK_THROWS_WITH_AS(run.check_finite(INFINITY, 5, "gradient norm"),
                         ("gradient norm became +inf at step 5; last good checkpoint: " + run.checkpoint_path()).c_str(),
                         Error);
    const Json s = run.finish({{"val_loss", 0.25}});
    CHECK(s.at("val_loss").as_double() == 0.25);
    CHECK(s.at("steps_timed").as_int() == 4);
    CHECK(s.at("seed").as_int() == 5);
    CHECK(s.at("config").at("width").as_int() == 3);
  }
  CHECK(read_metrics(flags.out + "/metrics.jsonl").size() == 4);
  CHECK(read_file(flags.out + "/loss.png").substr(1, 3) == "PNG");
  CHECK(Json::parse(read_file(flags.out + "/summary.json")).at("val_loss").as_double() == 0.25);
  const CheckpointInfo info = Checkpoint<float>::info_of(safetensors::read(flags.out + "/checkpoint.safetensors"), "");
  CHECK(info.step == 4);
  CHECK(Json::parse(info.config).at("width").as_int() == 3);

  flags.resume = true;  // a resumed run appends to the log and starts at the saved step
  Run again(flags, {.name = "test", .steps = 6});
  CHECK(again.resume(ckpt) == 4);
  again.log({{"step", 5}, {"loss", 0.2}});
  CHECK(read_metrics(flags.out + "/metrics.jsonl").size() == 5);
  Run short_run(flags, {.name = "test", .steps = 3});
  CHECK_THROWS_WITH_AS(short_run.resume(ckpt),
                       ("--resume: " + flags.out + "/checkpoint.safetensors is at step 4, past the run's end at step 3").c_str(),
                       Error);
}

TEST_CASE("monitor: early stopping counts updates without improvement beyond min_delta") {
  EarlyStopping es(2, EarlyStopping::Mode::Min, 0.1);
  CHECK(!es.update(1.0));
  CHECK(es.improved());
  CHECK(!es.update(0.95));  // not better by more than 0.1
  CHECK(!es.improved());
  CHECK(!es.update(0.85));  // better by 0.15: resets
  CHECK(es.improved());
  CHECK(es.best() == 0.85);
  CHECK(!es.update(0.9));
  CHECK(!es.update(NAN));
  CHECK(es.update(0.8));  // third bad update > patience 2
  EarlyStopping mx(0, EarlyStopping::Mode::Max);
  CHECK(!mx.update(0.5));
  CHECK(!mx.update(0.6));
  CHECK(mx.update(0.6));
  CHECK_THROWS_AS(EarlyStopping(-1), Error);
}

TEST_CASE("monitor: SIGINT sets a flag, a second SIGINT kills") {
  install_interrupt_handler();
  clear_interrupt();
  CHECK(!interrupted());
  ::raise(SIGINT);
  CHECK(interrupted());
  clear_interrupt();
  ::raise(SIGTERM);
  CHECK(interrupted());
  clear_interrupt();
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  const int s = in_child([] {
    install_interrupt_handler();
    ::raise(SIGINT);
    if (!interrupted()) ::_exit(3);
    ::raise(SIGINT);
    ::_exit(4);  // not reached
  });
  CHECK(WIFSIGNALED(s));
  CHECK(WTERMSIG(s) == SIGINT);
}

// ---- checkpoint ----------------------------------------------------------------

namespace {
template <class T> struct Tiny {
  Param<T> w, b;
  Tensor<T> running;
  bool training = true;
  Tiny(index_t n, Rng& rng) : w(randn<T>({n, 3}, rng)), b(randn<T>({3}, rng)), running(randn<T>({3}, rng)) {}
  void visit(Visitor<T>& v, const std::string& prefix) {
    v.visit_param(join_name(prefix, "fc.weight"), w);
    v.visit_param(join_name(prefix, "fc.bias"), b);
    v.visit_buffer(join_name(prefix, "bn.running_mean"), running);
    v.visit_mode(training);
  }
};
// Stands in for an optimizer: state tensors under stable names.
template <class T> struct FakeAdam {
  Tensor<T> m, v, step;
  void visit_state(const std::function<void(const std::string&, Tensor<T>&)>& f) {
    f("adam.exp_avg.fc.weight", m);
    f("adam.exp_avg_sq.fc.weight", v);
    f("adam.step", step);
  }
};
bool same_bits(const Tensor<float>& a, const Tensor<float>& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), sizeof(float) * std::size_t(a.numel())) == 0;
}
}  // namespace

TEST_CASE("checkpoint: save/load restores weights, buffers, optimizer state and RNGs bit-exactly") {
  TempDir dir;
  const std::string path = dir / "sub/ckpt.safetensors";
  Rng init(1), data_rng(2);
  Tiny<float> a(4, init);
  FakeAdam<float> opt_a{randn<float>({4, 3}, init), randn<float>({4, 3}, init), Tensor<float>({1}, {17})};
  data_rng.normal();
  Checkpoint<float> ck(a);
  ck.add_state([&](const StateVisitor<float>& f) { opt_a.visit_state(f); }).add_rng("data", data_rng);
  ck.save(path, 1234, R"({"lr":0.001})", {{"run", "abc"}});

  Rng other(9), data_rng2(0);
  Tiny<float> b(4, other);
  FakeAdam<float> opt_b;  // lazily allocated state: loading allocates it
  Checkpoint<float> ck2(b);
  ck2.add_state([&](const StateVisitor<float>& f) { opt_b.visit_state(f); }).add_rng("data", data_rng2);
  const CheckpointInfo info = ck2.load(path);
  CHECK(info.step == 1234);
  CHECK(info.config == R"({"lr":0.001})");
  CHECK(info.metadata.at("run") == "abc");
  CHECK(same_bits(a.w.value(), b.w.value()));
  CHECK(same_bits(a.b.value(), b.b.value()));
  CHECK(same_bits(a.running, b.running));
  CHECK(same_bits(opt_a.m, opt_b.m));
  CHECK(same_bits(opt_a.v, opt_b.v));
  CHECK(opt_b.step[0] == 17);
  CHECK(data_rng.normal() == data_rng2.normal());  // the cached spare normal came along
  CHECK(data_rng.next_u64() == data_rng2.next_u64());

  // A sampler loads weights only, from the same file.
  Tiny<float> c(4, other);
  CHECK(load_weights<float>(path, c).step == 1234);
  CHECK(same_bits(a.w.value(), c.w.value()));
  // ... into a double model too (converted).
  Tiny<double> d(4, other);
  load_weights<double>(path, d);
  CHECK(d.w.value()[5] == double(a.w.value()[5]));
  save_weights<float>(dir / "w.safetensors", a);
  CHECK(safetensors::read(dir / "w.safetensors").tensors.size() == 3);

  CHECK(ck2.resume(path, false).step == 0);
  CHECK(ck2.resume(path, true).step == 1234);
  CHECK_THROWS_WITH_AS(ck2.resume(dir / "nope.safetensors", true), doctest::Contains("--resume: no checkpoint at"), Error);
}

namespace {
// Running statistics kept in double inside a float model.
struct WithStats {
  Param<float> w{Tensor<float>({2}, {1.5f, -2.f})};
  Tensor<double> mean = Tensor<double>({2}, {0.1, 1.0 / 3.0});
  void visit(Visitor<float>& v, const std::string& prefix) {
    v.visit_param(join_name(prefix, "w"), w);
    v.visit_buffer(join_name(prefix, "rms.mean"), mean);
  }
};
}  // namespace

TEST_CASE("checkpoint: double buffers of a float model are saved and loaded in double") {
  TempDir dir;
  WithStats a;
  Checkpoint<float>(a).save(dir / "c.safetensors", 1);
  const safetensors::File f = safetensors::read(dir / "c.safetensors");
  REQUIRE(f.tensors.size() == 2);
  WithStats b, c;
  b.mean = Tensor<double>({2});
  c.mean = Tensor<double>({2});
  Checkpoint<float>(b).load(dir / "c.safetensors");
  CHECK(b.mean[1] == 1.0 / 3.0);  // not rounded through float
  load_weights<float>(dir / "c.safetensors", c);
  CHECK(c.mean[0] == 0.1);
  save_weights<float>(dir / "w.safetensors", a);
  CHECK(safetensors::read(dir / "w.safetensors").tensors.size() == 2);
}

TEST_CASE("checkpoint: loading is strict about missing, unexpected and mis-shaped tensors") {
  TempDir dir;
  const std::string path = dir / "c.safetensors";
  Rng rng(1);
  Tiny<float> a(4, rng);
  Checkpoint<float>(a).save(path, 5);

  Tiny<float> wide(5, rng);
  const std::string msg = "checkpoint " + path + ": tensor 'fc.weight' has shape (4, 3) in the file but (5, 3) in the model";
  CHECK_THROWS_WITH_AS(Checkpoint<float>(wide).load(path), msg.c_str(), Error);
  Param<float> extra(Tensor<float>({2}));
  Checkpoint<float> more(a);
  more.add_param("head.weight", extra);
  CHECK_THROWS_WITH_AS(more.load(path), doctest::Contains("tensor 'head.weight' is missing"), Error);
  Checkpoint<float> fewer;
  fewer.add_param("fc.weight", a.w).add_param("fc.bias", a.b);
  CHECK_THROWS_WITH_AS(fewer.load(path), doctest::Contains("unexpected tensor 'bn.running_mean'"), Error);
  Rng r;
  Checkpoint<float> with_rng(a);
  with_rng.add_rng("data", r);
  CHECK_THROWS_WITH_AS(with_rng.load(path), doctest::Contains("tensor 'state.rng.data' is missing"), Error);
}

TEST_CASE("checkpoint: SIGKILL at random moments during saves always leaves a loadable previous checkpoint") {
  TempDir dir;
  const std::string path = dir / "big.safetensors";
  Rng init(0);
  constexpr index_t kRows = 1 << 16;  // 2.3 MiB per checkpoint: many write() calls to interrupt
  Tiny<float> model(kRows, init);
  model.w.value().zero(), model.b.value().zero(), model.running.zero();  // step 0 holds 0 everywhere
  FakeAdam<float> opt{Tensor<float>({kRows, 3}), Tensor<float>({kRows, 3}), Tensor<float>({1})};
  auto make_ck = [&](Tiny<float>& m, FakeAdam<float>& o) {
    Checkpoint<float> ck(m);
    ck.add_state([&o](const StateVisitor<float>& f) { o.visit_state(f); });
    return ck;
  };
  make_ck(model, opt).save(path, 0);
  Rng when(42);
  std::int64_t last_step = 0;
  for (int round = 0; round < 10; ++round) {
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {  // writer: every step fills all tensors with the step number
      for (std::int64_t step = last_step + 1; step < last_step + 100000; ++step) {
        model.w.value().fill(float(step));
        model.b.value().fill(float(step));
        model.running.fill(float(step));
        opt.m.fill(float(step));
        opt.v.fill(float(step));
        opt.step.fill(float(step));
        make_ck(model, opt).save(path, step);
      }
      ::_exit(0);
    }
    ::usleep(useconds_t(round == 9 ? 200000 : 2000 + when.below(40000)));
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);

    Tiny<float> back(kRows, init);
    FakeAdam<float> ob;
    CheckpointInfo info;
    REQUIRE_NOTHROW(info = make_ck(back, ob).load(path));
    CHECK(info.step >= last_step);
    const float v = float(info.step);
    const std::size_t n = std::size_t(back.w.value().numel());
    CHECK(back.w.value()[0] == v);
    CHECK(back.w.value()[n - 1] == v);
    CHECK(back.running[2] == v);
    CHECK(ob.v[std::size_t(ob.v.numel()) - 1] == v);
    CHECK(ob.step[0] == v);
    last_step = info.step;
  }
  MESSAGE("checkpoint steps completed by the killed writers: " << last_step);
  CHECK(last_step > 0);
}

TEST_CASE("run: --precision bf16 sends the products to the bf16 kernel for the run's lifetime, other values are usage errors") {
  TempDir dir;
  CommonFlags flags;
  flags.out = dir / "run";
  flags.precision = "fp16";
  CHECK_THROWS_WITH_AS(Run(flags, {.name = "test", .steps = 1}), "--precision: expected fp32 or bf16, got 'fp16'",
                       UsageError);
  CHECK(kernel_config().gemm_precision == GemmPrecision::F32);
  flags.precision = "bf16";
  if (!detail::bf16_gemm_supported()) {
    CHECK_THROWS_WITH_AS(Run(flags, {.name = "test", .steps = 1}),
                         "--precision bf16 needs a CPU with AVX512-BF16 (VDPBF16PS); this one has none (use --precision fp32)",
                         Error);
    return;
  }
  {
    Run run(flags, {.name = "test", .steps = 1});
    CHECK(kernel_config().gemm_precision == GemmPrecision::Bf16);
    // A product through the library now rounds its operands: 1 + 2⁻¹⁰ is not a bf16 number.
    Tape<float> t;
    const Var<float> y = matmul(t, t.input(Tensor<float>({1, 1}, {1.0f + 1.0f / 1024})), t.input(Tensor<float>({1, 1}, {1.0f})));
    CHECK(y.value()[0] == 1.0f);
    CHECK(Json::parse(run.finish().dump()).at("precision").as_string() == "bf16");
  }
  CHECK(kernel_config().gemm_precision == GemmPrecision::F32);
  Tape<float> t;
  const Var<float> y = matmul(t, t.input(Tensor<float>({1, 1}, {1.0f + 1.0f / 1024})), t.input(Tensor<float>({1, 1}, {1.0f})));
  CHECK(y.value()[0] == 1.0f + 1.0f / 1024);
}
