// Data pipeline: IDX + gzip, images, text, colour spaces, batch loaders.
// Fixtures are generated into a temp dir; tests on the real data sets skip
// when the shared data sets ($MARROW_SHARED_DATA, or shared/data beside the source tree) are absent.
#include <marrow/data/color.hpp>
#include <marrow/data/idx.hpp>
#include <marrow/data/image.hpp>
#include <marrow/data/kmeans.hpp>
#include <marrow/data/loader.hpp>
#include <marrow/data/text.hpp>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>
#include <unistd.h>

#include "testing.hpp"

using namespace marrow;
using namespace marrow::data;
namespace fs = std::filesystem;

namespace {
// A fresh directory removed at scope exit.
struct TempDir {
  fs::path path;
  TempDir() {
    static std::atomic<int> counter{0};
    path = fs::temp_directory_path() / ("marrow_data_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

void write_file(const std::string& path, const std::vector<std::uint8_t>& b) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}

// The shared data sets: $MARROW_SHARED_DATA, else shared/data inside or beside the
// source tree; "" when this machine has none.
std::string shared_data() {
  if (const char* e = std::getenv("MARROW_SHARED_DATA"); e && *e) return fs::is_directory(e) ? e : "";
#ifdef MARROW_SOURCE_DIR
  for (const char* rel : {"/shared/data", "/../shared/data"})
    if (fs::is_directory(std::string(MARROW_SOURCE_DIR) + rel)) return std::string(MARROW_SOURCE_DIR) + rel;
#endif
  return "";
}
#define MARROW_NEED_SHARED(sub)                                                      \
  const std::string shared = shared_data();                                          \
  if (shared.empty() || !fs::exists(shared + "/" sub)) {                             \
    MESSAGE("skipped: shared data '" sub "' not found (set MARROW_SHARED_DATA)");    \
    return;                                                                          \
  }

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// "hello hello hello marrow\n" by Python's gzip: fixed Huffman, FNAME set.
const std::vector<std::uint8_t> kGzipHelloNamed = {
    0x1f, 0x8b, 0x08, 0x08, 0x00, 0x00, 0x00, 0x00, 0x02, 0xff, 0x6e, 0x61, 0x6d, 0x65, 0x2e, 0x74, 0x78, 0x74, 0x00, 0xcb, 0x48, 0xcd,
    0xc9, 0xc9, 0x57, 0xc8, 0x40, 0x22, 0x73, 0x13, 0x8b, 0x8a, 0xf2, 0xcb, 0xb9, 0x00, 0x5e, 0x3c, 0xf2, 0x0e, 0x19, 0x00, 0x00, 0x00};
// 300 random bytes over "abcd\n" by Python's gzip -9: a dynamic-Huffman block.
const std::vector<std::uint8_t> kGzipDynamic = {
    0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0x35, 0x8f, 0xd1, 0x11, 0xc0, 0x30, 0x08, 0x42, 0xff, 0xdd, 0x12, 0x70,
    0xff, 0x19, 0x0a, 0x98, 0xda, 0xeb, 0xb5, 0x41, 0x7c, 0x41, 0x80, 0x98, 0x1d, 0x01, 0x03, 0x09, 0x4b, 0x58, 0x70, 0xc9, 0x0f, 0x76,
    0x72, 0xb0, 0xa6, 0xa8, 0x14, 0x48, 0x3b, 0x6b, 0x24, 0xb1, 0x76, 0x71, 0x7c, 0x74, 0xa3, 0x25, 0xf2, 0xbc, 0xf6, 0xf8, 0x3b, 0x94,
    0x87, 0xb6, 0xad, 0x32, 0x37, 0x10, 0x64, 0xb4, 0x38, 0x9b, 0x67, 0xfc, 0xa7, 0x80, 0xd1, 0xc1, 0xbe, 0xab, 0x43, 0x0b, 0x67, 0xcc,
    0x80, 0x1e, 0x00, 0x15, 0x9b, 0x81, 0xb9, 0xf8, 0xa1, 0xa2, 0x46, 0x78, 0xc5, 0x56, 0x36, 0x43, 0xb9, 0xc2, 0xc3, 0x47, 0xfd, 0x57,
    0xd4, 0xad, 0x89, 0x06, 0x94, 0xb3, 0xcf, 0x6b, 0x38, 0x58, 0x2e, 0x4f, 0x74, 0x13, 0x78, 0x6a, 0x68, 0x1f, 0x59, 0x19, 0xb1, 0x17,
    0x2c, 0x01, 0x00, 0x00};

std::vector<std::uint8_t> bytes_of(const std::string& s) { return {s.begin(), s.end()}; }

// A gzip member holding `data` in one stored (uncompressed) deflate block, with optional header fields.
std::vector<std::uint8_t> gzip_stored(const std::vector<std::uint8_t>& data, std::uint8_t flags) {
  std::vector<std::uint8_t> g = {0x1f, 0x8b, 8, flags, 0, 0, 0, 0, 0, 3};
  if (flags & 0x04) g.insert(g.end(), {3, 0, 'a', 'b', 'c'});
  if (flags & 0x08) g.insert(g.end(), {'f', '.', 'i', 'd', 'x', 0});
  if (flags & 0x10) g.insert(g.end(), {'h', 'i', 0});
  if (flags & 0x02) {
    const std::uint32_t c = crc32(g.data(), g.size());
    g.insert(g.end(), {std::uint8_t(c), std::uint8_t(c >> 8)});
  }
  const auto n = std::uint16_t(data.size());
  g.insert(g.end(), {1, std::uint8_t(n), std::uint8_t(n >> 8), std::uint8_t(~n), std::uint8_t(~n >> 8)});
  g.insert(g.end(), data.begin(), data.end());
  const std::uint32_t c = crc32(data.data(), data.size());
  for (int i = 0; i < 4; ++i) g.push_back(std::uint8_t(c >> (8 * i)));
  for (int i = 0; i < 4; ++i) g.push_back(std::uint8_t(data.size() >> (8 * i)));
  return g;
}

IdxArray make_u8(std::vector<index_t> dims, std::uint8_t start = 0) {
  IdxArray a;
  a.dims = std::move(dims);
  a.data.resize(std::size_t(a.numel()));
  for (std::size_t i = 0; i < a.data.size(); ++i) a.data[i] = std::uint8_t(start + i * 7);
  return a;
}
}  // namespace

// ---- gzip -------------------------------------------------------------------------------

TEST_CASE("data: crc32 matches the standard check value") {
  const std::string s = "123456789";
  CHECK(crc32(reinterpret_cast<const std::uint8_t*>(s.data()), s.size()) == 0xCBF43926u);
  // Slicing-by-8 and the byte loop agree across every split point.
  std::vector<std::uint8_t> b(37);
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = std::uint8_t(i * 31 + 5);
  const std::uint32_t whole = crc32(b.data(), b.size());
  for (std::size_t k = 0; k <= b.size(); ++k) CHECK(crc32(b.data() + k, b.size() - k, crc32(b.data(), k)) == whole);
}

TEST_CASE("data: gunzip reads real gzip streams (fixed and dynamic Huffman, FNAME)") {
  const auto h = gunzip(kGzipHelloNamed, "hello.gz");
  CHECK(std::string(h.begin(), h.end()) == "hello hello hello marrow\n");
  const auto d = gunzip(kGzipDynamic, "dyn.gz");
  REQUIRE(d.size() == 300);
  CHECK(std::string(d.begin(), d.begin() + 10) == "aaba\nd\ncaa");
}

TEST_CASE("data: gunzip header flags FEXTRA/FNAME/FCOMMENT/FHCRC and stored blocks") {
  const auto data = bytes_of("stored block payload");
  for (std::uint8_t flags : {0x00, 0x02, 0x04, 0x08, 0x10, 0x1E}) {
    CAPTURE(int(flags));
    CHECK(gunzip(gzip_stored(data, flags), "x.gz") == data);
  }
  // Our writer round-trips, including empty input.
  for (const std::string s : {"", "a", "abcabcabcabcabcabc"}) {
    const auto b = bytes_of(s);
    CHECK(gunzip(gzip(b.data(), b.size()), "rt.gz") == b);
  }
}

TEST_CASE("data: gunzip errors name the file and the fault") {
  const auto good = gzip_stored(bytes_of("payload!"), 0x1E);
  auto bad = [&](auto mutate, const char* what) {
    auto g = good;
    mutate(g);
    CHECK_THROWS_WITH_AS(gunzip(g, "f.gz"), doctest::Contains(what), Error);
    CHECK_THROWS_WITH_AS(gunzip(g, "f.gz"), doctest::Contains("'f.gz'"), Error);
  };
  bad([](auto& g) { g[0] = 0x1e; }, "bad magic");
  bad([](auto& g) { g[2] = 7; }, "compression method 7");
  bad([](auto& g) { g[3] |= 0x80; }, "reserved flag");
  bad([](auto& g) { g.resize(12); }, "truncated");
  bad([](auto& g) { g[g.size() - 8] ^= 1; }, "CRC mismatch");
  bad([](auto& g) { g[g.size() - 4] ^= 1; }, "ISIZE mismatch");
  bad([](auto& g) { g[g.size() - 10] ^= 0x40; }, "CRC mismatch");  // payload byte
  bad([](auto& g) { g[12] ^= 1; }, "header CRC mismatch");         // inside FEXTRA, covered by FHCRC
  bad([](auto& g) { g[10] = 0xFF; g[11] = 0xFF; }, "FEXTRA");       // XLEN overruns the file
  bad([](auto& g) { g.resize(26); g.insert(g.end(), 8, 0); }, "bad deflate data");  // stored LEN/NLEN cut
  // FNAME that never terminates
  std::vector<std::uint8_t> g = {0x1f, 0x8b, 8, 0x08, 0, 0, 0, 0, 0, 3};
  g.insert(g.end(), 20, 'n');
  CHECK_THROWS_WITH_AS(gunzip(g, "f.gz"), doctest::Contains("unterminated FNAME"), Error);
}

// ---- IDX --------------------------------------------------------------------------------

TEST_CASE("data: parse_idx decodes hand-written big-endian files of every type") {
  auto u8 = parse_idx({0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 250}, "u8");
  CHECK(u8.dims == std::vector<index_t>{2, 3});
  CHECK(u8.type == IdxType::U8);
  auto t = u8.to_tensor<float>();
  CHECK(t.shape() == Shape{2, 3});
  CHECK(t.at({1, 2}) == 250.0f);
  CHECK(u8.to_tensor<double>(0.5).at({0, 1}) == 1.0);

  auto i16 = parse_idx({0, 0, 0x0B, 1, 0, 0, 0, 2, 0x01, 0x02, 0xFF, 0xFE}, "i16");
  CHECK(i16.get(0) == 258);
  CHECK(i16.get(1) == -2);
  auto i8 = parse_idx({0, 0, 0x09, 1, 0, 0, 0, 1, 0xFF}, "i8");
  CHECK(i8.get(0) == -1);
  auto i32 = parse_idx({0, 0, 0x0C, 1, 0, 0, 0, 1, 0xFF, 0xFF, 0xFF, 0xFD}, "i32");
  CHECK(i32.get(0) == -3);
  auto f32 = parse_idx({0, 0, 0x0D, 1, 0, 0, 0, 1, 0x3F, 0xC0, 0, 0}, "f32");  // 1.5f
  CHECK(f32.get(0) == 1.5);
  auto f64 = parse_idx({0, 0, 0x0E, 1, 0, 0, 0, 1, 0xC0, 0x04, 0, 0, 0, 0, 0, 0}, "f64");  // -2.5
  CHECK(f64.to_tensor<double>()[0] == -2.5);
  auto scalar = parse_idx({0, 0, 0x08, 0, 42}, "rank0");  // rank 0: one element
  CHECK(scalar.numel() == 1);
  CHECK(scalar.get(0) == 42);
  auto empty = parse_idx({0, 0, 0x08, 2, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF}, "empty");  // 0 x 4294967295
  CHECK(empty.numel() == 0);
}

TEST_CASE("data: write_bytes_atomic replaces a file whole and names a path it cannot write") {
  TempDir dir;
  const std::string path = dir / "x.bin";
  const std::uint8_t first[3] = {1, 2, 3}, second[2] = {4, 5};
  write_bytes_atomic(path, first, 3);
  write_bytes_atomic(path, second, 2);
  CHECK(read_bytes(path) == std::vector<std::uint8_t>{4, 5});
  CHECK(!std::filesystem::exists(path + ".tmp"));
  CHECK_THROWS_WITH(write_bytes_atomic("/nonexistent/dir/x.bin", first, 3),
                    doctest::Contains("cannot create /nonexistent/dir/x.bin.tmp"));
}

TEST_CASE("data: write_idx/read_idx round trip, raw and gzipped") {
  TempDir dir;
  IdxArray f;
  f.type = IdxType::F32;
  f.dims = {2, 2};
  const float vals[4] = {1.5f, -2.25f, 3e-7f, 65504.0f};
  f.data.resize(16);
  std::memcpy(f.data.data(), vals, 16);
  for (bool gz : {false, true}) {
    CAPTURE(gz);
    const auto a = make_u8({3, 4, 5}, 9);
    write_idx(dir / "a.idx", a, gz);
    const auto b = read_idx(dir / "a.idx");
    CHECK(b.dims == a.dims);
    CHECK(b.data == a.data);
    CHECK(!fs::exists(dir / "a.idx.tmp"));
    write_idx(dir / "f.idx", f, gz);
    const auto g = read_idx(dir / "f.idx");
    CHECK(g.type == IdxType::F32);
    CHECK(g.to_tensor<float>().at({1, 1}) == 65504.0f);
    CHECK(g.to_tensor<float>().at({0, 1}) == -2.25f);
  }
  CHECK(is_gzip(read_bytes(dir / "f.idx")));
}

TEST_CASE("data: parse_idx errors: bad magic, unknown type, truncated, size mismatch") {
  CHECK_THROWS_WITH_AS(parse_idx({0, 1, 8, 1, 0, 0, 0, 1, 5}, "x.idx"), doctest::Contains("IDX 'x.idx': bad magic 0x10801"),
                       Error);
  CHECK_THROWS_WITH_AS(parse_idx({0, 0, 0x0A, 1, 0, 0, 0, 1, 5}, "x.idx"), doctest::Contains("unknown type code 0xa"), Error);
  CHECK_THROWS_WITH_AS(parse_idx({0, 0, 8}, "x.idx"), doctest::Contains("truncated (3 bytes"), Error);
  CHECK_THROWS_WITH_AS(parse_idx({0, 0, 8, 3, 0, 0, 0, 1}, "x.idx"), doctest::Contains("truncated header (rank 3 needs 16 bytes"),
                       Error);
  CHECK_THROWS_WITH_AS(parse_idx({0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4}, "x.idx"),
                       doctest::Contains("truncated (dims 2x3 declare 6 data bytes, file has 4)"), Error);
  CHECK_THROWS_WITH_AS(parse_idx({0, 0, 8, 1, 0, 0, 0, 2, 1, 2, 3}, "x.idx"),
                       doctest::Contains("size mismatch (dims 2 declare 2 data bytes, file has 3)"), Error);
  // dims whose product overflows 64 bits must not wrap around to a small size
  std::vector<std::uint8_t> huge = {0, 0, 8, 3};
  for (int i = 0; i < 3; ++i) huge.insert(huge.end(), {0xFF, 0xFF, 0xFF, 0xFF});
  huge.insert(huge.end(), {1, 2, 3});
  CHECK_THROWS_WITH_AS(parse_idx(huge, "x.idx"), doctest::Contains("declare more than 2^64 data bytes"), Error);
  CHECK_THROWS_WITH_AS(read_idx("/nonexistent/dir/x.idx"), doctest::Contains("cannot open file '/nonexistent/dir/x.idx'"),
                       Error);
}

TEST_CASE("data: read_idx survives mutated and truncated gzip input (mini fuzz)") {
  TempDir dir;
  write_idx(dir / "seed.gz", make_u8({4, 5, 6}), true);
  const auto seed = read_bytes(dir / "seed.gz");
  Rng rng(123);
  int ok = 0, rejected = 0;
  for (int it = 0; it < 400; ++it) {
    auto g = seed;
    const int kind = int(rng.below(3));
    if (kind == 0) g.resize(std::size_t(rng.below(g.size())));                    // truncate
    else if (kind == 1) g[rng.below(g.size())] ^= std::uint8_t(1 + rng.below(255));  // flip a byte
    else for (int k = 0; k < 4; ++k) g[rng.below(g.size())] = std::uint8_t(rng.below(256));
    try {
      (void)parse_idx(is_gzip(g) ? gunzip(g, "fuzz") : g, "fuzz");
      ++ok;
    } catch (const Error&) {
      ++rejected;
    }
  }
  CHECK(ok + rejected == 400);
  CHECK(rejected > 300);  // the CRC catches almost every payload change
}

TEST_CASE("data: load_mnist on generated files: shapes, scaling, labels, errors") {
  TempDir dir;
  IdxArray im = make_u8({3, 4, 5}), lb;
  im.data[0] = 255;
  lb.dims = {3};
  lb.data = {7, 0, 9};
  write_idx(dir / "train-images-idx3-ubyte.gz", im, true);
  write_idx(dir / "train-labels-idx1-ubyte", lb, false);  // raw and gz mix
  const Mnist m = load_mnist(dir.path.string(), "train");
  CHECK(m.images.shape() == Shape{3, 1, 4, 5});
  CHECK(m.images[0] == 1.0f);
  CHECK(m.images.at({0, 0, 0, 1}) == doctest::Approx(7.0 / 255.0).scale(0));
  CHECK(m.labels.shape() == Shape{3});
  CHECK(m.labels[2] == 9);
  CHECK(load_mnist(dir.path.string(), "train", false).images.at({0, 0, 0, 1}) == 7.0f);

  CHECK_THROWS_WITH_AS(load_mnist(dir.path.string(), "t10k"), doctest::Contains("no file 't10k-images-idx3-ubyte[.gz]'"), Error);
  CHECK_THROWS_WITH_AS(load_mnist(dir.path.string(), "valid"), doctest::Contains("split must be"), Error);
  lb.dims = {2};
  lb.data = {1, 2};
  write_idx(dir / "train-labels-idx1-ubyte", lb);
  CHECK_THROWS_WITH_AS(load_mnist(dir.path.string()), doctest::Contains("count mismatch"), Error);
  CHECK_THROWS_WITH_AS(load_mnist(dir.path.string()), doctest::Contains("has 3 images"), Error);
  lb.dims = {3};
  lb.data = {1, 12, 2};
  write_idx(dir / "train-labels-idx1-ubyte", lb);
  CHECK_THROWS_WITH_AS(load_mnist(dir.path.string()), doctest::Contains("label 12 at index 1"), Error);
  write_idx(dir / "train-labels-idx1-ubyte", im);
  CHECK_THROWS_WITH_AS(load_mnist(dir.path.string()), doctest::Contains("not a ubyte label file"), Error);
}

TEST_CASE("data: real MNIST (shared data)") {
  MARROW_NEED_SHARED("mnist/t10k-images-idx3-ubyte.gz");
  const auto t0 = std::chrono::steady_clock::now();
  const Mnist m = load_mnist(shared + "/mnist", "t10k");
  MESSAGE("load_mnist t10k: ", seconds_since(t0), " s");
  CHECK(m.images.shape() == Shape{10000, 1, 28, 28});
  int counts[10] = {};
  for (auto v : m.labels) ++counts[v];
  CHECK(counts[0] == 980);
  CHECK(counts[9] == 1009);
  CHECK(*std::max_element(m.images.begin(), m.images.end()) == 1.0f);
  CHECK(*std::min_element(m.images.begin(), m.images.end()) == 0.0f);
}

// ---- images -----------------------------------------------------------------------------

TEST_CASE("data: write_png/load_image round trip, channel conversion, tensors") {
  TempDir dir;
  for (int c : {1, 2, 3, 4}) {
    CAPTURE(c);
    Image img(5, 3, c);
    for (std::size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = std::uint8_t(i * 13);
    write_png(dir / "a.png", img);
    CHECK(!fs::exists(dir / "a.png.tmp"));
    const Image back = load_image(dir / "a.png");
    CHECK(back.width == 5);
    CHECK(back.height == 3);
    CHECK(back.channels == c);
    CHECK(back.pixels == img.pixels);
  }
  Image rgb(2, 1, 3);
  rgb.pixels = {255, 0, 0, 10, 20, 30};
  write_png(dir / "rgb.png", rgb);
  const Image grey = load_image(dir / "rgb.png", 1);
  CHECK(grey.channels == 1);
  CHECK(grey.pixels[1] == 18);  // stb's luma: (77 r + 150 g + 29 b) >> 8 = (770 + 3000 + 870) >> 8
  const Tensor<float> t = image_to_tensor(rgb);
  CHECK(t.shape() == Shape{3, 1, 2});
  CHECK(t.at({0, 0, 0}) == 1.0f);
  CHECK(t.at({2, 0, 1}) == doctest::Approx(30.0 / 255.0).scale(0));
  CHECK(tensor_to_image(t).pixels == rgb.pixels);
  const Image clamped = tensor_to_image(Tensor<double>({1, 4}, {-0.5, 0.5, 2.0, 0.31}));
  CHECK(clamped.pixels == std::vector<std::uint8_t>{0, 128, 255, 79});
  CHECK(tensor_to_image(Tensor<float>({1, 2}, {-1.0f, 1.0f}), -1.0, 1.0).pixels == std::vector<std::uint8_t>{0, 255});
}

TEST_CASE("data: image errors name the file and stb's reason") {
  TempDir dir;
  CHECK_THROWS_WITH_AS(load_image(dir / "missing.png"), doctest::Contains("missing.png'"), Error);
  write_file(dir / "junk.png", bytes_of("this is not an image"));
  const std::string junk_msg = "load_image '" + (dir / "junk.png") + "': ";
  CHECK_THROWS_WITH_AS(load_image(dir / "junk.png"), doctest::Contains(junk_msg.c_str()), Error);
  CHECK_THROWS_WITH_AS(load_image(dir / "junk.png"), doctest::Contains("unknown image type"), Error);
  CHECK_THROWS_WITH_AS(load_image(dir / "junk.png", 5), doctest::Contains("desired_channels 5"), Error);
  CHECK_THROWS_WITH_AS(write_png(dir / "no/such/dir/x.png", Image(1, 1, 1)), doctest::Contains("x.png.tmp"), Error);
  CHECK_THROWS_WITH_AS(tensor_to_image(Tensor<float>({5, 2, 2})), doctest::Contains("5 channels in (5, 2, 2)"), Error);
}

TEST_CASE("data: make_grid tiles images with padding") {
  std::vector<Image> imgs;
  for (int k = 0; k < 3; ++k) imgs.emplace_back(2, 2, 1, std::uint8_t(100 + k));
  const Image g = make_grid(imgs, 2, 1, 7);
  CHECK(g.width == 7);  // 2 columns: 1 + (2 + 1) * 2
  CHECK(g.height == 7);
  CHECK(g.channels == 1);
  CHECK(g.at(0, 0, 0) == 7);
  CHECK(g.at(1, 1, 0) == 100);
  CHECK(g.at(2, 2, 0) == 100);
  CHECK(g.at(1, 3, 0) == 7);
  CHECK(g.at(1, 4, 0) == 101);
  CHECK(g.at(4, 1, 0) == 102);
  CHECK(g.at(4, 4, 0) == 7);  // the empty fourth cell
  // Mixed channels become RGB; tensors go through the same path.
  imgs.push_back(Image(1, 1, 3, 50));
  CHECK(make_grid(imgs, 4, 0).channels == 3);
  CHECK(make_grid(imgs, 4, 0).at(0, 0, 2) == 100);
  const Image tg = make_grid(full<float>({4, 1, 3, 2}, 1.0f), 3, 2);
  CHECK(tg.width == 2 + 3 * (2 + 2));
  CHECK(tg.height == 2 + 2 * (3 + 2));
  CHECK(tg.at(2, 2, 0) == 255);
  CHECK(tg.at(1, 2, 0) == 0);
  CHECK_THROWS_WITH_AS(make_grid(imgs, 0), doctest::Contains("columns 0"), Error);
}

TEST_CASE("data: list_files sorts numbers naturally, load_image_folder builds labels") {
  TempDir dir;
  fs::create_directories(dir.path / "cat");
  fs::create_directories(dir.path / "ant");
  for (int k : {10, 2, 1}) write_png(dir / ("cat/" + std::to_string(k) + ".png"), Image(3, 2, 3, std::uint8_t(k)));
  write_png(dir / "ant/0.png", Image(3, 2, 1, 200));
  write_file(dir / "cat/notes.txt", bytes_of("ignored"));
  const auto files = list_files(dir / "cat", {".png"});
  REQUIRE(files.size() == 3);
  CHECK(fs::path(files[0]).filename() == "1.png");
  CHECK(fs::path(files[1]).filename() == "2.png");
  CHECK(fs::path(files[2]).filename() == "10.png");
  const ImageFolder f = load_image_folder(dir.path.string(), 3);
  CHECK(f.classes == std::vector<std::string>{"ant", "cat"});
  CHECK(f.images.shape() == Shape{4, 3, 2, 3});
  CHECK(f.labels.at({0}) == 0);
  CHECK(f.labels.at({3}) == 1);
  CHECK(f.images.at({0, 2, 1, 2}) == doctest::Approx(200.0 / 255.0).scale(0));  // grey replicated into RGB
  CHECK(f.images.at({3, 0, 0, 0}) == doctest::Approx(10.0 / 255.0).scale(0));
  CHECK(load_image_folder(dir.path.string(), 3, 1).images.dim(0) == 2);
  write_png(dir / "cat/3.png", Image(4, 4, 3));
  CHECK_THROWS_WITH_AS(load_image_folder(dir.path.string()), doctest::Contains("3.png' is 4x4, expected 3x2"), Error);
}

TEST_CASE("data: real membrane PNG and CIFAR JPEG (shared data)") {
  MARROW_NEED_SHARED("membrane/train/image/0.png");
  const Image em = load_image(shared + "/membrane/train/image/0.png");
  CHECK(em.width == 512);
  CHECK(em.height == 512);
  CHECK(em.channels == 1);
  const Image mask = load_image(shared + "/membrane/train/label/0.png");
  CHECK(std::all_of(mask.pixels.begin(), mask.pixels.end(), [](auto v) { return v == 0 || v == 255; }));
  if (fs::exists(shared + "/cifar10-jpg/test/cat/0000.jpg")) {
    const Image c = load_image(shared + "/cifar10-jpg/test/cat/0000.jpg");
    CHECK(c.width == 32);
    CHECK(c.channels == 3);
    const auto t0 = std::chrono::steady_clock::now();
    const ImageFolder f = load_image_folder(shared + "/cifar10-jpg/test", 3, 20);
    MESSAGE("load_image_folder 200 CIFAR JPEGs: ", seconds_since(t0), " s");
    CHECK(f.images.shape() == Shape{200, 3, 32, 32});
    CHECK(f.classes.front() == "airplane");
  }
}

// ---- text -------------------------------------------------------------------------------

TEST_CASE("data: Vocab encodes, decodes, saves and names unknown characters") {
  const Vocab v = Vocab::from_text("hello world\n");
  CHECK(v.chars == "\n dehlorw");
  CHECK(v.size() == 9);
  const auto ids = v.encode("held");
  CHECK(ids == std::vector<std::int32_t>{4, 3, 5, 2});
  CHECK(v.decode(ids) == "held");
  CHECK(Vocab::load(v.save()).encode("world") == v.encode("world"));
  CHECK_THROWS_WITH_AS(v.encode("hez"), doctest::Contains("unknown character 'z' at position 2"), Error);
  CHECK_THROWS_WITH_AS(v.encode("a\tb"), doctest::Contains("unknown character 'a' at position 0"), Error);
  CHECK_THROWS_WITH_AS(v.encode("\t"), doctest::Contains("unknown character \\x09"), Error);
  CHECK_THROWS_WITH_AS(v.decode(std::vector<std::int32_t>{1, 9}), doctest::Contains("token id 9 at position 1"), Error);
  CHECK_THROWS_WITH_AS(Vocab::load("ba"), doctest::Contains("not strictly increasing at position 1"), Error);
  const Vocab bin = Vocab::from_text(std::string("\xff\x01", 2));  // bytes sort unsigned
  CHECK(bin.encode(std::string("\xff", 1))[0] == 1);
}

TEST_CASE("data: load_text, split_train_val and next-token batches") {
  TempDir dir;
  CHECK_THROWS_WITH_AS(load_text(dir / "none.txt"), doctest::Contains("cannot open file"), Error);
  write_file(dir / "empty.txt", {});
  const std::string empty_msg = "'" + (dir / "empty.txt") + "' is empty";
  CHECK_THROWS_WITH_AS(load_text(dir / "empty.txt"), doctest::Contains(empty_msg.c_str()), Error);
  write_file(dir / "t.txt", bytes_of("abcdefghij"));
  const std::string text = load_text(dir / "t.txt");
  const Vocab v = Vocab::from_text(text);
  const auto [train, val] = split_train_val(v.encode(text));
  CHECK(train.size() == 9);
  CHECK(val == std::vector<std::int32_t>{9});
  Rng a(5), b(5);
  const TextBatch x = sample_text_batch(train, 4, 3, a);
  CHECK(x.x.shape() == Shape{4, 3});
  for (index_t i = 0; i < 4; ++i)
    for (index_t t = 0; t < 3; ++t) {
      CHECK(x.y.at({i, t}) == x.x.at({i, t}) + 1);  // targets are the next token
      if (t) CHECK(x.x.at({i, t}) == x.x.at({i, t - 1}) + 1);
    }
  const TextBatch y = sample_text_batch(train, 4, 3, b);
  CHECK(std::equal(x.x.begin(), x.x.end(), y.x.begin()));
  CHECK_THROWS_WITH_AS(sample_text_batch(train, 2, 9, a), doctest::Contains("9 tokens, need more than block 9"), Error);
}

TEST_CASE("data: tiny shakespeare (shared data)") {
  MARROW_NEED_SHARED("tinyshakespeare/input.txt");
  const std::string text = load_text(shared + "/tinyshakespeare/input.txt");
  CHECK(text.size() == 1115394);
  const Vocab v = Vocab::from_text(text);
  CHECK(v.size() == 65);
  const auto ids = v.encode(text);
  CHECK(v.decode(ids.data(), 100) == text.substr(0, 100));
}

// ---- colour -----------------------------------------------------------------------------

TEST_CASE("data: sRGB -> Lab known values") {
  auto check_lab = [](double r, double g, double b, double L, double A, double B, double tol) {
    const auto lab = rgb_to_lab(r, g, b);
    CAPTURE(r);
    CAPTURE(g);
    CAPTURE(b);
    CHECK(std::abs(lab[0] - L) < tol);
    CHECK(std::abs(lab[1] - A) < tol);
    CHECK(std::abs(lab[2] - B) < tol);
  };
  check_lab(1, 1, 1, 100, 0, 0, 1e-9);  // white is the white point exactly
  check_lab(0, 0, 0, 0, 0, 0, 1e-12);
  check_lab(1, 0, 0, 53.2408, 80.0925, 67.2032, 5e-3);
  check_lab(0, 1, 0, 87.7347, -86.1827, 83.1793, 5e-3);
  check_lab(0, 0, 1, 32.2970, 79.1875, -107.8602, 5e-3);
  check_lab(0.5, 0.5, 0.5, 53.3890, 0, 0, 5e-3);  // greys have no chroma
  const auto dark = rgb_to_lab(0.01, 0.01, 0.01);  // below both linear knees
  CHECK(dark[0] == doctest::Approx(903.2963 * (0.01 / 12.92)).epsilon(1e-4));  // L = κ·Y for tiny Y
}

TEST_CASE("data: Lab round trip, pixels and tensors") {
  Rng rng(3);
  double worst = 0;
  for (int i = 0; i < 2000; ++i) {
    const double r = rng.uniform(), g = rng.uniform(), b = rng.uniform();
    const auto lab = rgb_to_lab(r, g, b);
    const auto back = lab_to_rgb(lab[0], lab[1], lab[2]);
    worst = std::max({worst, std::abs(back[0] - r), std::abs(back[1] - g), std::abs(back[2] - b)});
  }
  CHECK(worst < 1e-10);
  const Tensor<float> img = uniform<float>({2, 3, 4, 5}, rng);
  const Tensor<float> lab = rgb_to_lab(img);
  CHECK(lab.shape() == img.shape());
  const auto px = rgb_to_lab(img.at({1, 0, 2, 3}), img.at({1, 1, 2, 3}), img.at({1, 2, 2, 3}));
  CHECK(lab.at({1, 0, 2, 3}) == px[0]);
  CHECK(lab.at({1, 2, 2, 3}) == px[2]);
  const Tensor<float> back = lab_to_rgb(lab);
  float err = 0;
  for (index_t i = 0; i < img.numel(); ++i) err = std::max(err, std::abs(back[i] - img[i]));
  CHECK(err < 1e-4f);
  // Out-of-gamut Lab is clamped unless asked not to.
  const Tensor<double> wild({3, 1, 2}, {90.0, 20.0, 120.0, -100.0, -100.0, 120.0});
  const Tensor<double> raw = lab_to_rgb(wild, false), clamped = lab_to_rgb(wild);
  CHECK(*std::max_element(raw.begin(), raw.end()) > 1.0);
  CHECK(*std::min_element(raw.begin(), raw.end()) < 0.0);
  for (index_t i = 0; i < raw.numel(); ++i) CHECK(clamped[i] == std::clamp(raw[i], 0.0, 1.0));
  CHECK_THROWS_WITH_AS(rgb_to_lab(Tensor<float>({2, 4, 4})), doctest::Contains("rgb_to_lab: want (3, H, W) or (N, 3, H, W), got (2, 4, 4)"),
                       Error);
}

// ---- loaders ----------------------------------------------------------------------------

TEST_CASE("data: BatchLoader is deterministic whatever the timing") {
  auto make = [](bool slow) {
    return [slow](std::int64_t b, Rng& rng) {
      if (slow && b % 2) std::this_thread::sleep_for(std::chrono::milliseconds(3));
      return std::vector<double>{double(b), rng.uniform(), rng.normal()};
    };
  };
  BatchLoader<std::vector<double>> fast(make(false), 42, 1), slow(make(true), 42, 4), other(make(false), 43);
  bool differs = false;
  for (int i = 0; i < 8; ++i) {
    const auto a = fast.next(), b = slow.next(), c = other.next();
    CHECK(a[0] == i);  // in order
    CHECK(a == b);
    differs = differs || a[1] != c[1];
  }
  CHECK(differs);  // the seed matters
  Rng r(derive_seed(42, 5));  // batch b's randomness is Rng(derive_seed(seed, b)), documented
  BatchLoader<std::vector<double>> again(make(false), 42);
  for (int i = 0; i < 5; ++i) again.next();
  CHECK(again.next()[1] == r.uniform());
}

TEST_CASE("data: BatchLoader prefetches ahead of the caller, bounded by prefetch") {
  std::atomic<int> made{0};
  BatchLoader<int> loader(
      [&](std::int64_t b, Rng&) {
        ++made;
        return int(b);
      },
      0, 3);
  auto wait_for = [&](int n) {
    for (int i = 0; i < 2000 && loader.produced() < n; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return loader.produced();
  };
  CHECK(wait_for(3) == 3);  // made without anyone asking
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  CHECK(made.load() == 3);  // and no further: the queue is full
  CHECK(loader.next() == 0);
  CHECK(wait_for(4) == 4);
  CHECK(loader.next() == 1);
  CHECK(loader.delivered() == 2);
}

TEST_CASE("data: BatchLoader rethrows worker exceptions in order and shuts down cleanly") {
  BatchLoader<int> loader(
      [](std::int64_t b, Rng&) {
        MARROW_CHECK(b != 2, "bad sample in batch ", b);
        return int(b);
      },
      0);
  CHECK(loader.next() == 0);
  CHECK(loader.next() == 1);
  CHECK_THROWS_WITH_AS(loader.next(), "bad sample in batch 2", Error);
  CHECK_THROWS_AS(loader.next(), Error);  // stays failed
  // Destroying a loader whose worker is blocked on a full queue, or busy, returns promptly.
  const auto t0 = std::chrono::steady_clock::now();
  { BatchLoader<int> idle([](std::int64_t b, Rng&) { return int(b); }, 0, 2); }
  {
    BatchLoader<int> busy(
        [](std::int64_t b, Rng&) {
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
          return int(b);
        },
        0);
  }
  CHECK(seconds_since(t0) < 2.0);
  CHECK_THROWS_WITH_AS(BatchLoader<int>([](std::int64_t, Rng&) { return 0; }, 0, 0), "BatchLoader: prefetch 0 must be >= 1",
                       Error);
}

TEST_CASE("data: DataLoader epochs are seeded permutations, drop_last, no shuffle") {
  using Idx = std::vector<index_t>;
  auto ident = [](const Idx& idx, Rng&) { return idx; };
  DataLoader<Idx> a(10, ident, {.batch_size = 4, .seed = 7}), b(10, ident, {.batch_size = 4, .seed = 7});
  CHECK(a.batches_per_epoch() == 3);
  std::vector<Idx> epochs(2);
  for (int e = 0; e < 2; ++e) {
    CHECK(a.epoch() == e);
    for (int k = 0; k < 3; ++k) {
      const Idx x = a.next();
      CHECK(x == b.next());
      CHECK(x.size() == (k < 2 ? 4u : 2u));
      epochs[std::size_t(e)].insert(epochs[std::size_t(e)].end(), x.begin(), x.end());
    }
    CHECK(std::set<index_t>(epochs[std::size_t(e)].begin(), epochs[std::size_t(e)].end()).size() == 10);
  }
  CHECK(epochs[0] != epochs[1]);  // reshuffled each epoch
  Idx in_order(10);
  std::iota(in_order.begin(), in_order.end(), 0);
  CHECK(epochs[0] != in_order);

  DataLoader<Idx> d(10, ident, {.batch_size = 4, .drop_last = true});
  CHECK(d.batches_per_epoch() == 2);
  for (int k = 0; k < 6; ++k) CHECK(d.next().size() == 4u);

  DataLoader<Idx> s(5, ident, {.batch_size = 2, .shuffle = false});
  CHECK(s.next() == Idx{0, 1});
  CHECK(s.next() == Idx{2, 3});
  CHECK(s.next() == Idx{4});
  CHECK(s.next() == Idx{0, 1});
  CHECK_THROWS_WITH_AS(DataLoader<Idx>(3, ident, {.batch_size = 4, .drop_last = true}),
                       "DataLoader: 3 samples give no batch of 4 with drop_last", Error);
}

// ---- k-means ----------------------------------------------------------------------------
TEST_CASE("data: kmeans finds separated blobs, by hand and deterministically") {
  // Three blobs of 100, 200 and 300 points in 5-D around centres 10 apart.
  const float centre[3][5] = {{0, 0, 0, 0, 0}, {10, 0, 0, 0, 0}, {0, 10, 0, 10, 0}};
  const int size[3] = {100, 200, 300};
  Tensor<float> x = Tensor<float>::uninitialized({600, 5});
  std::vector<int> truth;
  Rng rng(3);
  for (int b = 0, row = 0; b < 3; ++b)
    for (int i = 0; i < size[b]; ++i, ++row) {
      for (int j = 0; j < 5; ++j) x[row * 5 + j] = centre[b][j] + float(rng.normal());
      truth.push_back(b);
    }
  const data::KMeansResult r = data::kmeans(x, 3, 7);
  REQUIRE(r.assignment.shape() == Shape{600});
  REQUIRE(r.centroids.shape() == Shape{3, 5});
  // Every blob is one cluster, and no two blobs share one.
  std::set<std::int32_t> ids;
  for (int b = 0, row = 0; b < 3; ++b) {
    const std::int32_t id = r.assignment[row];
    ids.insert(id);
    for (int i = 0; i < size[b]; ++i, ++row) CHECK(r.assignment[row] == id);
    CHECK(r.sizes[std::size_t(id)] == doctest::Approx(size[b] / 600.0).scale(0));
    for (int j = 0; j < 5; ++j) CHECK(r.centroids[id * 5 + j] == doctest::Approx(centre[b][j]).epsilon(0.03).scale(10));
  }
  CHECK(ids.size() == 3);
  CHECK(r.inertia == doctest::Approx(5.0).epsilon(0.15));  // 5 unit-variance dimensions
  // Same seed, same answer.
  const data::KMeansResult again = data::kmeans(x, 3, 7);
  for (index_t i = 0; i < 600; ++i) CHECK(again.assignment[i] == r.assignment[i]);
  // k = 1: the mean; k = N: every point its own centre.
  const data::KMeansResult one = data::kmeans(x, 1, 1);
  double mean0 = 0;
  for (index_t i = 0; i < 600; ++i) mean0 += x[i * 5] / 600.0;
  CHECK(one.centroids[0] == doctest::Approx(mean0).epsilon(1e-5));
  Tensor<float> few({4, 2}, {0, 0, 1, 0, 0, 1, 5, 5});
  CHECK(data::kmeans(few, 4, 2).inertia == doctest::Approx(0.0));
  CHECK_THROWS_WITH(data::kmeans(few, 5, 1), doctest::Contains("kmeans: k = 5 must be in [1, N = 4]"));
  CHECK_THROWS_WITH(data::kmeans(Tensor<float>({4}, {0, 1, 2, 3}), 2, 1),
                    doctest::Contains("kmeans: data must be (N, D), got (4,)"));
}

TEST_CASE("data: kmeans with repeated points leaves no cluster empty") {
  // Five copies of one point and one other point, three clusters: k-means++ runs out of
  // distinct rows, and a cluster that empties is restarted rather than left unused.
  Tensor<float> x({6, 2}, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 4, 4});
  const data::KMeansResult r = data::kmeans(x, 3, 5);
  double total = 0;
  for (double s : r.sizes) total += s;
  CHECK(total == doctest::Approx(1.0));
  CHECK(r.inertia == doctest::Approx(0.0));
  CHECK(r.assignment[5] != r.assignment[0]);
}
