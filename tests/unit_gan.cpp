// The DCGAN, its losses and training step, the LeNet yardstick and the GAN metrics.
#include "testing.hpp"

#include <cmath>
#include <marrow/train/model_config.hpp>
#include <models/dcgan/metrics.hpp>
#include <models/dcgan/sample.hpp>
#include <models/dcgan/train.hpp>
#include <models/lenet.hpp>

using namespace marrow;
using namespace marrow::gan;
using marrow::lenet::LeNet;
using marrow::lenet::LeNetConfig;

namespace {
DcganConfig tiny_gan(bool bn = true, double dropout = 0.0, int pack = 1) {
  DcganConfig c;
  c.z_dim = 3, c.image = 8, c.channels = 1, c.g_width = 2, c.d_width = 2;
  c.d_batchnorm = bn, c.d_dropout = dropout, c.pack = pack;
  return c;
}

// One D update, then one G update on the same fakes: the step of gan train.
struct Step {
  DStats d;
  double loss_g = 0, noise_std = 0;
};
Step train_step(Trainer<float>& tr, std::int64_t step, const Tensor<float>& real, const Tensor<std::int32_t>& y = {}) {
  Step s;
  s.noise_std = noise_std_at(tr.opt, step);
  const StepStats st = tr.step(real, y, s.noise_std, step);
  s.d = st.d;
  s.loss_g = st.loss_g;
  return s;
}

// Every parameter of G and D, through D's loss (fakes not detached, so G is
// reached too) or G's loss. The dropout generator restarts on every call: the
// finite differences must see the same mask as the analytic pass.
struct GradCase {
  GanLoss kind = GanLoss::NonSaturating;
  bool bn = true;          // BatchNorm in D
  double dropout = 0.0;    // in D
  double smoothing = 0.0;  // one-sided label smoothing
  bool noise = false;      // instance noise
  int pack = 1, g_refine = 0;
  int classes = 0;         // conditioned G and projection D
};
void check_gan_gradients(const GradCase& k) {
  DcganConfig cfg = tiny_gan(k.bn, k.dropout, k.pack);
  cfg.g_refine = k.g_refine;
  cfg.classes = k.classes;
  Rng rng(7);
  Dcgan<double> m(cfg, rng);
  const index_t N = k.pack == 1 ? 3 : 2 * k.pack;  // D's BatchNorm sees N / pack packs
  Tensor<double> z = randn<double>({N, 3}, rng);
  Tensor<double> real = uniform<double>({N, 1, 8, 8}, rng, -1.0, 1.0);
  Tensor<double> n1 = randn<double>({N, 1, 8, 8}, rng, 0.0, k.noise ? 0.1 : 0.0);
  Tensor<double> n2 = randn<double>({N, 1, 8, 8}, rng, 0.0, k.noise ? 0.1 : 0.0);
  Tensor<std::int32_t> y;  // repeated ids: their embedding gradients must add up
  if (k.classes) {
    y = Tensor<std::int32_t>::uninitialized({N});
    for (index_t i = 0; i < N; ++i) y[i] = std::int32_t((i * 2) % k.classes);
  }
  auto d_of = [&](Tape<double>& t, Var<double> x, const Tensor<double>& nz) {
    return m.d(t, k.noise ? add(t, x, t.input(nz)) : x, y);
  };
  // Hinge: spread the logits past ±1, or D's fc bias gets −1/N + 1/N = 0 from every
  // sample pair and its (exactly zero) gradient cannot be told from round-off.
  if (k.kind == GanLoss::Hinge) {
    m.d.fc.weight.value().arr() *= 40.0;
    m.d.fc.bias.value()[0] = 1.0;
  }
  auto params = parameters<double>(m);
  // each refinement: conv weight, BN gain and shift; conditioning: D's class embedding
  CHECK(params.size() == (k.bn ? 15u : 14u) + 3u * std::size_t(k.g_refine) + (k.classes ? 1u : 0u));
  auto d_loss = [&](Tape<double>& t) {
    m.d.drop.rng = Rng(11);
    Var<double> fake = m.g(t, t.input(z), y);
    return discriminator_loss(t, d_of(t, t.input(real), n1), d_of(t, fake, n2), k.kind, 1.0 - k.smoothing);
  };
  auto g_loss = [&](Tape<double>& t) {
    m.d.drop.rng = Rng(11);
    return generator_loss(t, d_of(t, m.g(t, t.input(z), y), n2), k.kind);
  };
  // floor 1e-4 and tolerance 1e-5: through BatchNorm over 3 samples and tanh, central
  // differences of the O(1) losses carry ~1e-10 absolute round-off, so gradients of
  // 1e-4 come out with ~1e-6 relative noise; a wrong rule is off by far more.
  auto rd = gradcheck(params, d_loss, {.samples_per_tensor = 24, .floor = 1e-4});
  MARROW_CHECK_GRAD(rd, 1e-5);
  auto rg = gradcheck(params, g_loss, {.samples_per_tensor = 24, .floor = 1e-4});
  MARROW_CHECK_GRAD(rg, 1e-5);
}
}  // namespace

