#pragma once
// A caching allocator for tensor storage.
//
// Why: page faults are expensive on the machines we train on; a training step
// frees and re-allocates the same buffer sizes every time. Keeping freed
// buffers in per-size free lists makes the steady state allocate nothing new
// (the same trick that made PyTorch's U-Net step 2.6x faster with tcmalloc).
// Set MARROW_NO_POOL=1 in the environment to bypass it (for leak checkers).
#include <cstddef>
#include <cstdlib>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

namespace marrow {

class BufferPool {
 public:
  static constexpr std::size_t kAlign = 64;  // a cache line; enough for AVX-512 loads

  static BufferPool& instance() {
    // Leaked on purpose: tensors in static storage may outlive any destructor order.
    static BufferPool* pool = new BufferPool();
    return *pool;
  }

  void* allocate(std::size_t bytes) {
    bytes = round_up(bytes == 0 ? 1 : bytes);
    if (enabled_) {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = free_.find(bytes);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        cached_bytes_ -= bytes;
        return p;
      }
    }
    void* p = std::aligned_alloc(kAlign, bytes);
    if (!p) throw std::bad_alloc();
    std::lock_guard<std::mutex> lock(mu_);
    fresh_bytes_ += bytes;
    return p;
  }

  void release(void* p, std::size_t bytes) {
    if (!p) return;
    bytes = round_up(bytes == 0 ? 1 : bytes);
    if (!enabled_) {
      std::free(p);
      return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    free_[bytes].push_back(p);
    cached_bytes_ += bytes;
  }

  // Return every cached buffer to the system (e.g. between two phases of a program).
  void trim() {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [bytes, list] : free_)
      for (void* p : list) std::free(p);
    free_.clear();
    cached_bytes_ = 0;
  }

  // Bytes ever obtained from the system: flat across steps once training is warm.
  std::size_t fresh_bytes() const { return fresh_bytes_; }
  std::size_t cached_bytes() const { return cached_bytes_; }
  // False under MARROW_NO_POOL=1 (sanitizer runs): every release goes back to the system.
  bool enabled() const { return enabled_; }

 private:
  BufferPool() {
    const char* env = std::getenv("MARROW_NO_POOL");
    enabled_ = !(env && *env && *env != '0');
  }
  static std::size_t round_up(std::size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

  std::mutex mu_;
  std::unordered_map<std::size_t, std::vector<void*>> free_;
  std::size_t fresh_bytes_ = 0, cached_bytes_ = 0;
  bool enabled_ = true;
};

}  // namespace marrow
