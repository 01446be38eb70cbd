"""The test strings shared by every tokenizer fixture (see make_tokenizer_fixtures.py).

Deterministic: hand-written cases first, then seeded random combinations of the same kinds of
material (accents, CJK, Arabic, emoji with ZWJ sequences, digit runs, whitespace runs, contractions,
code, inline special tokens), then a few long paragraphs that exercise the long-word BPE path.
"""

import random

HANDWRITTEN = [
    "",
    " ",
    "  ",
    "   ",
    "\t",
    "\n",
    "\n\n",
    " \n",
    "\r\n",
    " \r\n \r\n",
    "a",
    "Hello",
    "Hello world",
    " Hello world",
    "Hello world ",
    "Hello  world",
    "Hello   world   ",
    "hello\tworld",
    "hello\t\tworld\t",
    "hello\nworld\n",
    "line one\n\nline two\n\n\n",
    "trailing spaces   ",
    "   leading spaces",
    "The capital of France is",
    "The mother tongue of Danielle Darrieux is",
    "Once upon a time, there was a little robot who wanted to learn how to paint.",
    "I'm here. You're there. We've been. He'll go. She'd say. It's fine. Don't!",
    "I'M HERE. YOU'RE THERE. WE'VE BEEN. HE'LL GO. SHE'D SAY. IT'S FINE. DON'T!",
    "JOHN'S car, Mary'S book, THEY'LL see, we'Ve, i'M",
    "'s 't 're 've 'm 'll 'd",
    "'S 'T 'RE 'VE 'M 'LL 'D",
    "don't'll've'd",
    "'ſ 'K ﬀ",
    "rock 'n' roll",
    "''quoted''",
    "1",
    "12",
    "123",
    "1234",
    "12345",
    "1234567890",
    "3.14159",
    "1,000,000",
    "a1b2c3",
    "x  1",
    "a  12 3",
    "hello  2024",
    "abc\n 1",
    "  1",
    "\t7",
    "Call 555-1234 or +1 (800) 555-0199.",
    "Version 2.0.1-beta+build.42",
    "٣٤٥ ١٢٣",
    "Ⅻ ½ ² ③",
    "１２３ full width",
    "café",
    "naïve résumé",
    "Ærøskøbing",
    "e\u0301",
    "cafe\u0301 vs café",
    "Straße über Öl",
    "Ελληνικά γράμματα",
    "русский язык",
    "日本語のテキスト",
    "中文字符测试",
    "한국어 텍스트",
    "ไทย ภาษา",
    "हिन्दी भाषा",
    "العربية لغة جميلة",
    "עברית",
    "مرحبا بالعالم 123",
    "😀",
    "😀😀😀",
    "Hello 😀 world 🎉!",
    "👍🏽",
    "👨‍👩‍👧‍👦",
    "👩‍💻 coding",
    "🏳️‍🌈",
    "❤️",
    "🇫🇷🇯🇵",
    "a\u200db",
    "zero\u200bwidth",
    "\ufeffBOM",
    "non\u00a0breaking\u00a0space",
    "ideographic\u3000space",
    "line\u2028separator",
    "next\u0085line",
    "tab\vvertical\fform",
    "mixed \t\n whitespace \t",
    "\u00a0\u00a0x",
    "x\u00a0 \u00a0",
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n",
    "text<|im_end|>more",
    " <|im_end|> ",
    "<|im_start|><|im_end|>",
    "<|im_start|",
    "<|im_start|>>",
    "<<|im_start|>",
    "<s>",
    "</s>",
    "<s>Hello</s>",
    "<s> Hello </s>",
    "<unk>",
    "<0x41>",
    "<think>reasoning</think> answer",
    " <think> x </think>",
    "def foo(x):\n    return x * 2\n",
    "for (int i = 0; i < n; ++i) { sum += a[i]; }",
    "if x == 1:\n\tprint('one')\nelif x >= 2:\n\tpass",
    "const f = (a, b) => a ?? b;",
    "#include <stdio.h>\nint main(void) { return 0; }",
    "SELECT * FROM users WHERE id = 42;",
    "<div class=\"main\">Hello</div>",
    "{\"key\": [1, 2, 3], \"nested\": {\"a\": null}}",
    "https://example.com/path?q=1&r=2#frag",
    "user@example.com",
    "$HOME/.config && echo $PATH | grep -v '^#'",
    "    indented four",
    "        indented eight\n        again",
    "x = [1,2,3]  # comment   ",
    "a.b.c...d!!!???",
    "--- *** ___ ===",
    "!!!",
    "...",
    "?!",
    "(parenthesis) [brackets] {braces}",
    "«guillemets» „quotes“ ‘single’ “double”",
    "em—dash en–dash",
    "100% € £ ¥ ₹ ©®™",
    "∑ ∫ √ ∞ ≠ ≤ ≥",
    "→ ← ↑ ↓",
    "♠♣♥♦",
    "~`^",
    "\\ backslash \\\\",
    "tab\tseparated\tvalues\t1\t2",
    "CamelCaseIdentifier snake_case_identifier kebab-case",
    "ALLCAPS lowercase MiXeD",
    "supercalifragilisticexpialidocious",
    "pneumonoultramicroscopicsilicovolcanoconiosis",
    "The year 1999 and 2000.",
    "A\nB\nC",
    "\n\n\n\n",
    "          ",
    "\t\t\t",
    " \t \t ",
    "end with newline\n",
    "end with space ",
    "Mr. O'Neil's dog",
    "It's 5 o'clock",
    "naïve café résumé 日本 😀 123",
]

