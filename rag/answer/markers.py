"""Pure functions over a model's answer text: sentences, [n] citation markers, refusals, rendering."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from rag.answer.prompts import REFUSAL_SENTENCE
from rag.text.sentences import split_sentences
from rag.types import AnswerSentence

_MARKER = re.compile(r"\s*[\[【]\s*(\d{1,3}(?:\s*(?:,|;|–|-|and)\s*\d{1,3})*)\s*[\]】]")
_REFUSAL_RE = re.compile(r"(cannot|can't|can not|unable to) (answer|find|determine)|not (mentioned|stated|provided|specified) in the (sources|documents|passages)|(sources|documents) do(es)? not (say|mention|contain|provide)", re.I)


# ---------------------------------------------------------------------------------------------
# Pure functions: sentences and markers


def split_answer(text: str) -> list[str]:
    """Answer text -> sentences, each keeping its trailing markers ("... rules [1]. Next [2].")."""
    text = " ".join(text.split())
    if not text:
        return []
    # move markers that follow the full stop in front of it: "rules. [1]" -> "rules [1]."
    text = re.sub(r"([.!?])((?:\s*\[[\d,;\s–-]+\])+)", r"\2\1", text)
    spans = split_sentences(text, 0, len(text))
    return [text[a:b] for a, b in spans]


def parse_markers(sentence: str, n_passages: int) -> tuple[str, list[int], list[int]]:
    """(sentence without markers, valid passage numbers, invalid numbers)."""
    valid: list[int] = []
    invalid: list[int] = []
    for m in _MARKER.finditer(sentence):
        body = m.group(1)
        nums: list[int] = []
        for part in re.split(r"\s*(?:,|;|and)\s*", body):
            rng = re.match(r"^(\d+)\s*[–-]\s*(\d+)$", part)
            if rng:
                a, b = int(rng.group(1)), int(rng.group(2))
                nums.extend(range(a, b + 1) if 0 < b - a < 10 else [a, b])
            elif part.strip().isdigit():
                nums.append(int(part))
        for n in nums:
            (valid if 1 <= n <= n_passages else invalid).append(n)
    clean = _MARKER.sub("", sentence).strip()
    clean = re.sub(r"\s+([.,;:!?])", r"\1", clean)
    seen: set[int] = set()
    valid = [n for n in valid if not (n in seen or seen.add(n))]  # type: ignore[func-returns-value]
    return clean, valid, invalid


def is_refusal(text: str) -> bool:
    t = " ".join(text.split())
    return not t or REFUSAL_SENTENCE.lower().rstrip(".") in t.lower() or bool(_REFUSAL_RE.search(t[:200]))


_LEAD = re.compile(r"^([^“”\[\]]{1,120}?): (“.*”)$", re.S)  # an answer span before its quotation


def render(sentences: Sequence[AnswerSentence]) -> str:
    """Sentences with their [n] markers, as one answer text.

    A sentence "Span: “quote”" (the answer span first, then the quoted sentence that holds it) is
    cited right after the span: `March 27, 2024 [2]: “Written comments ... March 27, 2024.”`.
    Sentences starting "- " are points of a list and each get a line of their own.
    """
    parts = []
    for s in sentences:
        body = s.text.rstrip()
        marks = "".join(f"[{n}]" for n in s.citations)
        lead = _LEAD.match(body) if marks else None
        if lead:
            parts.append(f"{lead.group(1)} {marks}: {lead.group(2)}")
            continue
        if body.startswith("- ") and body.endswith("”"):
            parts.append(f"{body} {marks}".rstrip())  # a point of a list: no full stop after its marker
            continue
        end = ""
        if body and body[-1] in ".!?":
            body, end = body[:-1], body[-1]
        parts.append(f"{body} {marks}{end or '.'}" if marks else f"{body}{end or '.'}")
    out = ""
    for i, (s, p) in enumerate(zip(sentences, parts, strict=True)):
        if i:
            out += "\n" if s.text.startswith("- ") else " "
        out += p
    return out


def renumber(sentences: Sequence[AnswerSentence]) -> tuple[list[AnswerSentence], dict[int, int]]:
    """Citations numbered 1..n in order of first use: sentences with their markers renumbered, and
    {new number: passage number (1-based) it stands for}.

    The model and attribution number citations by passage (retrieval rank), so an answer may read
    "[1][5]"; a reader expects [1], [2], ... Passages never cited get no number.
    """
    order: dict[int, int] = {}  # passage number -> new number
    for s in sentences:
        for n in s.citations:
            order.setdefault(n, len(order) + 1)
    out = [replace(s, citations=tuple(order[n] for n in s.citations)) for s in sentences]
    return out, {new: old for old, new in order.items()}
