#!/usr/bin/env python3
"""Generate the tokenizer parity fixtures in Tests/TokenizersTests/Fixtures/.

Reference: Hugging Face `tokenizers`/`transformers` (versions are written into manifest.json).
Run from the repository root with the project's Python environment:

    /work/venv/bin/python Scripts/golden/make_tokenizer_fixtures.py \
        --gguf ~/.cache/ibke/models/SmolLM2-135M-Instruct.Q4_1.gguf

What it writes (all plain JSON, no binary files):

- strings.json              the shared test strings (tokenizer_test_strings.py)
- smollm2-gguf-metadata.json the GGUF tokenizer.* keys of SmolLM2-135M-Instruct, typed so the Swift
                             test can rebuild `[String: GGUFValue]` (integer arrays run-length coded)
- smollm2-ids.json          reference ids per string. `ids`: transformers' GGUF tokenizer with its
                             pre-tokenizer set to the one SmolLM2 was trained with and llama.cpp's
                             `smollm` pre-type uses (Digits(individual) then ByteLevel/GPT-2 regex).
                             `hf_gguf_ids`: transformers' GGUF tokenizer exactly as it builds it
                             (it does not know `smollm` and uses the plain GPT-2 regex), where that
                             differs.
- splits.json               pre-tokenizer piece lengths (in Unicode scalars) for the gpt2, llama3,
                             qwen2 and smollm regexes, from tokenizers' own Split/Digits
- bpe-digits.tokenizer.json, bpe-llama3.tokenizer.json: small byte-level BPEs trained here, with
                             added tokens carrying lstrip/rstrip/single_word/normalized attributes
- spm-*.json                a small SentencePiece BPE (byte_fallback) trained here: its GGUF-style
                             metadata (tokens/scores/token_type as llama.cpp's converter writes
                             them), the tokenizer.json transformers converts it to, and a legacy
                             (Prepend+Replace normalizer) variant of that tokenizer.json
- *-ids.json                reference ids and decodes for each of those

Every `*-ids.json` has `ids`: the encoding without special tokens, `prefix`/`suffix` (what
add_special_tokens=True adds around it), and decodes (see `encode_cases`).

With `--fuzz N [--fuzz-out DIR]` it instead writes N random strings and the same references (plus
SmolLM2's full-size tokenizer.json) to DIR, for `IBKE_TOKENIZER_FUZZ_DIR=DIR swift test --filter
TokenizerFuzzTests`; nothing there is committed.
"""

import argparse
import json
import os
import random
import shutil
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tokenizer_test_strings import ARABIC, CJK, EMOJI, OTHER, WORDS, ACCENTED, test_strings  # noqa: E402

import gguf  # noqa: E402
import sentencepiece as spm  # noqa: E402
import tokenizers  # noqa: E402
import transformers  # noqa: E402
from sentencepiece import sentencepiece_model_pb2 as sp_pb  # noqa: E402
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, normalizers, trainers  # noqa: E402
from transformers import AutoTokenizer, LlamaTokenizer  # noqa: E402

