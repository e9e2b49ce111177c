"""Pure functions over a model's answer text: sentences, [n] citation markers, refusals, rendering."""

from __future__ import annotations

import re
from collections.abc import Sequence

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


def render(sentences: Sequence[AnswerSentence]) -> str:
    parts = []
    for s in sentences:
        body = s.text.rstrip()
        end = ""
        if body and body[-1] in ".!?":
            body, end = body[:-1], body[-1]
        marks = "".join(f"[{n}]" for n in s.citations)
        parts.append(f"{body} {marks}{end or '.'}" if marks else f"{body}{end or '.'}")
    return " ".join(parts)
