#!/usr/bin/env python3
"""Make the PyTorch reference for the pre-edit zsRE and CounterFact metrics of the default model.

What: the unedited SmolLM2-135M-Instruct (Q4_1 GGUF) is scored on the first 200 records of the shared
zsRE eval file and the first 200 records of the shared CounterFact edit file, with exactly IBKE's
metric definitions (below), so IBKE's Evaluation module can be checked against an independent
implementation. Two outputs:

- `--out-full` (default /work/eval-reference/full.json, NOT committed): per-record values for all
  200 + 200 records and the aggregates.
- `--fixture` (default Tests/EvaluationTests/Fixtures/reference/pre_edit_reference.json, committed,
  < 200 KB): the aggregates over all 200 records of each dataset, plus the input records and the
  per-record values of the first 20 zsRE and first 20 CounterFact records, so Swift tests can run
  without /work/shared.

How to run (from the repository root, after `ibke model fetch`; ~35 min on 2 shared, busy cores: 2,200 forward passes):

    /work/venv/bin/python Scripts/golden/make_eval_reference.py
    /work/venv/bin/python Scripts/golden/make_eval_reference.py --ibke .build/release/ibke   # + parity check

`--ibke PATH` also runs `PATH tokenize --ids-only` on a list of hand-picked strings and on every
prompt and target of the fixture records, and fails if any ids differ from the ones used here.

Requirements: torch (CPU), transformers (GGUF support), gguf, tokenizers, numpy; the versions used
are written into both outputs. The model is loaded as in shared/reference/make_reference.py:
transformers' GGUF loader (every tensor dequantized to float32 by `gguf`), PyTorch Llama in float32
on the CPU, 2 threads. Each sequence is run on its own (no batching, no padding).

Tokenisation. transformers builds SmolLM2's tokenizer from the GGUF with the plain GPT-2
pre-tokenizer regex; SmolLM2 (and llama.cpp's `smollm` pre-type, and IBKE) first split every digit
on its own. The pre-tokenizer is therefore replaced by Digits(individual_digits=True) + ByteLevel,
as in make_tokenizer_fixtures.py. The GGUF says tokenizer.ggml.add_bos_token = false: no BOS is
added (checked: the default encoding equals the one without special tokens).

Metric definitions (IBKE's):
- probe (prompt p, answer a): prompt_ids = tok(p) (default special tokens, = IBKE's encode),
  target_ids = tok(" " + a, add_special_tokens=False) (no space added when a starts with
  whitespace). Input = prompt_ids + target_ids[:-1]; the logits at position len(prompt_ids)-1+j
  predict target_ids[j].
- token accuracy = mean_j [argmax logits_j == target_ids[j]]; exact match = all j correct.
- zsRE (records with an empty `alt` are skipped and counted): reliability (src, alt), generality
  (rephrase, alt), portability (portability["New Question"], portability["New Answer"]),
  specificity (loc + "?", loc_ans) against the ground-truth tokens, each with an `_em` variant;
  `locality_argmax` = the argmax ids at the loc_ans positions of (loc, loc_ans), what IBKE's
  post-edit locality is compared with (pre-edit locality is 1 by definition).
- CounterFact: NLL_x = mean over the tokens of x of -log p(token), P_x = exp(-NLL_x);
  efficacy on `prompt`, paraphrase on `rephrase_prompt`: score [NLL_new < NLL_true], magnitude
  P_new - P_true; neighborhood on `locality_prompt` (true = locality_ground_truth): score
  [NLL_true < NLL_new], magnitude P_true - P_new. Aggregates are means over records; `score` is
  the harmonic mean of the aggregate efficacy, paraphrase and neighborhood scores.

Per probe the outputs also say whether tok(prompt) + tok(" " + a) differs from tok(prompt + " " + a)
(`joint_differs`): IBKE tokenises prompt and target separately, as the definition says, so such
probes are only "delicate" (a joint tokenisation would give other positions).

Log-probabilities are computed in float64 from the float32 logits. Per target position the outputs
hold `margins`: top-1 minus top-2 logit (a test can skip argmax comparisons on near-ties).
"""
import argparse, datetime, hashlib, json, math, os, platform, subprocess, sys, time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
import transformers
from tokenizers import pre_tokenizers
from transformers import AutoModelForCausalLM, AutoTokenizer

