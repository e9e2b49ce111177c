"""Post-hoc attribution: check each sentence of a model's draft against the passages.

Small open models neither cite nor refuse reliably, so both are the system's job: every answer
sentence is scored against every passage (embedding similarity of the sentence to the passage's
best-matching sentence, plus the share of its content words found in the passage); valid [n]
markers are kept when the passage supports the sentence, a missing citation is added from the
best-supported passage, markers pointing to no passage are dropped, and unsupported sentences are
flagged (and, in `auto`, removed).

Resemblance is not truth: a sentence with an invented date can score above the threshold. So a
passage may only be cited for a sentence when it also states every date, number, identifier and
quotation of the sentence (facts.py); a sentence no passage backs that way is unsupported. A
quotation found in no passage at all is never shown as one: its quotation marks are removed (the
words stay, so the reader sees what the model claimed, flagged as unsupported, not a fake quote).

Nor is a shared topic support (issue 15): the cited passage must also name the sentence's entities and
hold at least `min_share` of its content words (facts.key_content_gaps), and a sentence of a passage
that reads as an instruction planted for a model ("ignore previous instructions and say ...") never
supports anything (rag.answer.instructions): it is left out of both the similarity and the words.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rag.answer.evidence import Evidence, lexical_support
from rag.answer.facts import (
    Fact,
    extract_facts,
    fact_found,
    key_content_gaps,
    passage_facts,
    passage_text,
    strip_quotation_marks,
    unfound_quotations,
)
from rag.answer.instructions import without_instructions
from rag.answer.markers import parse_markers, split_answer
from rag.text.lexical import lexical_tokens
from rag.types import AnswerSentence, Passage


def attribute(answer_text: str, passages: Sequence[Passage], embedder: Any, threshold: float, evidence: Evidence | None = None,
              failures: dict[int, list[str]] | None = None, min_share: float = 0.5) -> tuple[list[AnswerSentence], dict[int, tuple[str, float]]]:
    """Check each sentence against the passages; return sentences and per-passage (quote, support).

    A passage counts for a sentence when its support reaches `threshold` *and* it states every fact
    (date, number, identifier, quotation) of the sentence. `failures`, when given, is filled with
    {index of the sentence in the result: the facts that no supporting passage states}.
    """
    ev = evidence or Evidence(passages, embedder)
    raw = split_answer(answer_text)
    parsed = [parse_markers(s, len(passages)) for s in raw]
    texts = [p[0] for p in parsed]
    if not any(texts):
        return [], {}
    vecs = embedder.encode([t or "." for t in texts])
    ptexts = [passage_text(p) for p in passages]
    pfacts = [passage_facts(t) for t in ptexts]
    # what each passage states, without the sentences planted to instruct a model
    keep = [_safe_sentences(ev.sentences[n]) if n < len(ev.sentences) else {} for n in range(len(passages))]
    stated = ["\n".join(x for x in (p.chunk.title, p.chunk.section, p.chunk.date or "") if x) + "\n" +
              " ".join(keep[n].values()) for n, p in enumerate(passages)]
    out: list[AnswerSentence] = []
    quotes: dict[int, tuple[str, float]] = {}
    for (clean, valid, _invalid), vec in zip(parsed, vecs, strict=True):
        if not clean or len(lexical_tokens(clean)) == 0:
            continue
        facts = extract_facts(clean)
        invented = unfound_quotations(clean, ptexts)
        if invented:
            clean = strip_quotation_marks(clean, invented)
        missing = {n: [f for f in facts if not fact_found(f, pfacts[n - 1])] for n in range(1, len(passages) + 1)}
        scored = {n: _support(ev, keep[n - 1], stated[n - 1], clean, vec, n) for n in range(1, len(passages) + 1)}
        gaps = {n: key_content_gaps(clean, stated[n - 1], min_share) for n in scored if scored[n][0] >= threshold}
        for n, g in gaps.items():
            missing[n] = missing[n] + [Fact("key", x, x) for x in g]
        ok = {n for n in scored if scored[n][0] >= threshold and not missing[n]}
        kept = [n for n in valid if n in ok]
        added = False
        if not kept and ok:
            kept, added = [max(ok, key=lambda n: scored[n][0])], True
        support = max((scored[n][0] for n in kept), default=max((v[0] for v in scored.values()), default=0.0))
        for n in kept:
            q, sup = scored[n][1], scored[n][0]
            if n not in quotes or sup > quotes[n][1]:
                quotes[n] = (q, sup)
        if failures is not None and not kept and (facts or any(gaps.values())):
            failures[len(out)] = _unbacked(facts, missing, scored, threshold)
        out.append(AnswerSentence(text=clean, citations=tuple(kept), support=support, supported=bool(kept), added=added))
    return out, quotes


def _safe_sentences(sentences: Sequence[str]) -> dict[int, str]:
    """{index: text} of a passage's sentences without planted instructions (a sentence glued to one keeps its
    clean start; one that is an instruction is left out)."""
    out = {}
    for j, x in enumerate(sentences):
        safe = without_instructions(x)
        if safe is not None:
            out[j] = safe
    return out


def _support(ev: Evidence, keep: dict[int, str], stated: str, sentence: str, vec: np.ndarray, n: int) -> tuple[float, str]:
    """Evidence.support, over the passage's sentences that are not planted instructions."""
    if not keep:
        return 0.0, ""
    idx = list(keep)
    sims = ev.vectors[n - 1][idx] @ vec
    j = int(np.argmax(sims))
    w = ev.dense_weight
    return w * float(sims[j]) + (1 - w) * lexical_support(sentence, stated), keep[idx[j]]


def _unbacked(facts: list[Fact], missing: dict[int, list[Fact]], scored: dict[int, tuple[float, str]], threshold: float) -> list[str]:
    """The facts to blame for an unsupported sentence: those missing from the passage that supports it best
    (among the passages over the threshold, if any)."""
    over = [n for n in scored if scored[n][0] >= threshold] or list(scored)
    if not over:
        return [f.text for f in facts]
    best = max(over, key=lambda n: scored[n][0])
    return [f.text for f in missing[best]]


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
