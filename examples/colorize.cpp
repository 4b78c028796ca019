// colorize: learn to color grayscale photos (Iizuka et al. 2016 with Zhang et
// al. 2016's classification loss as an option), color any images, evaluate.
//
//   colorize train --out runs/color-l2                     (the best recipe: L2, 44 minutes)
//   colorize train --loss classify --out runs/color-cls
//   colorize apply --ckpt runs/color-l2/checkpoint.safetensors --input photos/,one.jpg --out colored/
//   colorize eval  --ckpt runs/color-l2/checkpoint.safetensors --data ../shared/data/cifar10-jpg
//
// Data: DIR/train/<class>/*.jpg for training, DIR/test/<class>/*.jpg for evaluation only.
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <numeric>
#include <string>
#include <vector>

#include <marrow/data/color.hpp>
#include <marrow/data/image.hpp>
#include <marrow/data/loader.hpp>
#include <marrow/optim.hpp>
#include <marrow/train/model_config.hpp>
#include <marrow/dist/data_parallel.hpp>
#include <marrow/train/run.hpp>
#include <models/colorizer/data.hpp>
#include <models/colorizer/metrics.hpp>
#include <models/colorizer/network.hpp>
#include <models/colorizer/predict.hpp>
#include <models/colorizer/train.hpp>

using namespace marrow;
using namespace marrow::colorizer;
namespace fs = std::filesystem;

