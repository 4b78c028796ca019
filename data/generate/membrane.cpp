// membrane: a procedural stand-in for the ISBI-2012 membrane slices, with exact labels.
//
//   membrane OUT [--slices 30] [--test 5] [--size 256] [--seed 1]
//
// Writes OUT/train/image/k.png, OUT/train/label/k.png (k = 0 .. slices-1) and
// OUT/test/k.png, laid out like shared/data/membrane so `unet train --data OUT`
// reads it unchanged. Each slice is a Voronoi tessellation: cells are bright,
// the boundaries between them dark and blurred, with a few dark organelles and
// sensor noise on top. The label is exact: 0 where the distance to the nearest
// seed and to the second nearest differ by less than the membrane thickness
// (or inside an organelle), 255 elsewhere, the same convention as the real masks.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>

namespace {

struct Seed {
  float x, y, shade;
};

struct Slice {
  std::vector<std::uint8_t> image, label;
};

// Cell spacing and membrane width are in pixels at --size 512 (the real slices'
// scale) and shrink with the image, so a 256 px slice looks like a 2x downsample.
Slice make_slice(int size, std::mt19937_64& rng) {
  const float scale = float(size) / 512.0f;
  const float spacing = 46.0f * scale, half_width = std::max(1.0f, 3.2f * scale), blur = std::max(0.8f, 2.5f * scale);
  std::uniform_real_distribution<float> u(0, 1);
  std::normal_distribution<float> noise(0, 14);

  // Jittered grid: each grid cell holds one seed, so the nearest two seeds of a
  // pixel lie in its 5x5 neighbourhood of grid cells and the search stays local.
  const int g = int(std::ceil(float(size) / spacing)) + 1;
  std::vector<Seed> seeds(std::size_t(g * g));
  for (int j = 0; j < g; ++j)
    for (int i = 0; i < g; ++i)
      seeds[std::size_t(j * g + i)] = {(float(i) + 0.15f + 0.7f * u(rng)) * spacing,
                                       (float(j) + 0.15f + 0.7f * u(rng)) * spacing, 150.0f + 70.0f * u(rng)};

  struct Blob {
    float x, y, r;
  };
  std::vector<Blob> blobs(std::size_t(2 + int(6 * u(rng))));
  for (auto& b : blobs) b = {u(rng) * float(size), u(rng) * float(size), (2.5f + 4.0f * u(rng)) * scale * 2};

  Slice s;
  s.image.resize(std::size_t(size) * std::size_t(size));
  s.label.resize(s.image.size());
  for (int y = 0; y < size; ++y)
    for (int x = 0; x < size; ++x) {
      const int gi = int(float(x) / spacing), gj = int(float(y) / spacing);
      float d1 = 1e30f, d2 = 1e30f, shade = 0;
      for (int dj = -2; dj <= 2; ++dj)
        for (int di = -2; di <= 2; ++di) {
          const int i = gi + di, j = gj + dj;
          if (i < 0 || j < 0 || i >= g || j >= g) continue;
          const Seed& p = seeds[std::size_t(j * g + i)];
          const float d = std::hypot(p.x - float(x), p.y - float(y));
          if (d < d1) d2 = d1, d1 = d, shade = p.shade;
          else if (d < d2) d2 = d;
        }
      // (d2 - d1) / 2 is the distance to the bisector between the two nearest seeds.
      const float edge = 0.5f * (d2 - d1);
      bool membrane = edge < half_width;
      float v = shade + 10.0f * std::sin(0.21f * float(x) + 0.17f * float(y) + shade);  // faint texture
      const float dark = std::exp(-0.5f * (edge * edge) / ((half_width + blur) * (half_width + blur)));
      v = v * (1 - 0.75f * dark);
      for (const Blob& b : blobs) {
        const float r = std::hypot(b.x - float(x), b.y - float(y));
        if (r < b.r) membrane = true;
        v *= 1 - 0.7f * std::exp(-0.5f * (r * r) / (b.r * b.r * 0.6f));
      }
      v += noise(rng);
      const std::size_t k = std::size_t(y) * std::size_t(size) + std::size_t(x);
      s.image[k] = std::uint8_t(std::clamp(std::lround(v), 0L, 255L));
      s.label[k] = membrane ? 0 : 255;
    }
  // A 3x3 box blur of the picture (not the label): the microscope's point spread.
  std::vector<std::uint8_t> src = s.image;
  for (int y = 0; y < size; ++y)
    for (int x = 0; x < size; ++x) {
      int sum = 0, n = 0;
      for (int dy = -1; dy <= 1; ++dy)
        for (int dx = -1; dx <= 1; ++dx) {
          const int yy = y + dy, xx = x + dx;
          if (yy < 0 || xx < 0 || yy >= size || xx >= size) continue;
          sum += src[std::size_t(yy) * std::size_t(size) + std::size_t(xx)], ++n;
        }
      s.image[std::size_t(y) * std::size_t(size) + std::size_t(x)] = std::uint8_t((sum + n / 2) / n);
    }
  return s;
}

void write_gray(const std::filesystem::path& p, const std::vector<std::uint8_t>& px, int size) {
  if (!stbi_write_png(p.string().c_str(), size, size, 1, px.data(), size)) {
    std::fprintf(stderr, "membrane: cannot write %s\n", p.string().c_str());
    std::exit(1);
  }
}

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr, "membrane: %s\nusage: membrane OUT [--slices 30] [--test 5] [--size 256] [--seed 1]\n", why);
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  std::string out;
  int slices = 30, test = 5, size = 256;
  long seed = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> long {
      if (i + 1 >= argc) usage(("missing value after " + a).c_str());
      char* end = nullptr;
      const long v = std::strtol(argv[++i], &end, 10);
      if (*end || v < 0) usage(("bad value for " + a + ": " + argv[i]).c_str());
      return v;
    };
    if (a == "--slices") slices = int(value());
    else if (a == "--test") test = int(value());
    else if (a == "--size") size = int(value());
    else if (a == "--seed") seed = value();
    else if (a == "-h" || a == "--help") usage("procedural membrane-like slices with exact labels");
    else if (!a.empty() && a[0] == '-') usage(("unknown flag " + a).c_str());
    else out = a;
  }
  if (out.empty()) usage("OUT is required");
  if (size < 32 || slices < 2) usage("--size must be >= 32 and --slices >= 2");
  namespace fs = std::filesystem;
  fs::create_directories(fs::path(out) / "train" / "image");
  fs::create_directories(fs::path(out) / "train" / "label");
  fs::create_directories(fs::path(out) / "test");
  std::mt19937_64 rng{static_cast<std::uint64_t>(seed)};
  for (int k = 0; k < slices + test; ++k) {
    const Slice s = make_slice(size, rng);
    const std::string name = std::to_string(k < slices ? k : k - slices) + ".png";
    if (k < slices) {
      write_gray(fs::path(out) / "train" / "image" / name, s.image, size);
      write_gray(fs::path(out) / "train" / "label" / name, s.label, size);
    } else {
      write_gray(fs::path(out) / "test" / name, s.image, size);
    }
  }
  std::printf("membrane: %d labelled + %d test slices of %dx%d in %s\n", slices, test, size, size, out.c_str());
  return 0;
}
