#include "testing.hpp"

#include <cmath>
#include <filesystem>
#include <map>
#include <set>

#include <models/unet/load.hpp>
#include <models/unet/loss.hpp>
#include <models/unet/metrics.hpp>
#include <models/unet/model.hpp>
#include <models/unet/tiles.hpp>
#include <models/unet/weights.hpp>

using namespace marrow;
using namespace marrow::unet;
using marrow::testing::project;

namespace {
Config tiny(Padding pad, bool bn) {
  Config c;
  c.width = 2;
  c.depth = 2;
  c.padding = pad;
  c.batch_norm = bn;
  c.dropout = 0;  // gradcheck needs the same function on every evaluation
  return c;
}
// Losses here are sums over thousands of pixels: central differences carry ~1e-9 of
// rounding, so entries with gradients below the 1e-3 floor are compared absolutely.
const GradcheckOptions kGrad{.h = 1e-6, .samples_per_tensor = 12, .floor = 1e-3};
Tensor<std::int32_t> ints(const Shape& s, std::vector<std::int32_t> v) { return Tensor<std::int32_t>(s, v); }
// Computed values compared with their formulas: equal to rounding, whatever their size
// (doctest's default scale of 1 would let a value of 0.01 be off by 1e-5, 0.1 %).
doctest::Approx exactly(double v) { return doctest::Approx(v).epsilon(1e-12).scale(0); }
}  // namespace

// ---- model ------------------------------------------------------------------------------

TEST_CASE("unet: sizes follow the config") {
  Config same;
  CHECK(same.output_size(256) == 256);
  CHECK(same.output_size(250) == -1);  // not a multiple of 2^4
  CHECK(same.fit_input(250) == 256);
  Config paper;
  paper.padding = Padding::Valid;
  CHECK(paper.output_size(572) == 388);  // the paper's Fig. 1
  CHECK(paper.output_size(570) == -1);
  CHECK(paper.fit_input(565) == 572);
  CHECK(paper.input_for_output(388) == 572);
  Config v = tiny(Padding::Valid, true);
  CHECK(v.output_size(44) == 4);  // 44 -40-> 4 at depth 2
  Rng rng(1);
  UNet<double> net(v, rng);
  Tape<double> t;
  Var<double> y = net(t, t.input(randn<double>({2, 1, 44, 48}, rng)));
  CHECK(y.shape() == Shape{2, 2, 4, 8});
  UNet<double> s(tiny(Padding::Same, true), rng);
  CHECK(s(t, t.input(randn<double>({1, 1, 16, 24}, rng))).shape() == Shape{1, 2, 16, 24});
}

TEST_CASE("unet: bad inputs and configs name the problem") {
  Rng rng(1);
  UNet<double> net(tiny(Padding::Same, true), rng);
  Tape<double> t;
  CHECK_THROWS_WITH(net(t, t.input(Tensor<double>(Shape{1, 1, 30, 32}))),
                    doctest::Contains("side of 30, not a valid size for depth 2 with same padding (next valid: 32)"));
  CHECK_THROWS_WITH(net(t, t.input(Tensor<double>(Shape{1, 3, 32, 32}))), doctest::Contains("must be (N, 1, H, W)"));
  Config bad;
  bad.depth = 0;
  CHECK_THROWS_WITH(UNet<double>(bad, rng), doctest::Contains("depth in [1, 8]"));
}

TEST_CASE("unet: parameter counts match the PyTorch peer (unet_peer.py)") {
  Rng rng(0);
  Config peer;  // width 16, depth 4, BatchNorm, bias-free convs: unet_peer.py's model
  peer.dropout = 0;
  UNet<float> a(peer, rng);
  CHECK(count_parameters<float>(a) == 1942306);  // sum(p.numel()) of UNet() in unet_peer.py
  Config small = tiny(Padding::Same, true);
  UNet<float> b(small, rng);
  CHECK(count_parameters<float>(b) == 1926);  // UNet(base=2, depth=2) in unet_peer.py
  CHECK(parameters<float>(b).size() == 36);  // 10 convs + 10 norms × (weight, bias) + 2 up-convs × 2 + head × 2
}

