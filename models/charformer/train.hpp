#pragma once
// Training, as nanoGPT's train.py runs it for one text file: random windows of
// the 90 % training split, AdamW with weight decay on matrices only, warmup then
// cosine decay, global gradient-norm clipping, fixed evaluation batches, and a
// checkpoint that resumes bit for bit. The binary (examples/charformer.cpp)
// wraps train_step() in the run lifecycle (train/run.hpp).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <marrow/data/text.hpp>
#include <marrow/dist/data_parallel.hpp>
#include <marrow/optim.hpp>
#include <marrow/schedule.hpp>
#include <marrow/train/checkpoint.hpp>
#include <marrow/train/monitor.hpp>

#include "checkpoint.hpp"
#include "metrics.hpp"
#include "model.hpp"

namespace marrow::charformer {

// nanoGPT's train.py for one text file, with its configuration names.
struct Args {
  Config model;
  int batch_size = 12;
  double lr = 1e-3;              // peak learning rate (learning_rate)
  double min_lr = 1e-4;          // cosine floor
  int warmup = 100;              // linear warmup steps (warmup_iters)
  std::int64_t steps = 2000;     // optimizer steps (max_iters)
  std::int64_t lr_decay_iters = 0;  // cosine reaches min_lr here (0: = steps)
  double weight_decay = 0.1;     // AdamW, on matrices only
  double beta1 = 0.9, beta2 = 0.99;
  double grad_clip = 1.0;        // global grad-norm clip (0: off)
  int eval_interval = 250;       // steps between evaluations
  int eval_iters = 200;          // batches per loss estimate
  std::uint64_t seed = 1337;     // model init and training batches
  std::uint64_t eval_seed = 4242;  // evaluation batches: the same ones at every evaluation
};

struct StepStats {
  std::int64_t step = 0;  // steps done after this one
  double loss = 0, lr = 0, grad_norm = 0;
  std::vector<BlockNorms> blocks;    // filled on diagnostic steps
  std::vector<double> attn_entropy;  // per layer, on diagnostic steps
};

template <class T> class Trainer {
 public:
  // text: the corpus; vocab: its characters (from the text, or a checkpoint's).
  Trainer(Args a, const data::Vocab& vocab, const std::string& text)
      : args(fix(a, vocab)), vocab(vocab), init_rng(args.seed), model(args.model, init_rng),
        params(parameters<T>(model)),
        opt(decay_groups(params), AdamWOptions<T>{.lr = T(args.lr), .beta1 = T(args.beta1), .beta2 = T(args.beta2),
                                                  .eps = T(1e-8), .weight_decay = T(args.weight_decay)}),
        schedule{T(args.lr), args.warmup, args.lr_decay_iters > 0 ? args.lr_decay_iters : std::max<std::int64_t>(args.steps, args.warmup + 1), T(args.min_lr)},
        batch_rng(args.seed + 1), dp(std::in_place, params, dist::Comm::self(), 1) {
    MARROW_CHECK(args.batch_size > 0 && args.eval_iters > 0 && args.eval_interval > 0,
                 "charformer: batch_size, eval_iters and eval_interval must be positive");
    auto [tr, va] = data::split_train_val(vocab.encode(text), 0.9);
    train_tokens = std::move(tr);
    val_tokens = std::move(va);
    const auto need = std::size_t(args.model.block_size) + 1;
    MARROW_CHECK(train_tokens.size() >= need && val_tokens.size() >= need, "charformer: the text has ",
                 text.size(), " characters; its 90/10 split needs at least block_size + 1 = ", need,
                 " in each part (train ", train_tokens.size(), ", validation ", val_tokens.size(), ")");
  }

  // Each step's batch cut into `shards` shards over the ranks of `comm` (dist/data_parallel.hpp).
  void distribute(const dist::Comm& comm, int shards) {
    std::vector<Rng*> rngs;
    for (auto& [name, rng] : model.dropout_rngs()) rngs.push_back(rng);
    dp.emplace(params, comm, shards, dist::DataParallelOptions<T>{.rngs = rngs});
  }

  // One optimizer step on a random batch. `diagnose` adds per-block norms and attention entropy.
  StepStats train_step(bool diagnose = false) {
    StepStats s;
    s.lr = double(schedule.at(step));
    opt.set_lr(T(s.lr));
    // The global batch, drawn alike on every rank; each shard trains on its rows.
    data::TextBatch b = data::sample_text_batch(train_tokens, args.batch_size, args.model.block_size, batch_rng);
    std::vector<double> stats = dp->step(args.batch_size, [&](std::int64_t b0, std::int64_t b1) {
      tape.reset();
      std::vector<Tensor<T>> entropy;  // per layer, (B, nh, T)
      Var<T> loss = model.loss(tape, dist::batch_rows(b.x, b0, b1), dist::batch_rows(b.y, b0, b1),
                               diagnose ? &entropy : nullptr);
      std::vector<double> shard{double(loss.item())};  // the loss, then each layer's attention entropy
      check("loss", shard[0]);
      dp->backward(tape, loss);
      for (auto& e : entropy) shard.push_back(attention_entropy(e));
      return shard;
    });
    s.loss = stats[0];
    if (diagnose) {
      s.blocks = block_norms(model);  // before clipping, which would hide a blow-up
      s.attn_entropy.assign(stats.begin() + 1, stats.end());
      check_blocks(s.blocks);
    }
    s.grad_norm = double(args.grad_clip > 0 ? clip_grad_norm(params, T(args.grad_clip)) : grad_norm(params));
    check("gradient norm", s.grad_norm);
    opt.step();
    opt.zero_grad();
    s.step = ++step;
    return s;
  }

  // Mean loss over eval_iters batches of a split, drawn from eval_seed (the same batches every time).
  double estimate_loss(const std::vector<std::int32_t>& tokens) {
    return mean_loss_random(model, tokens, args.batch_size, args.eval_iters, args.eval_seed, tape);
  }

  bool done() const { return step >= args.steps; }

  // Weights, AdamW moments, the batch and dropout generators, and in the metadata the
  // step, the model shape, the vocabulary and the caller's run config: all a resume needs.
  Checkpoint<T> checkpoint() {
    Checkpoint<T> c(model);
    c.add_state([this](const StateVisitor<T>& f) { opt.visit_state(f); });
    c.add_rng("batches", batch_rng);
    for (auto& [name, rng] : model.dropout_rngs()) c.add_rng(name, *rng);
    return c;
  }
  void save(const std::string& path, const std::string& run_config = "") {
    checkpoint().save(path, step, run_config, checkpoint_metadata(model.config, vocab));
    last_checkpoint = path;
  }
  // Continue from a checkpoint of the same model shape and vocabulary.
  CheckpointInfo resume(const std::string& path) {
    MARROW_CHECK(std::filesystem::exists(path), "--resume: no checkpoint at ", path);
    MARROW_CHECK(vocab_from_checkpoint(Checkpoint<T>::info_of(safetensors::read(path), path), path).chars == vocab.chars,
                 "charformer: checkpoint ", path, " was trained on a different character set than this text");
    CheckpointInfo info = checkpoint().load(path);
    step = info.step;
    last_checkpoint = path;
    return info;
  }

  Args args;
  data::Vocab vocab;
  Rng init_rng;
  GPT<T> model;
  ParamList<T> params;
  AdamW<T> opt;
  sched::WarmupCosine<T> schedule;
  Rng batch_rng;
  std::optional<dist::DataParallel<T>> dp;  // one shard in this process unless distribute()d
  std::vector<std::int32_t> train_tokens, val_tokens;
  std::int64_t step = 0;
  std::string last_checkpoint;  // named in the message when a run goes non-finite

 private:
  static Args fix(Args a, const data::Vocab& v) {
    a.model.vocab_size = v.size();
    a.model.validate();
    return a;
  }
  // A non-finite value stops the run before the optimizer applies it, naming the
  // value, the step and the checkpoint worth resuming from.
  void check(const std::string& what, double v) const {
    marrow::check_finite(v, step + 1, what, last_checkpoint, "Try a lower --lr or --grad-clip.");
  }
  void check_blocks(const std::vector<BlockNorms>& blocks) const {
    for (std::size_t i = 0; i < blocks.size(); ++i) {
      const BlockNorms& b = blocks[i];
      const std::string of = " norm of block " + std::to_string(i);
      check("attention gradient" + of, b.attn_grad);
      check("attention weight" + of, b.attn_weight);
      check("MLP gradient" + of, b.mlp_grad);
      check("MLP weight" + of, b.mlp_weight);
    }
  }
  Tape<T> tape;
};

}  // namespace marrow::charformer
