// Data parallelism (include/marrow/dist/): the pairwise gradient tree, the
// start-up agreement and the dealing of samples to shards. Every case holds at
// any power-of-two number of processes: ctest runs them in one process and
// again under `mpirun -np 2` (dist.np2), where the world's answers are compared
// with the same computation done by this process alone.
#include "testing.hpp"

#include <cstring>

#include <marrow/dist/data_parallel.hpp>

using namespace marrow;

namespace {

// Rank r's contribution: values whose float sum depends on the order of the additions.
std::vector<float> contribution(int rank, std::size_t n) {
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) {
    const float big = (i % 3 == 0) ? 1e8f : 1.0f;
    v[i] = (rank % 2 == 0 ? big : -big) + float(rank + 1) * 0.3f + float(i % 7) * 1e-3f;
  }
  return v;
}

// The pairwise tree over ranks 0..size-1, computed by one process.
std::vector<float> tree_reference(int size, std::size_t n) {
  std::vector<std::vector<float>> level;
  for (int r = 0; r < size; ++r) level.push_back(contribution(r, n));
  while (level.size() > 1) {
    std::vector<std::vector<float>> up;
    for (std::size_t k = 0; k < level.size(); k += 2) {
      std::vector<float> s(n);
      for (std::size_t i = 0; i < n; ++i) s[i] = level[k][i] + level[k + 1][i];
      up.push_back(std::move(s));
    }
    level = std::move(up);
  }
  return level[0];
}

bool same_bits(const float* a, const float* b, std::size_t n) { return std::memcmp(a, b, n * sizeof(float)) == 0; }

// A two-layer network on 16 samples: the gradient of every parameter for the
// shards [first, end) of K, summed by a ShardSum over `comm`.
struct Net {
  Param<float> w1, b1, w2, b2;
  bool recompute = false;  // the first layer recomputed in backward (recompute.hpp)
  Net() {  // the same weights in every Net
    Rng rng(9);
    w1 = Param<float>(randn<float>({6, 5}, rng, 0.0, 0.5)), b1 = Param<float>(randn<float>({6}, rng));
    w2 = Param<float>(randn<float>({3, 6}, rng, 0.0, 0.5)), b2 = Param<float>(randn<float>({3}, rng));
  }
  ParamList<float> params() { return {{"w1", &w1}, {"b1", &b1}, {"w2", &w2}, {"b2", &b2}}; }
  Var<float> loss(Tape<float>& t, const Tensor<float>& x, const Tensor<float>& y) {
    auto first = [this](Tape<float>& s, const std::vector<Var<float>>& in) { return tanh(s, linear(s, in[0], w1, b1)); };
    Var<float> h = recompute ? marrow::recompute(t, first, {t.input(x)}) : first(t, {t.input(x)});
    return mse(t, linear(t, h, w2, b2), y);
  }
};
bool same_gradients(Net& a, Net& b) {
  bool same = true;
  auto pa = a.params(), pb = b.params();
  for (std::size_t i = 0; i < pa.size(); ++i) {
    CAPTURE(pa[i].name);
    const bool s = same_bits(pa[i].param->grad().data(), pb[i].param->grad().data(), std::size_t(pa[i].param->numel()));
    CHECK(s);
    same = same && s;
  }
  return same;
}
void sharded_gradients(Net& net, const Tensor<float>& x, const Tensor<float>& y, const dist::Comm& comm, int shards) {
  dist::ShardSum<float> sum(net.params(), comm, shards);
  for (auto& p : net.params()) p.param->zero_grad();
  for (int s = sum.first_shard(); s < sum.end_shard(); ++s) {
    const auto [b0, b1] = dist::shard_range(x.dim(0), shards, s);
    Tape<float> t;
    t.backward(net.loss(t, dist::batch_rows(x, b0, b1), dist::batch_rows(y, b0, b1)));
    sum.add_shard();
  }
  sum.finish();
}

}  // namespace

TEST_CASE("dist: tree_sum gives every rank the pairwise sum in rank order") {
  const dist::Comm& world = dist::Comm::world();
  // Fewer values than ranks, chunks of unequal length, and more than one piece of 16 MiB.
  for (std::size_t len : {std::size_t(1), std::size_t(3), std::size_t(1001), (std::size_t(1) << 22) + 7}) {
    std::vector<float> mine = contribution(world.rank(), len);
    world.tree_sum(mine.data(), len);
    const std::vector<float> want = tree_reference(world.size(), len);
    CHECK_MESSAGE(same_bits(mine.data(), want.data(), len), len, " values");
  }
  const std::size_t n = 1000;
  // The order matters for these values: a left-to-right sum over 4 ranks rounds differently.
  std::vector<float> ltr = contribution(0, n);
  for (int r = 1; r < 4; ++r) {
    const std::vector<float> c = contribution(r, n);
    for (std::size_t i = 0; i < n; ++i) ltr[i] += c[i];
  }
  const std::vector<float> tree4 = tree_reference(4, n);
  CHECK_FALSE(same_bits(ltr.data(), tree4.data(), n));
}

TEST_CASE("dist: sharded gradients are the same bits on any number of processes, and the batch's mean gradient") {
  const dist::Comm& world = dist::Comm::world();
  Rng rng(5);
  const Tensor<float> x = randn<float>({16, 5}, rng), y = randn<float>({16, 3}, rng);
  Net dist_net, self_net;
  const int K = 4;
  sharded_gradients(dist_net, x, y, world, K);      // this rank's shards, the upper tree across ranks
  sharded_gradients(self_net, x, y, dist::Comm::self(), K);  // all four shards here
  CHECK(same_gradients(dist_net, self_net));
  auto a = dist_net.params();
  // One shard of 16: the plain batch gradient. The sharded one is the same mean, up to rounding.
  Net whole;
  sharded_gradients(whole, x, y, dist::Comm::self(), 1);
  auto w = whole.params();
  for (std::size_t i = 0; i < a.size(); ++i)
    for (index_t j = 0; j < a[i].param->numel(); ++j) {
      const double g = a[i].param->grad()[j], ref = w[i].param->grad()[j];
      CHECK(std::abs(g - ref) <= 1e-5 * std::max(1.0, std::abs(ref)));
    }
}

