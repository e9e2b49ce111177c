"""Grounded answers: retrieval -> (LLM draft) -> post-hoc attribution -> cited answer or refusal.

Refusal is decided from the evidence (retrieval similarity, support), whatever the model wrote.
Answer modes: `extractive` quotes the best supporting sentences of the top passages (no LLM);
`generative` is the LLM answer after attribution; `auto` is generative with unsupported sentences
removed, falling back to the extractive answer when too little supported text remains.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from rag.answer.attribution import attribute, drop_off_topic
from rag.answer.evidence import Evidence, evidence_sentences, prefetch_evidence
from rag.answer.extractive import extractive
from rag.answer.limits import count_prompt, deadline_from, fit_prompt, past, prompt_budget
from rag.answer.markers import is_refusal, render, renumber
from rag.answer.pool import pool_evidence, pool_passages
from rag.answer.prompts import build_messages, condense_query
from rag.answer.qtypes import TYPED, classify
from rag.answer.requirements import measure_asked, missing_answer_kind
from rag.errors import ConfigError
from rag.index.chunk import chunk_signature
from rag.settings import AnswerSettings
from rag.types import Answer, AnswerSentence, Citation, Passage

ANSWER_MODES = ("generative", "extractive", "auto")
SECOND_LOOK = 4  # a quantity question missing its number looks this many times deeper (x k) before refusing
REFUSAL_TEXT = "The documents don't say. The closest passages are listed below."



@dataclass
class _Pending:
    """An answer waiting for the model's draft (lets batch runs generate many drafts at once)."""

    question: str
    cfg: AnswerConfig
    passages: list[Passage]
    prompt_passages: list[Passage]
    messages: list[dict[str, str]]
    timings: dict[str, Any]
    record: dict[str, Any]
    evidence: Evidence
    ext_sents: list[AnswerSentence]
    ext_quotes: dict[int, tuple[str, float]]


@dataclass(frozen=True)
class AnswerConfig:
    """One request's answer settings: the `answer` settings group with the request's mode and k."""

    opts: AnswerSettings
    mode: str
    k: int
    max_new_tokens: int
    prompt_passages: int

    def __post_init__(self) -> None:
        if self.mode not in ANSWER_MODES:
            raise ConfigError(f"unknown answer mode '{self.mode}' (use generative, extractive or auto)")


