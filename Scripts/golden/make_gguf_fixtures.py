#!/usr/bin/env python3
"""Writes the GGUF reader fixtures for Tests/ModelFormatsTests/Fixtures.

Outputs (all committed):
  gguf_all_types.gguf         GGUF v3 with one tensor of every type the Swift reader dequantizes
                              (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K..Q6_K) and metadata
                              of every GGUF value type, including arrays of strings and nested arrays.
  gguf_all_types.json         Manifest: per tensor its name, type, ne, row-major shape and where its
                              expected values start in the .f32 file.
  gguf_all_types.expected.f32 Expected dequantized values, little-endian float32, tensors concatenated
                              in file order, from gguf.quants.dequantize applied to the bytes read
                              back from the written file.

Types gguf.quants.quantize supports are quantized from random normal data; for the K-quants (which it
cannot quantize) the blocks are random bytes with sane fp16 scales patched in.

Usage: python Scripts/golden/make_gguf_fixtures.py [--out Tests/ModelFormatsTests/Fixtures]
Needs gguf==0.19.0 and numpy (see Scripts/golden/README.md).
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T, GGUFValueType as V
from gguf.constants import GGML_QUANT_SIZES

SEED = 20261127
ARCH = "testarch"


def kquant_blocks(rng: np.random.Generator, qtype: T, n_blocks: int) -> np.ndarray:
    """Random K-quant blocks with fp16 scales in a realistic range (no inf/nan)."""
    _, type_size = GGML_QUANT_SIZES[qtype]
    blocks = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)

    def put_f16(col: int, values: np.ndarray) -> None:
        blocks[:, col:col + 2] = values.astype(np.float16).view(np.uint8).reshape(n_blocks, 2)

    d = rng.uniform(1e-4, 5e-2, size=n_blocks) * rng.choice([-1.0, 1.0], size=n_blocks)
    dmin = rng.uniform(1e-4, 5e-2, size=n_blocks)
    if qtype == T.Q2_K:      # scales[16] qs[64] d dmin
        put_f16(80, d); put_f16(82, dmin)
    elif qtype == T.Q3_K:    # hmask[32] qs[64] scales[12] d
        put_f16(108, d)
    elif qtype in (T.Q4_K, T.Q5_K):  # d dmin scales[12] ...
        put_f16(0, d); put_f16(2, dmin)
    elif qtype == T.Q6_K:    # ql[128] qh[64] scales[16] d
        put_f16(208, d)
    else:
        raise ValueError(qtype)
    return blocks


def build_tensors(rng: np.random.Generator) -> list[tuple[str, T, np.ndarray, tuple[int, ...]]]:
    """(name, type, array to write, row-major shape)."""
    out = []

    f32 = rng.standard_normal((3, 40)).astype(np.float32)
    out.append(("t.f32", T.F32, f32, f32.shape))

    f32_3d = rng.standard_normal((2, 3, 8)).astype(np.float32)
    out.append(("t.f32_3d", T.F32, f32_3d, f32_3d.shape))

    f32_1d = rng.standard_normal(7).astype(np.float32)
    out.append(("t.f32_1d", T.F32, f32_1d, f32_1d.shape))

    special = np.array([0.0, -0.0, 1.0, -2.0, 65504.0, 2.0 ** -24, -(2.0 ** -20), np.inf, -np.inf],
                       dtype=np.float16)
    f16 = np.concatenate([special, np.float16(np.nan) * np.ones(1, np.float16),
                          rng.standard_normal(38).astype(np.float16)]).reshape(2, 24)
    out.append(("t.f16", T.F16, f16, f16.shape))

    bf = rng.standard_normal((2, 32)).astype(np.float32)
    bf[0, :4] = [0.0, -0.0, np.inf, 1e-40]  # zero, negative zero, inf, subnormal
    out.append(("t.bf16", T.BF16, gguf.quants.quantize(bf, T.BF16), bf.shape))

    for name, qtype, shape in [("t.q8_0", T.Q8_0, (4, 96)), ("t.q4_0", T.Q4_0, (4, 64)),
                               ("t.q4_1", T.Q4_1, (4, 64)), ("t.q5_0", T.Q5_0, (4, 64)),
                               ("t.q5_1", T.Q5_1, (4, 64))]:
        data = (rng.standard_normal(shape) * 0.3).astype(np.float32)
        data[0, :32] = 0.0                    # an all-zero block (d = 0)
        data[1, 32:64] = np.linspace(-1, 1, 32)
        out.append((name, qtype, gguf.quants.quantize(data, qtype), shape))

    for name, qtype in [("t.q2_k", T.Q2_K), ("t.q3_k", T.Q3_K), ("t.q4_k", T.Q4_K),
                        ("t.q5_k", T.Q5_K), ("t.q6_k", T.Q6_K)]:
        rows, cols = 2, 512
        blocks = kquant_blocks(rng, qtype, rows * cols // 256)
        out.append((name, qtype, blocks.reshape(rows, -1), (rows, cols)))
    return out


def add_metadata(w: gguf.GGUFWriter) -> None:
    # Scalars of every type. Expected values are repeated in GGUFFileTests.swift.
    w.add_uint8("test.uint8", 200)
    w.add_int8("test.int8", -100)
    w.add_uint16("test.uint16", 60000)
    w.add_int16("test.int16", -30000)
    w.add_uint32("test.uint32", 4_000_000_000)
    w.add_int32("test.int32", -2_000_000_000)
    w.add_float32("test.float32", 3.14159)
    w.add_bool("test.bool_true", True)
    w.add_bool("test.bool_false", False)
    w.add_string("test.string", "héllo wörld ✓")
    w.add_key_value("test.empty_string", "", V.STRING)
    w.add_uint64("test.uint64", 18_446_744_073_709_551_615)
    w.add_uint64("test.uint64_small", 1 << 40)
    w.add_int64("test.int64", -(1 << 40))
    w.add_float64("test.float64", 2.718281828459045)
    # Arrays, typed and nested.
    w.add_array("test.array.strings", ["a", "bc", "", "ünïcode"])
    w.add_key_value("test.array.int32", [1, -2, 3], V.ARRAY, sub_type=V.INT32)
    w.add_key_value("test.array.uint8", [0, 255, 7], V.ARRAY, sub_type=V.UINT8)
    w.add_key_value("test.array.uint64", [1, 1 << 63], V.ARRAY, sub_type=V.UINT64)
    w.add_key_value("test.array.float64", [0.5, -1e300], V.ARRAY, sub_type=V.FLOAT64)
    w.add_array("test.array.float32", [0.25, -1.5])
    w.add_array("test.array.bool", [True, False, True])
    w.add_array("test.array.nested", [[1, 2], [3], [4, 5, 6]])
    w.add_array("test.array.nested_strings", [["x"], ["y", "z"]])
    # Architecture keys as a real model has them.
    w.add_name("tiny test model")
    w.add_block_count(2)
    w.add_context_length(128)


def main() -> None:
    here = Path(__file__).resolve().parent
    default_out = here.parent.parent / "Tests" / "ModelFormatsTests" / "Fixtures"
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=default_out)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(SEED)
    tensors = build_tensors(rng)
    gguf_path = args.out / "gguf_all_types.gguf"

    w = gguf.GGUFWriter(gguf_path, arch=ARCH)
    add_metadata(w)
    for name, qtype, arr, _ in tensors:
        if qtype in (T.F32, T.F16):
            w.add_tensor(name, arr)
        else:
            w.add_tensor(name, arr, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    # Expected values from the bytes as written, read back with gguf-py's own reader.
    reader = gguf.GGUFReader(gguf_path)
    by_name = {t.name: t for t in reader.tensors}
    manifest = {"generator": "Scripts/golden/make_gguf_fixtures.py", "seed": SEED,
                "gguf": importlib.metadata.version("gguf"),
                "numpy": np.__version__, "file": gguf_path.name, "tensors": []}
    expected_chunks = []
    start = 0
    for name, qtype, _, shape in tensors:
        t = by_name[name]
        assert t.tensor_type == qtype, (name, t.tensor_type, qtype)
        raw = np.ascontiguousarray(t.data).view(np.uint8)
        values = gguf.quants.dequantize(raw, qtype).astype(np.float32, copy=False).reshape(-1)
        n = int(np.prod(shape))
        assert values.size == n, (name, values.size, n)
        assert [int(x) for x in t.shape] == list(reversed(shape)), (name, t.shape, shape)
        expected_chunks.append(values.astype("<f4"))
        manifest["tensors"].append({"name": name, "type": qtype.name, "ne": [int(x) for x in t.shape],
                                    "shape": list(shape), "start": start, "count": n})
        start += n
    (args.out / "gguf_all_types.expected.f32").write_bytes(np.concatenate(expected_chunks).tobytes())
    # One line per tensor keeps the manifest readable and its diffs small.
    rows = [json.dumps(t) for t in manifest.pop("tensors")]
    head = json.dumps(manifest)[:-1]
    (args.out / "gguf_all_types.json").write_text(head + ', "tensors": [\n  ' + ",\n  ".join(rows) + "\n]}\n")
    print(f"wrote {gguf_path} ({gguf_path.stat().st_size} bytes), {start} expected values")


if __name__ == "__main__":
    main()
