#include <sys/wait.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <marrow/train/safetensors.hpp>

#include "testing.hpp"

using namespace marrow;
namespace st = marrow::safetensors;

namespace {

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/marrow_st_XXXXXX";
    const char* p = ::mkdtemp(tmpl);
    REQUIRE(p != nullptr);
    path = p;
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string operator/(const std::string& name) const { return path + "/" + name; }
};

// A file image from a raw header string and a data area.
std::string image(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  const std::uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

void check_parse_error(const std::string& bytes, const std::string& expected) {
  CAPTURE(expected);
  CHECK_THROWS_WITH_AS(st::parse(bytes, "f.safetensors"), doctest::Contains(expected.c_str()), Error);
}

// The tensors tests/safetensors_compat.py expects (keep the two in sync).
std::vector<st::Entry> compat_entries() {
  std::vector<st::Entry> e;
  e.push_back(st::from_tensor("w", Tensor<float>({2, 3}, {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 2.5f})));
  e.push_back(st::from_tensor("ids", Tensor<std::int32_t>({4}, {-1, 0, 7, 2147483647})));
  e.push_back(st::from_tensor("scale", Tensor<double>(Shape{}, {M_PI})));
  e.push_back(st::from_tensor("mask", Tensor<std::uint8_t>({3}, {0, 1, 255})));
  e.push_back(st::from_tensor("big", Tensor<std::int64_t>({2}, {-(std::int64_t(1) << 62), (std::int64_t(1) << 40) + 3})));
  e.push_back(st::from_tensor("empty", Tensor<float>({0, 4})));
  return e;
}
const std::map<std::string, std::string> kCompatMeta = {{"step", "42"}, {"note", "caf\xc3\xa9 \"quoted\""}};

}  // namespace

TEST_CASE("safetensors: round trip of every dtype is bit-exact, metadata kept, data 8-byte aligned") {
  TempDir dir;
  const std::string path = dir / "a.safetensors";
  Rng rng(3);
  Tensor<float> w = randn<float>({3, 5}, rng);
  w[0] = -0.0f;
  w[1] = std::numeric_limits<float>::denorm_min();
  auto entries = compat_entries();
  entries.push_back(st::from_tensor("rand", w));
  st::write(path, entries, kCompatMeta);

  const std::string raw = read_file(path);
  std::uint64_t n = 0;
  std::memcpy(&n, raw.data(), 8);
  CHECK((8 + n) % 8 == 0);

  st::File f = st::read(path);
  REQUIRE(f.tensors.size() == entries.size());
  for (auto& e : entries) {
    const st::Entry* g = f.find(e.name);
    REQUIRE(g);
    CHECK(g->dtype == e.dtype);
    CHECK(g->shape == e.shape);
    CHECK(g->bytes == e.bytes);
  }
  CHECK(f.metadata == kCompatMeta);
  Tensor<float> back = st::to_tensor<float>(*f.find("rand"));
  CHECK(std::memcmp(back.data(), w.data(), sizeof(float) * 15) == 0);
  CHECK(std::signbit(back[0]));
  CHECK(st::to_tensor<std::int32_t>(*f.find("ids"))[3] == 2147483647);
  CHECK(st::to_tensor<double>(*f.find("w")).at({1, 2}) == 2.5);  // F32 -> double converts
  CHECK(st::to_tensor<double>(*f.find("scale")).item() == M_PI);
}

TEST_CASE("safetensors: Rng state survives a round trip, spare normal included") {
  Rng a(11);
  a.normal();  // leaves a spare
  st::Entry e = st::from_rng_state("rng", a.state());
  Rng b(0);
  b.set_state(st::to_rng_state(e));
  CHECK(a.normal() == b.normal());
  CHECK(a.next_u64() == b.next_u64());
  e.shape = {5};
  CHECK_THROWS_WITH_AS(st::to_rng_state(e), doctest::Contains("'rng' is not an RNG state"), Error);
}

