// unet: segment the ISBI-2012 membrane slices (../shared/data/membrane) with a U-Net.
//
//   unet train   --out runs/unet              (slices 0-24 train, 25-29 validate; 2,600 steps)
//   unet predict --ckpt runs/unet/checkpoint.safetensors --input a.png b.png --out runs/unet/pred
//   unet eval    --ckpt runs/unet/checkpoint.safetensors  (pixel error, IoU/Dice, V-Rand, V-Info)
//   unet bench   --steps 30 --threads 2                   (step time on random data, as unet_peer.py)
//
// Labels: 255 (cell interior) is class 1, 0 (membrane) class 0. Training ends
// by choosing the threshold on the cell probability that gives the lowest pixel
// error on the validation slices; the checkpoint keeps it, predict writes the
// mask at it and eval scores at it.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <utility>

#include <marrow/data/image.hpp>
#include <marrow/data/loader.hpp>
#include <marrow/optim.hpp>
#include <marrow/schedule.hpp>
#include <marrow/train/model_config.hpp>
#include <marrow/dist/data_parallel.hpp>
#include <marrow/train/run.hpp>
#include <models/unet/load.hpp>
#include <models/unet/loss.hpp>
#include <models/unet/metrics.hpp>
#include <models/unet/model.hpp>
#include <models/unet/tiles.hpp>
#include <models/unet/weights.hpp>

using namespace marrow;
using namespace marrow::unet;

