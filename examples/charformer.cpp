// charformer: a character-level GPT that learns any text file and writes more of it.
//
//   charformer train  --data input.txt --out runs/shakespeare        (nanoGPT's CPU configuration)
//   charformer sample --ckpt runs/shakespeare/checkpoint.safetensors --prompt "ROMEO:" --tokens 500
//   charformer eval   --ckpt runs/shakespeare/checkpoint.safetensors --data input.txt
#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <optional>
#include <string>

#include <marrow/data/file.hpp>
#include <marrow/train/checkpoint.hpp>
#include <marrow/train/cli.hpp>
#include <marrow/train/run.hpp>
#include <models/charformer/checkpoint.hpp>
#include <models/charformer/metrics.hpp>
#include <models/charformer/model.hpp>
#include <models/charformer/sample.hpp>
#include <models/charformer/train.hpp>

using namespace marrow;
using namespace marrow::charformer;

namespace {

#ifdef MARROW_SOURCE_DIR
const std::string kDefaultData = std::string(MARROW_SOURCE_DIR) + "/../shared/data/tinyshakespeare/input.txt";
#else
const std::string kDefaultData = "../shared/data/tinyshakespeare/input.txt";
#endif

struct SampleFlags {
  std::string prompt = "\n";
  int tokens = 500;
  double temperature = 0.8;
  int top_k = 200;
  int slack = -1;
};

// nanoGPT's configuration names, with dashes.
void add_train_flags(Cli& cli, Args& a, std::int64_t& log_every) {
  cli.flag("n-layer", a.model.n_layer, "transformer blocks").min(1);
  cli.flag("n-head", a.model.n_head, "attention heads (must divide n-embd)").min(1);
  cli.flag("n-embd", a.model.n_embd, "channels").min(1);
  cli.flag("block-size", a.model.block_size, "context length in characters").min(1);
  cli.flag("batch-size", a.batch_size, "sequences per step").min(1);
  cli.flag("dropout", a.model.dropout, "dropout probability").min(0).max(0.99);
  cli.flag("bias", a.model.bias, "biases in Linear layers and LayerNorms");
  cli.flag("recompute", a.model.recompute,
           "keep only each block's input and recompute the block in backward: less memory, same bits, ~1/3 more compute");
  cli.flag("lr", a.lr, "peak learning rate").min(0);
  cli.flag("min-lr", a.min_lr, "learning rate at the end of the cosine decay").min(0);
  cli.flag("warmup", a.warmup, "linear warmup steps").min(0);
  cli.flag("lr-decay-iters", a.lr_decay_iters, "step where the cosine reaches min-lr (0: = steps)").min(0);
  cli.flag("weight-decay", a.weight_decay, "AdamW weight decay on matrices").min(0);
  cli.flag("beta1", a.beta1, "AdamW beta1").min(0).max(0.999999);
  cli.flag("beta2", a.beta2, "AdamW beta2").min(0).max(0.999999);
  cli.flag("grad-clip", a.grad_clip, "global gradient-norm clip (0: off)").min(0);
  cli.flag("eval-interval", a.eval_interval, "steps between evaluations and checkpoints").min(1);
  cli.flag("eval-iters", a.eval_iters, "batches per loss estimate").min(1);
  cli.flag("log-interval", log_every, "plain-log progress line every N steps").min(1);
}

void add_sample_flags(Cli& cli, SampleFlags& s) {
  cli.flag("prompt", s.prompt, "sample: text to continue");
  cli.flag("tokens", s.tokens, "sample: characters to generate").min(0);
  cli.flag("temperature", s.temperature, "sample: softmax temperature (0: greedy)").min(0);
  cli.flag("top-k", s.top_k, "sample: keep the k likeliest characters (0: all)").min(0);
  cli.flag("slack", s.slack, "sample: refill the full KV cache every N tokens (0: exact sliding window, -1: block/4)")
      .min(-1);
}

// Load a checkpoint's model (shape and vocabulary from its metadata) for sample / eval.
struct Loaded {
  data::Vocab vocab;
  std::optional<GPT<float>> model;
  std::int64_t step = 0;
};
Loaded load_model(const std::string& path) {
  const CheckpointInfo info = Checkpoint<float>::info_of(safetensors::read(path), path);
  Loaded l;
  l.vocab = vocab_from_checkpoint(info, path);
  Rng rng(0);
  l.model.emplace(config_from_checkpoint(info, path), rng);
  load_weights<float>(path, *l.model);
  l.step = info.step;
  return l;
}

int train(Args a, const CommonFlags& common, std::int64_t log_every, const Json& config) {
  const std::string text = data::load_text(common.data);
  data::Vocab vocab = data::Vocab::from_text(text);
  if (common.resume) {  // the model's shape and vocabulary come from the checkpoint
    const std::string path = common.checkpoint_path();
    MARROW_CHECK(std::filesystem::exists(path), "--resume: no checkpoint at ", path);
    const CheckpointInfo info = Checkpoint<float>::info_of(safetensors::read(path), path);
    const bool recompute = a.model.recompute;  // a choice of this run, not of the checkpoint
    a.model = config_from_checkpoint(info, path);
    a.model.recompute = recompute;
    vocab = vocab_from_checkpoint(info, path);
  }
  if (common.epochs > 0)  // an epoch: as many characters as the training split holds
    a.steps = std::max<std::int64_t>(1, std::int64_t(double(common.epochs) * 0.9 * double(text.size()) /
                                                     double(a.batch_size * a.model.block_size)));
  Trainer<float> tr(a, vocab, text);
  const std::int64_t tokens_per_step = std::int64_t(a.batch_size) * a.model.block_size;
  Run run(common,
          {.name = "charformer",
           .steps = a.steps,
           .items_per_step = tokens_per_step,
           .log_every = log_every,
           .plots = {{.file = "loss.png",
                      .keys = {"loss", "train_loss", "val_loss"},
                      .options = {.title = "charformer: cross entropy (nats/char)", .xlabel = "step", .ylabel = "loss"}}}},
          config);
  if (run.resuming()) tr.resume(run.checkpoint_path());
  tr.distribute(run.world(), run.shards());  // under mpirun: each rank its shards of every batch
  const index_t n_params = count_parameters<float>(tr.model);
  if (run.is_root())
    std::fprintf(stderr, "charformer: %lld parameters, vocabulary %d, train %zu / val %zu characters, %d threads%s%s\n",
                 (long long)n_params, vocab.size(), tr.train_tokens.size(), tr.val_tokens.size(), omp_get_max_threads(),
                 run.world().size() > 1 || run.shards() > 1
                     ? marrow::detail::cat(" per process, ", run.world().size(), " processes, ", run.shards(), " shards").c_str()
                     : "",
                 run.resuming() ? (", resuming at step " + std::to_string(tr.step)).c_str() : "");
  double train_loss = NAN, val_loss = NAN, best_val = INFINITY;
  auto evaluate = [&] {
    train_loss = tr.estimate_loss(tr.train_tokens);
    val_loss = tr.estimate_loss(tr.val_tokens);
    best_val = std::min(best_val, val_loss);
    run.log({{"step", tr.step}, {"train_loss", train_loss}, {"val_loss", val_loss}});
    run.message(marrow::detail::cat("step ", tr.step, ": train loss ", train_loss, ", val loss ", val_loss));
  };
  if (tr.step == 0) evaluate();
  while (!tr.done()) {
    const bool diagnose = tr.step % a.eval_interval == 0;
    run.start_step();
    StepStats s = tr.train_step(diagnose);  // batch, forward, backward, clip, AdamW (models/charformer/train.hpp)
    const double ms = run.stop_step();
    Json line = Json::object({{"step", s.step}, {"loss", s.loss}, {"lr", s.lr}, {"grad_norm", s.grad_norm}, {"ms", ms}});
    for (std::size_t i = 0; i < s.blocks.size(); ++i) {
      const std::string h = "h." + std::to_string(i);
      line.set("grad_norm." + h + ".attn", s.blocks[i].attn_grad);
      line.set("grad_norm." + h + ".mlp", s.blocks[i].mlp_grad);
      line.set("weight_norm." + h + ".attn", s.blocks[i].attn_weight);
      line.set("weight_norm." + h + ".mlp", s.blocks[i].mlp_weight);
      line.set("attn_entropy." + h, s.attn_entropy[i]);
    }
    run.log(with_allreduce(tr.dp->timing(), line));
    run.progress(s.step, {{"loss", s.loss}, {"lr", s.lr}});
    const bool stop = run.interrupted();
    if (Run::every(s.step, a.eval_interval) || tr.done() || stop) {
      if (!stop) evaluate();
      run.save_with([&](const std::string& path) { tr.save(path, run.config_text()); });
    }
    if (stop) return run.interrupted_exit();
  }
  if (run.timer().steps() == 0) evaluate();  // resumed a finished run: report its figures
  const double med = run.timer().median_ms();
  run.finish({{"val_loss", val_loss},
              {"train_loss", train_loss},
              {"best_val_loss", best_val},
              {"val_bits_per_char", val_loss / std::log(2.0)},
              {"tokens_per_s", med > 0 ? double(tokens_per_step) / (med / 1000.0) : 0.0},
              {"params", n_params},
              {"steps", tr.step}});
  return 0;
}

int sample(const CommonFlags& common, const SampleFlags& sf) {
  // One character is a few small matrix-vector products: a second thread only adds
  // fork/join waits (under load, 100x slower), so sampling runs on one unless asked.
  if (common.threads == 0) omp_set_num_threads(1);
  MARROW_CHECK(!common.ckpt.empty() || std::filesystem::exists(common.checkpoint_path()), "sample: no checkpoint at ",
               common.checkpoint_path(), " (pass --ckpt FILE)");
  Loaded l = load_model(common.checkpoint_path());
  std::vector<std::int32_t> prompt;
  try {
    prompt = l.vocab.encode(sf.prompt.empty() ? std::string("\n") : sf.prompt);
  } catch (const Error& e) {
    throw UsageError(std::string("--prompt: ") + e.what());
  }
  if (prompt.size() > std::size_t(l.model->config.block_size))  // the model never saw a longer context
    prompt.erase(prompt.begin(), prompt.end() - l.model->config.block_size);
  Generator<float> gen(*l.model, {.temperature = sf.temperature, .top_k = sf.top_k, .slack = sf.slack});
  Rng rng(std::uint64_t(common.seed));
  std::fputs(sf.prompt.c_str(), stdout);
  std::fflush(stdout);
  const auto t0 = std::chrono::steady_clock::now();
  gen.feed(prompt);
  for (int i = 0; i < sf.tokens; ++i) {
    const std::int32_t id = gen.next(rng);
    std::fputc(l.vocab.chars[std::size_t(id)], stdout);
    std::fflush(stdout);  // stream: each character as it comes
  }
  std::fputc('\n', stdout);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::fprintf(stderr, "charformer: %d characters in %.2f s (%.0f chars/s, KV cache refilled %d times)\n", sf.tokens,
               s, sf.tokens / std::max(s, 1e-9), gen.refills());
  return 0;
}

int eval(const CommonFlags& common, const Args& a) {
  Loaded l = load_model(common.checkpoint_path());
  const std::string text = data::load_text(common.data);
  auto [train_tokens, val_tokens] = data::split_train_val(l.vocab.encode(text), 0.9);
  MARROW_CHECK(val_tokens.size() > std::size_t(l.model->config.block_size), "eval: the validation split of ",
               common.data, " has ", val_tokens.size(), " characters, fewer than block_size + 1");
  Tape<float> tape;
  const double sampled = mean_loss_random(*l.model, val_tokens, a.batch_size, a.eval_iters, Args{}.eval_seed, tape);
  const double full = mean_loss_full(*l.model, val_tokens, tape);
  const double ln2 = std::log(2.0);
  std::printf("checkpoint %s (step %lld), data %s\n", common.checkpoint_path().c_str(), (long long)l.step,
              common.data.c_str());
  std::printf("val loss %.4f  bits/char %.4f   (%d random batches of %d x %d, as in training)\n", sampled,
              sampled / ln2, a.eval_iters, a.batch_size, l.model->config.block_size);
  std::printf("val loss %.4f  bits/char %.4f   (every one of the %zu validation characters once)\n", full, full / ln2,
              val_tokens.size() - 1);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return run_main("charformer", [&] {
    Args a;
    SampleFlags sf;
    CommonFlags common;
    common.data = kDefaultData;
    common.out = "runs/charformer";
    common.steps = a.steps;
    common.seed = std::int64_t(a.seed);
    std::int64_t log_every = 100;
    Cli cli("charformer", "a character-level GPT (nanoGPT's model) on any text file");
    cli.command("train", "train on --data (first 90% train, last 10% validation)")
        .command("sample", "continue --prompt from a checkpoint, streaming to stdout")
        .command("eval", "validation loss and bits per character of a checkpoint on --data");
    common.add_to(cli, {.shards = true, .stop_at = true, .precision = true});
    add_train_flags(cli, a, log_every);
    add_sample_flags(cli, sf);
    const std::string cmd = cli.parse_or_exit(argc, argv);
    if (common.threads > 0) omp_set_num_threads(common.threads);
    a.steps = common.steps;
    a.seed = std::uint64_t(common.seed);
    if (a.model.n_embd % a.model.n_head != 0)
      throw UsageError(marrow::detail::cat("--n-embd ", a.model.n_embd, " is not divisible by --n-head ", a.model.n_head));
    if (a.lr_decay_iters > 0 && a.lr_decay_iters <= a.warmup)
      throw UsageError(marrow::detail::cat("--lr-decay-iters ", a.lr_decay_iters, " must exceed --warmup ", a.warmup));
    if (a.min_lr > a.lr) throw UsageError(marrow::detail::cat("--min-lr ", a.min_lr, " exceeds --lr ", a.lr));
    if (cmd == "train") return train(a, common, log_every, cli.values());
    if (cmd == "sample") return sample(common, sf);
    if (cmd == "eval") return eval(common, a);
    throw UsageError("expected a command: train, sample or eval");
  });
}
