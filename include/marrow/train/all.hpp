#pragma once
// Everything an example binary uses to run a training: CLI, progress, metrics,
// plots, checkpoints, monitoring.
#include "checkpoint.hpp"
#include "cli.hpp"
#include "json.hpp"
#include "metrics.hpp"
#include "model_config.hpp"
#include "monitor.hpp"
#include "plot.hpp"
#include "progress.hpp"
#include "run.hpp"
#include "safetensors.hpp"