// ---- DCGAN ------------------------------------------------------------------------------
TEST_CASE("dcgan: gradients of every parameter, non-saturating loss") { check_gan_gradients({}); }
TEST_CASE("dcgan: gradients with label smoothing, instance noise and dropout in D") {
  check_gan_gradients({.dropout = 0.3, .smoothing = 0.1, .noise = true});
}
TEST_CASE("dcgan: gradients, minimax loss, D without BatchNorm") {
  check_gan_gradients({.kind = GanLoss::Minimax, .bn = false});
}
TEST_CASE("dcgan: gradients with packing (PacGAN, 2 samples per D input)") {
  check_gan_gradients({.smoothing = 0.1, .noise = true, .pack = 2});
}
TEST_CASE("dcgan: gradients with two 3x3 refinement layers in G") { check_gan_gradients({.g_refine = 2}); }
TEST_CASE("dcgan: gradients, hinge loss") { check_gan_gradients({.kind = GanLoss::Hinge}); }
TEST_CASE("dcgan: gradients, conditioned G and projection D") { check_gan_gradients({.bn = false, .classes = 3}); }
TEST_CASE("dcgan: gradients, conditioned with packing (summed class embeddings)") {
  check_gan_gradients({.noise = true, .pack = 2, .classes = 3});
}
TEST_CASE("dcgan: gradients, hinge loss with dropout and noise, D without BatchNorm") {
  check_gan_gradients({.kind = GanLoss::Hinge, .bn = false, .dropout = 0.25, .noise = true});
}

TEST_CASE("dcgan: shapes, ranges and parameter names") {
  Rng rng(0);
  Dcgan<float> m(DcganConfig{}, rng);
  Tape<float> t;
  Var<float> x = m.g(t, t.input(randn<float>({4, 100}, rng)));
  CHECK(x.shape() == Shape{4, 1, 28, 28});
  CHECK(x.value().arr().maxCoeff() < 1.0f);
  CHECK(x.value().arr().minCoeff() > -1.0f);
  Var<float> l = m.d(t, x);
  CHECK(l.shape() == Shape{4});
  auto ps = parameters<float>(m);
  REQUIRE(ps.size() == 15);
  CHECK(ps[0].name == "generator.fc.weight");
  CHECK(ps[8].name == "discriminator.c1.weight");
  // The reference architecture: G 100→6272 (no bias, BN), 128→64→1; D 1→64→128→1.
  CHECK(m.g.fc.weight.shape() == Shape{6272, 100});
  CHECK(m.g.up1.weight.shape() == Shape{128, 64, 4, 4});
  CHECK(m.d.c2.weight.shape() == Shape{128, 64, 4, 4});
  CHECK(m.d.fc.weight.shape() == Shape{1, 6272});
  // Refinement layers sit between bn0 and up1, keep the 7x7x128 shape, and survive the config's JSON.
  DcganConfig rc;
  rc.g_refine = 1;
  CHECK(config_from_json<DcganConfig>(config_to_json(rc), "x").g_refine == 1);
  Dcgan<float> r(rc, rng);
  auto rs = parameters<float>(r);
  REQUIRE(rs.size() == 18);
  CHECK(rs[3].name == "generator.refine0.weight");
  CHECK(rs[4].name == "generator.refine_bn0.weight");
  CHECK(r.g.refine[0].conv.weight.shape() == Shape{128, 128, 3, 3});
  CHECK(r.g(t, t.input(randn<float>({2, 100}, rng))).shape() == Shape{2, 1, 28, 28});
}

