#!/usr/bin/env python3
"""PyTorch's `a @ b` on the products of bench/sgemm_bench.cpp: the PyTorch column of the GEMM table.

    LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp \\
    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 \\
    /usr/bin/python3 bench/gemm_torch.py [--threads 2] [--reps 10] [--peak 420]

(PyTorch's strongest set-up here, ../shared/bench/README.md.) Each figure is the fastest of
--reps samples of at least 20 ms, as in sgemm_bench. Transposed operands are passed as
transposed views (`b.t()`), which PyTorch hands to BLAS as a transposed operand, not a copy.
"""
import argparse
import time

import torch

# (name, ta, tb, m, n, k, count): the same list as cases() in bench/sgemm_bench.cpp.
CASES = [("square", "N", "N", n, n, n, 1) for n in (256, 512, 1024, 1536, 2048)]
for i, o in ((128, 384), (128, 128), (128, 512), (512, 128)):
    io = f"{i}->{o}"
    CASES += [(f"gpt linear fwd {io}", "N", "T", 768, o, i, 1), (f"gpt linear dx {io}", "N", "N", 768, i, o, 1),
              (f"gpt linear dW {io}", "T", "N", o, i, 768, 1)]
CASES += [("attn S=QK^T (x48)", "N", "T", 64, 64, 32, 48), ("attn O=PV (x48)", "N", "N", 64, 32, 64, 48),
          ("attn dV=P^T dO (x48)", "T", "N", 64, 32, 64, 48), ("dcgan conv y=W cols", "N", "N", 128, 64, 1024, 1),
          ("dcgan conv dW=dy cols^T", "N", "T", 128, 1024, 64, 1), ("dcgan conv cols=W^T dy", "T", "N", 1024, 64, 128, 1),
          ("winograd 128ch M=U V (x36)", "N", "N", 128, 64, 128, 36)]


def operand(rows, cols, trans, count):
    """A (count, rows, cols) operand, stored transposed when trans is T."""
    if trans == "T":
        return torch.randn(count, cols, rows).transpose(1, 2)
    return torch.randn(count, rows, cols)


def best(reps, f):
    f()
    t0 = time.perf_counter()
    f()
    once = max(time.perf_counter() - t0, 1e-7)
    iters = max(1, int(0.02 / once))
    out = 1e30
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(iters):
            f()
        out = min(out, (time.perf_counter() - t0) / iters)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--peak", type=float, default=420.0, help="fp32 FMA peak, GFLOP/s (../shared/bench/fma_peak.cpp)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"# torch {torch.__version__}, {a.threads} threads; GFLOP/s and % of {a.peak:.0f}")
    print("| product | form | m·n·k × count | PyTorch GFLOP/s | % of peak |")
    print("|---|---|---|---:|---:|")
    with torch.no_grad():
        for name, ta, tb, m, n, k, count in CASES:
            A, B = operand(m, k, ta, count), operand(k, n, tb, count)
            if count == 1:
                A2, B2 = A[0], B[0]
                f = lambda: A2 @ B2
            else:
                f = lambda: torch.bmm(A, B)
            s = best(a.reps, f)
            g = 2.0 * m * n * k * count / s / 1e9
            print(f"| {name} | {ta}{tb} | {m}·{n}·{k} × {count} | {g:.0f} | {100 * g / a.peak:.0f} % |", flush=True)


if __name__ == "__main__":
    main()
