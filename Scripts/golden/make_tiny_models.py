#!/usr/bin/env python3
"""Generates IBKE's tiny random-weight reference models and safetensors format fixtures.

Writes (relative to the repository root):

  Tests/ModelsTests/Fixtures/tiny-llama/   LlamaForCausalLM, GQA, Llama-3 rope scaling, untied head
  Tests/ModelsTests/Fixtures/tiny-qwen2/   Qwen2ForCausalLM, q/k/v biases, tied head
  Tests/ModelsTests/Fixtures/tiny-gpt2/    GPT2LMHeadModel (Conv1D weights stored [in, out])
  Tests/ModelsTests/Fixtures/tiny-gemma3/  Gemma3ForCausalLM (text): q/k norms, output norms, GeGLU,
                                           sliding window of 4 on blocks 0–1, global block 2
      config.json, generation_config.json, model.safetensors   (save_pretrained, float32)
      tokenizer.json                                          (byte-level BPE trained here)
      reference.json                                          (PyTorch float32 logits + greedy ids)

  Tests/ModelFormatsTests/Fixtures/sharded/  a micro Llama saved in 2 shards + index, expected.json
  Tests/ModelFormatsTests/Fixtures/dtypes/   f16.safetensors, bf16.safetensors, expected.json

Everything is deterministic (fixed seeds, single thread); rerunning it must reproduce the same bytes.
`--only NAME` regenerates one model folder (tiny-gemma3 was added later, with newer versions).
Versions and the exact command are in Scripts/golden/README.md. Run from anywhere:

  /work/venv/bin/python Scripts/golden/make_tiny_models.py
"""

import json
import math
import os
import shutil
import sys
from pathlib import Path

import numpy
import safetensors
import tokenizers
import torch
import transformers
from safetensors.torch import save_file
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

ROOT = Path(__file__).resolve().parents[2]
MODELS_FIXTURES = ROOT / "Tests" / "ModelsTests" / "Fixtures"
FORMATS_FIXTURES = ROOT / "Tests" / "ModelFormatsTests" / "Fixtures"

VOCAB_SIZE = 300
GREEDY_STEPS = 8
LOGIT_DECIMALS = 6
# A greedy step whose top-2 logits are closer than this would make the golden ids fragile
# (a float32 reimplementation may legitimately flip the argmax), so the generator refuses it.
MIN_GREEDY_MARGIN = 1e-2

GENERATOR = {
    "script": "Scripts/golden/make_tiny_models.py",
    "transformers": transformers.__version__,
    "torch": torch.__version__,
    "tokenizers": tokenizers.__version__,
    "safetensors": safetensors.__version__,
    "numpy": numpy.__version__,
}

# Training text for the tiny tokenizers: a few sentences, enough distinct pairs to fill the
# merges up to VOCAB_SIZE.
CORPUS = [
    "The capital of France is Paris.",
    "The capital of Italy is Rome, and the capital of Spain is Madrid.",
    "Hello, world! Hello again, world.",
    "Knowledge editing changes what a language model believes about one fact.",
    "The Eiffel Tower is in Paris; the Colosseum is in Rome.",
    "Numbers like 12345 and 2024 are split into digits.",
    "She said: \"It's the model's answer, isn't it?\"",
    "Tiny models with random weights are only useful for testing.",
    "Swift on Linux loads safetensors and GGUF checkpoints.",
    "A quick brown fox jumps over the lazy dog.",
]

# The texts whose token ids are used for the reference logits (each at most 12 tokens).
REFERENCE_TEXTS = [
    "The capital of France is",
    "Hello, world!",
]

# Pre-tokenizer split patterns copied from the published tokenizer.json files.
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def fail(message):
    sys.exit(f"make_tiny_models.py: {message}")


# MARK: Tokenizers


def train_tokenizer(special_tokens, split_pattern, bos_token=None):
    """A byte-level BPE of exactly VOCAB_SIZE tokens; special tokens get ids 0, 1, …

    With `split_pattern` the pre-tokenizer is Llama-3/Qwen2 style (regex split, then ByteLevel
    without its own regex); without it, GPT-2 style (ByteLevel with its built-in regex).
    """
    tok = Tokenizer(models.BPE())
    if split_pattern is None:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(split_pattern), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    if bos_token is None:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    else:
        bos_id = tok.token_to_id(bos_token)
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos_token}:0 $A:0",
            pair=f"{bos_token}:0 $A:0 {bos_token}:1 $B:1",
            special_tokens=[(bos_token, bos_id)],
        )
    if tok.get_vocab_size() != VOCAB_SIZE:
        fail(f"tokenizer has {tok.get_vocab_size()} tokens, expected {VOCAB_SIZE}; "
             "add sentences to CORPUS")
    return tok