namespace {

struct Args {
  // model: the Config's fields, and its padding by name
  Config model;
  std::string padding = "same";   // same (padded 3x3 convs) or valid (the paper's)
  // optimization
  int batch = 4;                  // tiles per step
  int crop = 256;                 // training tile side (valid padding: rounded up to a valid input)
  double lr = 1e-3;               // Adam
  std::string schedule = "cosine";  // cosine (to lr/100) or constant
  // loss
  std::string loss = "ce";        // ce, dice or ce+dice
  bool weight_map = true;         // the paper's weight map on the cross-entropy
  double dice_weight = 1.0;       // ce + dice_weight * dice
  double w0 = 10, sigma = 5;      // weight map: border weight and width (px)
  // augmentation
  bool elastic = true;            // elastic deformation (3x3 grid, sigma px)
  double elastic_sigma = 10;
  bool dihedral = true;           // flips and 90-degree rotations
  double brightness = 0.1, contrast = 0.2;
  // validation and inference
  int eval_interval = 250;        // steps between validation runs (0: only at the end)
  int val_from = 25;              // slices [val_from, 30) validate, the rest train
  int tile = 0;                   // overlap-tile input side (0: 256 same / 572-like valid)
  int tile_margin = -1;           // same padding: context dropped per tile side (-1: 2^(depth+1))
  double threshold = -1;          // predict/eval: cell probability threshold (-1: the checkpoint's)
};

void add_args(Cli& cli, Args& a) {
  cli.flag("width", a.model.width, "channels of the first level (paper: 64)").min(1);
  cli.flag("depth", a.model.depth, "2x2 poolings").min(1).max(8);
  cli.flag("padding", a.padding, "same (padded convs, output = input) or valid (the paper's unpadded convs)");
  cli.flag("batch-norm", a.model.batch_norm, "BatchNorm after every 3x3 conv");
  cli.flag("dropout", a.model.dropout, "dropout at the end of the contracting path").min(0).max(0.99);
  cli.flag("he-init", a.model.he_init, "the paper's He-normal init instead of PyTorch's default");
  cli.flag("batch", a.batch, "tiles per step").min(1);
  cli.flag("crop", a.crop, "training tile side").min(8);
  cli.flag("lr", a.lr, "Adam learning rate").min(0);
  cli.flag("schedule", a.schedule, "learning rate: cosine (to lr/100) or constant");
  cli.flag("loss", a.loss, "ce, dice or ce+dice");
  cli.flag("weight-map", a.weight_map, "weight the cross-entropy by the paper's weight map");
  cli.flag("dice-weight", a.dice_weight, "weight of the Dice term in ce+dice").min(0);
  cli.flag("w0", a.w0, "weight map: border weight").min(0);
  cli.flag("sigma", a.sigma, "weight map: border width in px").min(0.1);
  cli.flag("elastic", a.elastic, "elastic deformation augmentation");
  cli.flag("elastic-sigma", a.elastic_sigma, "elastic displacement std in px").min(0);
  cli.flag("dihedral", a.dihedral, "random flips and 90-degree rotations");
  cli.flag("brightness", a.brightness, "brightness jitter (+-)").min(0);
  cli.flag("contrast", a.contrast, "contrast jitter (+-, relative)").min(0).max(1);
  cli.flag("eval-interval", a.eval_interval, "steps between validation runs (0: at the end only)").min(0);
  cli.flag("val-from", a.val_from, "first validation slice; earlier slices train (eval: the checkpoint's)").min(1);
  cli.flag("tile", a.tile, "overlap-tile input side (0: automatic; predict/eval: the checkpoint's)").min(0);
  cli.flag("tile-margin", a.tile_margin,
           "same padding: context px dropped per tile side (-1: automatic; predict/eval: the checkpoint's)")
      .min(-1);
  cli.flag("threshold", a.threshold,
           "predict/eval: cell probability at which a pixel is called cell (-1: the one training chose on the "
           "validation slices, kept in the checkpoint)")
      .min(-1)
      .max(1);
}

Config model_config(const Args& a) {
  Config c = a.model;
  if (a.padding != "same" && a.padding != "valid")
    throw UsageError("--padding: expected 'same' or 'valid', got '" + a.padding + "'");
  c.padding = a.padding == "same" ? Padding::Same : Padding::Valid;
  return c;
}

LossOptions loss_options(const Args& a) {
  if (a.loss != "ce" && a.loss != "dice" && a.loss != "ce+dice")
    throw UsageError("--loss: expected ce, dice or ce+dice, got '" + a.loss + "'");
  LossOptions o;
  o.cross_entropy = a.loss != "dice";
  o.dice = a.loss != "ce";
  o.weight_map = o.cross_entropy && a.weight_map;
  o.dice_weight = a.dice_weight;
  return o;
}

TileOptions tile_options(const Args& a) { return {.tile = a.tile, .margin = a.tile_margin, .batch = 4}; }

// ---- data ---------------------------------------------------------------------------------
struct Slice {
  Tensor<float> image;              // (1, H, W) in [0, 1]
  Tensor<std::int32_t> classes;     // (H, W): 1 cell, 0 membrane
  Tensor<float> weights;            // (H, W) weight map (training slices, when used)
};

Tensor<std::int32_t> classes_of(const data::Image& label) {
  Tensor<std::int32_t> c = Tensor<std::int32_t>::uninitialized(Shape{label.height, label.width});
  for (index_t i = 0; i < c.numel(); ++i) c[i] = label.pixels[std::size_t(i)] > 127 ? 1 : 0;
  return c;
}

std::vector<Slice> load_slices(const std::string& dir, int val_from) {
  const std::string img_dir = dir + "/train/image", lab_dir = dir + "/train/label";
  MARROW_CHECK(std::filesystem::is_directory(img_dir) && std::filesystem::is_directory(lab_dir), "--data: ", dir,
               " has no train/image and train/label folders (expected the membrane data set)");
  std::vector<Slice> v;
  for (const std::string& path : data::list_files(img_dir, {".png"})) {
    const std::string name = std::filesystem::path(path).filename().string();
    const data::Image img = data::load_image(path, 1), lab = data::load_image(lab_dir + "/" + name, 1);
    MARROW_CHECK(img.width == lab.width && img.height == lab.height, "--data: ", path, " is ", img.width, "x",
                 img.height, " but its label is ", lab.width, "x", lab.height);
    v.push_back({data::image_to_tensor<float>(img), classes_of(lab), {}});
  }
  MARROW_CHECK(int(v.size()) > val_from, "--val-from ", val_from, ": ", dir, " has only ", v.size(), " slices");
  return v;
}

std::string default_data() { return std::string(MARROW_SOURCE_DIR) + "/../shared/data/membrane"; }

// ---- pictures -------------------------------------------------------------------------------
// Cell probability (K, H, W) -> 8-bit gray, 255 = certain interior (like the labels).
data::Image probability_png(const Tensor<float>& probs) {
  const index_t H = probs.dim(1), W = probs.dim(2);
  data::Image out(int(W), int(H), 1);
  for (index_t i = 0; i < H * W; ++i)
    out.pixels[std::size_t(i)] = std::uint8_t(std::lround(std::clamp(probs[H * W + i], 0.0f, 1.0f) * 255.0f));
  return out;
}

// Class map (H, W) -> 255 cell, 0 membrane: the labels' own encoding.
data::Image mask_png(const Tensor<std::int32_t>& mask) {
  data::Image out(int(mask.dim(1)), int(mask.dim(0)), 1);
  for (index_t i = 0; i < mask.numel(); ++i) out.pixels[std::size_t(i)] = mask[i] ? 255 : 0;
  return out;
}

// The image with the mask's membranes tinted red.
data::Image overlay_png(const Tensor<float>& image, const Tensor<std::int32_t>& mask) {
  data::Image out(int(mask.dim(1)), int(mask.dim(0)), 3);
  for (index_t i = 0; i < mask.numel(); ++i) {
    const double g = std::clamp(double(image[i]), 0.0, 1.0) * 255.0, a = mask[i] ? 0.0 : 0.65;
    const double rgb[3] = {g * (1 - a) + 255 * a, g * (1 - a) + 40 * a, g * (1 - a) + 40 * a};
    for (int k = 0; k < 3; ++k) out.pixels[std::size_t(i * 3 + k)] = std::uint8_t(std::lround(rgb[k]));
  }
  return out;
}

// ---- validation -------------------------------------------------------------------------------
// Class probabilities (K, H, W) of the slices [from, end).
std::vector<Tensor<float>> predict_slices(UNet<float>& net, const std::vector<Slice>& slices, int from,
                                          const TileOptions& to) {
  std::vector<Tensor<float>> probs;
  for (std::size_t k = std::size_t(from); k < slices.size(); ++k)
    probs.push_back(predict_overlap_tile(net, slices[k].image, to));
  return probs;
}

struct Scores {
  SegmentationScores mean;
  std::vector<SegmentationScores> per_slice;
};

Scores scores_at(const std::vector<Tensor<float>>& probs, const std::vector<Slice>& slices, int from, double threshold) {
  Scores s;
  for (std::size_t i = 0; i < probs.size(); ++i)
    s.per_slice.push_back(segmentation_scores(cell_probability(probs[i]), slices[std::size_t(from) + i].classes, threshold));
  s.mean = mean_scores(s.per_slice);
  return s;
}

// The grid threshold with the lowest pixel error on the slices [from, end).
double choose_on(const std::vector<Tensor<float>>& probs, const std::vector<Slice>& slices, int from) {
  std::vector<Tensor<float>> cells;
  std::vector<Tensor<std::int32_t>> truths;
  for (std::size_t i = 0; i < probs.size(); ++i) {
    cells.push_back(cell_probability(probs[i]));
    truths.push_back(slices[std::size_t(from) + i].classes);
  }
  return choose_threshold(cells, truths);
}

Json scores_json(const SegmentationScores& s, const std::string& prefix = "") {
  return Json::object({{prefix + "pixel_error", s.pixel_error},
                       {prefix + "iou_membrane", s.iou_membrane},
                       {prefix + "dice_membrane", s.dice_membrane},
                       {prefix + "v_rand", s.rand_info.v_rand},
                       {prefix + "v_rand_split", s.rand_info.v_rand_split},
                       {prefix + "v_rand_merge", s.rand_info.v_rand_merge},
                       {prefix + "v_info", s.rand_info.v_info},
                       {prefix + "v_info_split", s.rand_info.v_info_split},
                       {prefix + "v_info_merge", s.rand_info.v_info_merge}});
}

// ---- train ---------------------------------------------------------------------------------------
struct Batch {
  Tensor<float> x;                // (B, 1, in, in)
  Tensor<std::int32_t> target;    // (B, out, out)
  Tensor<float> weights;          // (B, out, out) or undefined
};

// What a checkpoint holds to resume a run: the model's weights, BatchNorm
// statistics and threshold, Adam's moments and the dropout Rng.
template <class Model> Checkpoint<float> training_state(Model& model, Adam<float>& opt, Rng& dropout) {
  Checkpoint<float> c(model);
  c.add_state([&opt](const StateVisitor<float>& f) { opt.visit_state(f); });
  c.add_rng("dropout", dropout);
  return c;
}
// A run saved before the threshold was stored resumes from everything else.
bool saved_before_threshold(const Run& run) {
  return run.resuming() && std::filesystem::exists(run.checkpoint_path()) &&
         !safetensors::read(run.checkpoint_path()).find("threshold");
}

int train(const Args& a, const CommonFlags& common, const Json& flags) {
  const Config cfg = model_config(a);
  const LossOptions lo = loss_options(a);
  const index_t in = cfg.fit_input(a.crop), out = cfg.output_size(in);
  std::vector<Slice> slices = load_slices(common.data, a.val_from);
  if (lo.weight_map)
    for (int k = 0; k < a.val_from; ++k)
      slices[std::size_t(k)].weights = unet_weight_map<float>(slices[std::size_t(k)].classes, {.w0 = a.w0, .sigma = a.sigma});

  Rng rng(std::uint64_t(common.seed));
  UNet<float> net(cfg, rng);
  Adam<float> opt(parameters<float>(net), {.lr = float(a.lr)});
  Checkpoint<float> ckpt = training_state(net, opt, net.drop.rng);
  WithoutThreshold<float> before_threshold{net};
  Checkpoint<float> older = training_state(before_threshold, opt, net.drop.rng);
  const std::int64_t total = common.steps;
  const std::string val_slices = std::to_string(a.val_from) + "-" + std::to_string(slices.size() - 1);
  Run run(common,
          {.name = "unet",
           .steps = total,
           .items_per_step = a.batch,
           .plots = {{.file = "loss.png",
                      .keys = {"loss"},
                      .options = {.title = "U-Net training loss", .xlabel = "step", .ylabel = "loss", .log_y = true}},
                     {.file = "validation.png",
                      .keys = {"val_pixel_error", "val_v_rand", "val_v_info", "val_iou_membrane"},
                      .options = {.title = "validation (slices " + val_slices + ")", .xlabel = "step", .ylabel = "score"}}}},
          flags);
  const std::int64_t start = run.resume(saved_before_threshold(run) ? older : ckpt);
  // Each global batch cut into shards over the processes (one shard without mpirun).
  dist::DataParallel<float> dp(parameters<float>(net), run.world(), run.shards(),
                               {.rngs = {&net.drop.rng}, .buffers = buffers<float>(net)});
  const auto model_meta = model_config_metadata(cfg);

  const AugmentOptions ao{.elastic = a.elastic, .elastic_sigma = a.elastic_sigma, .dihedral = a.dihedral,
                          .brightness = a.brightness, .contrast = a.contrast};
  const auto seed = std::uint64_t(common.seed);
  // Batch b of the run comes from its own Rng, so a resumed run sees what an uninterrupted one would.
  data::BatchLoader<Batch> loader(
      [&, start](std::int64_t b, Rng&) {
        Rng r(data::derive_seed(seed, std::uint64_t(start + b)));
        Batch batch{Tensor<float>::uninitialized(Shape{a.batch, 1, in, in}),
                    Tensor<std::int32_t>::uninitialized(Shape{a.batch, out, out}),
                    lo.weight_map ? Tensor<float>::uninitialized(Shape{a.batch, out, out}) : Tensor<float>()};
        for (index_t i = 0; i < a.batch; ++i) {
          const Slice& s = slices[std::size_t(r.below(std::uint64_t(a.val_from)))];
          const TrainTile<float> tt = make_train_tile(s.image, s.classes, lo.weight_map ? &s.weights : nullptr, in,
                                                      out, ao, r);
          std::copy_n(tt.image.data(), in * in, batch.x.data() + i * in * in);
          std::copy_n(tt.target.data(), out * out, batch.target.data() + i * out * out);
          if (lo.weight_map) std::copy_n(tt.weights.data(), out * out, batch.weights.data() + i * out * out);
        }
        return batch;
      },
      seed);

  // Validation chooses the threshold (the lowest pixel error on the validation
  // slices), reports the scores at it and saves the checkpoint with it.
  const TileOptions to = tile_options(a);
  std::vector<Tensor<float>> last_probs;
  std::optional<Scores> last;
  // Under mpirun rank 0 validates and the threshold it chose goes to every rank.
  bool validated = false;
  auto validate_and_save = [&](std::int64_t step) {
    validated = true;
    if (run.is_root()) {
      last_probs = predict_slices(net, slices, a.val_from, to);
      net.threshold[0] = float(choose_on(last_probs, slices, a.val_from));
      const double th = net.threshold[0];
      last = scores_at(last_probs, slices, a.val_from, th);
      Json line = scores_json(last->mean, "val_");
      line.set("val_threshold", th);
      line.set("step", step);
      run.log(line);
      run.message(detail::cat("step ", step, ": val pixel error ", last->mean.pixel_error, " at threshold ", th,
                              ", V-Rand ", last->mean.rand_info.v_rand, ", V-Info ", last->mean.rand_info.v_info,
                              ", membrane IoU ", last->mean.iou_membrane));
    }
    net.threshold[0] = float(run.agreed(double(net.threshold[0])));
    run.save(ckpt, step, model_meta);
  };

  const sched::WarmupCosine<float> cosine{float(a.lr), 0, std::max<std::int64_t>(total, 1), float(a.lr) / 100};
  Tape<float> tape;
  for (std::int64_t step = start; step < total; ++step) {
    Batch b = loader.next();
    run.start_step();
    const float lr = a.schedule == "cosine" ? cosine.at(step) : float(a.lr);
    opt.set_lr(lr);
    opt.zero_grad();
    // A loss that is not a mean over samples (Dice) is, with shards, the mean of the shards' losses.
    const std::vector<double> m = dp.step(a.batch, [&](std::int64_t b0, std::int64_t b1) {
      tape.reset();
      const Tensor<float> w = lo.weight_map ? dist::batch_rows(b.weights, b0, b1) : Tensor<float>();
      Var<float> logits = net(tape, tape.input(dist::batch_rows(b.x, b0, b1)));
      LossParts<float> lp = segmentation_loss(tape, logits, dist::batch_rows(b.target, b0, b1), lo.weight_map ? &w : nullptr, lo);
      const double shard_loss = lp.total.item();
      run.check_finite(shard_loss, step + 1);
      dp.backward(tape, lp.total);
      return std::vector<double>{shard_loss, lp.ce, lp.dice};
    });
    const double loss = m[0];
    opt.step();
    const double ms = run.stop_step();
    run.log(with_allreduce(dp.timing(), Json::object({{"step", step + 1}, {"loss", loss}, {"ce", m[1]}, {"dice", m[2]},
                                                      {"lr", double(lr)}, {"ms", ms}})));
    run.progress(step + 1, {{"loss", loss}, {"ms", ms}});
    if (step + 1 == total || Run::every(step + 1, a.eval_interval)) validate_and_save(step + 1);
    if (run.interrupted()) {
      run.save(ckpt, step + 1, model_meta);
      return run.interrupted_exit();
    }
  }
  if (!validated) validate_and_save(total);  // resumed at the end: still report the figures
  tape.reset();
  if (!run.is_root()) return 0;  // rank 0 draws and reports

  const std::string first = run.path("val-" + std::to_string(a.val_from));
  const Tensor<std::int32_t> mask = cell_mask(cell_probability(last_probs[0]), double(net.threshold[0]));
  data::write_png(first + ".png", probability_png(last_probs[0]));
  data::write_png(first + "-overlay.png", overlay_png(slices[std::size_t(a.val_from)].image, mask));
  Json fields = Json::object({{"steps", total},
                              {"params", count_parameters<float>(net)},
                              {"tile_in", in},
                              {"tile_out", out},
                              {"threshold", double(net.threshold[0])}});
  const Json scores = scores_json(last->mean);
  for (auto& [k, v] : scores.members()) fields.set(k, v);
  run.finish(fields);
  return 0;
}

// ---- eval / predict ---------------------------------------------------------------------------------
// A checkpoint's network, with the tiling and held-out slices of its training
// run where the command line leaves them at their defaults.
Trained<float> load_model(const std::string& path, Args& a) {
  Trained<float> t = load_trained<float>(path);
  if (!t.note.empty()) std::fprintf(stderr, "unet: note: %s\n", t.note.c_str());
  const Json run_flags = Json::parse(t.info.config);
  const Args defaults;
  if (a.tile == defaults.tile) a.tile = int(run_flags.at("tile").as_int());
  if (a.tile_margin == defaults.tile_margin) a.tile_margin = int(run_flags.at("tile-margin").as_int());
  if (a.val_from == defaults.val_from) a.val_from = int(run_flags.at("val-from").as_int());
  return t;
}

// --threshold when given, else the checkpoint's; and where it came from.
std::pair<double, std::string> threshold_of(const Args& a, const Trained<float>& t) {
  if (a.threshold >= 0) return {a.threshold, "--threshold"};
  return {double(t.net.threshold[0]), t.note.empty() ? "chosen on the validation slices at training" : "0.5: the checkpoint has none"};
}

int evaluate(Args a, const CommonFlags& common) {
  Trained<float> t = load_model(common.checkpoint_path(), a);
  const auto [threshold, source] = threshold_of(a, t);
  const std::vector<Slice> slices = load_slices(common.data, a.val_from);
  const std::vector<Tensor<float>> probs = predict_slices(t.net, slices, a.val_from, tile_options(a));
  const Scores v = scores_at(probs, slices, a.val_from, threshold);
  std::printf("slice  pixel_err  IoU(mem)  Dice(mem)  V-Rand  (split  merge)  V-Info  (split  merge)\n");
  for (std::size_t k = 0; k < v.per_slice.size(); ++k) {
    const auto& s = v.per_slice[k];
    std::printf("%5zu  %9.4f  %8.4f  %9.4f  %6.4f  (%.4f %.4f)  %6.4f  (%.4f %.4f)\n", k + std::size_t(a.val_from),
                s.pixel_error, s.iou_membrane, s.dice_membrane, s.rand_info.v_rand, s.rand_info.v_rand_split,
                s.rand_info.v_rand_merge, s.rand_info.v_info, s.rand_info.v_info_split, s.rand_info.v_info_merge);
  }
  const auto& m = v.mean;
  std::printf(" mean  %9.4f  %8.4f  %9.4f  %6.4f  (%.4f %.4f)  %6.4f  (%.4f %.4f)   threshold %.2f (%s)\n",
              m.pixel_error, m.iou_membrane, m.dice_membrane, m.rand_info.v_rand, m.rand_info.v_rand_split,
              m.rand_info.v_rand_merge, m.rand_info.v_info, m.rand_info.v_info_split, m.rand_info.v_info_merge,
              threshold, source.c_str());
  // The challenge reports each score at its own best threshold; the figures above are at one
  // threshold for all, the one a mask from predict is cut at.
  double best_rand = -1, best_rand_t = 0, best_info = -1, best_info_t = 0, best_pixel = 2, best_pixel_t = 0;
  for (double th : threshold_grid()) {
    const SegmentationScores sm = scores_at(probs, slices, a.val_from, th).mean;
    if (sm.rand_info.v_rand > best_rand) best_rand = sm.rand_info.v_rand, best_rand_t = th;
    if (sm.rand_info.v_info > best_info) best_info = sm.rand_info.v_info, best_info_t = th;
    if (sm.pixel_error < best_pixel) best_pixel = sm.pixel_error, best_pixel_t = th;
  }
  std::printf("best over thresholds 0.05..0.95: V-Rand %.4f (at %.2f), V-Info %.4f (at %.2f), pixel error %.4f (at %.2f)\n",
              best_rand, best_rand_t, best_info, best_info_t, best_pixel, best_pixel_t);
  Json j = scores_json(m);
  j.set("threshold", threshold);
  j.set("threshold_source", source);
  j.set("v_rand_best", best_rand);
  j.set("v_rand_best_threshold", best_rand_t);
  j.set("v_info_best", best_info);
  j.set("v_info_best_threshold", best_info_t);
  j.set("pixel_error_best", best_pixel);
  j.set("pixel_error_best_threshold", best_pixel_t);
  j.set("slices", Json::array({Json(a.val_from), Json(std::int64_t(slices.size()) - 1)}));
  std::printf("%s\n", j.dump().c_str());
  return 0;
}

int predict(Args a, const CommonFlags& common, const std::vector<std::string>& inputs) {
  if (inputs.empty()) throw UsageError("predict: give images with --input A.png [B.png ...]");
  Trained<float> t = load_model(common.checkpoint_path(), a);
  const auto [threshold, source] = threshold_of(a, t);
  std::printf("masks at threshold %.2f (%s)\n", threshold, source.c_str());
  make_dirs(common.out);
  for (const std::string& path : inputs) {
    const data::Image img = data::load_image(path, 1);
    const Tensor<float> x = data::image_to_tensor<float>(img);
    const Tensor<float> probs = predict_overlap_tile(t.net, x, tile_options(a));
    const Tensor<std::int32_t> mask = cell_mask(cell_probability(probs), threshold);
    const std::string stem = std::filesystem::path(path).stem().string(), base = common.out + "/" + stem;
    data::write_png(base + ".png", probability_png(probs));
    data::write_png(base + "-mask.png", mask_png(mask));
    data::write_png(base + "-overlay.png", overlay_png(x, mask));
    std::printf("%s -> %s.png, %s-mask.png, %s-overlay.png (%dx%d)\n", path.c_str(), base.c_str(), stem.c_str(),
                stem.c_str(), img.width, img.height);
  }
  return 0;
}

// ---- bench: step time on random data, as unet_peer.py's phase 1 -------------------------------------
int bench(const Args& a, const CommonFlags& common) {
  const Config cfg = model_config(a);
  const LossOptions lo = loss_options(a);
  const index_t in = cfg.fit_input(a.crop), out = cfg.output_size(in);
  Rng rng(std::uint64_t(common.seed));
  UNet<float> net(cfg, rng);
  Adam<float> opt(parameters<float>(net), {.lr = float(a.lr)});
  const Tensor<float> x = randn<float>({a.batch, 1, in, in}, rng);
  Tensor<std::int32_t> y = Tensor<std::int32_t>::uninitialized(Shape{a.batch, out, out});
  for (auto& v : y) v = std::int32_t(rng.below(2));
  const Tensor<float> w = uniform<float>({a.batch, out, out}, rng, 1.0, 3.0);
  StepTimer timer, fwd, bwd;
  Tape<float> tape;
  for (std::int64_t s = 0; s < common.steps; ++s) {
    timer.start();
    fwd.start();
    tape.reset();
    Var<float> loss = segmentation_loss(tape, net(tape, tape.input(x)), y, &w, lo).total;
    fwd.stop();
    bwd.start();
    opt.zero_grad();
    tape.backward(loss);
    bwd.stop();
    opt.step();
    const double ms = timer.stop();
    std::fprintf(stderr, "step %lld: %.1f ms (loss %.4f)\n", (long long)s, ms, double(loss.item()));
  }
  std::printf("RESULT marrow unet ms/step median %.1f (forward %.1f, backward %.1f) batch %d, %lldx%lld, %d threads, "
              "peak RSS %.0f MB\n",
              timer.median_ms(), fwd.median_ms(), bwd.median_ms(), a.batch, (long long)in, (long long)in,
              omp_get_max_threads(), peak_rss_mb());
  write_summary(common.out, timer, {{"forward_ms", fwd.median_ms()}, {"backward_ms", bwd.median_ms()},
                                    {"batch", a.batch}, {"size", in}, {"threads", omp_get_max_threads()}});
  return 0;
}

// `--input A B C`: the values up to the next flag, taken out of argv (the Cli knows single values only).
std::vector<std::string> take_inputs(int& argc, char** argv) {
  std::vector<std::string> inputs;
  int w = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    if (s == "--input") {
      while (i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0) inputs.push_back(argv[++i]);
      continue;
    }
    if (s.rfind("--input=", 0) == 0) {
      inputs.push_back(s.substr(8));
      continue;
    }
    argv[w++] = argv[i];
  }
  argc = w;
  return inputs;
}

}  // namespace

