#!/usr/bin/env python3
"""Cross-check marrow's safetensors files against an independent Python reader/writer.

  safetensors_compat.py check FILE   read a file marrow wrote (tests/unit_safetensors.cpp) and check its values
  safetensors_compat.py write FILE   write a file by hand (struct + json) for marrow to read back

The format is parsed with json + struct only, so the check runs on any python3.
When torch is importable, values are also decoded with torch.frombuffer and,
when the `safetensors` package exists, with safetensors.torch.load_file.
Exit 0 on success, 1 on a mismatch (with a message), 77 when python is too old.
"""
import json
import math
import struct
import sys

# The tensors both sides agree on: name -> (dtype, shape, values).
EXPECTED = {
    "w": ("F32", [2, 3], [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]),
    "ids": ("I32", [4], [-1, 0, 7, 2147483647]),
    "scale": ("F64", [], [math.pi]),
    "mask": ("U8", [3], [0, 1, 255]),
    "big": ("I64", [2], [-(2**62), 2**40 + 3]),
    "empty": ("F32", [0, 4], []),
}
METADATA = {"step": "42", "note": "caf\u00e9 \"quoted\""}
FMT = {"F32": "f", "F64": "d", "I32": "i", "I64": "q", "U8": "B"}
SIZE = {"F32": 4, "F64": 8, "I32": 4, "I64": 8, "U8": 1}


def fail(msg):
    print("safetensors_compat: " + msg)
    sys.exit(1)


def check(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        fail("header length %d exceeds file size %d" % (n, len(data)))
    if (8 + n) % 8 != 0:
        fail("data does not start 8-byte aligned (header length %d)" % n)
    header = json.loads(data[8 : 8 + n].decode("utf-8"))
    body = data[8 + n :]
    meta = header.pop("__metadata__", {})
    if meta.get("step") != METADATA["step"] or meta.get("note") != METADATA["note"]:
        fail("metadata mismatch: %r" % (meta,))
    if set(header) != set(EXPECTED):
        fail("tensor names %r != %r" % (sorted(header), sorted(EXPECTED)))
    for name, (dtype, shape, values) in EXPECTED.items():
        info = header[name]
        if info["dtype"] != dtype or info["shape"] != shape:
            fail("%s: dtype/shape %s %s, expected %s %s" % (name, info["dtype"], info["shape"], dtype, shape))
        b, e = info["data_offsets"]
        raw = body[b:e]
        got = list(struct.unpack("<%d%s" % (len(values), FMT[dtype]), raw)) if values else []
        if len(raw) != len(values) * SIZE[dtype] or got != values:
            fail("%s: values %r, expected %r" % (name, got, values))
    try:
        import torch  # noqa: F401
    except ImportError:
        return
    tdt = {"F32": torch.float32, "F64": torch.float64, "I32": torch.int32, "I64": torch.int64, "U8": torch.uint8}
    for name, (dtype, shape, values) in EXPECTED.items():
        b, e = header[name]["data_offsets"]
        t = torch.frombuffer(bytearray(body[b:e]), dtype=tdt[dtype]) if e > b else torch.empty(0, dtype=tdt[dtype])
        t = t.reshape(shape)
        if t.flatten().tolist() != values:
            fail("%s: torch.frombuffer gives %r" % (name, t.flatten().tolist()))
    try:
        from safetensors.torch import load_file
    except ImportError:
        return
    loaded = load_file(path)
    for name, (dtype, shape, values) in EXPECTED.items():
        if list(loaded[name].shape) != shape or loaded[name].flatten().tolist() != values:
            fail("%s: safetensors.torch.load_file disagrees" % name)


def write(path):
    # Deliberately unlike marrow's own writer: metadata first, reverse tensor
    # order in the header, no padding, data laid out in a different order.
    header = {"__metadata__": METADATA}
    body = b""
    for name in sorted(EXPECTED, reverse=True):
        dtype, shape, values = EXPECTED[name]
        raw = struct.pack("<%d%s" % (len(values), FMT[dtype]), *values)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(body), len(body) + len(raw)]}
        body += raw
    h = json.dumps(header).encode("utf-8")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + body)


if __name__ == "__main__":
    if sys.version_info < (3, 6):
        sys.exit(77)
    if len(sys.argv) != 3 or sys.argv[1] not in ("check", "write"):
        print(__doc__)
        sys.exit(2)
    (check if sys.argv[1] == "check" else write)(sys.argv[2])