TEST_CASE("unet: parameter gradients, same padding with BatchNorm (depth 2, width 2, 16x16)") {
  Rng rng(2);
  UNet<double> net(tiny(Padding::Same, true), rng);
  const Tensor<double> x = randn<double>({2, 1, 16, 16}, rng);
  const auto params = parameters<double>(net);
  CHECK(params.size() == 36);  // every conv, norm, up-conv and the head
  // h = 1e-5, not kGrad's 1e-6: here the central differences' rounding (which grows as 1/h)
  // sat at 0.6-1.1e-6 of the smallest checked gradients (0.013), depending on how the
  // compiler fused multiply-adds; at 1e-5 the worst entry is 8e-8, and no ReLU kink lies
  // within h of any perturbed entry (at 1e-4 one does).
  GradcheckOptions opt = kGrad;
  opt.h = 1e-5;
  auto r = gradcheck(params, [&](Tape<double>& t) { return project(t, net(t, t.input(x))); }, opt);
  CHECK(r.checked >= int(params.size()));
  MARROW_CHECK_GRAD(r, 1e-6);
}

TEST_CASE("unet: parameter gradients, valid padding with conv biases (the paper's network, tiny)") {
  Rng rng(3);
  UNet<double> net(tiny(Padding::Valid, false), rng);
  const Tensor<double> x = randn<double>({1, 1, 44, 44}, rng);
  const auto params = parameters<double>(net);
  CHECK(params.size() == 26);  // 10 3×3 convs, 2 up-convs and the head, each with a bias
  auto r = gradcheck(params, [&](Tape<double>& t) { return project(t, net(t, t.input(x))); },
                     kGrad);
  MARROW_CHECK_GRAD(r, 1e-6);
}

TEST_CASE("unet: loss gradients, weighted cross-entropy + Dice") {
  Rng rng(4);
  UNet<double> net(tiny(Padding::Same, true), rng);
  const Tensor<double> x = randn<double>({2, 1, 16, 16}, rng);
  Tensor<std::int32_t> target = Tensor<std::int32_t>::uninitialized(Shape{2, 16, 16});
  for (auto& v : target) v = std::int32_t(rng.below(2));
  const Tensor<double> w = uniform<double>({2, 16, 16}, rng, 0.5, 3.0);
  const LossOptions opt{.cross_entropy = true, .weight_map = true, .dice = true, .dice_weight = 0.7};
  {
    Tape<double> t;
    auto parts = segmentation_loss(t, net(t, t.input(x)), target, &w, opt);
    CHECK(parts.total.item() == exactly(parts.ce + 0.7 * parts.dice));
  }
  auto r = gradcheck(parameters<double>(net),
                     [&](Tape<double>& t) { return segmentation_loss(t, net(t, t.input(x)), target, &w, opt).total; },
                     {.h = 1e-6, .samples_per_tensor = 6, .floor = 1e-3});
  MARROW_CHECK_GRAD(r, 1e-6);
  Tape<double> t;
  CHECK_THROWS_WITH(segmentation_loss(t, net(t, t.input(x)), target, nullptr, opt),
                    doctest::Contains("weight_map set but no weights"));
}

// ---- overlap-tile ------------------------------------------------------------------------

