"""The system's notes on an answer's documents that were revoked, superseded or amended as of the date
asked: "EO 14110 was revoked on 2025-01-20 by EO 14148 [EO 14148, p. 1]".

Written by the system from the relations in the index, never by the LLM, each with the passage that
states the change (document, page, quote), so an answer quoting a revoked order says so.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import date as _date
from typing import Any

from rag.types import Answer, Passage


def _chunk_of(store: Any, source: str, sentence: str) -> tuple[str | None, int | None]:
    """The chunk of `source` holding the (end of the) sentence that states the change."""
    tail = sentence.split(" … ")[-1]
    for probe in (tail[-80:], tail[:60]):
        words = probe.split()
        if len(words) < 3:
            continue
        probe = " ".join(words[1:-1])  # whole words only; the chunk's whitespace may differ
        for cid, page, text in store.db.execute("SELECT chunk_id, page, text FROM chunks WHERE source = ?", (source,)):
            if probe in " ".join(text.split()):
                return str(cid), int(page)
    return None, None


def status_notes(answer: Answer, store: Any, as_of: str | None = None) -> list[dict[str, Any]]:
    """One note per document the answer cites (or, for a refusal, retrieved) that is not in force, or
    amended, on `as_of` (default today)."""
    view = store.policy
    if not view.docs:
        return []
    today = as_of or _date.today().isoformat()
    cited = [c.passage.chunk.source for c in answer.citations] or [p.chunk.source for p in answer.passages[:3]]
    notes: list[dict[str, Any]] = []
    for source in dict.fromkeys(cited):
        st = view.status(source, today)
        if st["status"] not in ("revoked", "superseded", "amended", "not yet issued"):
            continue
        name = view.label(source)
        if st["status"] == "not yet issued":
            notes.append(
                {
                    "document": name,
                    "source": source,
                    "status": st["status"],
                    "as_of": today,
                    "text": f"{name} was issued on {view.docs[source].get('date')}, after {today}.",
                }
            )
            continue
        rel = st["relation"]
        by_source = st["by_source"]
        via = f" (as described in {view.label(by_source)})" if rel.get("subject") else ""
        verb = {"revoked": "was revoked", "superseded": "was superseded", "amended": "was amended"}[st["status"]]
        cid, page = _chunk_of(store, by_source, rel["sentence"])
        page = rel.get("page") or page
        ref = f"[{view.label(by_source)}, p. {page}]"
        n = next((i + 1 for i, p in enumerate(answer.passages) if p.chunk.chunk_id == cid), None)
        if n:
            ref = f"[{n}]"
        when = f" on {st['on']}" if st.get("on") else ""
        if as_of and st["status"] in ("revoked", "superseded"):
            text = f"{name} was no longer in force on {today}: it {verb}{when} by {st['by']}{via} {ref}."
        else:
            text = f"{name} {verb}{when} by {st['by']}{via} {ref}."
        notes.append(
            {
                "document": name,
                "source": source,
                "status": st["status"],
                "on": st.get("on"),
                "by": st["by"],
                "as_of": today,
                "text": text,
                "n": n,
                "citation": {
                    "source": by_source,
                    "title": view.docs.get(by_source, {}).get("title"),
                    "page": page,
                    "chunk_id": cid,
                    "quote": rel["sentence"],
                },
            }
        )
    return notes


_PHRASES = {
    "revokes": "revoked",
    "supersedes": "superseded",
    "amends": "amended",
    "implements": "implements",
    "directs_revision": "directed the revision of",
    "directs_review": "directed a review of actions under",
}
_COMPARE = re.compile(
    r"\b(?:chang\w*|differ\w*|compar\w*|replac\w*|revis\w*|supersed\w*|revok\w*|from .+ to |versus|vs\.?)\b", re.I
)


def relation_notes(question: str, store: Any) -> list[dict[str, Any]]:
    """For a question about how documents changed one another ("What did EO 14179 change about EO 14110?"):
    the relations between the documents it names, each with its sentence, and what the corpus lacks (a
    replacing memo known only from a fact sheet)."""
    from rag.retrieve.docmatch import named_documents

    view = store.policy
    if not view.docs or not _COMPARE.search(question):
        return []
    named = [s for s, _ in named_documents(question, view.docs, view.by_identifier)]
    if not named:
        return []
    notes = []
    for r in view.relations:
        if r["type"] == "none" or not r.get("target_source"):
            continue
        a, b = r["source"], r["target_source"]
        if not ({a, b} <= set(named) or (len(named) == 1 and named[0] in (a, b))):
            continue
        by = r.get("subject") or view.label(a)
        text = f"{by} {_PHRASES.get(r['type'], r['type'])} {view.label(b)} on {view.relation_date(r)}"
        if r.get("subject"):
            text += f"; the text of {r['subject']} is not in the corpus, only {view.label(a)} describing it"
        notes.append(
            {
                "kind": "relation",
                "document": view.label(b),
                "source": b,
                "status": r["type"],
                "by": by,
                "on": view.relation_date(r),
                "text": f"{text} [{view.label(a)}, p. {r['page']}].",
                "citation": {
                    "source": a,
                    "title": view.docs.get(a, {}).get("title"),
                    "page": r["page"],
                    "quote": r["sentence"],
                },
            }
        )
    seen: set[str] = set()
    return [n for n in notes if not (n["text"] in seen or seen.add(n["text"]))][:8]  # type: ignore[func-returns-value]


def document_identity(view: Any, source: str, as_of: str | None = None) -> dict[str, Any] | None:
    """What a hit or citation shows of its document: identifiers, kind, date and status as of the date
    asked, and a short tag for text output ("EO 14110 · 2023-10-30 · revoked"). None without identity."""
    d = view.docs.get(source)
    if not d:
        return None
    st = view.status(source, as_of)
    main = view.label(source) if d.get("identifiers") else d.get("kind")
    out = {
        "identifiers": list(d.get("identifiers") or []),
        "kind": d.get("kind"),
        "date": d.get("date"),
        "status": st["status"],
        **({"status_by": st["by"], "status_on": st.get("on")} if st.get("by") else {}),
        "tag": " · ".join(str(x) for x in (main, d.get("date"), st["status"]) if x),
    }
    return out


def with_identity(
    passages: Sequence[Passage], store: Any, as_of: str | None = None, memo: dict[str, Any] | None = None
) -> list[Passage]:
    """The passages with their document's identity (`Passage.document`); one lookup per distinct document
    (`memo` shares them across lists)."""
    view = store.policy
    if not view.docs:
        return list(passages)
    memo = {} if memo is None else memo
    out = []
    for p in passages:
        src = p.chunk.source
        if src not in memo:
            memo[src] = document_identity(view, src, as_of)
        out.append(replace(p, document=memo[src]) if memo[src] else p)
    return out


def identify_hits(hits: list[list[Passage]], store: Any, as_of: str | None = None) -> list[list[Passage]]:
    """`rag search` hits with their documents' identity; `as_of` as given (--as-of), default today."""
    from rag.index.status import parse_as_of

    day, memo = parse_as_of(as_of), {}  # type: ignore[var-annotated]
    return [with_identity(h, store, day, memo) for h in hits]


def with_status_notes(answer: Answer, store: Any, as_of: str | None = None) -> Answer:
    """The answer with its status notes attached (`Answer.to_dict()["status_notes"]`: JSON, batch, eval),
    and its passages and citations with their documents' identity."""
    notes = status_notes(answer, store, as_of) + relation_notes(answer.question, store)
    memo: dict[str, Any] = {}
    passages = tuple(with_identity(answer.passages, store, as_of, memo))
    cited = with_identity([c.passage for c in answer.citations], store, as_of, memo)
    citations = tuple(replace(c, passage=p) for c, p in zip(answer.citations, cited, strict=True))
    return replace(answer, status_notes=tuple(notes), passages=passages, citations=citations)
