#!/usr/bin/env python3
"""IBKE's speed and memory beside llama.cpp's, on the same GGUF file and the same thread count.

Rounds alternate between the two (llama.cpp, then IBKE, then llama.cpp, ...) so that the
machine's noise hits both; each measurement runs in a fresh process, whose peak resident set
size the operating system reports (wait4). Measured per round:

- prefill 32 and 512 tokens (tokens/s, one forward pass over random tokens): llama.cpp through
  `Llama.eval`, IBKE through `ibke bench` (which also computes the logits of every prompt
  position, llama.cpp only the last one's: IBKE's prefill does more work);
- decode (tokens/s, one token at a time with the KV cache after a 32-token prompt);
- peak RSS of generating 64 tokens: `ibke generate` and a llama.cpp script doing the same.
  With `--cold` (root only) the page cache is dropped before each of these runs. A warm run's
  peak depends on what the cache holds: the kernel maps the cached pages around each page a
  program touches, so the same executable can peak some MB higher or lower from run to run.

The script prints each round and the medians, and the ratios IBKE / llama.cpp (above 1: IBKE is
faster, or for memory uses more). llama-cpp-python compiles llama.cpp (10-40 minutes on 2 cores);
keep its virtual environment outside the repository and check that the system info line shows
the CPU's SIMD features (AVX2, AVX512 ...):

    python3 -m venv ~/venv-llamacpp
    CMAKE_ARGS="-DGGML_NATIVE=ON" ~/venv-llamacpp/bin/pip install llama-cpp-python
    swift build -c release
    ~/venv-llamacpp/bin/python Scripts/bench_llamacpp.py --threads 2 --rounds 3
"""
import argparse, json, os, re, statistics, subprocess, sys

LLAMA_BENCH = r"""
import json, random, sys, time
import llama_cpp
from llama_cpp import Llama
path, threads, decode_tokens = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
llm = Llama(model_path=path, n_threads=threads, n_threads_batch=threads, n_ctx=1024, n_batch=512,
            n_ubatch=512, verbose=False)
rng = random.Random(42)
vocab = llm.n_vocab()
def tokens(n): return [rng.randrange(vocab) for _ in range(n)]
def timed(f, repeats=3):
    best = float("inf")
    for _ in range(repeats):
        llm.reset()
        start = time.perf_counter(); f(); best = min(best, time.perf_counter() - start)
    return best
result = {"system_info": llama_cpp.llama_print_system_info().decode()}
for n in (32, 512):
    prompt = tokens(n)
    result[f"prefill{n}"] = n / timed(lambda: llm.eval(prompt))
prompt = tokens(32)
def decode():
    llm.reset(); llm.eval(prompt)
    start = time.perf_counter()
    for _ in range(decode_tokens):
        llm.eval([int(llm.scores[llm.n_tokens - 1].argmax())])
    return time.perf_counter() - start
result["decode"] = decode_tokens / min(decode() for _ in range(3))
print(json.dumps(result))
"""

LLAMA_GENERATE = r"""
import sys
from llama_cpp import Llama
llm = Llama(model_path=sys.argv[1], n_threads=int(sys.argv[2]), n_ctx=512, verbose=False)
out = llm("The capital of France is", max_tokens=64, temperature=0.0)
print(out["choices"][0]["text"])
"""


def run(command):
    """Runs `command`; returns its standard output (exits with its error when it fails)."""
    process = subprocess.run(command, capture_output=True, text=True)
    if process.returncode != 0:
        sys.exit(f"{' '.join(command[:3])} ... failed ({process.returncode}):\n{process.stderr[-2000:]}")
    return process.stdout


def peak_rss_mb(command, cold=False):
    """Peak resident set size of `command` in MB (ru_maxrss is in KB on Linux); `cold` drops the
    page cache first."""
    if cold:
        subprocess.run(["sync"], check=True)
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("1")
    pid = os.fork()
    if pid == 0:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1); os.dup2(devnull, 2)
        os.execvp(command[0], command)
    _, status, usage = os.wait4(pid, 0)
    if status != 0:
        sys.exit(f"{' '.join(command[:3])} ... failed (status {status})")
    return usage.ru_maxrss / 1024


