#!/usr/bin/env python3
"""Check that edited models exported by IBKE load in llama.cpp and transformers and state the new fact.

For each catalogue model: `ibke edit` makes the README's ROME edit (The Eiffel Tower is located
in the city of → Rome) and saves its delta; `ibke apply` exports it twice, as a GGUF (only the
edited tensor rewritten) and as a Hugging Face folder. llama.cpp (llama-cpp-python) then runs
the source GGUF and the edited one, transformers the exported folder, each greedily on three
prompts: the edit's own, a paraphrase, and an unrelated fact about the old object. The script
prints one Markdown table and exits non-zero unless every edited model continues the edit's
prompt and its paraphrase with " Rome" and the source GGUF does not.

Requirements, in a virtual environment outside the repository (llama-cpp-python compiles
llama.cpp, 10–40 minutes on 2 cores; check that its system info line shows the native SIMD
features, e.g. AVX2 / AVX512):

    python3 -m venv ~/venv-check
    CMAKE_ARGS="-DGGML_NATIVE=ON" ~/venv-check/bin/pip install llama-cpp-python torch transformers numpy safetensors
    swift build -c release
    ~/venv-check/bin/python Scripts/check_exports.py --stats-corpus ../shared/data/text_corpus

Statistics that are not cached are computed on first use (minutes per model); exports are
written under --work (default: a temporary folder, removed at the end unless --keep).
"""
import argparse, os, shutil, subprocess, sys, tempfile, time

PROMPT, SUBJECT, TARGET = "{} is located in the city of", "The Eiffel Tower", "Rome"
CHECKS = [
    ("edit", "The Eiffel Tower is located in the city of"),
    ("paraphrase", "The Eiffel Tower stands in the city of"),
    ("unrelated", "The capital of France is"),
]
TOKENS = 8


def run(cmd):
    """Runs an ibke command; its error line (the last of standard error) if it fails."""
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    result = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    sys.stderr.write(result.stderr)
    if result.returncode != 0:
        return (result.stderr.strip().splitlines() or ["exit status %d" % result.returncode])[-1]
    return None


def llama_cpp_continuations(path, threads):
    from llama_cpp import Llama
    model = Llama(model_path=path, n_ctx=256, n_threads=threads, verbose=False, seed=0)
    out = {}
    for name, text in CHECKS:
        result = model.create_completion(text, max_tokens=TOKENS, temperature=0.0, top_k=1)
        out[name] = result["choices"][0]["text"]
    del model
    return out


def transformers_continuations(folder):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    torch.set_num_threads(2)
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model.eval()
    out = {}
    with torch.inference_mode():
        for name, text in CHECKS:
            enc = tok(text, return_tensors="pt")
            ids = model.generate(**enc, max_new_tokens=TOKENS, do_sample=False,
                                 pad_token_id=tok.eos_token_id)[0, enc["input_ids"].shape[1]:]
            out[name] = tok.decode(ids, skip_special_tokens=True)
    del model
    return out


def model_path(ibke, name):
    return subprocess.run([ibke, "model", "path", name], check=True, capture_output=True, text=True).stdout.strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ibke", default=".build/release/ibke")
    ap.add_argument("--models", default="smollm2-135m,qwen2.5-coder-0.5b,gemma3-270m")
    ap.add_argument("--method", default="rome")
    ap.add_argument("--stats-corpus", default="../shared/data/text_corpus")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()

    import llama_cpp
    print(f"llama-cpp-python {llama_cpp.__version__}; system info: "
          f"{llama_cpp.llama_print_system_info().decode().strip()}", file=sys.stderr)
    work = args.work or tempfile.mkdtemp(prefix="ibke-exports-")
    os.makedirs(work, exist_ok=True)
    rows, failures = [], []
    try:
        for name in args.models.split(","):
            source = model_path(args.ibke, name)
            delta = os.path.join(work, f"{name}-{args.method}.safetensors")
            gguf = os.path.join(work, f"{name}-{args.method}.gguf")
            folder = os.path.join(work, f"{name}-{args.method}-hf")
            for path in (delta, gguf, folder):
                if os.path.isdir(path):
                    shutil.rmtree(path)
                elif os.path.exists(path):
                    os.remove(path)
            start = time.time()
            error = run([args.ibke, "edit", "--model", name, "--method", args.method, "--threads", str(args.threads),
                         "--stats-corpus", args.stats_corpus, "--prompt", PROMPT, "--subject", SUBJECT,
                         "--target", TARGET, "--save-delta", delta])
            if error:
                sys.exit(f"{name}: the edit failed: {error}")
            gguf_error = run([args.ibke, "apply", "--model", name, "--delta", delta, "--out", gguf])
            folder_error = run([args.ibke, "apply", "--model", name, "--delta", delta, "--out", folder])
            print(f"{name}: edit and exports {time.time() - start:.0f} s", file=sys.stderr)
            results = [("llama.cpp, source GGUF", lambda: llama_cpp_continuations(source, args.threads), None, False),
                       ("llama.cpp, edited GGUF", lambda: llama_cpp_continuations(gguf, args.threads), gguf_error, True),
                       ("transformers, edited HF folder", lambda: transformers_continuations(folder), folder_error, True)]
            for loader, continuations, export_error, edited in results:
                if export_error:
                    failures.append(f"{name} / {loader}")
                    rows.append((name, loader, {k: f"(export failed: {export_error})" for k, _ in CHECKS}, False))
                    continue
                out = continuations()
                states = {k: out[k].lstrip().startswith(TARGET) for k in ("edit", "paraphrase")}
                ok = all(states.values()) if edited else not any(states.values())
                if not ok:
                    failures.append(f"{name} / {loader}")
                rows.append((name, loader, out, ok))
            if not args.keep:
                for path in (gguf, folder):
                    if os.path.isdir(path):
                        shutil.rmtree(path)
                    elif os.path.exists(path):
                        os.remove(path)
    finally:
        if not args.keep and not args.work:
            shutil.rmtree(work, ignore_errors=True)

    print(f"| model | loaded by | {' | '.join(repr(text) for _, text in CHECKS)} | as expected |")
    print("|---|---|" + "---|" * len(CHECKS) + "---|")
    for name, loader, out, ok in rows:
        cells = " | ".join((out[k] if out[k].startswith("(export failed") else repr(out[k])).replace("|", "\\|")
                           for k, _ in CHECKS)
        print(f"| {name} | {loader} | {cells} | {'yes' if ok else 'NO'} |")
    if failures:
        print("not as expected: " + ", ".join(failures), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