TEST_CASE("unet: overlap-tile with valid convs equals one pass over the mirrored image (no seams)") {
  Rng rng(5);
  UNet<double> net(tiny(Padding::Valid, true), rng);
  for (auto& [name, buf] : buffers<double>(net))  // non-trivial running statistics
    for (auto& v : *buf) v = name.find("var") != std::string::npos ? rng.uniform(0.5, 2.0) : rng.normal();
  const index_t H = 37, W = 50;
  const Tensor<double> img = randn<double>({1, H, W}, rng);
  const TilePlan p = plan_tiles(net.cfg, {.tile = 52});
  CHECK(p.out == 12);
  CHECK(p.keep == 12);
  CHECK(p.margin == 20);
  const Tensor<double> tiled = predict_overlap_tile(net, img, {.tile = 52, .batch = 3});
  REQUIRE(tiled.shape() == Shape{2, H, W});
  // One window covering all tiles: rows −20 .. 67, columns −20 .. 79 (outputs 48 x 60).
  Tensor<double> big = Tensor<double>::uninitialized({1, 1, 88, 100});
  for (index_t i = 0; i < 88; ++i)
    for (index_t j = 0; j < 100; ++j)
      big[i * 100 + j] = img[reflect_index(i - 20, H) * W + reflect_index(j - 20, W)];
  set_training<double>(net, false);
  Tape<double> t;
  Var<double> pr = softmax(t, net(t, t.input(big)), 1);
  REQUIRE(pr.shape() == Shape{1, 2, 48, 60});
  double worst = 0;
  for (index_t k = 0; k < 2; ++k)
    for (index_t i = 0; i < H; ++i)
      for (index_t j = 0; j < W; ++j)
        worst = std::max(worst, std::abs(tiled[(k * H + i) * W + j] - pr.value()[(k * 48 + i) * 60 + j]));
  CHECK(worst < 1e-12);
}

TEST_CASE("unet: overlap-tile with same padding covers any image size") {
  Rng rng(6);
  UNet<double> net(tiny(Padding::Same, true), rng);
  CHECK(net.training);
  const Tensor<double> img = uniform<double>({1, 10, 29}, rng);
  const Tensor<double> pr = predict_overlap_tile(net, img, {.tile = 16, .margin = 4});
  REQUIRE(pr.shape() == Shape{2, 10, 29});
  for (index_t i = 0; i < 10 * 29; ++i) CHECK(pr[i] + pr[290 + i] == exactly(1.0));
  CHECK(net.training);  // mode restored
  CHECK_THROWS_WITH(predict_overlap_tile(net, img, {.tile = 18}), doctest::Contains("tile 18 is not a valid input"));
  CHECK_THROWS_WITH(predict_overlap_tile(net, img, {.tile = 16, .margin = 8}), doctest::Contains("leaves nothing"));
}

// ---- augmentation ------------------------------------------------------------------------

TEST_CASE("unet: training tiles keep labels, weights and image in register") {
  Rng rng(7);
  // Image = 0.25 + 0.5·class and weights = 1 + class: whatever the geometry does,
  // label and weight planes must agree pixel by pixel, and labels stay 0/1.
  const index_t H = 40, W = 48;
  Tensor<std::int32_t> cls = Tensor<std::int32_t>::uninitialized(Shape{H, W});
  for (index_t i = 0; i < H; ++i)
    for (index_t j = 0; j < W; ++j) cls[i * W + j] = (i / 8 + j / 8) % 2;
  Tensor<float> img = Tensor<float>::uninitialized(Shape{1, H, W}), w = Tensor<float>::uninitialized(Shape{H, W});
  for (index_t i = 0; i < H * W; ++i) img[i] = 0.25f + 0.5f * float(cls[i]), w[i] = 1.0f + float(cls[i]);
  for (bool elastic : {false, true}) {
    AugmentOptions o{.elastic = elastic, .brightness = 0, .contrast = 0};
    const TrainTile<float> tt = make_train_tile(img, cls, &w, 32, 24, o, rng);
    REQUIRE(tt.image.shape() == Shape{1, 32, 32});
    REQUIRE(tt.target.shape() == Shape{24, 24});
    int ones = 0, agree = 0;
    for (index_t i = 0; i < 24 * 24; ++i) {
      CHECK((tt.target[i] == 0 || tt.target[i] == 1));
      CHECK(tt.weights[i] == 1.0f + float(tt.target[i]));
      ones += tt.target[i];
      const float v = tt.image[(4 + i / 24) * 32 + 4 + i % 24];  // the label's pixel in the image tile
      agree += std::abs(v - (0.25f + 0.5f * float(tt.target[i]))) < 0.2f;
    }
    CHECK(ones > 0);
    CHECK(ones < 24 * 24);
    CHECK(agree > (elastic ? 0.9 : 0.999) * 24 * 24);  // bilinear edges vs nearest labels differ on a few pixels
  }
  CHECK_THROWS_WITH(make_train_tile(img, cls, &w, 32, 23, AugmentOptions{}, rng), doctest::Contains("centred"));
}

