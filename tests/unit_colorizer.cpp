#include "testing.hpp"

#include <cmath>

#include <models/colorizer/data.hpp>
#include <models/colorizer/metrics.hpp>
#include <models/colorizer/network.hpp>
#include <models/colorizer/predict.hpp>
#include <models/colorizer/train.hpp>

using namespace marrow;
using namespace marrow::colorizer;

namespace {
// A tiny network: every layer present, a few channels each.
ColorizerConfig tiny_config(int bins = 0, int classes = 3) {
  ColorizerConfig c;
  c.image_size = 16;
  c.low1 = 2, c.low2 = 3, c.low3 = 3, c.low4 = 4, c.mid1 = 3, c.mid2 = 3, c.glob1 = 3, c.glob2 = 3;
  c.glob_fc1 = 4, c.glob_fc2 = 3, c.fuse = 3, c.dec1 = 3, c.dec2 = 3, c.dec3 = 2;
  c.num_classes = classes, c.class_hidden = 3, c.bins = bins;
  return c;
}

// Q bins spread over the ab plane, searched by brute force (no grid cells): a
// classification head small enough for gradient checks.
ColorBins few_bins(int Q) {
  ColorBins bins;
  bins.cell.fill(-1);
  for (int q = 0; q < Q; ++q) {
    bins.a.push_back(float(40 * std::cos(q)));
    bins.b.push_back(float(40 * std::sin(q)));
  }
  return bins;
}
// 5 sampled entries per tensor (every tensor is covered); entries below 1e-4 are at central differences' roundoff level.
const GradcheckOptions kModelCheck{.h = 1e-5, .samples_per_tensor = 5, .floor = 1e-4};
}  // namespace

// ---- bins ------------------------------------------------------------------------------

TEST_CASE("color bins: the in-gamut grid of 10x10 ab cells") {
  const ColorBins& bins = ColorBins::standard();
  CHECK(bins.size() == 261);
  const int zero = bins.nearest(0.0, 0.0);
  CHECK(bins.a[std::size_t(zero)] == 0.0f);
  CHECK(bins.b[std::size_t(zero)] == 0.0f);
  CHECK(bins.nearest(4.9, -4.9) == zero);
  CHECK(bins.a[std::size_t(bins.nearest(14.0, 0.0))] == 10.0f);
  // Every 8-bit color's nearest bin is its own cell, and the corners of the RGB cube are in gamut.
  for (auto rgb : {std::array<double, 3>{1, 0, 0}, {0, 1, 0}, {0, 0, 1}, {1, 1, 0}, {0, 1, 1}, {1, 0, 1}}) {
    const auto lab = data::rgb_to_lab(rgb[0], rgb[1], rgb[2]);
    const int q = bins.nearest(lab[1], lab[2]);
    CHECK(std::abs(bins.a[std::size_t(q)] - lab[1]) <= 5.0 + 1e-9);
    CHECK(std::abs(bins.b[std::size_t(q)] - lab[2]) <= 5.0 + 1e-9);
  }
  CHECK(bins.cell[0] == -1);  // (-110, -110) is no color
}

TEST_CASE("color bins: soft encoding of the 5 nearest bins, sigma 5") {
  const ColorBins& bins = ColorBins::standard();
  std::int32_t idx[5];
  float w[5];
  // At a bin centre: itself (d = 0) and its 4 neighbours (d = 10): weights 1 : e^-2.
  bins.soft_encode(0.0, 0.0, 5, 5.0, idx, w);
  CHECK(idx[0] == bins.nearest(0, 0));
  CHECK(w[0] == doctest::Approx(1.0 / (1.0 + 4.0 * std::exp(-2.0))).scale(0));
  for (int k = 1; k < 5; ++k) {
    CHECK(w[k] == doctest::Approx(std::exp(-2.0) / (1.0 + 4.0 * std::exp(-2.0))).scale(0));  // 0.088
    CHECK(bins.dist2(idx[k], 0, 0) == doctest::Approx(100.0));
  }
  // The windowed search agrees with a brute-force one everywhere, near the gamut edge included.
  Rng rng(5);
  for (int trial = 0; trial < 3000; ++trial) {
    const double a = rng.uniform(-120, 120), b = rng.uniform(-120, 120);
    bins.soft_encode(a, b, 5, 5.0, idx, w);
    std::vector<double> d;
    for (int q = 0; q < bins.size(); ++q) d.push_back(bins.dist2(q, a, b));
    std::sort(d.begin(), d.end());
    double sum = 0;
    for (int k = 0; k < 5; ++k) {
      REQUIRE(bins.dist2(idx[k], a, b) == doctest::Approx(d[std::size_t(k)]).scale(0));  // the nearest is often < 1
      sum += w[k];
    }
    CHECK(sum == doctest::Approx(1.0));
  }
  CHECK_THROWS_WITH_AS(bins.soft_encode(0, 0, 0, 5.0, idx, w), doctest::Contains("soft_encode: k = 0"), Error);
}

