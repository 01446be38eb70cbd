#!/usr/bin/env python3
"""Make the PyTorch gradient reference of a real checkpoint (by default SmolLM2-135M-Instruct, Q4_1 GGUF).

Writes  Tests/ModelsTests/Fixtures/smollm2_gradient_reference.json   (< 300 KB), or --out
(Qwen2.5-Coder-0.5B and Gemma 3 270M: see "Usage" at the end of this text).

The acceptance test of the gradients feature checks, on the default model, for one fixed prompt and
target:
  (a) the gradient of the target negative log-likelihood with respect to a delta vector added at the
      MLP output of layer 8 at the last subject token, and
  (b) the gradient of the same loss with respect to blk.8.ffn_down (HF: model.layers[8].mlp.down_proj.weight),
against this fixture (norms, slices of values, cosine similarity >= 0.9999, relative norm error <= 1e-3).

Model loading is exactly that of shared/reference/make_reference.py: transformers' GGUF loader
(every tensor dequantized to float32 by the `gguf` package), PyTorch Llama in float32 on the CPU,
tokenizer built from the GGUF metadata (it adds no BOS).

Definitions (also recorded in the JSON):
- input sequence = prompt ids + target ids[:-1] (teacher forcing); position p predicts token p+1;
  target token i is predicted at position len(prompt_ids) - 1 + i.
- loss = SUM over target tokens of -log softmax(logits[p_i])[target_i]  ("sum of target-token NLL").
- subject span: the prompt is tokenized as a whole; the prefix prompt[:end of subject] is tokenized on
  its own and must be a prefix of the prompt ids; the subject's last token index is
  len(prefix ids) - 1 (the prefix before the subject gives the span start the same way).
- (a) a delta vector (576 zeros, requires_grad) is added, by a forward hook on model.model.layers[8].mlp,
  to the MLP output (= down_proj output, before the residual add) at the subject's last token only;
  the fixture holds dLoss/d(delta), all 576 values.
- (b) dLoss/dW for W = model.model.layers[8].mlp.down_proj.weight, shape [576, 1536] = [out, in],
  which is GGUF's blk.8.ffn_down in row-major [out, in] (GGUF ne = [1536, 576]). Since y_t = W x_t,
  dLoss/dW = sum_t dY[t]^T X[t] = dY^T X, with dY[t] = dLoss/d(down_proj output at t) (576) and
  X[t] = down_proj input at t (1536). The fixture holds both factors (T x 576 and T x 1536) so the
  full gradient is reconstructible, plus its Frobenius norm and the first 8 values of rows 0 and 100.
  The script checks that dY^T X rebuilt from the values as written equals the autograd gradient.

The same computation is repeated with the model converted to float64 ("float64_crosscheck"), to show
how far float32 rounding alone moves the reference (far below the test's tolerances).

Deterministic apart from the date in "generator" (2 threads, no randomness). Takes ~30 s.

  /work/venv/bin/python Scripts/golden/make_gradient_reference.py

Usage for the other catalogue models (after `ibke model fetch NAME`; the layer is the first one the
model's ROME hyperparameters edit; "the default model's 576 / 1536 / layer 8" above reads as that
model's hidden size / feed-forward size / layer):

  /work/venv-ref/bin/python Scripts/golden/make_gradient_reference.py --layer 5 --name qwen2.5-coder-0.5b-q4_k_m \
      --gguf ~/.cache/ibke/models/Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf --max-kb 900 \
      --out Tests/ModelsTests/Fixtures/qwen2.5-coder-0.5b_gradient_reference.json
  /work/venv-ref/bin/python Scripts/golden/make_gradient_reference.py --layer 4 --name gemma3-270m-q4_k_m \
      --gguf ~/.cache/ibke/models/gemma-3-270m.Q4_K_M.gguf --max-kb 500 \
      --out Tests/ModelsTests/Fixtures/gemma3-270m_gradient_reference.json

For Gemma 3 the MLP output is the down projection's output before the post-feed-forward norm, the
point where IBKE's feed-forward hook sits too.
"""
import argparse, datetime, hashlib, json, math, os, platform, sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "Tests/ModelsTests/Fixtures/smollm2_gradient_reference.json"
DEFAULT_GGUF = Path(os.environ.get("IBKE_HOME", Path.home() / ".cache/ibke")) / "models/SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPT = "The Eiffel Tower is located in the city of"
SUBJECT = "The Eiffel Tower"
TARGET = " Rome"
SIG = 7                    # significant digits of every float array in the fixture
SLICE_ROWS = (0, 100)
SLICE_LEN = 8


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fmt(x):
    """x with SIG significant digits, shortest form ('1.234567e-5', not '1.234567e-05')."""
    s = f"{float(x):.{SIG}g}"
    if "e" in s:
        m, e = s.split("e")
        s = f"{m}e{int(e)}"
    return s