// ---- connected components, distance transform, weight map ---------------------------

TEST_CASE("unet: connected components, 4- and 8-connectivity") {
  const auto img = ints({4, 4}, {1, 1, 0, 1,  //
                                 0, 1, 0, 1,  //
                                 1, 0, 0, 0,  //
                                 1, 0, 1, 1});
  Components c4 = connected_components(img);
  CHECK(c4.count == 4);
  CHECK(c4.labels.data()[0] == 1);
  std::vector<std::int32_t> want4{1, 1, 0, 2, 0, 1, 0, 2, 3, 0, 0, 0, 3, 0, 4, 4};
  CHECK(std::vector<std::int32_t>(c4.labels.begin(), c4.labels.end()) == want4);
  Components c8 = connected_components(img, Connectivity::Eight);
  CHECK(c8.count == 3);
  std::vector<std::int32_t> want8{1, 1, 0, 2, 0, 1, 0, 2, 1, 0, 0, 0, 1, 0, 3, 3};
  CHECK(std::vector<std::int32_t>(c8.labels.begin(), c8.labels.end()) == want8);
  // A U shape: two provisional labels meet at the bottom and must merge.
  Components u = connected_components(ints({3, 3}, {1, 0, 1, 1, 0, 1, 1, 1, 1}));
  CHECK(u.count == 1);
  CHECK(u.labels[2] == 1);
  CHECK_THROWS_WITH(connected_components(Tensor<std::int32_t>(Shape{2, 2, 2})), doctest::Contains("(H, W) image"));
}

TEST_CASE("unet: distance transform is exact (brute force)") {
  Rng rng(8);
  const index_t H = 13, W = 17;
  Tensor<std::int32_t> f(Shape{H, W});
  for (int k = 0; k < 6; ++k) f[index_t(rng.below(std::uint64_t(H * W)))] = 1;
  const Tensor<double> d = distance_transform(f);
  for (index_t i = 0; i < H * W; ++i) {
    double best = 1e300;
    for (index_t j = 0; j < H * W; ++j)
      if (f[j]) best = std::min(best, std::hypot(double(i / W - j / W), double(i % W - j % W)));
    if (best == 0) CHECK(d[i] == 0.0);  // exactly(0) tolerates nothing, not even 0: its bound is strict
    else CHECK(d[i] == exactly(best));
  }
  const Tensor<double> none = distance_transform(Tensor<std::int32_t>(Shape{3, 4}));
  CHECK(std::isinf(none[5]));
}

TEST_CASE("unet: weight map by hand (two cells across a 2-pixel membrane)") {
  // 1 x 9: cells at x 0..2 and 5..8, membrane at 3, 4.
  const auto cls = ints({1, 9}, {1, 1, 1, 0, 0, 1, 1, 1, 1});
  const Tensor<double> w = unet_weight_map<double>(cls);
  const double wc0 = 9.0 / (2 * 2), wc1 = 9.0 / (2 * 7), border = 10 * std::exp(-9.0 / 50.0);  // d1 + d2 = 1 + 2
  CHECK(w[3] == exactly(wc0 + border));
  CHECK(w[4] == exactly(wc0 + border));
  CHECK(w[0] == exactly(wc1));
  const Tensor<double> all = unet_weight_map<double>(cls, {.border_only = false});
  CHECK(all[0] == exactly(wc1 + 10 * std::exp(-25.0 / 50.0)));  // d1 = 0, d2 = 5
  const Tensor<double> one = unet_weight_map<double>(ints({1, 4}, {1, 1, 0, 0}), {.balance = false});
  CHECK(one[3] == 1.0);  // one cell: no second distance, no border term
  CHECK_THROWS_WITH(unet_weight_map<double>(ints({1, 2}, {1, 2})), doctest::Contains("class 2 at pixel (0, 1)"));
}

