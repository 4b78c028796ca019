#pragma once
// Everything an example binary uses to run a training: CLI, progress, metrics,
// plots, checkpoints, monitoring.
#include "checkpoint.hpp"
#include "cli.hpp"
#include "json.hpp"
#include "metrics.hpp"
#include "monitor.hpp"
#include "plot.hpp"
#include "progress.hpp"
#include "safetensors.hpp"