# MARK: Weights


@torch.no_grad()
def randomize(model, seed):
    """Replaces HF's init (std 0.02, norms at 1, biases at 0) with weights that make bugs visible.

    Norm scales are 1 + N(0, 0.1²) and biases N(0, 0.1²), so a forgotten norm weight or bias
    changes the logits; matrices are N(0, 1/64) and embeddings N(0, 0.25), so logits spread over
    a few units and greedy choices are well separated.
    """
    gen = torch.Generator().manual_seed(seed)
    for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        if p.dim() == 1 and ("norm" in name or ".ln_" in name or name.endswith("ln_f.weight")):
            if name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
        elif p.dim() == 1:
            p.copy_(0.1 * torch.randn(p.shape, generator=gen))
        elif "embed" in name or ".wte." in name or ".wpe." in name:
            p.copy_(0.5 * torch.randn(p.shape, generator=gen))
        else:
            p.copy_(0.125 * torch.randn(p.shape, generator=gen))


# MARK: Reference outputs


def rounded(values):
    return [round(float(v), LOGIT_DECIMALS) for v in values]


@torch.no_grad()
def reference(name, model, sequences):
    """Full logits at every position and GREEDY_STEPS greedy ids (no KV cache, argmax)."""
    out = []
    for seq in sequences:
        ids = torch.tensor([seq["input_ids"]], dtype=torch.long)
        logits = model(input_ids=ids).logits[0]
        greedy = []
        current = ids
        min_margin = math.inf
        for _ in range(GREEDY_STEPS):
            last = model(input_ids=current).logits[0, -1]
            top2 = torch.topk(last, 2)
            margin = float(top2.values[0] - top2.values[1])
            min_margin = min(min_margin, margin)
            nxt = int(top2.indices[0])
            greedy.append(nxt)
            current = torch.cat([current, torch.tensor([[nxt]])], dim=1)
        if min_margin < MIN_GREEDY_MARGIN:
            fail(f"{name}: greedy margin {min_margin:.6f} below {MIN_GREEDY_MARGIN} for "
                 f"{seq['input_ids']}; change the seed")
        out.append({
            "text": seq["text"],
            "input_ids": seq["input_ids"],
            "logits": [rounded(row) for row in logits],
            "greedy_ids": greedy,
            "greedy_min_margin": round(min_margin, 6),
        })
    return out


def write_json(path, obj, compact=False):
    with open(path, "w", encoding="utf-8") as f:
        if compact:
            json.dump(obj, f, separators=(",", ":"), ensure_ascii=False)
        else:
            json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


def build_model(name, model_class, config, seed, tokenizer, extra_sequences):
    out_dir = MODELS_FIXTURES / name
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)

    torch.manual_seed(seed)
    model = model_class(config)
    randomize(model, seed)
    model.eval()
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save(str(out_dir / "tokenizer.json"))

    # Reference outputs come from the saved checkpoint, so they describe exactly the bytes that
    # were written (tied heads included).
    reloaded = model_class.from_pretrained(out_dir, attn_implementation="eager",
                                           dtype=torch.float32)
    reloaded.eval()
    for (n1, p1), (n2, p2) in zip(model.state_dict().items(), reloaded.state_dict().items()):
        if n1 != n2 or not torch.equal(p1, p2):
            fail(f"{name}: reloaded tensor {n2} differs from the generated {n1}")

    sequences = []
    for text in REFERENCE_TEXTS:
        ids = tokenizer.encode(text).ids
        if len(ids) > 12:
            fail(f"{name}: '{text}' is {len(ids)} tokens, more than 12")
        sequences.append({"text": text, "input_ids": ids})
    sequences.extend(extra_sequences)

    write_json(out_dir / "reference.json", {
        "format": "ibke-reference-logits",
        "version": 1,
        "model": name,
        "architecture": model_class.__name__,
        "dtype": "float32",
        "attn_implementation": "eager",
        "logit_decimals": LOGIT_DECIMALS,
        "greedy_steps": GREEDY_STEPS,
        "seed": seed,
        "generator": GENERATOR,
        "sequences": reference(name, reloaded, sequences),
    }, compact=True)
    return out_dir


