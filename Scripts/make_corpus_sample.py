#!/usr/bin/env python3
"""Writes Sources/Editing/Resources/corpus-sample.txt: the text `ibke` computes second-moment
statistics from when no corpus is given (the first ROME/MEMIT/AlphaEdit edit on a fresh install).

The opening paragraphs of every article of the shared English Wikipedia sample (gensim's test
dump, ../shared/data/text_corpus/enwiki_sample), at most PER_ARTICLE characters each, cut at a
paragraph end, in the corpus's ` = Title = ` format, until TOTAL characters. Wikipedia text,
CC BY-SA 4.0. Usage: Scripts/make_corpus_sample.py [path to enwiki_articles_plain.txt]
"""
import pathlib, re, sys

PER_ARTICLE, TOTAL = 1500, 80_000
source = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else
                      pathlib.Path(__file__).resolve().parents[2] / "shared/data/text_corpus/enwiki_sample/enwiki_articles_plain.txt")
out = pathlib.Path(__file__).resolve().parents[1] / "Sources/Editing/Resources/corpus-sample.txt"

text = source.read_text(encoding="utf-8")
articles = re.split(r"^ = (.+) = $", text, flags=re.M)[1:]
parts = []
for title, body in zip(articles[0::2], articles[1::2]):
    kept, size = [], 0
    for paragraph in (p.strip() for p in body.split("\n\n")):
        if not paragraph or "\n" in paragraph or len(paragraph) < 80:
            continue  # headings and list fragments
        if size + len(paragraph) > PER_ARTICLE and kept:
            break
        kept.append(paragraph)
        size += len(paragraph)
    if kept:
        parts.append(f" = {title} = \n\n" + "\n\n".join(kept) + "\n\n")
    if sum(map(len, parts)) >= TOTAL:
        break
out.write_text("".join(parts), encoding="utf-8")
print(f"{out}: {len(parts)} articles, {out.stat().st_size} bytes")
