#pragma once
// DCGAN (Radford et al. 2015) for small grey images such as MNIST digits, with
// the usual stability options, read top to bottom: config, generator,
// discriminator, losses, then one training step (a D update and a G update).
//
//   G: z (N, z_dim) -> linear -> BN -> ReLU -> (N, 2w, S/4, S/4)
//      [-> conv 3x3 -> BN -> ReLU, g_refine times, off by default]
//      -> convT 4x4 s2 -> BN -> ReLU -> (N, w, S/2, S/2) -> convT 4x4 s2 -> tanh -> (N, C, S, S)
//   D: x (N, C, S, S) -> conv 4x4 s2 -> LeakyReLU -> (N, w, S/2, S/2)
//      -> conv 4x4 s2 -> BN -> LeakyReLU -> (N, 2w, S/4, S/4) -> linear -> (N) logits
// (no BatchNorm on D's first layer, as the paper says; the architecture of
// /work/shared/bench/dcgan_peer.py, so timings compare like with like).
//
// Stability options, each off by default: one-sided label smoothing (real
// target 1 − s), instance noise on D's inputs annealed linearly to zero,
// separate learning rates for D and G (TTUR), dropout in D, the hinge loss,
// packing (PacGAN, Lin et al. 2018: D judges `pack` samples at once, stacked
// on channels, so a G that repeats itself is easy to spot) and an exponential
// moving average of G's weights used for sampling (Yazıcı et al. 2019).
//
// Conditioning (cfg.classes > 0): every image carries a class id, G's linear
// layer reads [z, one_hot(y)], and D adds a projection term ⟨V[y], φ(x)⟩ to its
// logit, φ being the features its final linear layer reads (projection
// discriminator, Miyato & Koyama 2018; with packing, the packed samples'
// embeddings are summed). The ids need not be digit labels: clusters of the
// training images (data/kmeans.hpp) give an unsupervised GAN that models each
// cluster on its own (self-conditioned GAN, Liu et al. 2020). Samples draw their
// ids from the training set's class frequencies, kept in the checkpoint.
#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include <marrow/loss.hpp>
#include <marrow/nn/layers.hpp>
#include <marrow/nn/module.hpp>
#include <marrow/ops/reduce.hpp>
#include <marrow/ops/shape.hpp>
#include <marrow/optim.hpp>
#include <marrow/train/json.hpp>

namespace marrow::gan {

struct DcganConfig {
  int z_dim = 100;          // latent size
  int image = 28;           // side of the (square) images; a multiple of 4
  int channels = 1;         // image channels
  int g_width = 64;         // G's last hidden width; its first is 2·g_width
  int g_refine = 0;         // 3x3 conv + BN + ReLU layers at S/4 before upsampling (0: the reference G)
  int d_width = 64;         // D's first conv width; its second is 2·d_width
  bool d_batchnorm = true;  // BatchNorm after D's second conv (never after the first)
  double d_dropout = 0.0;   // dropout after each of D's LeakyReLUs (0: off)
  double leak = 0.2;        // LeakyReLU slope
  int pack = 1;             // samples D judges together (PacGAN); 1: the plain DCGAN
  bool averaged_g = false;  // keep a moving average of G's weights (and sample from it)
  int classes = 0;          // conditioning classes (0: unconditional); see "Conditioning" above

