"""Evaluation metrics (pure). `hits` is the relevance of each retrieved item in rank order (True/False);
`n_relevant` the number of gold items for the question.

A retrieved chunk is a hit for a question when it overlaps a gold passage or contains a gold answer
span (whitespace- and case-insensitive).

Recall within a word budget (`recall_within_words`): hits counted in rank order until N words of
retrieved text have been read; an item counts only if all its words fit in the budget, except the
first, which always counts. So a ranking of bigger chunks earns nothing extra for being bigger.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any


def recall_at_k(hits: Sequence[bool], k: int) -> float:
    """1 if any of the top k is relevant (success@k, the usual RAG 'recall@k' for one gold answer)."""
    return 1.0 if any(hits[:k]) else 0.0


def mrr(hits: Sequence[bool], k: int | None = None) -> float:
    for i, h in enumerate(hits[:k] if k else hits):
        if h:
            return 1.0 / (i + 1)
    return 0.0


def ndcg_at_k(hits: Sequence[bool], k: int, n_relevant: int = 1) -> float:
    """Binary nDCG@k. Several retrieved chunks may cover one gold passage, so the ideal ranking has
    at least as many relevant items as were retrieved (keeps the score within 0..1)."""
    dcg = sum(1.0 / math.log2(i + 2) for i, h in enumerate(hits[:k]) if h)
    n_rel = max(n_relevant, sum(bool(h) for h in hits[:k]), 1)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(n_rel, k)))
    return dcg / ideal if ideal else 0.0


def average_precision_at_k(hits: Sequence[bool], k: int, n_relevant: int = 1) -> float:
    score, found = 0.0, 0
    for i, h in enumerate(hits[:k]):
        if h:
            found += 1
            score += found / (i + 1)
    denom = min(max(n_relevant, found, 1), k)
    return score / denom if denom else 0.0


def normalize_answer(s: str) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    s = s.lower()
    s = re.sub(r"[^\w\s]", " ", s)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    p = normalize_answer(prediction)
    return float(any(p == normalize_answer(g) for g in golds)) if golds else 0.0


def contains_answer(prediction: str, golds: Sequence[str]) -> float:
    """Does the answer hold any gold answer (a key fact), normalised? F1 punishes a correct fact shown
    with its quoted sentence; an analyst counts the fact being there."""
    if not golds:
        return 0.0
    for read in (lambda s: s, _unhyphen):  # "sub-systems" holds "subsystems"; "seven-week" holds "seven week"
        p = f" {normalize_answer(read(prediction))} "
        if any(f" {normalize_answer(read(g))} " in p for g in golds if normalize_answer(g)):
            return 1.0
    return 0.0


def _unhyphen(s: str) -> str:
    """"sub-systems" -> "subsystems": the documents' hyphenation is not the reader's (as `chunk_matches` reads it)."""
    return re.sub(r"(?<=\w)[-‐‑](?=\w)", "", s)


def token_f1(prediction: str, golds: Sequence[str]) -> float:
    """Best SQuAD token F1 of the prediction against any gold answer."""
    from collections import Counter

    pt = normalize_answer(prediction).split()
    best = 0.0
    for g in golds:
        gt = normalize_answer(g).split()
        common = Counter(pt) & Counter(gt)
        same = sum(common.values())
        if same == 0 or not pt or not gt:
            continue
        prec, rec = same / len(pt), same / len(gt)
        best = max(best, 2 * prec * rec / (prec + rec))
    return best


def _norm(s: str) -> str:
    # hyphens ignored: a reflowed PDF may keep "sub-systems" where a gold quote says "subsystems"
    return " ".join(re.sub(r"(?<=\w)[-‐‑](?=\w)", "", s.lower()).split())


def chunk_matches(chunk_text: str, gold_passages: Sequence[str] = (), gold_answers: Sequence[str] = (), min_overlap: int = 60) -> bool:
    """Does a retrieved chunk overlap a gold passage or contain a gold answer span?"""
    c = _norm(chunk_text)
    for a in gold_answers:
        a = _norm(a)
        if a and a in c:
            return True
    for g in gold_passages:
        g = _norm(g)
        if not g:
            continue
        if len(g) <= min_overlap:
            if g in c:
                return True
            continue
        # a window from the gold passage inside the chunk, or the chunk's start inside the passage
        mid = len(g) // 2
        probes = [g[:min_overlap], g[mid : mid + min_overlap], g[-min_overlap:]]
        if any(p in c for p in probes) or (len(c) >= min_overlap and (c[:min_overlap] in g or c[-min_overlap:] in g)):
            return True
    return False


# ---------------------------------------------------------------------------------------------
# Recall within a word budget


def word_count(text: str) -> int:
    """Words as a reader counts them: whitespace-separated tokens."""
    return len(text.split())


def items_within_words(words: Sequence[int], budget: int) -> int:
    """How many retrieved items, read in rank order, fit in `budget` words.

    An item counts only when all its words fit in what is left of the budget; reading stops at the
    first item that does not fit (later, shorter items are not read either). The first item always
    counts, even when it alone is longer than the budget: a reader reads at least one passage.
    """
    used = 0
    for i, w in enumerate(words):
        if i > 0 and used + w > budget:
            return i
        used += w
    return len(words)


def recall_within_words(hits: Sequence[bool], words: Sequence[int], budget: int, k: int | None = None) -> float:
    """1 if a relevant item is among those read within `budget` words (see `items_within_words`), of
    the top k. Unlike recall@k, a ranking of long chunks earns nothing extra for being long."""
    hits, words = hits[:k] if k else hits, words[:k] if k else words
    return recall_at_k(hits, items_within_words(words, budget))


# ---------------------------------------------------------------------------------------------
# Retrieval evaluation


def retrieval_metrics(per_question_hits: Iterable[tuple[Any, ...]], ks: Sequence[int] = (1, 5, 10),
                      word_budgets: Sequence[int] = (), budget_k: int = 10) -> dict[str, float]:
    """Rows are (hits, n_relevant), or (hits, n_relevant, words of each retrieved item[, hits of the text
    read]) — the last when a reader is shown less than the whole item (a focused span), default `hits`.
    With words, `recall@{budget_k}w{N}` (recall within N words, of the top budget_k) for each of
    `word_budgets` and `words_per_hit` (mean words of a retrieved item in the top budget_k) are added."""
    rows = list(per_question_hits)
    n = len(rows) or 1
    out = {f"recall@{k}": sum(recall_at_k(r[0], k) for r in rows) / n for k in ks}
    out["mrr"] = sum(mrr(r[0], max(ks)) for r in rows) / n
    out["ndcg@10"] = sum(ndcg_at_k(r[0], 10, r[1]) for r in rows) / n
    out["map@10"] = sum(average_precision_at_k(r[0], 10, r[1]) for r in rows) / n
    with_words = [r for r in rows if len(r) > 2 and r[2] is not None]
    if with_words:
        for b in word_budgets:
            out[f"recall@{budget_k}w{b}"] = sum(recall_within_words(r[3] if len(r) > 3 else r[0], r[2], b, budget_k)
                                                for r in with_words) / len(with_words)
        read = [w for r in with_words for w in r[2][:budget_k]]
        out["words_per_hit"] = sum(read) / len(read) if read else 0.0
    out["questions"] = float(len(rows))
    return out
