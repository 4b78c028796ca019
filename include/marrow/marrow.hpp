#pragma once
// Umbrella header: everything in marrow.
#include "config.hpp"
#include "rng.hpp"
#include "tensor.hpp"
#include "tape.hpp"
#include "ops/elementwise.hpp"
#include "ops/reduce.hpp"
#include "ops/matmul.hpp"
#include "gradcheck.hpp"
