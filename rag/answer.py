"""Grounded answers: retrieval -> (LLM draft) -> post-hoc attribution -> cited answer or refusal.

Small open models neither cite nor refuse reliably, so both are the system's job:
- every answer sentence is scored against every passage (embedding similarity of the sentence to the
  passage's best-matching sentence, plus the share of its content words found in the passage);
  valid [n] markers are kept when the passage supports the sentence, a missing citation is added
  from the best-supported passage, markers pointing to no passage are dropped, and unsupported
  sentences are flagged (and, in `auto`, removed);
- refusal is decided from the evidence (retrieval similarity, support), whatever the model wrote.

Answer modes: `extractive` quotes the best supporting sentences of the top passages (no LLM);
`generative` is the LLM answer after attribution; `auto` is generative with unsupported sentences
removed, falling back to the extractive answer when too little supported text remains.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .chunk import split_sentences
from .errors import ConfigError
from .lexical import lexical_tokens, unknown_terms
from .prompts import REFUSAL_SENTENCE, build_messages, condense_query, neutralise_markers
from .types import Answer, AnswerSentence, Citation, Passage

ANSWER_MODES = ("generative", "extractive", "auto")
REFUSAL_TEXT = "The documents don't say. The closest passages are listed below."
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


def lexical_support(sentence: str, passage_text: str) -> float:
    """Share of the sentence's content words that occur in the passage (0..1)."""
    s = set(lexical_tokens(sentence))
    if not s:
        return 0.0
    p = set(lexical_tokens(passage_text))
    return len(s & p) / len(s)


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


def evidence_sentences(text: str) -> list[str]:
    """Sentences of a passage, with heading lines split off and whitespace normalised."""
    from .ingest import looks_like_heading

    out: list[str] = []
    spans: list[tuple[int, int]] = []
    pos = 0
    for m in [*re.finditer(r"\n[ \t]*\n", text), None]:  # paragraphs first: a heading paragraph stands alone
        end = m.start() if m else len(text)
        spans += split_sentences(text, pos, end)
        pos = m.end() if m else len(text)
    for a, b in spans or [(0, len(text))]:
        lines = text[a:b].split("\n")
        buf: list[str] = []
        for i, line in enumerate(lines):
            nxt = lines[i + 1] if i + 1 < len(lines) else ""
            if not buf and nxt and looks_like_heading(line, "", nxt, True) is not None:
                out.append(" ".join(line.split()))  # a heading: its own unit
                continue
            buf.append(line)
        if buf:
            out.append(" ".join(" ".join(buf).split()))
    return [s for s in out if s]


# ---------------------------------------------------------------------------------------------
# Attribution


def prefetch_evidence(passage_lists: Sequence[Sequence[Passage]], embedder: Any, cache: dict[str, tuple[list[str], np.ndarray]]) -> None:
    """Split and embed the sentences of every passage not yet in `cache`, in one encode call.

    Batch runs answer many questions whose passages overlap; embedding each passage once, together,
    is what makes them faster than a loop of single questions.
    """
    todo: dict[str, list[str]] = {}
    for passages in passage_lists:
        for p in passages:
            cid = p.chunk.chunk_id
            if cid not in cache and cid not in todo:
                todo[cid] = [s for s in evidence_sentences(p.chunk.text) if len(s) > 1]
    flat = [s for sents in todo.values() for s in sents]
    if not todo:
        return
    vecs = embedder.encode(flat) if flat else np.zeros((0, 1), np.float32)
    i = 0
    for cid, sents in todo.items():
        cache[cid] = (sents, vecs[i : i + len(sents)])
        i += len(sents)


@dataclass
class Evidence:
    """Sentence-level view of the passages, embedded once per answer."""

    passages: Sequence[Passage]
    embedder: Any
    sentences: list[list[str]] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)
    cache: dict[str, tuple[list[str], np.ndarray]] | None = None  # chunk_id -> sentences, vectors

    def __post_init__(self) -> None:
        cache = self.cache if self.cache is not None else {}
        prefetch_evidence([self.passages], self.embedder, cache)
        for p in self.passages:
            sents, vecs = cache[p.chunk.chunk_id]
            self.sentences.append(sents)
            self.vectors.append(vecs)

    def support(self, sentence: str, vec: np.ndarray, n: int) -> tuple[float, str]:
        """(support of the sentence by passage n (1-based), the passage sentence that supports it best)."""
        sents, vecs = self.sentences[n - 1], self.vectors[n - 1]
        if not sents:
            return 0.0, ""
        sims = vecs @ vec
        j = int(np.argmax(sims))
        lex = lexical_support(sentence, self.passages[n - 1].chunk.text)
        return 0.5 * float(sims[j]) + 0.5 * lex, sents[j]


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


# ---------------------------------------------------------------------------------------------
# Extractive answers