// ---- metrics -------------------------------------------------------------------------------

TEST_CASE("unet: pixel, membrane and Rand/information scores by hand") {
  // One true cell (pixels 0..3) and a membrane pixel; the prediction cuts the cell at pixel 2.
  const auto truth = ints({1, 5}, {1, 1, 1, 1, 0});
  const Tensor<double> prob(Shape{1, 5}, {0.9, 0.9, 0.1, 0.9, 0.9});
  const SegmentationScores s = segmentation_scores(prob, truth);
  CHECK(s.pixel_error == exactly(0.4));
  CHECK(s.iou_membrane == 0.0);
  CHECK(s.dice_membrane == 0.0);
  // counted pixels 0..3: (cell, seg 1) = 2, (cell, seg 2) = 1, one singleton. Σp² = 6, Σt² = 16, Σs² = 6.
  CHECK(s.rand_info.v_rand_split == exactly(6.0 / 16));
  CHECK(s.rand_info.v_rand_merge == exactly(1.0));
  CHECK(s.rand_info.v_rand == exactly(12.0 / 22));
  CHECK(std::abs(s.rand_info.v_info_split) < 1e-15);  // H(T) = 0: no information shared
  CHECK(s.rand_info.v_info_merge == exactly(1.0));
  CHECK(std::abs(s.rand_info.v_info) < 1e-15);
  const SegmentationScores perfect = segmentation_scores(Tensor<double>(Shape{1, 5}, {1, 1, 0, 1, 0}),
                                                         ints({1, 5}, {1, 1, 0, 1, 0}));
  CHECK(perfect.pixel_error == 0);
  CHECK(perfect.iou_membrane == exactly(1.0));
  CHECK(perfect.rand_info.v_rand == exactly(1.0));
  CHECK(perfect.rand_info.v_info == exactly(1.0));
  CHECK_THROWS_WITH(segmentation_scores(prob, ints({1, 4}, {1, 1, 1, 1})), doctest::Contains("must be the same (H, W)"));
}

TEST_CASE("unet: Rand and information scores match pair counting and entropies (brute force)") {
  Rng rng(9);
  for (int trial = 0; trial < 5; ++trial) {
    const index_t N = 42;
    Tensor<std::int32_t> pred = Tensor<std::int32_t>::uninitialized(Shape{6, 7}), truth = pred.clone();
    for (index_t i = 0; i < N; ++i) pred[i] = std::int32_t(rng.below(4)), truth[i] = std::int32_t(rng.below(4));
    const RandInfoScores r = rand_info_scores(pred, truth);
    std::vector<index_t> idx;
    std::vector<std::int32_t> s, t;  // predicted boundary pixels become unique singleton labels
    for (index_t i = 0; i < N; ++i)
      if (truth[i] != 0) idx.push_back(i), s.push_back(pred[i] ? pred[i] : std::int32_t(-1 - i)), t.push_back(truth[i]);
    double both = 0, same_t = 0, same_s = 0;
    for (std::size_t a = 0; a < idx.size(); ++a)
      for (std::size_t b = 0; b < idx.size(); ++b) {
        both += s[a] == s[b] && t[a] == t[b];
        same_t += t[a] == t[b];
        same_s += s[a] == s[b];
      }
    CHECK(r.v_rand_split == exactly(both / same_t));
    CHECK(r.v_rand_merge == exactly(both / same_s));
    auto entropy = [&](auto key) {
      std::map<decltype(key(0)), double> c;
      for (std::size_t a = 0; a < idx.size(); ++a) c[key(a)] += 1;
      double h = 0, n = double(idx.size());
      for (auto& [k, v] : c) h -= v / n * std::log(v / n);
      return h;
    };
    const double hs = entropy([&](std::size_t a) { return s[a]; }), ht = entropy([&](std::size_t a) { return t[a]; });
    const double hj = entropy([&](std::size_t a) { return std::pair{s[a], t[a]}; }), mi = hs + ht - hj;
    CHECK(r.v_info_split == exactly(mi / hs));
    CHECK(r.v_info_merge == exactly(mi / ht));
    CHECK(r.v_info == exactly(2 * mi / (hs + ht)));
  }
}

