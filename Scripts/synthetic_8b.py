#!/usr/bin/env python3
"""A GGUF with Llama-3-8B's shapes and random weights, and IBKE's memory and speed on it.

No real 8B checkpoint is reachable from the project's machines, so this measures the path, not
quality: load time, peak resident memory, prefill and decode speed, and the time and memory of
the two gradient passes editors run (`ibke bench --gradients`): a delta at layer 5's MLP output
with the gradient from the logits back to it (ROME's value optimisation at its usual early
layer), and the same at layer 29 (a pass through the top 3 blocks, as the hypernetworks edit).

The file: 32 blocks, hidden 4096, 32 query and 8 key/value heads, MLP 14336, vocabulary 128256,
in llama.cpp's Q4_K_M mix (Q4_K, with Q6_K for the output and for attn_v / ffn_down of the
layers llama.cpp gives more bits), random blocks with small scales, norms of ones. Its tokenizer
is SmolLM2's (a real byte-level BPE) padded with reserved control tokens to 128256 entries.

    python3 -m venv ~/venv-llamacpp && ~/venv-llamacpp/bin/pip install gguf numpy
    swift build -c release
    ~/venv-llamacpp/bin/python Scripts/synthetic_8b.py --out /tmp/llama3-8b-shaped.gguf --threads 2

The GGUF (4.6 GiB) is written once and reused; pass --skip-bench to only write it.
"""
import argparse, os, re, subprocess, sys, time

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q

LAYERS, HIDDEN, HEADS, KV_HEADS, FFN, VOCAB = 32, 4096, 32, 8, 14336, 128256
HEAD_DIM = HIDDEN // HEADS


def more_bits(layer):
    """llama.cpp's use_more_bits: the first and last eighth, and every third layer between."""
    return layer < LAYERS // 8 or layer >= 7 * LAYERS // 8 or (layer - LAYERS // 8) % 3 == 2


