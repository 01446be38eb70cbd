#!/usr/bin/env python3
"""A bounded load test of `ibke serve` on loopback: CLIENTS concurrent streaming completion
clients for SECONDS while one more client applies and reverts an edit again and again.

Every streamed answer must match a model state that existed: the unedited model's answer, or
the answer the editing client read from the edited model right after one of its edits. Any HTTP
error, broken stream or other answer fails the run. Prints p50/p99 latency, time to first token
and tokens per second.

    ibke serve --port 8080 --stats-corpus ../shared/data/text_corpus &
    python3 Scripts/serve_load.py --base-url http://127.0.0.1:8080 --clients 16 --seconds 60
"""
import argparse
import http.client
import json
import statistics
import sys
import threading
import time
import urllib.parse

PROMPT = "The Eiffel Tower is located in the city of"
EDIT = {"prompt": "{} is located in the city of", "subject": "The Eiffel Tower", "target": "Rome"}


class Client:
    def __init__(self, base):
        url = urllib.parse.urlparse(base)
        self.host, self.port = url.hostname, url.port or 80

    def call(self, method, path, body=None, timeout=600):
        connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        connection.request(method, path, None if body is None else json.dumps(body),
                           {"Content-Type": "application/json"})
        response = connection.getresponse()
        data = response.read()
        connection.close()
        if response.status != 200:
            raise RuntimeError(f"{method} {path}: {response.status} {data[:300]!r}")
        return json.loads(data)

    def stream(self, model, max_tokens):
        """A streamed completion: (text, seconds to the first piece, seconds in all, pieces)."""
        start = time.monotonic()
        connection = http.client.HTTPConnection(self.host, self.port, timeout=600)
        connection.request("POST", "/v1/completions", json.dumps(
            {"model": model, "prompt": PROMPT, "max_tokens": max_tokens, "temperature": 0, "stream": True}),
            {"Content-Type": "application/json"})
        response = connection.getresponse()
        if response.status != 200:
            raise RuntimeError(f"stream: {response.status} {response.read()[:300]!r}")
        text, first, pieces, done, buffer = "", None, 0, False, b""
        while not done:
            chunk = response.read1(65536) if hasattr(response, "read1") else response.read(1)
            if not chunk:
                break
            buffer += chunk
            while b"\n\n" in buffer:
                event, buffer = buffer.split(b"\n\n", 1)
                payload = event.decode()[len("data: "):]
                if payload == "[DONE]":
                    done = True
                    break
                data = json.loads(payload)
                if "error" in data:
                    raise RuntimeError(f"stream error: {data['error']}")
                piece = data["choices"][0]["text"]
                if piece and first is None:
                    first = time.monotonic() - start
                text += piece
                pieces += 1
        connection.close()
        if not done:
            raise RuntimeError("stream ended without [DONE]")
        return text, first or 0.0, time.monotonic() - start, pieces


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", default="http://127.0.0.1:8080")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--method", default="rome")
    args = parser.parse_args()
    client = Client(args.base_url)
    if client.call("GET", "/v1/edits")["data"]:
        sys.exit("the server already holds edits; start it with an empty --state")

    original = client.stream("original", args.max_tokens)[0]
    valid = {original}
    valid_lock = threading.Lock()
    failures, results, edits = [], [], []
    deadline = time.monotonic() + args.seconds

    def editor():
        while time.monotonic() < deadline:
            try:
                report = client.call("POST", "/v1/edits", dict(EDIT, method=args.method))
                # The edited state's answer, read while this edit is applied.
                edited = client.stream("edited", args.max_tokens)[0]
                with valid_lock:
                    valid.add(edited)
                edits.append(report["seconds"])
                client.call("DELETE", "/v1/edits/" + report["id"])
            except Exception as error:  # noqa: BLE001 - every failure is reported
                failures.append(f"editor: {error}")
                return

    def reader(i):
        model = "original" if i % 4 == 3 else "edited"
        while time.monotonic() < deadline:
            try:
                results.append((model,) + client.stream(model, args.max_tokens))
            except Exception as error:  # noqa: BLE001
                failures.append(f"client {i}: {error}")
                return

    threads = [threading.Thread(target=editor)] + [threading.Thread(target=reader, args=(i,)) for i in range(args.clients)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - start

    for model, text, _, _, _ in results:
        if text not in valid or (model == "original" and text != original):
            failures.append(f"{model} answered {text!r}, which no model state gave ({sorted(valid)!r})")
    latencies = sorted(r[3] for r in results)
    firsts = sorted(r[2] for r in results)
    pieces = sum(r[4] for r in results)

    def pct(values, p):
        return values[min(len(values) - 1, int(p / 100 * len(values)))] if values else float("nan")

    print(f"{len(results)} streamed completions from {args.clients} clients in {wall:.1f} s, "
          f"{len(edits)} edits applied and reverted ({args.method}, {statistics.mean(edits) if edits else 0:.2f} s per edit)")
    print(f"latency p50 {pct(latencies, 50):.2f} s, p99 {pct(latencies, 99):.2f} s; "
          f"first token p50 {pct(firsts, 50):.2f} s, p99 {pct(firsts, 99):.2f} s; {pieces / wall:.1f} streamed pieces/s")
    print(f"answers seen: {sorted({r[1] for r in results})!r}")
    if failures:
        print(f"{len(failures)} failures, first: {failures[0]}")
        return 1
    print("ok: no errors, every answer from a model state that existed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
