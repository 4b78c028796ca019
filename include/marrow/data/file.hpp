#pragma once
// Whole-file reads and crash-safe writes shared by the data readers and writers.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <vector>

#include "../config.hpp"

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

// Write to path + ".tmp" and rename, so a crash never leaves a half-written file behind.
inline void write_bytes_atomic(const std::string& path, const std::uint8_t* data, std::size_t n) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    MARROW_CHECK(f.good(), "cannot open '", tmp, "' for writing");
    f.write(reinterpret_cast<const char*>(data), std::streamsize(n));
    MARROW_CHECK(f.good(), "cannot write '", tmp, "'");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  MARROW_CHECK(!ec, "cannot rename '", tmp, "' to '", path, "': ", ec.message());
}

}  // namespace marrow::data
