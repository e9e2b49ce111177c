"""Measuring the evidence scorer on candidate lists: ranking metrics, fusion with the hybrid score,
answerability, calibration and answer-sentence picking.

Every number is computed on documents the scorer never saw (validation chooses, test reports). The
hit rule is the project's (`chunk_matches` within a gold document); "strict" metrics count only the
labelled gold passage or paragraph.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rag.jobs.metrics import mrr, recall_at_k
from rag.jobs.scorer.candidates import N_CAND
from rag.jobs.scorer.data import Dataset, Question, is_hit, sentence_texts
from rag.jobs.scorer.train import score_pairs
from rag.retrieve.rerank import fuse  # the product's ranking: the weight tuned here is the one it applies
from rag.text.lexical import lexical_tokens

MODES = ("bm25", "dense", "hybrid", "reranked", "fused")


def recall_within_words(hits: Sequence[bool], words: Sequence[int], budget: int) -> float:
    """1 if a hit lies wholly inside the first `budget` words of the ranked list.

    Deliberately not rag.jobs.metrics.recall_within_words: that one always reads the first item, even
    when it alone exceeds the budget. Here a first passage longer than the budget earns nothing, the
    rule the scorer's reported "recall within N words" used; switching would change those numbers.
    """
    used = 0
    for h, w in zip(hits, words, strict=True):
        used += w
        if used > budget:
            return 0.0
        if h:
            return 1.0
    return 0.0


def passage_recall_at_k(found: Sequence[set[int]], n_gold: int, k: int) -> float:
    """Fraction of gold passages among the top k (RIRAG's recall@10); `found[i]` = gold ids hit by item i."""
    got: set[int] = set()
    for f in found[:k]:
        got |= f
    return len(got) / max(1, n_gold)


def roc_auc(pos: Sequence[float], neg: Sequence[float]) -> float:
    """Probability that a positive outscores a negative (ties count half)."""
    if not len(pos) or not len(neg):
        return float("nan")
    s = np.concatenate([np.asarray(pos, float), np.asarray(neg, float)])
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    i = 0
    while i < len(s):  # average ranks of ties
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    n_p, n_n = len(pos), len(neg)
    return float((ranks[:n_p].sum() - n_p * (n_p + 1) / 2) / (n_p * n_n))


def rank_metrics(rows: list[dict[str, Any]], k: int, budget: int, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Mean success@k, MRR@10, passage recall@k and recall within the word budget over questions."""
    n = max(1, len(rows))
    out = {f"recall@{kk}": sum(recall_at_k(r["hits"], kk) for r in rows) / n for kk in ks}
    out["mrr@10"] = sum(mrr(r["hits"], 10) for r in rows) / n
    out[f"passage_recall@{k}"] = sum(passage_recall_at_k(r["found"], r["n_gold"], k) for r in rows) / n
    out[f"recall@{budget}w"] = sum(recall_within_words(r["hits"], r["words"], budget) for r in rows) / n
    # strict: only a gold passage/paragraph counts (not another text that merely contains the answer)
    out[f"strict_recall@{k}"] = sum(recall_at_k([bool(f) for f in r["found"]], k) for r in rows) / n
    out[f"strict_recall@{budget}w"] = sum(recall_within_words([bool(f) for f in r["found"]], r["words"], budget) for r in rows) / n
    out["questions"] = float(len(rows))
    return {a: round(b, 4) for a, b in out.items()}


def part_indices(s: dict[str, Any], part: str) -> list[int]:
    return [i for i, p in enumerate(s["parts"]) if p == part]


def _hits(payload: dict[str, Any], name: str, qi: int, ranking: Sequence[int]) -> list[bool]:
    """is_hit for question `qi` of set `name` over a ranking, memoised: the same candidates are judged
    for five rankings, eleven fusion weights and the answerability test."""
    cache: dict[tuple[str, int, int], bool] = payload.setdefault("_hit_cache", {})
    ds: Dataset = payload["sets"][name]["dataset"]
    q = ds.questions[qi]
    out = []
    for u in ranking:
        key = (name, qi, u)
        h = cache.get(key)
        if h is None:
            h = cache[key] = is_hit(q, ds.units[u])
        out.append(h)
    return out


def _row(payload: dict[str, Any], name: str, qi: int, ranking: Sequence[int]) -> dict[str, Any]:
    ds: Dataset = payload["sets"][name]["dataset"]
    q = ds.questions[qi]
    return {"hits": _hits(payload, name, qi, ranking), "found": [{i} & set(q.gold) for i in ranking],
            "n_gold": max(1, len(q.gold_texts)), "words": [ds.units[i].words for i in ranking]}


def score_candidates(model: Any, tok: Any, payload: dict[str, Any], part: str, device: str, max_length: int,
                     depth: int = N_CAND) -> dict[str, list[np.ndarray]]:
    """Scorer logits for the top-`depth` hybrid candidates of every question of a part.

    PolicyQA questions that share text and policy share their candidates: scored once.
    """
    out: dict[str, list[np.ndarray]] = {}
    for name, s in payload["sets"].items():
        ds: Dataset = s["dataset"]
        pairs: list[tuple[str, str]] = []
        spans, cache = [], {}
        for i in part_indices(s, part):
            q, c = ds.questions[i], s["candidates"][i]
            key = (q.text, tuple(c["hybrid"][:depth]))
            if key not in cache:
                cache[key] = (len(pairs), len(c["hybrid"][:depth]))
                pairs += [(q.text, ds.units[u].text) for u in c["hybrid"][:depth]]
            spans.append(cache[key])
        bs = 512 if device.startswith("cuda") else 32
        sc = score_pairs(model, tok, pairs, device, max_length, batch_size=bs) if pairs else np.zeros(0, np.float32)
        out[name] = [sc[a : a + n] for a, n in spans]
    return out


def evaluate_part(payload: dict[str, Any], part: str, scores: dict[str, list[np.ndarray]], weights: dict[str, float],
                  depth: int = N_CAND) -> dict[str, Any]:
    """Metrics per set for bm25, dense, hybrid, reranked (scorer alone) and fused (w*scorer + (1-w)*hybrid)."""
    res: dict[str, Any] = {}
    for name, s in payload["sets"].items():
        ds: Dataset = s["dataset"]
        idx = part_indices(s, part)
        modes: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
        for j, i in enumerate(idx):
            if not ds.questions[i].answerable:  # no ranking to judge; it counts in `answerability`
                continue
            c = s["candidates"][i]
            for m in ("bm25", "dense", "hybrid"):
                modes[m].append(_row(payload, name, i, c[m]))
            cand = c["hybrid"][:depth]
            sc = scores[name][j]
            if len(cand):
                modes["reranked"].append(_row(payload, name, i, [cand[t] for t in np.argsort(-sc, kind="stable")]))
                f = fuse(sc, np.asarray(c["hybrid_score"][:depth]), weights.get(name, weights.get("all", 0.5)))
                modes["fused"].append(_row(payload, name, i, [cand[t] for t in np.argsort(-f, kind="stable")]))
            else:
                modes["reranked"].append(_row(payload, name, i, []))
                modes["fused"].append(_row(payload, name, i, []))
        res[name] = {m: rank_metrics(rows, ds.k, ds.budget) for m, rows in modes.items()}
        res[name][f"oracle_top{depth}"] = round(sum(any(r["hits"]) for r in modes["reranked"]) / max(1, len(modes["reranked"])), 4)
    return res


def tune_fusion(payload: dict[str, Any], scores: dict[str, list[np.ndarray]],
                grid: Sequence[float] = tuple(np.round(np.arange(0, 1.01, 0.1), 2))) -> dict[str, Any]:
    """Fusion weight chosen on validation: one shared weight (mean of the headline recall, the budgeted
    recall and MRR@10, summed over the sets; ties go to the weight nearest 0.5) and, for reference, one per set."""
    table = {}
    for w in grid:
        r = evaluate_part(payload, "val", scores, {"all": float(w)})
        table[float(w)] = {n: (r[n]["fused"][f"recall@{payload['sets'][n]['k']}"] + r[n]["fused"][f"recall@{payload['sets'][n]['budget']}w"]
                               + r[n]["fused"]["mrr@10"]) / 3 for n in r}
    best_all = max(table, key=lambda w: (sum(table[w].values()), -abs(w - 0.5)))
    per_set = {n: max(table, key=lambda w, n=n: (table[w][n], -abs(w - 0.5))) for n in payload["sets"]}
    return {"all": best_all, "per_set": per_set, "table": {str(w): {n: round(v, 4) for n, v in t.items()} for w, t in table.items()}}


def answerability(payload: dict[str, Any], part: str, scores: dict[str, list[np.ndarray]], depth: int = 20) -> dict[str, Any]:
    """How well the best score among the top `depth` candidates tells "the evidence is here" from "it
    is not": per question, the max over its candidates (answerable when a hit is among them) against
    the max over the same candidates with every hit removed (as if the corpus lacked the answer); a
    reader set's unanswerable questions add the max over all their candidates to the negatives. AUC
    for the scorer and for the dense cosine the project thresholds today; "pos"/"neg" are the maxima."""
    out = {}
    for name, s in payload["sets"].items():
        pos_s, neg_s, pos_c, neg_c = [], [], [], []
        for j, i in enumerate(part_indices(s, part)):
            c = s["candidates"][i]
            cand = c["hybrid"][:depth]
            sc = np.asarray(scores[name][j][:depth])
            cos = np.asarray(c["cos"][:depth])
            if not s["dataset"].questions[i].answerable:  # a real unanswerable question: all its candidates
                if len(cand):
                    neg_s.append(sc.max())
                    neg_c.append(cos.max())
                continue
            hits = np.array(_hits(payload, name, i, cand), dtype=bool)
            if hits.any():
                pos_s.append(sc.max())
                pos_c.append(cos.max())
                if (~hits).any():
                    neg_s.append(sc[~hits].max())
                    neg_c.append(cos[~hits].max())
        out[name] = {"auc_scorer": round(roc_auc(pos_s, neg_s), 4), "auc_dense_cosine": round(roc_auc(pos_c, neg_c), 4),
                     "n_pos": len(pos_s), "n_neg": len(neg_s),
                     "scorer_pos_median": round(float(np.median(pos_s)), 3) if pos_s else None,
                     "scorer_neg_median": round(float(np.median(neg_s)), 3) if neg_s else None,
                     "pos": [float(x) for x in pos_s], "neg": [float(x) for x in neg_s]}
    return out


def thresholds(ans_val: dict[str, Any], ans_test: dict[str, Any], a: float, b: float) -> dict[str, Any]:
    """Per set, the max-logit threshold with the best balanced accuracy on validation, its probability
    under the calibration, and its balanced accuracy on test."""
    thr = {}
    for n in ans_val:
        pv, nv = np.asarray(ans_val[n]["pos"]), np.asarray(ans_val[n]["neg"])
        if not (len(pv) and len(nv)):
            continue
        grid = np.unique(np.concatenate([pv, nv]))
        bal = [((pv >= t).mean() + (nv < t).mean()) / 2 for t in grid]
        t = float(grid[int(np.argmax(bal))])
        pt, nt = np.asarray(ans_test[n]["pos"]), np.asarray(ans_test[n]["neg"])
        thr[n] = {"threshold_logit": round(t, 4), "threshold_prob": round(float(1 / (1 + np.exp(-(a * t + b)))), 4),
                  "val_balanced_acc": round(float(max(bal)), 4),
                  "test_balanced_acc": round(float(((pt >= t).mean() + (nt < t).mean()) / 2), 4) if len(pt) and len(nt) else None}
    return thr


def pair_labels(payload: dict[str, Any], part: str, scores: dict[str, list[np.ndarray]], depth: int = N_CAND) -> tuple[np.ndarray, np.ndarray]:
    """All (score, is-hit) pairs of a part's candidate lists, both sets together."""
    xs, ys = [], []
    for name, s in payload["sets"].items():
        for j, i in enumerate(part_indices(s, part)):
            cand = s["candidates"][i]["hybrid"][:depth]
            xs.extend(scores[name][j][: len(cand)])
            ys.extend(_hits(payload, name, i, cand))
    return np.asarray(xs, float), np.asarray(ys, float)


def platt(x: np.ndarray, y: np.ndarray, iters: int = 50) -> tuple[float, float]:
    """Logistic fit p = sigmoid(a*x + b) by Newton steps: turns raw logits into probabilities of
    relevance (the listwise loss leaves the logit scale free; this pins it on validation data)."""
    a, b = 1.0, 0.0
    for _ in range(iters):
        p = 1 / (1 + np.exp(-(a * x + b)))
        g = np.array([np.sum((p - y) * x), np.sum(p - y)])
        w = p * (1 - p) + 1e-9
        h = np.array([[np.sum(w * x * x), np.sum(w * x)], [np.sum(w * x), np.sum(w)]]) + 1e-6 * np.eye(2)
        step = np.linalg.solve(h, g)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-8:
            break
    return float(a), float(b)


def calibration(x: np.ndarray, y: np.ndarray, a: float, b: float, bins: int = 10) -> dict[str, float]:
    """Expected calibration error (equal-width bins) and Brier score of sigmoid(a*x + b)."""
    if not len(x):
        return {"ece": float("nan"), "brier": float("nan"), "pairs": 0, "positive_rate": float("nan")}
    p = 1 / (1 + np.exp(-(a * x + b)))
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (p >= lo) & ((p < hi) if hi < 1 else (p <= hi))
        if m.any():
            ece += m.mean() * abs(p[m].mean() - y[m].mean())
    return {"ece": round(float(ece), 4), "brier": round(float(np.mean((p - y) ** 2)), 4), "pairs": int(len(x)), "positive_rate": round(float(y.mean()), 4)}


def sentence_eval(model: Any, tok: Any, payload: dict[str, Any], part: str, device: str, max_length: int) -> dict[str, Any]:
    """PolicyQA answer-sentence picking: sentences of the gold paragraph and the top-3 hybrid
    paragraphs, ranked by the scorer; a hit is a sentence overlapping a gold answer span of any
    question with the same text in the same policy. Success@1/@3 (baseline: word overlap)."""
    s = payload["sets"].get("policyqa")
    if s is None:
        return {}
    ds: Dataset = s["dataset"]
    merged: dict[str, tuple[Question, dict[str, Any], list[list[int]]]] = {}
    for q, c, p in zip(ds.questions, s["candidates"], s["parts"], strict=True):
        if p == part:
            merged.setdefault(q.group, (q, c, []))[2].extend(q.answer_spans)
    pairs: list[tuple[str, str]] = []
    items = []
    for q, c, spans in merged.values():
        gold_units = [sp[0] for sp in spans]
        sents = []
        for uid in list(dict.fromkeys(gold_units[:1] + c["hybrid"][:3])):
            for a, b, t in sentence_texts(ds.units[uid]):
                if len(t.split()) >= 3:
                    sents.append((t, any(su == uid and sa < b and se > a for su, sa, se in spans)))
        if not any(h for _, h in sents):
            continue
        items.append((q.text, sents, len(pairs)))
        pairs += [(q.text, t) for t, _ in sents]
    sc = score_pairs(model, tok, pairs, device, max_length)
    res: dict[str, list[list[bool]]] = {"scorer": [], "overlap": []}
    for qt, sents, a in items:
        hits = [h for _, h in sents]
        ss = sc[a : a + len(sents)]
        qtok = set(lexical_tokens(qt))
        ov = np.array([len(qtok & set(lexical_tokens(t))) / (1 + len(set(lexical_tokens(t)))) ** 0.5 for t, _ in sents])
        for key, v in (("scorer", ss), ("overlap", ov)):
            res[key].append([hits[t] for t in np.argsort(-v, kind="stable")])
    return {k: {"success@1": round(float(np.mean([recall_at_k(h, 1) for h in v])), 4) if v else None,
                "success@3": round(float(np.mean([recall_at_k(h, 3) for h in v])), 4) if v else None, "questions": len(v)}
            for k, v in res.items()}
