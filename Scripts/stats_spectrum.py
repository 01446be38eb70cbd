#!/usr/bin/env python3
"""Eigenvalue spectrum of cached second moments C = E[k kᵀ] (files of `ibke stats`).

    python3 Scripts/stats_spectrum.py ~/.cache/ibke/cache/stats/mom2-L*.safetensors

Prints per file how many directions hold 90/99/99.9% of the trace, and how many eigenvalues are
below 1% of the mean: the room an AlphaEdit-style null-space projection has at that layer.
Needs numpy.
"""
import json
import struct
import sys

import numpy as np

DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16}

for path in sys.argv[1:]:
    with open(path, "rb") as f:
        data = f.read()
    length = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + length])
    body = data[8 + length:]
    layer = header.get("__metadata__", {}).get("layer", "?")
    for name, info in header.items():
        if name == "__metadata__" or len(info["shape"]) != 2 or info["shape"][0] != info["shape"][1]:
            continue
        start, end = info["data_offsets"]
        c = np.frombuffer(body[start:end], dtype=DTYPES[info["dtype"]]).reshape(info["shape"]).astype(np.float64)
        w = np.linalg.eigvalsh(c)[::-1]
        share = np.cumsum(w) / w.sum()
        counts = [int(np.searchsorted(share, q)) + 1 for q in (0.9, 0.99, 0.999)]
        small = int((w < 1e-2 * w.mean()).sum())
        print(f"{path}: {name} {info['shape'][0]}×{info['shape'][1]}, directions for 90/99/99.9% of the trace: "
              f"{counts[0]}/{counts[1]}/{counts[2]}; eigenvalues below 1% of the mean: {small}")
