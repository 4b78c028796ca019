#include "testing.hpp"

#include <marrow/init.hpp>
#include <marrow/nn/attention.hpp>
#include <marrow/nn/layers.hpp>

using namespace marrow;
using doctest::Approx;
using marrow::testing::project;
using marrow::testing::rand_away_from_zero;

namespace {
struct Stats {
  double mean, std, max_abs;
};
Stats stats(const Tensor<double>& t) {
  double s = 0, ss = 0, m = 0;
  for (double v : t) s += v, m = std::max(m, std::abs(v));
  const double mean = s / double(t.numel());
  for (double v : t) ss += (v - mean) * (v - mean);
  return {mean, std::sqrt(ss / double(t.numel())), m};
}

// Gradcheck a layer over every parameter it reports and over its input.
template <class L> void check_layer(L& layer, const Shape& xs, double tol = 1e-6) {
  Rng rng(11);
  Param<double> x(rand_away_from_zero(xs, rng));
  auto ps = parameters<double>(layer);
  ps.push_back({"x", &x});
  auto r = gradcheck(ps, [&](Tape<double>& t) { return project(t, layer(t, Var<double>(x))); });
  MARROW_CHECK_GRAD(r, tol);
}

std::vector<std::string> names(const ParamList<double>& ps) {
  std::vector<std::string> out;
  for (auto& p : ps) out.push_back(p.name);
  return out;
}
}  // namespace

// ---- init ------------------------------------------------------------------------------

TEST_CASE("init: fans and gains follow torch.nn.init") {
  CHECK(compute_fans({5, 3}).fan_in == 3);
  CHECK(compute_fans({5, 3}).fan_out == 5);
  CHECK(compute_fans({4, 3, 5, 5}).fan_in == 75);
  CHECK(compute_fans({4, 3, 5, 5}).fan_out == 100);
  CHECK(calculate_gain(Nonlinearity::Linear) == 1.0);
  CHECK(calculate_gain(Nonlinearity::Sigmoid) == 1.0);
  CHECK(calculate_gain(Nonlinearity::Tanh) == Approx(5.0 / 3.0));
  CHECK(calculate_gain(Nonlinearity::ReLU) == Approx(std::sqrt(2.0)));
  CHECK(calculate_gain(Nonlinearity::LeakyReLU) == Approx(std::sqrt(2.0 / 1.0001)));
  CHECK(calculate_gain(Nonlinearity::LeakyReLU, std::sqrt(5.0)) == Approx(std::sqrt(1.0 / 3.0)).scale(0));
  CHECK(calculate_gain(Nonlinearity::SELU) == 0.75);
  CHECK_THROWS_WITH_AS(compute_fans({7}), doctest::Contains("init: fan in/out needs a weight of rank >= 2, got shape (7,)"),
                       Error);
}

TEST_CASE("init: distributions have the right statistics") {
  Rng rng(1);
  Tensor<double> w = Tensor<double>::uninitialized({200, 300});  // fan_in 300, fan_out 200
  auto s = stats(uniform_(w, rng, -1.0, 3.0));
  CHECK(s.mean == Approx(1.0).epsilon(0.02).scale(0));
  CHECK(s.std == Approx(4.0 / std::sqrt(12.0)).epsilon(0.02).scale(0));
  s = stats(normal_(w, rng, 2.0, 0.5));
  CHECK(s.mean == Approx(2.0).epsilon(0.01).scale(0));
  CHECK(s.std == Approx(0.5).epsilon(0.02).scale(0));
  s = stats(xavier_uniform_(w, rng, 2.0));
  CHECK(std::abs(s.mean) < 0.01);
  CHECK(s.std == Approx(2.0 * std::sqrt(2.0 / 500.0)).epsilon(0.02).scale(0));
  CHECK(s.max_abs <= std::sqrt(3.0) * 2.0 * std::sqrt(2.0 / 500.0));
  s = stats(xavier_normal_(w, rng));
  CHECK(s.std == Approx(std::sqrt(2.0 / 500.0)).epsilon(0.02).scale(0));
  s = stats(kaiming_normal_(w, rng, 0.0, FanMode::FanIn, Nonlinearity::ReLU));
  CHECK(s.std == Approx(std::sqrt(2.0 / 300.0)).epsilon(0.02).scale(0));
  s = stats(kaiming_normal_(w, rng, 0.0, FanMode::FanOut, Nonlinearity::ReLU));
  CHECK(s.std == Approx(std::sqrt(2.0 / 200.0)).epsilon(0.02).scale(0));
  // PyTorch's Linear default: kaiming_uniform(a = √5) is uniform(±1/√fan_in).
  s = stats(kaiming_uniform_(w, rng, std::sqrt(5.0)));
  CHECK(s.max_abs <= 1.0 / std::sqrt(300.0));
  CHECK(s.max_abs > 0.99 / std::sqrt(300.0));
  CHECK(s.std == Approx(1.0 / std::sqrt(900.0)).epsilon(0.02).scale(0));
  s = stats(kaiming_uniform_(w, rng, 0.0, FanMode::FanIn, Nonlinearity::Tanh));
  CHECK(s.std == Approx(5.0 / 3.0 / std::sqrt(300.0)).epsilon(0.02).scale(0));
  s = stats(trunc_normal_(w, rng, 0.0, 1.0, -0.5, 1.0));
  CHECK(s.max_abs <= 1.0);
  double lo = 1e9;
  for (double v : w) lo = std::min(lo, v);
  CHECK(lo >= -0.5);
  CHECK(constant_(w, 3.0)[17] == 3.0);
  CHECK(zeros_(w)[5] == 0.0);
  CHECK(ones_(w)[5] == 1.0);
  // Same seed, same weights.
  Rng a(7), b(7);
  Tensor<float> wa({3, 4}), wb({3, 4});
  xavier_uniform_(wa, a);
  xavier_uniform_(wb, b);
  for (index_t i = 0; i < 12; ++i) CHECK(wa[i] == wb[i]);
}