REPO = Path(__file__).resolve().parents[2]
DEFAULT_GGUF = Path(os.environ.get("IBKE_HOME", Path.home() / ".cache/ibke")) / "models/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_ZSRE = "/work/shared/data/zsre/zsre_mend_eval_portability_gpt4.first_half.json"
DEFAULT_CF = "/work/shared/data/counterfact_easyedit/counterfact-edit.case_id_lt_10000.json"
DEFAULT_FULL = "/work/eval-reference/full.json"
DEFAULT_FIXTURE = REPO / "Tests/EvaluationTests/Fixtures/reference/pre_edit_reference.json"
SIG = 7                     # significant digits of NLLs, probabilities, accuracies
MARGIN_SIG = 4              # significant digits of argmax margins
MAX_FIXTURE_BYTES = 200 * 1024

# Extra strings for the IBKE tokenisation parity check (digits, punctuation, spaces, unicode).
PARITY_STRINGS = [
    "When was the inception of IAAF Combined Events Challenge? 2006",
    " 2006", "2006", " 1998-2001", "In 1976, 3.14159 and 1,000,000 people",
    "The mother tongue of Danielle Darrieux is", " French", " English",
    "nq question: who sings i want to dance with somebody?", " Whitney Houston",
    " MAT-49", "x  1", "hello  2024", "abc\n 1", "Which species is Pseudomonas aeruginosa?", " H5N1 and COVID-19",
    "Où est la gare? Æsop's fables — naïve café", " 日本語のテキスト", "Toko Yasuda plays the",
    "a  b   c\n\nd\te", "It's we'll they've I'd", " 42nd Street", "emoji 🙂 test",
]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fmt(x, sig=SIG):
    s = f"{float(x):.{sig}g}"
    if "e" in s:
        m, e = s.split("e")
        s = f"{m}e{int(e)}"
    return s


class Num(float):
    """A float written with a given number of significant digits."""
    def __new__(cls, x, sig=SIG):
        obj = super().__new__(cls, float(fmt(x, sig)))
        obj.sig = sig
        return obj


def emit(obj, pad=""):
    """JSON with dicts indented one space per level and lists of scalars on one line."""
    inner = pad + " "
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{inner}{json.dumps(k)}: {emit(v, inner)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list):
        if any(isinstance(v, (dict, list)) for v in obj) or sum(len(v) for v in obj if isinstance(v, str)) > 120:
            return "[\n" + ",\n".join(inner + emit(v, inner) for v in obj) + "\n" + pad + "]"
        return "[" + ",".join(emit(v, inner) for v in obj) + "]"
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return json.dumps(obj, ensure_ascii=False)
    if isinstance(obj, Num):
        return fmt(obj, obj.sig)
    if isinstance(obj, float):
        assert math.isfinite(obj)
        return repr(obj)
    raise TypeError(type(obj))


def continuation(a):
    return a if a[:1].isspace() else " " + a


class Scorer:
    def __init__(self, model, tok):
        self.model, self.tok = model, tok
        self.forwards = 0
        self.joint_differs = {}

    def encode(self, text, special=True):
        return self.tok(text, add_special_tokens=special)["input_ids"]

    def probe(self, kind, prompt, answer):
        """Teacher-forced pass of (prompt, answer): ids, per-token NLL, argmax ids and margins."""
        target = continuation(answer)
        prompt_ids = self.encode(prompt)
        target_ids = self.encode(target, special=False)
        assert prompt_ids and target_ids, (prompt, answer)
        joint = self.encode(prompt + target)
        differs = joint != prompt_ids + target_ids
        if differs:
            self.joint_differs.setdefault(kind, []).append((prompt, target))
        input_ids = prompt_ids + target_ids[:-1]
        with torch.inference_mode():
            logits = self.model(input_ids=torch.tensor([input_ids])).logits[0]
        self.forwards += 1
        n, m = len(prompt_ids), len(target_ids)
        sel = logits[n - 1:n - 1 + m].double()                         # [m, vocab]
        logp = torch.log_softmax(sel, dim=-1)
        nll = -logp[torch.arange(m), torch.tensor(target_ids)]
        top2 = torch.topk(sel, 2, dim=-1)
        argmax = sel.argmax(dim=-1)
        assert torch.equal(argmax, top2.indices[:, 0])
        return {
            "prompt": prompt, "target": target,
            "prompt_ids": prompt_ids, "target_ids": target_ids,
            "argmax_ids": argmax.tolist(),
            "margins": [float(x) for x in (top2.values[:, 0] - top2.values[:, 1])],
            "token_nll": [float(x) for x in nll],
            "joint_differs": differs,
        }