TEST_CASE("dcgan: a checkpoint's config needs the first checkpoints' fields, later ones default to the plain DCGAN") {
  const Json first = Json::parse(R"({"z_dim":100,"image":28,"channels":1,"g_width":64,"d_width":64,)"
                                 R"("d_batchnorm":true,"d_dropout":0,"leak":0.2})");
  const DcganConfig c = config_from_json<DcganConfig>(first, "old");
  CHECK(c.g_refine == 0);
  CHECK(c.pack == 1);
  CHECK(!c.averaged_g);
  CHECK(c.classes == 0);
  for (const char* field : {"z_dim", "image", "channels", "g_width", "d_width", "d_batchnorm", "d_dropout", "leak"}) {
    Json j = Json::object();
    for (auto& [k, v] : first.members())
      if (k != field) j.set(k, v);
    const std::string missing = std::string("no field '") + field + "'";
    CHECK_THROWS_WITH(config_from_json<DcganConfig>(j, "old"), doctest::Contains(missing.c_str()));
  }
  DcganConfig full;
  full.g_refine = 2, full.pack = 2, full.averaged_g = true, full.classes = 7, full.d_batchnorm = false;
  const DcganConfig r = config_from_json<DcganConfig>(config_to_json(full), "x");
  CHECK((r.g_refine == 2 && r.pack == 2 && r.averaged_g && r.classes == 7 && !r.d_batchnorm));
  CHECK_THROWS_WITH(config_from_json<DcganConfig>(Json::parse(R"({"z_dim":100,"image":30,"channels":1,"g_width":64,)"
                                                              R"("d_width":64,"d_batchnorm":true,"d_dropout":0,"leak":0.2})"),
                                                  "x"),
                    doctest::Contains("image side 30"));
}

TEST_CASE("dcgan: bad shapes and configs name the cause") {
  Rng rng(0);
  Dcgan<float> m(tiny_gan(), rng);
  Tape<float> t;
  CHECK_THROWS_WITH(m.d(t, t.input(zeros<float>({2, 1, 9, 9}))),
                    doctest::Contains("Discriminator: input (2, 1, 9, 9) is not (N, 1, 8, 8)"));
  CHECK_THROWS_WITH(m.g(t, t.input(zeros<float>({2, 4}))), doctest::Contains("Generator: z (2, 4) is not (N, 3)"));
  DcganConfig bad;
  bad.image = 30;
  CHECK_THROWS_WITH(Dcgan<float>(bad, rng), doctest::Contains("image side 30 must be a positive multiple of 4"));
  bad = DcganConfig{};
  bad.g_refine = -1;
  CHECK_THROWS_WITH(Dcgan<float>(bad, rng), doctest::Contains("g_refine -1 must be >= 0"));
  CHECK_THROWS_WITH(parse_gan_loss("wgan"), doctest::Contains("unknown GAN loss 'wgan'"));
  CHECK_THROWS_WITH(discriminator_loss(t, t.input(zeros<float>({2, 1})), t.input(zeros<float>({2})), GanLoss::Hinge),
                    doctest::Contains("discriminator_loss: logits (2, 1) and (2,) must be (N)"));
}