TEST_CASE("unet: a merge of two cells lowers the merge score only") {
  // Two true cells separated by a membrane column; the prediction misses the membrane.
  const auto truth = ints({2, 5}, {1, 1, 0, 1, 1, 1, 1, 0, 1, 1});
  const Tensor<double> prob(Shape{2, 5}, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1});
  const SegmentationScores s = segmentation_scores(prob, truth);
  CHECK(s.rand_info.v_rand_split == exactly(1.0));
  CHECK(s.rand_info.v_rand_merge == exactly(32.0 / 64));  // Σp² = 2·16, Σs² = 8²
  CHECK(s.rand_info.v_info_split == exactly(1.0));  // one predicted segment: H(S) = 0, nothing split
  CHECK(std::abs(s.rand_info.v_info_merge) < 1e-15);
  CHECK(s.pixel_error == exactly(0.2));
}

// ---- the threshold -----------------------------------------------------------------------

TEST_CASE("unet: the threshold is the grid value with the lowest mean pixel error over the slices") {
  const std::vector<double> grid = threshold_grid();
  REQUIRE(grid.size() == 19);
  CHECK(grid.front() == 0.05);
  CHECK(grid.back() == exactly(0.95));
  // Membranes at 0.02..0.22 and cells from 0.27 up: only 0.25 cuts every pixel right.
  const auto truth = ints({1, 6}, {0, 0, 0, 1, 1, 1});
  const Tensor<float> prob(Shape{1, 6}, {0.02f, 0.12f, 0.22f, 0.27f, 0.6f, 0.9f});
  CHECK(choose_threshold<float>({prob}, {truth}) == 0.05 * 5);
  CHECK(segmentation_scores(prob, truth, 0.25).pixel_error == 0.0);
  CHECK(segmentation_scores(prob, truth, 0.5).pixel_error == exactly(1.0 / 6));  // 0.5 would miss the 0.27 cell
  // Ties go to the lowest threshold.
  CHECK(choose_threshold<float>({Tensor<float>(Shape{1, 2}, {0.01f, 0.99f})}, {ints({1, 2}, {0, 1})}) == 0.05);
  // The mean of the per-slice errors (the challenge's figure), not the error over all pixels:
  // slice a (2 pixels) wants a threshold above 0.41, slice b (8 pixels) one below 0.43.
  // Mean: 0.25 up to 0.40, 0.125 from 0.45 on; pooled pixels would pick 0.05 (0.1 vs 0.2).
  const Tensor<float> a(Shape{1, 2}, {0.41f, 1.0f}), b(Shape{2, 4}, {0.43f, 0.43f, 0, 0, 0, 1, 1, 1});
  const auto ta = ints({1, 2}, {0, 1}), tb = ints({2, 4}, {1, 1, 0, 0, 0, 1, 1, 1});
  CHECK(choose_threshold<float>({a, b}, {ta, tb}) == 0.05 * 9);
  CHECK_THROWS_WITH(choose_threshold<float>({a}, {ta, tb}), doctest::Contains("1 predictions for 2 truths"));
  CHECK_THROWS_WITH(choose_threshold<float>({a}, {tb}), doctest::Contains("must be the same (H, W)"));
}

