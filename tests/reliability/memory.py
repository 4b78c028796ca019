#!/usr/bin/env python3
"""Peak RSS of a binary's default configuration, and whether training memory
stays flat after the first step.

  memory.py --binary unet --steps 8 [-- extra args]

Samples VmRSS from /proc/<pid>/status every 20 ms while the run trains and
maps each sample to the step being trained (lines in metrics.jsonl). Prints the
RSS of steps 2-3, the highest RSS of any later training step, summary.json's
peak_rss_mb, and exits 1 when memory grows by more than --tolerance-mb
(default 8) after that.
"""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rel  # noqa: E402


def rss_mb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def logged_steps(path):
    try:
        with open(path) as f:
            return sum(1 for line in f if '"loss"' in line or '"policy_loss"' in line or line.strip())
    except OSError:
        return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="unet")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--tolerance-mb", type=float, default=8.0)
    ap.add_argument("extra", nargs="*")
    args = ap.parse_args()
    b = rel.binary(args.binary)
    if not b:
        rel.skip("binary %s not built" % args.binary)
    out = rel.tmpdir(args.binary + "_mem")
    cmd = [b, "train", "--steps", str(args.steps), "--out", out] + args.extra
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    per_step = {}
    while p.poll() is None:
        r = rss_mb(p.pid)
        n = logged_steps(os.path.join(out, "metrics.jsonl"))
        if r is not None:
            per_step[n] = max(per_step.get(n, 0.0), r)
        time.sleep(0.02)
    if p.returncode != 0:
        print("FAIL: %s exited %d" % (" ".join(cmd), p.returncode))
        return 1
    summary = json.load(open(os.path.join(out, "summary.json")))
    # Line k of metrics.jsonl is written at the end of step k: samples at n lines belong to step n + 1.
    # After the last line the run evaluates, plots and writes: not a training step.
    final = max(per_step, default=0)
    train = {n + 1: v for n, v in per_step.items() if n < min(final, args.steps)}
    # The baseline is the higher of steps 2 and 3: a 60 ms step gets only two or three 20 ms samples, and
    # on a loaded machine those can all fall before the step reaches its high-water mark (seen once in
    # ctest -j2: step 2 read 88.9 MB, steps 3..60 all 98.2 MB). A leak that grows every step still shows
    # against it over the remaining steps.
    baseline = max(train.get(2, 0.0), train.get(3, 0.0)) or train.get(1)
    later = max((v for s, v in train.items() if s >= 4), default=baseline)
    print("%s: peak RSS %.1f MB (summary.json), RSS in logged steps 2-3: %.1f MB, highest RSS in logged steps 4..%d: %.1f MB"
          % (args.binary, summary.get("peak_rss_mb", float("nan")), baseline or 0, len(train), later or 0))
    items = sorted(train.items())
    if len(items) > 12:
        items = items[:6] + items[-6:]
    print("per logged step (MB): " + ", ".join("%d: %.1f" % (s, v) for s, v in items))
    if baseline and later and later - baseline > args.tolerance_mb:
        print("FAIL: RSS grew by %.1f MB after the first steps" % (later - baseline))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
