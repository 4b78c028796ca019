#include "testing.hpp"

#include <unistd.h>

#include <filesystem>
#include <models/charformer/checkpoint.hpp>
#include <models/charformer/metrics.hpp>
#include <models/charformer/model.hpp>
#include <models/charformer/sample.hpp>
#include <models/charformer/train.hpp>

using namespace marrow;
using namespace marrow::charformer;
using marrow::testing::project;

namespace {
Config tiny(bool bias) {
  return {.vocab_size = 7, .block_size = 6, .n_layer = 2, .n_head = 2, .n_embd = 8, .dropout = 0.0, .bias = bias};
}
Tensor<std::int32_t> random_ids(Shape s, int V, Rng& rng) {
  Tensor<std::int32_t> t = Tensor<std::int32_t>::uninitialized(s);
  for (auto& v : t) v = std::int32_t(rng.below(std::uint64_t(V)));
  return t;
}
std::string periodic_text(std::size_t n) {
  const std::string unit = "abcdefgh\n";
  std::string s;
  while (s.size() < n) s += unit;
  return s.substr(0, n);
}
}  // namespace

TEST_CASE("charformer: gradients of every parameter match central differences (2 layers, C=8, T=5)") {
  for (bool bias : {true, false}) {
    CAPTURE(bias);
    Rng rng(1);
    GPT<double> m(tiny(bias), rng);
    // Larger than GPT-2 init, so every path (attention included) carries real signal.
    for (auto& p : parameters<double>(m))
      if (p.param->value().ndim() >= 2) p.param->value().arr() *= 15.0;
      else p.param->value().arr() += randn<double>(p.param->shape(), rng, 0.0, 0.3).arr();
    auto ps = parameters<double>(m);
    CHECK(ps.size() == (bias ? 2 + 2 * 12 + 2 : 2 + 2 * 6 + 1));  // wte, wpe; per block; ln_f
    auto x = random_ids({2, 5}, 7, rng), y = random_ids({2, 5}, 7, rng);
    // floor 1e-4: the key bias has an exactly zero gradient (softmax ignores a per-row shift),
    // where central differences return rounding noise of ~1e-10.
    auto r = gradcheck(ps, [&](Tape<double>& t) { return m.loss(t, x, y); },
                       {.h = 1e-5, .samples_per_tensor = 48, .floor = 1e-4});
    MARROW_CHECK_GRAD(r, 1e-6);
    CHECK(r.checked >= int(ps.size()) * 8);
    for (auto& p : ps) {  // no tensor is left out of the graph
      CAPTURE(p.name);
      CHECK(p.param->grad().arr().abs().maxCoeff() > 0.0);
    }
  }
}

TEST_CASE("charformer: parameter names are nanoGPT's and the head is tied to wte") {
  Rng rng(0);
  GPT<float> m({.vocab_size = 65, .block_size = 64, .n_layer = 4, .n_head = 4, .n_embd = 128}, rng);
  auto ps = parameters<float>(m);
  CHECK(ps.front().name == "transformer.wte.weight");
  CHECK(ps[1].name == "transformer.wpe.weight");
  CHECK(ps[2].name == "transformer.h.0.ln_1.weight");
  CHECK(ps[3].name == "transformer.h.0.attn.c_attn.weight");
  CHECK(ps.back().name == "transformer.ln_f.weight");
  // nanoGPT's CPU configuration: 12·n_layer·C² + (V + block)·C + (2·n_layer + 1)·C
  CHECK(count_parameters<float>(m) == 12 * 4 * 128 * 128 + (65 + 64) * 128 + 9 * 128);
  // Init: N(0, 0.02), residual projections N(0, 0.02/√(2·n_layer)), LayerNorm gains 1.
  auto sd = [](const Tensor<float>& w) { return std::sqrt(double(w.arr().square().mean())); };
  CHECK(sd(m.h[0].attn.c_attn.weight.value()) == doctest::Approx(0.02).epsilon(0.02).scale(0));
  CHECK(sd(m.wte.weight.value()) == doctest::Approx(0.02).epsilon(0.05).scale(0));
  CHECK(sd(m.h[1].attn.c_proj.weight.value()) == doctest::Approx(0.02 / std::sqrt(8.0)).epsilon(0.03).scale(0));
  CHECK(sd(m.h[2].mlp.c_proj.weight.value()) == doctest::Approx(0.02 / std::sqrt(8.0)).epsilon(0.03).scale(0));
  CHECK(m.h[3].ln_2.weight.value().arr().minCoeff() == 1.0f);
  // At init the logits are near zero: the loss is ≈ log V.
  Tape<float> t;
  auto x = random_ids({2, 64}, 65, rng), y = random_ids({2, 64}, 65, rng);
  CHECK(m.loss(t, x, y).item() == doctest::Approx(std::log(65.0)).epsilon(0.02).scale(0));
}