TEST_CASE("dcgan: loss values by hand") {
  Tape<double> t;
  Var<double> r = t.input(Tensor<double>({2}, {1.0, 1.0}));
  Var<double> f = t.input(Tensor<double>({2}, {-1.0, -1.0}));
  const double sp1 = std::log1p(std::exp(-1.0));  // softplus(−1)
  // BCE(x, y) = (1 − y)·x + softplus(−x)
  CHECK(discriminator_loss(t, r, f, GanLoss::NonSaturating).item() == doctest::Approx(2 * sp1));
  CHECK(discriminator_loss(t, r, f, GanLoss::NonSaturating, 0.9).item() == doctest::Approx(0.1 + 2 * sp1));
  CHECK(generator_loss(t, f, GanLoss::NonSaturating).item() == doctest::Approx(1.0 + sp1));
  CHECK(generator_loss(t, f, GanLoss::Minimax).item() == doctest::Approx(-sp1));
  Var<double> hr = t.input(Tensor<double>({2}, {0.5, 2.0}));
  Var<double> hf = t.input(Tensor<double>({2}, {-2.0, 0.0}));
  CHECK(discriminator_loss(t, hr, hf, GanLoss::Hinge).item() == doctest::Approx(0.25 + 0.5));
  CHECK(generator_loss(t, hf, GanLoss::Hinge).item() == doctest::Approx(1.0));
}

TEST_CASE("dcgan: instance noise anneals linearly to zero") {
  TrainOptions o;
  CHECK(noise_std_at(o, 0) == 0.0);
  o.instance_noise = 0.2, o.noise_steps = 100;
  CHECK(noise_std_at(o, 0) == doctest::Approx(0.2));
  CHECK(noise_std_at(o, 50) == doctest::Approx(0.1));
  CHECK(noise_std_at(o, 100) == 0.0);
  CHECK(noise_std_at(o, 1000) == 0.0);
}

TEST_CASE("dcgan: a training step updates both nets and leaves no gradient behind") {
  TrainOptions o;
  o.instance_noise = 0.1, o.noise_steps = 10, o.label_smoothing = 0.1, o.lr_d = 4e-4, o.lr_g = 1e-4;
  Trainer<float> tr(tiny_gan(true, 0.2), o, 3);
  Rng rng(1);
  Tensor<float> real = uniform<float>({6, 1, 8, 8}, rng, -1.0, 1.0);
  const Tensor<float> g0 = tr.model.g.up2.weight.value().clone(), d0 = tr.model.d.c1.weight.value().clone();
  Step s = train_step(tr, 0, real);
  CHECK(std::isfinite(s.d.loss));
  CHECK(std::isfinite(s.loss_g));
  CHECK(s.d.d_real > 0.0);
  CHECK(s.d.d_real < 1.0);
  CHECK(s.noise_std == doctest::Approx(0.1));
  CHECK((tr.model.g.up2.weight.value().arr() - g0.arr()).abs().maxCoeff() > 0.0f);
  CHECK((tr.model.d.c1.weight.value().arr() - d0.arr()).abs().maxCoeff() > 0.0f);
  for (auto& p : parameters<float>(tr.model)) {
    CHECK_MESSAGE(p.param->requires_grad(), p.name);  // D unfrozen again after the G update
    if (p.param->has_grad()) CHECK_MESSAGE(p.param->grad().arr().abs().maxCoeff() == 0.0f, p.name);
  }
  CHECK(train_step(tr, 1, real).noise_std == doctest::Approx(0.09));
  Tensor<float> imgs = generate(tr.model.sampler(), randn<float>({5, 3}, rng), {}, 2);
  CHECK(imgs.shape() == Shape{5, 1, 8, 8});
  CHECK(tr.model.g.bn0.training);  // generate() restores train mode
  CHECK_THROWS_WITH(train_step(tr, 2, zeros<float>({6, 1, 4, 4})), doctest::Contains("gan step: batch (6, 1, 4, 4)"));
}

