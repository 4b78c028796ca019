#!/usr/bin/env python3
"""Data-parallel speed on one machine (issue 23, measurement 4).

    bench/dist.py [--build build] [--reps 3] [--out runs/bench-dist]

For the GPT (nanoGPT's CPU configuration), the U-Net and the DCGAN: one process
with 2 OpenMP threads against `mpirun -np 2`, one thread each (the global batch
cut into 2 shards), alternating, `--reps` times each. Reports the median step
time of each set-up (its summary.json's ms_per_step), their throughput ratio
(1 x 2 threads ms / 2 x 1 thread ms: above 1, the two processes are faster), and
the all-reduce's share of the two-process step (metrics.jsonl's allreduce_ms).
Run nothing else meanwhile.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(os.path.dirname(ROOT), "shared", "data")

MODELS = {
    "gpt": ("charformer", ["train", "--data", os.path.join(DATA, "tinyshakespeare", "input.txt"), "--steps", "60",
                           "--eval-interval", "100000", "--eval-iters", "1"]),
    "unet": ("unet", ["train", "--data", os.path.join(DATA, "membrane"), "--steps", "12", "--eval-interval", "100000"]),
    "dcgan": ("gan", ["train", "--data", os.path.join(DATA, "mnist"), "--preset", "dcgan", "--epochs", "0", "--steps",
                      "60", "--eval-samples", "50", "--classifier", "/nonexistent/none.safetensors"]),
}


def run(argv, env, out):
    r = subprocess.run(argv + ["--out", out], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        sys.exit(f"bench/dist.py: exit {r.returncode}: {' '.join(argv)}\n{r.stdout[-2000:]}")
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    reduce_ms, hidden = [], []
    with open(os.path.join(out, "metrics.jsonl")) as f:
        for line in f:
            j = json.loads(line)
            if "allreduce_ms" in j:
                reduce_ms.append(j["allreduce_ms"])
                hidden.append(j.get("allreduce_hidden", 0.0))
    med = lambda v: statistics.median(v) if v else 0.0
    return summary["ms_per_step"], (med(reduce_ms), med(hidden))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default="runs/bench-dist")
    ap.add_argument("--models", default="gpt,unet,dcgan")
    a = ap.parse_args()
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_btl="self,vader,tcp", OMPI_MCA_btl_vader_single_copy_mechanism="none")
    host = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"host: {host}, {os.cpu_count()} cores")
    print("| model | 1 process x 2 threads, ms/step | 2 processes x 1 thread, ms/step | throughput ratio | all-reduce ms (share of step) | share hidden behind backward |")
    print("|---|---|---|---|---|---|")
    results = {}
    for name in a.models.split(","):
        binary, flags = MODELS[name]
        exe = os.path.join(a.build, "examples", binary)
        one, two, red, hid = [], [], [], []
        for rep in range(a.reps):
            ms, _ = run([exe] + flags + ["--threads", "2"], env, os.path.join(a.out, f"{name}-1x2-{rep}"))
            one.append(ms)
            ms, (ar, hidden) = run(["mpirun", "-np", "2", "--bind-to", "none", exe] + flags + ["--threads", "1"], env,
                         os.path.join(a.out, f"{name}-2x1-{rep}"))
            two.append(ms)
            red.append(ar)
            hid.append(hidden)
        m1, m2, mr, mh = (statistics.median(v) for v in (one, two, red, hid))
        results[name] = {"ms_1x2": one, "ms_2x1": two, "allreduce_ms": red, "allreduce_hidden": hid, "ratio": m1 / m2}
        print(f"| {name} | {m1:.1f} | {m2:.1f} | {m1 / m2:.2f} | {mr:.2f} ({100 * mr / m2:.1f} %) | {100 * mh:.0f} % |",
              flush=True)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "dist.json"), "w") as f:
        json.dump({"host": host, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