TEST_CASE("init: orthogonal gives orthonormal rows or columns, scaled by gain") {
  Rng rng(3);
  auto check = [&](Shape shape, double gain) {
    CAPTURE(shape.str());
    Tensor<double> w = Tensor<double>::uninitialized(shape);
    orthogonal_(w, rng, gain);
    const index_t rows = shape[0], cols = w.numel() / rows;
    auto m = w.mat(rows, cols);
    // Tall (or square): WᵀW = gain²·I; wide: WWᵀ = gain²·I.
    Eigen::MatrixXd g = rows >= cols ? Eigen::MatrixXd(m.transpose() * m) : Eigen::MatrixXd(m * m.transpose());
    const index_t k = std::min(rows, cols);
    CHECK((g - gain * gain * Eigen::MatrixXd::Identity(k, k)).cwiseAbs().maxCoeff() < 1e-12);
  };
  check({6, 6}, 1.0);
  check({8, 3}, 2.0);
  check({3, 8}, 1.0);
  check({4, 2, 3, 3}, 1.0);  // conv weight as (4, 18)
  Tensor<double> v({5});
  CHECK_THROWS_WITH_AS(orthogonal_(v, rng), doctest::Contains("orthogonal_: needs a tensor of rank >= 2"), Error);
}

// ---- layers -----------------------------------------------------------------------------

TEST_CASE("layers: Linear gradients, names, counts, default init bounds") {
  Rng rng(2);
  Linear<double> fc(4, 3, rng);
  check_layer(fc, {2, 5, 4});
  CHECK(names(parameters<double>(fc, "fc")) == std::vector<std::string>{"fc.weight", "fc.bias"});
  CHECK(count_parameters<double>(fc) == 4 * 3 + 3);
  for (double v : fc.weight.value()) CHECK(std::abs(v) <= 0.5);  // 1/√fan_in = 1/2
  for (double v : fc.bias.value()) CHECK(std::abs(v) <= 0.5);
  Linear<double> nb(4, 3, rng, false);
  check_layer(nb, {3, 4});
  CHECK(names(parameters<double>(nb)) == std::vector<std::string>{"weight"});
  // Forward value: with weight 1 and bias 0.5, each output is Σx + 0.5.
  fc.weight.value().fill(1.0);
  fc.bias.value().fill(0.5);
  Tape<double> t;
  auto y = fc(t, t.input(Tensor<double>({1, 4}, {1, 2, 3, 4})));
  CHECK(y.value()[2] == 10.5);
  CHECK_THROWS_WITH_AS(fc(t, t.input(zeros<double>({2, 3}))), doctest::Contains("linear: input (2, 3) does not end in 4"),
                       Error);
  CHECK_THROWS_WITH_AS(Linear<double>(0, 3, rng), doctest::Contains("Linear: sizes must be positive"), Error);
}