TEST_CASE("safetensors: malformed files give clear errors naming the file and tensor") {
  const std::string f8 = std::string(8, '\0');
  SUBCASE("too short for the length") { check_parse_error("abc", "f.safetensors: file is 3 bytes, too short"); }
  SUBCASE("header length past the file end") {
    const std::string h = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
    check_parse_error(image(h, f8).substr(0, 30), "header length " + std::to_string(h.size()) + " exceeds the file size 30");
  }
  SUBCASE("huge header length") {
    std::string img(16, '\xff');
    check_parse_error(img, "exceeds the file size");
  }
  SUBCASE("bad JSON") { check_parse_error(image(R"({"a": {"dtype": )", ""), "bad header: json:"); }
  SUBCASE("header not an object") { check_parse_error(image("[1, 2]", ""), "header is an array"); }
  SUBCASE("unknown dtype") {
    check_parse_error(image(R"({"w":{"dtype":"F17","shape":[2],"data_offsets":[0,8]}})", f8), "tensor 'w': unknown dtype 'F17'");
  }
  SUBCASE("offsets past the end") {
    check_parse_error(image(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", f8),
                      "tensor 'w': data_offsets [0, 16] run past the end of the data (8 bytes)");
  }
  SUBCASE("decreasing offsets") {
    check_parse_error(image(R"({"w":{"dtype":"U8","shape":[0],"data_offsets":[8,4]}})", f8), "not an increasing pair");
  }
  SUBCASE("overlapping tensors") {
    check_parse_error(image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                            R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                            std::string(12, '\0')),
                      "tensors 'a' and 'b' overlap");
  }
  SUBCASE("shape and size disagree") {
    check_parse_error(image(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", f8),
                      "tensor 'w': shape [3] of F32 needs 12 bytes but data_offsets [0, 8] span 8");
  }
  SUBCASE("overflowing shape product") {
    check_parse_error(image(R"({"w":{"dtype":"F64","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}})", f8),
                      "tensor 'w': shape [4294967296, 4294967296, 16] of F64 needs more bytes than the whole file holds");
  }
  SUBCASE("negative dimension") {
    check_parse_error(image(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", f8), "non-negative integers");
  }
  SUBCASE("duplicate tensor name") {
    check_parse_error(image(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                            R"("w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
                            "ab"),
                      "duplicate key");
  }
  SUBCASE("metadata values must be strings") {
    check_parse_error(image(R"({"__metadata__":{"step":42}})", ""), "__metadata__ value for 'step' is a number");
  }
  SUBCASE("missing field and unknown field") {
    check_parse_error(image(R"({"w":{"dtype":"U8","shape":[1]}})", "a"), "tensor 'w': needs dtype, shape and data_offsets");
    check_parse_error(image(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":1}})", "a"), "unknown field 'x'");
  }
  SUBCASE("missing file") {
    CHECK_THROWS_WITH_AS(st::read("/nonexistent/x.safetensors"), doctest::Contains("cannot open /nonexistent/x.safetensors"), Error);
  }
}

TEST_CASE("safetensors: writer refuses inconsistent entries") {
  TempDir dir;
  auto e = st::from_tensor("w", Tensor<float>({2}, {1, 2}));
  e.shape = {3};
  CHECK_THROWS_WITH_AS(st::write(dir / "x.safetensors", {e}), doctest::Contains("tensor 'w' has 8 bytes but shape x F32 needs 12"), Error);
  auto a = st::from_tensor("a", Tensor<float>({1}, {1}));
  CHECK_THROWS_WITH_AS(st::write(dir / "x.safetensors", {a, a}), doctest::Contains("'a' is used twice"), Error);
  CHECK(!std::filesystem::exists(dir / "x.safetensors"));
}

TEST_CASE("safetensors: every truncation and random byte corruption is rejected or parsed, never a crash") {
  const std::string header = st::make_header(compat_entries(), kCompatMeta);
  std::string data;
  for (auto& e : compat_entries()) data += e.bytes;
  const std::string good = image(header, data);
  REQUIRE_NOTHROW(st::parse(good, "good"));
  int rejected = 0;
  for (std::size_t len = 0; len < good.size(); ++len) {
    try {
      st::parse(good.substr(0, len), "t");
    } catch (const Error&) {
      ++rejected;
    }
  }
  CHECK(rejected == int(good.size()));  // every proper prefix is invalid
  Rng rng(5);
  int ok = 0, bad = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    std::string m = good;
    const int flips = 1 + int(rng.below(4));
    for (int k = 0; k < flips; ++k) {
      // Mostly hit the header, where the structure is.
      const std::size_t pos = rng.uniform() < 0.9 ? 8 + rng.below(header.size()) : rng.below(m.size());
      const char pool[] = "{}[]\":,0123456789-eE.tfn \\u";
      m[pos] = rng.uniform() < 0.5 ? pool[rng.below(sizeof(pool) - 1)] : char(rng.below(256));
    }
    try {
      st::File f = st::parse(m, "fuzz");
      for (auto& e : f.tensors) CHECK(e.bytes.size() == std::size_t(e.numel()) * st::dtype_size(e.dtype));
      ++ok;
    } catch (const Error&) {
      ++bad;
    }
  }
  CHECK(ok + bad == 3000);
  CHECK(bad > 1000);
}

TEST_CASE("safetensors: a failed write leaves the previous file and no temp file") {
  TempDir dir;
  const std::string path = dir / "c.safetensors";
  st::write(path, {st::from_tensor("w", Tensor<float>({2}, {1, 2}))});
  const std::string before = read_file(path);
  auto bad = st::from_tensor("w", Tensor<float>({2}, {3, 4}));
  bad.bytes.pop_back();
  CHECK_THROWS_AS(st::write(path, {bad}), Error);
  CHECK(read_file(path) == before);
  CHECK(!std::filesystem::exists(path + ".tmp"));
  // Writing into a missing directory names the temp file.
  CHECK_THROWS_WITH_AS(st::write(dir / "no/such/dir.safetensors", {}), doctest::Contains("cannot create"), Error);
}

TEST_CASE("safetensors: files interoperate with an independent Python reader and writer") {
#ifdef MARROW_SOURCE_DIR
  const std::string script = std::string(MARROW_SOURCE_DIR) + "/tests/safetensors_compat.py";
#else
  const std::string script = "tests/safetensors_compat.py";
#endif
  if (std::system("command -v python3 >/dev/null 2>&1") != 0 || !std::filesystem::exists(script)) {
    MESSAGE("skipped: python3 or " << script << " not available");
    return;
  }
  TempDir dir;
  const std::string ours = dir / "marrow.safetensors", theirs = dir / "python.safetensors";
  st::write(ours, compat_entries(), kCompatMeta);
  const int rc_check = std::system(("python3 " + script + " check " + ours).c_str());
  CHECK(WEXITSTATUS(rc_check) == 0);
  const int rc_write = std::system(("python3 " + script + " write " + theirs).c_str());
  REQUIRE(WEXITSTATUS(rc_write) == 0);
  st::File f = st::read(theirs);
  CHECK(f.metadata == kCompatMeta);
  for (auto& e : compat_entries()) {
    CAPTURE(e.name);
    const st::Entry* g = f.find(e.name);
    REQUIRE(g);
    CHECK(g->dtype == e.dtype);
    CHECK(g->shape == e.shape);
    CHECK(g->bytes == e.bytes);
  }
}