namespace {

struct Args {
  std::string preset = "iizuka";  // iizuka: the peer network + class head; peer: colorizer_peer.py exactly
  std::string loss = "l2";        // l2, smooth_l1 or classify
  int image_size = 32;            // training size (a multiple of 16)
  int batch = 64;                 // images per step
  double lr = 1e-3;               // Adam learning rate (cosine-decayed to lr/100)
  int warmup = 200;               // linear warm-up steps
  double alpha = 1.0 / 300.0;     // class-loss weight (Iizuka's α; 0: off)
  double beta = 5.0;              // smooth-L1 transition in Lab ab units
  Decoding decoding;              // classification: annealed-mean temperature and prior correction
  int crop_pad = 4;               // random crops: shift by up to this many pixels (reflect padding)
  bool hflip = true;              // random left-right mirror
  int max_per_class = -1;         // use only the first N training images per class (-1: all)
  int log_every = 50;             // metrics.jsonl line every N steps
  int eval_every = 2000;          // quick eval on --eval-images test images every N steps (0: off)
  int eval_images = 1000;         // images of the quick eval
  int test_images = 0;            // final evaluation on the first N test images per class (0: all)
  int ckpt_every = 1000;          // checkpoint every N steps
  double minutes = 44;            // training time budget: stop (and finish the lr schedule) by then (0: none)
};

std::string default_data() {
#ifdef MARROW_SOURCE_DIR
  return std::string(MARROW_SOURCE_DIR) + "/../shared/data/cifar10-jpg";
#else
  return "../shared/data/cifar10-jpg";
#endif
}

// Linear warm-up, then cosine decay to lr/100. With a time budget the decay follows
// whichever runs out first, steps or minutes, so a run on a slower machine
// still ends at the bottom of the schedule instead of being cut off mid-way.
double lr_at(const Args& a, std::int64_t step, std::int64_t steps, double elapsed_s) {
  if (step < a.warmup) return a.lr * double(step + 1) / double(a.warmup + 1);
  double f = double(step - a.warmup) / double(std::max<std::int64_t>(1, steps - a.warmup));
  if (a.minutes > 0) f = std::max(f, elapsed_s / (a.minutes * 60));
  f = std::min(f, 1.0);
  const double lo = a.lr / 100;
  return lo + 0.5 * (1 + std::cos(3.14159265358979323846 * f)) * (a.lr - lo);
}

ColorLoss parse_loss(const std::string& s) {
  if (s == "l2") return ColorLoss::L2;
  if (s == "smooth_l1") return ColorLoss::SmoothL1;
  if (s == "classify") return ColorLoss::Classify;
  throw UsageError("--loss: expected l2, smooth_l1 or classify, got '" + s + "'");
}

ColorizerConfig model_config(const Args& a) {
  if (a.image_size < 16 || a.image_size % 16)
    throw UsageError("--image-size: must be a positive multiple of 16, got " + std::to_string(a.image_size));
  ColorizerConfig c = peer_config(a.image_size);
  if (a.preset == "iizuka") c.num_classes = 10;
  else if (a.preset != "peer") throw UsageError("--preset: expected iizuka or peer, got '" + a.preset + "'");
  if (parse_loss(a.loss) == ColorLoss::Classify) c.bins = ColorBins::standard().size();
  c.decoding = a.decoding;
  return c;
}

// DIR itself when it holds class folders of images, else DIR/<sub>.
std::string split_dir(const std::string& dir, const std::string& sub) {
  const fs::path p = fs::path(dir) / sub;
  if (fs::is_directory(p)) return p.string();
  MARROW_CHECK(fs::is_directory(dir), "--data: '", dir, "' is not a directory (want the cifar10-jpg folder)");
  return dir;
}

LabSet load_lab_set(const std::string& dir, index_t max_per_class) {
  data::ImageFolder f = data::load_image_folder(dir, 3, max_per_class);
  LabSet s{std::move(f.images), std::move(f.labels), std::move(f.classes)};
  rgb_to_lab_inplace(s.lab);
  return s;
}

data::Image upscale(const data::Image& im, int k) {
  data::Image out(im.width * k, im.height * k, im.channels);
  for (int y = 0; y < out.height; ++y)
    for (int x = 0; x < out.width; ++x)
      for (int c = 0; c < im.channels; ++c) out.at(y, x, c) = im.at(y / k, x / k, c);
  return out;
}

Tensor<float> plane_slice(const Tensor<float>& x, index_t n) {  // (C, H, W) copy of batch item n
  Tensor<float> t = Tensor<float>::uninitialized({x.dim(1), x.dim(2), x.dim(3)});
  std::copy_n(x.data() + n * t.numel(), t.numel(), t.data());
  return t;
}

// Colors of a batch of truth RGB images (N, 3, H, W): ours and the gray baseline (truth's L, a = b = 0).
struct Colorized {
  Tensor<float> ours, gray, ab_true, ab_pred;
};
Colorized colorize_batch(Tape<float>& t, Colorizer<float>& model, const Tensor<float>& rgb, const Decoding& dec) {
  const index_t N = rgb.dim(0), H = rgb.dim(2), W = rgb.dim(3), P = H * W;
  const Tensor<float> lab = data::rgb_to_lab(rgb);
  Tensor<float> L = Tensor<float>::uninitialized({N, 1, H, W}), Lnet = Tensor<float>::uninitialized({N, 1, H, W});
  Colorized c{{}, {}, Tensor<float>::uninitialized({N, 2, H, W}), {}};
  for (index_t n = 0; n < N; ++n) {
    std::copy_n(lab.data() + n * 3 * P, P, L.data() + n * P);
    std::copy_n(lab.data() + n * 3 * P + P, 2 * P, c.ab_true.data() + n * 2 * P);
  }
  Lnet.arr() = L.arr() / float(kLScale);
  t.reset();
  c.ab_pred = predict_ab(t, model, Lnet, dec);
  t.reset();
  c.ours = data::lab_to_rgb(join_lab(L, c.ab_pred));
  c.gray = data::lab_to_rgb(join_lab(L, Tensor<float>({N, 2, H, W})));
  return c;
}

struct EvalResult {
  ColorizationMetrics m;
  std::vector<data::Image> grid;  // gray | ours | truth for the first 32 images
};

// Metrics over the first `count` images of a truth RGB set (N, 3, H, W); the model runs in eval mode.
EvalResult evaluate(Colorizer<float>& model, const Tensor<float>& rgb, index_t count, const Decoding& dec,
                    int grid_images = 32) {
  set_training<float>(model, false);
  Tape<float> t;
  EvalResult r;
  const index_t N = std::min(count > 0 ? count : rgb.dim(0), rgb.dim(0)), P = rgb.dim(2) * rgb.dim(3), B = 100;
  for (index_t s = 0; s < N; s += B) {
    const index_t n = std::min(B, N - s);
    Tensor<float> x = Tensor<float>::uninitialized({n, 3, rgb.dim(2), rgb.dim(3)});
    std::copy_n(rgb.data() + s * 3 * P, n * 3 * P, x.data());
    Colorized c = colorize_batch(t, model, x, dec);
    for (index_t i = 0; i < n; ++i) {
      r.m.add(x.data() + i * 3 * P, c.ours.data() + i * 3 * P, c.gray.data() + i * 3 * P, c.ab_true.data() + i * 2 * P,
              c.ab_pred.data() + i * 2 * P, P);
      if (index_t(r.grid.size()) < 3 * grid_images)
        for (const Tensor<float>* src : {&c.gray, &c.ours, &x}) r.grid.push_back(upscale(data::tensor_to_image(plane_slice(*src, i)), 2));
    }
  }
  set_training<float>(model, true);
  return r;
}

// The first `per_class` test images of every class (all when 0), as RGB, in class order.
Tensor<float> load_test_rgb(const std::string& data_dir, int per_class) {
  return data::load_image_folder(split_dir(data_dir, "test"), 3, per_class > 0 ? per_class : -1).images;
}

// Batches of the shuffled training set: batch b is a pure function of (seed, b), so a resumed run sees the same data.
class TrainBatches {
 public:
  TrainBatches(const LabSet& set, const Colorizer<float>& model, const Args& a, std::uint64_t seed, std::int64_t start)
      : set_(set), model_(model), a_(a), seed_(seed),
        loader_([this, start](std::int64_t b, Rng&) { return make(start + b); }, seed, 3) {}
  ColorBatch<float> next() { return loader_.next(); }