def ibke_bench(ibke, model, threads, dtype, decode_tokens):
    out = run([ibke, "bench", "--model", model, "--threads", str(threads), "--dtype", dtype,
                  "--repeats", "3", "--decode-tokens", str(decode_tokens)])
    result = {}
    for n in (32, 512):
        match = re.search(rf"prefill\s+{n} tokens:\s+([\d.]+) tokens/s", out)
        result[f"prefill{n}"] = float(match.group(1))
    result["decode"] = float(re.search(r"decode \(after 32 tokens\):\s+([\d.]+) tokens/s", out).group(1))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_model = os.path.expanduser("~/.cache/ibke/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    parser.add_argument("--model", default=os.environ.get("IBKE_HOME") and
                        os.path.join(os.environ["IBKE_HOME"], "models/SmolLM2-135M-Instruct.Q4_1.gguf") or default_model)
    parser.add_argument("--ibke", default=".build/release/ibke")
    parser.add_argument("--dtype", default="native", help="IBKE's --dtype (f32, native, native-int8)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--decode-tokens", type=int, default=64)
    parser.add_argument("--cold", action="store_true", help="drop the page cache before each peak-RSS run (root)")
    args = parser.parse_args()

    size_mb = os.path.getsize(args.model) / 2**20
    print(f"model: {args.model} ({size_mb:.0f} MB), {args.threads} threads, IBKE --dtype {args.dtype}")
    keys = ["prefill32", "prefill512", "decode", "rss"]
    rows = {"llama.cpp": {k: [] for k in keys}, "ibke": {k: [] for k in keys}}
    for r in range(args.rounds):
        out = run([sys.executable, "-c", LLAMA_BENCH, args.model, str(args.threads), str(args.decode_tokens)])
        llama = json.loads(out.strip().splitlines()[-1])
        if r == 0:
            print(f"llama.cpp system info: {llama['system_info'].strip()}")
        llama["rss"] = peak_rss_mb([sys.executable, "-c", LLAMA_GENERATE, args.model, str(args.threads)], args.cold)
        ibke = ibke_bench(args.ibke, args.model, args.threads, args.dtype, args.decode_tokens)
        ibke["rss"] = peak_rss_mb([args.ibke, "generate", "--model", args.model, "--threads", str(args.threads),
                                   "--dtype", args.dtype, "--max-tokens", "64", "The capital of France is"], args.cold)
        for name, result in (("llama.cpp", llama), ("ibke", ibke)):
            for k in keys:
                rows[name][k].append(result[k])
        print(f"round {r + 1}: " + "; ".join(
            f"{k} {ibke[k]:.1f} / {llama[k]:.1f}" for k in keys) + " (IBKE / llama.cpp; tokens/s, RSS MB)")

    print("\n| | prefill 32 (tokens/s) | prefill 512 (tokens/s) | decode (tokens/s) | peak RSS, generate 64 (MB) |")
    print("|---|---|---|---|---|")
    medians = {name: {k: statistics.median(v) for k, v in row.items()} for name, row in rows.items()}
    for name in ("llama.cpp", "ibke"):
        m = medians[name]
        print(f"| {name} | {m['prefill32']:.1f} | {m['prefill512']:.1f} | {m['decode']:.1f} | {m['rss']:.0f} |")
    ratio = {k: medians["ibke"][k] / medians["llama.cpp"][k] for k in keys}
    print(f"| IBKE / llama.cpp | {ratio['prefill32']:.2f}× | {ratio['prefill512']:.2f}× | {ratio['decode']:.2f}× | {ratio['rss']:.2f}× |")
    print(f"\nIBKE's peak RSS is {medians['ibke']['rss'] / size_mb:.2f}× the GGUF's size ({size_mb:.0f} MB).")


if __name__ == "__main__":
    main()
