// Where does tiled attention (kernels/flash_attention.hpp) beat the materialised
// kernel? Times scaled_dot_product_attention forward + backward, causal, on both
// kernels at B=8, H=4, D=32 for T = 64 … 4096 (Tq = Tk = T), and the peak memory
// each adds. The crossover sets KernelConfig::attn_flash_min_keys.
//   cmake -S . -B build -DMARROW_BUILD_BENCH=ON && cmake --build build --target attention_timing
//   build/bench/attention_timing [reps] [max T]           the table (2 threads unless OMP_NUM_THREADS)
//   build/bench/attention_timing tiles [reps]             tile sizes Br × Bc of the tiled kernel
// Each figure: ms per forward + backward, the fastest of reps samples; peak MB: the
// growth of the process's resident high-water mark over the inputs, measured in a
// forked child per kernel and T (so one measurement's buffers never count in another's).
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <marrow/ops/attention.hpp>
#include <marrow/ops/reduce.hpp>
#include <marrow/rng.hpp>
#include <marrow/init.hpp>

using namespace marrow;

namespace {
double status_mb(const char* key) {  // VmRSS / VmHWM from /proc/self/status, in MB
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(key, 0) == 0) return std::atof(line.c_str() + std::strlen(key)) / 1024.0;
  return 0;
}

struct Result {
  double ms, peak_mb;
};

// In a child process: ms per forward + backward (fastest of reps) and the peak growth.
Result measure(bool tiled, index_t T, index_t bq, index_t bk, int reps) {
  int fd[2];
  if (pipe(fd) != 0) return {-1, -1};
  const pid_t pid = fork();
  if (pid == 0) {
    close(fd[0]);
    KernelConfig c = kernel_config();
    c.attn_flash_min_keys = tiled ? 0 : index_t(1) << 40;
    c.attn_block_q = bq;
    c.attn_block_k = bk;
    ScopedKernelConfig scope(c);
    const index_t B = 8, H = 4, D = 32;
    Rng rng(1);
    Param<float> q(randn<float>({B, H, T, D}, rng)), k(randn<float>({B, H, T, D}, rng)),
        v(randn<float>({B, H, T, D}, rng));
    Tensor<float> g = randn<float>({B, H, T, D}, rng);
    Tape<float> t;
    auto step = [&] {
      t.reset();
      q.zero_grad();
      k.zero_grad();
      v.zero_grad();
      auto o = scaled_dot_product_attention(t, Var<float>(q), Var<float>(k), Var<float>(v), true, 0.0f);
      t.backward(sum(t, mul(t, o, t.input(g))));
    };
    // grads allocated, tape's own tensors once: the baseline the kernel adds to
    q.grad(); k.grad(); v.grad();
    const double base = status_mb("VmRSS:");
    step();
    const double peak = status_mb("VmHWM:") - base;
    double best = 1e30;
    for (int r = 0; r < reps; ++r) {
      const auto s = std::chrono::steady_clock::now();
      step();
      best = std::min(best, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s).count());
    }
    Result res{best, peak};
    if (write(fd[1], &res, sizeof res) != sizeof res) _exit(1);
    _exit(0);
  }
  close(fd[1]);
  Result res{-1, -1};
  if (read(fd[0], &res, sizeof res) != sizeof res) res = {-1, -1};
  close(fd[0]);
  waitpid(pid, nullptr, 0);
  return res;
}
}  // namespace

int main(int argc, char** argv) {
  if (!std::getenv("OMP_NUM_THREADS")) setenv("OMP_NUM_THREADS", "2", 1);  // before the runtime starts
  if (argc > 1 && std::string(argv[1]) == "tiles") {
    const int reps = argc > 2 ? std::atoi(argv[2]) : 5;
    std::printf("%6s %5s %5s %10s\n", "T", "Br", "Bc", "ms f+b");
    for (index_t T : {512, 2048})
      for (index_t bq : {16, 32, 64, 128})
        for (index_t bk : {32, 64, 128, 256}) {
          const Result r = measure(true, T, bq, bk, reps);
          std::printf("%6lld %5lld %5lld %10.2f\n", (long long)T, (long long)bq, (long long)bk, r.ms);
          std::fflush(stdout);
        }
    return 0;
  }
  const int reps = argc > 1 ? std::atoi(argv[1]) : 5;
  const index_t max_t = argc > 2 ? std::atoll(argv[2]) : 4096;
  const KernelConfig& c = kernel_config();
  std::printf("B=8 H=4 D=32 causal, %s threads, tiles %lld x %lld\n", std::getenv("OMP_NUM_THREADS"),
              (long long)c.attn_block_q, (long long)c.attn_block_k);
  std::printf("%6s %14s %14s %8s %16s %16s\n", "T", "materialised ms", "tiled ms", "mat/til", "materialised MB",
              "tiled MB");
  for (index_t T = 64; T <= max_t; T *= 2)
    for (index_t TT : {T, T + T / 2}) {
      if (TT > max_t) continue;
      const Result m = measure(false, TT, c.attn_block_q, c.attn_block_k, reps);
      const Result f = measure(true, TT, c.attn_block_q, c.attn_block_k, reps);
      std::printf("%6lld %14.2f %14.2f %8.2f %16.1f %16.1f\n", (long long)TT, m.ms, f.ms, m.ms / f.ms, m.peak_mb,
                  f.peak_mb);
      std::fflush(stdout);
    }
  return 0;
}