TEST_CASE("dcgan: packing judges adjacent samples together") {
  Rng rng(2);
  Dcgan<float> m(tiny_gan(true, 0.0, 2), rng);
  CHECK(m.d.c1.weight.shape() == Shape{2, 2, 4, 4});  // pack · channels inputs
  set_training<float>(m.d, false);                    // running statistics: packs independent
  Tape<float> t;
  Tensor<float> x = uniform<float>({4, 1, 8, 8}, rng, -1.0, 1.0);
  const Tensor<float> l0 = m.d(t, t.input(x)).value().clone();
  REQUIRE(l0.shape() == Shape{2});
  for (index_t i = 2 * 64; i < 3 * 64; ++i) x[i] = 0.5f;  // change sample 2: only pack 1 moves
  const Tensor<float> l1 = m.d(t, t.input(x)).value();
  CHECK(l1[0] == l0[0]);
  CHECK(l1[1] != l0[1]);
  CHECK_THROWS_WITH(m.d(t, t.input(zeros<float>({3, 1, 8, 8}))), doctest::Contains("batch 3 is not a multiple of pack 2"));
  TrainOptions o;
  Trainer<float> tr(tiny_gan(true, 0.0, 2), o, 1);
  CHECK_THROWS_WITH(train_step(tr, 0, zeros<float>({3, 1, 8, 8})), doctest::Contains("multiple of pack 2"));
  CHECK(std::isfinite(train_step(tr, 0, uniform<float>({4, 1, 8, 8}, rng, -1.0, 1.0)).d.loss));
}

TEST_CASE("dcgan: the averaged generator follows G and is what generate() samples") {
  CHECK(average_decay_at(0.999, 0) == doctest::Approx(0.1));
  CHECK(average_decay_at(0.999, 90) == doctest::Approx(0.91));
  CHECK(average_decay_at(0.999, 1000000) == doctest::Approx(0.999));
  DcganConfig c = tiny_gan();
  c.averaged_g = true;
  TrainOptions o;
  Trainer<float> tr(c, o, 5);
  Trainer<float> plain(tiny_gan(), o, 5);  // the average draws nothing: same initial G and D
  CHECK((plain.model.d.fc.weight.value().arr() - tr.model.d.fc.weight.value().arr()).abs().maxCoeff() == 0.0f);
  REQUIRE(tr.model.g_avg);
  auto& avg = *tr.model.g_avg;
  CHECK((avg.up1.weight.value().arr() - tr.model.g.up1.weight.value().arr()).abs().maxCoeff() == 0.0f);
  auto names = parameters<float>(tr.model);
  CHECK(names.size() == 15 + 8);
  CHECK(names[15].name == "generator_avg.fc.weight");
  const Tensor<float> a0 = avg.up1.weight.value().clone(), v0 = avg.bn1.running_var.clone();
  Rng rng(4);
  train_step(tr, 0, uniform<float>({6, 1, 8, 8}, rng, -1.0, 1.0));
  // step 0 decays by 0.1: avg = 0.1·old + 0.9·G
  const Tensor<float>& g1 = tr.model.g.up1.weight.value();
  CHECK((avg.up1.weight.value().arr() - (0.1f * a0.arr() + 0.9f * g1.arr())).abs().maxCoeff() < 1e-7f);
  CHECK((avg.bn1.running_var.arr() - (0.1f * v0.arr() + 0.9f * tr.model.g.bn1.running_var.arr())).abs().maxCoeff() <
        1e-7f);
  CHECK((avg.up1.weight.value().arr() - g1.arr()).abs().maxCoeff() > 0.0f);
  Tensor<float> z = randn<float>({4, 3}, rng);
  CHECK(&tr.model.sampler() == &avg);
  CHECK((generate(avg, z).arr() - generate(tr.model.g, z).arr()).abs().maxCoeff() > 0.0f);
  CHECK(config_from_json<DcganConfig>(config_to_json(c), "x").averaged_g);
}