def accuracy_entry(p):
    correct = [int(a == t) for a, t in zip(p["argmax_ids"], p["target_ids"])]
    return {
        "prompt": p["prompt"], "target": p["target"],
        "prompt_ids": p["prompt_ids"], "target_ids": p["target_ids"],
        "argmax_ids": p["argmax_ids"],
        "margins": [Num(x, MARGIN_SIG) for x in p["margins"]],
        "token_acc": Num(sum(correct) / len(correct)),
        "exact_match": all(correct),
        "joint_differs": p["joint_differs"],
    }


def zsre_record(scorer, index, rec):
    port = rec.get("portability") or {}
    rel = scorer.probe("zsre.reliability", rec["src"], rec["alt"])
    gen = scorer.probe("zsre.generality", rec["rephrase"], rec["alt"])
    por = scorer.probe("zsre.portability", port["New Question"], port["New Answer"])
    spe = scorer.probe("zsre.specificity", rec["loc"] + "?", rec["loc_ans"])
    loc = scorer.probe("zsre.locality", rec["loc"], rec["loc_ans"])
    probes = {"reliability": accuracy_entry(rel), "generality": accuracy_entry(gen),
              "portability": accuracy_entry(por), "specificity": accuracy_entry(spe)}
    out = {"index": index}
    for name, e in probes.items():
        out[name] = e["token_acc"]
        out[name + "_em"] = e["exact_match"]
    out["locality_argmax"] = loc["argmax_ids"]
    out["probes"] = probes
    out["probes"]["locality"] = {
        "prompt": loc["prompt"], "target": loc["target"], "prompt_ids": loc["prompt_ids"],
        "target_ids": loc["target_ids"], "argmax_ids": loc["argmax_ids"],
        "margins": [Num(x, MARGIN_SIG) for x in loc["margins"]], "joint_differs": loc["joint_differs"],
    }
    return out


def cf_side(p):
    nll = float(np.mean(p["token_nll"]))
    return {"target": p["target"], "target_ids": p["target_ids"], "argmax_ids": p["argmax_ids"],
            "token_nll": [Num(x) for x in p["token_nll"]], "nll": nll, "prob": math.exp(-nll),
            "joint_differs": p["joint_differs"]}


def cf_prompt(scorer, kind, prompt, new, true, neighborhood):
    pn = scorer.probe(f"counterfact.{kind}", prompt, new)
    pt = scorer.probe(f"counterfact.{kind}", prompt, true)
    assert pn["prompt_ids"] == pt["prompt_ids"]
    n, t = cf_side(pn), cf_side(pt)
    if neighborhood:
        score, magnitude = n["nll"] > t["nll"], t["prob"] - n["prob"]
    else:
        score, magnitude = n["nll"] < t["nll"], n["prob"] - t["prob"]
    entry = {"prompt": prompt, "prompt_ids": pn["prompt_ids"], "score": bool(score), "magnitude": Num(magnitude),
             "nll_new": Num(n["nll"]), "nll_true": Num(t["nll"]), "p_new": Num(n["prob"]), "p_true": Num(t["prob"]),
             "new": n, "true": t}
    for side in (n, t):
        side["nll"], side["prob"] = Num(side["nll"]), Num(side["prob"])
    # Raw float values for the aggregates (the Num values above are rounded for writing).
    return entry, float(score), magnitude, n, t


def counterfact_record(scorer, index, rec):
    out = {"index": index, "case_id": rec["case_id"]}
    raw = {}
    for kind, key, true_key, neigh in (("efficacy", "prompt", "ground_truth", False),
                                       ("paraphrase", "rephrase_prompt", "ground_truth", False),
                                       ("neighborhood", "locality_prompt", "locality_ground_truth", True)):
        entry, s, mag, _, _ = cf_prompt(scorer, kind, rec[key], rec["target_new"], rec[true_key], neigh)
        out[f"{kind}_score"] = entry["score"]
        out[f"{kind}_magnitude"] = entry["magnitude"]
        out.setdefault("prompts", {})[kind] = entry
        raw[kind] = (s, mag)
    return out, raw