TEST_CASE("color bins: prior and class-rebalancing weights") {
  const ColorBins& bins = ColorBins::standard();
  const int Q = bins.size();
  BinHistogram h(bins);
  const float a[4] = {0, 0, 0, 40}, b[4] = {0, 0, 0, 40};
  h.add(bins, a, b, 4);
  Tensor<double> p = h.prior<double>();
  CHECK(p[bins.nearest(0, 0)] == doctest::Approx(0.75));
  CHECK(p[bins.nearest(40, 40)] == doctest::Approx(0.25));
  // lambda = 1 ignores the prior: every weight 1.
  Tensor<double> w1 = rebalance_weights(bins, p, 1.0, 5.0);
  for (int q = 0; q < Q; ++q) CHECK(w1[q] == doctest::Approx(1.0));
  // lambda = 0.5: rare colors weigh more; the smoothed prior's expectation of w is 1.
  Tensor<double> w = rebalance_weights(bins, p, 0.5, 5.0);
  CHECK(w[bins.nearest(0, 0)] < w[bins.nearest(40, 40)]);
  CHECK(w[bins.nearest(40, 40)] < w[bins.nearest(-60, 60)]);
  // By hand: p̃ ∝ Σ_r p_r e^{-d²/50}; the bin far from both seen colors has p̃ = 0, so w = Q/λ before scaling.
  double z = 0, e = 0;
  std::vector<double> sm(static_cast<std::size_t>(Q));
  for (int q = 0; q < Q; ++q) {
    sm[std::size_t(q)] = 0.75 * std::exp(-bins.dist2(q, 0, 0) / 50) + 0.25 * std::exp(-bins.dist2(q, 40, 40) / 50);
    z += sm[std::size_t(q)];
  }
  for (int q = 0; q < Q; ++q) e += sm[std::size_t(q)] / z / (0.5 * sm[std::size_t(q)] / z + 0.5 / Q);
  CHECK(w[bins.nearest(-60, 60)] == doctest::Approx(1.0 / (0.5 / Q) / e).epsilon(1e-6));
  double ew = 0;
  for (int q = 0; q < Q; ++q) ew += sm[std::size_t(q)] / z * w[q];
  CHECK(ew == doctest::Approx(1.0));
  CHECK_THROWS_WITH_AS(rebalance_weights(bins, Tensor<double>(Shape{3}), 0.5, 5.0),
                       doctest::Contains("rebalance_weights: prior has 3 entries for 261 bins"), Error);
}

TEST_CASE("annealed_mean: T = 1 is the mean, small T the mode") {
  ColorBins bins;  // two bins: (0, 0) and (10, 20)
  bins.a = {0.f, 10.f};
  bins.b = {0.f, 20.f};
  Tensor<double> logits({1, 2, 1, 1}, {0.0, std::log(3.0)});  // probabilities 1/4, 3/4
  Tensor<double> m = annealed_mean(logits, bins, 1.0);
  CHECK(m[0] == doctest::Approx(7.5));
  CHECK(m[1] == doctest::Approx(15.0));
  // T = 0.5: weights ∝ p², 1 : 9.
  Tensor<double> h = annealed_mean(logits, bins, 0.5);
  CHECK(h[0] == doctest::Approx(9.0));
  CHECK(h[1] == doctest::Approx(18.0));
  Tensor<double> mode = annealed_mean(logits, bins, 0.01);
  CHECK(mode[0] == doctest::Approx(10.0));
  CHECK_THROWS_WITH_AS(annealed_mean(logits, bins, 0.0), doctest::Contains("temperature 0"), Error);
}