WORDS = (
    "the of and to in is was for on that with as by at from his her an be this are "
    "which or had have it not were but they she he been has their one all would there "
    "what so up out if about who get go me when make can like time no just him know "
    "take people into year your good some could them see other than then now look "
    "only come its over think also back after use two how our work first well way even "
    "new want because any these give day most us language model token tokenizer "
    "Paris France London computer science engineer Hugging Face SmolLM"
).split()
ACCENTED = "café naïve résumé Ærø über Straße façade jalapeño São Paulo Kraków Zürich Dvořák".split()
CJK = ["日本語", "東京", "中文", "北京市", "漢字", "한국어", "서울", "カタカナ", "ひらがな", "龍"]
ARABIC = ["مرحبا", "العالم", "كتاب", "שלום", "עולם"]
OTHER = ["Ελληνικά", "русский", "Київ", "ไทย", "हिन्दी", "ქართული", "Հայերեն"]
EMOJI = ["😀", "🎉", "👍", "👍🏽", "👨‍👩‍👧", "👩‍💻", "❤️", "🇺🇸", "🤖", "🦄", "🏳️‍🌈", "✨"]
PUNCT = [".", ",", "!", "?", ";", ":", "...", "--", "(", ")", "\"", "'", "#", "@", "&", "*", "/", "\\", "{", "}", "[", "]", "<", ">", "=", "+", "-", "_", "|", "~", "`", "^", "%", "$"]
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'VE", "'M", "'LL", "'D", "n't", "N'T"]
SPACES = [" ", "  ", "   ", "\t", "\n", "\n\n", " \n", "\t\t", "\r\n", "\u00a0", "\u3000", "    "]
SPECIALS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<s>", "</s>", "<unk>"]
CODE = ["def", "return", "x+=1", "f(x)", "a[i]", "0x1F", "i++", "==", "!=", "->", "=>", "::", "//", "/*", "*/", "{}", "()"]


def number(rng):
    return str(rng.choice([rng.randint(0, 9), rng.randint(10, 999), rng.randint(1000, 10**9)]))


def random_piece(rng):
    kind = rng.random()
    if kind < 0.40:
        word = rng.choice(WORDS)
        r = rng.random()
        if r < 0.1:
            word = word.upper()
        elif r < 0.25:
            word = word.capitalize()
        if rng.random() < 0.1:
            word += rng.choice(CONTRACTIONS)
        return word
    if kind < 0.48:
        return rng.choice(ACCENTED)
    if kind < 0.54:
        return rng.choice(CJK)
    if kind < 0.58:
        return rng.choice(ARABIC)
    if kind < 0.61:
        return rng.choice(OTHER)
    if kind < 0.67:
        return rng.choice(EMOJI)
    if kind < 0.75:
        return number(rng)
    if kind < 0.85:
        return rng.choice(PUNCT)
    if kind < 0.90:
        return rng.choice(CODE)
    if kind < 0.94:
        return rng.choice(SPECIALS)
    return rng.choice(CONTRACTIONS)


def random_string(rng):
    parts = []
    for _ in range(rng.randint(1, 12)):
        parts.append(random_piece(rng))
        r = rng.random()
        if r < 0.65:
            parts.append(" ")
        elif r < 0.85:
            parts.append(rng.choice(SPACES))
    s = "".join(parts)
    r = rng.random()
    if r < 0.15:
        s = rng.choice(SPACES) + s
    elif r < 0.3:
        s = s.rstrip(" ")
    return s


def paragraphs(rng):
    out = []
    for n in (80, 200, 400):
        out.append(" ".join(random_piece(rng) for _ in range(n)))
    out.append("".join(rng.choice(CJK) for _ in range(150)))  # one long \p{L}+ run
    out.append(" " * 300 + "x")
    out.append("7" * 120)
    out.append("ab" * 200)
    out.append("😀" * 60)
    return out


def test_strings():
    rng = random.Random(20261127)
    strings = list(HANDWRITTEN)
    seen = set(strings)
    while len(strings) < len(HANDWRITTEN) + 400:
        s = random_string(rng)
        if s not in seen:
            seen.add(s)
            strings.append(s)
    strings.extend(paragraphs(rng))
    return strings


if __name__ == "__main__":
    s = test_strings()
    print(len(s))
    for x in s[-20:-8]:
        print(repr(x))
