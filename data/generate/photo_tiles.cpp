// photo_tiles: cut small colour tiles out of a few large photographs, laid out
// like shared/data/cifar10-jpg, so `colorize train --data OUT` runs offline.
//
//   photo_tiles OUT PHOTO... [--size 32] [--train 300] [--test 40] [--seed 1]
//
// Each photo becomes one class (OUT/train/<stem>/NNNN.png and OUT/test/<stem>/...;
// at most 10, the colorizer's class head). Tiles are box-filtered crops whose side
// is drawn between 1/8 and 1/3 of the photo's short side, so one photo yields many
// different-looking images. The right-most fifth of every photo is kept for the
// test tiles only: no test pixel was seen in training.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#include <stb/stb_image.h>
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>

namespace fs = std::filesystem;

namespace {

struct Photo {
  int w = 0, h = 0;
  std::vector<std::uint8_t> rgb;
};

// Area-average the square [x0, x0+side) x [y0, y0+side) down to size x size.
std::vector<std::uint8_t> crop(const Photo& p, int x0, int y0, int side, int size) {
  std::vector<std::uint8_t> out(std::size_t(size * size * 3));
  for (int y = 0; y < size; ++y)
    for (int x = 0; x < size; ++x) {
      const int ya = y0 + y * side / size, yb = std::max(ya + 1, y0 + (y + 1) * side / size);
      const int xa = x0 + x * side / size, xb = std::max(xa + 1, x0 + (x + 1) * side / size);
      long sum[3] = {0, 0, 0};
      for (int yy = ya; yy < yb; ++yy)
        for (int xx = xa; xx < xb; ++xx)
          for (int c = 0; c < 3; ++c) sum[c] += p.rgb[(std::size_t(yy) * std::size_t(p.w) + std::size_t(xx)) * 3 + std::size_t(c)];
      const long n = long(yb - ya) * long(xb - xa);
      for (int c = 0; c < 3; ++c) out[std::size_t((y * size + x) * 3 + c)] = std::uint8_t((sum[c] + n / 2) / n);
    }
  return out;
}

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr, "photo_tiles: %s\nusage: photo_tiles OUT PHOTO... [--size 32] [--train 300] [--test 40] [--seed 1]\n",
               why.c_str());
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  std::string out;
  std::vector<std::string> photos;
  int size = 32, n_train = 300, n_test = 40;
  long seed = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> long {
      if (i + 1 >= argc) usage("missing value after " + a);
      char* end = nullptr;
      const long v = std::strtol(argv[++i], &end, 10);
      if (*end || v < 0) usage("bad value for " + a + ": " + argv[i]);
      return v;
    };
    if (a == "--size") size = int(value());
    else if (a == "--train") n_train = int(value());
    else if (a == "--test") n_test = int(value());
    else if (a == "--seed") seed = value();
    else if (a == "-h" || a == "--help") usage("colour tiles from photographs, one class per photo");
    else if (!a.empty() && a[0] == '-') usage("unknown flag " + a);
    else if (out.empty()) out = a;
    else photos.push_back(a);
  }
  if (out.empty() || photos.empty()) usage("OUT and at least one PHOTO are required");
  if (size < 8) usage("--size must be >= 8");
  std::sort(photos.begin(), photos.end());
  if (photos.size() > 10) photos.resize(10);  // the colorizer's class head has 10 outputs
  std::mt19937_64 rng{static_cast<std::uint64_t>(seed)};
  for (const std::string& path : photos) {
    Photo p;
    int ch = 0;
    stbi_uc* px = stbi_load(path.c_str(), &p.w, &p.h, &ch, 3);
    if (!px) {
      std::fprintf(stderr, "photo_tiles: cannot decode %s: %s\n", path.c_str(), stbi_failure_reason());
      return 1;
    }
    p.rgb.assign(px, px + std::size_t(p.w) * std::size_t(p.h) * 3);
    stbi_image_free(px);
    const int split = p.w * 4 / 5;  // train tiles left of it, test tiles right of it
    const int short_side = std::min(p.h, p.w - split);
    if (short_side < size) {
      std::fprintf(stderr, "photo_tiles: %s (%dx%d) is too small for %d px tiles\n", path.c_str(), p.w, p.h, size);
      return 1;
    }
    const std::string stem = fs::path(path).stem().string();
    for (int part = 0; part < 2; ++part) {
      const bool train = part == 0;
      const fs::path dir = fs::path(out) / (train ? "train" : "test") / stem;
      fs::create_directories(dir);
      const int x_lo = train ? 0 : split, x_hi = train ? split : p.w;
      const int lo = std::max(size, std::min(p.h, p.w) / 8), hi = std::max(lo, std::min({p.h, x_hi - x_lo, std::min(p.h, p.w) / 3}));
      std::uniform_int_distribution<int> side_d(lo, hi);
      for (int k = 0, n = train ? n_train : n_test; k < n; ++k) {
        const int side = side_d(rng);
        const int x0 = x_lo + std::uniform_int_distribution<int>(0, x_hi - x_lo - side)(rng);
        const int y0 = std::uniform_int_distribution<int>(0, p.h - side)(rng);
        const std::vector<std::uint8_t> tile = crop(p, x0, y0, side, size);
        char name[32];
        std::snprintf(name, sizeof name, "%04d.png", k);
        if (!stbi_write_png((dir / name).string().c_str(), size, size, 3, tile.data(), size * 3)) {
          std::fprintf(stderr, "photo_tiles: cannot write %s\n", (dir / name).string().c_str());
          return 1;
        }
      }
    }
  }
  std::printf("photo_tiles: %zu classes x (%d train + %d test) tiles of %dx%d in %s\n", photos.size(), n_train, n_test,
              size, size, out.c_str());
  return 0;
}