TEST_CASE("annealed_mean: the prior correction divides the prediction by w^beta") {
  ColorBins bins;
  bins.a = {0.f, 10.f};
  bins.b = {0.f, 20.f};
  Tensor<double> logits({1, 2, 1, 1}, {0.0, std::log(3.0)});  // 1/4, 3/4
  Tensor<double> w({2}, {1.0, 9.0});                           // the rare bin was weighted 9×
  // beta 1: 1/4 : (3/4)/9 = 3 : 1  -> mean 2.5, 5
  Tensor<double> full = annealed_mean(logits, bins, 1.0, &w, 1.0);
  CHECK(full[0] == doctest::Approx(2.5));
  CHECK(full[1] == doctest::Approx(5.0));
  // beta 0.5: 1/4 : (3/4)/3 = 1 : 1 -> 5, 10; with T = 0.5 still 1 : 1
  CHECK(annealed_mean(logits, bins, 1.0, &w, 0.5)[0] == doctest::Approx(5.0));
  CHECK(annealed_mean(logits, bins, 0.5, &w, 0.5)[1] == doctest::Approx(10.0));
  // beta 0 or no weights: Zhang's decoding
  CHECK(annealed_mean(logits, bins, 1.0, &w, 0.0)[0] == doctest::Approx(7.5));
  CHECK_THROWS_WITH_AS(annealed_mean(logits, bins, 1.0, &w, 1.5), doctest::Contains("prior correction 1.5"), Error);
  Tensor<double> short_w({1}, {1.0});
  CHECK_THROWS_WITH_AS(annealed_mean(logits, bins, 1.0, &short_w, 0.5), doctest::Contains("1 rebalancing weights for 2"),
                       Error);
}

// ---- metrics --------------------------------------------------------------------------

TEST_CASE("color metrics: PSNR, colorfulness, AuC by hand") {
  std::vector<float> a(12, 0.2f), b(12, 0.2f);
  CHECK(psnr_rgb8(a.data(), b.data(), 12) == kMaxPsnr);
  for (auto& v : b) v = 52.0f / 255.0f;  // every 8-bit value one step off (51 vs 52): MSE 1
  CHECK(psnr_rgb8(a.data(), b.data(), 12) == doctest::Approx(10 * std::log10(255.0 * 255.0)));
  // A grey image has colorfulness 0; pure red: rg = 255, yb = 127.5, no spread.
  CHECK(colorfulness(a.data(), 4) == 0.0);
  std::vector<float> red = {1, 1, 0, 0, 0, 0};  // 2 pixels, planar
  CHECK(colorfulness(red.data(), 2) == doctest::Approx(0.3 * std::hypot(255.0, 127.5)));
  std::vector<float> half = {1, 0, 0, 0, 0, 0};  // one red, one black pixel: σ_rg = 127.5, σ_yb = 63.75
  CHECK(colorfulness(half.data(), 2) ==
        doctest::Approx(std::hypot(127.5, 63.75) + 0.3 * std::hypot(127.5, 63.75)));
  // Pooled PSNR: one exact image and one with MSE 4 pool to MSE 2; the per-image mean is (100 + 42.1) / 2.
  ColorizationMetrics m;
  std::vector<float> truth(6, 0.2f), two_off(6, 53.0f / 255.0f), ab(4, 0.0f);
  m.add(truth.data(), truth.data(), truth.data(), ab.data(), ab.data(), 2);
  m.add(truth.data(), two_off.data(), truth.data(), ab.data(), ab.data(), 2);
  CHECK(m.psnr() == doctest::Approx(10 * std::log10(255.0 * 255.0 / 2.0)));
  CHECK(m.psnr_mean() == doctest::Approx((kMaxPsnr + 10 * std::log10(255.0 * 255.0 / 4.0)) / 2));
  CHECK(m.gray_psnr() == kMaxPsnr);
  CHECK(m.auc() == doctest::Approx(1.0));
  AbErrorCdf c;
  c.add(0.0);
  CHECK(c.auc() == doctest::Approx(1.0));
  AbErrorCdf d;
  d.add(75.0);  // CDF steps from 0 to 1 at 75: trapezoids give (150 − 75 + 0.5) / 150
  CHECK(d.cdf(74) == 0.0);
  CHECK(d.cdf(75) == 1.0);
  CHECK(d.auc() == doctest::Approx(75.5 / 150.0));
  d.add(500.0);
  CHECK(d.cdf(150) == 0.5);
}

