"""Merging ranked lists (dense and BM25) and pruning overlapping hits; pure functions."""

from __future__ import annotations

from collections.abc import Sequence

from rag.types import Passage


def rrf(rankings: Sequence[Sequence[int]], k: int = 60, weights: Sequence[float] | None = None) -> list[tuple[int, float]]:
    """Weighted reciprocal rank fusion of id rankings -> [(id, score)] best first (ties keep first-seen order)."""
    scores: dict[int, float] = {}
    for n, ranking in enumerate(rankings):
        w = weights[n] if weights else 1.0
        for r, i in enumerate(ranking):
            scores[i] = scores.get(i, 0.0) + w / (k + r + 1)
    return sorted(scores.items(), key=lambda x: -x[1])


def convex_fusion(dense: dict[int, float], lexical: dict[int, float], alpha: float) -> list[tuple[int, float]]:
    """alpha * dense + (1 - alpha) * BM25, each min-max normalised over the query's candidates.

    Keeps dense's order where BM25 has nothing to say, while an exact lexical match lifts a passage.
    With alpha 0.8 it ties dense on PolicyQA but falls well behind BM25 on ObliQA; RRF stays within
    1-2 points of the better retriever on both, so RRF is the default (benchmarks/RESULTS.md).
    """

    def norm(x: dict[int, float]) -> dict[int, float]:
        if not x:
            return {}
        lo, hi = min(x.values()), max(x.values())
        return {k: (v - lo) / (hi - lo) if hi > lo else 1.0 for k, v in x.items()}

    dn, bn = norm(dense), norm(lexical)
    ids = list(dict.fromkeys([*dense, *lexical]))
    scores = {i: alpha * dn.get(i, 0.0) + (1 - alpha) * bn.get(i, 0.0) for i in ids}
    return sorted(scores.items(), key=lambda x: -x[1])


def dedupe(passages: Sequence[Passage]) -> list[Passage]:
    """Drop a passage whose span overlaps a better-ranked one of the same document by over half."""
    kept: list[Passage] = []
    for p in passages:
        c = p.chunk
        clash = False
        for q in kept:
            d = q.chunk
            if d.source == c.source:
                inter = min(c.char_end, d.char_end) - max(c.char_start, d.char_start)
                if inter > 0.5 * min(c.char_end - c.char_start, d.char_end - d.char_start):
                    clash = True
                    break
        if not clash:
            kept.append(p)
    return kept
