// gan: a DCGAN that draws MNIST digits, watched for convergence and mode
// collapse through the LeNet classifier (mnist_classifier).
//
//   mnist_classifier train --out runs/mnist_classifier          (the yardstick, once)
//   gan train  --out runs/gan                   (the best recipe, 20 minutes: score ~9.3)
//   gan train  --preset dcgan --out runs/dcgan  (the plain DCGAN: score ~5.5)
//   gan sample --ckpt runs/gan/checkpoint.safetensors --n 10000 --out samples-idx3-ubyte
//   gan score  --samples samples-idx3-ubyte
//
// Each epoch logs D and G losses, D(x) and D(G(z)), and for 10,000 generated
// digits the class histogram, the score exp(E KL(p(y|x) ‖ p(y))) and the FID on
// the classifier's features against the test set, with a warning when a class
// falls under 5 %; it draws an 8x8 grid from a fixed z and the loss/FID curves.
#include <omp.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <numeric>
#include <optional>

#include <marrow/data/idx.hpp>
#include <marrow/data/image.hpp>
#include <marrow/data/kmeans.hpp>
#include <marrow/data/loader.hpp>
#include <marrow/train/model_config.hpp>
#include <marrow/train/run.hpp>
#include <models/dcgan/metrics.hpp>
#include <models/dcgan/sample.hpp>
#include <models/dcgan/train.hpp>
#include <models/lenet.hpp>

using namespace marrow;
using namespace marrow::gan;