int main(int argc, char** argv) {
  return run_main("unet", [&] {
    const std::vector<std::string> inputs = take_inputs(argc, argv);
    Args a;
    CommonFlags common;
    common.data = default_data();
    common.out = "runs/unet";
    common.steps = 2600;  // the README's figure
    common.seed = 0;
    Cli cli("unet", "U-Net segmentation of the ISBI-2012 membrane slices (overlap-tile inference, V-Rand/V-Info)");
    cli.command("train", "train on slices [0, val-from), validate on the rest, choose the threshold there")
        .command("predict", "segment images (--input A.png ...) into --out: probability, mask and overlay")
        .command("eval", "score a checkpoint on the validation slices")
        .command("bench", "median step time on random data (compare with shared/bench/unet_peer.py)");
    common.add_to(cli, {.epochs = false, .shards = true, .stop_at = true, .precision = true});  // unet trains by --steps
    add_args(cli, a);
    const std::string cmd = cli.parse_or_exit(argc, argv);
    if (common.threads > 0) omp_set_num_threads(common.threads);
    model_config(a);  // bad --padding or --loss are usage errors whatever the command
    loss_options(a);
    if (a.schedule != "cosine" && a.schedule != "constant")
      throw UsageError("--schedule: expected cosine or constant, got '" + a.schedule + "'");
    if (a.threshold != -1 && a.threshold < 0) throw UsageError("--threshold: expected -1 or a value in [0, 1]");
    if (a.threshold >= 0 && cmd != "predict" && cmd != "eval")
      throw UsageError("--threshold is for predict and eval (train chooses it on the validation slices)");
    if (cmd != "predict" && !inputs.empty()) throw UsageError("--input is for predict");
    if (cmd == "train") return train(a, common, cli.values());
    if (cmd == "eval") return evaluate(a, common);
    if (cmd == "predict") return predict(a, common, inputs);
    if (cmd == "bench") return bench(a, common);
    throw UsageError("expected a command: train, predict, eval or bench");
  });
}