  Json to_json() const {
    return Json::object({{"z_dim", z_dim}, {"image", image}, {"channels", channels}, {"g_width", g_width},
                         {"g_refine", g_refine}, {"d_width", d_width}, {"d_batchnorm", d_batchnorm},
                         {"d_dropout", d_dropout}, {"leak", leak}, {"pack", pack}, {"averaged_g", averaged_g},
                         {"classes", classes}});
  }
  static DcganConfig from_json(const Json& j) {
    DcganConfig c;
    auto geti = [&](const char* k, int& v) {
      if (const Json* p = j.find(k)) v = int(p->as_int());
    };
    geti("z_dim", c.z_dim), geti("image", c.image), geti("channels", c.channels);
    geti("g_width", c.g_width), geti("d_width", c.d_width), geti("pack", c.pack);
    geti("g_refine", c.g_refine), geti("classes", c.classes);
    if (const Json* p = j.find("averaged_g")) c.averaged_g = p->as_bool();
    if (const Json* p = j.find("d_batchnorm")) c.d_batchnorm = p->as_bool();
    if (const Json* p = j.find("d_dropout")) c.d_dropout = p->as_double();
    if (const Json* p = j.find("leak")) c.leak = p->as_double();
    return c;
  }
  void check() const {
    MARROW_CHECK(z_dim > 0 && channels > 0 && g_width > 0 && d_width > 0, "DcganConfig: sizes must be positive, got z_dim ",
                 z_dim, ", channels ", channels, ", g_width ", g_width, ", d_width ", d_width);
    MARROW_CHECK(image >= 4 && image % 4 == 0, "DcganConfig: image side ", image, " must be a positive multiple of 4");
    MARROW_CHECK(d_dropout >= 0.0 && d_dropout < 1.0, "DcganConfig: d_dropout ", d_dropout, " must be in [0, 1)");
    MARROW_CHECK(leak >= 0.0 && leak < 1.0, "DcganConfig: leak ", leak, " must be in [0, 1)");
    MARROW_CHECK(pack >= 1, "DcganConfig: pack ", pack, " must be >= 1");
    MARROW_CHECK(g_refine >= 0, "DcganConfig: g_refine ", g_refine, " must be >= 0");
    MARROW_CHECK(classes >= 0, "DcganConfig: classes ", classes, " must be >= 0");
  }
};

// Class ids go with a conditioned model (one per image, each in [0, classes)) and
// with no other.
inline void check_labels(const Tensor<std::int32_t>& labels, index_t n, int classes, const char* who) {
  if (classes == 0) {
    MARROW_CHECK(!labels.defined() || labels.numel() == 0, who, ": class ids given to an unconditional model");
    return;
  }
  MARROW_CHECK(labels.defined() && labels.ndim() == 1 && labels.dim(0) == n, who, ": a model conditioned on ", classes,
               " classes needs (", n, ") class ids, got ", labels.defined() ? labels.shape().str() : std::string("none"));
  for (index_t i = 0; i < n; ++i)
    MARROW_CHECK(labels[i] >= 0 && labels[i] < classes, who, ": class id ", labels[i], " at ", i, " is not in [0, ",
                 classes, ")");
}

// Layers followed by BatchNorm have no bias: the normalization subtracts it again.
template <class T> struct Generator {
  static std::vector<ConvBnRelu<T>> make_refine(const DcganConfig& c, Rng& rng) {
    std::vector<ConvBnRelu<T>> v;
    for (int i = 0; i < c.g_refine; ++i) v.emplace_back(2 * c.g_width, 2 * c.g_width, 1, rng);
    return v;
  }

  DcganConfig cfg;
  Linear<T> fc;
  BatchNorm<T> bn0;  // over the 2w·(S/4)² features of fc, as BatchNorm1d in the reference
  std::vector<ConvBnRelu<T>> refine;  // cfg.g_refine of them
  ConvTranspose2d<T> up1;
  BatchNorm<T> bn1;
  ConvTranspose2d<T> up2;

  Generator(const DcganConfig& c, Rng& rng)
      : cfg(c),
        fc(c.z_dim + c.classes, index_t(2 * c.g_width) * (c.image / 4) * (c.image / 4), rng, /*with_bias=*/false),
        bn0(index_t(2 * c.g_width) * (c.image / 4) * (c.image / 4)),
        refine(make_refine(c, rng)),
        up1(2 * c.g_width, c.g_width, 4, rng, {.stride = 2, .padding = 1, .bias = false}),
        bn1(c.g_width),
        up2(c.g_width, c.channels, 4, rng, {.stride = 2, .padding = 1}) {}

  // z (N, z_dim) and, when conditioned, class ids (N) -> images (N, C, S, S) in (−1, 1).
  Var<T> operator()(Tape<T>& t, const Var<T>& z, const Tensor<std::int32_t>& labels = {}) {
    t.check(z, "Generator");
    MARROW_CHECK(z.ndim() == 2 && z.dim(1) == cfg.z_dim, "Generator: z ", z.shape().str(), " is not (N, ", cfg.z_dim, ")");
    const index_t N = z.dim(0), s = cfg.image / 4;
    check_labels(labels, N, cfg.classes, "Generator");
    const Var<T> in = cfg.classes ? concat(t, {z, t.input(one_hot<T>(labels, cfg.classes))}, 1) : z;
    Var<T> h = bn0.then_relu(t, fc(t, in));                 // relu(bn0(fc([z, y]))): (N, 2w·s·s)
    h = reshape(t, h, {N, 2 * cfg.g_width, s, s});          // (N, 2w, s, s)
    for (ConvBnRelu<T>& r : refine) h = r(t, h);
    h = bn1.then_relu(t, up1(t, h));                        // (N, w, 2s, 2s)
    return tanh(t, up2(t, h));                              // (N, C, 4s, 4s)
  }
  void visit(Visitor<T>& v, const std::string& prefix) {
    fc.visit(v, join_name(prefix, "fc"));
    bn0.visit(v, join_name(prefix, "bn0"));
    for (std::size_t i = 0; i < refine.size(); ++i) {  // checkpoint names "refine0.weight", "refine_bn0.weight"
      refine[i].conv.visit(v, join_name(prefix, "refine" + std::to_string(i)));
      refine[i].bn.visit(v, join_name(prefix, "refine_bn" + std::to_string(i)));
    }
    up1.visit(v, join_name(prefix, "up1"));
    bn1.visit(v, join_name(prefix, "bn1"));
    up2.visit(v, join_name(prefix, "up2"));
  }
};

template <class T> struct Discriminator {
  DcganConfig cfg;
  Conv2d<T> c1;
  Conv2d<T> c2;
  BatchNorm<T> bn2;  // used when cfg.d_batchnorm
  Dropout<T> drop;
  Linear<T> fc;
  Param<T> embed;  // (classes, features): the projection's class vectors V; empty when unconditional

  Discriminator(const DcganConfig& c, Rng& rng)
      : cfg(c),
        c1(c.channels * c.pack, c.d_width, 4, rng, {.stride = 2, .padding = 1}),
        c2(c.d_width, 2 * c.d_width, 4, rng, {.stride = 2, .padding = 1, .bias = !c.d_batchnorm}),
        bn2(2 * c.d_width),
        drop(T(c.d_dropout), rng),
        fc(features(c), 1, rng) {
    if (c.classes > 0) {  // drawn like fc's weight, after everything else: unconditional draws do not change
      embed = Param<T>(Tensor<T>::uninitialized({index_t(c.classes), features(c)}));
      const double bound = 1.0 / std::sqrt(double(features(c)));
      uniform_(embed.value(), rng, -bound, bound);
    }
  }
  static index_t features(const DcganConfig& c) { return index_t(2 * c.d_width) * (c.image / 4) * (c.image / 4); }

  // images (N, C, S, S) and, when conditioned, class ids (N) -> logits (N / pack):
  // samples k·pack … k·pack + pack − 1 are judged together (a reshape: they are
  // adjacent in memory).
  Var<T> operator()(Tape<T>& t, const Var<T>& x, const Tensor<std::int32_t>& labels = {}) {
    t.check(x, "Discriminator");
    MARROW_CHECK(x.ndim() == 4 && x.dim(1) == cfg.channels && x.dim(2) == cfg.image && x.dim(3) == cfg.image,
                 "Discriminator: input ", x.shape().str(), " is not (N, ", cfg.channels, ", ", cfg.image, ", ", cfg.image,
                 ")");
    MARROW_CHECK(x.dim(0) % cfg.pack == 0, "Discriminator: batch ", x.dim(0), " is not a multiple of pack ", cfg.pack);
    const index_t M = x.dim(0) / cfg.pack;
    check_labels(labels, x.dim(0), cfg.classes, "Discriminator");
    const Var<T> packed = cfg.pack == 1 ? x : reshape(t, x, {M, cfg.channels * cfg.pack, cfg.image, cfg.image});
    const T a = T(cfg.leak);
    Var<T> h = drop(t, leaky_relu(t, c1(t, packed), a));  // (M, w, S/2, S/2)
    h = c2(t, h);                                          // (M, 2w, S/4, S/4)
    if (cfg.d_batchnorm) h = bn2(t, h);
    h = drop(t, leaky_relu(t, h, a));
    const Var<T> phi = flatten(t, h);                        // (M, F)
    Var<T> logit = reshape(t, fc(t, phi), {M});              // (M)
    if (cfg.classes == 0) return logit;
    Var<T> v = embedding(t, Var<T>(embed), labels);          // (N, F): V[y] of every sample
    if (cfg.pack > 1) v = sum(t, reshape(t, v, {M, cfg.pack, phi.dim(1)}), {1});  // (M, F)
    return add(t, logit, sum(t, mul(t, v, phi), {1}));       // + ⟨V[y], φ⟩
  }
  void visit(Visitor<T>& v, const std::string& prefix) {
    c1.visit(v, join_name(prefix, "c1"));
    c2.visit(v, join_name(prefix, "c2"));
    if (cfg.d_batchnorm) bn2.visit(v, join_name(prefix, "bn2"));
    drop.visit(v, join_name(prefix, "drop"));
    fc.visit(v, join_name(prefix, "fc"));
    detail::visit_optional(v, join_name(prefix, "embed"), embed);
  }
};

// What an average of G tracks: every weight, then every BatchNorm running
// statistic, in visiting order (the same order for two generators of one config).
template <class T> std::vector<Tensor<T>*> averaged_tensors(Generator<T>& g) {
  std::vector<Tensor<T>*> out;
  for (auto& p : parameters<T>(g)) out.push_back(&p.param->value());
  for (auto& b : buffers<T>(g)) out.push_back(b.second);
  return out;
}

// avg ← decay·avg + (1 − decay)·live, tensor by tensor. The average moves through
// the oscillations of adversarial training instead of stopping wherever the last
// step left G. Decay 0 copies.
template <class T> void average_into(const std::vector<Tensor<T>*>& avg, const std::vector<Tensor<T>*>& live, T decay) {
  for (std::size_t i = 0; i < avg.size(); ++i) avg[i]->arr() = decay * avg[i]->arr() + (T(1) - decay) * live[i]->arr();
}

// Both networks under one name, for checkpoints ("generator.fc.weight", "discriminator.c1.bias"),
// and, with cfg.averaged_g, the averaged generator ("generator_avg.fc.weight").
template <class T> struct Dcgan {
  DcganConfig cfg;
  Generator<T> g;
  Discriminator<T> d;
  std::optional<Generator<T>> g_avg;
  Tensor<T> class_prior;  // (classes): how often each class occurs in the training set; samples draw from it
  Dcgan(const DcganConfig& c, Rng& rng) : cfg((c.check(), c)), g(c, rng), d(c, rng) {
    if (c.classes > 0) class_prior = full<T>({index_t(c.classes)}, T(1) / T(c.classes));
    if (c.averaged_g) {  // starts as a copy of G; built from its own generator so rng's draws do not change
      Rng unused(0);
      g_avg.emplace(c, unused);
      average_into(averaged_tensors(*g_avg), averaged_tensors(g), T(0));
      for (auto& p : parameters<T>(*g_avg)) p.param->set_requires_grad(false);
    }
  }
  // The generator to sample from: the average when there is one.
  Generator<T>& sampler() { return g_avg ? *g_avg : g; }
  void visit(Visitor<T>& v, const std::string& prefix) {
    g.visit(v, join_name(prefix, "generator"));
    d.visit(v, join_name(prefix, "discriminator"));
    if (g_avg) g_avg->visit(v, join_name(prefix, "generator_avg"));
    if (cfg.classes > 0) v.visit_buffer(join_name(prefix, "class_prior"), class_prior);
  }
  // n class ids drawn from class_prior (empty for an unconditional model).
  Tensor<std::int32_t> draw_labels(index_t n, Rng& rng) const {
    if (cfg.classes == 0) return {};
    Tensor<std::int32_t> y = Tensor<std::int32_t>::uninitialized({n});
    for (index_t i = 0; i < n; ++i)  // the prior holds fractions that sum to 1
      y[i] = std::int32_t(rng.pick_weighted(class_prior.data(), std::size_t(cfg.classes), 1.0));
    return y;
  }
};

// ---- losses -------------------------------------------------------------------------
// NonSaturating: D  BCE(D(x), 1) + BCE(D(G(z)), 0);   G  BCE(D(G(z)), 1)   (−log D(G(z)))
// Minimax:       D  as above;                          G  −BCE(D(G(z)), 0)  (log(1 − D(G(z))), saturates)
// Hinge:         D  mean relu(1 − D(x)) + mean relu(1 + D(G(z)));   G  −mean D(G(z))
enum class GanLoss { NonSaturating, Minimax, Hinge };

inline GanLoss parse_gan_loss(const std::string& s) {
  if (s == "ns" || s == "non-saturating") return GanLoss::NonSaturating;
  if (s == "minimax") return GanLoss::Minimax;
  if (s == "hinge") return GanLoss::Hinge;
  throw Error("unknown GAN loss '" + s + "' (expected ns, minimax or hinge)");
}
inline const char* gan_loss_name(GanLoss l) {
  return l == GanLoss::Hinge ? "hinge" : l == GanLoss::Minimax ? "minimax" : "ns";
}

// real_target < 1 is one-sided label smoothing (only the real side is softened;
// softening the fake side would reward D for leaving fakes where they are).
// The hinge loss has no labels and ignores it.
template <class T>
Var<T> discriminator_loss(Tape<T>& t, const Arg<T>& real_logits, const Arg<T>& fake_logits, GanLoss kind,
                          T real_target = T(1)) {
  t.check(real_logits, "discriminator_loss");
  t.check(fake_logits, "discriminator_loss");
  MARROW_CHECK(real_logits.ndim() == 1 && fake_logits.ndim() == 1, "discriminator_loss: logits ",
               real_logits.shape().str(), " and ", fake_logits.shape().str(), " must be (N)");
  if (kind == GanLoss::Hinge)
    return add(t, mean(t, relu(t, add_scalar(t, neg(t, real_logits), T(1)))),
               mean(t, relu(t, add_scalar(t, fake_logits, T(1)))));
  return add(t, bce_with_logits(t, real_logits, full<T>(real_logits.shape(), real_target)),
             bce_with_logits(t, fake_logits, zeros<T>(fake_logits.shape())));
}

template <class T> Var<T> generator_loss(Tape<T>& t, const Arg<T>& fake_logits, GanLoss kind) {
  t.check(fake_logits, "generator_loss");
  MARROW_CHECK(fake_logits.ndim() == 1, "generator_loss: logits ", fake_logits.shape().str(), " must be (N)");
  switch (kind) {
    case GanLoss::NonSaturating: return bce_with_logits(t, fake_logits, ones<T>(fake_logits.shape()));
    case GanLoss::Minimax: return neg(t, bce_with_logits(t, fake_logits, zeros<T>(fake_logits.shape())));
    case GanLoss::Hinge: return neg(t, mean(t, fake_logits));
  }
  return Var<T>();
}

// ---- training ---------------------------------------------------------------------------
struct TrainOptions {
  GanLoss loss = GanLoss::NonSaturating;
  double lr_g = 2e-4;              // Adam learning rate of G
  double lr_d = 2e-4;              // Adam learning rate of D (TTUR: larger than lr_g)
  double beta1 = 0.5;              // Adam β1 (DCGAN's)
  double beta2 = 0.999;            // Adam β2
  double label_smoothing = 0.0;    // one-sided: D's real target is 1 − this
  double instance_noise = 0.0;     // std of Gaussian noise on D's inputs at step 0 ...
  std::int64_t noise_steps = 0;    // ... falling linearly to 0 at this step
  double g_avg_decay = 0.999;      // moving-average decay of G's weights (when the model keeps the average)
};

// The average's decay at `step`: (1 + step)/(10 + step) until that reaches `decay`, so
// the first epochs are not dominated by the random initial weights.
inline double average_decay_at(double decay, std::int64_t step) {
  return std::min(decay, (1.0 + double(step)) / (10.0 + double(step)));
}

// Instance-noise std at `step` (linear anneal to zero).
inline double noise_std_at(const TrainOptions& o, std::int64_t step) {
  if (o.instance_noise <= 0.0 || o.noise_steps <= 0) return 0.0;
  return o.instance_noise * std::max(0.0, 1.0 - double(step) / double(o.noise_steps));
}

struct StepStats {
  double loss_d = 0, loss_g = 0;
  double d_real = 0, d_fake = 0;  // mean σ(D(x)) and σ(D(G(z))) in the D update
  double noise_std = 0;
};

template <class T = float> class Trainer {
 public:
  TrainOptions opt;
  Rng rng;                // initial weights, then z and instance noise; checkpointed
  Dcgan<T> model;
  Adam<T> opt_g, opt_d;
  std::int64_t step = 0;  // D+G updates done

  Trainer(const DcganConfig& cfg, const TrainOptions& o, std::uint64_t seed)
      : opt(check(o)), rng(seed), model(cfg, rng), opt_g(parameters<T>(model.g, "generator"), adam(o.lr_g, o)),
        opt_d(parameters<T>(model.d, "discriminator"), adam(o.lr_d, o)) {
    if (model.g_avg) avg_ = averaged_tensors(*model.g_avg), live_ = averaged_tensors(model.g);  // once, not every step
  }

  // One D update, then one G update on the same fake batch (as the reference
  // does). real (B, C, S, S) in [−1, 1]; for a conditioned model, labels (B) are
  // the real images' classes, and the fakes are drawn for the same classes.
  StepStats train_step(const Tensor<T>& real, const Tensor<std::int32_t>& labels = {}) {
    const DcganConfig& c = model.cfg;
    MARROW_CHECK(real.ndim() == 4 && real.dim(1) == c.channels && real.dim(2) == c.image && real.dim(3) == c.image &&
                     real.dim(0) >= 2 * c.pack && real.dim(0) % c.pack == 0,
                 "gan train_step: batch ", real.shape().str(), " is not (B, ", c.channels, ", ", c.image, ", ", c.image,
                 ") with B a multiple of pack ", c.pack, " and at least 2 packs");
    const index_t B = real.dim(0);
    StepStats st;
    st.noise_std = noise_std_at(opt, step);
    // G's forward stays on tape_g: its backward comes in the G update.
    tg_.reset();
    Var<T> fake = model.g(tg_, tg_.input(randn<T>({B, index_t(c.z_dim)}, rng)), labels);

    // D update: fakes enter as constants (PyTorch's fake.detach()).
    td_.reset();
    Var<T> d_real = model.d(td_, noisy(td_, td_.input(real), st.noise_std), labels);
    Var<T> d_fake = model.d(td_, noisy(td_, td_.input(fake.value()), st.noise_std), labels);
    Var<T> ld = discriminator_loss(td_, d_real, d_fake, opt.loss, T(1.0 - opt.label_smoothing));
    td_.backward(ld);
    opt_d.step();
    opt_d.zero_grad();
    st.loss_d = double(ld.item());
    st.d_real = mean_sigmoid(d_real.value());
    st.d_fake = mean_sigmoid(d_fake.value());

    // G update through the updated D. D's parameters are frozen meanwhile, so
    // its backward computes input gradients only (PyTorch also fills D's weight
    // gradients here, then zeroes them).
    set_d_frozen(true);
    Var<T> lg = generator_loss(tg_, model.d(tg_, noisy(tg_, fake, st.noise_std), labels), opt.loss);
    tg_.backward(lg);
    set_d_frozen(false);
    opt_g.step();
    opt_g.zero_grad();
    st.loss_g = double(lg.item());
    if (model.g_avg) average_into(avg_, live_, T(average_decay_at(opt.g_avg_decay, step)));
    ++step;
    return st;
  }

  // The sampling generator (the average, if kept) in eval mode (running BatchNorm
  // statistics) on latent codes z (N, z_dim) and class ids (N, conditioned models
  // only), `batch` at a time.
  Tensor<T> generate(const Tensor<T>& z, const Tensor<std::int32_t>& labels = {}, index_t batch = 500) {
    return generate_with(model.sampler(), z, labels, batch);
  }

  static Tensor<T> generate_with(Generator<T>& g, const Tensor<T>& z, const Tensor<std::int32_t>& labels = {},
                                 index_t batch = 500) {
    MARROW_CHECK(z.ndim() == 2 && z.dim(1) == g.cfg.z_dim, "generate: z ", z.shape().str(), " is not (N, ", g.cfg.z_dim,
                 ")");
    const index_t N = z.dim(0), Z = z.dim(1), S = g.cfg.image, C = g.cfg.channels;
    check_labels(labels, N, g.cfg.classes, "generate");
    const bool was_training = g.bn0.training;
    set_training<T>(g, false);
    Tensor<T> out = Tensor<T>::uninitialized({N, C, S, S});
    Tape<T> t;
    auto guard = t.no_grad();
    for (index_t s = 0; s < N; s += batch) {
      const index_t n = std::min(batch, N - s);
      Tensor<T> zb = Tensor<T>::uninitialized({n, Z});
      std::copy_n(z.data() + s * Z, n * Z, zb.data());
      Tensor<std::int32_t> yb;
      if (g.cfg.classes > 0) {
        yb = Tensor<std::int32_t>::uninitialized({n});
        std::copy_n(labels.data() + s, n, yb.data());
      }
      Var<T> x = g(t, t.input(zb), yb);
      std::copy_n(x.value().data(), x.numel(), out.data() + s * C * S * S);
      t.reset();
    }
    set_training<T>(g, was_training);
    return out;
  }

 private:
  Tape<T> tg_, td_;
  std::vector<Tensor<T>*> avg_, live_;  // the averaged G's tensors and their live counterparts

  static const TrainOptions& check(const TrainOptions& o) {
    MARROW_CHECK(o.lr_g >= 0 && o.lr_d >= 0, "gan: learning rates must be >= 0, got lr_g ", o.lr_g, ", lr_d ", o.lr_d);
    MARROW_CHECK(o.label_smoothing >= 0 && o.label_smoothing < 0.5, "gan: label_smoothing ", o.label_smoothing,
                 " must be in [0, 0.5)");
    MARROW_CHECK(o.instance_noise >= 0 && o.noise_steps >= 0, "gan: instance_noise ", o.instance_noise,
                 " and noise_steps ", o.noise_steps, " must be >= 0");
    MARROW_CHECK(o.g_avg_decay >= 0 && o.g_avg_decay < 1, "gan: g_avg_decay ", o.g_avg_decay, " must be in [0, 1)");
    return o;
  }
  static AdamOptions<T> adam(double lr, const TrainOptions& o) {
    AdamOptions<T> a;
    a.lr = T(lr);
    a.beta1 = T(o.beta1);
    a.beta2 = T(o.beta2);
    return a;
  }
  Var<T> noisy(Tape<T>& t, const Var<T>& x, double sd) {
    if (sd <= 0.0) return x;
    return add(t, x, t.input(randn<T>(x.shape(), rng, 0.0, sd)));
  }
  static double mean_sigmoid(const Tensor<T>& logits) {
    double s = 0;
    for (index_t i = 0; i < logits.numel(); ++i) s += 1.0 / (1.0 + std::exp(-double(logits[i])));
    return s / double(logits.numel());
  }
  void set_d_frozen(bool frozen) {
    for (auto& p : opt_d.groups()[0].params) p.param->set_requires_grad(!frozen);
  }
};

}  // namespace marrow::gan

/* Gradients (s = σ(logit), y = real target):
   D, ns/minimax   ∂/∂D(x) = (s − y)/N          ∂/∂D(G(z)) = s/N
   D, hinge        ∂/∂D(x) = −[D(x) < 1]/N       ∂/∂D(G(z)) = [D(G(z)) > −1]/N
   G, ns           ∂/∂D(G(z)) = (s − 1)/N        G, minimax  −s/N        G, hinge  −1/N
   Instance noise is a constant added to D's inputs: gradients pass through unchanged.
*/
