"""`rag eval`: build (or reuse) the dataset's index, measure retrieval for each mode, and answers,
citations and refusals for each answer mode; write the report.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rag.errors import ConfigError
from rag.jobs.datasets import (
    EvalQuestion,
    cross_scope_unanswerables,
    guess_format,
    is_hit,
    prepare_dataset,
    sample_questions,
)
from rag.jobs.metrics import contains_answer, exact_match, retrieval_metrics, token_f1, word_count
from rag.jobs.report import write_report

RERANK = "+rerank"
DEFAULT_WORD_BUDGETS = (400, 600)


def parse_mode(mode: str) -> tuple[str, bool]:
    """'hybrid' -> ('hybrid', False); 'hybrid+rerank' -> ('hybrid', True)."""
    from rag.retrieve.retriever import MODES

    base, rerank = (mode[: -len(RERANK)], True) if mode.endswith(RERANK) else (mode, False)
    if base not in MODES:
        raise ConfigError(f"unknown retrieval mode '{mode}' (use {', '.join(MODES)}, each optionally with {RERANK})")
    return base, rerank


def check_modes(modes: Sequence[str], settings: Any) -> None:
    """Every mode known; a +rerank mode needs the reranker setting."""
    for m in modes:
        if parse_mode(m)[1] and not settings.retrieval.reranker:
            raise ConfigError(f"--mode {m} needs a reranker: set retrieval.reranker to a CrossEncoder (HF id or folder) "
                              "in rag.toml ([retrieval] reranker = ...), RAG_RETRIEVAL__RERANKER, or `rag eval --reranker PATH`")


class TimedReranker:
    """Wraps the retriever's reranker to time each query's cross-encoder work: its rerank call plus,
    when the retriever focuses long hits (`retrieval.focus_words`), the focus call that follows it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.seconds: list[float] = []  # one entry per reranked query

    def rerank(self, query: str, hits: Any) -> Any:
        t0 = time.perf_counter()
        out = self.inner.rerank(query, hits)
        self.seconds.append(time.perf_counter() - t0)
        return out

    def focus(self, *args: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        out = self.inner.focus(*args, **kw)
        if self.seconds:
            self.seconds[-1] += time.perf_counter() - t0
        return out

    def __getattr__(self, name: str) -> Any:  # scores, probability, ...: the reranker's own
        return getattr(self.inner, name)


def evaluate_retrieval(retriever: Any, questions: Sequence[EvalQuestion], mode: str, k: int = 10, batch: int = 256,
                       word_budgets: Sequence[int] = ()) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Metrics and per-question rows for one retrieval mode (answerable questions only). `mode` is
    dense, bm25 or hybrid, with '+rerank' to rerank the candidates with the configured cross-encoder
    (plain modes never rerank). `ms_per_question`: retrieval wall time per question, batched."""
    base, rerank = parse_mode(mode)
    qs = [q for q in questions if q.answerable]
    rows: list[tuple[list[bool], int, list[int], list[bool]]] = []
    per_q: list[dict[str, Any]] = []
    elapsed = 0.0
    for i in range(0, len(qs), batch):
        part = qs[i : i + batch]
        t0 = time.perf_counter()
        results = retriever.search([q.question for q in part], k, [q.filter for q in part], mode=base, rerank=rerank, expand=0)
        elapsed += time.perf_counter() - t0
        for q, hits in zip(part, results, strict=True):
            flags = [is_hit(q, h.chunk.source, h.chunk.text) for h in hits]
            # what a reader is shown: a focused span of a long hit (when the retriever focuses), else the chunk;
            # the word budget counts its words, and it is a hit within the budget only if that text is one
            read = [getattr(h, "text", None) or h.chunk.text for h in hits]
            words = [word_count(t) for t in read]
            read_flags = [f if t == h.chunk.text else is_hit(q, h.chunk.source, t) for f, t, h in zip(flags, read, hits, strict=True)]
            n_rel = max(1, len(q.gold_passages) or len(q.gold_sources) or 1)
            rows.append((flags, n_rel, words, read_flags))
            per_q.append({"id": q.id, "question": q.question, "hits": flags, "words": words, "rank": (flags.index(True) + 1) if any(flags) else None,
                          "retrieved": [{"source": h.chunk.source, "label": h.chunk.label, "score": round(h.score, 4)} for h in hits[:5]]})
    m = retrieval_metrics(rows, word_budgets=word_budgets, budget_k=k)
    m["ms_per_question"] = 1000 * elapsed / max(1, len(qs))
    return m, per_q


def evaluate_answers(answerer: Any, questions: Sequence[EvalQuestion], answer_mode: str, k: int, on_step: Any = None) -> tuple[dict[str, float], list[dict[str, Any]]]:
    rows = []
    for q in questions:
        a = answerer.ask(q.question, mode=answer_mode, k=k, filters=q.filter)
        pred = "" if a.refused else _strip(a.text)
        sents = a.sentences
        cited = [c for c in a.citations]
        gold_cited = [c for c in cited if q.gold_sources and c.passage.chunk.source in q.gold_sources]
        rows.append({
            "id": q.id, "question": q.question, "answerable": q.answerable, "answer": a.text, "refused": a.refused,
            "produced_by": a.produced_by, "em": exact_match(pred, q.answers) if q.answers else None,
            "f1": token_f1(pred, q.answers) if q.answers else None,
            "key_fact": contains_answer(pred, q.answers) if q.answers else None,
            "cites_gold_doc": (float(bool(gold_cited)) if not a.refused else None) if (q.answerable and q.gold_sources) else None,
            "citations": len(cited),
            "citation_precision": (sum(c.support >= answerer.settings.answer.support_threshold for c in cited) / len(cited)) if cited else None,
            "citation_gold_precision": (len(gold_cited) / len(cited)) if (cited and q.gold_sources) else None,
            "citation_recall": (sum(bool(s.citations) for s in sents) / len(sents)) if sents else None,
            "best_similarity": a.record.get("evidence", {}).get("best_similarity"),
            "latency_s": a.timings.get("total_s"),
            "status_notes": [n["text"] for n in getattr(a, "status_notes", ())],  # issue 13
        })
        if on_step:
            on_step()

    def mean(key: str, pred: Any = None) -> float | None:
        vals = [r[key] for r in rows if r[key] is not None and (pred is None or pred(r))]
        return sum(vals) / len(vals) if vals else None

    ans = [r for r in rows if r["answerable"]]
    una = [r for r in rows if not r["answerable"]]
    metrics = {
        "exact_match": mean("em", lambda r: r["answerable"]), "f1": mean("f1", lambda r: r["answerable"]),
        "citation_precision": mean("citation_precision"), "citation_gold_precision": mean("citation_gold_precision"),
        "citation_recall": mean("citation_recall"),
        "key_fact": mean("key_fact", lambda r: r["answerable"]), "answers_citing_gold_doc": mean("cites_gold_doc"),
        "refusal_accuracy": (sum(r["refused"] for r in una) / len(una)) if una else None,
        "false_refusal_rate": (sum(r["refused"] for r in ans) / len(ans)) if ans else None,
        "answered": float(sum(not r["refused"] for r in rows)), "questions": float(len(rows)),
    }
    return metrics, rows


def run_eval(dataset: Path, fmt: str | None, settings: Any, *, modes: Sequence[str] = ("hybrid",), answer_modes: Sequence[str] = (),
             limit: int | None = None, seed: int = 0, split: str | None = None, out: Path, reporter: Any = None, progress: Any = None, embedder: Any = None,
             word_budgets: Sequence[int] = DEFAULT_WORD_BUDGETS) -> tuple[list[Path], dict[str, Any]]:
    """Returns the report's files (report.md first) and the metrics written to metrics.json."""
    from rag.index.build import build_index
    from rag.retrieve.retriever import Retriever

    check_modes(modes, settings)
    budgets = sorted({int(b) for b in word_budgets})
    if any(b < 1 for b in budgets):
        raise ConfigError(f"--word-budget must be at least 1 word (got {budgets[0]})")
    fmt = fmt or guess_format(dataset)
    evalset, s = prepare_dataset(Path(dataset), fmt, settings, Path(settings.cache_dir))
    if evalset.corpus is not None:
        build_index(s, reporter=reporter, embedder=embedder)
    pool = evalset.questions
    if split is not None:
        pool = [q for q in pool if q.split == split]
        if not pool:
            raise ConfigError(f"no question of {dataset} is in split '{split}'")
    questions = sample_questions(pool, limit, seed)
    if fmt == "squad":  # unanswerable: the same questions scoped to another policy
        questions += cross_scope_unanswerables(questions, max(1, len(questions) // 5), seed)
    retriever = Retriever.open(s, embedder)
    retriever.search(["warm up"], 1, mode="dense", rerank=False, expand=0)  # first-call costs out of the timings
    timer = _timed_reranker(retriever) if any(parse_mode(m)[1] for m in modes) else None
    retrieval: dict[str, dict[str, Any]] = {}
    per_q: list[dict[str, Any]] = []
    answerable = [q for q in questions if q.answerable]
    for mode in modes:
        if timer is not None:
            timer.seconds.clear()
        m, rows = evaluate_retrieval(retriever, answerable, mode, k=10, word_budgets=budgets)
        if timer is not None and parse_mode(mode)[1]:
            secs = sorted(timer.seconds)
            m["rerank_ms_per_question"] = 1000 * sum(secs) / max(1, len(secs))
            m["rerank_ms_p95"] = 1000 * secs[min(len(secs) - 1, int(0.95 * len(secs)))] if secs else 0.0
            m["rerank_candidates"] = float(s.retrieval.rerank_top)
        curve = {}
        for kk in (1, 2, 3, 5, 10):
            curve[str(kk)] = sum(1 for r in rows if r["rank"] and r["rank"] <= kk) / max(1, len(rows))
        m["curve"] = curve  # type: ignore[assignment]
        retrieval[mode] = m
        per_q += [{**r, "mode": mode, "answerable": True} for r in rows]
        if progress:
            progress(len(answerable), f"retrieval {mode}")
    # best similarity for answerable vs unanswerable questions (the refusal signal)
    hits = retriever.search([q.question for q in questions], 5, [q.filter for q in questions])
    sims: dict[str, list[float]] = {"answerable": [], "unanswerable": []}
    for q, h in zip(questions, hits, strict=True):
        sims["answerable" if q.answerable else "unanswerable"].append(max((p.scores.get("dense", 0.0) for p in h), default=0.0))
    answers: dict[str, dict[str, Any]] = {}
    if answer_modes:
        from rag.answer.answerer import Answerer

        answerer = Answerer(retriever, s)
        for am in answer_modes:
            m, rows = evaluate_answers(answerer, questions, am, s.retrieval.top_k, on_step=(lambda am=am: progress(1, f"answers {am}")) if progress else None)
            answers[am] = m
            per_q += [{**r, "answer_mode": am} for r in rows]
    return write_report(out, evalset.name, s, retriever.store, retrieval, answers, per_q, sims, word_budgets=budgets)


def _timed_reranker(retriever: Any) -> TimedReranker:
    """The retriever's own reranker (what `search(rerank=True)` calls), loaded now and timed per query."""
    inner = getattr(retriever, "scorer", None)  # the retriever builds it from the settings
    if inner is None:
        from rag.retrieve.rerank import Reranker

        inner = Reranker(retriever.settings.retrieval.reranker, getattr(retriever.embedder, "device", None))
    inner.scores("warm up", ["warm up"])  # load the model outside the timings
    timer = TimedReranker(inner)
    retriever._reranker = timer
    return timer


def _strip(text: str) -> str:
    return re.sub(r"\[\d+\]|[“”]|^Quoted from the documents:", "", text).strip()