// ---- model pieces -------------------------------------------------------------------------

TEST_CASE("resize_area: box averages down, identity at the same size") {
  Tensor<double> x({1, 1, 4, 4}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16});
  Tensor<double> y = resize_area(x, 2);
  CHECK(y[0] == doctest::Approx((1 + 2 + 5 + 6) / 4.0));
  CHECK(y[3] == doctest::Approx((11 + 12 + 15 + 16) / 4.0));
  Tensor<double> same = resize_area(x, 4);
  for (int i = 0; i < 16; ++i) CHECK(same[i] == doctest::Approx(x[i]));
  Tensor<double> z = resize_area(x, 3);  // fractional footprints still average to the mean
  CHECK(z.arr().mean() == doctest::Approx(x.arr().mean()));
}

TEST_CASE("colorizer: the peer preset has PyTorch's parameter count") {
  Rng rng(0);
  Colorizer<float> m32(peer_config(32), rng), m64(peer_config(64), rng);
  CHECK(count_parameters<float>(m32) == 798754);  // colorizer_peer.py: Colorizer(32)
  CHECK(count_parameters<float>(m64) == 995362);
  CHECK(!m32.cls1.has_value());
  CHECK_THROWS_WITH_AS(Colorizer<float>([] { auto c = peer_config(); c.image_size = 40; return c; }(), rng),
                       doctest::Contains("image_size 40 must be a positive multiple of 16"), Error);
}

TEST_CASE("colorizer: output shapes, any size divisible by 4, input errors") {
  Rng rng(1);
  const int Q = ColorBins::standard().size();
  Colorizer<double> reg(tiny_config(0), rng), cls(tiny_config(Q), rng);
  Tape<double> t;
  auto o = reg(t, t.input(uniform<double>({2, 1, 16, 16}, rng)));
  CHECK(o.color.shape() == Shape{2, 2, 16, 16});
  CHECK(o.class_logits.shape() == Shape{2, 3});
  CHECK(o.color.value().arr().abs().maxCoeff() <= 1.0);  // tanh: ab / 110 in [-1, 1]
  auto c = cls(t, t.input(uniform<double>({2, 1, 16, 16}, rng)));
  CHECK(c.color.shape() == Shape{2, Q, 8, 8});
  // Another size: the global branch sees a 16x16 resized copy.
  auto big = reg(t, t.input(uniform<double>({2, 1, 24, 20}, rng)));
  CHECK(big.color.shape() == Shape{2, 2, 24, 20});
  set_training<double>(cls, false);
  Tensor<double> ab = predict_ab(t, cls, uniform<double>({1, 1, 12, 12}, rng));
  CHECK(ab.shape() == Shape{1, 2, 12, 12});
  CHECK_THROWS_WITH_AS(reg(t, t.input(Tensor<double>(Shape{1, 1, 18, 16}))),
                       doctest::Contains("colorizer: input must be (N, 1, H, W) with H and W multiples of 4, got (1, 1, 18, 16)"),
                       Error);
}

TEST_CASE("colorizer: gradients of every parameter, regression + class head") {
  Rng rng(3);
  Colorizer<double> net(tiny_config(0), rng);
  auto params = parameters<double>(net);
  CHECK(params.size() == 48);  // 12 conv+BN blocks (3 each), 4 linears, fuse and out (2 each)
  Tensor<double> L = uniform<double>({3, 1, 16, 16}, rng);
  ColorBatch<double> b{L, randn<double>({3, 2, 16, 16}, rng, 0.0, 0.3), Tensor<std::int32_t>({3}, {0, 2, 1}), {}};
  for (ColorLoss kind : {ColorLoss::L2, ColorLoss::SmoothL1}) {
    LossOptions opt{.kind = kind, .alpha = 0.5, .smooth_l1_beta = 20.0};
    auto r = gradcheck(params, [&](Tape<double>& t) {
      return colorizer_loss(t, net, net(t, t.input(L)), b, opt).total;
    }, kModelCheck);
    MARROW_CHECK_GRAD(r, 1e-5);  // a deep stack of BatchNorms: 1e-7..1e-6 typical, 1e-5 leaves room
  }
}