TEST_CASE("dcgan: a conditioned model takes class ids everywhere and samples them from its prior") {
  DcganConfig c = tiny_gan(false);
  c.classes = 4;
  CHECK(config_from_json<DcganConfig>(config_to_json(c), "x").classes == 4);
  TrainOptions o;
  Trainer<float> tr(c, o, 9);
  Dcgan<float>& m = tr.model;
  CHECK(m.g.fc.weight.shape() == Shape{16, 3 + 4});  // [z, one_hot(y)] -> 2w·2·2
  CHECK(m.d.embed.shape() == Shape{4, 16});         // one vector per class over D's 2w·2·2 features
  auto bufs = buffers<float>(m);
  REQUIRE(!bufs.empty());
  CHECK(bufs.back().first == "class_prior");
  // The prior decides the draws: all mass on class 2, then half on 0 and half on 3.
  m.class_prior = Tensor<float>({4}, {0, 0, 1, 0});
  Rng rng(6);
  Tensor<std::int32_t> y = draw_labels(m, 50, rng);
  for (index_t i = 0; i < 50; ++i) CHECK(y[i] == 2);
  m.class_prior = Tensor<float>({4}, {0.5f, 0, 0, 0.5f});
  y = draw_labels(m, 2000, rng);
  int zeros_seen = 0;
  for (index_t i = 0; i < 2000; ++i) {
    CHECK((y[i] == 0 || y[i] == 3));
    zeros_seen += y[i] == 0;
  }
  CHECK(zeros_seen > 900);
  CHECK(zeros_seen < 1100);
  // The class changes G's output for the same z, and D's logit for the same image.
  Tensor<float> z = randn<float>({2, 3}, rng);
  for (index_t i = 3; i < 6; ++i) z[i] = z[i - 3];
  const Tensor<float> x = generate(m.sampler(), z, Tensor<std::int32_t>({2}, {0, 1}));
  CHECK((x.arr().head(64) - x.arr().tail(64)).abs().maxCoeff() > 1e-4f);
  Tape<float> t;
  Tensor<float> img = uniform<float>({2, 1, 8, 8}, rng, -1.0, 1.0);
  std::copy_n(img.data(), 64, img.data() + 64);
  const Tensor<float> l = m.d(t, t.input(img), Tensor<std::int32_t>({2}, {0, 3})).value();
  CHECK(l[0] != l[1]);
  // A training step with the real images' classes moves the class vectors too.
  const Tensor<float> e0 = m.d.embed.value().clone();
  Tensor<float> real = uniform<float>({4, 1, 8, 8}, rng, -1.0, 1.0);
  CHECK(std::isfinite(train_step(tr, 0, real, Tensor<std::int32_t>({4}, {0, 1, 1, 3})).d.loss));
  CHECK((m.d.embed.value().arr() - e0.arr()).abs().maxCoeff() > 0.0f);
  // Missing, extra and out-of-range ids name the cause.
  CHECK_THROWS_WITH(train_step(tr, 1, real), doctest::Contains("Generator: a model conditioned on 4 classes needs (4) class ids, got none"));
  CHECK_THROWS_WITH(train_step(tr, 1, real, Tensor<std::int32_t>({4}, {0, 1, 4, 3})),
                    doctest::Contains("class id 4 at 2 is not in [0, 4)"));
  CHECK_THROWS_WITH(generate(m.sampler(), z, Tensor<std::int32_t>({3}, {0, 1, 2})),
                    doctest::Contains("generate: a model conditioned on 4 classes needs (2) class ids, got (3,)"));
  Trainer<float> plain(tiny_gan(), o, 9);
  CHECK(!draw_labels(plain.model, 5, rng).defined());
  CHECK_THROWS_WITH(train_step(plain, 0, real, Tensor<std::int32_t>({4}, {0, 1, 1, 3})),
                    doctest::Contains("Generator: class ids given to an unconditional model"));
}

// ---- LeNet -------------------------------------------------------------------------------
TEST_CASE("lenet: gradients of every parameter through cross-entropy") {
  Rng rng(5);
  LeNetConfig c;
  c.image = 8, c.c1 = 2, c.c2 = 3, c.kernel = 3, c.hidden = 4, c.classes = 3, c.dropout = 0.3;
  LeNet<double> net(c, rng);
  Tensor<double> x = uniform<double>({4, 1, 8, 8}, rng, -1.0, 1.0);
  Tensor<std::int32_t> y({4}, {0, 2, 1, 2});
  auto params = parameters<double>(net);
  CHECK(params.size() == 11);
  auto r = gradcheck(params, [&](Tape<double>& t) {
    net.drop.rng = Rng(3);
    return cross_entropy(t, net(t, t.input(x)), y);
  }, {.samples_per_tensor = 24, .floor = 1e-4});  // floor: bn2.bias's gradient is ~0 (1e-17), rounding decides
  MARROW_CHECK_GRAD(r, 1e-6);
}

