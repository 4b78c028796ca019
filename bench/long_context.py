#!/usr/bin/env python3
"""Long context: tokens/s and peak RSS of the GPT against block size, ours and PyTorch's (issue 24).

    bench/long_context.py [--blocks 64,256,1024,4096] [--steps 5] [--build build] [--out runs/bench-long]
                          [--svg docs/long-context.svg] [--replot OUT/long_context.json]

The GPT of 4 layers x 4 heads x 128 channels, 2 threads, batch 8 up to block 1,024 and 4
beyond (the issue's shapes), on tinyshakespeare: `charformer train` (with --recompute from
block 2,048 on, and once without at each block) against ../shared/bench/gpt_peer.py
(PyTorch 1.13 materialises the (B, H, T, T) scores), one run each, alternating. Writes
OUT/long_context.json and an SVG of both curves (tokens/s and peak RSS, log-log).
Run nothing else meanwhile.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = os.path.join(ROOT, "..", "shared", "bench")
DATA = os.path.join(ROOT, "..", "shared", "data", "tinyshakespeare", "input.txt")
PEER_ENV = {"LD_LIBRARY_PATH": "/usr/lib/x86_64-linux-gnu/openblas-openmp",
            "LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"}
SHAPE = ["--n-layer", "4", "--n-head", "4", "--n-embd", "128"]


def batch_for(block):
    return 8 if block <= 1024 else 4


def ours(build, block, steps, recompute, tmp):
    out = os.path.join(tmp, f"ours-{block}-{int(recompute)}")
    cmd = [os.path.join(build, "examples", "charformer"), "train", "--data", DATA, "--block-size", str(block),
           "--batch-size", str(batch_for(block)), "--steps", str(steps), "--eval-iters", "1", "--eval-interval",
           "100000", "--warmup", "0", "--threads", "2", "--out", out] + SHAPE + (["--recompute"] if recompute else [])
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    s = json.load(open(os.path.join(out, "summary.json")))
    return {"ms_per_step": s["ms_per_step"], "peak_rss_mb": s["peak_rss_mb"]}


def peer(block, steps, tmp, timeout):
    js = os.path.join(tmp, f"peer-{block}.jsonl")
    cmd = ["/usr/bin/time", "-f", "%M", "/usr/bin/python3", os.path.join(PEERS, "gpt_peer.py"), "--steps", str(steps),
           "--eval-iters", "1", "--lr-decay-iters", str(steps), "--block-size", str(block), "--batch-size",
           str(batch_for(block)), "--threads", "2", "--json", js] + SHAPE
    try:
        r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp,
                           env={**os.environ, **PEER_ENV}, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish {steps} steps in {timeout} s"}
    if r.returncode != 0:
        return {"error": f"exit {r.returncode}: {r.stderr.strip().splitlines()[-2:]}"}
    rss = int(r.stderr.strip().splitlines()[-1]) / 1024
    return {"ms_per_step": json.loads(open(js).read().strip().splitlines()[-1])["ms_per_step_median"], "peak_rss_mb": rss}


def svg(rows, path):
    """Two log-log panels: tokens/s and peak RSS against block size."""
    W, H, pad = 360, 260, 50
    colors = {"marrow": "#1f77b4", "marrow --recompute": "#2ca02c", "PyTorch 1.13": "#d62728"}
    def panel(x0, key, title):
        pts = {k: [(r["block"], r[k][key]) for r in rows if key in r.get(k, {})] for k in colors}
        ys = [y for v in pts.values() for _, y in v]
        if not ys:
            return ""
        lo, hi = math.log10(min(ys)) - 0.1, math.log10(max(ys)) + 0.1
        xs = [r["block"] for r in rows]
        xlo, xhi = math.log2(min(xs)), math.log2(max(xs))
        X = lambda b: x0 + pad + (math.log2(b) - xlo) / max(xhi - xlo, 1e-9) * (W - 2 * pad)
        Y = lambda v: H - pad + 10 - (math.log10(v) - lo) / (hi - lo) * (H - 2 * pad)
        g = [f'<text x="{x0 + W / 2}" y="18" text-anchor="middle" font-size="13">{title}</text>',
             f'<line x1="{x0 + pad}" y1="{H - pad + 10}" x2="{x0 + W - pad}" y2="{H - pad + 10}" stroke="#444"/>',
             f'<line x1="{x0 + pad}" y1="30" x2="{x0 + pad}" y2="{H - pad + 10}" stroke="#444"/>']
        for b in xs:
            g.append(f'<text x="{X(b)}" y="{H - pad + 25}" text-anchor="middle" font-size="10">{b}</text>')
        for e in range(math.floor(lo), math.ceil(hi) + 1):
            for m in (1, 2, 5):
                v = m * 10 ** e
                if lo <= math.log10(v) <= hi:
                    g.append(f'<line x1="{x0 + pad - 3}" y1="{Y(v):.1f}" x2="{x0 + pad}" y2="{Y(v):.1f}" stroke="#444"/>')
                    g.append(f'<text x="{x0 + pad - 5}" y="{Y(v) + 3:.1f}" text-anchor="end" font-size="10">{v:g}</text>')
        for k, p in pts.items():
            if p:
                g.append(f'<polyline fill="none" stroke="{colors[k]}" stroke-width="2" points="'
                         + " ".join(f"{X(b):.1f},{Y(v):.1f}" for b, v in p) + '"/>')
                g += [f'<circle cx="{X(b):.1f}" cy="{Y(v):.1f}" r="3" fill="{colors[k]}"/>' for b, v in p]
        g.append(f'<text x="{x0 + W / 2}" y="{H - 5}" text-anchor="middle" font-size="11">block size (characters)</text>')
        return "\n".join(g)
    legend = [f'<text x="{20 + 170 * i}" y="{H + 20}" font-size="11" fill="{c}">■ {k}</text>'
              for i, (k, c) in enumerate(colors.items())]
    body = panel(0, "tokens_per_s", "tokens/s (training, 2 threads)") + panel(W, "peak_rss_mb", "peak RSS, MB")
    with open(path, "w") as f:
        f.write(f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * W}" height="{H + 30}" font-family="sans-serif">'
                f'<rect width="100%" height="100%" fill="white"/>{body}{"".join(legend)}</svg>\n')


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blocks", default="64,256,1024,4096")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--out", default=os.path.join(ROOT, "runs", "bench-long"))
    ap.add_argument("--svg", default=os.path.join(ROOT, "docs", "long-context.svg"))
    ap.add_argument("--peer-timeout", type=int, default=600)
    ap.add_argument("--replot", metavar="JSON", help="only redraw the SVG from an earlier run's long_context.json")
    a = ap.parse_args()
    if a.replot:
        svg(json.load(open(a.replot)), a.svg)
        print(f"wrote {a.svg}")
        return 0
    os.makedirs(a.out, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for block in [int(b) for b in a.blocks.split(",")]:
            row = {"block": block, "batch": batch_for(block)}
            row["marrow"] = ours(a.build, block, a.steps, False, tmp)
            if block >= 1024:
                row["marrow --recompute"] = ours(a.build, block, a.steps, True, tmp)
            row["PyTorch 1.13"] = peer(block, a.steps, tmp, a.peer_timeout)
            for k in ("marrow", "marrow --recompute", "PyTorch 1.13"):
                if "ms_per_step" in row.get(k, {}):
                    row[k]["tokens_per_s"] = row["batch"] * block / (row[k]["ms_per_step"] / 1000)
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("| block | batch | marrow ms/step | RSS MB | --recompute ms/step | RSS MB | PyTorch ms/step | RSS MB | "
          "time ratio | RSS ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        m, c, p = r["marrow"], r.get("marrow --recompute", {}), r["PyTorch 1.13"]
        f = lambda d, k: f"{d[k]:.0f}" if k in d else "—"
        tr = f"{m['ms_per_step'] / p['ms_per_step']:.2f}" if "ms_per_step" in p else "—"
        rr = f"{m['peak_rss_mb'] / p['peak_rss_mb']:.2f}" if "peak_rss_mb" in p else "—"
        print(f"| {r['block']} | {r['batch']} | {f(m, 'ms_per_step')} | {f(m, 'peak_rss_mb')} | {f(c, 'ms_per_step')} | "
              f"{f(c, 'peak_rss_mb')} | {f(p, 'ms_per_step')} | {f(p, 'peak_rss_mb')} | {tr} | {rr} |"
              + (f" PyTorch: {p['error']}" if "error" in p else ""))
    json.dump(rows, open(os.path.join(a.out, "long_context.json"), "w"), indent=1)
    os.makedirs(os.path.dirname(a.svg), exist_ok=True)
    svg(rows, a.svg)
    print(f"wrote {a.svg}")


if __name__ == "__main__":
    sys.exit(main())
