#pragma once
// Umbrella header: the tensor, the tape, every op, layers, losses, optimizers,
// schedules and initializers. Data loading (data/all.hpp) and training-loop
// tools (train/all.hpp) are separate: they bring stb and <filesystem>.
#include "config.hpp"
#include "rng.hpp"
#include "tensor.hpp"
#include "tape.hpp"
#include "recompute.hpp"
#include "ops/elementwise.hpp"
#include "ops/reduce.hpp"
#include "ops/matmul.hpp"
#include "ops/shape.hpp"
#include "ops/nn.hpp"
#include "ops/conv.hpp"
#include "ops/pool.hpp"
#include "ops/attention.hpp"
#include "loss.hpp"
#include "init.hpp"
#include "optim.hpp"
#include "schedule.hpp"
#include "nn/module.hpp"
#include "nn/layers.hpp"
#include "nn/attention.hpp"
#include "gradcheck.hpp"
#include "instances.hpp"  // extern declarations when built with MARROW_EXTERN_TEMPLATES
