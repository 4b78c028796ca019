#pragma once
// IDX files (the MNIST format), raw or gzipped, and the MNIST loader.
//
// IDX layout: two zero bytes, a type code, a rank byte, `rank` big-endian
// uint32 dims, then the elements row-major in big-endian order.
// Gzip (RFC 1952) is unwrapped here and the raw deflate stream inflated by
// stb_image's zlib, so no new library is needed. Every length read from the
// file is checked against the bytes actually present before it is used:
// these readers must survive fuzzed input by throwing, never by over-reading.
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "../config.hpp"
#include "../tensor.hpp"
#include "file.hpp"
#include "stb_impl.hpp"

namespace marrow::data {

// ---- gzip ----------------------------------------------------------------------

namespace detail {
// CRC-32 (IEEE, reflected 0xEDB88320), slicing-by-8: ~1 GB/s, so checking the
// 47 MB MNIST train images costs tens of milliseconds, not hundreds.
using Crc32Tables = std::array<std::array<std::uint32_t, 256>, 8>;
constexpr Crc32Tables make_crc32_tables() {
  Crc32Tables t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    t[0][i] = c;
  }
  for (std::uint32_t i = 0; i < 256; ++i)
    for (int s = 1; s < 8; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xFF];
  return t;
}
inline constexpr Crc32Tables kCrc32 = make_crc32_tables();
}  // namespace detail

