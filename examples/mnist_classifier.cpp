// mnist_classifier: train the LeNet digit classifier that the GAN metrics
// measure with (models/lenet.hpp), or evaluate a checkpoint of it.
//
//   mnist_classifier train --epochs 4 --out runs/mnist_classifier
//   mnist_classifier eval  --ckpt runs/mnist_classifier/checkpoint.safetensors
//
// Data: --data DIR with the four MNIST IDX files (gzipped or not). The default
// is ../shared/data/mnist beside the repository, else Debian's Fashion-MNIST
// (/usr/share/datasets/fashion-mnist, package dataset-fashion-mnist).
#include <omp.h>

#include <algorithm>
#include <cstdio>

#include <marrow/data/idx.hpp>
#include <marrow/data/loader.hpp>
#include <marrow/dist/data_parallel.hpp>
#include <marrow/loss.hpp>
#include <marrow/optim.hpp>
#include <marrow/schedule.hpp>
#include <marrow/train/model_config.hpp>
#include <marrow/train/run.hpp>
#include <models/lenet.hpp>

using namespace marrow;
using lenet::LeNet;
using lenet::LeNetConfig;

namespace {

// Images (N, 1, 28, 28) scaled from [0, 255] to [−1, 1], the classifier's input range.
data::Mnist load_split(const std::string& dir, const std::string& split) {
  data::Mnist m = data::load_mnist(dir, split);
  m.images.arr() = m.images.arr() * 2.0f - 1.0f;
  return m;
}

struct Batch {
  Tensor<float> x;
  Tensor<std::int32_t> y;
};
Batch gather(const data::Mnist& d, const std::vector<index_t>& idx) {
  const index_t per = d.images.numel() / d.images.dim(0), n = index_t(idx.size());
  Batch b{Tensor<float>::uninitialized({n, d.images.dim(1), d.images.dim(2), d.images.dim(3)}),
          Tensor<std::int32_t>::uninitialized({n})};
  for (index_t i = 0; i < n; ++i) {
    std::copy_n(d.images.data() + idx[std::size_t(i)] * per, per, b.x.data() + i * per);
    b.y[i] = d.labels[idx[std::size_t(i)]];
  }
  return b;
}

struct EvalResult {
  double accuracy = 0, loss = 0;
  std::vector<double> per_class;  // accuracy of each true class
};

EvalResult evaluate(LeNet<float>& net, const data::Mnist& test) {
  set_training<float>(net, false);
  const index_t N = test.images.dim(0), C = net.cfg.classes, B = 500;
  std::vector<double> right(std::size_t(C), 0), count(std::size_t(C), 0);
  double loss = 0;
  Tape<float> t;
  auto guard = t.no_grad();
  std::vector<index_t> idx;
  for (index_t s = 0; s < N; s += B) {
    idx.clear();
    for (index_t i = s; i < std::min(N, s + B); ++i) idx.push_back(i);
    Batch b = gather(test, idx);
    Var<float> logits = net(t, t.input(b.x));
    loss += double(cross_entropy(t, logits, b.y, {.reduction = Reduction::Sum}).item());
    const float* z = logits.value().data();
    for (index_t i = 0; i < index_t(idx.size()); ++i) {
      const index_t pred = std::max_element(z + i * C, z + (i + 1) * C) - (z + i * C);
      count[std::size_t(b.y[i])] += 1;
      right[std::size_t(b.y[i])] += pred == b.y[i];
    }
    t.reset();
  }
  set_training<float>(net, true);
  EvalResult r;
  double tot = 0;
  for (index_t c = 0; c < C; ++c) {
    tot += right[std::size_t(c)];
    r.per_class.push_back(count[std::size_t(c)] ? right[std::size_t(c)] / count[std::size_t(c)] : 0.0);
  }
  r.accuracy = tot / double(N);
  r.loss = loss / double(N);
  return r;
}

struct Args {
  LeNetConfig model;
  index_t batch = 128;  // minibatch size
  double lr = 2e-3;     // Adam peak learning rate, cosine-decayed to 0
  double weight_decay = 0.0;
  int log_every = 50;   // steps between metrics.jsonl lines
};

int train(const Args& a, const CommonFlags& common, const Json& config) {
  const std::string dir = common.data;
  data::Mnist tr = load_split(dir, "train"), te = load_split(dir, "t10k");
  const index_t N = tr.images.dim(0), per_epoch = N / a.batch;
  MARROW_CHECK(per_epoch >= 1, "mnist_classifier: ", N, " training images give no batch of ", a.batch);
  const std::int64_t total = common.epochs > 0 ? std::int64_t(common.epochs) * per_epoch : common.steps;
  MARROW_CHECK(total >= 1, "mnist_classifier: nothing to train (--epochs 0 and --steps 0)");

  Rng rng(std::uint64_t(common.seed));
  LeNet<float> net(a.model, rng);
  auto params = parameters<float>(net);
  Adam<float> opt(params, {.lr = float(a.lr), .weight_decay = float(a.weight_decay)});
  sched::WarmupCosine<float> sched{float(a.lr), 0, total};
  Checkpoint<float> ckpt(net);
  ckpt.add_state([&](const StateVisitor<float>& f) { opt.visit_state(f); });
  ckpt.add_rng("dropout", net.drop.rng);
  RunOptions ro;
  ro.name = "lenet", ro.steps = total, ro.items_per_step = a.batch;
  ro.plots = {{.file = "loss.png", .keys = {"loss"},
               .options = {.title = "LeNet training loss", .xlabel = "step", .ylabel = "cross-entropy", .log_y = true}},
              {.file = "accuracy.png", .keys = {"test_accuracy"},
               .options = {.title = "LeNet test accuracy", .xlabel = "epoch", .ylabel = "fraction"}, .x_key = "epoch"}};
  Run run(common, std::move(ro), config);
  std::int64_t step = run.resume(ckpt);
  // Each global batch cut into shards over the processes (one shard without mpirun).
  dist::DataParallel<float> dp(params, run.world(), run.shards(),
                               {.rngs = {&net.drop.rng}, .buffers = buffers<float>(net)});

  data::DataLoader<Batch> loader(N, [&](const std::vector<index_t>& idx, Rng&) { return gather(tr, idx); },
                                 {.batch_size = a.batch, .shuffle = true, .drop_last = true,
                                  .seed = std::uint64_t(common.seed)});
  for (std::int64_t k = 0; k < step; ++k) loader.next();  // a resumed run sees the batches it would have seen

  EvalResult last;
  bool evaluated = false;
  Tape<float> t;
  double run_loss = 0, run_acc = 0;
  int run_n = 0;
  while (step < total) {
    Batch b = loader.next();
    opt.set_lr(sched.at(step));
    run.start_step();
    const std::vector<double> shard_mean = dp.step(b.y.numel(), [&](std::int64_t b0, std::int64_t b1) {
      t.reset();
      const Tensor<std::int32_t> y = dist::batch_rows(b.y, b0, b1);
      Var<float> logits = net(t, t.input(dist::batch_rows(b.x, b0, b1)));
      Var<float> loss = cross_entropy(t, logits, y);
      dp.backward(t, loss);
      const float* z = logits.value().data();
      const index_t C = a.model.classes;
      double right = 0;
      for (index_t i = 0; i < y.numel(); ++i) right += (std::max_element(z + i * C, z + (i + 1) * C) - (z + i * C)) == y[i];
      return std::vector<double>{double(loss.item()), right / double(y.numel())};
    });
    opt.step();
    opt.zero_grad();
    run.stop_step();
    ++step;
    const double l = shard_mean[0];
    run.check_finite(l, step);
    run_loss += l, run_acc += shard_mean[1], ++run_n;
    if (step % a.log_every == 0 || step == total) {
      run.log(with_allreduce(dp.timing(), Json::object({{"step", step}, {"epoch", double(step) / double(per_epoch)},
                                                         {"loss", run_loss / run_n}, {"train_accuracy", run_acc / run_n},
                                                         {"lr", double(opt.lr())}})));
      run_loss = run_acc = 0, run_n = 0;
    }
    run.progress(step, {{"loss", l}});
    const bool epoch_end = step % per_epoch == 0 || step == total;
    if (epoch_end) {
      last = evaluate(net, te);
      evaluated = true;
      run.log({{"step", step}, {"epoch", double(step) / double(per_epoch)}, {"test_accuracy", last.accuracy},
               {"test_loss", last.loss}});
      char buf[128];
      std::snprintf(buf, sizeof buf, "epoch %.2f: test accuracy %.2f %%, test loss %.4f", double(step) / double(per_epoch),
                    100.0 * last.accuracy, last.loss);
      run.message(buf);
    }
    if (epoch_end || run.interrupted()) {
      run.save(ckpt, step, model_config_metadata(a.model));
      if (run.interrupted()) return run.interrupted_exit();
    }
  }
  if (!evaluated) last = evaluate(net, te);
  Json per_class = Json::array();
  for (double v : last.per_class) per_class.push_back(v);
  run.finish({{"test_accuracy", last.accuracy},
              {"test_loss", last.loss},
              {"per_class_accuracy", per_class},
              {"dataset", data::mnist_dataset_name(dir)},
              {"steps", step},
              {"epochs", double(step) / double(per_epoch)},
              {"parameters", count_parameters<float>(net)},
              {"checkpoint", run.checkpoint_path()}});
  return 0;
}

int eval(const CommonFlags& common) {
  const std::string path = common.checkpoint_path();
  Rng rng(0);
  LeNet<float> net(model_config_from_checkpoint<LeNetConfig>(path, "mnist_classifier"), rng);
  load_weights<float>(path, net);
  const data::Mnist te = load_split(common.data, "t10k");
  EvalResult r = evaluate(net, te);
  std::printf("%s test set (%lld images): accuracy %.2f %%, loss %.4f\nper class:", data::mnist_dataset_name(common.data).c_str(),
              (long long)te.images.dim(0), 100.0 * r.accuracy, r.loss);
  for (std::size_t c = 0; c < r.per_class.size(); ++c) std::printf(" %zu: %.2f%%", c, 100.0 * r.per_class[c]);
  std::printf("\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return run_main("mnist_classifier", [&] {
    Args a;
    CommonFlags common;
    common.data = data::default_mnist_dir(MARROW_SOURCE_DIR);
    common.out = "runs/mnist_classifier";
    common.epochs = 4;
    common.steps = 0;
    common.seed = 1;
    std::int64_t batch = a.batch;
    Cli cli("mnist_classifier", "LeNet-5 with BatchNorm on MNIST: the yardstick of the GAN metrics");
    cli.command("train", "train the classifier").command("eval", "test-set accuracy of a checkpoint");
    common.add_to(cli, {.shards = true, .stop_at = true, .precision = true});
    cli.flag("batch", batch, "minibatch size").min(1);
    cli.flag("lr", a.lr, "Adam peak learning rate (cosine decay to 0)").min(0);
    cli.flag("weight-decay", a.weight_decay, "Adam L2 weight decay").min(0);
    cli.flag("c1", a.model.c1, "channels of the first conv").min(1);
    cli.flag("c2", a.model.c2, "channels of the second conv").min(1);
    cli.flag("hidden", a.model.hidden, "width of the penultimate layer (the FID features)").min(1);
    cli.flag("dropout", a.model.dropout, "dropout before the last layer").min(0).max(0.95);
    cli.flag("log-every", a.log_every, "steps between metrics lines").min(1);
    const std::string cmd = cli.parse_or_exit(argc, argv);
    a.batch = batch;
    if (common.threads > 0) omp_set_num_threads(common.threads);
    if (cmd == "train") {
      Json config = cli.values();
      config.set("dataset", data::mnist_dataset_name(common.data));
      return train(a, common, config);
    }
    if (cmd == "eval") return eval(common);
    throw UsageError("expected a command: train or eval");
  });
}
