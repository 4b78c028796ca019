// Float GEMM throughput of Eigen on square products: the ceiling for every
// GEMM-bound step (linear layers, im2col convolutions). Compare with the
// OpenBLAS under PyTorch on the same machine:
//   g++ -std=c++20 -O3 -march=native -fopenmp -DNDEBUG -isystem /usr/include/eigen3 bench/gemm_peak.cpp -o gemm_peak
//   OMP_NUM_THREADS=2 ./gemm_peak 1024 2048
//   LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp /usr/bin/python3 -c "import torch,time; ..."
//     (torch.set_num_threads(2); best of 10 `a @ b` at the same sizes)
#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

int main(int argc, char** argv) {
  std::vector<int> sizes;  // the square sizes to time: the arguments, or 1024
  for (int i = 1; i < argc; ++i) sizes.push_back(std::atoi(argv[i]));
  if (sizes.empty()) sizes.push_back(1024);
  for (const int n : sizes) {
    const Eigen::MatrixXf a = Eigen::MatrixXf::Random(n, n), b = Eigen::MatrixXf::Random(n, n);
    Eigen::MatrixXf c(n, n);
    double best = 1e30;
    for (int r = 0; r < 10; ++r) {  // best of 10: the machine is shared, the ceiling is what we want
      const auto t0 = std::chrono::steady_clock::now();
      c.noalias() = a * b;
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::printf("n=%d  best %.2f ms  %.1f GFLOPS\n", n, best * 1e3, 2.0 * n * n * n / best / 1e9);
  }
}
