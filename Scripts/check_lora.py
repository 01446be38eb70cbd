#!/usr/bin/env python3
"""Check that an edit exported as a LoRA adapter gives the edited model's answers in llama.cpp
and in PEFT, on the unedited base model.

`ibke edit` makes the README's ROME edit (The Eiffel Tower is located in the city of → Rome)
and saves its delta; `ibke apply` writes it three ways: a llama.cpp LoRA GGUF (--format lora), a
PEFT folder (--format peft) and, for comparison, the edited model itself (a GGUF and a
Hugging Face folder). Then, each
greedily on three prompts (the edit's, a paraphrase, an unrelated fact about the old object):

- llama.cpp (llama-cpp-python): the base GGUF with `lora_path` against the edited GGUF;
- PEFT (transformers + peft): the base GGUF with the PEFT adapter against the same model with
  IBKE's Hugging Face export of the edited model, and the merged weights compared with it.

A part runs when its packages are importable, so the script can run once per environment:

    python3 -m venv ~/venv-llamacpp && ~/venv-llamacpp/bin/pip install llama-cpp-python
    python3 -m venv ~/venv-peft && ~/venv-peft/bin/pip install torch transformers peft gguf
    swift build -c release
    ~/venv-llamacpp/bin/python Scripts/check_lora.py --work /tmp/lora   # edits, exports, llama.cpp part
    ~/venv-peft/bin/python Scripts/check_lora.py --work /tmp/lora       # reuses the exports, PEFT part

It prints a Markdown table and exits non-zero unless the adapter continues the edit's prompt
and its paraphrase with " Rome" and gives the same continuations as the edited model.
"""
import argparse, importlib.util, os, subprocess, sys

# The same edit and prompts as the export check, whose folder this script shares.
from check_exports import CHECKS, PROMPT, SUBJECT, TARGET, TOKENS


def run(cmd):
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, stdout=sys.stderr)


def exports(args):
    """The delta and its three exports under --work, made once."""
    os.makedirs(args.work, exist_ok=True)
    delta = os.path.join(args.work, "eiffel.safetensors")
    paths = {k: os.path.join(args.work, v) for k, v in
             [("lora", "eiffel-lora.gguf"), ("peft", "eiffel-peft"), ("edited", "eiffel-edited.gguf"),
              ("edited-hf", "eiffel-edited-hf")]}
    model = ["--model", args.model] if args.model else []
    if not os.path.exists(delta):
        run([args.ibke, "edit", *model, "--method", "rome", "--prompt", PROMPT, "--subject", SUBJECT,
             "--target", TARGET, "--save-delta", delta])
    for kind, path in paths.items():
        if not os.path.exists(path):
            extra = [] if kind.startswith("edited") else ["--format", kind]
            run([args.ibke, "apply", *model, "--delta", delta, "--out", path, *extra])
    return paths


def base_model(args):
    if args.model:
        return args.model
    out = subprocess.run([args.ibke, "model", "path"], check=True, capture_output=True, text=True).stdout
    return out.strip().splitlines()[-1]


def llama_part(args, paths, base):
    from llama_cpp import Llama

    def answers(**kw):
        llm = Llama(model_path=kw.pop("model"), n_ctx=256, n_threads=args.threads, verbose=False, **kw)
        out = [llm(text, max_tokens=TOKENS, temperature=0)["choices"][0]["text"] for _, text in CHECKS]
        del llm
        return out

    return {"llama.cpp base": answers(model=base),
            "llama.cpp base + LoRA adapter": answers(model=base, lora_path=paths["lora"]),
            "llama.cpp edited GGUF": answers(model=paths["edited"])}


def peft_part(args, paths, base):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = os.path.split(os.path.abspath(base))
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    torch.set_num_threads(args.threads)

    def answers(m):
        out = []
        for _, text in CHECKS:
            ids = tokenizer(text, return_tensors="pt").input_ids
            with torch.no_grad():
                gen = m.generate(ids, max_new_tokens=TOKENS, do_sample=False)
            out.append(tokenizer.decode(gen[0, ids.shape[1]:], skip_special_tokens=True))
        return out

    rows = {"transformers base": answers(model)}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    adapted = PeftModel.from_pretrained(model, paths["peft"])
    rows["transformers base + PEFT adapter"] = answers(adapted)
    merged = adapted.merge_and_unload()
    edited = AutoModelForCausalLM.from_pretrained(paths["edited-hf"], dtype=torch.float32)
    rows["transformers edited model (ibke's Hugging Face export)"] = answers(edited)
    after = merged.state_dict()
    changed = [k for k, v in after.items() if not torch.equal(v, before[k])]
    reference = edited.state_dict()
    gap = max(float((after[k] - reference[k]).abs().max()) for k in changed)
    print(f"PEFT merge changed {', '.join(changed)}; largest difference from ibke's export: {gap:.2e}", file=sys.stderr)
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ibke", default=".build/release/ibke")
    parser.add_argument("--model", help="a GGUF (default: the default model)")
    parser.add_argument("--work", default="runs/lora")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    paths = exports(args)
    base = base_model(args)
    rows = {}
    for module, part in [("llama_cpp", llama_part), ("peft", peft_part)]:
        if importlib.util.find_spec(module) is None:
            print(f"{module} is not installed here: that part is skipped", file=sys.stderr)
            continue
        rows.update(part(args, paths, base))
    if not rows:
        sys.exit("neither llama_cpp nor peft is installed")

    print("| runtime, model | " + " | ".join(f"{k}: {t!r}" for k, t in CHECKS) + " |")
    print("|---" * (len(CHECKS) + 1) + "|")
    for name, outs in rows.items():
        print(f"| {name} | " + " | ".join(f"`{o!r}`" for o in outs) + " |")

    failures = []
    for name, outs in rows.items():
        if "adapter" in name:
            for (kind, _), out in zip(CHECKS[:2], outs):
                if not out.startswith(" " + TARGET):
                    failures.append(f"{name}, {kind}: {out!r}")
    if "llama.cpp base + LoRA adapter" in rows and rows["llama.cpp base + LoRA adapter"] != rows["llama.cpp edited GGUF"]:
        failures.append("llama.cpp: the adapter's continuations differ from the edited GGUF's")
    if ("transformers base + PEFT adapter" in rows
            and rows["transformers base + PEFT adapter"] != rows["transformers edited model (ibke's Hugging Face export)"]):
        failures.append("PEFT: the adapter's continuations differ from the edited model's")
    if failures:
        sys.exit("FAILED: " + "; ".join(failures))
    print("ok")


if __name__ == "__main__":
    main()