def harmonic(xs):
    return 0.0 if any(x <= 0 for x in xs) else len(xs) / sum(1 / x for x in xs)


def ibke_ids(binary, text, special):
    cmd = [binary, "tokenize", "--ids-only"] + ([] if special else ["--no-special"]) + ["--", text]
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return [int(x) for x in r.stdout.split()]


def parity_check(binary, scorer, zsre_fixture, cf_fixture):
    """IBKE's ids for hand-picked strings and every prompt/target of the fixture records."""
    cases = [(s, True) for s in PARITY_STRINGS] + [(s, False) for s in PARITY_STRINGS]
    for r in zsre_fixture:
        for p in r["probes"].values():
            cases += [(p["prompt"], True), (p["target"], False)]
    for r in cf_fixture:
        for p in r["prompts"].values():
            cases += [(p["prompt"], True), (p["new"]["target"], False), (p["true"]["target"], False)]
    seen, mismatches = set(), []
    for text, special in cases:
        if (text, special) in seen:
            continue
        seen.add((text, special))
        ours, theirs = scorer.encode(text, special), ibke_ids(binary, text, special)
        if ours != theirs:
            mismatches.append({"text": text, "special": special, "reference": ours, "ibke": theirs})
    return {"binary": binary, "strings_checked": len(seen), "mismatches": mismatches}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gguf", default=str(DEFAULT_GGUF))
    ap.add_argument("--name", default="smollm2-135m-instruct-q4_1")
    ap.add_argument("--zsre", default=DEFAULT_ZSRE)
    ap.add_argument("--counterfact", default=DEFAULT_CF)
    ap.add_argument("--records", type=int, default=200, help="records of each dataset for the aggregates")
    ap.add_argument("--fixture-records", type=int, default=20, help="records of each dataset in the fixture")
    ap.add_argument("--out-full", default=DEFAULT_FULL)
    ap.add_argument("--fixture", default=str(DEFAULT_FIXTURE))
    ap.add_argument("--ibke", default=None, help="an ibke binary: check tokenisation parity with it")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    t0 = time.time()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    gguf_path = os.path.abspath(args.gguf)
    d, fname = os.path.dirname(gguf_path), os.path.basename(gguf_path)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=fname)
    # The two pre-tokenizers differ on whitespace before digits: "x  1" is [104, 216, 216, 33] with the
    # GPT-2 regex and [104, 256, 33] with SmolLM2's (Tests/TokenizersTests/Fixtures/smollm2-ids.json).
    gpt2_tok_ids = tok("x  1")["input_ids"]
    tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    assert gpt2_tok_ids == [104, 216, 216, 33] and tok("x  1")["input_ids"] == [104, 256, 33], \
        "unexpected pre-tokenizer behaviour"
    adds_bos = tok("a")["input_ids"] != tok("a", add_special_tokens=False)["input_ids"]
    assert not adds_bos, "expected no BOS (tokenizer.ggml.add_bos_token = false)"
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=fname, dtype=torch.float32)
    model.eval()
    t_load = time.time() - t0
    scorer = Scorer(model, tok)

    with open(args.zsre) as f:
        zsre_all = json.load(f)
    with open(args.counterfact) as f:
        cf_all = json.load(f)

    # zsRE
    zsre_records, skipped = [], []
    for i, rec in enumerate(zsre_all[:args.records]):
        if not rec["alt"].strip():
            skipped.append(i)
            continue
        port = rec.get("portability") or {}
        assert port.get("New Question") and port.get("New Answer") and rec["loc_ans"].strip(), i
        zsre_records.append(zsre_record(scorer, i, rec))
        if (i + 1) % 50 == 0:
            print(f"  zsRE {i + 1}/{args.records} ({time.time() - t0:.0f} s)", flush=True)
    zkeys = ["reliability", "generality", "portability", "specificity"]
    zsre_agg = {"records": len(zsre_records), "skipped_empty_alt": len(skipped)}
    for k in zkeys:
        zsre_agg[k] = float(np.mean([r[k] for r in zsre_records]))
    for k in zkeys:
        zsre_agg[k + "_em"] = float(np.mean([float(r[k + "_em"]) for r in zsre_records]))
    t_zsre = time.time() - t0 - t_load
    print(f"zsRE: {len(zsre_records)} records ({len(skipped)} skipped) in {t_zsre:.1f} s", flush=True)

    # CounterFact
    cf_records, raws = [], []
    for i, rec in enumerate(cf_all[:args.records]):
        r, raw = counterfact_record(scorer, i, rec)
        cf_records.append(r)
        raws.append(raw)
        if (i + 1) % 50 == 0:
            print(f"  CounterFact {i + 1}/{args.records} ({time.time() - t0:.0f} s)", flush=True)
    cf_agg = {"records": len(cf_records)}
    for kind in ("efficacy", "paraphrase", "neighborhood"):
        cf_agg[f"{kind}_score"] = float(np.mean([r[kind][0] for r in raws]))
        cf_agg[f"{kind}_magnitude"] = float(np.mean([r[kind][1] for r in raws]))
    cf_agg["score"] = harmonic([cf_agg["efficacy_score"], cf_agg["paraphrase_score"], cf_agg["neighborhood_score"]])
    # Near-ties: records whose score would flip with a small NLL error.
    close = {kind: sum(1 for r in cf_records if abs(r["prompts"][kind]["nll_new"] - r["prompts"][kind]["nll_true"]) < 1e-2)
             for kind in ("efficacy", "paraphrase", "neighborhood")}
    t_cf = time.time() - t0 - t_load - t_zsre
    print(f"CounterFact: {len(cf_records)} records in {t_cf:.1f} s", flush=True)

    zsre_small_margin = {k: sum(1 for r in zsre_records for m in r["probes"][k]["margins"] if m < 1e-2)
                         for k in zkeys + ["locality"]}
    joint = {k: len(v) for k, v in sorted(scorer.joint_differs.items())}
    n_fix = args.fixture_records
    parity = None
    if args.ibke:
        parity = parity_check(args.ibke, scorer, zsre_records[:n_fix], cf_records[:n_fix])
        print(f"IBKE parity: {parity['strings_checked']} strings, {len(parity['mismatches'])} mismatches")
        for m in parity["mismatches"][:10]:
            print("  ", m)

    wall = time.time() - t0
    vers = {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "gguf": version("gguf"),
            "tokenizers": version("tokenizers"), "numpy": np.__version__}
    rel_script = os.path.relpath(os.path.abspath(__file__), REPO)
    header = {
        "format": "ibke-pre-edit-eval-reference", "version": 1,
        "model": args.name, "gguf_file": fname, "gguf_sha256": sha256(gguf_path),
        "dtype": "float32",
        "produced_by": "transformers GGUF loader (weights dequantized to float32), PyTorch on the CPU, "
                       "one sequence per forward pass",
        "generator": {
            "script": rel_script,
            "command": " ".join([os.path.basename(sys.executable), rel_script] + sys.argv[1:]),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "versions": vers, "torch_threads": torch.get_num_threads(),
        },
        "tokenizer": {
            "source": "transformers' GGUF tokenizer with pre_tokenizer = Sequence[Digits(individual_digits=True), "
                      "ByteLevel(add_prefix_space=False, use_regex=True)] (SmolLM2 / llama.cpp `smollm`)",
            "adds_bos": adds_bos, "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id,
        },
        "datasets": {
            "zsre": {"file": os.path.basename(args.zsre), "sha256": sha256(args.zsre), "first_records": args.records},
            "counterfact": {"file": os.path.basename(args.counterfact), "sha256": sha256(args.counterfact),
                            "first_records": args.records},
        },
        "notes": [
            "prompt_ids = tok(prompt) with the default special tokens (no BOS for this model); target = ' ' + answer "
            "unless the answer starts with whitespace; target_ids = tok(target, add_special_tokens=False).",
            "input = prompt_ids + target_ids[:-1]; the logits at position len(prompt_ids)-1+j predict target_ids[j].",
            "token_acc = mean_j [argmax_ids[j] == target_ids[j]]; exact_match = all j. margins[j] = top-1 minus top-2 logit.",
            "zsRE: reliability (src, alt), generality (rephrase, alt), portability (New Question, New Answer), "
            "specificity (loc + '?', loc_ans) against the ground truth; locality_argmax = argmax ids at the loc_ans "
            "positions of (loc, loc_ans). Records with an empty alt are skipped (skipped_empty_alt).",
            "CounterFact: nll = mean token NLL (natural log) of the target given the prompt, p = exp(-nll). efficacy "
            "(prompt) and paraphrase (rephrase_prompt): score = nll_new < nll_true, magnitude = p_new - p_true; "
            "neighborhood (locality_prompt, true = locality_ground_truth): score = nll_true < nll_new, magnitude = "
            "p_true - p_new. score = harmonic mean of the efficacy, paraphrase and neighborhood scores.",
            "Aggregates are fractions (x1), means over records. zsRE: the means of the per-record token accuracies as "
            "written here (7 significant digits); CounterFact: of unrounded values. Per-record floats are written "
            "with 7 significant digits (margins 4).",
            "joint_differs: tok(prompt) + tok(target) != tok(prompt + target); IBKE (and this reference) tokenises "
            "them separately.",
        ],
        "aggregates": {"zsre": zsre_agg, "counterfact": cf_agg},
        "diagnostics": {
            "joint_tokenization_differs": joint,
            "zsre_positions_with_margin_below_0.01": zsre_small_margin,
            "counterfact_prompts_with_abs_nll_diff_below_0.01": close,
            "forward_passes": scorer.forwards,
            "seconds": {"load": round(t_load, 1), "zsre": round(t_zsre, 1), "counterfact": round(t_cf, 1),
                        "total": round(wall, 1)},
        },
    }
    if parity is not None:
        header["diagnostics"]["ibke_tokenization_parity"] = {
            "strings_checked": parity["strings_checked"], "mismatches": len(parity["mismatches"])}

    full = dict(header)
    full["diagnostics"] = dict(header["diagnostics"])
    full["diagnostics"]["joint_tokenization_differs_cases"] = {
        k: [list(x) for x in v] for k, v in sorted(scorer.joint_differs.items())}
    if parity is not None:
        full["diagnostics"]["ibke_tokenization_parity"] = parity
    full["zsre"] = {"skipped_indices": skipped, "records": zsre_records}
    full["counterfact"] = {"records": cf_records}
    os.makedirs(os.path.dirname(os.path.abspath(args.out_full)), exist_ok=True)
    text = emit(full) + "\n"
    json.loads(text)
    with open(args.out_full, "w") as f:
        f.write(text)
    print(f"wrote {args.out_full} ({len(text.encode()):,} bytes)")

    fixture = dict(header)
    fixture["zsre"] = {"skipped_indices": skipped, "records": [
        dict(r, input=zsre_all[r["index"]]) for r in zsre_records if r["index"] < n_fix]}
    fixture["counterfact"] = {"records": [dict(r, input=cf_all[r["index"]]) for r in cf_records[:n_fix]]}
    text = emit(fixture) + "\n"
    json.loads(text)
    size = len(text.encode())
    assert size < MAX_FIXTURE_BYTES, f"fixture is {size} bytes, over {MAX_FIXTURE_BYTES}"
    os.makedirs(os.path.dirname(os.path.abspath(args.fixture)), exist_ok=True)
    with open(args.fixture, "w") as f:
        f.write(text)
    print(f"wrote {args.fixture} ({size:,} bytes)")

    print("zsRE (x100): " + ", ".join(f"{k} {100 * v:.2f}" for k, v in zsre_agg.items() if isinstance(v, float)))
    print("CounterFact (x100): " + ", ".join(f"{k} {100 * v:.2f}" for k, v in cf_agg.items() if isinstance(v, float)))
    print("joint tokenisation differs:", joint)
    print("near ties:", zsre_small_margin, close)
    print(f"wall time {wall:.1f} s (load {t_load:.1f} s, {scorer.forwards} forward passes)")
    if parity is not None and parity["mismatches"]:
        sys.exit("tokenisation differs from IBKE's")


if __name__ == "__main__":
    main()
