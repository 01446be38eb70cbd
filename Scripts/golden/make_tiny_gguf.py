#!/usr/bin/env python3
"""Converts the tiny-llama fixture to a GGUF file with mixed F32/F16/Q8_0 tensors.

Reads   Tests/ModelsTests/Fixtures/tiny-llama/{config.json,model.safetensors,tokenizer.json,reference.json}
Writes  Tests/ModelsTests/Fixtures/tiny-llama.gguf
        Tests/ModelsTests/Fixtures/tiny-llama-gguf-reference.json

The GGUF is what llama.cpp's convert_hf_to_gguf.py writes for a Llama model, in miniature:
- `general.architecture = llama` and the `llama.*` hyperparameters;
- attn_q / attn_k rows permuted per head for adjacent-pair RoPE (`LlamaModel.permute`), so a loader
  must undo the permutation;
- the Llama-3 RoPE scaling as a float32 `rope_freqs.weight` of per-frequency divisors
  (`LlamaModel.generate_extra_tensors`);
- a `gpt2` tokenizer (`tokenizer.ggml.tokens`, `token_type`, `merges`, `bos/eos_token_id`,
  `add_bos_token`) with `tokenizer.ggml.pre = llama-bpe`.

Tensor types are mixed on purpose (see TYPES): norms and rope_freqs F32, layer 0's attn_q F32 (the
exact path), the rest F16 or Q8_0, so that every dequantisation path a loader needs is exercised.

The reference logits are NOT those of tiny-llama/reference.json: they are computed with PyTorch
(transformers, eager attention, float32) after replacing every weight of the tiny-llama checkpoint by
exactly the values stored in the GGUF (F16 widened, Q8_0 dequantised with gguf.quants.dequantize,
q/k rows un-permuted), for the same input ids. A loader that reads this GGUF correctly therefore
matches them to float32 rounding (max |delta| <= 1e-4 * max(1, |ref|)), as for the safetensors
fixtures. The format is that of reference.json (see README.md).

Deterministic: rerunning writes identical bytes. Versions: see README.md (gguf==0.19.0).

  /work/venv/bin/python Scripts/golden/make_tiny_gguf.py
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch
import transformers
import gguf
from gguf import GGMLQuantizationType as T
from safetensors.numpy import load_file
from transformers import LlamaForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_tiny_models as tiny  # noqa: E402  (reference(), write_json(), GENERATOR, constants)

FIXTURES = tiny.MODELS_FIXTURES
SOURCE = FIXTURES / "tiny-llama"
OUT_GGUF = FIXTURES / "tiny-llama.gguf"
OUT_REFERENCE = FIXTURES / "tiny-llama-gguf-reference.json"
MAX_BYTES = 300 * 1024

# GGUF type of each tensor (by GGUF name); anything not listed is F32.
TYPES = {
    "token_embd.weight": T.Q8_0,
    "output.weight": T.F16,
    "blk.0.attn_q.weight": T.F32,
    "blk.0.attn_k.weight": T.F16,
    "blk.0.attn_v.weight": T.Q8_0,
    "blk.0.attn_output.weight": T.F16,
    "blk.0.ffn_gate.weight": T.Q8_0,
    "blk.0.ffn_up.weight": T.F16,
    "blk.0.ffn_down.weight": T.Q8_0,
    "blk.1.attn_q.weight": T.Q8_0,
    "blk.1.attn_k.weight": T.Q8_0,
    "blk.1.attn_v.weight": T.F16,
    "blk.1.attn_output.weight": T.Q8_0,
    "blk.1.ffn_gate.weight": T.F16,
    "blk.1.ffn_up.weight": T.Q8_0,
    "blk.1.ffn_down.weight": T.F16,
}

# Hugging Face name -> GGUF name (llama.cpp's tensor map for Llama).
BLOCK_PARTS = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def gguf_name(hf_name):
    if hf_name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf_name == "model.norm.weight":
        return "output_norm.weight"
    if hf_name == "lm_head.weight":
        return "output.weight"
    parts = hf_name.split(".")  # model.layers.<i>.<part...>.weight
    assert parts[:2] == ["model", "layers"] and parts[-1] == "weight", hf_name
    return f"blk.{parts[2]}.{BLOCK_PARTS['.'.join(parts[3:-1])]}.weight"


def permute(w, n_head):
    """llama.cpp's LlamaModel.permute: rows of each head reordered for adjacent-pair RoPE."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute(w, n_head):
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def rope_factors(config, head_dim):
    """llama.cpp's Llama-3 rope_freqs: per-frequency divisors of the standard inverse frequencies."""
    p = config["rope_parameters"]
    base, factor = p["rope_theta"], p["factor"]
    low, high, old_len = p["low_freq_factor"], p["high_freq_factor"], p["original_max_position_embeddings"]
    freqs = 1.0 / (base ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    low_wavelen, high_wavelen = old_len / low, old_len / high
    factors = []
    for freq in freqs:
        wavelen = 2 * np.pi / freq
        if wavelen < high_wavelen:
            factors.append(1.0)
        elif wavelen > low_wavelen:
            factors.append(factor)
        else:
            smooth = (old_len / wavelen - low) / (high - low)
            factors.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.array(factors, dtype=np.float32)


def stored(array, qtype):
    """(what to pass to GGUFWriter.add_tensor, the float32 values a reader must get back)."""
    if qtype == T.F32:
        data = array.astype(np.float32)
        return data, data
    if qtype == T.F16:
        data = array.astype(np.float16)
        return data, data.astype(np.float32)
    data = gguf.quants.quantize(array.astype(np.float32), qtype)
    return data, gguf.quants.dequantize(data, qtype).astype(np.float32).reshape(array.shape)


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    config = json.loads((SOURCE / "config.json").read_text())
    tokenizer = json.loads((SOURCE / "tokenizer.json").read_text())
    source_reference = json.loads((SOURCE / "reference.json").read_text())
    weights = load_file(str(SOURCE / "model.safetensors"))
    n_head, n_head_kv = config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = config["head_dim"]

    writer = gguf.GGUFWriter(str(OUT_GGUF), "llama")
    writer.add_name("tiny-llama")
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_rope_freq_base(config["rope_parameters"]["rope_theta"])
    writer.add_rope_dimension_count(head_dim)
    writer.add_vocab_size(config["vocab_size"])
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)

    # Tokenizer: byte-level BPE (`gpt2`), tokens in id order, added special tokens as CONTROL.
    vocab = dict(tokenizer["model"]["vocab"])
    special = set()
    for added in tokenizer["added_tokens"]:
        vocab[added["content"]] = added["id"]
        if added["special"]:
            special.add(added["id"])
    tokens = [None] * config["vocab_size"]
    for token, token_id in vocab.items():
        tokens[token_id] = token
    if any(t is None for t in tokens):
        tiny.fail("tokenizer.json does not cover every id")
    merges = [m if isinstance(m, str) else " ".join(m) for m in tokenizer["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("llama-bpe")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL
                            for i in range(len(tokens))])
    writer.add_token_merges(merges)
    writer.add_bos_token_id(config["bos_token_id"])
    writer.add_eos_token_id(config["eos_token_id"])
    writer.add_add_bos_token(True)

    # Tensors, in llama.cpp's order: embedding, rope_freqs, blocks, output norm, head.
    def order(hf_name):
        name = gguf_name(hf_name)
        if name.startswith("blk."):
            return (1, int(name.split(".")[1]), hf_name)
        return ({"token_embd.weight": 0, "output_norm.weight": 2, "output.weight": 3}[name], 0, hf_name)

    effective = {}  # Hugging Face name -> float32 values the GGUF holds (HF row order)
    writer.add_tensor("rope_freqs.weight", rope_factors(config, head_dim))
    for hf_name in sorted(weights, key=order):
        name = gguf_name(hf_name)
        array = weights[hf_name]
        heads = n_head if name.endswith("attn_q.weight") else n_head_kv if name.endswith("attn_k.weight") else None
        if heads is not None:
            array = permute(array, heads)
        data, values = stored(array, TYPES.get(name, T.F32))
        if heads is not None:
            values = unpermute(values, heads)
        effective[hf_name] = values
        writer.add_tensor(name, data, raw_dtype=TYPES.get(name, T.F32) if data.dtype == np.uint8 else None)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    size = OUT_GGUF.stat().st_size
    if size > MAX_BYTES:
        tiny.fail(f"{OUT_GGUF.name} is {size} bytes, more than {MAX_BYTES}")

    # Reference: the tiny-llama checkpoint with every weight replaced by the GGUF's values.
    model = LlamaForCausalLM.from_pretrained(SOURCE, attn_implementation="eager", dtype=torch.float32)
    model.eval()
    state = model.state_dict()
    with torch.no_grad():
        for hf_name, values in effective.items():
            if tuple(state[hf_name].shape) != values.shape:
                tiny.fail(f"{hf_name}: shape {values.shape} differs from {tuple(state[hf_name].shape)}")
            state[hf_name].copy_(torch.from_numpy(values))
    sequences = [{"text": s["text"], "input_ids": s["input_ids"]} for s in source_reference["sequences"]]
    tiny.write_json(OUT_REFERENCE, {
        "format": "ibke-reference-logits",
        "version": 1,
        "model": "tiny-llama.gguf",
        "architecture": "LlamaForCausalLM",
        "dtype": "float32 (weights as stored in the GGUF: F32, F16, Q8_0 dequantised)",
        "attn_implementation": "eager",
        "logit_decimals": tiny.LOGIT_DECIMALS,
        "greedy_steps": tiny.GREEDY_STEPS,
        "seed": source_reference["seed"],
        "generator": {**tiny.GENERATOR, "script": "Scripts/golden/make_tiny_gguf.py", "gguf": "0.19.0"},
        "sequences": tiny.reference("tiny-llama.gguf", model, sequences),
    }, compact=True)
    print(f"{OUT_GGUF.relative_to(tiny.ROOT)}: {size / 1024:.1f} KiB")
    print(f"{OUT_REFERENCE.relative_to(tiny.ROOT)}: {OUT_REFERENCE.stat().st_size / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
