#pragma once
// 8-bit images on disk (PNG/JPEG/BMP via stb) and their float tensor views.
//
// Image holds interleaved HWC bytes, as files store them; tensors are planar
// (C, H, W) floats in [0, 1], as convolutions want them. Conversions between
// the two live here and nowhere else.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "../config.hpp"
#include "../tensor.hpp"
#include "file.hpp"
#include "stb_impl.hpp"

namespace marrow::data {

struct Image {
  int width = 0, height = 0, channels = 0;
  std::vector<std::uint8_t> pixels;  // (H, W, C) interleaved, row-major

  Image() = default;
  Image(int w, int h, int c, std::uint8_t v = 0) : width(w), height(h), channels(c), pixels(std::size_t(w) * h * c, v) {
    MARROW_CHECK(w >= 0 && h >= 0 && c >= 1 && c <= 4, "Image: bad size ", w, "x", h, "x", c);
  }
  std::uint8_t& at(int y, int x, int c) { return pixels[(std::size_t(y) * width + x) * channels + c]; }
  std::uint8_t at(int y, int x, int c) const { return pixels[(std::size_t(y) * width + x) * channels + c]; }
};

namespace detail {
// stb_image 2.27 (Debian 12's) trusts a JPEG's Huffman tables too far (both found by fuzzing,
// fixed upstream in 2.28): a DHT segment declaring more than 256 codes makes it write past the
// table, and a scan that names a table no DHT defined makes it decode with uninitialized
// memory (an index of -16776585 into `size[]`). Refuse such files before stb sees them. The
// walk visits every marker stb could act on: it skips bytes outside segments one at a time (as
// stb does between segments and in entropy-coded data) and jumps over length-prefixed segments
// (stb refuses any whose contents disagree with the length).
enum class JpegTables { ok, too_many_codes, undefined_table };
inline JpegTables jpeg_huffman_tables_check(const std::uint8_t* p, std::size_t n) {
  std::size_t i = 0;
  while (i < n && p[i] == 0xFF) ++i;  // stb accepts fill bytes before SOI too (found by fuzzing)
  if (i == 0 || i >= n || p[i] != 0xD8) return JpegTables::ok;  // not a JPEG
  ++i;
  auto at = [&](std::size_t k) -> unsigned { return k < n ? p[k] : 0u; };  // stb reads 0 past the end
  bool defined[2][4] = {};  // [DC, AC][table id]
  bool progressive = false;
  while (i < n) {
    if (p[i] != 0xFF) { ++i; continue; }
    while (i < n && p[i] == 0xFF) ++i;  // fill bytes
    if (i >= n) break;
    const unsigned m = p[i++];
    if (m == 0x00 || m == 0x01 || (m >= 0xD0 && m <= 0xD7)) continue;  // stuffed 0xFF, TEM, RST: no length
    if (m == 0xD9) break;                                               // EOI: stb stops reading
    const std::size_t len = at(i) << 8 | at(i + 1);
    if (m == 0xC4) {  // DHT: tables of (class/id, 16 code counts, values), as stb consumes them
      long left = long(len) - 2;
      std::size_t k = i + 2;
      while (left > 0) {
        const unsigned q = at(k++);
        if ((q >> 4) > 1 || (q & 15) > 3) break;  // stb refuses this header itself
        unsigned codes = 0;
        for (int b = 0; b < 16; ++b) codes += at(k++);
        if (codes > 256) return JpegTables::too_many_codes;
        defined[q >> 4][q & 15] = true;
        k += codes;
        left -= 17 + long(codes);
      }
    }
    if (m == 0xC2) progressive = true;
    if (m == 0xDA) {  // SOS: the tables each component of the scan decodes with
      const unsigned ns = at(i + 2);
      const unsigned ss = at(i + 3 + 2 * ns);  // spectral start: 0 = a DC scan
      for (unsigned c = 0; c < ns && c < 4; ++c) {
        const unsigned q = at(i + 4 + 2 * c), dc = q >> 4, ac = q & 15;
        if (dc > 3 || ac > 3) break;  // stb refuses this header itself
        // A baseline scan decodes with both tables; a progressive one with DC or AC only.
        const bool needs_dc = !progressive || ss == 0, needs_ac = !progressive || ss != 0;
        if ((needs_dc && !defined[0][dc]) || (needs_ac && !defined[1][ac])) return JpegTables::undefined_table;
      }
    }
    if (len < 2) break;  // stb skips to the end or fails here
    i += len;
  }
  return JpegTables::ok;
}

// stb grows its IDAT buffer to a chunk's declared length before reading it, so a 300-byte
// PNG declaring a 1 GiB chunk made it allocate 2 GiB (found by fuzzing). Every chunk up to
// IEND must fit in the file.
inline bool png_chunks_fit(const std::uint8_t* p, std::size_t n) {
  static constexpr std::uint8_t kSignature[8] = {137, 80, 78, 71, 13, 10, 26, 10};
  if (n < 8 || !std::equal(kSignature, kSignature + 8, p)) return true;  // not a PNG
  for (std::size_t i = 8; i + 8 <= n;) {
    const std::size_t len = std::size_t(p[i]) << 24 | std::size_t(p[i + 1]) << 16 | std::size_t(p[i + 2]) << 8 | p[i + 3];
    if (len > n - i - 8) return false;
    if (std::equal(p + i + 4, p + i + 8, "IEND")) break;
    i += 12 + len;
  }
  return true;
}
}  // namespace detail

// The most pixels decode_image accepts (default 8192 x 8192). stb sizes its buffers from the
// header, so without a cap a tiny file claiming 30000 x 30000 pixels makes it allocate
// gigabytes; an RLE TGA or a JPEG of a few hundred bytes can still declare up to the cap
// (~0.3 s and 256 MB to decode). The fuzz build lowers it to keep each input fast.
#ifndef MARROW_MAX_IMAGE_PIXELS
#define MARROW_MAX_IMAGE_PIXELS (std::int64_t(1) << 26)
#endif
inline constexpr std::int64_t kMaxImagePixels = MARROW_MAX_IMAGE_PIXELS;

// Decode PNG/JPEG/BMP/TGA bytes; desired_channels 0 keeps the file's, 1..4 converts.
inline Image decode_image(const std::vector<std::uint8_t>& bytes, const std::string& name, int desired_channels = 0) {
  MARROW_CHECK(desired_channels >= 0 && desired_channels <= 4, "load_image '", name, "': desired_channels ",
               desired_channels, " not in 0..4");
  MARROW_CHECK(!bytes.empty(), "load_image '", name, "': file is empty");  // stb would say "unknown image type"
  MARROW_CHECK(bytes.size() <= std::size_t(std::numeric_limits<int>::max()), "load_image '", name, "': file too large");
  const detail::JpegTables tables = detail::jpeg_huffman_tables_check(bytes.data(), bytes.size());
  MARROW_CHECK(tables != detail::JpegTables::too_many_codes, "load_image '", name,
               "': corrupt JPEG (a Huffman table declares more than 256 codes)");
  MARROW_CHECK(tables != detail::JpegTables::undefined_table, "load_image '", name,
               "': corrupt JPEG (a scan uses a Huffman table that no DHT segment defines)");
  MARROW_CHECK(detail::png_chunks_fit(bytes.data(), bytes.size()), "load_image '", name,
               "': corrupt PNG (a chunk runs past the end of the file; truncated?)");
  int w = 0, h = 0, c = 0;
  // stb's info reports a top-down BMP's height negative (its loader takes the absolute value),
  // so a 5 x -16.7M BMP slipped past a plain w * h check (found by fuzzing). An image whose size
  // cannot be read first is refused.
  MARROW_CHECK(stbi_info_from_memory(bytes.data(), int(bytes.size()), &w, &h, &c), "load_image '", name, "': ",
               stbi_failure_reason());
  const std::int64_t aw = w < 0 ? -std::int64_t(w) : w, ah = h < 0 ? -std::int64_t(h) : h;
  MARROW_CHECK(aw * ah <= kMaxImagePixels, "load_image '", name, "': ", aw, "x", ah,
               " pixels exceed the limit of ", kMaxImagePixels, " (a corrupt header, or too large to train on)");
  unsigned char* p = stbi_load_from_memory(bytes.data(), int(bytes.size()), &w, &h, &c, desired_channels);
  MARROW_CHECK(p != nullptr, "load_image '", name, "': ", stbi_failure_reason());
  if (w <= 0 || h <= 0) {  // stb accepts a BMP of height 0 (found by fuzzing): an image of no pixels
    stbi_image_free(p);
    MARROW_CHECK(false, "load_image '", name, "': empty image (", w, "x", h, " pixels)");
  }
  Image img;
  img.width = w;
  img.height = h;
  img.channels = desired_channels ? desired_channels : c;
  img.pixels.assign(p, p + std::size_t(w) * h * img.channels);
  stbi_image_free(p);
  return img;
}

inline Image load_image(const std::string& path, int desired_channels = 0) {
  return decode_image(read_bytes(path), path, desired_channels);
}

// Encode as PNG (written atomically: path + ".tmp", then rename).
inline void write_png(const std::string& path, const Image& img) {
  MARROW_CHECK(img.channels >= 1 && img.channels <= 4 && img.width > 0 && img.height > 0 &&
                   img.pixels.size() == std::size_t(img.width) * img.height * img.channels,
               "write_png '", path, "': bad image ", img.width, "x", img.height, "x", img.channels, " with ",
               img.pixels.size(), " bytes");
  std::vector<std::uint8_t> buf;
  auto sink = [](void* ctx, void* data, int size) {
    auto* b = static_cast<std::vector<std::uint8_t>*>(ctx);
    b->insert(b->end(), static_cast<std::uint8_t*>(data), static_cast<std::uint8_t*>(data) + size);
  };
  const int ok = stbi_write_png_to_func(sink, &buf, img.width, img.height, img.channels, img.pixels.data(),
                                        img.width * img.channels);
  MARROW_CHECK(ok, "write_png '", path, "': encoding failed");
  write_bytes_atomic(path, buf.data(), buf.size());
}

// ---- Image <-> Tensor ------------------------------------------------------------

// (C, H, W) floats in [0, 1].
template <class T = float> Tensor<T> image_to_tensor(const Image& img) {
  const index_t C = img.channels, H = img.height, W = img.width;
  Tensor<T> t = Tensor<T>::uninitialized(Shape{C, H, W});
  const T s = T(1) / T(255);
  for (index_t c = 0; c < C; ++c) {
    T* dst = t.data() + c * H * W;
    const std::uint8_t* src = img.pixels.data() + c;
    for (index_t i = 0; i < H * W; ++i) dst[i] = T(src[i * C]) * s;
  }
  return t;
}

// (C, H, W) or (H, W) tensor to an image; [lo, hi] maps to [0, 255], values outside are clamped.
template <class T> Image tensor_to_image(const Tensor<T>& t, double lo = 0.0, double hi = 1.0) {
  MARROW_CHECK(t.ndim() == 2 || t.ndim() == 3, "tensor_to_image: want (C, H, W) or (H, W), got ", t.shape().str());
  const index_t C = t.ndim() == 3 ? t.dim(0) : 1, H = t.dim(-2), W = t.dim(-1);
  MARROW_CHECK(C >= 1 && C <= 4, "tensor_to_image: ", C, " channels in ", t.shape().str(), ", want 1..4");
  MARROW_CHECK(hi > lo, "tensor_to_image: empty range [", lo, ", ", hi, "]");
  Image img{int(W), int(H), int(C)};
  const double s = 255.0 / (hi - lo);
  for (index_t c = 0; c < C; ++c) {
    const T* src = t.data() + c * H * W;
    for (index_t i = 0; i < H * W; ++i) {
      const double v = std::clamp((double(src[i]) - lo) * s, 0.0, 255.0);  // NaN-safe: clamp(NaN) stays NaN,
      img.pixels[std::size_t(i * C + c)] = std::uint8_t(v == v ? v + 0.5 : 0.0);  // and NaN is drawn black
    }
  }
  return img;
}

// Same image with `c` channels: grey is replicated into RGB, alpha added opaque or dropped.
inline Image convert_channels(const Image& img, int c) {
  MARROW_CHECK(c >= 1 && c <= 4, "convert_channels: ", c, " channels, want 1..4");
  if (img.channels == c) return img;
  Image out(img.width, img.height, c);
  const int ic = img.channels;
  const bool in_grey = ic <= 2, in_alpha = ic == 2 || ic == 4, out_grey = c <= 2, out_alpha = c == 2 || c == 4;
  for (std::size_t i = 0; i < std::size_t(img.width) * img.height; ++i) {
    const std::uint8_t* s = &img.pixels[i * ic];
    std::uint8_t* d = &out.pixels[i * c];
    if (out_grey) d[0] = in_grey ? s[0] : std::uint8_t((299 * s[0] + 587 * s[1] + 114 * s[2] + 500) / 1000);
    else for (int k = 0; k < 3; ++k) d[k] = in_grey ? s[0] : s[k];
    if (out_alpha) d[c - 1] = in_alpha ? s[ic - 1] : 255;
  }
  return out;
}

// ---- grids -------------------------------------------------------------------------

// Tile images row by row, `columns` per row, `padding` pixels of `pad_value` around each.
// Cells take the largest width/height; channels the largest count (grey becomes RGB).
inline Image make_grid(const std::vector<Image>& images, int columns, int padding = 2, std::uint8_t pad_value = 0) {
  MARROW_CHECK(!images.empty(), "make_grid: no images");
  MARROW_CHECK(columns >= 1 && padding >= 0, "make_grid: columns ", columns, " and padding ", padding,
               " (want columns >= 1, padding >= 0)");
  int cw = 0, ch = 0, cc = 1;
  for (const Image& im : images) {
    cw = std::max(cw, im.width);
    ch = std::max(ch, im.height);
    cc = std::max(cc, im.channels);
  }
  const int n = int(images.size()), cols = std::min(columns, n), rows = (n + cols - 1) / cols;
  Image out(cols * (cw + padding) + padding, rows * (ch + padding) + padding, cc, pad_value);
  if (cc == 2 || cc == 4)  // padding stays opaque
    for (std::size_t i = 0; i < out.pixels.size(); i += cc) out.pixels[i + cc - 1] = 255;
  for (int k = 0; k < n; ++k) {
    const Image im = convert_channels(images[k], cc);
    const int x0 = padding + (k % cols) * (cw + padding), y0 = padding + (k / cols) * (ch + padding);
    for (int y = 0; y < im.height; ++y)
      std::copy_n(&im.pixels[std::size_t(y) * im.width * cc], std::size_t(im.width) * cc, &out.at(y0 + y, x0, 0));
  }
  return out;
}

// A batch (N, C, H, W) (or (N, H, W)) with values in [lo, hi] as one grid image.
template <class T>
Image make_grid(const Tensor<T>& x, int columns, int padding = 2, double lo = 0.0, double hi = 1.0) {
  MARROW_CHECK(x.ndim() == 3 || x.ndim() == 4, "make_grid: want (N, C, H, W) or (N, H, W), got ", x.shape().str());
  std::vector<Image> images;
  const index_t n = x.dim(0), per = x.numel() / std::max<index_t>(n, 1);
  Shape one = x.shape();
  one.erase(0);
  for (index_t i = 0; i < n; ++i) {
    Tensor<T> s = Tensor<T>::uninitialized(one);
    std::copy_n(x.data() + i * per, per, s.data());
    images.push_back(tensor_to_image(s, lo, hi));
  }
  return make_grid(images, columns, padding);
}

// ---- folders -------------------------------------------------------------------------

// Files in `dir` whose extension (lowercased, with dot) is in `exts` (all files when empty),
// in natural order: "2.png" before "10.png", as numbered slices must be read.
inline std::vector<std::string> list_files(const std::string& dir, const std::vector<std::string>& exts = {}) {
  MARROW_CHECK(std::filesystem::is_directory(dir), "list_files: '", dir, "' is not a directory");
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    std::string ext = e.path().extension().string();
    for (char& ch : ext) ch = char(std::tolower(static_cast<unsigned char>(ch)));
    if (exts.empty() || std::find(exts.begin(), exts.end(), ext) != exts.end()) out.push_back(e.path().string());
  }
  auto natural_less = [](const std::string& a, const std::string& b) {
    std::size_t i = 0, j = 0;
    while (i < a.size() && j < b.size()) {
      if (std::isdigit(static_cast<unsigned char>(a[i])) && std::isdigit(static_cast<unsigned char>(b[j]))) {
        std::size_t i2 = i, j2 = j;
        while (i2 < a.size() && a[i2] == '0') ++i2;  // compare digit runs by value: length, then lexically
        while (j2 < b.size() && b[j2] == '0') ++j2;
        std::size_t ie = i2, je = j2;
        while (ie < a.size() && std::isdigit(static_cast<unsigned char>(a[ie]))) ++ie;
        while (je < b.size() && std::isdigit(static_cast<unsigned char>(b[je]))) ++je;
        if (ie - i2 != je - j2) return ie - i2 < je - j2;
        const int c = a.compare(i2, ie - i2, b, j2, je - j2);
        if (c != 0) return c < 0;
        i = ie;
        j = je;
      } else {
        if (a[i] != b[j]) return a[i] < b[j];
        ++i;
        ++j;
      }
    }
    return a.size() - i < b.size() - j;
  };
  std::sort(out.begin(), out.end(), natural_less);
  return out;
}

