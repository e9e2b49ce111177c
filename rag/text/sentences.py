"""Sentence splitting shared by chunking (pack whole sentences) and answering (quote whole sentences).

Regex-based on purpose: policy texts are full of "Sec. 4.2", "U.S.", "e.g." and list items, which
generic splitters cut wrongly, and a regex is fast and deterministic.
"""

from __future__ import annotations

import re

_ABBREV = r"(?<!\bSec)(?<!\bNo)(?<!\bU\.S)(?<!\be\.g)(?<!\bi\.e)(?<!\bMr)(?<!\bMs)(?<!\bDr)(?<!\bvs)(?<!\bal)(?<!\bFig)(?<!\bArt)(?<!\bp)(?<!\bpp)(?<!\bSt)(?<!\bInc)(?<!\bCo)(?<!\bv)"
_SENT_END = re.compile(
    _ABBREV
    + r"[.!?][\"”’)\]]*\s+(?=[\"“(\[]?[A-Z0-9•])|\n(?=\s*(?:[•·▪\-–*]|\(?[a-z0-9ivx]{1,4}\)|\d+\.)\s)|;\s*\n"
)


def strip_span(text: str, a: int, b: int) -> tuple[int, int]:
    while a < b and text[a].isspace():
        a += 1
    while b > a and text[b - 1].isspace():
        b -= 1
    return a, b


def split_sentences(text: str, a: int, b: int) -> list[tuple[int, int]]:
    """Sentence spans (stripped) of text[a:b]."""
    spans = []
    start = a
    for m in _SENT_END.finditer(text, a, b):
        end = m.start() + len(m.group(0).rstrip())
        s, e = strip_span(text, start, end)
        if e > s:
            spans.append((s, e))
        start = m.end()
    s, e = strip_span(text, start, b)
    if e > s:
        spans.append((s, e))
    return spans
