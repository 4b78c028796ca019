"""Shared helpers of the reliability scripts (python3 standard library only).

Binaries come from MARROW_BIN_DIR (default: build/examples under the repo);
tiny configurations per example binary live in TINY, so every script trains
the same small models.
"""
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.environ.get("MARROW_SHARED_DATA", os.path.join(os.path.dirname(ROOT), "shared", "data"))
if not os.path.isdir(DATA) and os.path.isdir("/work/shared/data"):
    DATA = "/work/shared/data"

# Fields that measure time, not learning: excluded from bitwise comparisons.
TIMING_FIELDS = {"ms", "wall_s", "sps", "ms_per_step", "steps_timed", "peak_rss_mb", "time_s", "elapsed_s",
                 "samples_per_s", "tokens_per_s", "steps_per_s", "fps", "img_per_s", "eta_s", "s", "train_minutes",
                 "kmeans_s"}


def bin_dir():
    return os.environ.get("MARROW_BIN_DIR", os.path.join(ROOT, "build", "examples"))


def binary(name):
    p = os.path.join(bin_dir(), name)
    return p if os.access(p, os.X_OK) else None


# name -> (data needed, args of a tiny training run without --out/--seed/--threads/--steps,
#          steps of that run, flag that sets the checkpoint interval or None).
TINY = {
    "unet": dict(data="membrane/train/image/0.png",
                 args=["train", "--width", "4", "--depth", "2", "--crop", "64", "--batch", "2", "--val-from", "29",
                       "--eval-interval", "2", "--data", os.path.join(DATA, "membrane")],
                 steps=12),
    "ppo": dict(data=None, args=["train", "--env", "CartPole-v1", "--num-envs", "2", "--num-steps", "64"], steps=1024),
    "charformer": dict(data=None,
                       args=["train", "--data", os.path.join(ROOT, "LICENSE"), "--n-layer", "1", "--n-head", "2",
                             "--n-embd", "16", "--block-size", "16", "--batch-size", "4", "--eval-interval", "5",
                             "--eval-iters", "2"],
                       steps=10),
    "mnist_classifier": dict(data="mnist/train-images-idx3-ubyte.gz",
                             args=["train", "--epochs", "0", "--log-every", "5", "--data", os.path.join(DATA, "mnist")],
                             steps=10),
    "gan": dict(data="mnist/train-images-idx3-ubyte.gz",  # the default recipe, with fewer clusters for speed
                args=["train", "--epochs", "0", "--eval-samples", "50", "--log-every", "5", "--clusters", "5",
                      "--data", os.path.join(DATA, "mnist")],
                steps=10),
    "colorize": dict(data="cifar10-jpg/train",
                     args=["train", "--max-per-class", "10", "--batch", "8", "--test-images", "3", "--eval-every", "3",
                           "--eval-images", "10", "--data", os.path.join(DATA, "cifar10-jpg")],
                     steps=6),
}


def available(name):
    """(binary path, reason it is skipped or None)."""
    b = binary(name)
    if b is None:
        return None, "binary %s not built in %s" % (name, bin_dir())
    need = TINY[name]["data"]
    if need and not os.path.exists(os.path.join(DATA, need)):
        return None, "data %s not found under %s" % (need, DATA)
    return b, None


def tiny_cmd(name, out, seed=1, threads=1, steps=None, extra=()):
    t = TINY[name]
    b = binary(name)
    return [b] + t["args"] + ["--steps", str(steps or t["steps"]), "--seed", str(seed), "--threads", str(threads),
                              "--out", out] + list(extra)


def run(cmd, timeout=600, env=None, **kw):
    e = dict(os.environ)
    e.setdefault("OMP_WAIT_POLICY", "passive")
    if env:
        e.update(env)
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout, env=e, **kw)


# ---- safetensors, read independently of the C++ reader -------------------------------------
DTYPE_SIZE = {"F32": 4, "F64": 8, "I32": 4, "I64": 8, "U8": 1, "F16": 2, "BF16": 2}


def read_safetensors(path):
    """{name: (dtype, shape, bytes)}, metadata. Raises ValueError naming what is wrong."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError("%s: %d bytes, too short" % (path, len(data)))
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise ValueError("%s: header length %d exceeds file" % (path, n))
    header = json.loads(data[8:8 + n].decode("utf-8"))
    body = data[8 + n:]
    tensors, meta = {}, header.pop("__metadata__", {})
    end_max = 0
    for name, info in header.items():
        b, e = info["data_offsets"]
        numel = 1
        for d in info["shape"]:
            numel *= d
        if not (0 <= b <= e <= len(body)) or e - b != numel * DTYPE_SIZE[info["dtype"]]:
            raise ValueError("%s: tensor %s has bad offsets %r" % (path, name, info["data_offsets"]))
        tensors[name] = (info["dtype"], tuple(info["shape"]), body[b:e])
        end_max = max(end_max, e)
    if end_max != len(body):
        raise ValueError("%s: %d data bytes but tensors cover %d" % (path, len(body), end_max))
    return tensors, meta


def diff_tensors(a, b):
    """Names of tensors that differ (missing, shape, dtype or any bit)."""
    out = sorted(set(a) ^ set(b))
    out += [k for k in sorted(set(a) & set(b)) if a[k] != b[k]]
    return out


def metrics_lines(path, drop=TIMING_FIELDS):
    """metrics.jsonl as a list of dicts without timing fields; later lines for a step replace earlier ones
    (a resumed run re-logs the steps after its checkpoint)."""
    lines = []
    with open(path) as f:
        for line in f:
            if line.strip():
                d = json.loads(line)
                lines.append({k: v for k, v in d.items() if k not in drop})
    return lines


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def snapshot(dir_):
    """{relative path: sha256} of every file under dir_."""
    out = {}
    for root, _, files in os.walk(dir_):
        for fn in files:
            p = os.path.join(root, fn)
            out[os.path.relpath(p, dir_)] = sha(p)
    return out


def tmpdir(tag):
    return tempfile.mkdtemp(prefix="marrow_rel_%s_" % tag)


def skip(reason):
    # ctest SKIP_RETURN_CODE 77 marks the case skipped rather than passed.
    print("SKIP: " + reason)
    sys.exit(77)