TEST_CASE("layers: Embedding looks up rows and accumulates repeated ids") {
  Rng rng(4);
  Embedding<double> emb(5, 3, rng);
  Tensor<std::int32_t> ids({2, 3}, {0, 4, 4, 1, 0, 2});
  auto r = gradcheck(parameters<double>(emb), [&](Tape<double>& t) { return project(t, emb(t, ids)); });
  MARROW_CHECK_GRAD(r, 1e-6);
  Tape<double> t;
  auto y = emb(t, ids);
  CHECK(y.shape() == Shape{2, 3, 3});
  CHECK(y.value().at({0, 1, 2}) == emb.weight.value().at({4, 2}));
  CHECK(std::abs(stats(emb.weight.value()).mean) < 1.5);  // N(0, 1) draws
  CHECK_THROWS_WITH_AS(emb(t, Tensor<std::int32_t>({1}, {5})), doctest::Contains("embedding: id 5"), Error);
}

TEST_CASE("layers: Conv2d in every stride/padding/dilation/bias mode") {
  struct Mode {
    Conv2dOptions o;
    int k;
  };
  const std::vector<Mode> modes = {
      {{}, 3}, {{.stride = 2, .padding = 1}, 3}, {{.padding = 2, .dilation = 2}, 3}, {{.bias = false}, 1}};
  for (auto& m : modes) {
    CAPTURE(m.o.stride);
    CAPTURE(m.o.padding);
    CAPTURE(m.o.dilation);
    Rng rng(5);
    Conv2d<double> conv(2, 3, m.k, rng, m.o);
    check_layer(conv, {2, 2, 6, 5});
    CHECK(count_parameters<double>(conv) == 3 * 2 * m.k * m.k + (m.o.bias ? 3 : 0));
  }
  Rng rng(5);
  Conv2d<double> conv(2, 4, 3, rng, {.padding = 1});
  const double bound = 1.0 / std::sqrt(18.0);
  for (double v : conv.weight.value()) CHECK(std::abs(v) <= bound);
  for (double v : conv.bias.value()) CHECK(std::abs(v) <= bound);
  Tape<double> t;
  CHECK(conv(t, t.input(zeros<double>({1, 2, 7, 7}))).shape() == Shape{1, 4, 7, 7});
  CHECK_THROWS_WITH_AS(conv(t, t.input(zeros<double>({1, 3, 7, 7}))), doctest::Contains("conv2d"), Error);
}

TEST_CASE("layers: ConvTranspose2d in every stride/padding/output_padding/dilation/bias mode") {
  const std::vector<ConvTranspose2dOptions> modes = {
      {}, {.stride = 2, .padding = 1, .output_padding = 1}, {.stride = 2, .dilation = 2}, {.bias = false}};
  for (auto& o : modes) {
    CAPTURE(o.stride);
    CAPTURE(o.output_padding);
    CAPTURE(o.dilation);
    Rng rng(6);
    ConvTranspose2d<double> up(3, 2, 3, rng, o);
    check_layer(up, {2, 3, 3, 4});
  }
  Rng rng(6);
  ConvTranspose2d<double> up(3, 2, 2, rng, {.stride = 2});
  CHECK(up.weight.shape() == Shape{3, 2, 2, 2});
  const double bound = 1.0 / std::sqrt(2.0 * 4.0);  // PyTorch: fan_in from dim 1 (out·k·k)
  for (double v : up.weight.value()) CHECK(std::abs(v) <= bound);
  Tape<double> t;
  CHECK(up(t, t.input(zeros<double>({1, 3, 4, 5}))).shape() == Shape{1, 2, 8, 10});
}