 private:
  ColorBatch<float> make(std::int64_t b) {
    const index_t N = set_.size(), per_epoch = N / a_.batch, epoch = b / per_epoch, k = b % per_epoch;
    if (epoch != perm_epoch_) {  // runs on the loader thread only
      perm_.resize(std::size_t(N));
      std::iota(perm_.begin(), perm_.end(), index_t(0));
      Rng rng(data::derive_seed(seed_, 0x5eed0000ULL + std::uint64_t(epoch)));
      rng.shuffle(perm_);
      perm_epoch_ = epoch;
    }
    std::vector<index_t> idx(perm_.begin() + k * a_.batch, perm_.begin() + (k + 1) * a_.batch);
    Rng rng(data::derive_seed(seed_, std::uint64_t(b)));
    return make_batch<float>(set_, idx, rng, {.crop_pad = a_.crop_pad, .hflip = a_.hflip},
                             model_.classification() ? &model_.bin_weights : nullptr);
  }
  const LabSet& set_;
  const Colorizer<float>& model_;
  Args a_;
  std::uint64_t seed_;
  std::vector<index_t> perm_;
  index_t perm_epoch_ = -1;
  data::BatchLoader<ColorBatch<float>> loader_;  // last: its thread uses the members above
};

Json metrics_json(const ColorizationMetrics& m) {
  return Json::object({{"psnr_db", m.psnr()},
                       {"gray_psnr_db", m.gray_psnr()},
                       {"psnr_mean_db", m.psnr_mean()},
                       {"gray_psnr_mean_db", m.gray_psnr_mean()},
                       {"colorfulness_ratio", m.colorfulness_ratio()},
                       {"auc", m.auc()},
                       {"gray_auc", m.gray_auc()},
                       {"images", m.images}});
}

int train(const Args& a, const CommonFlags& common, const Json& flags) {
  const ColorLoss kind = parse_loss(a.loss);
  const ColorizerConfig mc = model_config(a);
  // The data first: a bad --data must fail before the run touches --out (a previous run's files stay whole).
  Progress(0, "colorize").message("loading " + split_dir(common.data, "train") + " ...");
  LabSet train_set = load_lab_set(split_dir(common.data, "train"), a.max_per_class);
  MARROW_CHECK(train_set.lab.dim(2) == a.image_size && train_set.lab.dim(3) == a.image_size, "colorize train: images are ",
               train_set.lab.dim(2), "x", train_set.lab.dim(3), " but --image-size is ", a.image_size);
  MARROW_CHECK(train_set.size() >= a.batch, "colorize train: ", train_set.size(), " training images, fewer than --batch ", a.batch);
  const Tensor<float> test_rgb = load_test_rgb(common.data, a.test_images);
  const std::int64_t steps = common.epochs > 0 ? std::int64_t(common.epochs) * (train_set.size() / a.batch) : common.steps;
  Run run(common,
          {.name = "colorize " + a.loss, .steps = steps, .items_per_step = a.batch,
           .plots = {{.file = "learning_curve.png", .keys = {"color_loss"},
                      .options = {.title = "colorizer (" + a.loss + ")", .xlabel = "step", .ylabel = "color loss", .log_y = true}}}},
          flags);

  Rng rng(std::uint64_t(common.seed));
  Colorizer<float> model(mc, rng);
  Adam<float> opt(parameters<float>(model), {.lr = float(a.lr)});
  Checkpoint<float> ckpt(model);
  ckpt.add_state([&](const StateVisitor<float>& f) { opt.visit_state(f); });
  const CheckpointInfo resumed = run.resume_info(ckpt);
  const std::int64_t start = resumed.step;
  double trained_s = 0;  // training seconds of earlier sessions (the time budget spans resumes)
  if (auto it = resumed.metadata.find("train_seconds"); it != resumed.metadata.end()) trained_s = std::stod(it->second);
  if (model.classification() && !run.resuming()) {  // the prior is computed once and travels in the checkpoint
    model.bin_prior = compute_bin_prior(train_set);
    model.bin_weights = rebalance_weights(ColorBins::standard(), model.bin_prior, 0.5, 5.0);
  }
  const LossOptions lopt{.kind = kind, .alpha = a.alpha, .smooth_l1_beta = a.beta};
  run.message("model: " + std::to_string(count_parameters<float>(model)) + " parameters, " +
              std::to_string(train_set.size()) + " training images, " + std::to_string(steps) + " steps of " +
              std::to_string(a.batch));
  auto train_seconds = [&] { return trained_s + run.timer().total_ms() / 1000.0; };
  auto save = [&](std::int64_t step) {
    auto extra = model_config_metadata(mc);
    extra["train_seconds"] = std::to_string(train_seconds());
    run.save(ckpt, step, extra);
  };

  TrainBatches batches(train_set, model, a, std::uint64_t(common.seed), start);
  // Each global batch cut into shards over the processes (one shard without mpirun).
  dist::DataParallel<float> dp(parameters<float>(model), run.world(), run.shards());
  Tape<float> tape;
  double sum_loss = 0, sum_color = 0, sum_cls = 0, sum_acc = 0;
  int n_avg = 0;
  std::int64_t done = start;
  for (std::int64_t step = start; step < steps; ++step) {
    run.start_step();
    ColorBatch<float> b = batches.next();  // the global batch, alike on every rank
    opt.zero_grad();
    const std::vector<double> m = dp.step(b.L.dim(0), [&](std::int64_t b0, std::int64_t b1) {
      const ColorBatch<float> shard = batch_rows(b, b0, b1);
      tape.reset();
      ColorizerOutput<float> o = model(tape, tape.input(shard.L));
      LossTerms<float> lt = colorizer_loss(tape, model, o, shard, lopt);
      dp.backward(tape, lt.total);
      return std::vector<double>{double(lt.total.item()), lt.color, lt.cls, lt.cls_acc};
    });
    const double elapsed_s = run.agreed(train_seconds());  // rank 0's clock: the schedule must agree
    opt.set_lr(float(lr_at(a, step, steps, elapsed_s)));
    opt.step();
    run.stop_step();
    const double loss = m[0];
    run.check_finite(loss, step + 1);
    sum_loss += loss, sum_color += m[1], sum_cls += m[2], sum_acc += m[3], ++n_avg;
    done = step + 1;
    const bool last = step + 1 == steps || (a.minutes > 0 && elapsed_s >= a.minutes * 60);
    if (Run::every(step + 1, a.log_every) || last) {
      Json line = Json::object({{"step", step + 1}, {"loss", sum_loss / n_avg}, {"color_loss", sum_color / n_avg},
                                {"lr", double(opt.lr())}, {"ms_per_step", run.timer().median_ms()}});
      if (model.cls1) line.set("class_loss", sum_cls / n_avg), line.set("class_acc", sum_acc / n_avg);
      if (Run::every(step + 1, a.eval_every) && !last && run.is_root()) {
        const EvalResult q = evaluate(model, test_rgb, a.eval_images, a.decoding, 0);
        line.set("val_psnr_db", q.m.psnr()), line.set("val_colorfulness_ratio", q.m.colorfulness_ratio());
        line.set("val_auc", q.m.auc());
        run.message("step " + std::to_string(step + 1) + ": quick eval PSNR " + std::to_string(q.m.psnr()) +
                    " dB, colorfulness ratio " + std::to_string(q.m.colorfulness_ratio()));
      }
      run.log(with_allreduce(dp.timing(), line));
      sum_loss = sum_color = sum_cls = sum_acc = 0, n_avg = 0;
    }
    run.progress(step + 1, {{"loss", loss}, {"color", m[1]}});
    if (Run::every(step + 1, a.ckpt_every) || last || run.interrupted()) save(step + 1);
    if (run.interrupted()) return run.interrupted_exit();
    if (last) break;
  }
  if (done == start) save(start);
  if (!run.is_root()) return 0;  // rank 0 evaluates and reports
  run.message("evaluating on " + std::to_string(test_rgb.dim(0)) + " test images ...");
  const EvalResult ev = evaluate(model, test_rgb, 0, a.decoding);
  data::write_png(run.path("comparison.png"), data::make_grid(ev.grid, 12));
  run.finish({{"psnr_db", ev.m.psnr()},
              {"gray_psnr_db", ev.m.gray_psnr()},
              {"psnr_mean_db", ev.m.psnr_mean()},
              {"gray_psnr_mean_db", ev.m.gray_psnr_mean()},
              {"colorfulness_ratio", ev.m.colorfulness_ratio()},
              {"auc", ev.m.auc()},
              {"gray_auc", ev.m.gray_auc()},
              {"test_images", ev.m.images},
              {"loss", a.loss},
              {"preset", a.preset},
              {"steps", done},
              {"train_minutes", train_seconds() / 60},
              {"batch", std::int64_t(a.batch)},
              {"params", std::int64_t(count_parameters<float>(model))}});
  return 0;
}

// The network and its decoding, as a checkpoint stored them.
Colorizer<float> load_model(const std::string& path) {
  MARROW_CHECK(fs::exists(path), "no checkpoint at ", path);
  Rng rng(0);
  Colorizer<float> model(model_config_from_checkpoint<ColorizerConfig>(path, "colorize"), rng);
  load_weights<float>(path, model);
  set_training<float>(model, false);
  return model;
}

// --apply-temperature / --apply-prior-correction over the checkpoint's own settings (0 / < 0: keep them).
Decoding override(Decoding ckpt, const Decoding& apply) {
  if (apply.temperature > 0) ckpt.temperature = apply.temperature;
  if (apply.prior_correction >= 0) ckpt.prior_correction = apply.prior_correction;
  return ckpt;
}

int eval_cmd(const CommonFlags& common, const Decoding& apply, int test_images, const std::string& grid) {
  Colorizer<float> model = load_model(common.checkpoint_path());
  const Tensor<float> rgb = load_test_rgb(common.data, test_images);
  const Decoding dec = override(model.cfg.decoding, apply);
  if (model.classification())
    std::printf("decoding: temperature %.3g, prior correction %.3g\n", dec.temperature, dec.prior_correction);
  const EvalResult ev = evaluate(model, rgb, 0, dec);
  if (!grid.empty()) data::write_png(grid, data::make_grid(ev.grid, 12));
  const ColorizationMetrics& m = ev.m;
  std::printf("%lld test images: PSNR %.2f dB (gray baseline %.2f dB), colorfulness ratio %.3f, AuC %.4f (gray %.4f)\n",
              (long long)m.images, m.psnr(), m.gray_psnr(), m.colorfulness_ratio(), m.auc(), m.gray_auc());
  std::printf("%s\n", metrics_json(m).dump().c_str());
  return 0;
}

bool is_image(const fs::path& p) {
  std::string e = p.extension().string();
  for (char& c : e) c = char(std::tolower(static_cast<unsigned char>(c)));
  return e == ".png" || e == ".jpg" || e == ".jpeg" || e == ".bmp" || e == ".tga";
}

int apply_cmd(const CommonFlags& common, const std::string& inputs, const Decoding& apply) {
  if (inputs.empty()) throw UsageError("apply: --input is required (a folder or files, comma-separated)");
  std::vector<std::pair<fs::path, fs::path>> jobs;  // (file, output path relative to --out)
  std::size_t pos = 0;
  while (pos <= inputs.size()) {
    const std::size_t comma = std::min(inputs.find(',', pos), inputs.size());
    const fs::path in = inputs.substr(pos, comma - pos);
    pos = comma + 1;
    if (in.empty()) continue;
    if (fs::is_directory(in)) {
      std::vector<fs::path> files;
      for (const auto& e : fs::recursive_directory_iterator(in))
        if (e.is_regular_file() && is_image(e.path())) files.push_back(e.path());
      std::sort(files.begin(), files.end());
      for (auto& f : files) jobs.push_back({f, fs::relative(f, in)});
    } else {
      MARROW_CHECK(fs::is_regular_file(in), "colorize apply: input '", in.string(), "' is neither a file nor a folder");
      jobs.push_back({in, in.filename()});
    }
  }
  MARROW_CHECK(!jobs.empty(), "colorize apply: no images found in --input '", inputs, "'");
  Colorizer<float> model = load_model(common.checkpoint_path());
  const Decoding dec = override(model.cfg.decoding, apply);
  make_dirs(common.out);
  std::vector<fs::path> outs;
  for (const auto& [file, rel] : jobs) {
    fs::path out = fs::path(common.out) / rel;
    out.replace_extension(".png");
    if (out.has_parent_path()) make_dirs(out.parent_path().string());
    outs.push_back(out);
  }
  const std::int64_t n = std::int64_t(jobs.size()), shown = std::min<std::int64_t>(n, 32);
  std::vector<data::Image> grid(std::size_t(3 * shown));  // gray | ours | input of the first images
  Progress bar(n, "colorize apply");
  std::int64_t done = 0;
  std::atomic<bool> failed{false};
  std::exception_ptr failure;
  // One image at a time through the network, each image on one thread. An
  // image's products are too small to share between threads (sharing each one
  // made 2 threads 10x slower than 1), and a batch of one computes every image
  // exactly as one thread does, whatever the thread count. (Batching images
  // would change the GEMM blocking, and with it the last bits of every pixel.)
#pragma omp parallel
  {
    omp_set_num_threads(1);  // for what runs inside this thread's loop: no nested teams, no shared GEMMs
    Tape<float> t;
#pragma omp for schedule(dynamic)
    for (std::int64_t k = 0; k < n; ++k) {
      if (failed) continue;
      try {
        const data::Image im = data::load_image(jobs[std::size_t(k)].first.string(), 3);  // gray files become RGB
        const index_t H = im.height, W = im.width, Hp = (H + 3) / 4 * 4, Wp = (W + 3) / 4 * 4;
        // The network wants multiples of 4: replicate the last rows/columns, color, then crop back.
        Tensor<float> rgb = data::image_to_tensor<float>(im), padded = Tensor<float>::uninitialized({1, 3, Hp, Wp});
        for (index_t c = 0; c < 3; ++c)
          for (index_t i = 0; i < Hp; ++i)
            for (index_t j = 0; j < Wp; ++j)
              padded[(c * Hp + i) * Wp + j] = rgb[(c * H + std::min(i, H - 1)) * W + std::min(j, W - 1)];
        const Colorized c = colorize_batch(t, model, padded, dec);
        auto crop = [&](const Tensor<float>& x) {
          Tensor<float> o = Tensor<float>::uninitialized({3, H, W});
          for (index_t ch = 0; ch < 3; ++ch)
            for (index_t i = 0; i < H; ++i) std::copy_n(x.data() + (ch * Hp + i) * Wp, W, o.data() + (ch * H + i) * W);
          return o;
        };
        const data::Image ours = data::tensor_to_image(crop(c.ours));
        data::write_png(outs[std::size_t(k)].string(), ours);
        if (k < shown) {
          grid[std::size_t(3 * k)] = data::tensor_to_image(crop(c.gray));
          grid[std::size_t(3 * k + 1)] = ours;
          grid[std::size_t(3 * k + 2)] = im;
        }
      } catch (...) {
#pragma omp critical(colorize_apply_failure)
        if (!failure) failure = std::current_exception();
        failed = true;
      }
#pragma omp critical(colorize_apply_progress)
      bar.update(++done);
    }
  }
  if (failure) std::rethrow_exception(failure);
  bar.finish();
  data::write_png((fs::path(common.out) / "comparison.png").string(), data::make_grid(grid, 12));
  std::printf("colored %zu images into %s (comparison grid: %s/comparison.png)\n", jobs.size(), common.out.c_str(),
              common.out.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return run_main("colorize", [&] {
    Args a;
    CommonFlags common;
    common.data = default_data();
    common.out = "runs/colorize";
    common.steps = 100000;  // with --minutes 44, the time budget ends the run first
    std::string input, grid;
    Decoding apply{0.0, -1.0};  // apply/eval: 0 and -1 take the checkpoint's
    Cli cli("colorize", "grayscale to color: Iizuka et al.'s network, L2/smooth-L1 or Zhang et al.'s rebalanced classification");
    cli.command("train", "train on DATA/train, evaluate on DATA/test")
        .command("apply", "colorize images (--input folder or files, comma-separated) into --out")
        .command("eval", "metrics of a checkpoint on DATA/test");
    common.add_to(cli, {.shards = true, .stop_at = true, .precision = true});
    cli.flag("preset", a.preset, "network: iizuka (peer network + class head) or peer (colorizer_peer.py exactly)");
    cli.flag("loss", a.loss, "color loss: l2, smooth_l1 or classify");
    cli.flag("image-size", a.image_size, "training image size (a multiple of 16)").min(16);
    cli.flag("batch", a.batch, "images per step").min(1);
    cli.flag("lr", a.lr, "Adam learning rate").min(0);
    cli.flag("warmup", a.warmup, "learning-rate warm-up steps").min(0);
    cli.flag("alpha", a.alpha, "weight of the auxiliary class loss").min(0);
    cli.flag("beta", a.beta, "smooth-L1 transition in Lab ab units").min(0);
    cli.flag("temperature", a.decoding.temperature, "annealed-mean temperature (classification)").min(1e-3);
    cli.flag("prior-correction", a.decoding.prior_correction,
             "classification decoding: share of the rebalancing taken back out (0: Zhang's, 1: none left)").min(0).max(1);
    cli.flag("crop-pad", a.crop_pad, "random crop shift in pixels").min(0);
    cli.flag("hflip", a.hflip, "random left-right flips");
    cli.flag("max-per-class", a.max_per_class, "training images per class (-1: all)").min(-1);
    cli.flag("log-every", a.log_every, "steps per metrics line").min(1);
    cli.flag("eval-every", a.eval_every, "steps per quick eval (0: off)").min(0);
    cli.flag("eval-images", a.eval_images, "images of the quick eval").min(1);
    cli.flag("test-images", a.test_images, "final eval: first N test images per class (0: all)").min(0);
    cli.flag("ckpt-every", a.ckpt_every, "steps per checkpoint").min(1);
    cli.flag("minutes", a.minutes, "training time budget in minutes; the lr schedule ends with it (0: none)").min(0);
    cli.flag("input", input, "apply: image folder(s) and/or files, comma-separated");
    cli.flag("apply-temperature", apply.temperature, "apply/eval: annealed-mean temperature (0: the checkpoint's)").min(0);
    cli.flag("apply-prior-correction", apply.prior_correction, "apply/eval: prior correction (-1: the checkpoint's)")
        .min(-1)
        .max(1);
    cli.flag("grid", grid, "eval: also write the comparison grid (gray | ours | truth, first 32 images) to this PNG");
    const std::string cmd = cli.parse_or_exit(argc, argv);
    if (common.threads > 0) omp_set_num_threads(common.threads);
    if (cmd == "train") {
      model_config(a);  // bad usage fails before the data is loaded
      return train(a, common, cli.values());
    }
    if (cmd == "apply") return apply_cmd(common, input, apply);
    if (cmd == "eval") return eval_cmd(common, apply, a.test_images, grid);
    throw UsageError("expected a command: train, apply or eval");
  });
}