# MARK: Models


def make_tiny_llama():
    tok = train_tokenizer(["<|begin_of_text|>", "<|end_of_text|>"], LLAMA3_SPLIT,
                          bos_token="<|begin_of_text|>")
    config = LlamaConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        hidden_act="silu",
        max_position_embeddings=128,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        # head_dim 16 gives wavelengths 6.3, 19.9, 62.8, … so all three llama3 bands are used:
        # < 8 unchanged, 8…32 smoothed, > 32 divided by the factor.
        rope_scaling={
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 32,
        },
        tie_word_embeddings=False,
        bos_token_id=tok.token_to_id("<|begin_of_text|>"),
        eos_token_id=tok.token_to_id("<|end_of_text|>"),
        attn_implementation="eager",
    )
    return build_model("tiny-llama", LlamaForCausalLM, config, seed=1237, tokenizer=tok,
                       extra_sequences=[{"text": None, "input_ids": [17, 250, 3, 299, 42, 128, 7]}])


def make_tiny_qwen2():
    tok = train_tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>"], QWEN2_SPLIT)
    config = Qwen2Config(
        vocab_size=VOCAB_SIZE,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        hidden_act="silu",
        max_position_embeddings=128,
        rms_norm_eps=1e-6,
        rope_theta=1000000.0,
        tie_word_embeddings=True,
        use_sliding_window=False,
        bos_token_id=tok.token_to_id("<|endoftext|>"),
        eos_token_id=tok.token_to_id("<|im_end|>"),
        attn_implementation="eager",
    )
    return build_model("tiny-qwen2", Qwen2ForCausalLM, config, seed=2345, tokenizer=tok,
                       extra_sequences=[{"text": None, "input_ids": [5]}])


def make_tiny_gpt2():
    tok = train_tokenizer(["<|endoftext|>"], None)
    eot = tok.token_to_id("<|endoftext|>")
    config = GPT2Config(
        vocab_size=VOCAB_SIZE,
        n_positions=64,
        n_embd=64,
        n_layer=2,
        n_head=4,
        n_inner=None,  # 4 · n_embd = 256, as in the released GPT-2 configs
        activation_function="gelu_new",
        layer_norm_epsilon=1e-5,
        tie_word_embeddings=True,
        bos_token_id=eot,
        eos_token_id=eot,
        attn_implementation="eager",
    )
    return build_model("tiny-gpt2", GPT2LMHeadModel, config, seed=3457, tokenizer=tok,
                       extra_sequences=[{"text": None,
                                         "input_ids": [eot, 64, 200, 31, 299, 1, 100, 150, 9]}])


def make_tiny_gemma3():
    tok = train_tokenizer(["<pad>", "<eos>", "<bos>"], None, bos_token="<bos>")
    config = Gemma3TextConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        query_pre_attn_scalar=16,
        hidden_activation="gelu_pytorch_tanh",
        max_position_embeddings=128,
        rms_norm_eps=1e-6,
        # A window of 4 that the 12-token references and their greedy steps outgrow.
        sliding_window=4,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"],
        tie_word_embeddings=True,
        pad_token_id=tok.token_to_id("<pad>"),
        bos_token_id=tok.token_to_id("<bos>"),
        eos_token_id=tok.token_to_id("<eos>"),
        attn_implementation="eager",
    )
    return build_model("tiny-gemma3", Gemma3ForCausalLM, config, seed=4567, tokenizer=tok,
                       extra_sequences=[{"text": None, "input_ids": [17, 250, 3, 299, 42, 128, 7, 64, 200, 31, 1, 100]}])


# MARK: Format fixtures


def stored_bits16(t):
    """The 16-bit patterns stored for an F16/BF16 tensor, as unsigned ints."""
    return [int(b) & 0xFFFF for b in t.reshape(-1).contiguous().view(torch.int16).tolist()]


def float_bits(t):
    """float32 bit patterns (uint32) of an F16/BF16 tensor converted exactly to float32.

    Computed from the stored bits, not with torch's `.to(float32)`: torch's CPU kernel turns
    the F16 NaN 0x7E00 into 0x7FFFFFFF, while the IEEE conversion (numpy, and HalfPrecision)
    keeps the payload (0x7FC00000).
    """
    bits16 = numpy.array(stored_bits16(t), dtype=numpy.uint16)
    if t.dtype == torch.float16:
        return [int(b) for b in bits16.view(numpy.float16).astype(numpy.float32).view(numpy.uint32)]
    if t.dtype == torch.bfloat16:
        return [int(b) << 16 for b in bits16]
    fail(f"float_bits: unexpected dtype {t.dtype}")


