#pragma once
// Whole-file reads and crash-safe writes shared by the data readers and writers.
#include <cstdint>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "../config.hpp"
#include "../train/fs.hpp"

namespace marrow::data {

// Whole file as bytes; the error names the file.
inline std::vector<std::uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  MARROW_CHECK(f.good(), "cannot open file '", path, "'");
  const std::streamoff size = f.tellg();
  MARROW_CHECK(size >= 0, "cannot read file '", path, "'");
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(size));
  f.seekg(0);
  if (size > 0) f.read(reinterpret_cast<char*>(bytes.data()), size);
  MARROW_CHECK(f.good(), "cannot read file '", path, "'");
  return bytes;
}

// Crash-safe: the bytes go to path + ".tmp", fsynced and renamed over path (train/fs.hpp).
inline void write_bytes_atomic(const std::string& path, const std::uint8_t* data, std::size_t n) {
  atomic_write_file(path, std::string_view(reinterpret_cast<const char*>(data), n));
}

}  // namespace marrow::data
