"""Sentence splitting shared by chunking (pack whole sentences) and answering (quote whole sentences).

Regex-based on purpose: policy texts are full of "Sec. 4.2", "U.S.", "E.O. 14110", "40 U.S.C. 11301",
"Pub. L. No. 117-263", "e.g." and list items, which generic splitters cut wrongly, and a regex is fast
and deterministic. A full stop after a known abbreviation, a single capital (an initial) or a dotted
acronym ends no sentence.
"""

from __future__ import annotations

import re

_SENT_END = re.compile(
    r"[.!?][\"”’)\]]*\s+(?=[\"“(\[]?[A-Z0-9•])|\n(?=\s*(?:[•·▪\-–*]|\(?[a-z0-9ivx]{1,4}\)|\d+\.)\s)|;\s*\n"
)
# words whose full stop ends no sentence: "Sec. 4.6", "No. 5", "Pub. L. No. 117-263", "Exec. Order 13960"
ABBREVIATIONS = frozenset(
    ["Sec", "Secs", "No", "Nos", "Pub", "Stat", "Fed", "Reg", "Exec", "Ord", "Dept", "Gov", "Govt", "Mr", "Ms", "Mrs", "Dr", "Jr", "Sr", "vs", "al", "Fig", "Figs", "Art", "Arts", "p", "pp", "St", "Inc", "Co", "Corp", "Ltd", "v", "cf", "Vol", "Ch", "Para", "Pt", "Subch", "Tit", "Ref", "Jan", "Feb", "Mar", "Apr", "Jun", "Jul", "Aug", "Sep", "Sept", "Oct", "Nov", "Dec", "approx", "e.g", "i.e"]
)
_TOKEN_BEFORE = re.compile(r"(?<![A-Za-z.])([A-Za-z][A-Za-z.]{0,11})$")
_DOTTED = re.compile(r"^(?:[A-Za-z]\.)+[A-Za-z]$")  # "U.S", "E.O", "U.S.C", "C.F.R", "D.C"


def _no_sentence_end(text: str, dot: int) -> bool:
    """Is the full stop at `dot` part of an abbreviation, an initial or a dotted acronym ("E.O. 14110")?"""
    if text[dot] != ".":
        return False
    m = _TOKEN_BEFORE.search(text, max(0, dot - 12), dot)
    if not m:
        return False
    tok = m.group(1)
    return tok in ABBREVIATIONS or (len(tok) == 1 and tok.isupper()) or bool(_DOTTED.match(tok))


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
        if _no_sentence_end(text, m.start()):
            continue
        end = m.start() + len(m.group(0).rstrip())
        s, e = strip_span(text, start, end)
        if e > s:
            spans.append((s, e))
        start = m.end()
    s, e = strip_span(text, start, b)
    if e > s:
        spans.append((s, e))
    return spans
