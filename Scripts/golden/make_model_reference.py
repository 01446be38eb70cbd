#!/usr/bin/env python3
"""Make the PyTorch reference of a real checkpoint: logits at every position and greedy tokens.

What: transformers loads the GGUF (every tensor dequantized to float32 by `gguf`), runs each prompt
on its own, and the script writes per prompt the token ids of transformers' tokenizer (built from
the GGUF's metadata), the top-5 next-token logits and the log-sum-exp at every position, and the
greedy continuation. The same layout as shared/reference/*/logits.json, so the Swift tests read
both with one type (Tests/ModelsTests/DefaultModel.swift, `ReferenceLogits`).

Usage (from the repository root, after `ibke model fetch NAME`):

    /work/venv-ref/bin/python Scripts/golden/make_model_reference.py \
        --gguf ~/.cache/ibke/models/Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf \
        --out Tests/ModelsTests/Fixtures/qwen2.5-coder-0.5b_reference.json

Requirements (a virtual environment): torch (CPU), transformers, gguf, sentencepiece, protobuf,
numpy, accelerate; the versions are written into the output. float32, 2 threads, no sampling.
"""
import argparse, hashlib, json, os, platform
from importlib.metadata import version

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

PROMPTS = [
    "The capital of France is",
    "The Eiffel Tower is located in the city of",
    "def fibonacci(n):",
    "The mother tongue of Danielle Darrieux is",
    "Once upon a time, there was a little robot who wanted to learn how to paint. Every day, it",
]
TOPK = 5
GEN_TOKENS = 10


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(2)
    path = os.path.abspath(os.path.expanduser(args.gguf))
    folder, name = os.path.dirname(path), os.path.basename(path)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    model.eval()

    prompts = []
    with torch.inference_mode():
        for text in PROMPTS:
            enc = tok(text, return_tensors="pt")
            ids = enc["input_ids"]
            logits = model(**enc).logits[0].float()
            lse = torch.logsumexp(logits, dim=-1)
            top = torch.topk(logits, TOPK, dim=-1)
            gen = model.generate(**enc, max_new_tokens=GEN_TOKENS, do_sample=False,
                                 pad_token_id=tok.eos_token_id)[0, ids.shape[1]:]
            prompts.append({
                "text": text,
                "token_ids": ids[0].tolist(),
                "positions": [
                    {"top5_ids": top.indices[i].tolist(),
                     "top5_logits": [round(float(x), 5) for x in top.values[i]],
                     "logsumexp": round(float(lse[i]), 5)}
                    for i in range(ids.shape[1])
                ],
                "greedy_continuation_ids": gen.tolist(),
                "greedy_continuation_text": tok.decode(gen, skip_special_tokens=False),
            })

    out = {
        "gguf_file": name,
        "gguf_sha256": sha256(path),
        "dtype": "float32",
        "produced_by": "Scripts/golden/make_model_reference.py (transformers GGUF loader, weights dequantized to float32)",
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "gguf": version("gguf"),
                     "tokenizers": version("tokenizers"), "numpy": np.__version__},
        "model_type": model.config.model_type,
        "prompts": prompts,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {args.out}")
    for p in prompts:
        print(repr(p["text"]), "->", repr(p["greedy_continuation_text"]))


if __name__ == "__main__":
    main()