TEST_CASE("lenet: shapes, config round trip and errors") {
  Rng rng(0);
  LeNetConfig c;
  LeNet<float> net(c, rng);
  Tape<float> t;
  auto o = net.forward(t, t.input(randn<float>({3, 1, 28, 28}, rng)));
  CHECK(o.features.shape() == Shape{3, 128});
  CHECK(o.logits.shape() == Shape{3, 10});
  LeNetConfig d = config_from_json<LeNetConfig>(Json::parse(config_to_json(c).dump()), "x");
  CHECK(d.c1 == c.c1);
  CHECK(d.hidden == c.hidden);
  CHECK(d.dropout == c.dropout);
  CHECK_THROWS_WITH(net(t, t.input(zeros<float>({2, 1, 32, 32}))),
                    doctest::Contains("LeNet: input (2, 1, 32, 32) is not (N, 1, 28, 28)"));
  CHECK_THROWS_WITH(config_from_json<LeNetConfig>(Json::parse(R"({"in_ch":1,"image":28,"c1":16,"c2":32,"kernel":5,)"
                                                              R"("hidden":128,"classes":10})"),
                                                  "x"),
                    doctest::Contains("no field 'dropout'"));  // every field has been in every checkpoint
  LeNetConfig bad;
  bad.kernel = 4;
  CHECK_THROWS_WITH(LeNet<float>(bad, rng), doctest::Contains("kernel 4 must be odd"));
}

// ---- metrics -----------------------------------------------------------------------------
TEST_CASE("gan metrics: feature statistics and Frechet distance by hand") {
  FeatureStats s = feature_stats(Tensor<double>({2, 2}, {1, 2, 3, 6}));
  CHECK(s.mean(0) == doctest::Approx(2));
  CHECK(s.mean(1) == doctest::Approx(4));
  CHECK(s.cov(0, 0) == doctest::Approx(2));  // unbiased: ((−1)² + 1²) / 1
  CHECK(s.cov(1, 1) == doctest::Approx(8));
  CHECK(s.cov(0, 1) == doctest::Approx(4));
  // Diagonal covariances commute: tr √(S1 S2) = Σ √(a_i b_i).
  FeatureStats a, b;
  a.mean = Eigen::Vector2d(0, 0), b.mean = Eigen::Vector2d(1, 2);
  a.cov = Eigen::Vector2d(1, 4).asDiagonal(), b.cov = Eigen::Vector2d(4, 9).asDiagonal();
  CHECK(frechet_distance(a, b) == doctest::Approx(5 + 18 - 2 * (2 + 6)));
  CHECK(frechet_distance(a, a) == doctest::Approx(0).epsilon(1e-9));
  // Non-commuting: S2 of rank 1 along e0 leaves one eigenvalue, tr(S1 S2) = S1[0][0].
  Eigen::Matrix2d s1, s2;
  s1 << 2, 1, 1, 2;
  s2 << 1, 0, 0, 0;
  CHECK(trace_sqrt_product(s1, s2) == doctest::Approx(std::sqrt(2.0)));
  CHECK((sqrt_psd(s1) * sqrt_psd(s1) - s1).norm() < 1e-12);
  // Samples of one distribution against themselves: 0; shifted by 1 in every dim: D.
  Rng rng(2);
  Tensor<double> f = randn<double>({400, 3}, rng);
  Tensor<double> g = f.clone();
  g.arr() += 1.0;
  CHECK(frechet_distance(feature_stats(f), feature_stats(f)) == doctest::Approx(0).epsilon(1e-9));
  CHECK(frechet_distance(feature_stats(f), feature_stats(g)) == doctest::Approx(3.0));
  FeatureStats c3 = feature_stats(f);
  CHECK_THROWS_WITH(frechet_distance(a, c3), doctest::Contains("frechet_distance: feature sizes 2 and 3 differ"));
  CHECK_THROWS_WITH(feature_stats(Tensor<double>({1, 2}, {1, 2})),
                    doctest::Contains("feature_stats: features (1, 2) must be (N, D) with N >= 2"));
}

