#!/usr/bin/env python3
"""Step time of a whole model, ours against its PyTorch peer (../shared/bench/*_peer.py), in one run.

    bench/models.py gpt|unet|gan|color [--reps 3] [--build build] [--threads 2] [--precision bf16]
                    [--both "FLAGS"]

--precision bf16 runs our side with bf16 matrix products (PyTorch 1.13's CPU side stays fp32:
its bf16 autocast has no fast kernels on this CPU); --both adds flags to both sides (the GPT's
--block-size, --batch-size, --n-layer, --n-head, --n-embd have the same names on both).

Runs our binary and the peer alternately, --reps times each, on the same configuration and
thread count, and prints the medians of their median step times and the ratio (ours / PyTorch;
below 1 = we are faster), plus peak RSS. Alternating spreads a noisy neighbour over both sides.
Run nothing else meanwhile (see ../shared/bench/README.md).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = os.path.join(ROOT, "..", "shared", "bench")
# PyTorch in its strongest set-up here: OpenMP OpenBLAS sharing PyTorch's threads, tcmalloc.
PEER_ENV = {"LD_LIBRARY_PATH": "/usr/lib/x86_64-linux-gnu/openblas-openmp",
            "LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"}

# model: (our arguments after the binary, peer script, peer arguments). Same shapes on both sides.
MODELS = {
    "gpt": (["charformer", "train", "--steps", "300", "--eval-iters", "1", "--eval-interval", "1000"],
            "gpt_peer.py", ["--steps", "300", "--eval-iters", "1"]),
    "unet": (["unet", "bench", "--steps", "30"], "unet_peer.py", ["--steps", "30", "--train-steps", "0"]),
    "gan": (["gan", "train", "--preset", "dcgan", "--epochs", "0", "--steps", "100", "--eval-samples", "100",
             "--classifier", "/nonexistent"],
            "dcgan_peer.py", ["--steps", "100", "--random-data", "--n-samples", "0"]),
    "color": (["colorize", "train", "--preset", "peer", "--image-size", "32", "--batch", "64", "--steps", "100"],
              "colorizer_peer.py", ["--size", "32", "--batch", "64", "--steps", "100"]),
}


def check_peer_setup():
    """The peer needs Debian's PyTorch, and its strongest set-up needs the OpenMP OpenBLAS and tcmalloc.
    Without the last two ld.so only warns and PyTorch runs 2-3x slower, which would flatter us: refuse."""
    missing = [pkg for path, pkg in ((PEER_ENV["LD_LIBRARY_PATH"], "libopenblas0-openmp"),
                                     (PEER_ENV["LD_PRELOAD"], "libtcmalloc-minimal4")) if not os.path.exists(path)]
    if subprocess.run(["/usr/bin/python3", "-c", "import torch, numpy"], stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL).returncode != 0:
        missing.insert(0, "python3-torch")
    if missing:
        sys.exit(f"bench/models.py: the PyTorch peer needs {', '.join(missing)} "
                 f"(apt-get install {' '.join(missing)}; see ../shared/bench/README.md)")


def ours(build, args, threads, tmp):
    out = os.path.join(tmp, "ours")
    cmd = [os.path.join(build, "examples", args[0])] + args[1:] + ["--threads", str(threads), "--out", out]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    s = json.load(open(os.path.join(out, "summary.json")))
    return s["ms_per_step"], s.get("peak_rss_mb")


def peer(script, args, threads, tmp):
    js = os.path.join(tmp, "peer.jsonl")
    if os.path.exists(js):
        os.remove(js)
    # /usr/bin/time reports the peer's peak RSS (kB), which its JSON does not carry.
    cmd = ["/usr/bin/time", "-f", "%M", "/usr/bin/python3", os.path.join(PEERS, script)] + args + \
          ["--threads", str(threads), "--json", js]
    r = subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp,
                       env={**os.environ, **PEER_ENV})
    rss_mb = int(r.stderr.strip().splitlines()[-1]) / 1024
    return json.loads(open(js).read().strip().splitlines()[-1])["ms_per_step_median"], rss_mb


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", choices=sorted(MODELS))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="our matrix products")
    ap.add_argument("--both", default="", help="extra flags for both sides, one string")
    a = ap.parse_args()
    mine, script, theirs = MODELS[a.model]
    mine, theirs = mine + a.both.split(), theirs + a.both.split()
    if a.precision != "fp32":
        mine = mine + ["--precision", a.precision]
    check_peer_setup()
    ms_o, ms_p, rss_o, rss_p = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(a.reps):
            m, r = ours(a.build, mine, a.threads, tmp)
            ms_o.append(m), rss_o.append(r or 0)
            m, r = peer(script, theirs, a.threads, tmp)
            ms_p.append(m), rss_p.append(r)
            print(f"rep {rep + 1}: marrow {ms_o[-1]:.2f} ms  PyTorch {ms_p[-1]:.2f} ms", flush=True)
    o, p = statistics.median(ms_o), statistics.median(ms_p)
    print(f"| {a.model} | {o:.2f} | {p:.2f} | {o / p:.2f} | {max(rss_o):.0f} | {max(rss_p):.0f} |")
    print(json.dumps({"model": a.model, "threads": a.threads, "reps": a.reps, "precision": a.precision, "both": a.both, "marrow_ms": ms_o, "pytorch_ms": ms_p,
                      "marrow_median_ms": o, "pytorch_median_ms": p, "ratio": o / p,
                      "marrow_peak_rss_mb": max(rss_o), "pytorch_peak_rss_mb": max(rss_p),
                      "loadavg_end": os.getloadavg()}))


if __name__ == "__main__":
    sys.exit(main())
