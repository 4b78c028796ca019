// Augmentation: exact transforms, identities, image/mask agreement, determinism.
#include <marrow/data/augment.hpp>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <set>

#include "testing.hpp"

using namespace marrow;
using namespace marrow::data;

namespace {
bool same(const Tensor<double>& a, const Tensor<double>& b) {
  return a.shape() == b.shape() && std::equal(a.begin(), a.end(), b.begin());
}
double max_diff(const Tensor<double>& a, const Tensor<double>& b) {
  REQUIRE(a.shape() == b.shape());
  double m = 0;
  for (index_t i = 0; i < a.numel(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}
// (2, 3, 4) image 0..23 and a (1, 3, 4) mask 100..111.
Sample<double> ramp() {
  return {arange<double>(24).reshape({2, 3, 4}), arange<double>(12, 100.0).reshape({1, 3, 4})};
}
// A binary (1, n, n) image with a few blobs, and the same as mask.
Sample<double> blobs(index_t n) {
  Tensor<double> im({1, n, n});
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < n; ++j) {
      const double a = double(i) - 0.3 * double(n), b = double(j) - 0.4 * double(n);
      const bool in = a * a + b * b < 0.05 * double(n * n) || (i > n / 2 && j > n / 2 && j < n - 3);
      im.at({0, i, j}) = in ? 1.0 : 0.0;
    }
  return {im, im.clone()};
}
// Geometry agreement: nearest picks a neighbour with bilinear weight >= 1/4, so a
// bilinear image value below 1/4 (above 3/4) forces mask 0 (1) when mask == image.
void check_agreement(const Sample<double>& s) {
  int checked = 0;
  for (index_t i = 0; i < s.image.numel(); ++i) {
    if (s.image[i] < 0.25) CHECK(s.mask[i] == 0.0), ++checked;
    if (s.image[i] > 0.75) CHECK(s.mask[i] == 1.0), ++checked;
  }
  CHECK(checked > s.image.numel() / 2);
}
}  // namespace

TEST_CASE("augment: flips and rot90 are exact and move image and mask together") {
  const Sample<double> s = ramp();
  const auto h = hflip(s);
  CHECK(h.image.at({0, 0, 0}) == 3);
  CHECK(h.image.at({1, 2, 1}) == 22);  // 12 + 2*4 + (3-1)
  CHECK(h.mask.at({0, 1, 0}) == 107);
  const auto v = vflip(s);
  CHECK(v.image.at({0, 0, 1}) == 9);
  CHECK(v.mask.at({0, 2, 3}) == 103);
  CHECK(same(hflip(hflip(s)).image, s.image));
  CHECK(same(vflip(vflip(s)).mask, s.mask));

  // numpy.rot90([[0,1,2,3],[4,5,6,7],[8,9,10,11]]) = [[3,7,11],[2,6,10],[1,5,9],[0,4,8]]
  const auto r = rot90(s, 1);
  CHECK(r.image.shape() == Shape{2, 4, 3});
  CHECK(r.mask.shape() == Shape{1, 4, 3});
  const std::vector<double> want = {3, 7, 11, 2, 6, 10, 1, 5, 9, 0, 4, 8};
  CHECK(std::equal(want.begin(), want.end(), r.image.begin()));
  CHECK(r.mask.at({0, 0, 1}) == 107);
  const auto r3 = rot90(s, 3);  // [[8,4,0],[9,5,1],[10,6,2],[11,7,3]]
  CHECK(r3.image.at({0, 0, 0}) == 8);
  CHECK(r3.image.at({0, 3, 1}) == 7);
  CHECK(same(rot90(s, -1).image, r3.image));
  CHECK(same(rot90(s, 2).image, hflip(vflip(s)).image));
  CHECK(same(rot90(rot90(r, 1), 2).image, s.image));
  CHECK(same(rot90(s, 4).mask, s.mask));
  // Without a mask the mask stays undefined.
  CHECK(!hflip(Sample{s.image}).mask.defined());
  CHECK(rot90(Sample{arange<double>(6).reshape({2, 3})}, 1).image.shape() == Shape{3, 2});
}

TEST_CASE("augment: random_dihedral and random_crop are deterministic and consistent") {
  const Sample<double> s = ramp();
  Rng a(9), b(9);
  for (int i = 0; i < 8; ++i) {
    const auto x = random_dihedral(s, a), y = random_dihedral(s, b);
    CHECK(same(x.image, y.image));
    // the mask followed the image: mask = 100 + image of channel 0
    for (index_t k = 0; k < x.mask.numel(); ++k) CHECK(x.mask[k] == 100 + x.image[k]);
  }
  std::set<index_t> starts;
  for (int i = 0; i < 30; ++i) {
    const auto c = random_crop(s, a, 2, 3);
    CHECK(c.image.shape() == Shape{2, 2, 3});
    CHECK(c.mask.shape() == Shape{1, 2, 3});
    const index_t y0 = index_t(c.image[0]) / 4, x0 = index_t(c.image[0]) % 4;
    starts.insert(index_t(c.image[0]));
    for (index_t i2 = 0; i2 < 2; ++i2)
      for (index_t j = 0; j < 3; ++j) {
        CHECK(c.image.at({1, i2, j}) == s.image.at({1, y0 + i2, x0 + j}));
        CHECK(c.mask.at({0, i2, j}) == s.mask.at({0, y0 + i2, x0 + j}));
      }
  }
  CHECK(starts.size() == 4);  // every one of the 2 x 2 offsets occurs
  CHECK_THROWS_WITH_AS(random_crop(s, a, 4, 2), doctest::Contains("random_crop: crop 4x2 does not fit image (2, 3, 4)"), Error);
  CHECK_THROWS_WITH_AS(hflip(Sample{s.image, zeros<double>({1, 3, 5})}),
                       doctest::Contains("hflip: mask (1, 3, 5) does not match image (2, 3, 4) in H and W"), Error);
  CHECK_THROWS_WITH_AS(vflip(Sample{zeros<double>({4})}), doctest::Contains("vflip: image must be (C, H, W) or (H, W), got (4,)"),
                       Error);
}

TEST_CASE("augment: reflect border mirrors without repeating the edge") {
  using aug_detail::reflect;
  CHECK(reflect(-1.0, 5) == 1.0);
  CHECK(reflect(-0.5, 5) == 0.5);
  CHECK(reflect(5.0, 5) == 3.0);
  CHECK(reflect(9.0, 5) == 1.0);
  CHECK(reflect(2.25, 5) == 2.25);
  CHECK(reflect(7.0, 1) == 0.0);
}

TEST_CASE("augment: rotate by 0 is the identity, by 90 and 180 it matches rot90") {
  const Sample<double> s = ramp();
  for (Border b : {Border::Reflect, Border::Constant}) {
    const auto r = rotate(s, 0.0, b, 5.0);
    CHECK(same(r.image, s.image));
    CHECK(same(r.mask, s.mask));
  }
  Rng rng(1);
  const Sample<double> sq{randn<double>({2, 5, 5}, rng), arange<double>(25).reshape({1, 5, 5})};
  const auto r90 = rotate(sq, 90.0), q90 = rot90(sq, 1);
  CHECK(max_diff(r90.image, q90.image) < 1e-9);
  CHECK(same(r90.mask, q90.mask));
  const auto r180 = rotate(sq, 180.0, Border::Constant), q180 = rot90(sq, 2);
  CHECK(max_diff(r180.image, q180.image) < 1e-9);
  CHECK(same(r180.mask, q180.mask));
}

TEST_CASE("augment: rotate with constant border fills outside, mask with 0") {
  // 5x5 turned 45 degrees: output corner (0, 0) samples source x = 2, y = 2 - 2√2 ≈ -0.828,
  // between the fill row above the image and row 0.
  Tensor<double> im = arange<double>(25, 1.0).reshape({1, 5, 5});
  const auto r = rotate(Sample{im, full<double>({1, 5, 5}, 1.0)}, 45.0, Border::Constant, 7.0);
  const double y = 2.0 - 2.0 * std::sqrt(2.0), w = y + 1.0;  // weight of row 0
  CHECK(r.image.at({0, 0, 0}) == doctest::Approx((1.0 - w) * 7.0 + w * im.at({0, 0, 2})).epsilon(1e-9));
  CHECK(r.mask.at({0, 0, 0}) == 0.0);  // nearest row is -1: outside
  CHECK(r.mask.at({0, 2, 2}) == 1.0);
  CHECK(r.image.at({0, 2, 2}) == doctest::Approx(13.0).epsilon(1e-12));  // the centre stays
}

TEST_CASE("augment: elastic_deform with sigma 0 is the identity, otherwise smooth and deterministic") {
  const Sample<double> s = blobs(24);
  Rng a(3);
  const auto id = elastic_deform(s, a, 0.0);
  CHECK(same(id.image, s.image));
  CHECK(same(id.mask, s.mask));
  Rng b(4), c(4), d(5);
  const auto x = elastic_deform(s, b, 3.0, 3), y = elastic_deform(s, c, 3.0, 3), z = elastic_deform(s, d, 3.0, 3);
  CHECK(same(x.image, y.image));
  CHECK(same(x.mask, y.mask));
  CHECK(!same(x.image, z.image));
  CHECK(!same(x.image, s.image));
  check_agreement(x);
  check_agreement(elastic_deform(s, d, 4.0, 4, Border::Constant));
  CHECK_THROWS_WITH_AS(elastic_deform(s, d, -1.0), doctest::Contains("sigma -1"), Error);
}

TEST_CASE("augment: bicubic field interpolates the grid and keeps constants") {
  const std::vector<double> g = {1, 2, 3, 4, 5, 6, 7, 8, 9};  // 3 x 3
  const auto f = aug_detail::upsample_bicubic(g, 3, 5, 9);     // grid points at rows 0,2,4 / cols 0,4,8
  CHECK(f[0] == doctest::Approx(1));
  CHECK(f[4] == doctest::Approx(2));
  CHECK(f[2 * 9 + 4] == doctest::Approx(5));
  CHECK(f[4 * 9 + 8] == doctest::Approx(9));
  std::vector<double> lin(25);  // 5 x 5 grid of r*5 + c + 1: linear data stays linear where all taps are inside
  for (int i = 0; i < 25; ++i) lin[std::size_t(i)] = i + 1;
  const auto fl = aug_detail::upsample_bicubic(lin, 5, 9, 9);  // grid every 2 px
  CHECK(fl[3 * 9 + 5] == doctest::Approx(1 + 1.5 * 5 + 2.5));
  const auto k = aug_detail::upsample_bicubic(std::vector<double>(16, 2.5), 4, 7, 6);
  for (double v : k) CHECK(v == doctest::Approx(2.5));
}

TEST_CASE("augment: rotated image and mask agree in geometry") {
  const Sample<double> s = blobs(20);
  check_agreement(rotate(s, 30.0));
  check_agreement(rotate(s, -17.0, Border::Constant));
  Rng rng(8);
  check_agreement(random_rotate(s, rng, 45.0));
}

TEST_CASE("augment: brightness/contrast and noise touch the image only") {
  Rng rng(2);
  const Sample<double> s{uniform<double>({2, 8, 8}, rng), arange<double>(64).reshape({1, 8, 8})};
  const double mean = s.image.arr().mean();
  Rng a(6), b(6);
  const auto c = brightness_contrast(s, a, 0.0, 0.5);
  CHECK(c.image.arr().mean() == doctest::Approx(mean).epsilon(1e-12).scale(0));  // contrast keeps the mean
  CHECK(same(c.mask, s.mask));
  CHECK(same(brightness_contrast(s, b, 0.0, 0.5).image, c.image));
  const auto id = brightness_contrast(s, a, 0.0, 0.0);
  CHECK(max_diff(id.image, s.image) < 1e-12);
  const auto br = brightness_contrast(s, a, 0.2, 0.0);  // pure shift: every value moves by the same b
  const double shift = br.image[0] - s.image[0];
  CHECK(std::abs(shift) <= 0.2);
  CHECK(shift != 0.0);
  // The same to rounding: Approx(shift)'s default scale would let every pixel move by shift ± 1e-5.
  for (index_t i = 0; i < s.image.numel(); ++i) CHECK(std::abs(br.image[i] - s.image[i] - shift) < 1e-15);

  const Sample<double> flat{zeros<double>({1, 64, 64})};
  Rng n1(4), n2(4);
  const auto noisy = gaussian_noise(flat, n1, 0.1);
  const double sd = std::sqrt(noisy.image.arr().square().mean());
  CHECK(sd == doctest::Approx(0.1).epsilon(0.05).scale(0));  // 4,096 draws: the estimate's own spread is ~1 %
  CHECK(same(gaussian_noise(flat, n2, 0.1).image, noisy.image));
  CHECK(!noisy.mask.defined());
  CHECK_THROWS_WITH_AS(gaussian_noise(flat, n1, -1.0), doctest::Contains("gaussian_noise: stddev -1"), Error);
}

TEST_CASE("augment: float planes work too (membrane-sized timing when shared data exists)") {
  Rng rng(0);
  const bool shared = std::getenv("MARROW_SHARED_DATA") ||
                      std::filesystem::exists(std::string(MARROW_SOURCE_DIR) + "/../shared/data/membrane");
  const index_t n = shared ? 512 : 64;
  const Sample<float> s{uniform<float>({1, n, n}, rng), zeros<float>({1, n, n})};
  const auto t0 = std::chrono::steady_clock::now();
  const auto e = elastic_deform(s, rng, 10.0, 3);
  const auto r = rotate(e, 12.5f);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  MESSAGE("elastic_deform + rotate on (1, ", n, ", ", n, ") image + mask: ", secs * 1e3, " ms");
  CHECK(r.image.shape() == Shape{1, n, n});
  CHECK(r.mask.shape() == Shape{1, n, n});
}