TEST_CASE("layers: BatchNorm train/eval on (N, C) and (N, C, H, W), buffers and mode switch") {
  for (Shape xs : {Shape{4, 3}, Shape{2, 3, 3, 2}}) {
    CAPTURE(xs.str());
    BatchNorm<double> bn(3);
    Rng rng(8);
    uniform_(bn.weight.value(), rng, 0.5, 1.5);
    normal_(bn.bias.value(), rng);
    check_layer(bn, xs, 1e-5);  // the batch statistics make differences a little noisier
    set_training<double>(bn, false);
    CHECK(!bn.training);
    uniform_(bn.running_var, rng, 0.5, 2.0);
    check_layer(bn, xs);
  }
  BatchNorm<double> bn(2);
  CHECK(names(parameters<double>(bn, "bn")) == std::vector<std::string>{"bn.weight", "bn.bias"});
  auto bufs = buffers<double>(bn);
  REQUIRE(bufs.size() == 2);
  CHECK(bufs[0].first == "running_mean");
  // Train: batch statistics normalize x to ±1 and move the running mean 10% toward 2.
  Tape<double> t;
  auto x = t.input(Tensor<double>({2, 2}, {1.0, 5.0, 3.0, 5.0}));
  auto y = bn(t, x);
  CHECK(y.value()[0] == Approx(-1.0).epsilon(1e-4));
  CHECK(y.value()[1] == Approx(0.0));
  CHECK(bn.running_mean[0] == Approx(0.2).scale(0));
  CHECK(bn.running_var[0] == Approx(0.9 + 0.1 * 2.0));  // unbiased batch variance 2
  // Eval: running statistics, so the same input gives a different output.
  set_training<double>(bn, false);
  auto ye = bn(t, x);
  CHECK(ye.value()[0] == Approx((1.0 - 0.2) / std::sqrt(1.1 + 1e-5)).scale(0));
  BatchNorm<double> plain(2, 1e-5, 0.1, false);
  CHECK(count_parameters<double>(plain) == 0);
  CHECK_THROWS_WITH_AS(bn(t, t.input(zeros<double>({2, 3}))), doctest::Contains("batch_norm"), Error);
}

TEST_CASE("layers: LayerNorm with and without bias") {
  LayerNorm<double> ln(4);
  Rng rng(9);
  normal_(ln.weight.value(), rng);
  normal_(ln.bias.value(), rng);
  check_layer(ln, {2, 3, 4});
  LayerNorm<double> nb(4, 1e-5, false);
  check_layer(nb, {3, 4});
  CHECK(names(parameters<double>(nb)) == std::vector<std::string>{"weight"});
  Tape<double> t;
  auto y = nb(t, t.input(Tensor<double>({1, 4}, {1, 2, 3, 4})));
  CHECK(y.value()[0] == Approx(-1.5 / std::sqrt(1.25 + 1e-5)));
}

TEST_CASE("layers: Dropout drops in training only, with its own generator") {
  Rng rng(10);
  Dropout<double> drop(0.5, rng);
  Tape<double> t;
  auto x = t.input(ones<double>({1000}));
  auto y = drop(t, x);
  int zeros_seen = 0;
  for (double v : y.value()) {
    CHECK((v == 0.0 || v == 2.0));
    zeros_seen += v == 0.0;
  }
  CHECK(zeros_seen > 400);
  CHECK(zeros_seen < 600);
  set_training<double>(drop, false);
  auto ye = drop(t, x);
  for (double v : ye.value()) CHECK(v == 1.0);
  CHECK(count_parameters<double>(drop) == 0);
  CHECK_THROWS_WITH_AS(Dropout<double>(1.0, rng), doctest::Contains("Dropout: p = 1 must be in [0, 1)"), Error);
}

TEST_CASE("layers: pools, upsampling and activations") {
  MaxPool2d<double> mp{2};
  check_layer(mp, {1, 2, 4, 4});
  MaxPool2d<double> mp3{3, 2, 1};
  check_layer(mp3, {1, 1, 5, 5});
  AvgPool2d<double> ap{2};
  check_layer(ap, {2, 1, 4, 6});
  Upsample<double> nearest{2};
  check_layer(nearest, {1, 2, 2, 3});
  Upsample<double> bil{2, UpsampleMode::Bilinear};
  check_layer(bil, {1, 1, 3, 3});
  Upsample<double> bil_ac{2, UpsampleMode::Bilinear, true};
  check_layer(bil_ac, {1, 1, 3, 3});
  ReLU<double> r;
  LeakyReLU<double> lr{0.2};
  GELU<double> g;
  GELU<double> ge{GeluForm::Erf};
  Tanh<double> th;
  Sigmoid<double> sg;
  check_layer(r, {3, 4});
  check_layer(lr, {3, 4});
  check_layer(g, {3, 4});
  check_layer(ge, {3, 4});
  check_layer(th, {3, 4});
  check_layer(sg, {3, 4});
  Tape<double> t;
  auto x = t.input(Tensor<double>({1, 1, 2, 2}, {1, -2, 3, -4}));
  CHECK(mp(t, x).item() == 3.0);
  CHECK(ap(t, x).item() == -0.5);
  CHECK(nearest(t, x).shape() == Shape{1, 1, 4, 4});
  CHECK(lr(t, x).value()[1] == Approx(-0.4).scale(0));
  CHECK(r(t, x).value()[3] == 0.0);
  CHECK(sg(t, t.input(zeros<double>({1}))).item() == 0.5);
  CHECK_THROWS_WITH_AS(mp(t, t.input(zeros<double>({2, 2}))), doctest::Contains("max_pool2d"), Error);
}

