// Writes the seed corpus (small valid inputs of every format) into DIR/<target>/.
// scripts/fuzz runs it once when a target's corpus folder is empty; fuzzing
// mutates from these, so each format's happy paths are covered from the start.
#include <marrow/data/idx.hpp>
#include <marrow/data/image.hpp>
#include <marrow/train/safetensors.hpp>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

using namespace marrow;
namespace fs = std::filesystem;

static void put(const fs::path& dir, const std::string& name, const std::string& bytes) {
  fs::create_directories(dir);
  std::ofstream(dir / name, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
}
// A literal with embedded NULs, all of it.
template <std::size_t N> static std::string lit(const char (&s)[N]) { return std::string(s, N - 1); }
static std::string read(const fs::path& p) { return read_file(p.string()); }

int main(int argc, char** argv) {
  const fs::path root = argc > 1 ? argv[1] : "tests/fuzz/corpus";
  const fs::path tmp = fs::temp_directory_path() / ("marrow_seeds_" + std::to_string(::getpid()));
  fs::create_directories(tmp);

  // ---- IDX, raw and gzipped
  std::vector<data::IdxArray> arrays;
  auto add = [&](data::IdxType t, std::vector<index_t> dims, std::size_t esize) {
    data::IdxArray a;
    a.type = t;
    a.dims = std::move(dims);
    a.data.resize(std::size_t(a.numel()) * esize);
    for (std::size_t i = 0; i < a.data.size(); ++i) a.data[i] = std::uint8_t(i * 37 + 11);
    arrays.push_back(std::move(a));
  };
  add(data::IdxType::U8, {2, 3, 3}, 1);
  add(data::IdxType::U8, {5}, 1);
  add(data::IdxType::I8, {2, 2}, 1);
  add(data::IdxType::I16, {3}, 2);
  add(data::IdxType::I32, {2, 2}, 4);
  add(data::IdxType::F32, {1, 3}, 4);
  add(data::IdxType::F64, {2}, 8);
  add(data::IdxType::U8, {0, 4}, 1);
  for (std::size_t k = 0; k < arrays.size(); ++k) {
    const fs::path f = tmp / "a.idx";
    data::write_idx(f.string(), arrays[k], false);
    put(root / "idx", "seed-" + std::to_string(k), read(f));
    data::write_idx(f.string(), arrays[k], true);
    put(root / "gzip_idx", "seed-" + std::to_string(k), read(f));
  }
  {  // gzip with every optional header field: FEXTRA, FNAME, FCOMMENT, FHCRC
    std::string z = read(tmp / "a.idx");
    std::string h = z.substr(0, 10);
    h[3] = char(0x04 | 0x08 | 0x10 | 0x02);
    h += lit("\x03\x00" "abc") + lit("name\0") + lit("comment\0");
    const std::uint32_t crc = data::crc32(reinterpret_cast<const std::uint8_t*>(h.data()), h.size());
    h += char(crc & 0xFF);
    h += char((crc >> 8) & 0xFF);
    put(root / "gzip_idx", "seed-flags", h + z.substr(10));
  }

  // ---- safetensors
  {
    Tensor<float> a(Shape{2, 3});
    for (index_t i = 0; i < a.numel(); ++i) a[i] = float(i) * 0.5f;
    Tensor<double> b(Shape{4});
    Tensor<std::int32_t> c(Shape{1, 1, 2});
    const fs::path f = tmp / "a.safetensors";
    safetensors::write(f.string(), {safetensors::from_tensor("w", a)}, {});
    put(root / "safetensors", "seed-one", read(f));
    safetensors::write(f.string(), {safetensors::from_tensor("fc.weight", a), safetensors::from_tensor("fc.bias", b),
                                    safetensors::from_tensor("ids", c), safetensors::from_rng_state("state.rng.x", Rng(3).state())},
                       {{"format", "marrow-checkpoint-1"}, {"step", "12"}, {"config", "{\"width\":4}"}});
    put(root / "safetensors", "seed-checkpoint", read(f));
    safetensors::write(f.string(), {}, {});
    put(root / "safetensors", "seed-empty", read(f));
  }

  // ---- images (first byte: desired channels)
  {
    for (int c = 1; c <= 4; ++c) {
      data::Image im(5, 3, c);
      for (std::size_t i = 0; i < im.pixels.size(); ++i) im.pixels[i] = std::uint8_t(i * 29);
      const fs::path f = tmp / "a.png";
      data::write_png(f.string(), im);
      put(root / "image", "seed-png" + std::to_string(c), std::string(1, char(c % 5)) + read(f));
      std::string buf;
      auto sink = [](void* ctx, void* d, int n) { static_cast<std::string*>(ctx)->append(static_cast<char*>(d), std::size_t(n)); };
      stbi_write_bmp_to_func(sink, &buf, im.width, im.height, c, im.pixels.data());
      put(root / "image", "seed-bmp" + std::to_string(c), std::string(1, char(0)) + buf);
      buf.clear();
      stbi_write_jpg_to_func(sink, &buf, im.width, im.height, c, im.pixels.data(), 80);
      put(root / "image", "seed-jpg" + std::to_string(c), std::string(1, char(3)) + buf);
    }
  }

  // ---- text (first byte odd: a corpus; even: a saved vocabulary)
  put(root / "text", "seed-corpus", "\x01" "First Citizen:\nBefore we proceed any further, hear me speak.\n");
  put(root / "text", "seed-bytes", lit("\x03\x00\xff\x7f\n\t"));
  put(root / "text", "seed-vocab", "\x02\n !,.:ABCabc");

  // ---- command lines (NUL-separated arguments)
  put(root / "cli", "seed-train", lit("train\0--width\0" "8\0--lr=0.1\0--no-flip\0--steps\0" "100\0--out\0runs/x"));
  put(root / "cli", "seed-eval", lit("eval\0--ckpt=a.safetensors\0--resume\0--threads\0" "2\0--dropout\0" "0.5"));
  put(root / "cli", "seed-help", lit("--help"));

  // ---- JSON
  put(root / "json", "seed-object", R"({"step": 12, "loss": 0.25, "name": "a\u00e9\n", "ok": true, "x": null, "v": [1, -2.5e-3, []]})");
  put(root / "json", "seed-header", R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"__metadata__":{"step":"3"}})");
  put(root / "json", "seed-array", "[[[[1]]], {\"\": {}}, 1e308, -0, \"\\ud83d\\ude00\"]");

  fs::remove_all(tmp);
  return 0;
}
