#!/usr/bin/env python3
"""One row of the bad-input table for one example binary.

  bad_input.py --binary unet --row missing_data
  bad_input.py --list          # the rows that apply to each binary

Every row runs the binary's training on a bad input with --out pointing at a
copy of a good run's folder, and checks: exit code 1 (bad input) or 2 (bad
usage), a message naming the problem, and that no file of the good run was
changed or deleted (no partial output over a good one).
Exit 0 pass, 1 fail, 77 skipped (binary or data missing).
"""
import argparse
import fcntl
import json
import os
import shutil
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rel  # noqa: E402

# The flag that takes a size, per binary (negative_size row).
SIZE_FLAG = {"unet": "--batch", "ppo": "--num-envs", "charformer": "--batch-size", "mnist_classifier": "--batch",
             "gan": "--batch", "colorize": "--batch"}
DATA_KIND = {"unet": "membrane", "charformer": "text", "mnist_classifier": "idx", "gan": "idx", "colorize": "images"}
ROWS = ["missing_data", "empty_file", "truncated_idx", "not_png", "other_model", "wrong_shapes", "nonfinite_loss",
        "unknown_flag", "negative_size"]


def rows_for(name):
    kind = DATA_KIND.get(name)
    out = []
    for r in ROWS:
        if r in ("missing_data", "empty_file") and kind is None:
            continue
        if r == "truncated_idx" and kind != "idx":
            continue
        if r == "not_png" and kind not in IMAGE_FOLDERS:
            continue
        out.append(r)
    return out


def fixture(name):
    """A good tiny run of `name` (cached per binary build; shared by parallel ctest cases)."""
    b = rel.binary(name)
    root = os.path.join(os.environ.get("TMPDIR", "/tmp"), "marrow_rel_fixture_%s_%d" % (name, int(os.path.getmtime(b))))
    with open(root + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(os.path.join(root, "done")):
            shutil.rmtree(root, ignore_errors=True)
            r = rel.run(rel.tiny_cmd(name, os.path.join(root, "run")))
            if r.returncode != 0:
                raise SystemExit("FAIL: the good fixture run of %s exited %d: %s" % (name, r.returncode, r.stderr[-800:]))
            open(os.path.join(root, "done"), "w").close()
    return os.path.join(root, "run")


def write_safetensors(path, tensors, meta):
    """tensors: {name: (dtype, shape, bytes)}."""
    header, off, body = {}, 0, b""
    for n, (dt, shape, data) in tensors.items():
        header[n] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(data)]}
        off += len(data)
        body += data
    if meta:
        header["__metadata__"] = meta
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + body)


# The image-folder layouts: the U-Net's slices and labels, the colorizer's class folders (CIFAR-10's).
IMAGE_FOLDERS = {"membrane": ("train/image", "train/label"), "images": ("train/cat", "test/cat")}


def image_folders(work, kind, filename, text):
    """A data folder of `kind` whose every subfolder holds one file `filename` with `text`; its path."""
    d = os.path.join(work, "d")
    for sub in IMAGE_FOLDERS[kind]:
        os.makedirs(os.path.join(d, sub))
        with open(os.path.join(d, sub, filename), "w") as f:
            f.write(text)
    return d