def extractive(question: str, passages: Sequence[Passage], embedder: Any, n_sentences: int = 2, evidence: Evidence | None = None, min_score: float = 0.0) -> tuple[list[AnswerSentence], dict[int, tuple[str, float]], float]:
    """The best question-matching sentences of the top passages, quoted and cited. Returns best score too."""
    ev = evidence or Evidence(passages, embedder)
    qvec = embedder.encode([question])[0]
    qtok = set(lexical_tokens(question))
    cands: list[tuple[float, int, str]] = []
    for n, (sents, vecs) in enumerate(zip(ev.sentences, ev.vectors, strict=True), 1):
        if not sents:
            continue
        sims = vecs @ qvec
        prior = 0.03 * (len(passages) - n) / max(1, len(passages))  # retrieval rank as a small prior
        for s, sim in zip(sents, sims, strict=True):
            toks = set(lexical_tokens(s))
            if len(toks) < 4:  # headings, fragments
                continue
            lex = len(qtok & toks) / len(qtok) if qtok else 0.0
            cands.append((0.65 * float(sim) + 0.35 * lex + prior, n, s))
    if not cands:
        return [], {}, 0.0
    cands.sort(key=lambda x: -x[0])
    best = cands[0][0]
    chosen: list[tuple[float, int, str]] = []
    for c in cands:
        if len(chosen) >= n_sentences or c[0] < max(min_score, best - 0.12):
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


# ---------------------------------------------------------------------------------------------
# The answerer


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


@dataclass
class AnswerConfig:
    mode: str = "extractive"
    k: int = 5
    refusal_threshold: float = 0.45  # best dense similarity of the question to any passage
    unknown_term_similarity: float = 0.70  # with a question word unknown to the corpus, refuse below this
    extractive_threshold: float = 0.40  # best extractive sentence score
    support_threshold: float = 0.50  # sentence-passage support needed to count as supported
    min_supported_chars: int = 40  # auto: less supported text than this -> extractive fallback
    extractive_sentences: int = 2
    max_new_tokens: int = 160
    max_chars_per_passage: int = 700
    prompt_passages: int = 5

    def __post_init__(self) -> None:
        if self.mode not in ANSWER_MODES:
            raise ConfigError(f"unknown answer mode '{self.mode}' (use generative, extractive or auto)")


