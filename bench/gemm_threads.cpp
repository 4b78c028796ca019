// When does a second thread pay for one matrix product? Times gemm() (the
// library's one GEMM entry point, kernels/gemm.hpp) on 1 thread and split over
// 2, at square sizes and at the products the models run, and checks that both
// give the same bits. Eigen's own threading (what the ops used before) is
// timed beside them. The crossover sets KernelConfig::gemm_parallel_min.
//   cmake -S . -B build -DMARROW_BUILD_BENCH=ON && cmake --build build --target gemm_threads
//   build/bench/gemm_threads [reps]      (2 threads; OMP_WAIT_POLICY as the binaries run)
// Columns: M×N×K (dst M×N = A M×K · B K×N), multiply-adds, µs per product on 1
// thread, split over 2 threads, and with Eigen's own threads; the 1-thread/2-thread
// ratio (> 1: the second thread pays). Each figure is the fastest of reps samples of
// ~0.5 ms: on a shared machine a sample in which another process held a core
// measures the scheduler (a 2-thread product then waits out a time slice, ~16 ms).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#include <omp.h>

#include <marrow/kernels/gemm.hpp>

using namespace marrow;
using detail::RowMat;

namespace {
struct Shape3 {
  const char* what;
  index_t M, N, K;
};

// µs per call of f, the fastest of reps samples; each sample runs f often enough to take ~0.5 ms.
template <class F> double time_us(int reps, int threads, F&& f) {
  omp_set_num_threads(threads);
  f();
  const auto t0 = std::chrono::steady_clock::now();
  f();
  const double once = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const int iters = std::max(1, int(5e-4 / std::max(once, 1e-7)));
  std::vector<double> us;
  for (int r = 0; r < reps; ++r) {
    const auto s = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i) f();
    us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - s).count() / iters);
  }
  return *std::min_element(us.begin(), us.end());
}
}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::atoi(argv[1]) : 41;
  const std::vector<Shape3> shapes = {
      {"square", 8, 8, 8}, {"square", 16, 16, 16}, {"square", 24, 24, 24}, {"square", 32, 32, 32},
      {"square", 48, 48, 48}, {"square", 64, 64, 64}, {"square", 80, 80, 80}, {"square", 96, 96, 96},
      {"square", 128, 128, 128}, {"square", 192, 192, 192}, {"square", 256, 256, 256}, {"square", 384, 384, 384},
      {"square", 512, 512, 512},
      {"shallow", 768, 128, 32}, {"shallow", 256, 1024, 32}, {"shallow", 1024, 1024, 16},
      // colorize apply, one 32x32 image: im2col (O x placements x C·9) and Winograd (O x tiles x C) products
      {"color low1 im2col", 32, 256, 9}, {"color low2 wino", 64, 16, 32}, {"color low3 im2col", 64, 64, 576},
      {"color low4 wino", 128, 4, 64}, {"color mid1 wino", 128, 4, 128}, {"color glob1 im2col", 128, 16, 1152},
      {"color glob2 im2col", 128, 4, 1152}, {"color fuse 1x1", 64, 64, 128}, {"color dec2 wino", 32, 16, 64},
      {"color dec3 wino", 16, 64, 32},
      // the same layers at batch 64 (grouped images side by side)
      {"color low3 im2col b64", 64, 4096, 576}, {"color glob1 im2col b64", 128, 1024, 1152},
      {"color low2 wino b64", 64, 1024, 32},
      // the GPT, nanoGPT's CPU config (B·T = 768 rows, C = 128): forward, then dx and dW
      {"gpt qkv", 768, 384, 128}, {"gpt attn proj", 768, 128, 128}, {"gpt fc", 768, 512, 128},
      {"gpt mlp proj", 768, 128, 512}, {"gpt lm_head", 768, 65, 128}, {"gpt dx qkv", 768, 128, 384},
      {"gpt dW qkv", 384, 128, 768}, {"gpt dW fc", 512, 128, 768}, {"gpt attn slice", 16, 64, 32},
  };
  std::printf("%-24s %16s %10s %10s %10s %10s %7s %5s\n", "product", "M x N x K", "madds", "1 thr us", "2 thr us",
              "eigen2 us", "1t/2t", "bits");
  for (const Shape3& s : shapes) {
    const RowMat<float> A = RowMat<float>::Random(s.M, s.K), B = RowMat<float>::Random(s.K, s.N);
    RowMat<float> C1(s.M, s.N), C2(s.M, s.N), C3(s.M, s.N);
    KernelConfig split = kernel_config();
    split.gemm_parallel_min = 0;  // every product that can be split is
    const ScopedKernelConfig scope(split);
    const double t1 = time_us(reps, 1, [&] { detail::gemm(C1, A, B); });
    const double t2 = time_us(reps, 2, [&] { detail::gemm(C2, A, B); });
    const double te = time_us(reps, 2, [&] { C3.noalias() = A * B; });
    const bool same = std::memcmp(C1.data(), C2.data(), sizeof(float) * std::size_t(C1.size())) == 0;
    char dims[40];
    std::snprintf(dims, sizeof dims, "%ldx%ldx%ld", long(s.M), long(s.N), long(s.K));
    std::printf("%-24s %16s %10.0f %10.2f %10.2f %10.2f %7.2f %5s\n", s.what, dims, double(s.M) * s.N * s.K, t1, t2,
                te, t1 / t2, same ? "same" : "DIFF");
  }
}