struct ImageFolder {
  Tensor<float> images;          // (N, C, H, W) in [0, 1]
  Tensor<std::int32_t> labels;   // (N,), index into classes
  std::vector<std::string> classes;  // subfolder names, sorted
};

// root/<class>/*.{png,jpg,jpeg,bmp} (e.g. cifar10-jpg/train): every image must have the
// same size. At most max_per_class files per class (natural order) when >= 0.
inline ImageFolder load_image_folder(const std::string& root, int channels = 3, index_t max_per_class = -1) {
  MARROW_CHECK(std::filesystem::is_directory(root), "load_image_folder: '", root, "' is not a directory");
  ImageFolder f;
  for (const auto& e : std::filesystem::directory_iterator(root))
    if (e.is_directory()) f.classes.push_back(e.path().filename().string());
  std::sort(f.classes.begin(), f.classes.end());
  MARROW_CHECK(!f.classes.empty(), "load_image_folder: no class subfolders in '", root, "'");
  std::vector<std::string> files;
  std::vector<std::int32_t> labels;
  for (std::size_t k = 0; k < f.classes.size(); ++k) {
    auto list = list_files((std::filesystem::path(root) / f.classes[k]).string(), {".png", ".jpg", ".jpeg", ".bmp"});
    if (max_per_class >= 0 && index_t(list.size()) > max_per_class) list.resize(std::size_t(max_per_class));
    for (auto& p : list) {
      files.push_back(std::move(p));
      labels.push_back(std::int32_t(k));
    }
  }
  MARROW_CHECK(!files.empty(), "load_image_folder: no images under '", root, "'");
  const Image first = load_image(files[0], channels);
  const index_t N = index_t(files.size()), C = channels, H = first.height, W = first.width;
  f.images = Tensor<float>::uninitialized(Shape{N, C, H, W});
  f.labels = Tensor<std::int32_t>(Shape{N}, labels);
  // Decoding dominates (50k JPEGs); errors cannot leave an OpenMP region, so collect the first.
  std::string error;
#pragma omp parallel for schedule(dynamic, 64) if (N > 256)
  for (index_t i = 0; i < N; ++i) {
    try {
      const Image im = load_image(files[std::size_t(i)], channels);
      MARROW_CHECK(im.width == W && im.height == H, "load_image_folder: '", files[std::size_t(i)], "' is ", im.width,
                   "x", im.height, ", expected ", W, "x", H, " like '", files[0], "'");
      const Tensor<float> t = image_to_tensor<float>(im);
      std::copy_n(t.data(), C * H * W, f.images.data() + i * C * H * W);
    } catch (const std::exception& ex) {
#pragma omp critical(marrow_image_folder)
      if (error.empty()) error = ex.what();
    }
  }
  MARROW_CHECK(error.empty(), error);
  return f;
}

}  // namespace marrow::data