def make_case(name, row, work, good):
    """(extra args, regex-ish substrings one of which the message must contain, expected exit codes)."""
    ck = os.path.join(good, "checkpoint.safetensors")
    steps = rel.TINY[name]["steps"]
    kind = DATA_KIND.get(name)
    if row == "missing_data":
        p = "/nonexistent/marrow-missing-data"
        return ["--data", p], [p], {1}
    if row == "empty_file":
        if kind == "text":
            p = os.path.join(work, "empty.txt")
            open(p, "w").close()
            return ["--data", p], ["empty.txt"], {1}
        if kind in IMAGE_FOLDERS:
            fn = "0.png" if kind == "membrane" else "0.jpg"
            return ["--data", image_folders(work, kind, fn, "")], [fn], {1}
        d = os.path.join(work, "d")
        os.makedirs(d)
        for fn in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                   "t10k-labels-idx1-ubyte"):
            open(os.path.join(d, fn), "w").close()
        return ["--data", d], ["idx3-ubyte", "idx1-ubyte"], {1}
    if row == "truncated_idx":
        d = os.path.join(work, "d")
        os.makedirs(d)
        for split, n in (("train", 60000), ("t10k", 10000)):
            with open(os.path.join(d, split + "-images-idx3-ubyte"), "wb") as f:
                f.write(b"\0\0\x08\x03" + struct.pack(">III", n, 28, 28) + bytes(1000))
            with open(os.path.join(d, split + "-labels-idx1-ubyte"), "wb") as f:
                f.write(b"\0\0\x08\x01" + struct.pack(">I", n) + bytes(n))
        return ["--data", d], ["truncated"], {1}
    if row == "not_png":
        return ["--data", image_folders(work, kind, "0.png", "this is a text file, not a PNG\n")], ["0.png"], {1}
    if row == "other_model":
        p = os.path.join(work, "other.safetensors")
        write_safetensors(p, {"encoder.other.weight": ("F32", (2, 2), bytes(16))},
                          {"format": "marrow-checkpoint-1", "step": "1", "config": "{}"})
        return ["--resume", "--ckpt", p], ["missing", "unexpected", "encoder.other.weight", "not a"], {1}
    if row == "wrong_shapes":
        t, meta = rel.read_safetensors(ck)
        victim = next(n for n in t if not n.startswith("state.") and len(t[n][1]) >= 1)
        dt, shape, data = t[victim]
        n = 1
        for d in shape:
            n *= d
        t[victim] = (dt, (1, n) if len(shape) == 1 else (n,), data)
        p = os.path.join(work, "wrong_shapes.safetensors")
        write_safetensors(p, t, meta)
        return ["--resume", "--ckpt", p], ["shape"], {1}
    if row == "nonfinite_loss":
        t, meta = rel.read_safetensors(ck)
        nan = struct.pack("<f", float("nan"))
        for k, (dt, shape, data) in list(t.items()):
            if dt == "F32" and not k.startswith("state."):
                t[k] = (dt, shape, nan * (len(data) // 4))
        p = os.path.join(work, "poisoned.safetensors")
        write_safetensors(p, t, meta)
        return ["--resume", "--ckpt", p, "--steps", str(steps * 2)], ["NaN", "nan", "non-finite", "inf"], {1}
    if row == "unknown_flag":
        return ["--bogus-flag", "1"], ["--bogus-flag"], {2}
    if row == "negative_size":
        f = SIZE_FLAG[name]
        return [f, "-4"], [f], {2}
    raise SystemExit("unknown row " + row)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary")
    ap.add_argument("--row", choices=ROWS)
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()
    if args.list:
        for n in rel.TINY:
            print(n, " ".join(rows_for(n)))
        return 0
    name, row = args.binary, args.row
    if row not in rows_for(name):
        rel.skip("row %s does not apply to %s" % (row, name))
    b, why = rel.available(name)
    if not b:
        rel.skip(why)
    good = fixture(name)
    work = rel.tmpdir("%s_%s" % (name, row))
    out = os.path.join(work, "out")
    shutil.copytree(good, out)
    before = rel.snapshot(out)
    extra, want, codes = make_case(name, row, work, good)
    cmd = rel.tiny_cmd(name, out) + extra
    r = rel.run(cmd, timeout=300)
    msg = (r.stderr + r.stdout).strip()
    last = next((l for l in msg.splitlines() if "error" in l or "--" in l), msg.splitlines()[-1] if msg else "")
    fails = []
    if r.returncode not in codes:
        fails.append("exit code %d, expected %s" % (r.returncode, "/".join(map(str, sorted(codes)))))
    if not any(w in msg for w in want):
        fails.append("message does not name the problem (want one of %s): %r" % (want, msg[-300:]))
    after = rel.snapshot(out)
    changed = sorted(k for k in before if after.get(k) != before[k])
    if changed:
        fails.append("files of the good run were overwritten or deleted: %s" % changed)
    print("%s %s: exit %d: %s" % (name, row, r.returncode, last[:300]))
    for f in fails:
        print("FAIL: " + f)
    if not fails:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
