"""Deterministic sample text for produce/consume round trips: one message per line."""

import random

_WORDS = ("offset partition broker replica segment batch leader epoch watermark consumer "
          "producer idempotent compaction retention fetch produce metadata").split()
_SPECIAL = [
    "héllo wörld — ça marche, naïve façade",
    "日本語のテキストを送ります",
    "Ελληνικά και Кириллица вместе",
    "שלום עולם (right-to-left)",
    "emoji: 🚀🔥👍🏽 and a family 👨‍👩‍👧‍👦",
    "combining: e\u0301 a\u0308 n\u0303",
    "tab\tseparated\tvalues",
    "  leading and trailing spaces  ",
    "printf-looking text: %s %d %% %k \\n \\x00",
    '{"json": true, "nested": {"list": [1, 2, 3]}, "quote": "\\""}',
    "key-looking:line with a colon",
]


def sample_lines(count=1000, seed=20240601, empty=True):
    """`count` lines of varied text (ASCII, UTF-8 in many scripts, a few long lines), with a few
    empty lines when `empty`; no line holds a newline or NUL."""
    rng = random.Random(seed)
    lines = []
    for i in range(count):
        roll = i % 97
        if empty and roll in (13, 14, 60):  # some empty lines, two of them back to back
            lines.append("")
        elif roll % 10 == 3:
            lines.append(f"{i}: {_SPECIAL[(i // 10) % len(_SPECIAL)]}")
        elif roll == 42:
            lines.append(f"{i}: long " + "".join(rng.choice("abcdefghij ") for _ in range(8000)))
        else:
            words = [rng.choice(_WORDS) for _ in range(rng.randint(1, 20))]
            lines.append(f"{i}: {' '.join(words)}")
    return lines


def write_lines(path, lines):
    """One line per message, each ending in a newline, UTF-8."""
    path.write_bytes(b"".join(line.encode() + b"\n" for line in lines))