namespace {

// ---- images -------------------------------------------------------------------------
// [0, 255] bytes <-> [−1, 1] floats: v/127.5 − 1 and round((x + 1)·127.5), as the reference does.
Tensor<float> bytes_to_unit(const data::IdxArray& a) {
  Tensor<float> t = a.to_tensor<float>(1.0 / 127.5);
  t.arr() -= 1.0f;
  return t;
}
data::IdxArray unit_to_bytes(const Tensor<float>& x) {
  MARROW_CHECK(x.ndim() == 4 && x.dim(1) == 1, "gan: IDX3 holds grey images, got ", x.shape().str());
  data::IdxArray a;
  a.type = data::IdxType::U8;
  a.dims = {x.dim(0), x.dim(2), x.dim(3)};
  a.data.resize(std::size_t(x.numel()));
  for (index_t i = 0; i < x.numel(); ++i)
    a.data[std::size_t(i)] = std::uint8_t(std::clamp(std::lround((double(x[i]) + 1.0) * 127.5), 0L, 255L));
  return a;
}
// The same images after an 8-bit round trip: what `gan score` sees in a sample file.
Tensor<float> quantized(const Tensor<float>& x) {
  return bytes_to_unit(unit_to_bytes(x)).reshape(x.shape());
}

data::IdxArray read_images(const std::string& path) {
  data::IdxArray a = data::read_idx(path);
  MARROW_CHECK(a.type == data::IdxType::U8 && a.dims.size() == 3, "gan: '", path,
               "' is not an IDX3 ubyte image file (want magic 0x00000803, dims N x H x W)");
  return a;
}
// A split with its pixels in [−1, 1], the range of G's tanh.
data::Mnist load_digits(const std::string& dir, const std::string& split) {
  data::Mnist m = data::load_mnist(dir, split, /*scale01=*/false);
  m.images.arr() = m.images.arr() / 127.5f - 1.0f;  // in place: the tensor is the only owner of its storage
  return m;
}
Tensor<float> load_images(const std::string& dir, const std::string& split) { return load_digits(dir, split).images; }

// An 8x8 (or smaller) grid PNG, each pixel drawn as a 3x3 block so digits are legible.
void save_grid(const std::string& path, const Tensor<float>& x, index_t n = 64) {
  n = std::min(n, x.dim(0));
  const index_t per = x.numel() / x.dim(0);
  Tensor<float> first = Tensor<float>::uninitialized({n, x.dim(1), x.dim(2), x.dim(3)});
  std::copy_n(x.data(), n * per, first.data());
  const data::Image g = data::make_grid(first, 8, 2, -1.0, 1.0);
  const int s = 3;
  data::Image big(g.width * s, g.height * s, g.channels);
  for (int y = 0; y < big.height; ++y)
    for (int xx = 0; xx < big.width; ++xx)
      for (int c = 0; c < g.channels; ++c) big.at(y, xx, c) = g.at(y / s, xx / s, c);
  data::write_png(path, big);
}

// ---- the yardstick --------------------------------------------------------------------
struct Yardstick {
  std::unique_ptr<lenet::LeNet<float>> net;
  FeatureStats test;          // classifier features of the test set
  double fid_train_test = 0;  // 10,000 training digits against the test set: the floor to compare with
};

std::unique_ptr<lenet::LeNet<float>> load_classifier(const std::string& path) {
  MARROW_CHECK(std::filesystem::exists(path), "no classifier checkpoint at ", path,
               " (train one with: mnist_classifier train --out ", std::filesystem::path(path).parent_path().string(), ")");
  Rng rng(0);
  auto net = std::make_unique<lenet::LeNet<float>>(
      model_config_from_checkpoint<lenet::LeNetConfig>(path, "mnist_classifier"), rng);
  load_weights<float>(path, *net);
  return net;
}

// FID is biased by the sample count, so the reference uses as many training digits
// as the generated set has (a fixed random subset).
Yardstick make_yardstick(const std::string& classifier, const std::string& data_dir, const Tensor<float>& train,
                         index_t n_ref) {
  Yardstick y;
  y.net = load_classifier(classifier);
  y.test = feature_stats(classify(*y.net, load_images(data_dir, "t10k")).features);
  n_ref = std::min(n_ref, train.dim(0));
  const index_t per = train.numel() / train.dim(0);
  std::vector<index_t> perm(std::size_t(train.dim(0)));
  std::iota(perm.begin(), perm.end(), index_t(0));
  Rng(12345).sample_prefix(perm, std::size_t(n_ref));
  Tensor<float> sub = Tensor<float>::uninitialized({n_ref, train.dim(1), train.dim(2), train.dim(3)});
  for (index_t i = 0; i < n_ref; ++i) std::copy_n(train.data() + perm[std::size_t(i)] * per, per, sub.data() + i * per);
  y.fid_train_test = frechet_distance(feature_stats(classify(*y.net, sub).features), y.test);
  return y;
}

Json histogram_json(const std::vector<double>& h) {
  Json j = Json::array();
  for (double v : h) j.push_back(v);
  return j;
}
std::string histogram_text(const std::vector<double>& h) {
  std::string s;
  char buf[32];
  for (std::size_t c = 0; c < h.size(); ++c) {
    std::snprintf(buf, sizeof buf, "%s%zu: %.1f%%", c ? "  " : "", c, 100.0 * h[c]);
    s += buf;
  }
  return s;
}
std::string collapse_warning(const SampleReport& r) {
  if (r.rare.empty()) return "";
  std::string s = "WARNING: possible mode collapse: class";
  s += r.rare.size() > 1 ? "es" : "";
  char buf[32];
  for (int c : r.rare) {
    std::snprintf(buf, sizeof buf, " %d (%.1f%%)", c, 100.0 * r.histogram[std::size_t(c)]);
    s += buf;
  }
  return s + " under 5 % of the samples";
}

// ---- train ------------------------------------------------------------------------------
struct Args {
  DcganConfig model;
  TrainOptions train;
  std::string loss = "ns";
  bool ttur = false;            // lr_d 4e-4, lr_g 1e-4 (Heusel et al.)
  double noise_epochs = 0;      // epochs over which instance noise falls to 0 (0: half the run)
  int batch = 64;
  int log_every = 50;
  std::int64_t eval_samples = 10000;
  std::string classifier = "runs/mnist_classifier/checkpoint.safetensors";
  double max_minutes = 20;      // stop after the last epoch that fits in this wall time (0: off)
  int clusters = 0;             // condition on k-means clusters of the training images (0: off)
  bool class_labels = false;    // condition on the dataset's labels (a supervised, class-conditional GAN)
};

// The recipes --preset names; a preset sets defaults, flags given override them.
// selfcond (the default) is the best measured: the self-conditioned GAN (100
// k-means clusters, no labels), PacGAN packing, the averaged G, two refinement
// layers, no BatchNorm in D, batch 16 and learning rate 6e-4 (score 9.29, FID
// 0.56 in 20 minutes). dcgan is the plain DCGAN of Radford et al. (batch 64,
// Adam 2e-4, β1 0.5): the recipe of the PyTorch peer bench/models.py times against.
Args preset(const std::string& name) {
  Args a;
  if (name == "dcgan") return a;
  if (name != "selfcond") throw UsageError("--preset: expected selfcond or dcgan, got '" + name + "'");
  a.clusters = 100;
  a.model.pack = 2, a.model.averaged_g = true, a.model.g_refine = 2, a.model.d_batchnorm = false;
  a.batch = 16;
  a.train.lr_g = a.train.lr_d = 6e-4;
  return a;
}

// The class of every training image for a conditioned GAN: the dataset's labels,
// or k-means clusters of the pixels (no labels used). Clusters are recomputed on
// --resume: k-means is deterministic for a seed, and takes seconds.
struct Conditioning {
  Tensor<std::int32_t> labels;  // (N), empty when unconditional
  std::vector<double> prior;    // class frequencies
  Json info = Json::object();   // what it is, for summary.json; the same for a seed on any run
  double kmeans_s = 0;          // how long k-means took
};
Conditioning make_conditioning(const Args& a, const data::Mnist& train_set, std::uint64_t seed) {
  Conditioning c;
  const Tensor<float>& images = train_set.images;
  const Tensor<std::int32_t>& digits = train_set.labels;
  const index_t N = images.dim(0);
  if (a.class_labels) {
    c.labels = digits;
    c.prior.assign(10, 0.0);
    for (index_t i = 0; i < N; ++i) c.prior[std::size_t(c.labels[i])] += 1.0 / double(N);
    c.info = Json::object({{"conditioning", "labels"}, {"classes", 10}});
  } else if (a.clusters > 0) {
    StepTimer t;
    data::KMeansResult km = data::kmeans(images.reshape({N, images.numel() / N}), a.clusters, seed);
    c.kmeans_s = t.wall_s();
    c.labels = km.assignment, c.prior = km.sizes;
    c.info = Json::object({{"conditioning", "kmeans"}, {"classes", a.clusters}, {"kmeans_inertia", km.inertia},
                           {"kmeans_iterations", km.iterations}});
    // How well clusters follow digits, for the record only (labels play no part in training).
    std::vector<index_t> counts(std::size_t(a.clusters) * 10, 0);
    for (index_t i = 0; i < N; ++i) ++counts[std::size_t(km.assignment[i]) * 10 + std::size_t(digits[i])];
    index_t agree = 0;
    for (int k = 0; k < a.clusters; ++k)
      agree += *std::max_element(counts.begin() + k * 10, counts.begin() + k * 10 + 10);
    c.info.set("kmeans_purity", double(agree) / double(N));
  }
  return c;
}

struct EpochRecord {
  double epoch, fid, score;
};

int train(Args a, const CommonFlags& common, const Json& config) {
  a.train.loss = parse_gan_loss(a.loss);
  if (a.ttur) a.train.lr_d = 4e-4, a.train.lr_g = 1e-4;
  if (a.batch % a.model.pack != 0 || a.batch < 2 * a.model.pack)
    throw UsageError("--batch " + std::to_string(a.batch) + " must be a multiple of --pack " +
                     std::to_string(a.model.pack) + " holding at least two packs");
  const data::Mnist train_set = load_digits(common.data, "train");
  const Tensor<float>& images = train_set.images;
  const index_t N = images.dim(0), per = images.numel() / N, per_epoch = N / a.batch;
  MARROW_CHECK(per_epoch >= 1, "gan: ", N, " training images give no batch of ", a.batch);
  const std::int64_t total = common.epochs > 0 ? std::int64_t(common.epochs) * per_epoch : common.steps;
  MARROW_CHECK(total >= 1, "gan: nothing to train (--epochs 0 and --steps 0)");
  MARROW_CHECK(images.dim(2) == a.model.image && images.dim(3) == a.model.image, "gan: images ",
               images.shape().str(), " do not match --image ", a.model.image);
  a.train.noise_steps = std::int64_t((a.noise_epochs > 0 ? a.noise_epochs * double(per_epoch) : 0.5 * double(total)));
  const Conditioning cond = make_conditioning(a, train_set, std::uint64_t(common.seed));
  const bool root = dist::Comm::world().is_root();  // under mpirun, rank 0 alone reports and scores
  if (a.model.classes > 0 && root)
    std::fprintf(stderr, "gan: conditioned on %s (k-means: %.1f s)\n", cond.info.dump().c_str(), cond.kmeans_s);
  MARROW_CHECK(cond.prior.size() == std::size_t(a.model.classes), "gan: ", cond.prior.size(), " classes in the data, ",
               a.model.classes, " in the model");

  std::optional<Yardstick> yard;
  if (!root) {
  } else if (std::filesystem::exists(a.classifier)) {
    yard = make_yardstick(a.classifier, common.data, images, a.eval_samples);
    std::fprintf(stderr, "gan: classifier %s; FID of %lld training digits vs the test set: %.3f\n", a.classifier.c_str(),
                 (long long)std::min<index_t>(a.eval_samples, N), yard->fid_train_test);
  } else {
    std::fprintf(stderr, "gan: WARNING: no classifier at %s: FID, score and class histogram are skipped "
                 "(train one with: mnist_classifier train)\n", a.classifier.c_str());
  }

  Trainer<float> tr(a.model, a.train, std::uint64_t(common.seed));
  for (std::size_t k = 0; k < cond.prior.size(); ++k) tr.model.class_prior[index_t(k)] = float(cond.prior[k]);
  Checkpoint<float> ckpt(tr.model);
  ckpt.add_state([&](const StateVisitor<float>& f) { tr.opt_g.visit_state(f); });
  ckpt.add_state([&](const StateVisitor<float>& f) { tr.opt_d.visit_state(f); });
  ckpt.add_rng("trainer", tr.rng);
  ckpt.add_rng("dropout", tr.model.d.drop.rng);

  RunOptions ro;
  ro.name = "gan", ro.steps = total, ro.items_per_step = a.batch;
  ro.plots.push_back({.file = "losses.png", .keys = {"loss_d", "loss_g"},
                      .options = {.title = "DCGAN losses (D and G)", .xlabel = "step", .ylabel = "loss"}});
  if (yard) {
    ro.plots.push_back({.file = "fid.png", .keys = {"fid", "fid_train_vs_test"},
                        .options = {.title = "FID on classifier features (generated and train vs test)",
                                    .xlabel = "epoch", .ylabel = "FID", .log_y = true},
                        .x_key = "epoch"});
    ro.plots.push_back({.file = "score.png", .keys = {"score"},
                        .options = {.title = "exp(E KL(p(y|x) || p(y)))", .xlabel = "epoch", .ylabel = "score"},
                        .x_key = "epoch"});
  }
  Run run(common, std::move(ro), config);
  std::int64_t step = run.resume(ckpt);
  tr.distribute(run.world(), run.shards());  // under mpirun: each rank its shards of every batch

  // Fixed latent codes: the grid shows the same 64 digits evolving; FID of every
  // epoch is measured on the same 10,000 codes.
  Rng zr(std::uint64_t(common.seed) + 0x5a5a);
  const Tensor<float> z_grid = randn<float>({64, index_t(a.model.z_dim)}, zr);
  const Tensor<float> z_eval = randn<float>({a.eval_samples, index_t(a.model.z_dim)}, zr);
  const Tensor<std::int32_t> y_grid = draw_labels(tr.model, 64, zr), y_eval = draw_labels(tr.model, a.eval_samples, zr);

  std::vector<EpochRecord> epochs;  // for summary.json's curves; a resumed run starts from its log
  if (run.resuming() && std::filesystem::exists(run.path("metrics.jsonl")))
    for (const Json& j : read_metrics(run.path("metrics.jsonl")))
      if (j.find("fid") && j.find("score") && j.at("step").as_int() <= step)  // later lines are redone
        epochs.push_back({j.at("epoch").as_double(), j.at("fid").as_double(), j.at("score").as_double()});
  std::optional<SampleReport> last;
  Tensor<float> real = Tensor<float>::uninitialized({a.batch, images.dim(1), images.dim(2), images.dim(3)});
  Tensor<std::int32_t> real_labels;
  if (cond.labels.defined()) real_labels = Tensor<std::int32_t>::uninitialized({a.batch});
  std::vector<index_t> order(static_cast<std::size_t>(N));
  index_t order_epoch = -1;
  double sum_ld = 0, sum_lg = 0, sum_dr = 0, sum_df = 0;
  int n_acc = 0;
  double ep_ld = 0, ep_lg = 0, ep_dr = 0, ep_df = 0;
  int ep_n = 0;
  double epoch_start_s = run.timer().wall_s();
  bool out_of_time = false;
  while (step < total && !out_of_time) {
    const index_t epoch = step / per_epoch, k = step % per_epoch;
    if (epoch != order_epoch) {  // epoch e's order depends on (seed, e) only: a resumed run sees the same batches
      std::iota(order.begin(), order.end(), index_t(0));
      Rng(data::derive_seed(std::uint64_t(common.seed), std::uint64_t(epoch))).shuffle(order);
      order_epoch = epoch;
    }
    for (index_t i = 0; i < a.batch; ++i) {
      const index_t src = order[std::size_t(k * a.batch + i)];
      std::copy_n(images.data() + src * per, per, real.data() + i * per);
      if (real_labels.defined()) real_labels[i] = cond.labels[src];
    }
    // One D update, then one G update on the same fakes, drawn for the real images' classes.
    run.start_step();
    const double noise = noise_std_at(a.train, step);
    // G(z); D: real -> 1, fake -> 0; G: make the new D say real; the averaged G follows.
    const StepStats st = tr.step(real, real_labels, noise, step);  // models/dcgan/train.hpp
    const DStats& d = st.d;
    const double loss_g = st.loss_g;
    run.stop_step();
    ++step;
    run.check_finite(d.loss + loss_g, step, "D + G loss");

    sum_ld += d.loss, sum_lg += loss_g, sum_dr += d.d_real, sum_df += d.d_fake, ++n_acc;
    ep_ld += d.loss, ep_lg += loss_g, ep_dr += d.d_real, ep_df += d.d_fake, ++ep_n;
    if (step % a.log_every == 0 || step == total) {
      Json line = Json::object({{"step", step}, {"epoch", double(step) / double(per_epoch)}, {"loss_d", sum_ld / n_acc},
                                {"loss_g", sum_lg / n_acc}, {"d_real", sum_dr / n_acc}, {"d_fake", sum_df / n_acc},
                                {"noise_std", noise}});
      dist::AllReduceTiming both = tr.dp_d->timing();  // D's and G's sums together
      both.ms += tr.dp_g->timing().ms, both.hidden_ms += tr.dp_g->timing().hidden_ms;
      run.log(with_allreduce(both, line));
      sum_ld = sum_lg = sum_dr = sum_df = 0, n_acc = 0;
    }
    run.progress(step, {{"lossD", d.loss}, {"lossG", loss_g}, {"D(x)", d.d_real}, {"D(G(z))", d.d_fake}});
    const bool epoch_end = step % per_epoch == 0 || step == total;
    if (epoch_end) {
      const double ep = double(step) / double(per_epoch);
      char name[64];
      std::snprintf(name, sizeof name, "samples_epoch_%03d.png", int(std::ceil(ep - 1e-9)));
      if (run.is_root()) save_grid(run.path(name), generate(tr.model.sampler(), z_grid, y_grid));
      Json rec = Json::object({{"step", step}, {"epoch", ep}, {"epoch_loss_d", ep_ld / std::max(ep_n, 1)},
                               {"epoch_loss_g", ep_lg / std::max(ep_n, 1)}, {"epoch_d_real", ep_dr / std::max(ep_n, 1)},
                               {"epoch_d_fake", ep_df / std::max(ep_n, 1)}});
      char line[512];
      std::snprintf(line, sizeof line, "epoch %.2f: lossD %.3f lossG %.3f D(x) %.3f D(G(z)) %.3f", ep,
                    ep_ld / std::max(ep_n, 1), ep_lg / std::max(ep_n, 1), ep_dr / std::max(ep_n, 1),
                    ep_df / std::max(ep_n, 1));
      std::string msg = line;
      if (yard) {  // rank 0 only; the other ranks wait for it at the checkpoint
        StepTimer et;
        last = report(*yard->net, quantized(generate(tr.model.sampler(), z_eval, y_eval)), yard->test);
        epochs.push_back({ep, last->fid, last->score});
        rec.set("fid", last->fid);
        rec.set("score", last->score);
        rec.set("class_histogram", histogram_json(last->histogram));
        rec.set("min_class_fraction", *std::min_element(last->histogram.begin(), last->histogram.end()));
        rec.set("fid_train_vs_test", yard->fid_train_test);
        rec.set("eval_s", et.wall_s());
        std::snprintf(line, sizeof line, " | FID %.3f (train vs test %.3f) score %.3f\n  classes %s", last->fid,
                      yard->fid_train_test, last->score, histogram_text(last->histogram).c_str());
        msg += line;
        if (!last->rare.empty()) msg += "\n  " + collapse_warning(*last);
      }
      run.log(rec);
      run.message(msg);
      ep_ld = ep_lg = ep_dr = ep_df = 0, ep_n = 0;
      // Another epoch as long as this one would overrun the budget: stop here, with a finished epoch.
      const double now = run.timer().wall_s();
      if (a.max_minutes > 0 && step < total && now + (now - epoch_start_s) > 60.0 * a.max_minutes) {
        out_of_time = true;
        run.message("gan: --max-minutes " + std::to_string(a.max_minutes) + ": no time for another epoch, stopping");
      }
      out_of_time = run.world().any(out_of_time);  // every rank stops after the same epoch
      epoch_start_s = now;
      run.draw_plots();
    }
    if (epoch_end || run.interrupted()) {
      run.save(ckpt, step, model_config_metadata(a.model));
      if (run.interrupted()) return run.interrupted_exit();
    }
  }
  if (run.is_root()) save_grid(run.path("samples.png"), generate(tr.model.sampler(), z_grid, y_grid));
  Json fid_by_epoch = Json::array(), score_by_epoch = Json::array();
  for (auto& r : epochs) fid_by_epoch.push_back(r.fid), score_by_epoch.push_back(r.score);
  run.finish({{"fid", last ? Json(last->fid) : Json()},
              {"score", last ? Json(last->score) : Json()},
              {"class_histogram", last ? histogram_json(last->histogram) : Json()},
              {"min_class_fraction", last ? Json(*std::min_element(last->histogram.begin(), last->histogram.end())) : Json()},
              {"fid_train_vs_test", yard ? Json(yard->fid_train_test) : Json()},
              {"fid_by_epoch", fid_by_epoch},
              {"score_by_epoch", score_by_epoch},
              {"eval_samples", a.eval_samples},
              {"dataset", data::mnist_dataset_name(common.data)},
              {"loss", gan_loss_name(a.train.loss)},
              {"steps", step},
              {"epochs", double(step) / double(per_epoch)},
              {"batch", a.batch},
              {"params_g", count_parameters<float>(tr.model.g)},
              {"params_d", count_parameters<float>(tr.model.d)},
              {"checkpoint", run.checkpoint_path()},
              {"conditioning", cond.info},
              {"kmeans_s", cond.kmeans_s}});
  return 0;
}

// ---- sample / score -------------------------------------------------------------------------
int sample(const CommonFlags& common, index_t n, std::string grid) {
  const std::string path = common.checkpoint_path();
  Rng init(0);
  Dcgan<float> m(model_config_from_checkpoint<DcganConfig>(path, "gan"), init);
  load_weights<float>(path, m);
  Rng rng(std::uint64_t(common.seed));
  const Tensor<float> z = randn<float>({n, index_t(m.cfg.z_dim)}, rng);
  const Tensor<float> x = generate(m.sampler(), z, draw_labels(m, n, rng));
  const std::string out = common.out;
  const bool gz = out.size() > 3 && out.compare(out.size() - 3, 3, ".gz") == 0;
  if (auto dir = std::filesystem::path(out).parent_path(); !dir.empty()) make_dirs(dir.string());
  data::write_idx(out, unit_to_bytes(x), gz);
  if (grid.empty()) grid = (gz ? out.substr(0, out.size() - 3) : out) + ".png";
  save_grid(grid, quantized(x));
  std::printf("wrote %lld samples to %s and a grid of the first %lld to %s\n", (long long)n, out.c_str(),
              (long long)std::min<index_t>(n, 64), grid.c_str());
  return 0;
}

int score(const CommonFlags& common, const std::string& samples, const std::string& classifier) {
  MARROW_CHECK(!samples.empty(), "gan score: --samples FILE is required");
  const data::IdxArray a = read_images(samples);
  MARROW_CHECK(a.dims[0] >= 2, "gan score: '", samples, "' holds ", a.dims[0], " images; FID needs at least 2");
  const Tensor<float> x = bytes_to_unit(a).reshape({a.dims[0], 1, a.dims[1], a.dims[2]});
  Yardstick y = make_yardstick(classifier, common.data, load_images(common.data, "train"), a.dims[0]);
  MARROW_CHECK(a.dims[1] == y.net->cfg.image && a.dims[2] == y.net->cfg.image, "gan score: images in '", samples, "' are ",
               a.dims[1], "x", a.dims[2], ", the classifier takes ", y.net->cfg.image, "x", y.net->cfg.image);
  const SampleReport r = report(*y.net, x, y.test);
  std::printf("%s: %lld images\n  score %.4f\n  FID %.4f  (%lld training digits vs the test set: %.4f)\n  classes %s\n",
              samples.c_str(), (long long)a.dims[0], r.score, r.fid,
              (long long)std::min<index_t>(a.dims[0], 60000), y.fid_train_test, histogram_text(r.histogram).c_str());
  if (!r.rare.empty()) std::printf("  %s\n", collapse_warning(r).c_str());
  std::printf("%s\n", Json::object({{"samples", samples}, {"n", a.dims[0]}, {"score", r.score}, {"fid", r.fid},
                                    {"fid_train_vs_test", y.fid_train_test},
                                    {"class_histogram", histogram_json(r.histogram)}})
                          .dump()
                          .c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return run_main("gan", [&] {
    std::string preset_name = Cli::peek(argc, argv, "preset", "selfcond");
    Args a = preset(preset_name);
    CommonFlags common;
    common.data = data::default_mnist_dir(MARROW_SOURCE_DIR);
    common.out = "";
    common.epochs = 40;
    common.steps = 0;
    common.seed = 1;
    std::int64_t n = 10000;
    std::string samples, grid;
    Cli cli("gan", "DCGAN on MNIST digits, monitored through the LeNet classifier");
    cli.command("train", "train G and D; --out is the run's folder (default runs/gan)")
        .command("sample", "write --n digits of --ckpt (default runs/gan/checkpoint.safetensors) to --out as an "
                           "IDX3 ubyte file, and a PNG grid")
        .command("score", "score, FID and class histogram of an IDX3 file (--samples)");
    common.add_to(cli, {.shards = true, .stop_at = true, .precision = true});
    cli.flag("preset", preset_name, "the recipe the flags below default to: selfcond (the best: self-conditioned, "
             "packed, averaged G) or dcgan (the plain DCGAN)");
    cli.flag("classifier", a.classifier, "LeNet checkpoint from mnist_classifier (the metrics' yardstick)");
    cli.flag("batch", a.batch, "minibatch size").min(2);
    cli.flag("loss", a.loss, "GAN loss: ns (non-saturating), minimax or hinge");
    cli.flag("lr-g", a.train.lr_g, "Adam learning rate of G").min(0);
    cli.flag("lr-d", a.train.lr_d, "Adam learning rate of D").min(0);
    cli.flag("ttur", a.ttur, "two time-scale update rule: lr-d 4e-4, lr-g 1e-4 (overrides both)");
    cli.flag("beta1", a.train.beta1, "Adam beta1").min(0).max(0.999999);
    cli.flag("beta2", a.train.beta2, "Adam beta2").min(0).max(0.999999);
    cli.flag("label-smoothing", a.train.label_smoothing, "one-sided: D's real target is 1 - this").min(0).max(0.49);
    cli.flag("instance-noise", a.train.instance_noise, "initial std of Gaussian noise on D's inputs").min(0);
    cli.flag("noise-epochs", a.noise_epochs, "epochs over which the noise falls to 0 (0: half the run)").min(0);
    cli.flag("d-dropout", a.model.d_dropout, "dropout in D after each LeakyReLU").min(0).max(0.95);
    cli.flag("d-batchnorm", a.model.d_batchnorm, "BatchNorm after D's second conv");
    cli.flag("z-dim", a.model.z_dim, "latent size").min(1);
    cli.flag("g-width", a.model.g_width, "G's last hidden width (first: twice this)").min(1);
    cli.flag("g-refine", a.model.g_refine, "3x3 conv+BN+ReLU layers in G before upsampling (0: the paper's G)").min(0);
    cli.flag("d-width", a.model.d_width, "D's first conv width (second: twice this)").min(1);
    cli.flag("pack", a.model.pack, "PacGAN: D judges this many samples at once (1: plain DCGAN)").min(1);
    cli.flag("g-avg", a.model.averaged_g, "keep a moving average of G's weights and sample from it");
    cli.flag("g-avg-decay", a.train.g_avg_decay, "decay of that average").min(0).max(0.999999);
    cli.flag("clusters", a.clusters, "condition G and D on this many k-means clusters of the training images "
             "(unsupervised; 0: unconditional)").min(0).max(10000);
    cli.flag("class-labels", a.class_labels, "condition G and D on the dataset's labels instead (supervised)");
    cli.flag("eval-samples", a.eval_samples, "generated digits scored each epoch").min(2);
    cli.flag("log-every", a.log_every, "steps between metrics lines").min(1);
    cli.flag("max-minutes", a.max_minutes, "stop after the last epoch that fits in this wall time (0: off)").min(0);
    cli.flag("n", n, "sample: digits to write").min(1);
    cli.flag("grid", grid, "sample: PNG grid of the first 64 (empty: OUT.png)");
    cli.flag("samples", samples, "score: IDX3 ubyte file of 28x28 digits");
    const std::string cmd = cli.parse_or_exit(argc, argv);
    if (common.threads > 0) omp_set_num_threads(common.threads);
    try {
      parse_gan_loss(a.loss);
    } catch (const Error& e) {
      throw UsageError(std::string("--loss: ") + e.what());
    }
    if (cmd == "train") {
      if (common.out.empty()) common.out = "runs/gan";
      if (a.class_labels) {  // labels replace the preset's clusters; clusters asked for as well are a contradiction
        if (Cli::peek(argc, argv, "clusters", "0") != "0")
          throw UsageError("--class-labels and --clusters exclude each other");
        a.clusters = 0;
      }
      a.model.classes = a.class_labels ? 10 : a.clusters;
      Json config = cli.values();
      config.set("dataset", data::mnist_dataset_name(common.data));
      return train(a, common, config);
    }
    if (cmd == "sample") {
      if (common.ckpt.empty()) common.ckpt = "runs/gan/checkpoint.safetensors";
      if (common.out.empty()) throw UsageError("sample: --out FILE (the IDX3 file to write) is required");
      return sample(common, n, grid);
    }
    if (cmd == "score") {
      if (samples.empty()) throw UsageError("score: --samples FILE is required");
      return score(common, samples, a.classifier);
    }
    throw UsageError("expected a command: train, sample or score");
  });
}
