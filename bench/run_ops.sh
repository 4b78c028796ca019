#!/usr/bin/env bash
# Time our ops and PyTorch's at the same shapes, in one run, 2 threads each,
# and print the side-by-side markdown table of bench/README.md.
# Usage: bench/run_ops.sh [build-dir]   (needs python3-torch for the PyTorch column)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-bench}
THREADS=${THREADS:-2}
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMARROW_BUILD_BENCH=ON -DMARROW_BUILD_TESTS=OFF \
  -DMARROW_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$BUILD" --target ops_bench >/dev/null
tmp=$(mktemp -d)
OMP_NUM_THREADS=$THREADS "$BUILD/bench/ops_bench" --benchmark_repetitions=15 --benchmark_report_aggregates_only=true \
  --benchmark_format=json >"$tmp/ours.json"
PEER=../shared/bench/ops_peer.py
if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c "import torch" 2>/dev/null && [ -f "$PEER" ]; then
  LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 \
    /usr/bin/python3 "$PEER" --threads "$THREADS" --reps 50 --json >"$tmp/peer.jsonl"
else
  : >"$tmp/peer.jsonl"
fi
python3 - "$tmp/ours.json" "$tmp/peer.jsonl" <<'PY'
import json, sys
ours = {b["run_name"].split("/")[0]: b["real_time"] for b in json.load(open(sys.argv[1]))["benchmarks"] if b.get("aggregate_name") == "median"}
peer = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
names = ["linear_768x128_to_512", "causal_attention_B12_H4_T64_D32", "conv2d_3x3_4x32x128x128_to_32",
         "conv_transpose2d_2x2_s2_4x64x64x64_to_32", "layer_norm_768x128", "cross_entropy_768x65"]
print("| op (forward+backward) | marrow ms | PyTorch ms | ratio |")
print("|---|---:|---:|---:|")
for i, n in enumerate(names):
    m = ours.get(n)
    p = peer[i]["ms_median"] if i < len(peer) else None
    r = f"{m / p:.2f}" if (m and p) else "n/a"
    print(f"| {n} | {m:.3f} | {p:.3f} | {r} |" if p else f"| {n} | {m:.3f} | n/a | n/a |")
PY
rm -rf "$tmp"