def rounded(a):
    """The float64 values a reader gets back when parsing fmt(a)."""
    return np.array([float(fmt(x)) for x in np.asarray(a, dtype=np.float64).ravel()]).reshape(np.shape(a))


class Arr:
    """A float array written with SIG significant digits (1-D on one line, 2-D one row per line)."""
    def __init__(self, a):
        self.a = np.asarray(a, dtype=np.float64)


def emit(obj, pad=""):
    inner = pad + " "
    if isinstance(obj, dict):
        items = [f"{inner}{json.dumps(k)}: {emit(v, inner)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, Arr):
        if obj.a.ndim == 1:
            return "[" + ",".join(fmt(x) for x in obj.a) + "]"
        rows = [inner + "[" + ",".join(fmt(x) for x in r) + "]" for r in obj.a]
        return "[\n" + ",\n".join(rows) + "\n" + pad + "]"
    if isinstance(obj, list) and (any(isinstance(v, (dict, list, Arr)) for v in obj)
                                  or sum(len(v) for v in obj if isinstance(v, str)) > 120):
        return "[\n" + ",\n".join(inner + emit(v, inner) for v in obj) + "\n" + pad + "]"
    if isinstance(obj, float):
        assert math.isfinite(obj)
    return json.dumps(obj, ensure_ascii=False)


def token_span(tok, prompt, subject, prompt_ids, lead):
    """[start, end) of the subject's tokens; `lead` special tokens (a BOS) come before the text's."""
    prompt_ids = prompt_ids[lead:]
    start_char = prompt.index(subject)
    end_char = start_char + len(subject)
    before = tok(prompt[:start_char], add_special_tokens=False)["input_ids"] if start_char > 0 else []
    upto = tok(prompt[:end_char], add_special_tokens=False)["input_ids"]
    assert prompt_ids[:len(upto)] == upto, "the prefix up to the subject's end is not a token prefix of the prompt"
    assert prompt_ids[:len(before)] == before, "the prefix before the subject is not a token prefix of the prompt"
    assert len(upto) > len(before)
    return len(before), len(upto)


def run(model, input_ids, prompt_len, target_ids, subject_last, dtype, LAYER):
    """Loss, per-target logsumexp/logit/NLL, dLoss/d(delta), X, dY and dLoss/dW at layer LAYER."""
    for p in model.parameters():
        p.requires_grad_(False)
    mlp = model.model.layers[LAYER].mlp
    w = mlp.down_proj.weight
    w.requires_grad_(True)
    w.grad = None
    hidden = model.config.hidden_size
    delta = torch.zeros(hidden, dtype=dtype, requires_grad=True)
    saved = {}

    def down_pre_hook(module, args):
        saved["X"] = args[0].detach()[0].clone()            # [T, 1536]

    def down_hook(module, args, out):
        out.register_hook(lambda g: saved.__setitem__("dY", g.detach()[0].clone()))  # [T, 576]

    def mlp_hook(module, args, out):
        mask = torch.zeros(out.shape[1], 1, dtype=out.dtype)
        mask[subject_last] = 1
        return out + mask * delta                            # delta at the subject's last token only

    handles = [mlp.down_proj.register_forward_pre_hook(down_pre_hook),
               mlp.down_proj.register_forward_hook(down_hook),
               mlp.register_forward_hook(mlp_hook)]
    try:
        logits = model(input_ids=torch.tensor([input_ids])).logits[0]     # [T, vocab]
        positions = [prompt_len - 1 + i for i in range(len(target_ids))]
        sel = logits[positions]                                           # [n_target, vocab]
        lse = torch.logsumexp(sel, dim=-1)
        tgt_logit = sel[torch.arange(len(target_ids)), torch.tensor(target_ids)]
        nll = lse - tgt_logit
        loss = nll.sum()
        loss.backward()
    finally:
        for h in handles:
            h.remove()
    return {
        "loss": loss.item(), "positions": positions,
        "lse": lse.detach().double().numpy(), "target_logit": tgt_logit.detach().double().numpy(),
        "nll": nll.detach().double().numpy(),
        "last_lse": torch.logsumexp(logits[-1].detach(), dim=-1).item(),
        "delta_grad": delta.grad.detach().double().numpy(),
        "X": saved["X"].double().numpy(), "dY": saved["dY"].double().numpy(),
        "W_grad": w.grad.detach().double().numpy(),
    }


def cos(a, b):
    a, b = a.ravel(), b.ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gguf", default=str(DEFAULT_GGUF))
    ap.add_argument("--name", default="smollm2-135m-instruct-q4_1")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--layer", type=int, default=8)
    ap.add_argument("--max-kb", type=int, default=300, help="refuse to write a larger fixture")
    ap.add_argument("--no-float64-check", action="store_true", help="skip the float64 cross-check")
    args = ap.parse_args()
    LAYER, MAX_BYTES = args.layer, args.max_kb * 1024

    torch.manual_seed(0)
    torch.set_num_threads(2)
    gguf_path = os.path.abspath(args.gguf)
    d, fname = os.path.dirname(gguf_path), os.path.basename(gguf_path)

    tok = AutoTokenizer.from_pretrained(d, gguf_file=fname)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=fname, dtype=torch.float32)
    model.eval()
    cfg = model.config

    prompt_ids = tok(PROMPT)["input_ids"]                                 # as make_reference.py (no BOS added)
    # Gemma's tokenizer adds a BOS (as IBKE's does); SmolLM2's and Qwen's add nothing.
    plain = tok(PROMPT, add_special_tokens=False)["input_ids"]
    lead = len(prompt_ids) - len(plain)
    assert lead >= 0 and prompt_ids[lead:] == plain, "the tokenizer adds special tokens other than a leading BOS"
    target_ids = tok(TARGET, add_special_tokens=False)["input_ids"]
    input_ids = prompt_ids + target_ids[:-1]
    s_start, s_end = (lead + i for i in token_span(tok, PROMPT, SUBJECT, prompt_ids, lead))
    subject_last = s_end - 1

    r = run(model, input_ids, len(prompt_ids), target_ids, subject_last, torch.float32, LAYER)
    T, H, I = len(input_ids), cfg.hidden_size, cfg.intermediate_size
    assert r["X"].shape == (T, I) and r["dY"].shape == (T, H) and r["W_grad"].shape == (H, I)
    # dLoss/d(delta) is dLoss/d(MLP output at the subject's last token) = dY[subject_last] (same tensor).
    assert np.array_equal(r["delta_grad"], r["dY"][subject_last])

    # (b) Rebuild dY^T X from the values exactly as written and compare with autograd.
    G = r["W_grad"]
    G_exact = r["dY"].T @ r["X"]                                          # float64, from float32 factors
    G_fix = rounded(r["dY"]).T @ rounded(r["X"])                          # from the 7-digit fixture values
    gmax = float(np.abs(G).max())
    recon = {
        "max_abs_diff_exact_factors": float(np.abs(G_exact - G).max()),
        "max_abs_diff_fixture_factors": float(np.abs(G_fix - G).max()),
        "max_abs_grad": gmax,
        "rel_frobenius_diff_fixture_factors": rel(G_fix, G),
        "cosine_fixture_factors": cos(G_fix, G),
    }
    print(f"T={T}  loss={r['loss']:.7f}  |dL/ddelta|={np.linalg.norm(r['delta_grad']):.7g}  "
          f"|dL/dW|_F={np.linalg.norm(G):.7g}")
    print("reconstruction dY^T X vs autograd: max|diff| exact factors %.3g, fixture factors %.3g "
          "(max|grad| %.3g; relative %.3g), rel Frobenius %.3g" % (
              recon["max_abs_diff_exact_factors"], recon["max_abs_diff_fixture_factors"], gmax,
              recon["max_abs_diff_fixture_factors"] / gmax, recon["rel_frobenius_diff_fixture_factors"]))
    assert recon["max_abs_diff_fixture_factors"] <= 1e-5 * gmax
    assert recon["rel_frobenius_diff_fixture_factors"] <= 1e-6

    crosscheck = None
    if not args.no_float64_check:
        r64 = run(model.to(torch.float64), input_ids, len(prompt_ids), target_ids, subject_last, torch.float64, LAYER)
        crosscheck = {
            "what": "same computation with the model converted to float64; float32 values compared with it",
            "loss_float64": r64["loss"],
            "loss_abs_diff": abs(r["loss"] - r64["loss"]),
            "delta_grad_cosine": cos(r["delta_grad"], r64["delta_grad"]),
            "delta_grad_rel_error": rel(r["delta_grad"], r64["delta_grad"]),
            "ffn_down_grad_cosine": cos(G, r64["W_grad"]),
            "ffn_down_grad_rel_error": rel(G, r64["W_grad"]),
        }
        print("float32 vs float64:", {k: (f"{v:.3g}" if isinstance(v, float) else v) for k, v in crosscheck.items()})

    vers = {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "gguf": version("gguf"),
            "tokenizers": version("tokenizers"), "numpy": np.__version__}
    rel_script = os.path.relpath(os.path.abspath(__file__), REPO)
    out = {
        "format": "ibke-gradient-reference", "version": 1,
        "model": args.name,
        "gguf_file": fname,
        "gguf_sha256": sha256(gguf_path),
        "dtype": "float32",
        "attn_implementation": getattr(cfg, "_attn_implementation", None),
        "produced_by": "transformers GGUF loader (weights dequantized to float32), PyTorch autograd on the CPU",
        "generator": {
            "script": rel_script,
            "command": " ".join([sys.executable, rel_script] + sys.argv[1:]),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "versions": vers,
            "torch_threads": torch.get_num_threads(),
        },
        "config": {k: getattr(cfg, k, None) for k in ["model_type", "hidden_size", "intermediate_size",
                   "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim", "vocab_size",
                   "rms_norm_eps", "tie_word_embeddings"]},
        "float_digits": SIG,
        "notes": [
            "Positions are 0-based indices into input_ids; the logits at position p predict token p+1.",
            "input_ids = prompt_ids + target_ids[:-1] (teacher forcing); target token i is predicted at "
            "position len(prompt_ids) - 1 + i (target_positions).",
            "loss = sum over target tokens of (logsumexp(logits[p_i]) - logits[p_i][target_i]), natural log, "
            "no averaging. target_logsumexp / target_logit / target_nll are per target token.",
            "subject_span is [start, end) in token positions; subject_last_token_index = end - 1.",
            f"delta.grad = dLoss/d(delta), delta added to the output of layer {LAYER}'s MLP (down_proj output, before "
            "the residual add and any post-feed-forward norm) at subject_last_token_index only; it equals "
            "ffn_down.dY[subject_last_token_index].",
            f"ffn_down.dY[t] = dLoss/d(down_proj output at position t) ({H}), ffn_down.X[t] = down_proj input at "
            f"position t = act(gate(x)) * up(x) ({I}). Full gradient: grad[o][i] = sum_t dY[t][o] * X[t][i], "
            f"shape [{H}, {I}] = [out, in], the layout of GGUF blk.{LAYER}.ffn_down (ne [{I}, {H}]) read row-major.",
            "grad_rows gives grad[row][0..<8] computed by autograd; norms are computed in float64 from float32 "
            "gradients. Arrays are written with float_digits significant digits.",
            "Suggested test tolerances: cosine >= 0.9999 and relative norm error <= 1e-3 for both gradients; "
            "loss and logsumexp to ~1e-3 absolute (as the forward references).",
        ],
        "prompt": PROMPT,
        "subject": SUBJECT,
        "target": TARGET,
        "prompt_ids": prompt_ids,
        "prompt_tokens": tok.convert_ids_to_tokens(prompt_ids),
        "target_ids": target_ids,
        "target_tokens": tok.convert_ids_to_tokens(target_ids),
        "target_tokenization": "tok(target, add_special_tokens=False)",
        "input_ids": input_ids,
        "subject_span": {
            "start": s_start, "end": s_end,
            "method": "tokenize prompt[:prompt.index(subject)] and prompt[:prompt.index(subject) + len(subject)] "
                      "on their own (add_special_tokens=False); both are token prefixes of prompt_ids after its "
                      "leading special tokens (Gemma's BOS), whose count is added; "
                      "start/end are their lengths",
        },
        "subject_last_token_index": subject_last,
        "layer": LAYER,
        "loss": "sum of target-token NLL",
        "loss_value": r["loss"],
        "target_positions": r["positions"],
        "target_logsumexp": [float(x) for x in r["lse"]],
        "target_logit": [float(x) for x in r["target_logit"]],
        "target_nll": [float(x) for x in r["nll"]],
        "last_position_logsumexp": r["last_lse"],
        "delta": {
            "site": f"output of model.model.layers[{LAYER}].mlp (= down_proj output, before the residual add)",
            "position": subject_last,
            "value": "zeros",
            "size": H,
            "grad_norm": float(np.linalg.norm(r["delta_grad"])),
            "grad": Arr(r["delta_grad"]),
        },
        "ffn_down": {
            "gguf_tensor": f"blk.{LAYER}.ffn_down.weight",
            "hf_parameter": f"model.layers.{LAYER}.mlp.down_proj.weight",
            "shape": [H, I],
            "layout": "[out, in], row-major",
            "grad_frobenius_norm": float(np.linalg.norm(G)),
            "grad_sum": float(G.sum()),
            "grad_rows": [{"row": int(i), "first8": Arr(G[i, :SLICE_LEN])} for i in SLICE_ROWS],
            "reconstruction": "grad = dY^T X, grad[o][i] = sum_t dY[t][o] * X[t][i]",
            "reconstruction_check": recon,
            "dY": Arr(r["dY"]),
            "X": Arr(r["X"]),
        },
    }
    if crosscheck is not None:
        out["float64_crosscheck"] = crosscheck

    text = emit(out) + "\n"
    json.loads(text)
    size = len(text.encode())
    assert size < MAX_BYTES, f"fixture is {size} bytes, over {MAX_BYTES}"
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    print(f"wrote {args.out} ({size} bytes); subject span [{s_start}, {s_end}), last subject token "
          f"{subject_last} {tok.convert_ids_to_tokens([prompt_ids[subject_last]])[0]!r}")


if __name__ == "__main__":
    main()
