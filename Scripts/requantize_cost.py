#!/usr/bin/env python3
"""What writing edited tensors back in the source's block type (`ibke apply --requantize`) costs
in edit success, against storing them as float32.

N CounterFact records (from --start) are edited together: ROME one after another
(`ibke edit --sequential`), MEMIT in one batch (`ibke edit --batch`), FT-M one after another.
Each method's delta is exported twice from the default model (Q4_1), `--out-dtype f32` and
`--requantize`, and each export is scored on every record: efficacy (P(new) > P(true) after the
prompt) and paraphrase success (the same after the record's first paraphrase), as `ibke score`
reports the log-probabilities. Prints a Markdown table.

    swift build -c release
    python3 Scripts/requantize_cost.py --stats-corpus ../shared/data/text_corpus --count 20
"""
import argparse, json, os, re, subprocess, sys, tempfile

METHODS = [("rome", "--sequential"), ("memit", "--batch"), ("ft-m", "--sequential")]


def run(cmd):
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(cmd)}\n{result.stderr}")
    return result.stdout


def log_p(ibke, model, prompt, target, threads):
    out = run([ibke, "score", "--model", model, "--threads", str(threads), "--prompt", prompt, "--target", " " + target])
    return float(re.search(r"total log P = (-?[0-9.]+)", out).group(1))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ibke", default=".build/release/ibke")
    parser.add_argument("--counterfact", default="../shared/data/counterfact_easyedit/counterfact-edit.case_id_lt_10000.json")
    parser.add_argument("--stats-corpus", required=True)
    parser.add_argument("--start", type=int, default=200)
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    records = json.load(open(args.counterfact))[args.start:args.start + args.count]
    work = tempfile.mkdtemp(prefix="ibke-requantize-")
    requests = os.path.join(work, "requests.jsonl")
    with open(requests, "w") as f:
        for r in records:
            f.write(json.dumps({"prompt": r["prompt"], "subject": r["subject"], "target_new": r["target_new"],
                                "target_true": r["ground_truth"]}) + "\n")
    base = run([args.ibke, "model", "path"]).strip().splitlines()[-1]
    print(f"| method ({args.count} CounterFact records from {args.start}) | export | efficacy | paraphrase | mean log P(new) |")
    print("|---|---|---|---|---|")
    for method, mode in METHODS:
        delta = os.path.join(work, f"{method}.safetensors")
        run([args.ibke, "edit", "--method", method, mode, requests, "--stats-corpus", args.stats_corpus,
             "--threads", str(args.threads), "--save-delta", delta, "--generations", "0"])
        for label, flags in [("F32", ["--out-dtype", "f32"]), ("requantized", ["--requantize"])]:
            out = os.path.join(work, f"{method}-{label}.gguf")
            run([args.ibke, "apply", "--delta", delta, "--out", out, *flags])
            efficacy = paraphrase = 0
            new_total = 0.0
            for r in records:
                prompt = r["prompt"].replace("{}", r["subject"]) if "{}" in r["prompt"] else r["prompt"]
                new = log_p(args.ibke, out, prompt, r["target_new"], args.threads)
                efficacy += new > log_p(args.ibke, out, prompt, r["ground_truth"], args.threads)
                new_total += new
                rephrase = r["rephrase_prompt"]
                paraphrase += (log_p(args.ibke, out, rephrase, r["target_new"], args.threads)
                               > log_p(args.ibke, out, rephrase, r["ground_truth"], args.threads))
            n = len(records)
            print(f"| {method} | {label} | {100 * efficacy / n:.0f} | {100 * paraphrase / n:.0f} | {new_total / n:.3f} |", flush=True)
            os.remove(out)


if __name__ == "__main__":
    main()