TEST_CASE("charformer: exact GELU (erf form) values and gradient") {
  Tape<double> t;
  Var<double> x = t.leaf(Tensor<double>({5}, {-2.0, -1.0, 0.0, 1.0, 2.0}));
  Var<double> y = gelu(t, x, GeluForm::Erf);
  // x·Φ(x) from tables of the normal CDF.
  const double want[5] = {-0.04550026389635842, -0.15865525393145707, 0.0, 0.8413447460685429, 1.9544997361036416};
  for (int i = 0; i < 5; ++i) CHECK(y.value()[i] == doctest::Approx(want[i]).epsilon(1e-12));
  Tape<float> tf;  // float goes through Eigen's vectorized erf
  Tensor<float> xf({4}, {-3.0f, -0.5f, 0.5f, 3.0f});
  Var<float> yf = gelu(tf, tf.input(xf), GeluForm::Erf);
  // Relative: at x = −3, 1 + erf(x/√2) ≈ 0.0027 cancels in float (≈ 5e-5 off, measured).
  const double rel[4] = {1e-4, 1e-6, 1e-6, 1e-6};
  for (int i = 0; i < 4; ++i) {
    const double v = xf[i];
    CHECK(yf.value()[i] == doctest::Approx(0.5 * v * (1 + std::erf(v / std::sqrt(2.0)))).epsilon(rel[i]).scale(0));
  }
  Rng rng(2);
  Param<double> p(randn<double>({3, 50}, rng, 0.0, 2.0));
  auto r = gradcheck({&p}, [&](Tape<double>& t) { return project(t, gelu(t, Var<double>(p), GeluForm::Erf)); }, {.h = 1e-5, .floor = 1e-4});
  MARROW_CHECK_GRAD(r, 1e-6);
  Tape<double> other;
  CHECK_THROWS_WITH(gelu(other, x, GeluForm::Erf), doctest::Contains("gelu: Var belongs to another tape"));
}

TEST_CASE("charformer: KV-cached decoding gives the uncached logits") {
  Rng rng(5);
  Config c = tiny(true);
  c.block_size = 8;
  GPT<double> m(c, rng);
  for (auto& p : parameters<double>(m)) p.param->value().arr() += randn<double>(p.param->shape(), rng, 0.0, 0.2).arr();
  auto seq = random_ids({1, 8}, 7, rng);
  Tensor<double> full;
  {
    Tape<double> t;
    full = m(t, seq).value().clone();  // (1, 8, V)
  }
  SUBCASE("a 3-token prompt, then one token at a time") {
    KVCache<double> cache = m.make_cache();
    Tape<double> t;
    std::span<const std::int32_t> s(seq.data(), 8);
    Tensor<double> lg = m.decode(t, cache, s.subspan(0, 3));
    for (index_t v = 0; v < 7; ++v) CHECK(lg[v] == doctest::Approx(full.at({0, 2, v})).epsilon(1e-12));
    for (index_t i = 3; i < 8; ++i) {
      t.reset();
      lg = m.decode(t, cache, s.subspan(std::size_t(i), 1));
      CAPTURE(i);
      for (index_t v = 0; v < 7; ++v) CHECK(lg[v] == doctest::Approx(full.at({0, i, v})).epsilon(1e-12));
    }
    CHECK(cache.len == 8);
    t.reset();
    CHECK_THROWS_WITH(m.decode(t, cache, s.subspan(0, 1)), doctest::Contains("8 cached + 1 new tokens exceed block_size 8"));
  }
  SUBCASE("a full cache is refilled from the most recent context") {
    // slack 0 is nanoGPT's exact sliding window: logits after token i come from the last 8 tokens.
    auto seq2 = random_ids({1, 11}, 7, rng);
    Generator<double> g(m, {.slack = 0});
    const Tensor<double>* lg = nullptr;
    for (index_t i = 0; i < 11; ++i) lg = &g.feed(std::span<const std::int32_t>(seq2.data() + i, 1));
    CHECK(g.refills() == 3);
    Tensor<std::int32_t> last8 = seq2.slice(1, 3, 11);
    Tape<double> t;
    Tensor<double> ref = m(t, last8).value();
    for (index_t v = 0; v < 7; ++v) CHECK((*lg)[v] == doctest::Approx(ref.at({0, 7, v})).epsilon(1e-12));
  }
}