TEST_CASE("unet: the mask is cell where the cell probability reaches the threshold") {
  const Tensor<float> prob(Shape{2, 2}, {0.1f, 0.3f, 0.3f, 0.9f});
  const Tensor<std::int32_t> m = cell_mask(prob, 0.3f);
  CHECK(std::vector<std::int32_t>(m.begin(), m.end()) == std::vector<std::int32_t>{0, 1, 1, 1});
  const Tensor<std::int32_t> hi = cell_mask(prob, 0.5);
  CHECK(std::vector<std::int32_t>(hi.begin(), hi.end()) == std::vector<std::int32_t>{0, 0, 0, 1});
  // segmentation_scores cuts at the same place.
  CHECK(segmentation_scores(prob, ints({2, 2}, {0, 1, 1, 1}), 0.3f).pixel_error == 0.0);
  Tensor<float> probs(Shape{2, 2, 2});
  for (index_t i = 0; i < 4; ++i) probs[4 + i] = prob[i], probs[i] = 1 - prob[i];
  const Tensor<float> cell = cell_probability(probs);
  CHECK(cell.shape() == Shape{2, 2});
  CHECK(std::equal(cell.begin(), cell.end(), prob.begin()));
}

TEST_CASE("unet: a checkpoint keeps the config and the chosen threshold, older ones load at 0.5") {
  const std::string dir = (std::filesystem::temp_directory_path() / "marrow_unet_load_test").string();
  std::filesystem::create_directories(dir);
  Config c = tiny(Padding::Valid, false);
  c.dropout = 0.25;
  Rng rng(11);
  UNet<float> net(c, rng);
  net.threshold[0] = 0.35f;
  Checkpoint<float> ckpt(net);  // as unet train saves it
  ckpt.save(dir + "/new.safetensors", 7, R"({"width":99})", model_config_metadata(c));
  const Trained<float> t = load_trained<float>(dir + "/new.safetensors");
  CHECK(t.note.empty());
  CHECK(t.info.step == 7);
  CHECK(t.net.threshold[0] == 0.35f);
  CHECK(!t.net.training);
  CHECK(t.net.cfg.width == 2);  // from the stored config, not from the run's flags
  CHECK(t.net.cfg.padding == Padding::Valid);
  CHECK(!t.net.cfg.batch_norm);
  CHECK(t.net.cfg.dropout == 0.25);
  const Tensor<float>& w = t.net.head.weight.value();
  CHECK(std::equal(w.begin(), w.end(), net.head.weight.value().begin()));

  // Written before the threshold and the config were stored: the model is in the training
  // flags, there is no threshold tensor.
  WithoutThreshold<float> without{net};
  Checkpoint<float> old(without);
  old.save(dir + "/old.safetensors", 3,
           R"({"width":2,"depth":2,"padding":"valid","batch-norm":false,"dropout":0.25,"he-init":false,"threshold":0.5})");
  CHECK(!safetensors::read(dir + "/old.safetensors").find("threshold"));
  const Trained<float> o = load_trained<float>(dir + "/old.safetensors");
  CHECK(o.net.threshold[0] == 0.5f);
  CHECK_MESSAGE(o.note.find("using 0.5") != std::string::npos, o.note);
  CHECK(o.net.cfg.padding == Padding::Valid);
  CHECK(!o.net.cfg.batch_norm);
  CHECK(std::equal(w.begin(), w.end(), o.net.head.weight.value().begin()));

  old.save(dir + "/bare.safetensors", 3);
  CHECK_THROWS_WITH(load_trained<float>(dir + "/bare.safetensors"), doctest::Contains("has no model config"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("unet: float loss and gradients on our GEMM agree with Eigen's") {
  Rng rng(6);
  Config c;
  c.width = 8, c.depth = 3, c.dropout = 0;
  UNet<float> net(c, rng);
  const Tensor<float> x = randn<float>({2, 1, 32, 32}, rng), w = randn<float>({2, 2, 32, 32}, rng);
  testing::check_gemm_engines(parameters<float>(net), [&](Tape<float>& t) {
    return sum(t, mul(t, net(t, t.input(x)), t.input(w)));
  }, 1e-4);
}