class Answerer:
    """Retriever + embedder + (lazily) the LLM. Thread-safe for concurrent questions."""

    def __init__(self, retriever: Any, settings: Any, generator: Any = None) -> None:
        self.retriever = retriever
        self.settings = settings
        self._generator = generator  # an injected generator serves settings.llm.model

    @property
    def embedder(self) -> Any:
        return self.retriever.embedder

    def generator(self, model: str | None = None) -> Any:
        name = model or self.settings.llm.model
        if self._generator is not None and name == self.settings.llm.model:
            return self._generator
        from rag.answer.generate import get_generator

        llm = self.settings.llm
        gen = get_generator(name, llm.device, llm.dtype, Path(self.settings.cache_dir), llm.backend, llm.threads)
        if name == self.settings.llm.model:
            self._generator = gen
        return gen

    def config(self, **overrides: Any) -> AnswerConfig:
        s = self.settings
        base: dict[str, Any] = dict(mode=s.answer.mode, k=s.retrieval.top_k, max_new_tokens=s.llm.max_new_tokens,
                                    prompt_passages=s.retrieval.top_k)
        base.update({k: v for k, v in overrides.items() if v is not None})
        return AnswerConfig(opts=s.answer, **base)

    def ask(
        self,
        question: str,
        *,
        history: Sequence[Any] = (),
        filters: Any = None,
        mode: str | None = None,
        k: int | None = None,
        model: str | None = None,
        retrieval_mode: str | None = None,
        on_token: Callable[[str], None] | None = None,
        passages: Sequence[Passage] | None = None,
        deadline: float | None = None,
    ) -> Answer:
        """`deadline` (time.monotonic()): generation stops there; default now + limits.request_timeout_s."""
        deadline = deadline if deadline is not None else deadline_from(self.settings)
        question = " ".join(question.split())
        if not question:
            raise ConfigError("the question is empty")
        cfg = self.config(mode=mode, k=k)
        t0 = time.perf_counter()
        query = condense_query(history, question)
        store = self.retriever.store  # one generation for the whole answer, whatever a build publishes meanwhile
        side_by_side = self._compare(question, cfg, filters, retrieval_mode, store) if passages is None and query == question else None
        if side_by_side is not None:
            return self._noted(side_by_side, store)
        if passages is None:
            passages = self.retriever.search([query], cfg.k, filters or None, mode=retrieval_mode, store=store)[0]
        state = self._prepare(question, query, cfg, passages, time.perf_counter() - t0, filters, retrieval_mode, model,
                              store=store)
        if isinstance(state, Answer):
            return self._noted(state, store)
        stop = past(deadline)
        result = self.generator(model).generate(state.messages, cfg.max_new_tokens, on_token=on_token, stop=stop)
        if stop():  # the draft so far is checked like any other; the record says why it is short
            state.record["stopped"] = f"generation stopped at the time limit (limits.request_timeout_s = {self.settings.limits.request_timeout_s:g})"
        return self._noted(self._complete(state, result), store)

    def _noted(self, answer: Answer, store: Any) -> Answer:
        """Status notes on the cited documents as of retrieval.as_of (issue 13): the system's, not the model's."""
        from rag.answer.status_notes import with_status_notes
        from rag.index.status import parse_as_of

        return with_status_notes(answer, store, parse_as_of(self.settings.retrieval.as_of))

    def _compare(self, question: str, cfg: AnswerConfig, filters: Any, retrieval_mode: str | None, store: Any) -> Answer | None:
        """A question comparing two documents or dates, answered side by side without the LLM (issue 13); else None."""
        from rag.answer.side_by_side import compare_answer

        return compare_answer(self, question, cfg, filters, retrieval_mode, store,
                              lambda: self._record(question, question, cfg, filters, retrieval_mode, store))

    def ask_many(
        self,
        questions: Sequence[str],
        *,
        filters: Sequence[Any] | Any = None,
        mode: str | None = None,
        k: int | None = None,
        model: str | None = None,
        retrieval_mode: str | None = None,
        batch_size: int = 8,
    ) -> list[Answer | Exception]:
        """Many questions at once: one batched retrieval, batched generation. Same answers as `ask`.

        A question that fails yields its exception in place of an answer; the others go on.
        """
        cfg = self.config(mode=mode, k=k)
        qs = [" ".join(q.split()) for q in questions]
        per_filter = list(filters) if isinstance(filters, list) else [filters] * len(qs)
        t0 = time.perf_counter()
        store = self.retriever.store
        hits = self.retriever.search(qs, cfg.k, [f or None for f in per_filter], mode=retrieval_mode, store=store)
        t_ret = (time.perf_counter() - t0) / max(1, len(qs))
        out: list[Answer | Exception | _Pending] = []
        ev_cache: dict[str, Any] = {}
        prefetch_evidence(hits, self.embedder, ev_cache)
        for q, f, h in zip(qs, per_filter, hits, strict=True):
            try:
                if not q:
                    raise ConfigError("the question is empty")
                out.append(self._compare(q, cfg, f, retrieval_mode, store)
                           or self._prepare(q, q, cfg, h, t_ret, f, retrieval_mode, model, ev_cache, store=store))
            except Exception as e:  # recorded per question
                out.append(e)
        pending = [i for i, x in enumerate(out) if isinstance(x, _Pending)]
        if pending:
            gen = self.generator(model)
            for start in range(0, len(pending), max(1, batch_size)):
                idx = pending[start : start + batch_size]
                try:
                    if hasattr(gen, "generate_batch") and len(idx) > 1:
                        results = gen.generate_batch([out[i].messages for i in idx], cfg.max_new_tokens)  # type: ignore[union-attr]
                    else:
                        results = [gen.generate(out[i].messages, cfg.max_new_tokens) for i in idx]  # type: ignore[union-attr]
                    for i, r in zip(idx, results, strict=True):
                        out[i] = self._complete(out[i], r)  # type: ignore[arg-type]
                except Exception as e:
                    for i in idx:
                        out[i] = e
        return [self._noted(a, store) if isinstance(a, Answer) else a for a in out]  # type: ignore[misc]

    def _prepare(self, question: str, query: str, cfg: AnswerConfig, passages: Sequence[Passage], t_retrieve: float,
                 filters: Any, retrieval_mode: str | None, model: str | None, evidence_cache: dict[str, Any] | None = None,
                 store: Any = None) -> Answer | _Pending:
        """Everything before generation; returns a final Answer when no LLM is needed."""
        store = store or self.retriever.store
        timings: dict[str, Any] = {"retrieve_s": t_retrieve}
        record = self._record(question, query, cfg, filters, retrieval_mode, store)
        best_sim = max((p.scores.get("dense", p.score) for p in passages), default=0.0)
        record["evidence"] = {"best_similarity": round(best_sim, 4)}
        if not passages or best_sim < cfg.opts.refusal_threshold:
            return self._refusal(question, cfg, passages, timings, record, "no passage is similar enough to the question")
        p_answer = self._answer_probability(query, passages)  # a follow-up ("By when?") is judged with what it refers to
        if p_answer is not None:
            record["evidence"]["answer_probability"] = round(p_answer, 4)
            if p_answer < cfg.opts.answerable_probability:
                return self._refusal(question, cfg, passages, timings, record,
                                     f"the evidence scorer finds no passage that answers the question (p = {p_answer:.2f})")

        t1 = time.perf_counter()
        evidence_cache = evidence_cache if evidence_cache is not None else {}  # a passage is embedded once per answer
        ev = Evidence(passages, self.embedder, cache=evidence_cache, dense_weight=cfg.opts.support_dense_weight)
        missing = missing_answer_kind(question, (s for sents in ev.sentences for s in sents))
        if missing:  # a second look: the candidates just below the top k may hold the number asked for
            wider = self._second_look(question, query, cfg, passages, filters, retrieval_mode, store)
            if wider is None:
                record["evidence"]["missing"] = missing
                return self._refusal(question, cfg, passages, timings, record, f"the passages give no {missing}")
            passages, record["evidence"]["second_look"] = wider, True
            ev = Evidence(passages, self.embedder, cache=evidence_cache, dense_weight=cfg.opts.support_dense_weight)
        qtype = classify(question)  # the follow-up says what kind of answer it wants, the condensed query what about
        qtype_ = qtype if query != question and qtype in TYPED else None
        pool, ev_pool = list(passages), ev
        if cfg.mode == "extractive" and cfg.opts.sentence_pool > len(passages):  # deeper candidates, pre-selected (pool.py)
            pool = pool_passages(self.retriever, query, passages, cfg.opts.sentence_pool, filters, retrieval_mode, store)
            ev_pool, record["evidence"]["pool_cost"] = pool_evidence(query, pool, len(passages), self.embedder, cfg.opts.pool_units,
                                                                     evidence_cache, cfg.opts.support_dense_weight, qtype_)
        ext_sents, ext_quotes, ext_best = extractive(query, pool, self.embedder, evidence=ev_pool, opts=cfg.opts, qtype=qtype_)
        if len(pool) > len(passages):
            passages, ext_sents, ext_quotes = _quoted_into(passages, pool, ext_sents, ext_quotes, record)
        record["evidence"]["best_sentence"] = round(ext_best, 4)
        timings["attribute_s"] = time.perf_counter() - t1
        if not ext_sents and (qtype_ or classify(query)) == "how_many" and (measure := measure_asked(query)):
            # numbers near the question, none of what it asks for (extractive.lead_fits): no mode may answer with one
            record["evidence"]["missing"] = measure
            return self._refusal(question, cfg, passages, timings, record, f"the passages give no {measure}")
        if cfg.mode == "extractive" or (cfg.mode == "auto" and ext_best < cfg.opts.extractive_threshold):
            if ext_best < cfg.opts.extractive_threshold or not ext_sents:
                return self._refusal(question, cfg, passages, timings, record, "no sentence of the passages matches the question")
            return self._finish(question, cfg, passages, ext_sents, ext_quotes, "extractive", timings, record, None)
        record["settings"]["llm_model"] = model or self.settings.llm.model
        prompt_passages = list(passages[: cfg.prompt_passages])
        chosen = select_evidence(self.embedder.encode([question])[0], ev, len(prompt_passages), cfg.opts.evidence_sentences) \
            if cfg.opts.prompt == "evidence" else None
        gen = self.generator(model)

        def build(n: int, chars: int) -> list[dict[str, str]]:
            ev_n = {i: v for i, v in chosen.items() if i <= n} if chosen is not None else None
            return build_messages(question, prompt_passages[:n], chars, evidence=ev_n)

        # the prompt fits the model's window (a huge question or k would otherwise cost minutes and gigabytes)
        messages, n_fit, _ = fit_prompt(build, len(prompt_passages), cfg.opts.max_chars_per_passage,
                                        prompt_budget(gen, self.settings, cfg.max_new_tokens), lambda m: count_prompt(gen, m))
        if n_fit < len(prompt_passages):
            record["prompt_passages_dropped"] = len(prompt_passages) - n_fit
            prompt_passages = prompt_passages[:n_fit]
        return _Pending(question, cfg, list(passages), prompt_passages, messages, timings, record, ev, ext_sents, ext_quotes)

    def _complete(self, st: _Pending, result: Any) -> Answer:
        """Attribution and the mode's decision, given the model's draft."""
        cfg, timings, record = st.cfg, st.timings, st.record
        timings.update(generate_s=result.generate_s, first_token_s=result.first_token_s, tokens=result.tokens,
                       prompt_tokens=result.prompt_tokens, tokens_per_s=result.tokens_per_s)
        record["model_output"] = result.text
        t2 = time.perf_counter()
        failures: dict[int, list[str]] = {}
        sents, quotes = attribute(result.text, st.prompt_passages, self.embedder, cfg.opts.support_threshold, st.evidence,
                                  failures=failures, min_share=cfg.opts.support_content_share)
        if failures:  # dates, numbers, identifiers or quotations the cited passage does not hold
            record["unsupported_facts"] = {sents[i].text: f for i, f in failures.items() if i < len(sents)}
        sents, off_topic = drop_off_topic(sents, st.question, st.evidence, self.embedder, cfg.opts.off_topic_ratio)
        if off_topic:
            record["off_topic_sentences"] = off_topic
        timings["attribute_s"] = timings.get("attribute_s", 0.0) + time.perf_counter() - t2
        model_refused = is_refusal(result.text)
        q, passages = st.question, st.passages
        if cfg.mode == "generative":
            if model_refused or not any(s.supported for s in sents):
                why = "the model found no answer in the passages" if model_refused else "no sentence of the model's answer is supported by the passages"
                return self._refusal(q, cfg, passages, timings, record, why)
            return self._finish(q, cfg, passages, sents, quotes, "generative", timings, record, None)
        # auto
        supported = [s for s in sents if s.supported]
        dropped = len(sents) - len(supported)
        if model_refused or sum(len(s.text) for s in supported) < cfg.opts.min_supported_chars:
            if not st.ext_sents:
                return self._refusal(q, cfg, passages, timings, record, "no supported answer")
            note = "extractive answer: the model's draft was not supported by the passages"
            return self._finish(q, cfg, passages, st.ext_sents, st.ext_quotes, "extractive", timings, record, note)
        note = f"{dropped} unsupported sentence(s) of the model's draft removed" if dropped else None
        used = {n for s in supported for n in s.citations}
        return self._finish(q, cfg, passages, supported, {n: x for n, x in quotes.items() if n in used}, "generative", timings, record, note)

    # -- helpers -----------------------------------------------------------------------------

    def _second_look(self, question: str, query: str, cfg: AnswerConfig, passages: Sequence[Passage], filters: Any,
                     retrieval_mode: str | None, store: Any, holds: Any = None) -> list[Passage] | None:
        """For a question whose top passages hold no answer of the kind it wants (a number of what it
        counts; with `holds`, e.g. a date from the top document): the reranked candidates up to
        SECOND_LOOK x k that do hold one take the places of the lowest-ranked passages (at most two);
        None when none does. Costs one more search, on this path only."""
        seen = {p.chunk.chunk_id for p in passages}
        holds = holds or (lambda text: missing_answer_kind(question, evidence_sentences(text)) is None)
        wider = self.retriever.search([query], cfg.k * SECOND_LOOK, filters or None, mode=retrieval_mode, store=store)[0]
        found = [p for p in wider if p.chunk.chunk_id not in seen and holds(p.chunk.text)][:2]
        return make_room(passages, found) if found else None

    def _answer_probability(self, question: str, passages: Sequence[Passage]) -> float | None:
        """Calibrated probability (evidence scorer) that the best passage answers the question; None without a scorer.

        Passages the retriever already reranked carry it; otherwise the top passages are scored now.
        """
        known = [p.scores["rerank_p"] for p in passages if "rerank_p" in p.scores]
        if known:
            return float(max(known))
        scorer = getattr(self.retriever, "scorer", None)
        if scorer is None or not passages:
            return None
        return float(np.max(scorer.probability(scorer.scores(question, [p.chunk.text for p in passages]))))

    def _record(self, question: str, query: str, cfg: AnswerConfig, filters: Any, retrieval_mode: str | None,
                store: Any) -> dict[str, Any]:
        s = self.settings
        return {
            "retrieval_query": query,
            "filters": filters or {},
            "index": {"folder": str(store.index_dir), "generation": store.generation.name, "index_id": store.index_id,
                      "embedding_model": store.manifest.embedding.model},
            "settings": {
                "answer_mode": cfg.mode, "k": cfg.k, "retrieval_mode": retrieval_mode or s.retrieval.mode,
                "reranker": s.retrieval.reranker, "refusal_threshold": cfg.opts.refusal_threshold,
                "extractive_threshold": cfg.opts.extractive_threshold, "support_threshold": cfg.opts.support_threshold,
                "answerable_probability": cfg.opts.answerable_probability,
                "max_new_tokens": cfg.max_new_tokens, "llm_model": s.llm.model, "chunking": chunk_signature(s.chunking),
            },
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }

    def _finish(self, question: str, cfg: AnswerConfig, passages: Sequence[Passage], sents: Sequence[AnswerSentence],
                quotes: dict[int, tuple[str, float]], produced_by: str, timings: dict[str, Any], record: dict[str, Any],
                note: str | None) -> Answer:
        sents, by_number = renumber(sents)  # [1], [2], ... in order of first use, whatever the passage ranks
        citations = tuple(Citation(n=n, passage=passages[k - 1], quote=quotes.get(k, ("", 0.0))[0], support=quotes.get(k, ("", 0.0))[1])
                          for n, k in sorted(by_number.items()))
        record["citation_passages"] = {str(n): k for n, k in sorted(by_number.items())}  # [n] -> passage rank
        timings["total_s"] = sum(v for k, v in timings.items() if k.endswith("_s") and k not in ("first_token_s", "total_s"))
        model = record["settings"]["llm_model"] if produced_by == "generative" else None
        return Answer(question=question, text=render(sents), refused=False, mode=cfg.mode, produced_by=produced_by,
                      citations=citations, passages=tuple(passages), sentences=tuple(sents), model=model,
                      index_id=record["index"]["index_id"], note=note, timings=timings, record=record)

    def _refusal(self, question: str, cfg: AnswerConfig, passages: Sequence[Passage], timings: dict[str, Any],
                 record: dict[str, Any], why: str) -> Answer:
        record["refusal_reason"] = why
        timings["total_s"] = sum(v for k, v in timings.items() if k.endswith("_s") and k not in ("first_token_s", "total_s"))
        return Answer(question=question, text=REFUSAL_TEXT, refused=True, mode=cfg.mode, produced_by="refusal",
                      citations=(), passages=tuple(passages), model=None, index_id=record["index"]["index_id"],
                      note=why, timings=timings, record=record)