TEST_CASE("charformer: sampling by temperature and top-k") {
  Tensor<float> logits({4}, {1.0f, 3.0f, 2.0f, -1.0f});
  Rng rng(3);
  CHECK(sample_logits(logits, {.temperature = 0.0}, rng) == 1);
  CHECK(sample_logits(logits, {.temperature = 1.0, .top_k = 1}, rng) == 1);
  int counts[4] = {};
  for (int i = 0; i < 20000; ++i) ++counts[sample_logits(logits, {.temperature = 1.0, .top_k = 2}, rng)];
  CHECK(counts[0] == 0);
  CHECK(counts[3] == 0);
  // top-2 of softmax: p(1) = e³/(e³ + e²) = 0.7311
  CHECK(counts[1] / 20000.0 == doctest::Approx(0.7311).epsilon(0.02).scale(0));
  for (int& c : counts) c = 0;
  for (int i = 0; i < 20000; ++i) ++counts[sample_logits(logits, {.temperature = 2.0, .top_k = 0}, rng)];
  const double z = std::exp(0.5) + std::exp(1.5) + std::exp(1.0) + std::exp(-0.5);
  CHECK(counts[3] / 20000.0 == doctest::Approx(std::exp(-0.5) / z).epsilon(0.1).scale(0));  // 0.064; at T 1: 0.012
  CHECK_THROWS_WITH(sample_logits(logits, {.temperature = -1.0}, rng), doctest::Contains("negative temperature"));
}

TEST_CASE("charformer: bad configurations and inputs are named") {
  Rng rng(0);
  CHECK_THROWS_WITH(GPT<float>({.n_head = 3, .n_embd = 128}, rng), doctest::Contains("n_embd 128 is not divisible by n_head 3"));
  GPT<float> m(tiny(false), rng);
  Tape<float> t;
  auto x = random_ids({2, 7}, 7, rng);
  CHECK_THROWS_WITH(m.loss(t, x, x), doctest::Contains("sequence of length 7 exceeds block_size 6"));
  auto y = random_ids({2, 5}, 7, rng);
  CHECK_THROWS_WITH(m.loss(t, y, x), doctest::Contains("targets (2, 7) do not match ids (2, 5)"));
  Args a;
  a.model = tiny(false);
  CHECK_THROWS_WITH(Trainer<float>(a, data::Vocab::from_text("abc"), "abcabc"), doctest::Contains("needs at least block_size + 1"));
}

