#!/usr/bin/env python3
"""Same seed and same thread count must give bitwise identical results.

  repro.py --binary unet [--threads 1] [--across 1,2]

Runs the binary's tiny training twice with one seed and thread count and
compares metrics.jsonl (every line, timing fields such as ms/sps/wall_s
dropped), summary.json (same) and every tensor of the checkpoint bit for bit.
--across 1,2 additionally reports (never fails on) what differs between
thread counts. Exit 0 equal, 1 different, 77 skipped.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rel  # noqa: E402


def outcome(name, threads, seed):
    out = rel.tmpdir("%s_t%d" % (name, threads))
    r = rel.run(rel.tiny_cmd(name, out, seed=seed, threads=threads))
    if r.returncode != 0:
        raise SystemExit("FAIL: %s exited %d: %s" % (name, r.returncode, r.stderr[-800:]))
    res = {"metrics": rel.metrics_lines(os.path.join(out, "metrics.jsonl"))}
    sp = os.path.join(out, "summary.json")
    if os.path.exists(sp):
        # config / checkpoint hold this run's output paths, which differ by design between the runs
        res["summary"] = {k: v for k, v in json.load(open(sp)).items()
                          if k not in rel.TIMING_FIELDS and k not in ("config", "checkpoint", "out", "ckpt")}
    res["tensors"], _ = rel.read_safetensors(os.path.join(out, "checkpoint.safetensors"))
    return res


def compare(a, b):
    diffs = []
    if a["metrics"] != b["metrics"]:
        n = next((i for i, (x, y) in enumerate(zip(a["metrics"], b["metrics"])) if x != y),
                 min(len(a["metrics"]), len(b["metrics"])))
        diffs.append("metrics.jsonl differs from line %d: %s vs %s" % (
            n + 1, a["metrics"][n] if n < len(a["metrics"]) else "-", b["metrics"][n] if n < len(b["metrics"]) else "-"))
    sa, sb = a.get("summary", {}), b.get("summary", {})
    keys = sorted(k for k in set(sa) | set(sb) if sa.get(k) != sb.get(k) and k != "threads")
    if keys:
        diffs.append("summary.json differs in %s" % keys)
    t = rel.diff_tensors(a["tensors"], b["tensors"])
    if t:
        diffs.append("checkpoint differs in %d of %d tensors (e.g. %s)" % (len(t), len(a["tensors"]), t[:3]))
    return diffs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="unet")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--across", default="", help="e.g. 1,2: also report differences between thread counts")
    args = ap.parse_args()
    b, why = rel.available(args.binary)
    if not b:
        rel.skip(why)
    first = outcome(args.binary, args.threads, args.seed)
    second = outcome(args.binary, args.threads, args.seed)
    diffs = compare(first, second)
    for d in diffs:
        print("FAIL: same seed, %d thread(s): %s" % (args.threads, d))
    if not diffs:
        print("%s: same seed + %d thread(s) -> bitwise identical metrics (%d lines), summary and %d tensors" % (
            args.binary, args.threads, len(first["metrics"]), len(first["tensors"])))
    if args.across:
        counts = [int(x) for x in args.across.split(",")]
        runs = {c: (first if c == args.threads else outcome(args.binary, c, args.seed)) for c in counts}
        for c in counts[1:]:
            d = compare(runs[counts[0]], runs[c])
            print("%s: %d vs %d threads: %s" % (args.binary, counts[0], c, "; ".join(d) if d else "bitwise identical"))
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