TEST_CASE("colorizer: gradients of every parameter, classification head, resized global input") {
  Rng rng(4);
  Colorizer<double> net(tiny_config(6, 2), rng);
  auto params = parameters<double>(net);
  Tensor<double> L = uniform<double>({3, 1, 24, 24}, rng);  // not the training size: trunk runs twice
  const Tensor<double> rebalance = uniform<double>({6}, rng, 0.5, 2.0);
  ColorBatch<double> b{L, {}, Tensor<std::int32_t>({3}, {0, 1, 1}),
                       soft_encode(few_bins(6), randn<double>({3, 2, 12, 12}, rng, 0.0, 30.0), &rebalance)};
  LossOptions opt{.kind = ColorLoss::Classify, .alpha = 0.3};
  auto r = gradcheck(params, [&](Tape<double>& t) { return colorizer_loss(t, net, net(t, t.input(L)), b, opt).total; },
                     kModelCheck);
  MARROW_CHECK_GRAD(r, 1e-5);
  Tape<double> t;
  CHECK_THROWS_WITH_AS(colorizer_loss(t, net, net(t, t.input(L)), b, LossOptions{.kind = ColorLoss::L2}),
                       doctest::Contains("a regression loss needs a model built with bins = 0"), Error);
}

TEST_CASE("colorizer data: batches gather L/100 and ab/110, flips mirror, targets at half size") {
  LabSet set;
  set.lab = Tensor<float>::uninitialized({2, 3, 4, 4});
  for (index_t i = 0; i < set.lab.numel(); ++i) set.lab[i] = float(i % 48) - (i % 48 >= 16 ? 20.f : 0.f);
  set.labels = Tensor<std::int32_t>({2}, {4, 7});
  Rng rng(0);
  auto b = make_batch<double>(set, {1}, rng, {.crop_pad = 0, .hflip = false});
  CHECK(b.labels[0] == 7);
  // Small values (0.05, 0.14), computed the same way on both sides: exact.
  CHECK(b.L[5] == set.lab[48 + 5] / 100.0);
  CHECK(b.ab[16 + 3] == set.lab[48 + 32 + 3] / 110.0);
  // With flips on, every batch is either the identity or the mirror.
  int mirrors = 0;
  for (int k = 0; k < 10; ++k) {
    auto f = make_batch<double>(set, {0}, rng, {.crop_pad = 0, .hflip = true});
    const bool mirrored = f.L[0] == set.lab[3] / 100.0;
    mirrors += mirrored;
    CHECK(f.L[0] == set.lab[mirrored ? 3 : 0] / 100.0);  // 0.03 or 0
    CHECK(f.L[3] == set.lab[mirrored ? 0 : 3] / 100.0);
  }
  CHECK(mirrors > 0);  // both kinds were drawn
  CHECK(mirrors < 10);
  ColorizerConfig c = tiny_config(ColorBins::standard().size());
  Rng r2(1);
  Colorizer<double> net(c, r2);
  auto s = make_batch<double>(set, {0, 1}, rng, {.crop_pad = 1}, &net.bin_weights);
  CHECK(s.soft.idx.shape() == Shape{2, 5, 2, 2});
  CHECK(s.soft.pixel_weight.shape() == Shape{2, 2, 2});
}

TEST_CASE("colorizer: float loss and gradients on our GEMM agree with Eigen's (the peer network, 32x32)") {
  Rng rng(9);
  Colorizer<float> net(peer_config(32), rng);
  const Tensor<float> L = uniform<float>({2, 1, 32, 32}, rng);
  const ColorBatch<float> b{L, randn<float>({2, 2, 32, 32}, rng, 0.0f, 0.3f), {}, {}};
  testing::check_gemm_engines(parameters<float>(net), [&](Tape<float>& t) {
    return colorizer_loss(t, net, net(t, t.input(L)), b, LossOptions{}).total;
  }, 1e-4);
}
