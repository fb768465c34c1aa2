#!/usr/bin/env python3
"""Writes <family>.expected.tsv: token ids from HuggingFace `tokenizers`.

Run with a Python that has `tokenizers` (pip install tokenizers):
  python3 test/tokenizer/gen_expected.py
Each line: hex(UTF-8 text) TAB ids (space-separated) TAB hex(decode(ids)),
or "=" when decode(ids) is the text itself.
Ids are encode(text, add_special_tokens=False); decode keeps special tokens.
Python only makes the data; the C++ unit tests compare against it.
"""
import gzip
import os
import random

from tokenizers import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
FAMILIES = ["deepseek_v3", "qwen3", "llama3"]

CASES = [
    "",
    " ",
    "a",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "  leading spaces and trailing spaces   ",
    "tabs\tand\t\ttabs\n\nnewlines\r\nCRLF\n",
    "trailing newline\n",
    "\n\n\n",
    "    \n    indented\n\tcode\n",
    "x  \n  y",
    "I'm sure you're right, they've said it's 'quoted' and we'll see; I'd go.",
    "DON'T SHOUT, IT'S LOUD, YOU'RE RIGHT",
    "'s 'S 'ſ 'll 'LL'Ve",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
    "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }\n// done",
    "if x==1&&y!=2||z>=3: print(\"ok\")  # comment",
    "https://example.com/path?query=1&b=2#frag",
    "12345678901234567890",
    "3.14159 and 2,718 and 1e-10 and -42 and 0x1F",
    "Phone: 555-1234, year 2024, ¹²³ ½ Ⅻ ٣٤٥ १२३",
    "中文字符测试，你好世界！这是一个句子。",
    "日本語のテキスト、ひらがなとカタカナ。",
    "한국어 텍스트입니다. 안녕하세요!",
    "مرحبا بالعالم، هذا نص عربي.",
    "שלום עולם, זה טקסט בעברית.",
    "नमस्ते दुनिया, यह हिंदी पाठ है।",
    "Привет, мир! Съешь же ещё этих мягких булок.",
    "Ελληνικά κείμενα και τόνοι.",
    "ไทย ภาษาไทย",
    "emoji 😀😃😄 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ 🇺🇸",
    "café naïve résumé Zürich Ångström",
    "cafe\u0301 nai\u0308ve A\u030angstro\u0308m",
    "e\u0301\u0323 q\u0307\u0323 \u1e0b\u0323 \u212b \u2126",
    "\u1100\u1161\u11a8 \u1100\u1161 가\u11a8",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nHi<|eot_id|>",
    "<｜begin▁of▁sentence｜>Hello<｜end▁of▁sentence｜>",
    "<｜User｜>What is 2+2?<｜Assistant｜><think>\nEasy.\n</think>4",
    "<|endoftext|><|endoftext|>x<|endoftext",
    "a<|im_start|b",
    "Mixed: English, 中文, 한국어, العربية, emoji 🎉, code `x = 1`.",
    "!!!??? ... --- *** ### $$$ %%% ^^^ &&& ((( ))) [[[ ]]] {{{ }}}",
    "a\u00a0b\u2003c\u3000d\u200be\u0085f\u001cg",
    "\u00ad soft hyphen and \ufeff BOM and \u200d ZWJ",
    "mañana 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟙𝟚𝟛",
    "x" * 300,
    " " * 50 + "end",
    "word " * 40,
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÐÑÒÓÔÕÖ×ØÙÚÛÜÝÞßàáâãäåæçèéêëìíîïðñòóôõö÷øùúûüýþÿ",
    "\u0000\u0001\u0007\u007f controls",
]


# Random mixtures of the pieces above and of random code points (all planes,
# combining marks, Unicode 15/16 letters) catch what hand-picked strings miss.
FRAGMENTS = [c for c in CASES if 0 < len(c) < 40] + [
    "'s", "'LL", "'ſ", "\r", "\u2028", "\u0085", "\u200d", "A\u030a",
    "\u1100\u1161", "\U00011f04", "\U00010d50", "\U0001ccca", "<think>",
    "</think>", "<|eot_id|>", "<|begin_of_text|>", "ﬁ", "İ", "\u0345",
]


def random_cases(count, length):
    rng = random.Random(8)
    cases = []
    for _ in range(count):
        parts = []
        for _ in range(length):
            if rng.random() < 0.6:
                parts.append(rng.choice(FRAGMENTS))
                continue
            low, high = rng.choice([(0x20, 0x7E), (0xA0, 0x2FFF),
                                    (0x300, 0x36F), (0x3000, 0xD7FF),
                                    (0xE000, 0xFFFF), (0x10000, 0x1FFFF)])
            parts.append(chr(rng.randint(low, high)))
        cases.append("".join(parts))
    return cases


def main():
    for family in FAMILIES:
        path = os.path.join(HERE, f"{family}.tokenizer.json.gz")
        with gzip.open(path, "rt", encoding="utf-8") as f:
            tokenizer = Tokenizer.from_str(f.read())
        lines = []
        for text in CASES + random_cases(16, 100):
            ids = tokenizer.encode(text, add_special_tokens=False).ids
            decoded = tokenizer.decode(ids, skip_special_tokens=False)
            lines.append("\t".join([
                text.encode("utf-8").hex(),
                " ".join(map(str, ids)),
                "=" if decoded == text else decoded.encode("utf-8").hex(),
            ]))
        with open(os.path.join(HERE, f"{family}.expected.tsv"), "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