def make_sharded():
    """A micro Llama saved with max_shard_size so that it splits into exactly two shards."""
    out_dir = FORMATS_FIXTURES / "sharded"
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    config = LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
        tie_word_embeddings=False, bos_token_id=0, eos_token_id=1,
    )
    torch.manual_seed(4567)
    model = LlamaForCausalLM(config)
    randomize(model, 4567)
    model.save_pretrained(out_dir, safe_serialization=True, max_shard_size="16KB")
    index = json.loads((out_dir / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    if len(shards) != 2:
        fail(f"sharded fixture has {len(shards)} shards, expected 2; adjust max_shard_size")
    (out_dir / "generation_config.json").unlink(missing_ok=True)

    expected = {}
    state = model.state_dict()
    for name in sorted(index["weight_map"]):
        t = state[name].detach()
        flat = t.reshape(-1)
        expected[name] = {
            "shard": index["weight_map"][name],
            "dtype": "F32",
            "shape": list(t.shape),
            "first": [float(v) for v in flat[:4].tolist()],
            "sum": math.fsum(float(v) for v in flat.tolist()),
        }
    write_json(out_dir / "expected.json", {"generator": GENERATOR, "tensors": expected})


def make_dtypes():
    """F16 and BF16 files with edge values; expected.json holds the exact float32 bit patterns."""
    out_dir = FORMATS_FIXTURES / "dtypes"
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    gen = torch.Generator().manual_seed(5678)
    inf, nan = float("inf"), float("nan")
    f16 = {
        # 1, -2, ½, largest finite, smallest normal, smallest subnormal
        "edge": torch.tensor([[1.0, -2.0, 0.5], [65504.0, 2.0 ** -14, 2.0 ** -24]],
                             dtype=torch.float16),
        "specials": torch.tensor([inf, -inf, -0.0, nan], dtype=torch.float16),
        "random": torch.randn((4, 8), generator=gen).to(torch.float16),
    }
    bf16 = {
        # 1, -2, π rounded, a large value, smallest normal, smallest subnormal
        "edge": torch.tensor([[1.0, -2.0, 3.140625], [3.0e38, 2.0 ** -126, 2.0 ** -133]],
                             dtype=torch.bfloat16),
        "specials": torch.tensor([inf, -inf, -0.0, nan], dtype=torch.bfloat16),
        "random": torch.randn((3, 5), generator=gen).to(torch.bfloat16),
        # A dtype the reader lists but refuses to convert (HF checkpoints sometimes carry these).
        "position_ids": torch.arange(4, dtype=torch.int64).reshape(1, 4),
    }
    save_file(f16, str(out_dir / "f16.safetensors"), metadata={"format": "pt", "dtype": "f16"})
    save_file(bf16, str(out_dir / "bf16.safetensors"), metadata={"format": "pt", "dtype": "bf16"})

    def describe(tensors):
        return {
            name: {
                "dtype": {torch.float16: "F16", torch.bfloat16: "BF16",
                          torch.int64: "I64"}[t.dtype],
                "shape": list(t.shape),
                **({"bits16": stored_bits16(t), "float32_bits": float_bits(t)}
                   if t.is_floating_point() else {}),
            }
            for name, t in tensors.items()
        }

    write_json(out_dir / "expected.json", {
        "generator": GENERATOR,
        "files": {"f16.safetensors": describe(f16), "bf16.safetensors": describe(bf16)},
    })


def folder_size(path):
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    makers = {"tiny-llama": make_tiny_llama, "tiny-qwen2": make_tiny_qwen2, "tiny-gpt2": make_tiny_gpt2,
              "tiny-gemma3": make_tiny_gemma3}
    if len(sys.argv) == 3 and sys.argv[1] == "--only":
        print(f"{makers[sys.argv[2]]().relative_to(ROOT)}")
        return
    folders = [make() for make in makers.values()]
    make_sharded()
    make_dtypes()
    folders += [FORMATS_FIXTURES / "sharded", FORMATS_FIXTURES / "dtypes"]
    total = 0
    for folder in folders:
        size = folder_size(folder)
        total += size
        print(f"{folder.relative_to(ROOT)}: {size / 1024:.1f} KiB")
    print(f"total: {total / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
