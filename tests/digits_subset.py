#!/usr/bin/env python3
"""Writes the first N images and labels of an MNIST-format directory to another one.

The smoke tests of gan and mnist_classifier run every code path of the binaries
(loading, training, k-means, scoring against the test digits) but need no more
than a few thousand digits for that; on the full 70,000 the sanitizer build spent
minutes decompressing and classifying them. The files keep the IDX format and
gzip, so the binaries read them exactly as they read the originals.

usage: digits_subset.py SRC_DIR DST_DIR [--train N] [--test N]
"""
import argparse
import gzip
import os
import struct
import sys


def subset(src, dst, count):
    with gzip.open(src, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    if magic >> 8 != 0x08:  # unsigned bytes
        sys.exit(f"digits_subset: {src} is not an IDX ubyte file (magic {magic:#x})")
    rank = magic & 0xFF
    dims = list(struct.unpack(">" + "I" * rank, data[4:4 + 4 * rank]))
    per_item = 1
    for d in dims[1:]:
        per_item *= d
    count = min(count, dims[0])
    dims[0] = count
    header = struct.pack(">I", magic) + struct.pack(">" + "I" * rank, *dims)
    body = data[4 + 4 * rank:4 + 4 * rank + count * per_item]
    tmp = dst + ".tmp"
    # mtime 0: the same bytes on every run, so the fixture's output never changes.
    with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
        f.write(header + body)
    os.replace(tmp, dst)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--train", type=int, default=2000)
    p.add_argument("--test", type=int, default=1000)
    a = p.parse_args()
    os.makedirs(a.dst, exist_ok=True)
    for split, n in (("train", a.train), ("t10k", a.test)):
        for kind in ("images-idx3", "labels-idx1"):
            name = f"{split}-{kind}-ubyte.gz"
            subset(os.path.join(a.src, name), os.path.join(a.dst, name), n)
    print(f"digits_subset: {a.train} training and {a.test} test digits in {a.dst}")


if __name__ == "__main__":
    main()
