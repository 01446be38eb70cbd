#!/usr/bin/env python3
"""The official `openai` client against `ibke serve`, unchanged: models, a streamed chat
completion from the edited and the original model, a plain completion, and an edit made and
reverted through the editing API.

    pip install openai
    ibke serve --port 8080 &
    python3 Scripts/serve_openai_client.py --base-url http://127.0.0.1:8080/v1 [--api-key KEY] [--edit]

Exits non-zero when an answer is not what the server's contract says.
"""
import argparse
import json
import sys
import urllib.request

from openai import OpenAI


def call(base, method, path, body=None, key=None):
    request = urllib.request.Request(base + path, method=method, data=None if body is None else json.dumps(body).encode())
    request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", "Bearer " + key)
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.loads(response.read())


def stream_chat(client, model, question):
    pieces, finish = [], None
    for chunk in client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": question}], stream=True, max_tokens=24, temperature=0):
        choice = chunk.choices[0]
        pieces.append(choice.delta.content or "")
        finish = choice.finish_reason or finish
    return "".join(pieces), finish


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", default="http://127.0.0.1:8080/v1")
    parser.add_argument("--api-key", default="none")
    parser.add_argument("--edit", action="store_true", help="also edit the Eiffel Tower to Rome, then revert")
    parser.add_argument("--edit-method", default="rome", help="the method of --edit (rome needs the server's statistics)")
    args = parser.parse_args()
    client = OpenAI(base_url=args.base_url, api_key=args.api_key)
    key = None if args.api_key == "none" else args.api_key

    models = [m.id for m in client.models.list().data]
    print("models:", models)
    assert models == ["edited", "original"], models

    text, finish = stream_chat(client, "edited", "What is the capital of France?")
    print(f"streamed chat (edited): {text!r} finish={finish}")
    assert text.strip() and finish in ("stop", "length")

    prompt = "The Eiffel Tower is located in the city of"
    completion = client.completions.create(model="edited", prompt=prompt, max_tokens=6, temperature=0)
    print(f"completion: {prompt!r} → {completion.choices[0].text!r} usage={completion.usage}")

    if args.edit:
        report = call(args.base_url, "POST", "/edits", {"method": args.edit_method, "prompt": "{} is located in the city of",
                                                       "subject": "The Eiffel Tower", "target": "Rome"}, key)
        print(f"edit {report['id']}: P(Rome) {report['before']['target_probability']:.4f} → "
              f"{report['after']['target_probability']:.4f} in {report['seconds']:.2f} s")
        edited = client.completions.create(model="edited", prompt=prompt, max_tokens=4, temperature=0).choices[0].text
        original = client.completions.create(model="original", prompt=prompt, max_tokens=4, temperature=0).choices[0].text
        print(f"after the edit: edited {edited!r}, original {original!r}")
        assert edited.strip().startswith("Rome") and original.strip().startswith("Paris")
        call(args.base_url, "DELETE", "/edits/" + report["id"], key=key)
        reverted = client.completions.create(model="edited", prompt=prompt, max_tokens=4, temperature=0).choices[0].text
        print(f"after the revert: edited {reverted!r}")
        assert reverted == original
    print("ok")


if __name__ == "__main__":
    sys.exit(main())