TEST_CASE("charformer: a tiny model learns a periodic text, eval batches are fixed, NaN stops the run") {
  const std::string text = periodic_text(4000);
  Args a;
  a.model = {.block_size = 16, .n_layer = 1, .n_head = 2, .n_embd = 16};
  a.batch_size = 8;
  a.lr = 1e-2;
  a.min_lr = 1e-3;
  a.warmup = 10;
  a.steps = 150;
  a.eval_iters = 4;
  Trainer<float> tr(a, data::Vocab::from_text(text), text);
  const double before = tr.estimate_loss(tr.val_tokens);
  CHECK(before == doctest::Approx(std::log(9.0)).epsilon(0.05).scale(0));
  CHECK(tr.estimate_loss(tr.val_tokens) == before);  // the same batches every time
  StepStats diag;
  while (!tr.done()) {
    StepStats s = tr.train_step(tr.step % 50 == 0);
    if (!s.blocks.empty()) diag = s;
  }
  CHECK(tr.estimate_loss(tr.val_tokens) < 0.1);
  REQUIRE(diag.blocks.size() == 1);
  REQUIRE(diag.attn_entropy.size() == 1);
  CHECK(diag.blocks[0].attn_grad > 0);
  CHECK(diag.blocks[0].mlp_weight > 0);
  CHECK(diag.attn_entropy[0] >= 0);
  CHECK(diag.attn_entropy[0] < std::log(16.0));
  // Greedy generation continues the pattern.
  Generator<float> g(tr.model, {.temperature = 0.0});
  auto prompt = tr.vocab.encode("abc");
  g.feed(prompt);
  Rng rng(0);
  std::vector<std::int32_t> out;
  for (int i = 0; i < 30; ++i) out.push_back(g.next(rng));
  CHECK(tr.vocab.decode(out) == "defgh\nabcdefgh\nabcdefgh\nabcdef");
  CHECK(g.refills() > 0);
  // A poisoned weight: the run stops before the update, naming the cause.
  tr.model.h[0].mlp.c_fc.weight.value()[0] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_WITH(tr.train_step(), doctest::Contains("loss became NaN at step 151; last good checkpoint: "
                                                      "none saved yet. Try a lower --lr or --grad-clip."));
}

TEST_CASE("charformer: resuming from a checkpoint continues bit for bit") {
  const std::string text = periodic_text(2000) + "xyz";
  Args a;
  a.model = {.block_size = 8, .n_layer = 1, .n_head = 2, .n_embd = 8, .dropout = 0.1};
  a.batch_size = 4;
  a.warmup = 2;
  a.steps = 6;
  const auto vocab = data::Vocab::from_text(text);
  Trainer<float> straight(a, vocab, text);
  while (!straight.done()) straight.train_step();
  const std::string path =
      (std::filesystem::temp_directory_path() / ("charformer_resume_" + std::to_string(::getpid()) + ".safetensors")).string();
  {
    Trainer<float> first(a, vocab, text);
    for (int i = 0; i < 3; ++i) first.train_step();
    first.save(path, "{}");
  }
  Trainer<float> second(a, vocab, text);
  CHECK(second.resume(path).step == 3);
  while (!second.done()) second.train_step();
  auto p1 = parameters<float>(straight.model), p2 = parameters<float>(second.model);
  for (std::size_t i = 0; i < p1.size(); ++i) {
    CAPTURE(p1[i].name);
    CHECK((p1[i].param->value().arr() == p2[i].param->value().arr()).all());
  }
  // Sample/eval read the model shape and the vocabulary back from the metadata.
  CheckpointInfo info = Checkpoint<float>::info_of(safetensors::read(path), path);
  CHECK(vocab_from_checkpoint(info, path).chars == vocab.chars);
  CHECK(config_from_checkpoint(info, path).n_embd == 8);
  CHECK(config_from_checkpoint(info, path).dropout == 0.1);  // JSON keeps every digit
  Trainer<float> other(a, data::Vocab::from_text(text + "Q"), text + "Q");
  CHECK_THROWS_WITH(other.resume(path), doctest::Contains("different character set"));
  std::filesystem::remove(path);
}