class Answerer:
    """Retriever + embedder + (lazily) the LLM. Thread-safe for concurrent questions."""

    def __init__(self, retriever: Any, settings: Any, generator: Any = None) -> None:
        self.retriever = retriever
        self.settings = settings
        self._generator = generator  # an injected generator serves settings.llm_model

    @property
    def embedder(self) -> Any:
        return self.retriever.embedder

    def generator(self, model: str | None = None) -> Any:
        name = model or self.settings.llm_model
        if self._generator is not None and name == self.settings.llm_model:
            return self._generator
        from .generate import get_generator

        gen = get_generator(name, self.settings.llm_device, self.settings.llm_dtype)
        if name == self.settings.llm_model:
            self._generator = gen
        return gen

    def config(self, **overrides: Any) -> AnswerConfig:
        s = self.settings
        base = dict(
            mode=s.answer_mode, k=s.top_k, refusal_threshold=s.refusal_threshold, extractive_threshold=s.extractive_threshold,
            unknown_term_similarity=s.unknown_term_similarity,
            support_threshold=s.support_threshold, max_new_tokens=s.max_new_tokens, prompt_passages=s.top_k,
        )
        base.update({k: v for k, v in overrides.items() if v is not None})
        return AnswerConfig(**base)

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
    ) -> Answer:
        question = " ".join(question.split())
        if not question:
            raise ConfigError("the question is empty")
        cfg = self.config(mode=mode, k=k)
        t0 = time.perf_counter()
        query = condense_query(history, question)
        store = self.retriever.store  # one generation for the whole answer, whatever a build publishes meanwhile
        if passages is None:
            passages = self.retriever.search([query], cfg.k, filters or None, mode=retrieval_mode, store=store)[0]
        state = self._prepare(question, query, cfg, passages, time.perf_counter() - t0, filters, retrieval_mode, model,
                              store=store)
        if isinstance(state, Answer):
            return state
        result = self.generator(model).generate(state.messages, cfg.max_new_tokens, on_token=on_token)
        return self._complete(state, result)

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
                out.append(self._prepare(q, q, cfg, h, t_ret, f, retrieval_mode, model, ev_cache, store=store))
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
        return out  # type: ignore[return-value]

    def _prepare(self, question: str, query: str, cfg: AnswerConfig, passages: Sequence[Passage], t_retrieve: float,
                 filters: Any, retrieval_mode: str | None, model: str | None, evidence_cache: dict[str, Any] | None = None,
                 store: Any = None) -> Answer | _Pending:
        """Everything before generation; returns a final Answer when no LLM is needed."""
        store = store or self.retriever.store
        timings: dict[str, Any] = {"retrieve_s": t_retrieve}
        record = self._record(question, query, cfg, filters, retrieval_mode, store)
        best_sim = max((p.scores.get("dense", p.score) for p in passages), default=0.0)
        unknown = unknown_terms(question, store.bm25[0].vocab_dict)
        record["evidence"] = {"best_similarity": round(best_sim, 4), "unknown_terms": unknown}
        if not passages or best_sim < cfg.refusal_threshold:
            return self._refusal(question, cfg, passages, timings, record, "no passage is similar enough to the question")
        if unknown and best_sim < cfg.unknown_term_similarity:
            return self._refusal(question, cfg, passages, timings, record, f"the documents never mention: {', '.join(unknown)}")

        t1 = time.perf_counter()
        ev = Evidence(passages, self.embedder, cache=evidence_cache)
        ext_sents, ext_quotes, ext_best = extractive(question, passages, self.embedder, cfg.extractive_sentences, ev)
        record["evidence"]["best_sentence"] = round(ext_best, 4)
        timings["attribute_s"] = time.perf_counter() - t1
        if cfg.mode == "extractive" or (cfg.mode == "auto" and ext_best < cfg.extractive_threshold):
            if ext_best < cfg.extractive_threshold or not ext_sents:
                return self._refusal(question, cfg, passages, timings, record, "no sentence of the passages matches the question")
            return self._finish(question, cfg, passages, ext_sents, ext_quotes, "extractive", timings, record, None)
        record["settings"]["llm_model"] = model or self.settings.llm_model
        prompt_passages = list(passages[: cfg.prompt_passages])
        messages = build_messages(question, prompt_passages, cfg.max_chars_per_passage)
        return _Pending(question, cfg, list(passages), prompt_passages, messages, timings, record, ev, ext_sents, ext_quotes)

    def _complete(self, st: _Pending, result: Any) -> Answer:
        """Attribution and the mode's decision, given the model's draft."""
        cfg, timings, record = st.cfg, st.timings, st.record
        timings.update(generate_s=result.generate_s, first_token_s=result.first_token_s, tokens=result.tokens,
                       prompt_tokens=result.prompt_tokens, tokens_per_s=result.tokens_per_s)
        record["model_output"] = result.text
        t2 = time.perf_counter()
        sents, quotes = attribute(result.text, st.prompt_passages, self.embedder, cfg.support_threshold, st.evidence)
        sents, off_topic = drop_off_topic(sents, st.question, st.evidence, self.embedder)
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
        if model_refused or sum(len(s.text) for s in supported) < cfg.min_supported_chars:
            if not st.ext_sents:
                return self._refusal(q, cfg, passages, timings, record, "no supported answer")
            note = "extractive answer: the model's draft was not supported by the passages"
            return self._finish(q, cfg, passages, st.ext_sents, st.ext_quotes, "extractive", timings, record, note)
        note = f"{dropped} unsupported sentence(s) of the model's draft removed" if dropped else None
        used = {n for s in supported for n in s.citations}
        return self._finish(q, cfg, passages, supported, {n: x for n, x in quotes.items() if n in used}, "generative", timings, record, note)

    # -- helpers -----------------------------------------------------------------------------

    def _record(self, question: str, query: str, cfg: AnswerConfig, filters: Any, retrieval_mode: str | None,
                store: Any) -> dict[str, Any]:
        s = self.settings
        return {
            "retrieval_query": query,
            "filters": filters or {},
            "index": {"folder": str(store.index_dir), "generation": store.generation.name, "index_id": store.index_id,
                      "embedding_model": store.manifest["embedding"]["model"]},
            "settings": {
                "answer_mode": cfg.mode, "k": cfg.k, "retrieval_mode": retrieval_mode or s.retrieval_mode,
                "reranker": s.reranker, "refusal_threshold": cfg.refusal_threshold,
                "extractive_threshold": cfg.extractive_threshold, "support_threshold": cfg.support_threshold,
                "unknown_term_similarity": cfg.unknown_term_similarity,
                "max_new_tokens": cfg.max_new_tokens, "llm_model": s.llm_model, "chunking": s.chunk_config(),
            },
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }

    def _finish(self, question: str, cfg: AnswerConfig, passages: Sequence[Passage], sents: Sequence[AnswerSentence],
                quotes: dict[int, tuple[str, float]], produced_by: str, timings: dict[str, Any], record: dict[str, Any],
                note: str | None) -> Answer:
        cited = sorted({n for s in sents for n in s.citations})
        citations = tuple(Citation(n=n, passage=passages[n - 1], quote=quotes.get(n, ("", 0.0))[0], support=quotes.get(n, ("", 0.0))[1]) for n in cited)
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
