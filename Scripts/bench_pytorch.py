#!/usr/bin/env python3
"""PyTorch baseline for `ibke bench`: the same measurements with transformers on the CPU.

Loads the default model's GGUF with transformers (weights dequantized to float32), sets 2
threads, and times prefill of 1, 32 and 512 tokens (logits at every position) and greedy decoding
of 64 tokens after a 32-token prompt with the KV cache, best of 3 after a warm-up.

Usage (venv with torch, transformers, gguf):
  python Scripts/bench_pytorch.py --gguf ~/.cache/ibke/models/SmolLM2-135M-Instruct.Q4_1.gguf
"""
import argparse, os, time

import torch
from transformers import AutoModelForCausalLM


def best(repeats, fn):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    path = os.path.abspath(os.path.expanduser(args.gguf))
    model = AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path),
                                                 dtype=torch.float32).eval()
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(42)
    with torch.inference_mode():
        for n in (1, 32, 512):
            ids = torch.randint(0, vocab, (1, n), generator=g)
            t = best(3, lambda: model(ids))
            print(f"prefill {n:4d} tokens: {n / t:8.1f} tokens/s  {t * 1e3:7.1f} ms")
        prompt = torch.randint(0, vocab, (1, 32), generator=g)

        def decode():
            out = model(prompt, use_cache=True)
            past, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
            start = time.perf_counter()
            for _ in range(64):
                out = model(token, past_key_values=past, use_cache=True)
                past, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
            return (time.perf_counter() - start) / 64

        decode()
        per_token = min(decode() for _ in range(3))
        print(f"decode (after 32 tokens): {1 / per_token:6.1f} tokens/s  {per_token * 1e3:6.2f} ms/token")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