TEST_CASE("charformer: the model config of a checkpoint is read strictly, old checkpoints included") {
  CheckpointInfo info;  // the metadata a checkpoint of the hand-written JSON writer carried
  info.metadata["model"] = R"({"vocab_size":57,"block_size":32,"n_layer":2,"n_head":2,"n_embd":32,"dropout":0,"bias":false})";
  const Config c = config_from_checkpoint(info, "old.safetensors");
  CHECK(c.vocab_size == 57);
  CHECK(c.block_size == 32);
  CHECK(c.n_layer == 2);
  CHECK(c.n_head == 2);
  CHECK(c.n_embd == 32);
  CHECK(c.dropout == 0.0);
  CHECK(!c.bias);
  info.metadata["model"] = R"({"vocab_size":57,"block_size":32,"n_layer":2,"n_head":2,"dropout":0,"bias":false})";
  CHECK_THROWS_WITH(config_from_checkpoint(info, "old.safetensors"), doctest::Contains("has no field 'n_embd'"));
  info.metadata["model"] = R"({"vocab_size":57,"block_size":32,"n_layer":2,"n_head":3,"n_embd":32,"dropout":0,"bias":false})";
  CHECK_THROWS_WITH(config_from_checkpoint(info, "old.safetensors"), doctest::Contains("not divisible by n_head 3"));
  info.metadata.erase("model");
  CHECK_THROWS_WITH(config_from_checkpoint(info, "old.safetensors"), doctest::Contains("not a charformer checkpoint?"));
}

TEST_CASE("charformer: full-split evaluation predicts every character once, steady-state steps allocate nothing") {
  const std::string text = periodic_text(2998) + "zz";
  Args a;
  a.model = {.block_size = 8, .n_layer = 1, .n_head = 2, .n_embd = 8};
  a.batch_size = 4;
  a.steps = 20;
  a.eval_iters = 2;
  Trainer<float> tr(a, data::Vocab::from_text(text), text);
  // 300 validation characters: 37 full windows (32 in one pass, then 5) and a tail of 3.
  REQUIRE(tr.val_tokens.size() == 300);
  Tape<float> t;
  const double full = mean_loss_full(tr.model, tr.val_tokens, t);
  double by_hand = 0;  // one window at a time
  for (std::size_t s = 0; s + 1 < tr.val_tokens.size(); s += 8) {
    const index_t len = index_t(std::min<std::size_t>(8, tr.val_tokens.size() - 1 - s));
    Tensor<std::int32_t> x({1, len}, std::vector<std::int32_t>(tr.val_tokens.begin() + index_t(s), tr.val_tokens.begin() + index_t(s) + len));
    Tensor<std::int32_t> y({1, len}, std::vector<std::int32_t>(tr.val_tokens.begin() + index_t(s) + 1, tr.val_tokens.begin() + index_t(s) + len + 1));
    t.reset();
    by_hand += double(tr.model.loss(t, x, y).item()) * double(len);
  }
  CHECK(full == doctest::Approx(by_hand / 299.0).epsilon(1e-5));
  for (int i = 0; i < 4; ++i) tr.train_step(i == 1);
  tr.estimate_loss(tr.val_tokens);
  const std::size_t warm = BufferPool::instance().fresh_bytes();
  for (int i = 0; i < 6; ++i) tr.train_step(i == 3);
  tr.estimate_loss(tr.val_tokens);
  if (BufferPool::instance().enabled()) CHECK(BufferPool::instance().fresh_bytes() == warm);  // not under MARROW_NO_POOL
}

TEST_CASE("charformer: float loss and gradients on our GEMM agree with Eigen's") {
  Rng rng(5);
  const Config c{.vocab_size = 40, .block_size = 32, .n_layer = 2, .n_head = 4, .n_embd = 64, .dropout = 0.0, .bias = true};
  GPT<float> m(c, rng);
  const auto x = random_ids({4, 32}, 40, rng), y = random_ids({4, 32}, 40, rng);
  testing::check_gemm_engines(parameters<float>(m), [&](Tape<float>& t) { return m.loss(t, x, y); }, 1e-4);
}

