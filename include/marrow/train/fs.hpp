#pragma once
// Crash-safe file writing and bounded file reading, shared by checkpoints,
// summaries and plots.
//
// Atomic write: the bytes go to PATH.tmp, which is fsync'ed and renamed over
// PATH, then the directory is fsync'ed so the rename itself is durable. POSIX
// rename is atomic, so a reader (or a crash at any instant) sees either the
// whole old file or the whole new one, never a mix.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "../config.hpp"

namespace marrow {

namespace detail {

inline std::string errno_text() { return std::strerror(errno); }

// write(2) until everything is out: it may write less than asked (signals, pipes).
inline void write_all(int fd, const void* data, std::size_t n, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n > (1u << 30) ? (1u << 30) : n);
    if (w < 0) {
      if (errno == EINTR) continue;
      const std::string why = errno_text();
      throw Error(cat("cannot write ", path, ": ", why));
    }
    p += w;
    n -= std::size_t(w);
  }
}

inline void fsync_dir_of(const std::string& path) {
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  if (dir.empty()) dir = ".";
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;  // some filesystems refuse; the rename is still atomic
  ::fsync(fd);
  ::close(fd);
}

}  // namespace detail

// Atomically replace `path` with the concatenation of `chunks` (written in
// pieces so a large checkpoint is never copied into one buffer).
inline void atomic_write_file(const std::string& path, const std::vector<std::string_view>& chunks) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    const std::string why = detail::errno_text();
    throw Error(detail::cat("cannot create ", tmp, ": ", why));
  }
  try {
    for (auto c : chunks) detail::write_all(fd, c.data(), c.size(), tmp);
    if (::fsync(fd) != 0) {
      const std::string why = detail::errno_text();
      throw Error(detail::cat("cannot fsync ", tmp, ": ", why));
    }
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (::close(fd) != 0) {
    const std::string why = detail::errno_text();
    ::unlink(tmp.c_str());
    throw Error(detail::cat("cannot close ", tmp, ": ", why));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = detail::errno_text();
    ::unlink(tmp.c_str());
    throw Error(detail::cat("cannot rename ", tmp, " to ", path, ": ", why));
  }
  detail::fsync_dir_of(path);
}
inline void atomic_write_file(const std::string& path, std::string_view content) {
  atomic_write_file(path, std::vector<std::string_view>{content});
}

// Whole file into memory. `max_bytes` guards against reading a wrong path
// (a device, a huge log) into RAM.
inline std::string read_file(const std::string& path, std::size_t max_bytes = std::size_t(1) << 40) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const std::string why = detail::errno_text();
    throw Error(detail::cat("cannot open ", path, ": ", why));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(detail::cat("cannot read ", path, ": not a regular file"));
  }
  if (std::size_t(st.st_size) > max_bytes) {
    ::close(fd);
    throw Error(detail::cat("cannot read ", path, ": ", st.st_size, " bytes exceeds the limit of ", max_bytes));
  }
  std::string out(std::size_t(st.st_size), '\0');
  std::size_t got = 0;
  while (got < out.size()) {
    const ssize_t r = ::read(fd, out.data() + got, out.size() - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;  // the file shrank under us: return what is there
    got += std::size_t(r);
  }
  ::close(fd);
  out.resize(got);
  return out;
}

// mkdir -p with an error naming the directory.
inline void make_dirs(const std::string& dir) {
  if (dir.empty()) return;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  MARROW_CHECK(!ec, "cannot create directory ", dir, ": ", ec.message());
}

}  // namespace marrow
