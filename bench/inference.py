#!/usr/bin/env python3
"""Wall time of every inference path at 1 and 2 threads: 2 threads must never be slower than 1.

    bench/inference.py [--reps 3] [--build build] [--only colorize,unet,...] [--work DIR]

Trains a tiny checkpoint of each model (a few steps of its default network; --work DIR keeps them
for the next run), then times each binary's inference command at --threads 1 and --threads 2,
alternating the two, --reps times each. Prints the host CPU and one row per path: the median wall
time of each thread count and the ratio 2 threads / 1 thread (above 1 = the second thread hurts).
Run nothing else meanwhile: on a busy machine the second thread waits for a core.
"""
import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "..", "shared", "data")
COLOR_PHOTOS = 100  # test photos per class that `colorize apply` colors (1,000 in all)


def photos(work):
    """A folder of the first COLOR_PHOTOS CIFAR-10 test photos of every class (links, no copies)."""
    out = os.path.join(work, "photos")
    if not os.path.isdir(out):
        test = os.path.join(DATA, "cifar10-jpg", "test")
        for cls in sorted(os.listdir(test)):
            os.makedirs(os.path.join(out, cls))
            for name in sorted(os.listdir(os.path.join(test, cls)))[:COLOR_PHOTOS]:
                os.symlink(os.path.join(test, cls, name), os.path.join(out, cls, name))
    return out


# path: (binary, tiny training arguments, inference arguments). {ckpt} is the checkpoint, {work}
# the run's work folder, {photos} the colorize input; --threads and the training --out are added.
PATHS = {
    "colorize apply": ("colorize",
                       ["train", "--max-per-class", "10", "--steps", "2", "--batch", "8", "--test-images", "1",
                        "--eval-every", "0", "--data", os.path.join(DATA, "cifar10-jpg")],
                       ["apply", "--ckpt", "{ckpt}", "--input", "{photos}", "--out", "{work}/colored"]),
    "unet predict": ("unet",
                     ["train", "--steps", "1", "--batch", "1", "--crop", "64", "--eval-interval", "0", "--no-elastic",
                      "--data", os.path.join(DATA, "membrane")],
                     ["predict", "--ckpt", "{ckpt}", "--out", "{work}/masks", "--input",
                      os.path.join(DATA, "membrane", "test", "0.png")]),
    "charformer sample": ("charformer",
                          ["train", "--steps", "2", "--eval-iters", "1", "--eval-interval", "1000",
                           "--data", os.path.join(DATA, "tinyshakespeare", "input.txt")],
                          ["sample", "--ckpt", "{ckpt}", "--tokens", "2000"]),
    "gan sample": ("gan",
                   ["train", "--epochs", "0", "--steps", "2", "--eval-samples", "100",
                    "--classifier", "/nonexistent", "--data", os.path.join(DATA, "mnist")],
                   ["sample", "--ckpt", "{ckpt}", "--n", "10000", "--out", "{work}/samples-idx3-ubyte"]),
    "ppo eval": ("ppo", ["train", "--env", "CartPole-v1", "--steps", "100000"],
                 ["eval", "--ckpt", "{ckpt}", "--episodes", "100"]),
}


def host_cpu():
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or "unknown CPU"
    return f"{model}, {os.cpu_count()} logical cores"


def run(cmd, cwd):
    r = subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.exit(f"bench/inference.py: {' '.join(cmd)} exited {r.returncode}:\n{r.stderr[-2000:]}")


def checkpoint(binary, train, work):
    """The tiny checkpoint of a model, trained on one thread unless --work already holds it."""
    out = os.path.join(work, "train")
    ckpt = os.path.join(out, "checkpoint.safetensors")
    if not os.path.exists(ckpt):
        run([binary] + train + ["--threads", "1", "--out", out], work)
    return ckpt


def seconds(cmd, threads, cwd):
    t0 = time.perf_counter()
    run(cmd + ["--threads", str(threads)], cwd)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"), help="build folder holding examples/<binary>")
    ap.add_argument("--only", default="", help="comma-separated binaries to time (default: all)")
    ap.add_argument("--work", default="", help="folder for the tiny checkpoints and outputs, kept for reuse")
    a = ap.parse_args()
    only = set(filter(None, a.only.split(",")))
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.abspath(a.work) if a.work else tmp
        print(f"host: {host_cpu()}; load average {os.getloadavg()[0]:.2f} at the start", flush=True)
        print("| path | 1 thread s | 2 threads s | 2t / 1t |")
        print("|---|---:|---:|---:|")
        for name, (binary, train, infer) in PATHS.items():
            if only and binary not in only:
                continue
            exe = os.path.join(os.path.abspath(a.build), "examples", binary)
            if not os.path.exists(exe):
                print(f"| {name} | (no {exe}) | | |")
                continue
            work = os.path.join(root, binary)
            os.makedirs(work, exist_ok=True)
            fill = {"ckpt": checkpoint(exe, train, work), "work": work,
                    "photos": photos(root) if binary == "colorize" else ""}
            cmd = [exe] + [arg.format(**fill) for arg in infer]
            times = {1: [], 2: []}
            for _ in range(a.reps):
                for threads in (1, 2):
                    times[threads].append(seconds(cmd, threads, work))
            one, two = statistics.median(times[1]), statistics.median(times[2])
            print(f"| {name} | {one:.2f} | {two:.2f} | {two / one:.2f} |", flush=True)
        print(f"medians of {a.reps} alternating runs each; load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    sys.exit(main())