TEST_CASE("charformer: recompute gives the loss, gradients and dropout draws of the plain model, bit for bit") {
  // T = 6 on the plain attention kernel, T = 300 on the tiled one (from 256 keys); dropout everywhere.
  for (index_t T : {index_t(6), index_t(300)}) {
    CAPTURE(T);
    Config c{.vocab_size = 7, .block_size = int(T), .n_layer = 2, .n_head = 2, .n_embd = 8, .dropout = 0.2, .bias = true};
    Rng r1(1), r2(1), data(3);
    GPT<float> plain(c, r1);
    c.recompute = true;
    GPT<float> rc(c, r2);
    auto pp = parameters<float>(plain), pr = parameters<float>(rc);
    Tape<float> tp, tr;
    for (int step = 0; step < 2; ++step) {  // the generators move on alike
      CAPTURE(step);
      const auto x = random_ids({2, T}, 7, data), y = random_ids({2, T}, 7, data);
      tp.reset();
      tr.reset();
      std::vector<Tensor<float>> ep, er;
      Var<float> lp = plain.loss(tp, x, y, &ep), lr = rc.loss(tr, x, y, &er);
      CHECK(tr.size() < tp.size());
      for (auto& p : pp) p.param->zero_grad();
      tp.backward(lp);
      testing::check_param_uses_final(tr, lr, pr);  // backward, checking dist's bucket invariant on the way
      CHECK(testing::same_bits(lp.value(), lr.value()));
      for (std::size_t i = 0; i < pp.size(); ++i) {
        CAPTURE(pp[i].name);
        CHECK(testing::same_bits(pp[i].param->grad(), pr[i].param->grad()));
      }
      for (std::size_t i = 0; i < ep.size(); ++i) CHECK(testing::same_bits(ep[i], er[i]));
      auto gp = plain.dropout_rngs(), gr = rc.dropout_rngs();
      for (std::size_t i = 0; i < gp.size(); ++i) CHECK(Rng(*gp[i].second).next_u64() == Rng(*gr[i].second).next_u64());
    }
  }
}

TEST_CASE("charformer: training with recompute, fresh or resumed, gives the same weights and allocates nothing in steady state") {
  const std::string text = periodic_text(2000) + "xyz";
  Args a;
  a.model = {.block_size = 8, .n_layer = 2, .n_head = 2, .n_embd = 8, .dropout = 0.1};
  a.batch_size = 4;
  a.warmup = 2;
  a.steps = 6;
  const auto vocab = data::Vocab::from_text(text);
  Trainer<float> straight(a, vocab, text);
  while (!straight.done()) straight.train_step(straight.step == 1);
  const std::string path =
      (std::filesystem::temp_directory_path() / ("charformer_recompute_" + std::to_string(::getpid()) + ".safetensors")).string();
  {
    Trainer<float> first(a, vocab, text);  // saved without recompute
    for (int i = 0; i < 3; ++i) first.train_step();
    first.save(path, "{}");
  }
  a.model.recompute = true;
  Trainer<float> fresh(a, vocab, text), resumed(a, vocab, text);
  std::size_t warm = 0;
  while (!fresh.done()) {
    fresh.train_step(fresh.step == 1);
    if (fresh.step == 3) warm = BufferPool::instance().fresh_bytes();
  }
  if (BufferPool::instance().enabled()) CHECK(BufferPool::instance().fresh_bytes() == warm);  // not under MARROW_NO_POOL
  CHECK(resumed.resume(path).step == 3);
  CHECK(resumed.model.config.recompute);  // the checkpoint's model config does not carry it
  while (!resumed.done()) resumed.train_step();
  auto p0 = parameters<float>(straight.model), p1 = parameters<float>(fresh.model), p2 = parameters<float>(resumed.model);
  for (std::size_t i = 0; i < p0.size(); ++i) {
    CAPTURE(p0[i].name);
    CHECK(testing::same_bits(p0[i].param->value(), p1[i].param->value()));
    CHECK(testing::same_bits(p0[i].param->value(), p2[i].param->value()));
  }
  CheckpointInfo info = Checkpoint<float>::info_of(safetensors::read(path), path);
  CHECK(info.metadata["model"].find("recompute") == std::string::npos);
  std::filesystem::remove(path);
}