def make_room(passages: Sequence[Passage], found: Sequence[Passage], quoted: frozenset[int] = frozenset()) -> list[Passage]:
    """The passages with `found` (deeper candidates) appended in place of the lowest-ranked ones, none
    of the `quoted` passage numbers (1-based) dropped and at least one kept; ranks renumbered 1..n.
    The answer keeps k passages, and those it quotes are among them (second look, sentence pool)."""
    keep = list(range(len(passages)))
    for i in reversed(range(len(passages))):
        if len(keep) + len(found) <= len(passages) or len(keep) <= 1:
            break
        if i + 1 not in quoted:
            keep.remove(i)
    return [replace(p, rank=r) for r, p in enumerate([*(passages[i] for i in keep), *found], 1)]


def _quoted_into(passages: Sequence[Passage], pool: Sequence[Passage], sents: Sequence[AnswerSentence],
                 quotes: dict[int, tuple[str, float]], record: dict[str, Any],
                 ) -> tuple[list[Passage], list[AnswerSentence], dict[int, tuple[str, float]]]:
    """An answer chosen from the sentence pool, brought back to k passages: the deeper passages it
    quotes replace the lowest-ranked passages it does not quote; its [n] follow the new numbering."""
    used = {n for s in sents for n in s.citations}
    deep = sorted(n for n in used if n > len(passages))
    if not deep:
        return list(passages), list(sents), quotes
    record["evidence"]["sentence_pool"] = {"size": len(pool), "quoted_ranks": deep}
    final = make_room(passages, [pool[n - 1] for n in deep], frozenset(used))
    new = {p.chunk.chunk_id: i for i, p in enumerate(final, 1)}
    num = {n: new[p.chunk.chunk_id] for n, p in enumerate(pool, 1) if p.chunk.chunk_id in new}
    return (final, [replace(s, citations=tuple(num[n] for n in s.citations)) for s in sents],
            {num[n]: q for n, q in quotes.items() if n in num})


def select_evidence(qvec: Any, ev: Evidence, n_passages: int, k: int) -> dict[int, list[str]]:
    """The k sentences of the first n passages most similar to the question, grouped by passage number
    (1-based) and kept in document order: the evidence-first prompt."""
    scored: list[tuple[float, int, int]] = []
    for n in range(1, min(n_passages, len(ev.sentences)) + 1):
        vecs = ev.vectors[n - 1]
        if len(vecs):
            scored += [(float(s), n, j) for j, s in enumerate(vecs @ qvec)]
    chosen: dict[int, list[int]] = {}
    for _, n, j in sorted(scored, reverse=True)[:k]:
        chosen.setdefault(n, []).append(j)
    return {n: [ev.sentences[n - 1][j] for j in sorted(js)] for n, js in chosen.items()}