TEST_CASE("dist: gradient buckets sent while backward still runs give the same bits, the last layer's go first") {
  const dist::Comm& world = dist::Comm::world();
  Rng rng(5);
  const Tensor<float> x = randn<float>({16, 5}, rng), y = randn<float>({16, 3}, rng);
  const int K = 4;
  Net net, ref;
  // 57 values in buckets of 7 from the end: [50, 57) ... [1, 8), [0, 1); buckets
  // cross parameters. w2 and b2 fill [36, 57): three buckets are final once the
  // second linear's closure has run, before the first layer's backward.
  dist::DataParallel<float> dp(net.params(), world, K, {.bucket_values = 7});
  Tape<float> t;
  for (int step = 0; step < 2; ++step) {  // the second step reuses every buffer
    for (auto& p : net.params()) p.param->zero_grad();
    dp.step(x.dim(0), [&](std::int64_t b0, std::int64_t b1) {
      t.reset();
      Var<float> l = net.loss(t, dist::batch_rows(x, b0, b1), dist::batch_rows(y, b0, b1));
      dp.backward(t, l);
      return double(l.item());
    });
    sharded_gradients(ref, x, y, dist::Comm::self(), K);
    CHECK(same_gradients(net, ref));
    CHECK(dp.timing().buckets == 9);
    CHECK(dp.timing().early_buckets == (world.size() > 1 ? 3 : 0));
  }
}

TEST_CASE("dist: with a recomputed layer, buckets sent while backward still runs give the same bits") {
  // The recomputed layer's parameters are used inside the checkpoint's closure: their
  // buckets must wait for it (Tape::param_uses), while the last layer's still go first.
  const dist::Comm& world = dist::Comm::world();
  Rng rng(6);
  const Tensor<float> x = randn<float>({16, 5}, rng), y = randn<float>({16, 3}, rng);
  const int K = 4;
  Net net, ref;
  net.recompute = true;
  dist::DataParallel<float> dp(net.params(), world, K, {.bucket_values = 7});
  Tape<float> t;
  for (int step = 0; step < 2; ++step) {
    for (auto& p : net.params()) p.param->zero_grad();
    dp.step(x.dim(0), [&](std::int64_t b0, std::int64_t b1) {
      t.reset();
      Var<float> l = net.loss(t, dist::batch_rows(x, b0, b1), dist::batch_rows(y, b0, b1));
      dp.backward(t, l);
      return double(l.item());
    });
    sharded_gradients(ref, x, y, dist::Comm::self(), K);
    CHECK(same_gradients(net, ref));
    CHECK(dp.timing().early_buckets == (world.size() > 1 ? 3 : 0));
  }
}

TEST_CASE("dist: each epoch's shuffled order is dealt to the shards, every sample once") {
  const dist::Comm& world = dist::Comm::world();
  const int K = 4;
  const index_t N = 103, B = 8;  // 12 batches; drop_last leaves 7 samples out
  std::vector<index_t> order(static_cast<std::size_t>(N));
  for (index_t i = 0; i < N; ++i) order[std::size_t(i)] = i;
  Rng rng(11);
  rng.shuffle(order);
  std::vector<double> seen(std::size_t(N), 0.0);
  for (index_t b = 0; b + B <= N; b += B) {
    const std::vector<index_t> batch(order.begin() + b, order.begin() + b + B);
    const dist::ShardSpan mine = dist::local_shards(world, K);
    for (int s = mine.begin; s < mine.end; ++s)
      for (index_t i : dist::shard_indices(batch, K, s)) seen[std::size_t(i)] += 1;
  }
  world.tree_sum(seen.data(), seen.size());
  int once = 0, never = 0, more = 0;
  for (double c : seen) (c == 1 ? once : c == 0 ? never : more) += 1;
  CHECK(once == 96);
  CHECK(never == 7);
  CHECK(more == 0);
}

TEST_CASE("dist: ranks that start with another configuration stop with a clear error") {
  const dist::Comm& world = dist::Comm::world();
  CHECK_NOTHROW(world.agree("test", "the same text"));
  if (world.size() > 1) {
    const std::string text = world.rank() == 1 ? "another text" : "the same text";
    CHECK_THROWS_WITH_AS(world.agree("test", text), doctest::Contains("rank(s) 1 of"), Error);
  }
}

TEST_CASE("dist: shard counts must be powers of two that divide the batch and fit the world") {
  CHECK_THROWS_WITH_AS(dist::shard_range(10, 4, 0), doctest::Contains("--shards 4 must divide the global batch of 10"),
                       Error);
  CHECK_THROWS_WITH_AS(dist::check_shards(3, dist::Comm::self()), doctest::Contains("power of two"), Error);
  CHECK(dist::shard_range(12, 4, 3) == std::pair<std::int64_t, std::int64_t>{9, 12});
}

TEST_CASE("dist: broadcast gives every rank rank 0's bytes") {
  const dist::Comm& world = dist::Comm::world();
  std::vector<float> v = contribution(world.rank(), 5000);
  world.broadcast(v.data(), v.size() * sizeof(float));
  const std::vector<float> want = contribution(0, 5000);
  CHECK(same_bits(v.data(), want.data(), v.size()));
}