TEST_CASE("attention: CausalSelfAttention gradients, names, causality, dropout path") {
  Rng rng(13);
  CausalSelfAttention<double> attn(4, 2, rng);
  check_layer(attn, {2, 3, 4});
  CHECK(names(parameters<double>(attn, "h.0.attn")) ==
        std::vector<std::string>{"h.0.attn.c_attn.weight", "h.0.attn.c_attn.bias", "h.0.attn.c_proj.weight",
                                 "h.0.attn.c_proj.bias"});
  CHECK(count_parameters<double>(attn) == 4 * 12 + 12 + 4 * 4 + 4);
  CausalSelfAttention<double> nb(4, 2, rng, 0.0, false);
  check_layer(nb, {1, 4, 4});
  CHECK(count_parameters<double>(nb) == 4 * 12 + 4 * 4);

  // Causal: changing the last position leaves earlier outputs untouched.
  Tape<double> t;
  Tensor<double> x = randn<double>({1, 4, 4}, rng);
  auto y1 = attn(t, t.input(x)).value().clone();
  Tensor<double> x2 = x.clone();
  for (index_t c = 0; c < 4; ++c) x2.at({0, 3, c}) += 1.0;
  auto y2 = attn(t, t.input(x2)).value().clone();
  for (index_t i = 0; i < 12; ++i) CHECK(y1[i] == Approx(y2[i]).epsilon(1e-12));
  CHECK(std::abs(y1[12] - y2[12]) > 1e-6);

  // The dropout path (the op's hashed mask) computes the same attention (p tiny: nothing dropped).
  CausalSelfAttention<double> d(4, 2, rng, 1e-12);
  set_training<double>(d, false);
  auto fused = d(t, t.input(x)).value().clone();
  set_training<double>(d, true);
  auto unfused = d(t, t.input(x)).value().clone();
  for (index_t i = 0; i < fused.numel(); ++i) CHECK(unfused[i] == Approx(fused[i]).epsilon(1e-10));

  // With real dropout, gradients still check when every evaluation draws the same masks
  // (the same attention seed). h = 1e-5: the key bias's gradient is exactly 0 (softmax
  // ignores a shift shared by a row), and at 1e-6 one ulp of the loss reads as 1e-10.
  CausalSelfAttention<double> dr(4, 2, rng, 0.3);
  Param<double> xp(randn<double>({1, 3, 4}, rng));
  auto ps = parameters<double>(dr);
  ps.push_back({"x", &xp});
  auto r = gradcheck(ps, [&](Tape<double>& tt) {
    dr.attn_dropout.rng = Rng(1);
    dr.resid_dropout.rng = Rng(2);
    return project(tt, dr(tt, Var<double>(xp)));
  }, {.h = 1e-5});
  MARROW_CHECK_GRAD(r, 1e-6);
  CHECK_THROWS_WITH_AS(CausalSelfAttention<double>(6, 4, rng), doctest::Contains("CausalSelfAttention: n_embd 6"), Error);
  CHECK_THROWS_WITH_AS(attn(t, t.input(zeros<double>({1, 3, 5}))),
                       doctest::Contains("CausalSelfAttention: input must be (B, T, 4), got (1, 3, 5)"), Error);
}

TEST_CASE("layers: float instantiation trains through a small conv + attention stack") {
  Rng rng(14);
  Conv2d<float> conv(1, 4, 3, rng, {.padding = 1});
  BatchNorm<float> bn(4);
  MaxPool2d<float> pool{2};
  LayerNorm<float> ln(4);
  CausalSelfAttention<float> attn(4, 2, rng, 0.1f);
  Tape<float> t;
  auto x = t.input(randn<float>({2, 1, 4, 4}, rng));
  auto h = pool(t, relu(t, bn(t, conv(t, x))));  // (2, 4, 2, 2)
  auto seq = permute(t, reshape(t, h, {2, 4, 4}), {0, 2, 1});  // (2, T = 4, C = 4)
  auto loss = sum(t, attn(t, ln(t, seq)));
  t.backward(loss);
  CHECK(conv.weight.has_grad());
  CHECK(attn.c_attn.weight.grad().arr().abs().sum() > 0.0f);
  CHECK(ln.weight.grad().arr().abs().sum() > 0.0f);
}