TEST_CASE("gan metrics: score and class histogram by hand") {
  // Confident and balanced over 10 classes: exp(log 10) = 10.
  Tensor<float> onehot = zeros<float>({20, 10});
  for (int i = 0; i < 20; ++i) onehot[i * 10 + i % 10] = 1.0f;
  CHECK(classifier_score(onehot) == doctest::Approx(10.0));
  // Every row the same: p(y|x) = p(y), score 1.
  CHECK(classifier_score(full<float>({5, 10}, 0.1f)) == doctest::Approx(1.0));
  // rows [1, 0] and [.5, .5]: p(y) = [.75, .25]; KL = log(4/3) and ½log(2/3) + ½log 2.
  Tensor<double> p({2, 2}, {1.0, 0.0, 0.5, 0.5});
  const double kl = 0.5 * (std::log(4.0 / 3.0) + 0.5 * std::log(2.0 / 3.0) + 0.5 * std::log(2.0));
  CHECK(classifier_score(p) == doctest::Approx(std::exp(kl)));
  auto h = class_histogram(Tensor<double>({4, 3}, {0.1, 0.8, 0.1, 0.6, 0.3, 0.1, 0.2, 0.7, 0.1, 0.1, 0.1, 0.8}));
  CHECK(h[0] == doctest::Approx(0.25));
  CHECK(h[1] == doctest::Approx(0.5));
  CHECK(h[2] == doctest::Approx(0.25));
  CHECK(rare_classes({0.3, 0.04, 0.66}) == std::vector<int>{1});
  CHECK(rare_classes({0.3, 0.04, 0.66}, 0.35) == std::vector<int>{0, 1});
  CHECK_THROWS_WITH(classifier_score(Tensor<float>({3}, {1, 0, 0})), doctest::Contains("classifier_score: probs (3,)"));
}

TEST_CASE("gan metrics: classify runs the classifier in eval mode, in batches") {
  Rng rng(4);
  LeNetConfig c;
  c.c1 = 2, c.c2 = 2, c.hidden = 6;
  LeNet<float> net(c, rng);
  Tensor<float> x = uniform<float>({7, 1, 28, 28}, rng, -1.0, 1.0);
  Classified a = classify(net, x, 3), b = classify(net, x, 7);
  CHECK(a.features.shape() == Shape{7, 6});
  CHECK(a.probs.shape() == Shape{7, 10});
  CHECK((a.probs.arr() - b.probs.arr()).abs().maxCoeff() < 1e-5f);  // batching does not matter in eval mode
  CHECK(a.probs.mat().rowwise().sum().minCoeff() == doctest::Approx(1.0));
  CHECK(net.bn1.training);
  SampleReport r = report(net, x, feature_stats(a.features));
  CHECK(r.fid == doctest::Approx(0).epsilon(1e-6));
  CHECK(r.histogram.size() == 10);
}

TEST_CASE("dcgan: float D loss and gradients of G and D on our GEMM agree with Eigen's") {
  Rng rng(8);
  DcganConfig c;  // the MNIST shape: 28x28, widths 64
  Dcgan<float> m(c, rng);
  const Tensor<float> z = randn<float>({4, index_t(c.z_dim)}, rng), real = uniform<float>({4, 1, 28, 28}, rng, -1.0f, 1.0f);
  testing::check_gemm_engines(parameters<float>(m), [&](Tape<float>& t) {
    return discriminator_loss(t, m.d(t, t.input(real)), m.d(t, m.g(t, t.input(z))), GanLoss::NonSaturating, 1.0f);
  }, 1e-4);
}