def random_blocks(rng, quant, rows, columns):
    """Random blocks of `quant` with fp16 scales small enough for weights of about ±0.05."""
    block, size = gguf.GGML_QUANT_SIZES[quant]
    blocks = rng.integers(0, 256, size=(rows * columns // block, size), dtype=np.uint8)
    def scales(offset, scale):
        values = (rng.random(blocks.shape[0]) * scale).astype(np.float16)
        blocks[:, offset:offset + 2] = values.view(np.uint8).reshape(-1, 2)
    if quant == Q.Q4_K:
        scales(0, 4e-5); scales(2, 4e-5)        # d, dmin: |w| ≲ 63·15·d
    elif quant == Q.Q6_K:
        scales(208, 1.5e-5)                     # d: |w| ≲ 128·32·d
    return blocks.reshape(rows, -1)


def tensors():
    """(name, numpy shape [rows, columns] or [n], type) in llama.cpp's order."""
    yield "token_embd.weight", (VOCAB, HIDDEN), Q.Q4_K
    for i in range(LAYERS):
        yield f"blk.{i}.attn_norm.weight", (HIDDEN,), Q.F32
        yield f"blk.{i}.attn_q.weight", (HIDDEN, HIDDEN), Q.Q4_K
        yield f"blk.{i}.attn_k.weight", (KV_HEADS * HEAD_DIM, HIDDEN), Q.Q4_K
        yield f"blk.{i}.attn_v.weight", (KV_HEADS * HEAD_DIM, HIDDEN), Q.Q6_K if more_bits(i) else Q.Q4_K
        yield f"blk.{i}.attn_output.weight", (HIDDEN, HIDDEN), Q.Q4_K
        yield f"blk.{i}.ffn_norm.weight", (HIDDEN,), Q.F32
        yield f"blk.{i}.ffn_gate.weight", (FFN, HIDDEN), Q.Q4_K
        yield f"blk.{i}.ffn_up.weight", (FFN, HIDDEN), Q.Q4_K
        yield f"blk.{i}.ffn_down.weight", (HIDDEN, FFN), Q.Q6_K if more_bits(i) else Q.Q4_K
    yield "output_norm.weight", (HIDDEN,), Q.F32
    yield "output.weight", (VOCAB, HIDDEN), Q.Q6_K


def write(out, tokenizer_gguf):
    source = gguf.GGUFReader(tokenizer_gguf)
    def field(name):
        f = source.fields[name]
        return [f.parts[i] for i in f.data]
    tokens = [bytes(t).decode("utf-8") for t in field("tokenizer.ggml.tokens")]
    types = [int(t[0]) for t in field("tokenizer.ggml.token_type")]
    merges = [bytes(m).decode("utf-8") for m in field("tokenizer.ggml.merges")]
    reserved = VOCAB - len(tokens)
    tokens += [f"<|reserved_special_token_{i}|>" for i in range(reserved)]
    types += [gguf.TokenType.CONTROL] * reserved

    temporary = out + ".partial"
    writer = gguf.GGUFWriter(temporary, "llama")
    writer.add_name("Llama-3-8B-shaped (random weights)")
    writer.add_block_count(LAYERS)
    writer.add_context_length(8192)
    writer.add_embedding_length(HIDDEN)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_dimension_count(HEAD_DIM)
    writer.add_rope_freq_base(500000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(VOCAB)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_K_M)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(bytes(field("tokenizer.ggml.pre")[0]).decode("utf-8"))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(int(field("tokenizer.ggml.bos_token_id")[0][0]))
    writer.add_eos_token_id(int(field("tokenizer.ggml.eos_token_id")[0][0]))

    layout = list(tensors())
    for name, shape, quant in layout:
        if quant == Q.F32:
            writer.add_tensor_info(name, shape, np.dtype(np.float32), shape[0] * 4)
        else:
            byte_shape = gguf.quant_shape_to_byte_shape(shape, quant)
            writer.add_tensor_info(name, byte_shape, np.dtype(np.uint8), byte_shape[0] * byte_shape[1], raw_dtype=quant)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    rng = np.random.default_rng(8)
    for name, shape, quant in layout:
        data = np.ones(shape, dtype=np.float32) if quant == Q.F32 else random_blocks(rng, quant, *shape)
        writer.write_tensor_data(data)
    writer.close()
    os.replace(temporary, out)


def measure(command):
    """Runs `command`: (stdout + stderr, wall seconds, peak RSS in MB)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = status
    if status != 0:
        sys.exit(f"{' '.join(command)} failed ({status}):\n{output[-3000:]}")
    return output, time.perf_counter() - start, usage.ru_maxrss / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    home = os.environ.get("IBKE_HOME", os.path.expanduser("~/.cache/ibke"))
    parser.add_argument("--out", default="/tmp/llama3-8b-shaped.gguf")
    parser.add_argument("--tokenizer", default=os.path.join(home, "models/SmolLM2-135M-Instruct.Q4_1.gguf"),
                        help="a GGUF whose gpt2 tokenizer is copied")
    parser.add_argument("--ibke", default=".build/release/ibke")
    parser.add_argument("--dtype", default="native")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-bench", action="store_true")
    args = parser.parse_args()

    if not os.path.exists(args.out):
        start = time.perf_counter()
        write(args.out, args.tokenizer)
        print(f"wrote {args.out} ({os.path.getsize(args.out) / 2**30:.2f} GiB) in {time.perf_counter() - start:.0f} s")
    size = os.path.getsize(args.out) / 2**30
    if args.skip_bench:
        return
    common = ["--model", args.out, "--threads", str(args.threads), "--dtype", args.dtype]

    output, seconds, rss = measure([args.ibke, "generate", *common, "--max-tokens", "8", "The capital of France is"])
    load = float(re.search(r"loaded .* in ([\d.]+) s", output).group(1))
    print(f"generate 8 tokens: {seconds:.1f} s in all, load {load:.2f} s, peak RSS {rss / 1024:.2f} GiB "
          f"({rss / 1024 / size:.2f}× the file's {size:.2f} GiB)")

    output, _, _ = measure([args.ibke, "bench", *common, "--repeats", "1", "--decode-tokens", "8"])
    for line in output.splitlines():
        if line.startswith(("prefill", "decode")):
            print(line)

    for layer, what in ((5, "ROME's value optimisation (delta at layer 5)"), (LAYERS - 3, "a pass through the top 3 blocks")):
        output, seconds, rss = measure([args.ibke, "bench", "--gradients", *common, "--gradient-layer", str(layer),
                                        "--gradient-prompts", "1", "--gradient-steps", "2", "--repeats", "1"])
        step = re.search(r"forward\+backward to the delta:\s+([\d.]+) ms", output).group(1)
        print(f"{what}: forward+backward {float(step) / 1e3:.1f} s for 20 tokens, peak RSS {rss / 1024:.2f} GiB")


if __name__ == "__main__":
    main()
