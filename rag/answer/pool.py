"""The extractive answer's deeper sentence pool (issue 12), kept cheap (issue 16).

An extractive answer may quote a sentence of the reranked candidates below the top k (the gold sentence
often sits at ranks 7-20). Embedding every sentence of 20 passages to find it more than doubled the CPU
of an answer, though few sentences of a deeper passage can ever beat the top k's best: the rank prior
favours the top, and a sentence that shares no word with the question and holds no answer of the kind
it asks for rarely wins. So the units of the deeper passages (evidence.passage_units) are pre-scored by
signals that cost no model pass: the question's words in the unit and its heading (extractive's own
lexical_match), an answer span of the wanted kind (qtypes), and the passage's reranker probability,
already computed by retrieval. Only the best `answer.pool_units` of them are embedded and offered to the
extractive choice, which scores them as before; the top k passages are read whole, as without the pool.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from rag.answer.evidence import (
    Evidence,
    Unit,
    embed_sentences,
    passage_sentences,
    passage_units,
    prefetch_evidence,
)
from rag.answer.extractive import MIN_LEAD, TYPE_BONUS, context_before, lexical_match
from rag.answer.qtypes import TYPED, classify
from rag.answer.shapes import shape, shape_bonus
from rag.answer.spans import scored_answer_spans
from rag.types import Passage

PASSAGE_WEIGHT = 0.3  # x the passage's reranker probability: a unit of a passage the scorer believes in is kept first


def pool_passages(
    retriever: Any,
    query: str,
    passages: Sequence[Passage],
    size: int,
    filters: Any,
    retrieval_mode: str | None,
    store: Any,
) -> list[Passage]:
    """The passages an extractive answer may quote from: the top k, then the reranked candidates below
    them down to `size` (ranks k+1, ...; the rank prior still favours the top). One more search, whose
    reranker scores are memoised (Reranker.scores), so it costs the fusion, not a second rerank."""
    if size <= len(passages):
        return list(passages)
    seen = {p.chunk.chunk_id for p in passages}
    wider = retriever.search([query], size, filters or None, mode=retrieval_mode, store=store)[0]
    extra = [p for p in wider if p.chunk.chunk_id not in seen][: size - len(passages)]
    return [*passages, *(replace(p, rank=len(passages) + i + 1) for i, p in enumerate(extra))]


def prescore(
    query: str, passage: Passage, sents: Sequence[str], qtype: str
) -> list[tuple[float, Unit, tuple[int, ...]]]:
    """(cheap score, unit, the sentence indices it needs: its parts and the heading line above it) for
    every quotable unit of a passage. Question-word overlap (its heading context counted as extractive
    counts it) + the type and shape bonuses extractive would give + PASSAGE_WEIGHT x the passage's reranker probability."""
    out = []
    section = passage.chunk.section.rsplit(" > ", 1)[-1]
    prior = PASSAGE_WEIGHT * float(passage.scores.get("rerank_p", 0.0))
    form = shape(query)
    for u in passage_units(sents):
        h = context_before(sents, u)
        score = lexical_match(query, u.text, " ".join([section, *([sents[h]] if h is not None else [])])) + prior
        score += shape_bonus(form, u.text, u.kind)  # as extractive will: a reason for "why", a list for "which kinds"
        if qtype in TYPED:
            spans = scored_answer_spans(u.text, query, qtype)
            if spans and spans[0][0] >= MIN_LEAD:
                score += TYPE_BONUS * spans[0][0]
        out.append((score, u, tuple(sorted({*u.parts, *([h] if h is not None else [])}))))
    return out


def pool_evidence(
    query: str,
    pool: Sequence[Passage],
    k: int,
    embedder: Any,
    budget: int,
    cache: dict[str, Any],
    dense_weight: float,
    qtype: str | None = None,
) -> tuple[Evidence, dict[str, int]]:
    """The sentence-level view of the pool for the extractive choice, and what it cost.

    The top k passages (and any deeper one already in `cache`) are read whole; of the others only the
    sentences of the `budget` best pre-scored units (see `prescore`), in document order. budget 0 = every
    sentence of the pool. `cache` (chunk_id -> sentences, vectors) only ever receives whole passages, so a
    batch may share it across questions.
    """
    prefetch_evidence([pool[:k] if budget else pool], embedder, cache)
    local = {p.chunk.chunk_id: cache[p.chunk.chunk_id] for p in pool if p.chunk.chunk_id in cache}
    deep = [p for p in pool[k:] if p.chunk.chunk_id not in local]
    qtype = qtype or classify(query)
    scored: list[tuple[float, int, int, tuple[int, ...]]] = []  # score, passage index, first part, sentence indices
    sents_of: dict[str, list[str]] = {}
    for i, p in enumerate(deep):
        sents = sents_of[p.chunk.chunk_id] = passage_sentences(p.chunk.text)
        scored += [(s, i, u.parts[0], idx) for s, u, idx in prescore(query, p, sents, qtype)]
    scored.sort(key=lambda x: (-x[0], x[1], x[2]))
    keep: dict[int, set[int]] = {}
    for _, i, _, idx in scored[:budget]:
        keep.setdefault(i, set()).update(idx)
    texts = [sents_of[p.chunk.chunk_id][j] for i, p in enumerate(deep) for j in sorted(keep.get(i, ()))]
    vecs = embed_sentences(embedder, texts)
    at = 0
    for i, p in enumerate(deep):
        chosen = [sents_of[p.chunk.chunk_id][j] for j in sorted(keep.get(i, ()))]
        local[p.chunk.chunk_id] = (chosen, vecs[at : at + len(chosen)])
        at += len(chosen)
    cost = {"units_scored": len(scored), "units_kept": min(budget, len(scored)), "sentences_embedded": len(texts)}
    return Evidence(pool, embedder, cache=local, dense_weight=dense_weight), cost
