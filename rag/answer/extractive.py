"""Extractive answers: quote the passages' sentences that best match the question, cited (no LLM)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rag.answer.evidence import Evidence
from rag.answer.prompts import neutralise_markers
from rag.settings import AnswerSettings
from rag.text.lexical import lexical_tokens
from rag.types import AnswerSentence, Passage


# ---------------------------------------------------------------------------------------------
def extractive(question: str, passages: Sequence[Passage], embedder: Any, n_sentences: int | None = None, evidence: Evidence | None = None,
               min_score: float = 0.0, opts: AnswerSettings | None = None) -> tuple[list[AnswerSentence], dict[int, tuple[str, float]], float]:
    """The best question-matching sentences of the top passages, quoted and cited. Returns best score too."""
    o = opts or AnswerSettings()
    n_sentences = n_sentences or o.extractive_sentences
    w = o.extractive_dense_weight
    ev = evidence or Evidence(passages, embedder)
    qvec = embedder.encode([question])[0]
    qtok = set(lexical_tokens(question))
    cands: list[tuple[float, int, str]] = []
    for n, (sents, vecs) in enumerate(zip(ev.sentences, ev.vectors, strict=True), 1):
        if not sents:
            continue
        sims = vecs @ qvec
        prior = o.extractive_rank_prior * (len(passages) - n) / max(1, len(passages))  # retrieval rank as a small prior
        for s, sim in zip(sents, sims, strict=True):
            toks = set(lexical_tokens(s))
            if len(toks) < 4:  # headings, fragments
                continue
            lex = len(qtok & toks) / len(qtok) if qtok else 0.0
            cands.append((w * float(sim) + (1 - w) * lex + prior, n, s))
    if not cands:
        return [], {}, 0.0
    cands.sort(key=lambda x: -x[0])
    best = cands[0][0]
    chosen: list[tuple[float, int, str]] = []
    for c in cands:
        if len(chosen) >= n_sentences or c[0] < max(min_score, best - o.extractive_window):
            break
        if any(c[2] == x[2] for x in chosen):
            continue
        chosen.append(c)
    chosen.sort(key=lambda x: (x[1], passages[x[1] - 1].chunk.text.find(x[2])))
    # the quote is shown verbatim except for bracketed numbers, which only our citations may use
    sents = [AnswerSentence(text=f"“{neutralise_markers(s.rstrip())}”", citations=(n,), support=sc, supported=True)
             for sc, n, s in chosen]
    quotes = {n: (s, sc) for sc, n, s in chosen}
    return sents, quotes, best
