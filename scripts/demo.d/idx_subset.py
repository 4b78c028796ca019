#!/usr/bin/env python3
"""Copy the first N images (and labels) of an MNIST-layout IDX directory.

    idx_subset.py SRC DEST --train N --test M

SRC holds train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz] and the
t10k pair. DEST gets gzipped copies holding only the first N training and M test
samples, so a demo epoch is short and the GAN writes several per-epoch grids.
"""
import argparse
import gzip
import os
import struct
import sys


def read(src, stem):
    for name in (stem + ".gz", stem):
        path = os.path.join(src, name)
        if os.path.exists(path):
            opener = gzip.open if name.endswith(".gz") else open
            with opener(path, "rb") as f:
                return f.read()
    sys.exit(f"idx_subset: no file '{stem}[.gz]' in {src}")


def head(raw, n):
    magic, count = struct.unpack(">II", raw[:8])
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    per = 1
    for d in dims[1:]:
        per *= d
    n = min(n, count)
    header = struct.pack(">I", magic) + struct.pack(">I", n) + raw[8:4 + 4 * ndim]
    return header + raw[4 + 4 * ndim:4 + 4 * ndim + n * per], n


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src")
    ap.add_argument("dest")
    ap.add_argument("--train", type=int, required=True)
    ap.add_argument("--test", type=int, required=True)
    a = ap.parse_args()
    os.makedirs(a.dest, exist_ok=True)
    for split, n in (("train", a.train), ("t10k", a.test)):
        for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
            data, kept = head(read(a.src, f"{split}-{kind}"), n)
            # mtime=0: the same subset gives the same bytes, run after run.
            with gzip.GzipFile(os.path.join(a.dest, f"{split}-{kind}.gz"), "wb", mtime=0) as f:
                f.write(data)
        print(f"idx_subset: {split}: {kept} samples -> {a.dest}")


if __name__ == "__main__":
    main()