GPT2_REGEX = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
LLAMA3_REGEX = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"""
                r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")
QWEN2_REGEX = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
               r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")


def dump(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, separators=(",", ":"))
    print(f"  wrote {os.path.basename(path)}: {os.path.getsize(path):,} bytes")


def rle(values):
    runs = []
    for v in values:
        if runs and runs[-1][0] == v:
            runs[-1][1] += 1
        else:
            runs.append([v, 1])
    return runs


def gguf_metadata_json(reader):
    """tokenizer.* keys of a GGUF as {key: {"type": T, "value": V}} (arrays: element type + values)."""
    out = {}
    names = {t: t.name.lower() for t in gguf.GGUFValueType}
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer."):
            continue
        vtype = field.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            etype = field.types[1]
            values = field.contents()
            entry = {"type": "array", "element": names[etype]}
            if etype in (gguf.GGUFValueType.STRING, gguf.GGUFValueType.FLOAT32, gguf.GGUFValueType.FLOAT64):
                entry["values"] = values
            else:
                entry["runs"] = rle([int(v) for v in values])
            out[key] = entry
        else:
            out[key] = {"type": names[vtype], "value": field.contents()}
    return out


def encode_cases(tok_encode, tok_decode, strings):
    """Reference ids and decodes for every string, in the compact form the Swift tests read.

    `ids` is the encoding without special tokens; the ones the reference adds by default are the
    same for every string (checked here), so they are stored once as `prefix` and `suffix`.
    `decoded` / `decoded_skip` (decode of `ids` with skip_special_tokens False / True) are stored
    only where they differ from the text. `with_special` holds, for the first strings, the decode
    of `prefix + ids + suffix` with skip_special_tokens False and True.
    """
    full_a, plain_a = tok_encode("a", True), tok_encode("a", False)
    at = next(i for i in range(len(full_a) - len(plain_a) + 1) if full_a[i:i + len(plain_a)] == plain_a)
    prefix, suffix = full_a[:at], full_a[at + len(plain_a):]
    cases, with_special = [], []
    for index, s in enumerate(strings):
        ids = tok_encode(s, False)
        full = tok_encode(s, True)
        assert full == prefix + ids + suffix, (s, full, ids)
        case = {"ids": ids}
        d = tok_decode(ids, False)
        if d != s:
            case["decoded"] = d
        ds = tok_decode(ids, True)
        if ds != s:
            case["decoded_skip"] = ds
        cases.append(case)
        if index < 40:
            with_special.append([index, tok_decode(full, False), tok_decode(full, True)])
    return {"prefix": prefix, "suffix": suffix, "with_special": with_special, "cases": cases}


def hf_fns(tok):
    return (lambda s, special: tok.encode(s, add_special_tokens=special),
            lambda ids, skip: tok.decode(ids, skip_special_tokens=skip))


def training_text(rng, n_lines=4000):
    lines = []
    for _ in range(n_lines):
        words = []
        for _ in range(rng.randint(3, 16)):
            r = rng.random()
            if r < 0.78:
                w = rng.choice(WORDS)
                if rng.random() < 0.15:
                    w = w.capitalize()
            elif r < 0.84:
                w = rng.choice(ACCENTED)
            elif r < 0.88:
                w = rng.choice(CJK)
            elif r < 0.90:
                w = rng.choice(ARABIC)
            elif r < 0.92:
                w = rng.choice(OTHER)
            elif r < 0.94:
                w = rng.choice(EMOJI)
            else:
                w = str(rng.randint(0, 99999))
            words.append(w)
        line = " ".join(words)
        if rng.random() < 0.3:
            line += rng.choice([".", "!", "?", ",", ":"])
        if rng.random() < 0.1:
            line = "    " + line
        lines.append(line)
    return lines


def fuzz_strings(n, seed=99):
    """Random strings over a wide Unicode mix, for the optional large run (--fuzz)."""
    rng = random.Random(seed)
    blocks = [(0x20, 0x7E), (0xA0, 0x24F), (0x300, 0x36F), (0x370, 0x3FF), (0x400, 0x4FF),
              (0x590, 0x6FF), (0x900, 0x97F), (0xE00, 0xE7F), (0x1100, 0x11FF), (0x2000, 0x206F),
              (0x2070, 0x218F), (0x2190, 0x23FF), (0x3000, 0x30FF), (0x4E00, 0x4FFF), (0xAC00, 0xAD00),
              (0xFF00, 0xFFEF), (0x1F300, 0x1F6FF), (0x1F900, 0x1F9FF), (0x10000, 0x1007F)]
    from tokenizer_test_strings import random_string, SPACES
    out = []
    for i in range(n):
        if i % 2 == 0:
            out.append(random_string(rng))
            continue
        chars = []
        for _ in range(rng.randint(1, 40)):
            r = rng.random()
            if r < 0.5:
                lo, hi = rng.choice(blocks)
                cp = rng.randint(lo, hi)
                if 0xD800 <= cp <= 0xDFFF:
                    continue
                chars.append(chr(cp))
            elif r < 0.7:
                chars.append(rng.choice(SPACES + ["'", "'s", "'LL", "\r", "\u200d", "\ufeff"]))
            else:
                chars.append(rng.choice("abcXYZ0123456789 .,!?'-_"))
        out.append("".join(chars))
    return out


def make_fuzz(args, n):
    """Large uncommitted reference sets in --fuzz-out, read by the IBKE_TOKENIZER_FUZZ_DIR test."""
    out = args.fuzz_out
    os.makedirs(out, exist_ok=True)
    strings = fuzz_strings(n)
    dump(os.path.join(out, "strings.json"), strings)
    d, name = os.path.split(os.path.abspath(args.gguf))
    hf = AutoTokenizer.from_pretrained(d, gguf_file=name)
    hf.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    dump(os.path.join(out, "smollm2-ids.json"), encode_cases(*hf_fns(hf), strings))
    # The same tokenizer as a full-size tokenizer.json (what SmolLM2's own repository ships).
    hf.backend_tokenizer.save(os.path.join(out, "smollm2.tokenizer.json"))
    fixtures = args.out
    for name in ("bpe-digits", "bpe-llama3", "spm", "spm-legacy", "spm-split"):
        tok = Tokenizer.from_file(os.path.join(fixtures, f"{name}.tokenizer.json"))
        enc = lambda s, special, tok=tok: tok.encode(s, add_special_tokens=special).ids
        dec = lambda ids, skip, tok=tok: tok.decode(ids, skip_special_tokens=skip)
        dump(os.path.join(out, f"{name}-ids.json"), encode_cases(enc, dec, strings))
    make_splits(out, strings)


def make_smollm(args, out, strings):
    print("SmolLM2 (GGUF)")
    reader = gguf.GGUFReader(args.gguf)
    meta = gguf_metadata_json(reader)
    meta["_source"] = os.path.basename(args.gguf)
    dump(os.path.join(out, "smollm2-gguf-metadata.json"), meta)

    d, name = os.path.split(os.path.abspath(args.gguf))
    hf = AutoTokenizer.from_pretrained(d, gguf_file=name)
    enc_hf, dec = hf_fns(hf)
    raw_ids = [hf.encode(s, add_special_tokens=False) for s in strings]
    # The pre-tokenizer SmolLM2 was trained with (and llama.cpp's `smollm` pre-type).
    hf.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    enc, dec = hf_fns(hf)
    result = encode_cases(enc, dec, strings)
    differ = 0
    for case, raw in zip(result["cases"], raw_ids):
        if raw != case["ids"]:
            case["hf_gguf_ids"] = raw
            differ += 1
    print(f"  {differ} strings where transformers' GGUF tokenizer (GPT-2 regex) differs from smollm")
    info = {
        "bos_token_id": hf.bos_token_id, "eos_token_id": hf.eos_token_id,
        "vocab_size": len(hf), "chat_template": hf.chat_template,
    }
    result["info"] = info
    dump(os.path.join(out, "smollm2-ids.json"), result)


def make_splits(out, strings):
    print("pre-tokenizer splits")
    kinds = {
        "gpt2": pre_tokenizers.Split(Regex(GPT2_REGEX), behavior="isolated"),
        "llama3": pre_tokenizers.Split(Regex(LLAMA3_REGEX), behavior="isolated"),
        "qwen2": pre_tokenizers.Split(Regex(QWEN2_REGEX), behavior="isolated"),
        "smollm": pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.Split(Regex(GPT2_REGEX), behavior="isolated"),
        ]),
    }
    result = {}
    for kind, pre in kinds.items():
        lengths = []
        for s in strings:
            pieces = pre.pre_tokenize_str(s)
            ls = [end - start for _, (start, end) in pieces]
            assert sum(ls) == len(s), (kind, s)
            lengths.append(ls)
        result[kind] = lengths
    dump(os.path.join(out, "splits.json"), result)


def train_byte_level(lines, pre, vocab_size, special, ignore_merges=False):
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=special, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(lines, trainer=trainer)
    return tok


def make_byte_level(out, strings, lines):
    print("byte-level BPE (tokenizer.json)")
    # 1. SmolLM2/StarCoder style: Digits(individual) + ByteLevel(GPT-2 regex), added tokens with
    #    every attribute, and a TemplateProcessing post-processor that adds a BOS.
    tok = train_byte_level(
        lines,
        pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]),
        1200, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tok.add_special_tokens([
        AddedToken("<mask>", lstrip=True, special=True, normalized=False),
        AddedToken("[RSTRIP]", rstrip=True, special=True, normalized=False),
        AddedToken("<sw>", single_word=True, special=True, normalized=False),
    ])
    tok.add_tokens([
        AddedToken("<think>", special=False, normalized=False),
        AddedToken("</think>", special=False, normalized=False),
        AddedToken("hello world", special=False, normalized=True),
    ])
    tok.post_processor = processors.TemplateProcessing(
        single="<|im_start|> $A", pair="<|im_start|> $A $B", special_tokens=[("<|im_start|>", 1)])
    path = os.path.join(out, "bpe-digits.tokenizer.json")
    tok.save(path)
    print(f"  wrote {os.path.basename(path)}: {os.path.getsize(path):,} bytes")
    extra = ["a <mask> b", "a<mask>b", "x   <mask>   y", "[RSTRIP]   next", "a [RSTRIP]\n\nb",
             "<sw>", "a <sw> b", "a<sw>b", "<sw>x", "x <sw>", "<think>hmm</think>", "say hello world now",
             "hello  world", "<mask><mask>", " <mask>", "[RSTRIP]"]
    enc = lambda s, special: tok.encode(s, add_special_tokens=special).ids
    dec = lambda ids, skip: tok.decode(ids, skip_special_tokens=skip)
    result = encode_cases(enc, dec, strings + extra)
    result["extra_strings"] = extra
    dump(os.path.join(out, "bpe-digits-ids.json"), result)

    # 2. Llama 3 style: Split(regex) + ByteLevel(no regex), ignore_merges.
    tok = train_byte_level(
        lines,
        pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_REGEX), behavior="isolated"),
                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]),
        1200, ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"], ignore_merges=True)
    tok.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A $B",
        special_tokens=[("<|begin_of_text|>", 0)])
    path = os.path.join(out, "bpe-llama3.tokenizer.json")
    tok.save(path)
    print(f"  wrote {os.path.basename(path)}: {os.path.getsize(path):,} bytes")
    enc = lambda s, special: tok.encode(s, add_special_tokens=special).ids
    dec = lambda ids, skip: tok.decode(ids, skip_special_tokens=skip)
    dump(os.path.join(out, "bpe-llama3-ids.json"), encode_cases(enc, dec, strings))


def write_vocab_gguf(path, proto, add_bos=True, add_eos=False):
    """A vocab-only GGUF as llama.cpp's converter writes a SentencePiece `llama` vocabulary."""
    w = gguf.GGUFWriter(path, "llama")
    w.add_block_count(1)
    w.add_context_length(128)
    w.add_embedding_length(8)
    w.add_feed_forward_length(8)
    w.add_head_count(1)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    tokens, scores, types = spm_vocab(proto)
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(add_bos)
    w.add_add_eos_token(add_eos)
    w.add_tensor("token_embd.weight", np.zeros((len(tokens), 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def spm_vocab(proto):
    # sentencepiece piece types: NORMAL=1 UNKNOWN=2 CONTROL=3 USER_DEFINED=4 BYTE=6 UNUSED=5,
    # which are also llama.cpp's token types.
    tokens = [p.piece for p in proto.pieces]
    scores = [float(p.score) for p in proto.pieces]
    types = [int(p.type) for p in proto.pieces]
    return tokens, scores, types


def make_spm(out, strings, lines, tmp):
    print("SentencePiece BPE")
    text_path = os.path.join(tmp, "spm_train.txt")
    with open(text_path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    prefix = os.path.join(tmp, "tiny")
    spm.SentencePieceTrainer.train(
        input=text_path, model_prefix=prefix, vocab_size=1200, model_type="bpe",
        byte_fallback=True, character_coverage=0.9995, normalization_rule_name="identity",
        remove_extra_whitespaces=False, split_digits=True, allow_whitespace_only_pieces=True,
        user_defined_symbols=["<think>", "</think>"], unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        minloglevel=2)
    proto = sp_pb.ModelProto()
    with open(prefix + ".model", "rb") as f:
        proto.ParseFromString(f.read())
    sp = spm.SentencePieceProcessor(model_file=prefix + ".model")

    # GGUF path: metadata as the converter writes it; reference = transformers reading a vocab-only GGUF.
    gguf_path = os.path.join(tmp, "spm-vocab.gguf")
    write_vocab_gguf(gguf_path, proto)
    meta = gguf_metadata_json(gguf.GGUFReader(gguf_path))
    meta["_source"] = "spm-vocab.gguf"
    dump(os.path.join(out, "spm-gguf-metadata.json"), meta)
    hf_gguf = AutoTokenizer.from_pretrained(tmp, gguf_file="spm-vocab.gguf")
    enc, dec = hf_fns(hf_gguf)
    result = encode_cases(enc, dec, strings)
    inline = ("<s>", "</s>", "<unk>", "<think>", "</think>")
    native = [s for s, case in zip(strings, result["cases"])
              if sp.encode(s) != case["ids"] and not any(t in s for t in inline)]
    print(f"  GGUF path: {len(native)} strings without inline special tokens where sentencepiece"
          f" itself differs from transformers: {native[:5]!r}")
    dump(os.path.join(out, "spm-gguf-ids.json"), result)

    # tokenizer.json path: transformers' conversion of the .model (Metaspace, prepend_scheme=first).
    src = os.path.join(tmp, "spm_src")
    os.makedirs(src, exist_ok=True)
    shutil.copy(prefix + ".model", os.path.join(src, "tokenizer.model"))
    hf = LlamaTokenizer.from_pretrained(src)
    saved = os.path.join(tmp, "spm_hf")
    hf.save_pretrained(saved)
    shutil.copy(os.path.join(saved, "tokenizer.json"), os.path.join(out, "spm.tokenizer.json"))
    print(f"  wrote spm.tokenizer.json: {os.path.getsize(os.path.join(out, 'spm.tokenizer.json')):,} bytes")
    enc, dec = hf_fns(hf)
    dump(os.path.join(out, "spm-ids.json"), encode_cases(enc, dec, strings))

    # Metaspace with prepend_scheme "always" and split on (older Mistral-style files).
    tok = Tokenizer.from_file(os.path.join(saved, "tokenizer.json"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    tok.decoder = decoders.Sequence([
        decoders.ByteFallback(), decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)])
    path = os.path.join(out, "spm-split.tokenizer.json")
    tok.save(path)
    print(f"  wrote {os.path.basename(path)}: {os.path.getsize(path):,} bytes")
    enc = lambda s, special: tok.encode(s, add_special_tokens=special).ids
    dec = lambda ids, skip: tok.decode(ids, skip_special_tokens=skip)
    dump(os.path.join(out, "spm-split-ids.json"), encode_cases(enc, dec, strings))

    # Legacy Llama 2 form: the prefix space comes from a normalizer, BOS from the post-processor.
    tok = Tokenizer.from_file(os.path.join(saved, "tokenizer.json"))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    tok.pre_tokenizer = None
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    path = os.path.join(out, "spm-legacy.tokenizer.json")
    tok.save(path)
    print(f"  wrote {os.path.basename(path)}: {os.path.getsize(path):,} bytes")
    enc = lambda s, special: tok.encode(s, add_special_tokens=special).ids
    dec = lambda ids, skip: tok.decode(ids, skip_special_tokens=skip)
    dump(os.path.join(out, "spm-legacy-ids.json"), encode_cases(enc, dec, strings))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", default=os.path.expanduser("~/.cache/ibke/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--out", default="Tests/TokenizersTests/Fixtures")
    ap.add_argument("--fuzz", type=int, default=0,
                    help="instead, write this many random strings and their reference ids to --fuzz-out")
    ap.add_argument("--fuzz-out", default="/tmp/ibke-tokenizer-fuzz")
    args = ap.parse_args()
    if args.fuzz:
        make_fuzz(args, args.fuzz)
        return
    os.makedirs(args.out, exist_ok=True)
    strings = test_strings()
    dump(os.path.join(args.out, "strings.json"), strings)
    lines = training_text(random.Random(7))
    with tempfile.TemporaryDirectory() as tmp:
        make_smollm(args, args.out, strings)
        make_splits(args.out, strings)
        make_byte_level(args.out, strings, lines)
        make_spm(args.out, strings, lines, tmp)
    manifest = {
        "generator": "Scripts/golden/make_tokenizer_fixtures.py",
        "versions": {"python": sys.version.split()[0], "transformers": transformers.__version__,
                     "tokenizers": tokenizers.__version__, "sentencepiece": spm.__version__,
                     "gguf": getattr(gguf, "__version__", "0.19.0")},
        "strings": len(strings),
    }
    dump(os.path.join(args.out, "manifest.json"), manifest)


if __name__ == "__main__":
    main()