inline std::uint32_t crc32(const std::uint8_t* p, std::size_t n, std::uint32_t crc = 0) {
  const auto& t = detail::kCrc32;
  crc = ~crc;
  for (; n >= 8; n -= 8, p += 8) {
    const std::uint32_t a = (std::uint32_t(p[0]) | std::uint32_t(p[1]) << 8 | std::uint32_t(p[2]) << 16 |
                             std::uint32_t(p[3]) << 24) ^ crc;
    crc = t[7][a & 0xFF] ^ t[6][(a >> 8) & 0xFF] ^ t[5][(a >> 16) & 0xFF] ^ t[4][a >> 24] ^ t[3][p[4]] ^
          t[2][p[5]] ^ t[1][p[6]] ^ t[0][p[7]];
  }
  for (; n; --n, ++p) crc = t[0][(crc ^ *p) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

inline bool is_gzip(const std::vector<std::uint8_t>& b) { return b.size() >= 2 && b[0] == 0x1F && b[1] == 0x8B; }

// Inflate a single-member gzip stream; `name` (the file) goes into every error.
inline std::vector<std::uint8_t> gunzip(const std::vector<std::uint8_t>& in, const std::string& name) {
  const std::size_t n = in.size();
  MARROW_CHECK(n >= 18, "gzip '", name, "': truncated (", n, " bytes; a gzip file has at least 18)");
  MARROW_CHECK(is_gzip(in), "gzip '", name, "': bad magic (not a gzip file)");
  MARROW_CHECK(in[2] == 8, "gzip '", name, "': bad header (compression method ", int(in[2]), ", only 8 = deflate)");
  const std::uint8_t flags = in[3];
  MARROW_CHECK((flags & 0xE0) == 0, "gzip '", name, "': bad header (reserved flag bits set)");
  const std::size_t end = n - 8;  // the trailer: CRC32, ISIZE
  std::size_t pos = 10;
  if (flags & 0x04) {  // FEXTRA: 2-byte length, then that many bytes
    MARROW_CHECK(pos + 2 <= end, "gzip '", name, "': bad header (truncated FEXTRA)");
    const std::size_t xlen = std::size_t(in[pos]) | std::size_t(in[pos + 1]) << 8;
    pos += 2;
    MARROW_CHECK(xlen <= end - pos, "gzip '", name, "': bad header (FEXTRA of ", xlen, " bytes overruns the file)");
    pos += xlen;
  }
  for (std::uint8_t f : {std::uint8_t(0x08), std::uint8_t(0x10)}) {  // FNAME, FCOMMENT: zero-terminated
    if (!(flags & f)) continue;
    while (pos < end && in[pos] != 0) ++pos;
    MARROW_CHECK(pos < end, "gzip '", name, "': bad header (unterminated ", f == 0x08 ? "FNAME" : "FCOMMENT", ")");
    ++pos;
  }
  if (flags & 0x02) {  // FHCRC: low 16 bits of the CRC32 of the header so far
    MARROW_CHECK(pos + 2 <= end, "gzip '", name, "': bad header (truncated FHCRC)");
    const std::uint32_t want = std::uint32_t(in[pos]) | std::uint32_t(in[pos + 1]) << 8;
    MARROW_CHECK((crc32(in.data(), pos) & 0xFFFF) == want, "gzip '", name, "': bad header (header CRC mismatch)");
    pos += 2;
  }
  auto le32 = [&](std::size_t i) {
    return std::uint32_t(in[i]) | std::uint32_t(in[i + 1]) << 8 | std::uint32_t(in[i + 2]) << 16 |
           std::uint32_t(in[i + 3]) << 24;
  };
  const std::uint32_t want_crc = le32(end), want_size = le32(end + 4);
  // stb's inflater refuses a Huffman symbol when fewer than 16 bits remain in its input,
  // even if the symbol is shorter (in PNGs the Adler-32 always follows). Handing it the
  // 8 trailer bytes too gives it that lookahead; it stops at the final block regardless.
  const std::size_t clen = n - pos;
  MARROW_CHECK(clen <= std::size_t(std::numeric_limits<int>::max()), "gzip '", name, "': too large (", n,
               " bytes; at most 2 GiB supported)");
  // ISIZE is a good first guess for the output buffer, but it is attacker-controlled:
  // deflate never expands more than ~1032:1, so cap the guess by that.
  const double cap = 1032.0 * double(clen) + 1024.0;
  const int guess = int(std::min({double(want_size), cap, double(std::numeric_limits<int>::max() / 2)})) + 1;
  int out_len = 0;
  char* raw = stbi_zlib_decode_malloc_guesssize_headerflag(reinterpret_cast<const char*>(in.data() + pos), int(clen),
                                                           guess, &out_len, /*parse_header=*/0);
  MARROW_CHECK(raw != nullptr, "gzip '", name, "': bad deflate data (", stbi_failure_reason(), ")");
  std::vector<std::uint8_t> out;
  try {
    MARROW_CHECK(out_len >= 0, "gzip '", name, "': decompressed size exceeds 2 GiB");
    out.assign(reinterpret_cast<std::uint8_t*>(raw), reinterpret_cast<std::uint8_t*>(raw) + out_len);
  } catch (...) {
    std::free(raw);
    throw;
  }
  std::free(raw);
  MARROW_CHECK(std::uint32_t(out.size()) == want_size, "gzip '", name, "': ISIZE mismatch (trailer says ", want_size,
               " bytes, inflated ", out.size(), "; truncated, corrupt or multi-member file)");
  const std::uint32_t got_crc = crc32(out.data(), out.size());
  MARROW_CHECK(got_crc == want_crc, "gzip '", name, "': CRC mismatch (trailer 0x", std::hex, want_crc, ", data 0x",
               got_crc, ")");
  return out;
}

// A single-member gzip stream (deflate by stb_image_write, fixed Huffman codes).
inline std::vector<std::uint8_t> gzip(const std::uint8_t* data, std::size_t n, int quality = 6) {
  MARROW_CHECK(n <= std::size_t(std::numeric_limits<int>::max()), "gzip: input of ", n, " bytes exceeds 2 GiB");
  int zlen = 0;
  unsigned char* z = stbi_zlib_compress(const_cast<unsigned char*>(data), int(n), &zlen, quality);
  MARROW_CHECK(z != nullptr && zlen >= 6, "gzip: compression failed");
  // stb emits a zlib stream: drop its 2-byte header and 4-byte Adler-32 to get raw deflate.
  std::vector<std::uint8_t> out = {0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 0xFF};
  out.insert(out.end(), z + 2, z + zlen - 4);
  STBIW_FREE(z);
  if (n == 0) out.insert(out.end(), {0x03, 0x00});  // stb writes no block at all for empty input; this is an empty final one

  const std::uint32_t crc = crc32(data, n), size = std::uint32_t(n);
  for (int i = 0; i < 4; ++i) out.push_back(std::uint8_t(crc >> (8 * i)));
  for (int i = 0; i < 4; ++i) out.push_back(std::uint8_t(size >> (8 * i)));
  return out;
}

// ---- IDX -----------------------------------------------------------------------

// Element type codes of the IDX format.
enum class IdxType : std::uint8_t { U8 = 0x08, I8 = 0x09, I16 = 0x0B, I32 = 0x0C, F32 = 0x0D, F64 = 0x0E };

inline int idx_type_size(IdxType t) {
  switch (t) {
    case IdxType::U8: case IdxType::I8: return 1;
    case IdxType::I16: return 2;
    case IdxType::I32: case IdxType::F32: return 4;
    case IdxType::F64: return 8;
  }
  return 0;
}

struct IdxArray {
  std::vector<index_t> dims;
  std::vector<std::uint8_t> data;  // elements in host byte order, row-major
  IdxType type = IdxType::U8;

  index_t numel() const {
    index_t n = 1;
    for (index_t d : dims) n *= d;
    return n;
  }
  // Element i converted to double (any IdxType).
  double get(index_t i) const {
    const std::uint8_t* p = data.data() + i * idx_type_size(type);
    switch (type) {
      case IdxType::U8: return *p;
      case IdxType::I8: return std::int8_t(*p);
      case IdxType::I16: { std::int16_t v; std::memcpy(&v, p, 2); return v; }
      case IdxType::I32: { std::int32_t v; std::memcpy(&v, p, 4); return v; }
      case IdxType::F32: { float v; std::memcpy(&v, p, 4); return v; }
      case IdxType::F64: { double v; std::memcpy(&v, p, 8); return v; }
    }
    return 0;
  }
  // As a tensor of the same shape, each element converted to T and multiplied by `scale`.
  template <class T> Tensor<T> to_tensor(double scale = 1.0) const {
    Tensor<T> t = Tensor<T>::uninitialized(Shape(dims));
    if (type == IdxType::U8) {  // the common case, kept a tight loop
      const T s = T(scale);
      for (index_t i = 0; i < t.numel(); ++i) t[i] = T(data[std::size_t(i)]) * s;
    } else {
      for (index_t i = 0; i < t.numel(); ++i) t[i] = T(get(i) * scale);
    }
    return t;
  }
};

// Parse IDX bytes (already inflated); `name` goes into every error.
inline IdxArray parse_idx(const std::vector<std::uint8_t>& b, const std::string& name) {
  MARROW_CHECK(b.size() >= 4, "IDX '", name, "': truncated (", b.size(), " bytes, header needs 4)");
  MARROW_CHECK(b[0] == 0 && b[1] == 0, "IDX '", name, "': bad magic 0x", std::hex, (unsigned(b[0]) << 24 | unsigned(b[1]) << 16 | unsigned(b[2]) << 8 | b[3]),
               " (must start with two zero bytes)");
  IdxArray a;
  a.type = IdxType(b[2]);
  const int esize = idx_type_size(a.type);
  MARROW_CHECK(esize > 0, "IDX '", name, "': bad magic 0x", std::hex, (unsigned(b[2]) << 8 | b[3]), " (unknown type code 0x",
               unsigned(b[2]), ")");
  const std::size_t rank = b[3];
  const std::size_t header = 4 + 4 * rank;
  MARROW_CHECK(b.size() >= header, "IDX '", name, "': truncated header (rank ", rank, " needs ", header, " bytes, file has ",
               b.size(), ")");
  // Products of up to 255 uint32 dims overflow anything; compare against the bytes present as we go.
  const std::size_t avail = (b.size() - header) / std::size_t(esize);
  for (std::size_t i = 0; i < rank; ++i) {
    const std::size_t p = 4 + 4 * i;
    a.dims.push_back(index_t(std::uint32_t(b[p]) << 24 | std::uint32_t(b[p + 1]) << 16 | std::uint32_t(b[p + 2]) << 8 | b[p + 3]));
  }
  // Up to 255 uint32 dims: the product can overflow 64 bits, so it is computed with checks.
  // A zero dim makes the array empty, but the other dims must still multiply within
  // index_t: numel() and Shape multiply all of them (fuzzing found 0 x 2^31 x ... overflowing).
  std::uint64_t count = 1, declared = 0;
  bool over = false;
  for (index_t d : a.dims)
    if (d != 0) over = __builtin_mul_overflow(count, std::uint64_t(d), &count) || over;
  over = over || count > std::uint64_t(std::numeric_limits<index_t>::max());
  if (std::find(a.dims.begin(), a.dims.end(), 0) != a.dims.end()) count = 0;
  over = over || __builtin_mul_overflow(count, std::uint64_t(esize), &declared);
  std::string dims_str;
  for (std::size_t i = 0; i < rank; ++i) dims_str += (i ? "x" : "") + std::to_string(a.dims[i]);
  MARROW_CHECK(!over && count <= avail, "IDX '", name, "': truncated (dims ", dims_str, " declare ",
               over ? std::string("more than 2^64") : std::to_string(declared), " data bytes, file has ",
               b.size() - header, ")");
  MARROW_CHECK(count == avail && (b.size() - header) % std::size_t(esize) == 0, "IDX '", name, "': size mismatch (dims ",
               dims_str, " declare ", declared, " data bytes, file has ", b.size() - header, ")");
  a.data.resize(std::size_t(declared));
  const std::uint8_t* src = b.data() + header;
  if (esize == 1) {
    if (!a.data.empty())
      std::memcpy(a.data.data(), src, a.data.size());
  } else {  // big-endian on disk to host (little-endian on every target we build for)
    for (std::size_t i = 0; i < count; ++i)
      for (int k = 0; k < esize; ++k) a.data[i * esize + k] = src[i * esize + (esize - 1 - k)];
  }
  return a;
}

// Read an IDX file, gzipped or not (detected by content, not by name).
inline IdxArray read_idx(const std::string& path) {
  std::vector<std::uint8_t> bytes = read_bytes(path);
  if (is_gzip(bytes)) return parse_idx(gunzip(bytes, path), path);
  return parse_idx(bytes, path);
}

// Write an IDX file; gzipped when `compress` (e.g. for a path ending in .gz).
inline void write_idx(const std::string& path, const IdxArray& a, bool compress = false) {
  const int esize = idx_type_size(a.type);
  MARROW_CHECK(esize > 0 && a.dims.size() <= 255, "write_idx '", path, "': bad type or rank ", a.dims.size());
  MARROW_CHECK(index_t(a.data.size()) == a.numel() * esize, "write_idx '", path, "': ", a.data.size(),
               " data bytes for ", a.numel(), " elements of size ", esize);
  std::vector<std::uint8_t> b = {0, 0, std::uint8_t(a.type), std::uint8_t(a.dims.size())};
  for (index_t d : a.dims) {
    MARROW_CHECK(d >= 0 && d <= index_t(0xFFFFFFFF), "write_idx '", path, "': dim ", d, " does not fit in uint32");
    for (int s = 24; s >= 0; s -= 8) b.push_back(std::uint8_t(std::uint64_t(d) >> s));
  }
  const std::size_t n = a.data.size() / std::size_t(esize);
  for (std::size_t i = 0; i < n; ++i)
    for (int k = esize - 1; k >= 0; --k) b.push_back(a.data[i * esize + k]);
  if (compress) b = gzip(b.data(), b.size());
  write_bytes_atomic(path, b.data(), b.size());
}

// ---- MNIST ---------------------------------------------------------------------

struct Mnist {
  Tensor<float> images;          // (N, 1, 28, 28), in [0, 1] (or 0..255 when unscaled)
  Tensor<std::int32_t> labels;   // (N,), 0..9
};

namespace detail {
// The first existing one of the names the MNIST files go by (.gz or not, '-' or '.').
inline std::string find_mnist_file(const std::string& dir, const std::string& split, const char* kind) {
  const std::string base[] = {split + "-" + kind + "-idx" + (kind[0] == 'i' ? "3" : "1") + "-ubyte",
                              split + "-" + kind + ".idx" + (kind[0] == 'i' ? "3" : "1") + "-ubyte"};
  for (const auto& b : base)
    for (const char* ext : {".gz", ""}) {
      const std::filesystem::path p = std::filesystem::path(dir) / (b + ext);
      if (std::filesystem::exists(p)) return p.string();
    }
  MARROW_CHECK(false, "load_mnist: no file '", base[0], "[.gz]' in '", dir, "'");
  return {};
}
}  // namespace detail

// The MNIST folder beside a checkout (`<source>/../shared/data/mnist`) when it
// holds the training images, else Debian's Fashion-MNIST (dataset-fashion-mnist):
// the examples' offline default.
inline std::string default_mnist_dir(const std::string& source_dir) {
  const std::string mnist = source_dir + "/../shared/data/mnist";
  if (std::filesystem::exists(mnist + "/train-images-idx3-ubyte.gz") ||
      std::filesystem::exists(mnist + "/train-images-idx3-ubyte"))
    return mnist;
  return "/usr/share/datasets/fashion-mnist";
}
// "fashion-mnist" or "mnist", from the folder name, for reports.
inline std::string mnist_dataset_name(const std::string& dir) {
  return dir.find("fashion") != std::string::npos ? "fashion-mnist" : "mnist";
}

// MNIST split "train" or "t10k" from `dir`; pixels scaled to [0, 1] unless scale01 is false.
inline Mnist load_mnist(const std::string& dir, const std::string& split = "train", bool scale01 = true) {
  MARROW_CHECK(split == "train" || split == "t10k", "load_mnist: split must be \"train\" or \"t10k\", got \"", split, "\"");
  const std::string ipath = detail::find_mnist_file(dir, split, "images");
  const std::string lpath = detail::find_mnist_file(dir, split, "labels");
  const IdxArray im = read_idx(ipath), lb = read_idx(lpath);
  MARROW_CHECK(im.type == IdxType::U8 && im.dims.size() == 3, "load_mnist: '", ipath,
               "' is not a ubyte image file (want magic 0x00000803)");
  MARROW_CHECK(lb.type == IdxType::U8 && lb.dims.size() == 1, "load_mnist: '", lpath,
               "' is not a ubyte label file (want magic 0x00000801)");
  MARROW_CHECK(im.dims[0] == lb.dims[0], "load_mnist: count mismatch: '", ipath, "' has ", im.dims[0], " images, '", lpath,
               "' has ", lb.dims[0], " labels");
  Mnist m;
  m.images = im.to_tensor<float>(scale01 ? 1.0 / 255.0 : 1.0).reshape({im.dims[0], 1, im.dims[1], im.dims[2]});
  m.labels = Tensor<std::int32_t>::uninitialized(Shape{lb.dims[0]});
  for (index_t i = 0; i < lb.dims[0]; ++i) {
    const int v = lb.data[std::size_t(i)];
    MARROW_CHECK(v < 10, "load_mnist: '", lpath, "': label ", v, " at index ", i, " is not a digit 0..9");
    m.labels[i] = v;
  }
  return m;
}

}  // namespace marrow::data
