// Forward + backward time of single ops at the shapes of bench/README.md,
// the same shapes ../shared/bench/ops_peer.py times in PyTorch.
// Each iteration: reset the tape, run the op, reduce to a scalar, backward.
#include <benchmark/benchmark.h>

#include <marrow/marrow.hpp>
#include <marrow/loss.hpp>
#include <marrow/ops/attention.hpp>
#include <marrow/ops/conv.hpp>
#include <marrow/ops/nn.hpp>

using namespace marrow;

namespace {
Tensor<float> rnd(const Shape& s, Rng& rng) { return randn<float>(s, rng); }

// Run fwd(tape) -> Var, then backward of its sum; zero the parameter grads between runs.
template <class Fwd> void run(benchmark::State& state, std::vector<Param<float>*> params, Fwd fwd) {
  Tape<float> tape;
  for (auto _ : state) {
    tape.reset();
    for (auto* p : params) p->zero_grad();
    Var<float> y = fwd(tape);
    tape.backward(y.numel() == 1 ? y : sum(tape, y));
    benchmark::DoNotOptimize(params[0]->grad().data());
  }
}
}  // namespace

static void linear_768x128_to_512(benchmark::State& st) {
  Rng rng(0);
  Param<float> x(rnd({768, 128}, rng)), w(rnd({512, 128}, rng)), b(rnd({512}, rng));
  run(st, {&x, &w, &b}, [&](Tape<float>& t) { return linear(t, x, w, b); });
}
static void causal_attention_B12_H4_T64_D32(benchmark::State& st) {
  Rng rng(0);
  Param<float> q(rnd({12, 4, 64, 32}, rng)), k(rnd({12, 4, 64, 32}, rng)), v(rnd({12, 4, 64, 32}, rng));
  run(st, {&q, &k, &v}, [&](Tape<float>& t) { return scaled_dot_product_attention(t, q, k, v, true); });
}
static void conv2d_3x3_4x32x128x128_to_32(benchmark::State& st) {
  Rng rng(0);
  Param<float> x(rnd({4, 32, 128, 128}, rng)), w(rnd({32, 32, 3, 3}, rng)), b(rnd({32}, rng));
  run(st, {&x, &w, &b}, [&](Tape<float>& t) { return conv2d(t, x, w, b, 1, 1); });
}
static void conv_transpose2d_2x2_s2_4x64x64x64_to_32(benchmark::State& st) {
  Rng rng(0);
  Param<float> x(rnd({4, 64, 64, 64}, rng)), w(rnd({64, 32, 2, 2}, rng)), b(rnd({32}, rng));
  run(st, {&x, &w, &b}, [&](Tape<float>& t) { return conv_transpose2d(t, x, w, b, 2); });
}
static void layer_norm_768x128(benchmark::State& st) {
  Rng rng(0);
  Param<float> x(rnd({768, 128}, rng)), g(rnd({128}, rng)), b(rnd({128}, rng));
  run(st, {&x, &g, &b}, [&](Tape<float>& t) { return layer_norm(t, x, g, b); });
}
static void cross_entropy_768x65(benchmark::State& st) {
  Rng rng(0);
  Param<float> logits(rnd({768, 65}, rng));
  Tensor<std::int32_t> target = Tensor<std::int32_t>::uninitialized({768});
  for (auto& v : target) v = std::int32_t(rng.below(65));
  run(st, {&logits}, [&](Tape<float>& t) { return cross_entropy(t, logits, target); });
}

// Real time: the ops run on OpenMP threads, CPU time would count both cores.
BENCHMARK(linear_768x128_to_512)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(causal_attention_B12_H4_T64_D32)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(conv2d_3x3_4x32x128x128_to_32)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(conv_transpose2d_2x2_s2_4x64x64x64_to_32)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(layer_norm_768x128)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(cross_entropy_768x65)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_MAIN();
