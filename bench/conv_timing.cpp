// Forward+backward timing of marrow's convolution ops at the shapes of
// ../shared/bench/ops_peer.py (float, loss = sum of the output).
// Not part of the CMake build:
//   g++ -std=c++20 -O2 -march=native -fopenmp -Iinclude -I/usr/include/eigen3 bench/conv_timing.cpp -o conv_timing
//   OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive ./conv_timing [reps] [extra] [levels|color]
// With a third argument: only the U-Net's 3x3 levels and DCGAN's widest conv ("levels"),
// or every 3x3 conv of the colorizer peer preset at batch 64, 32x32 inputs ("color"). The PyTorch
// side is F.conv2d(x, w, b, stride, padding=1).sum().backward() at the same shapes,
// x requiring grad, torch.set_num_threads(2), timed in the same session.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <string>
#include <vector>

#include <marrow/marrow.hpp>
#include <marrow/ops/conv.hpp>
#include <marrow/ops/pool.hpp>

using namespace marrow;

static void timed(const char* name, int reps, const std::function<void()>& fn) {
  for (int i = 0; i < 3; ++i) fn();
  std::vector<double> ms, cpu;
  for (int i = 0; i < reps; ++i) {
    timespec c0, c1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
    auto t0 = std::chrono::steady_clock::now();
    fn();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
    cpu.push_back((c1.tv_sec - c0.tv_sec) * 1e3 + (c1.tv_nsec - c0.tv_nsec) * 1e-6);
  }
  std::sort(ms.begin(), ms.end());
  std::sort(cpu.begin(), cpu.end());
  // CPU time (all threads) is steadier than wall time on a shared machine.
  std::printf("%-40s median %8.3f ms   min %8.3f ms   cpu %8.3f ms\n", name, ms[ms.size() / 2], ms[0], cpu[cpu.size() / 2]);
}

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::atoi(argv[1]) : 20;
  KernelConfig config = kernel_config();
  // MARROW_WINOGRAD=off|on forces conv2d's 3x3 stride-1 kernel (default: chosen by shape).
  if (const char* m = std::getenv("MARROW_WINOGRAD"))
    config.winograd = std::string(m) == "off" ? WinogradMode::Off
                      : std::string(m) == "on" ? WinogradMode::On
                                               : WinogradMode::Auto;
  // MARROW_WINO_GATHER=N: Winograd gathers tiles on planes up to N tiles wide (default 4).
  if (const char* m = std::getenv("MARROW_WINO_GATHER")) config.wino_gather_max_tw = std::atoi(m);
  const ScopedKernelConfig scope(config);
  Rng rng(0);
  Tape<float> t;
  struct L { const char* name; Shape x, w; int s; };
  const std::vector<L> color = {
      {"color 64x1x32x32->32 s2", {64, 1, 32, 32}, {32, 1, 3, 3}, 2},
      {"color 64x32x16x16->64", {64, 32, 16, 16}, {64, 32, 3, 3}, 1},
      {"color 64x64x16x16->64 s2", {64, 64, 16, 16}, {64, 64, 3, 3}, 2},
      {"color 64x64x8x8->128", {64, 64, 8, 8}, {128, 64, 3, 3}, 1},
      {"color 64x128x8x8->128", {64, 128, 8, 8}, {128, 128, 3, 3}, 1},
      {"color 64x128x8x8->64", {64, 128, 8, 8}, {64, 128, 3, 3}, 1},
      {"color 64x128x8x8->128 s2", {64, 128, 8, 8}, {128, 128, 3, 3}, 2},
      {"color 64x128x4x4->128 s2", {64, 128, 4, 4}, {128, 128, 3, 3}, 2},
      {"color 64x64x8x8->64", {64, 64, 8, 8}, {64, 64, 3, 3}, 1},
      {"color 64x64x16x16->32", {64, 64, 16, 16}, {32, 64, 3, 3}, 1},
      {"color 64x32x16x16->32", {64, 32, 16, 16}, {32, 32, 3, 3}, 1},
      {"color 64x32x32x32->16", {64, 32, 32, 32}, {16, 32, 3, 3}, 1},
      {"color 64x16x32x32->2", {64, 16, 32, 32}, {2, 16, 3, 3}, 1}};
  const std::vector<L> levels = {
      {"unet 4x16x256x256->16 k3p1", {4, 16, 256, 256}, {16, 16, 3, 3}, 1},
      {"unet 4x32x128x128->32 k3p1", {4, 32, 128, 128}, {32, 32, 3, 3}, 1},
      {"unet 4x64x64x64->64 k3p1", {4, 64, 64, 64}, {64, 64, 3, 3}, 1},
      {"unet 4x128x32x32->128 k3p1", {4, 128, 32, 32}, {128, 128, 3, 3}, 1},
      {"unet 4x256x16x16->256 k3p1", {4, 256, 16, 16}, {256, 256, 3, 3}, 1},
      {"dcgan 64x64x14x14->128 k4s2p1", {64, 64, 14, 14}, {128, 64, 4, 4}, 2}};
  if (argc > 3) {
    const bool is_color = std::string(argv[3]) == "color";  // the colorizer's convs have no bias (BatchNorm follows)
    for (const L& l : is_color ? color : levels) {
      Tensor<float> x = randn<float>(l.x, rng);
      Param<float> w(randn<float>(l.w, rng)), b(randn<float>({l.w[0]}, rng));
      timed(l.name, reps, [&] {
        t.reset();
        auto xv = t.leaf(x);
        t.backward(sum(t, conv2d(t, xv, w, is_color ? Var<float>() : Var<float>(b), l.s, 1)));
      });
    }
    return 0;
  }
  {
    Tensor<float> x = randn<float>({4, 32, 128, 128}, rng);
    Param<float> w(randn<float>({32, 32, 3, 3}, rng)), b(randn<float>({32}, rng));
    timed("conv2d 3x3 4x32x128x128->32", reps, [&] {
      t.reset();
      auto xv = t.leaf(x);
      t.backward(sum(t, conv2d(t, xv, w, b, 1, 1)));
    });
  }
  {
    Tensor<float> x = randn<float>({4, 64, 64, 64}, rng);
    Param<float> w(randn<float>({64, 32, 2, 2}, rng)), b(randn<float>({32}, rng));
    timed("conv_transpose2d 2x2 s2 4x64x64x64->32", reps, [&] {
      t.reset();
      auto xv = t.leaf(x);
      t.backward(sum(t, conv_transpose2d(t, xv, w, b, 2)));
    });
  }
  if (argc > 2) {  // DCGAN-sized layers (batch 64, 28x28 digits): many small images
    struct L { const char* name; Shape x, w; bool transpose; };
    for (const L& l : {L{"dcgan conv 64x1x28x28->64 k4s2p1", {64, 1, 28, 28}, {64, 1, 4, 4}, false},
                       L{"dcgan conv 64x64x14x14->128 k4s2p1", {64, 64, 14, 14}, {128, 64, 4, 4}, false},
                       L{"dcgan convT 64x128x7x7->64 k4s2p1", {64, 128, 7, 7}, {128, 64, 4, 4}, true},
                       L{"dcgan convT 64x64x14x14->1 k4s2p1", {64, 64, 14, 14}, {64, 1, 4, 4}, true}}) {
      Tensor<float> x = randn<float>(l.x, rng);
      Param<float> w(randn<float>(l.w, rng)), b(randn<float>({l.w[l.transpose ? 1 : 0]}, rng));
      timed(l.name, reps, [&] {
        t.reset();
        auto xv = t.leaf(x);
        t.backward(sum(t, l.transpose ? conv_transpose2d(t, xv, w, b, 2, 1) : conv2d(t, xv, w, b, 2, 1)));
      });
    }
  }
  if (argc > 2) {  // extra shapes from the models: pooling and upsampling
    Tensor<float> x = randn<float>({4, 32, 128, 128}, rng);
    timed("max_pool2d 2 4x32x128x128", reps, [&] {
      t.reset();
      t.backward(sum(t, max_pool2d(t, t.leaf(x), 2)));
    });
    timed("upsample_bilinear2d x2 4x32x128x128", reps, [&] {
      t.reset();
      t.backward(sum(t, upsample_bilinear2d(t, t.leaf(x), 2)));
    });
  }
}
