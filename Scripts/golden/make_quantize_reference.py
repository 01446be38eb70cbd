#!/usr/bin/env python3
"""Reference blocks for `Quantize` (Tests/ModelFormatsTests/QuantizeTests.swift): gguf-py's
numpy quantizers, which match ggml's `quantize_row_*_ref` bit for bit, on random rows and on
edge cases (a zero block, a constant block, a block whose largest magnitude is negative, values
on rounding boundaries).

    python3 -m venv ~/venv-gguf && ~/venv-gguf/bin/pip install gguf numpy
    ~/venv-gguf/bin/python Scripts/golden/make_quantize_reference.py > Tests/ModelFormatsTests/Fixtures/quantize_reference.json
"""
import json

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

rng = np.random.default_rng(7)
blocks = [
    rng.standard_normal(32) * 0.05,
    rng.standard_normal(32) * 3.0,
    rng.uniform(-1, 1, 32) ** 3,
    np.zeros(32),
    np.full(32, 0.25),
    np.concatenate([[-2.0], rng.uniform(-1, 1, 31)]),
    np.arange(32) / 8.0 - 2.0,
    rng.standard_normal(32) * 1e-4,
]
values = np.concatenate(blocks).astype(np.float32)
out = {"values": [float(v) for v in values]}
for name in ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]:
    out[name.lower()] = quants.quantize(values.reshape(1, -1), getattr(T, name)).tobytes().hex()
print(json.dumps(out))
