#pragma once
// DCGAN (Radford et al. 2015) for small grey images such as MNIST digits: the
// configuration, the generator and the discriminator, read top to bottom like
// the paper's figure.
//
//   G: z (N, z_dim) -> linear -> BN -> ReLU -> (N, 2w, S/4, S/4)
//      [-> conv 3x3 -> BN -> ReLU, g_refine times]
//      -> convT 4x4 s2 -> BN -> ReLU -> (N, w, S/2, S/2) -> convT 4x4 s2 -> tanh -> (N, C, S, S)
//   D: x (N, C, S, S) -> conv 4x4 s2 -> LeakyReLU -> (N, w, S/2, S/2)
//      -> conv 4x4 s2 -> [BN ->] LeakyReLU -> (N, 2w, S/4, S/4) -> linear -> (N) logits
//
// The config's defaults are the paper's plain DCGAN (no BatchNorm on D's first
// layer, as the paper says), the architecture of the PyTorch DCGAN that
// bench/models.py times against. The options on top of it:
//   g_refine     3x3 conv+BN+ReLU layers in G at S/4, before upsampling
//   pack         PacGAN (Lin et al. 2018): D judges `pack` samples at once, stacked
//                on channels, so a G that repeats itself is easy to spot
//   averaged_g   an exponential moving average of G's weights, sampled from
//                (Yazıcı et al. 2019; updated in train.hpp)
//   classes      conditioning: every image carries a class id, G's linear layer
//                reads [z, one_hot(y)], and D adds a projection term ⟨V[y], φ(x)⟩ to
//                its logit, φ being the features its final linear layer reads
//                (projection discriminator, Miyato & Koyama 2018; with packing,
//                the packed samples' embeddings are summed). The ids need not be
//                digit labels: k-means clusters of the training images
//                (data/kmeans.hpp) give an unsupervised, self-conditioned GAN
//                (Liu et al. 2020). Samples draw their ids from the training
//                set's class frequencies, kept in the checkpoint (class_prior).
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <marrow/nn/layers.hpp>
#include <marrow/nn/module.hpp>
#include <marrow/ops/reduce.hpp>
#include <marrow/ops/shape.hpp>

namespace marrow::gan {

struct DcganConfig {
  int z_dim = 100;          // latent size
  int image = 28;           // side of the (square) images; a multiple of 4
  int channels = 1;         // image channels
  int g_width = 64;         // G's last hidden width; its first is 2·g_width
  int g_refine = 0;         // 3x3 conv + BN + ReLU layers at S/4 before upsampling (0: the paper's G)
  int d_width = 64;         // D's first conv width; its second is 2·d_width
  bool d_batchnorm = true;  // BatchNorm after D's second conv (never after the first)
  double d_dropout = 0.0;   // dropout after each of D's LeakyReLUs (0: off)
  double leak = 0.2;        // LeakyReLU slope
  int pack = 1;             // samples D judges together (PacGAN); 1: the plain DCGAN
  bool averaged_g = false;  // keep a moving average of G's weights (and sample from it)
  int classes = 0;          // conditioning classes (0: unconditional)

  template <class F> void fields(F& f) {
    f("z_dim", z_dim);
    f("image", image);
    f("channels", channels);
    f("g_width", g_width);
    f("d_width", d_width);
    f("d_batchnorm", d_batchnorm);
    f("d_dropout", d_dropout);
    f("leak", leak);
    // Added after the first checkpoints were written; their absence means the plain DCGAN.
    f.optional("g_refine", g_refine);
    f.optional("pack", pack);
    f.optional("averaged_g", averaged_g);
    f.optional("classes", classes);
  }
  void validate() const {
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
  BatchNorm<T> bn0;  // over the 2w·(S/4)² features of fc, as BatchNorm1d in the PyTorch DCGAN
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

// What the averaged generator tracks: every weight, then every BatchNorm running
// statistic, in visiting order (the same order for two generators of one config).
template <class T> std::vector<Tensor<T>*> averaged_tensors(Generator<T>& g) {
  std::vector<Tensor<T>*> out;
  for (auto& p : parameters<T>(g)) out.push_back(&p.param->value());
  for (auto& b : buffers<T>(g)) out.push_back(b.second);
  return out;
}

// Both networks under one name, for checkpoints ("generator.fc.weight", "discriminator.c1.bias"),
// and, with cfg.averaged_g, the averaged generator ("generator_avg.fc.weight").
template <class T> struct Dcgan {
  DcganConfig cfg;
  Generator<T> g;
  Discriminator<T> d;
  std::optional<Generator<T>> g_avg;
  Tensor<T> class_prior;  // (classes): how often each class occurs in the training set; samples draw from it

  Dcgan(const DcganConfig& c, Rng& rng) : cfg((c.validate(), c)), g(c, rng), d(c, rng) {
    if (c.classes > 0) class_prior = full<T>({index_t(c.classes)}, T(1) / T(c.classes));
    if (c.averaged_g) {  // starts as a copy of G; built from its own generator so rng's draws do not change
      Rng unused(0);
      g_avg.emplace(c, unused);
      const std::vector<Tensor<T>*> avg = averaged_tensors(*g_avg), live = averaged_tensors(g);
      for (std::size_t i = 0; i < avg.size(); ++i) avg[i]->arr() = live[i]->arr();
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
};

}  // namespace marrow::gan
