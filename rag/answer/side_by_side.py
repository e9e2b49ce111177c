"""The side-by-side answer to a question comparing two documents or dates (issue 13, item 6).

`rag.answer.compare` decides what the sides are (pure); this builds the answer: each side's passages are
retrieved on their own (a source filter, reranked by the evidence scorer like any search), 2-4 points
quoted from them with the extractive scorer (`score_candidates`, `summary_points`), the relation between
the sides cited to the passage that states it, and what the corpus lacks. No LLM writes any of it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import date as _date
from typing import Any

import numpy as np

from rag.answer.compare import (
    CUE,
    comparison_sides,
    fill_periods,
    pair_relations,
    relation_text,
    short_label,
    side_heading,
    topic_of,
)
from rag.answer.evidence import Evidence
from rag.answer.extractive import POINT_WORDS, clip, repeats, score_candidates, summary_points
from rag.answer.markers import renumber
from rag.answer.prompts import neutralise_markers
from rag.index.status import parse_as_of
from rag.types import Answer, AnswerSentence, Citation, Passage, chunk_faiss_id

SECOND_LOOK = 3  # a side with no quotable point on the topic looks this many times deeper (x k), once
POINTS = (2, 4)  # cited points per side: at least, at most (fewer only when the side's passages have fewer)


def _pick_points(cands: list[Any], passages: Sequence[Passage], floor: float, per_document: int) -> list[Any]:
    """2-4 points above `floor`. One document: the points of its best-matching section
    (extractive.summary_points), topped up to two with its best others. Several documents (a period): the
    best up to four, at most `per_document` from each. No repeats; in document order."""
    single = per_document >= POINTS[1]
    chosen: list[Any] = []

    def fits(c: Any) -> bool:
        src = passages[c.n - 1].chunk.source
        return (
            c.base >= floor
            and sum(passages[x.n - 1].chunk.source == src for x in chosen) < per_document
            and not repeats(c, chosen)
        )

    for c in sorted(summary_points(cands, passages), key=lambda c: -c.rank) if single else []:
        if len(chosen) < POINTS[1] and fits(c):
            chosen.append(c)
    for c in sorted(cands, key=lambda c: (-c.rank, c.n, c.unit.parts[0])):
        if len(chosen) >= (POINTS[0] if single else POINTS[1]):
            break
        if fits(c):
            chosen.append(c)
    return sorted(
        chosen, key=lambda c: (passages[c.n - 1].chunk.source, passages[c.n - 1].chunk.char_start, c.unit.parts[0])
    )


def _stating_chunk(store: Any, source: str, sentence: str) -> Any:
    """The chunk of `source` holding the sentence that states a relation (its end, then its start)."""
    for probe in (sentence.split(" … ")[-1][-80:], sentence[:60]):
        words = probe.split()[1:-1]  # whole words only; the chunk's whitespace may differ
        if len(words) < 2:
            continue
        for cid, text in store.db.execute("SELECT chunk_id, text FROM chunks WHERE source = ?", (source,)):
            if " ".join(words) in " ".join(text.split()):
                return next(iter(store.chunks([chunk_faiss_id(str(cid))]).values()), None)
    return None


def compare_answer(
    answerer: Any, question: str, cfg: Any, filters: Any, retrieval_mode: str | None, store: Any, new_record: Any
) -> Answer | None:
    """The side-by-side answer to a question comparing two documents or dates, or None when the question
    compares nothing (or neither side has a passage on it): then the ordinary answer is given.

    Built without the LLM in every answer mode: each point must stay with the document it comes from, and
    the relation is a fact of the relations table; the shipped small model mixes passages and drops citations.
    """
    if not CUE.search(question) or (filters and "source" in filters):  # a user's own choice of documents wins
        return None
    view = store.policy
    sides = comparison_sides(question, view.docs, view.by_identifier, view.relations) if view.docs else None
    if sides is None:
        return None
    t0 = time.perf_counter()
    as_of = parse_as_of(answerer.settings.retrieval.as_of)
    today = as_of or _date.today().isoformat()
    sides = fill_periods(sides, view.docs, view.status, as_of)
    topic = topic_of(question, sides)
    todo = [i for i, s in enumerate(sides) if s.sources]
    # the topic, else (what did X change about Y?) what each side is about: its title
    queries = [topic or " ".join(str(view.docs[s].get("title") or "") for s in sides[i].sources[:2]) for i in todo]
    many = {i: len(sides[i].sources) > 1 for i in todo}
    found = answerer.retriever.search(
        queries,
        cfg.k * 2 if any(many.values()) else cfg.k,
        [{**(filters or {}), "source": list(sides[i].sources)} for i in todo],
        mode=retrieval_mode,
        store=store,
        use_policy=False,
    )
    per_side: dict[int, list[Passage]] = {i: h if many[i] else h[: cfg.k] for i, h in zip(todo, found, strict=True)}
    query_of = dict(zip(todo, queries, strict=True))
    t1 = time.perf_counter()
    passages: list[Passage] = []  # every cited passage once, numbered by first citation (before renumbering)
    quotes: dict[int, tuple[str, float]] = {}

    def number(p: Passage) -> int:
        ids = [x.chunk.chunk_id for x in passages]
        if p.chunk.chunk_id in ids:
            return ids.index(p.chunk.chunk_id) + 1
        passages.append(p)
        return len(passages)

    blocks: list[list[AnswerSentence]] = []
    not_said: list[str] = []
    for i, side in enumerate(sides):
        hits, points, chosen = per_side.get(i, []), [], []
        floor = cfg.opts.extractive_threshold if topic else -1.0  # without a topic the side's own gist is the point
        for look in (1, SECOND_LOOK) if hits else ():  # top passages all questions or headings: look deeper once
            if look > 1:
                hits = answerer.retriever.search(
                    [query_of[i]],
                    cfg.k * look,
                    [{**(filters or {}), "source": list(side.sources)}],
                    mode=retrieval_mode,
                    store=store,
                    use_policy=False,
                )[0]
                per_side[i] = hits
            ev = Evidence(hits, answerer.embedder, dense_weight=cfg.opts.support_dense_weight)
            cands = score_candidates(query_of[i], hits, ev, answerer.embedder, cfg.opts, qtype="other")
            chosen = _pick_points(cands, hits, floor, 2 if many[i] else POINTS[1])
            if chosen:
                break
        for c in chosen:
            n = number(hits[c.n - 1])
            who = f"{short_label(view, hits[c.n - 1].chunk.source)}: " if many[i] else ""
            points.append(
                AnswerSentence(f"- {who}“{neutralise_markers(clip(c.unit.text, POINT_WORDS))}”", (n,), c.base, True)
            )
            if n not in quotes or c.base > quotes[n][1]:
                quotes[n] = (ev.sentences[c.n - 1][c.unit.parts[0]], c.base)
        if side.missing:
            idents = set(side.identifiers)  # the documents that only describe the side, not its own
            via = ", ".join(
                short_label(view, s) for s in side.sources if not idents & set(view.docs[s].get("identifiers") or [])
            )
            not_said.append(
                f"The own text of {' and '.join(side.missing)} is not in the corpus"
                + (
                    f"; the points above are from the {via}, which describes {'them' if len(side.missing) > 1 else 'it'}."
                    if via and points
                    else "."
                )
            )
        if side.sources and not points:
            not_said.append(
                f"No statement of {side.label} in the corpus (beyond questions and headings) is on this question's topic ({topic})."
            )
        elif side.kind == "period" and not side.sources:
            not_said.append(
                f"The corpus has no document from {side.label}" + (f" issued by {as_of}." if as_of else ".")
            )
        blocks.append(points)
    if not any(blocks):
        return None
    qvec = answerer.embedder.encode([question])[0]
    relations, rel_lines = pair_relations(view, sides[0], sides[1], today), []
    for r in relations:
        chunk, n = _stating_chunk(store, r["source"], r["sentence"]), None
        if chunk is not None:
            sim = float(store.vectors(np.array([chunk.faiss_id]))[0] @ qvec)
            n = number(Passage(chunk, sim, 0, {"dense": sim}))
            quotes.setdefault(n, (r["sentence"], 1.0))
        where = "" if n else f" ({view.label(r['source'])}, p. {r.get('page')})"
        rel_lines.append(AnswerSentence(f"- {relation_text(view, r)}{where}", (n,) if n else (), 1.0, True))
    if not relations:
        not_said.append(f"No document of the corpus states a relation between {sides[0].label} and {sides[1].label}.")
    # citations [1]..[n] in order of first use; the passages listed in that order, then those retrieved but not cited
    sents, by_number = renumber([s for b in blocks for s in b] + rel_lines)
    order = [passages[by_number[n] - 1] for n in sorted(by_number)]
    seen = {p.chunk.chunk_id for p in order}
    order += [p for h in per_side.values() for p in h if not (p.chunk.chunk_id in seen or seen.add(p.chunk.chunk_id))]  # type: ignore[func-returns-value]
    order = [replace(p, rank=i + 1) for i, p in enumerate(order)]
    citations = tuple(Citation(n, order[n - 1], *quotes[k]) for n, k in sorted(by_number.items()))
    cuts = [0, len(blocks[0]), len(blocks[0]) + len(blocks[1]), len(sents)]
    parts = [(side_heading(view, side, today, as_of), sents[cuts[i] : cuts[i + 1]]) for i, side in enumerate(sides)]
    text = f"Side by side: {sides[0].label} and {sides[1].label}.\n\n"
    text += "\n\n".join(f"{h}:\n\n{_lines(pts) or '- (no passage of it on this question)'}" for h, pts in parts)
    if rel_lines:
        text += "\n\nHow they relate:\n\n" + _lines(sents[cuts[2] :])
    if not_said:
        text += "\n\nWhat the corpus does not say:\n\n" + "\n".join(f"- {x}" for x in not_said)
    comparison = {
        "sides": [
            {
                "label": s.label,
                "kind": s.kind,
                "heading": h,
                "sources": list(s.sources),
                "identifiers": list(s.identifiers),
                "not_in_corpus": list(s.missing),
                "period": list(s.period) if s.period else None,
                "points": len(pts),
                "citations": sorted({n for x in pts for n in x.citations}),
            }
            for s, (h, pts) in zip(sides, parts, strict=True)
        ],
        "relations": [
            {
                "type": r["type"],
                "by": r.get("subject") or view.label(r["source"]),
                "by_source": r["source"],
                "target": view.label(r.get("target_source")) or r["target"].get("identifier"),
                "on": view.relation_date(r),
                "text": relation_text(view, r),
                "n": (x.citations or [None])[0],
                "page": r.get("page"),
                "quote": r["sentence"],
            }
            for r, x in zip(relations, sents[cuts[2] :], strict=True)
        ],
        "not_in_corpus": not_said,
        "topic": topic,
        "as_of": today,
    }
    record = new_record()
    record.update(comparison=comparison, citation_passages={str(n): k for n, k in sorted(by_number.items())})
    timings = {"retrieve_s": t1 - t0, "attribute_s": time.perf_counter() - t1}
    timings["total_s"] = timings["retrieve_s"] + timings["attribute_s"]
    return Answer(
        question=question,
        text=text,
        refused=False,
        mode=cfg.mode,
        produced_by="extractive",
        citations=citations,
        passages=tuple(order),
        sentences=tuple(sents),
        model=None,
        index_id=record["index"]["index_id"],
        note="a side-by-side comparison, quoted from the documents and their relations (no language model)",
        timings=timings,
        record=record,
        comparison=comparison,
    )


def _lines(sents: Sequence[AnswerSentence]) -> str:
    """One line per point, its [n] markers after the quotation; a relation line ends with a full stop."""
    out = []
    for s in sents:
        marks = "".join(f"[{n}]" for n in s.citations)
        out.append(f"{s.text} {marks}".rstrip() + ("" if s.text.endswith("”") else "."))
    return "\n".join(out)
