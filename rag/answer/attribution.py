"""Post-hoc attribution: check each sentence of a model's draft against the passages.

Small open models neither cite nor refuse reliably, so both are the system's job: every answer
sentence is scored against every passage (embedding similarity of the sentence to the passage's
best-matching sentence, plus the share of its content words found in the passage); valid [n]
markers are kept when the passage supports the sentence, a missing citation is added from the
best-supported passage, markers pointing to no passage are dropped, and unsupported sentences are
flagged (and, in `auto`, removed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rag.answer.evidence import Evidence
from rag.answer.markers import parse_markers, split_answer
from rag.text.lexical import lexical_tokens
from rag.types import AnswerSentence, Passage


def attribute(answer_text: str, passages: Sequence[Passage], embedder: Any, threshold: float, evidence: Evidence | None = None) -> tuple[list[AnswerSentence], dict[int, tuple[str, float]]]:
    """Check each sentence against the passages; return sentences and per-passage (quote, support)."""
    ev = evidence or Evidence(passages, embedder)
    raw = split_answer(answer_text)
    parsed = [parse_markers(s, len(passages)) for s in raw]
    texts = [p[0] for p in parsed]
    if not any(texts):
        return [], {}
    vecs = embedder.encode([t or "." for t in texts])
    out: list[AnswerSentence] = []
    quotes: dict[int, tuple[str, float]] = {}
    for (clean, valid, _invalid), vec in zip(parsed, vecs, strict=True):
        if not clean or len(lexical_tokens(clean)) == 0:
            continue
        scored = {n: ev.support(clean, vec, n) for n in range(1, len(passages) + 1)}
        kept = [n for n in valid if scored[n][0] >= threshold]
        added = False
        if not kept:
            best = max(scored, key=lambda n: scored[n][0])
            if scored[best][0] >= threshold:
                kept, added = [best], True
        support = max((scored[n][0] for n in kept), default=max((v[0] for v in scored.values()), default=0.0))
        for n in kept:
            q, sup = scored[n][1], scored[n][0]
            if n not in quotes or sup > quotes[n][1]:
                quotes[n] = (q, sup)
        out.append(AnswerSentence(text=clean, citations=tuple(kept), support=support, supported=bool(kept), added=added))
    return out, quotes


def drop_off_topic(sents: list[AnswerSentence], question: str, evidence: Evidence, embedder: Any, ratio: float = 0.7) -> tuple[list[AnswerSentence], int]:
    """Mark as unsupported the sentences that do not address the question.

    A small model may copy a true sentence from an irrelevant passage: supported, but no answer.
    A sentence counts as on topic when its similarity to the question reaches `ratio` times that of
    the passages' best-matching sentence.
    """
    if not sents:
        return sents, 0
    qvec = embedder.encode([question])[0]
    best = max((float(np.max(v @ qvec)) for v in evidence.vectors if len(v)), default=0.0)
    floor = ratio * best
    rel = embedder.encode([s.text for s in sents]) @ qvec
    out, n = [], 0
    for s, r in zip(sents, rel, strict=True):
        if s.supported and float(r) < floor:
            out.append(AnswerSentence(text=s.text, citations=(), support=s.support, supported=False, added=False))
            n += 1
        else:
            out.append(s)
    return out, n
