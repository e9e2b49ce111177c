"""Which corpus documents a question names: "EO 14179", "M-24-10", "the December 2025 executive order",
"the woke AI order", "NTIA's request for comment".

Embeddings blur such names (a question about "the December 2025 order on state AI laws" lands on EO
14110, whose text talks most about AI law), so the question's identifiers, month/year, kind words and
distinctive title words are matched against each document's identity (rag.index.status) instead, and
the retriever then prefers the named document's passages.
"""

from __future__ import annotations

import re
from typing import Any

from rag.ingest.identity import MONTHS, identifiers_in

_KIND_WORDS = {
    "executive order": r"\b(?:executive\s+orders?|orders?|eo)\b",
    "omb memorandum": r"\b(?:omb|memo(?:randum|randa|s)?|polic(?:y|ies))\b",
    "presidential memorandum": r"\b(?:national\s+security\s+memorandum|nsm|presidential\s+memorandum|memorandum)\b",
    "fact sheet": r"\bfact\s*sheet\b",
    "request for comment": r"\b(?:request\s+for\s+comments?|rfc)\b",
    "framework": r"\bframework\b",
    "plan": r"\b(?:action\s+)?plan\b",
    "guidance": r"\b(?:guidance|instructions|reporting)\b",
    "statement": r"\b(?:statement|announcement|article)\b",
}
_STOP = {
    "the",
    "and",
    "for",
    "with",
    "from",
    "that",
    "this",
    "what",
    "does",
    "did",
    "how",
    "which",
    "order",
    "orders",
    "executive",
    "artificial",
    "intelligence",
    "american",
    "america",
    "united",
    "states",
    "federal",
    "national",
    "policy",
    "policies",
    "about",
    "say",
    "says",
    "require",
    "its",
    "their",
    "was",
    "were",
    "are",
    "under",
    "of",
    "advancing",
    "leadership",
    "government",
}
IDENTIFIER_SCORE = 10.0  # a document named by an identifier of its own ("M-24-10", "EO 14110")
_ALIASES = {
    "rmf": "risk management framework",
    "nsm": "national security memorandum",
    "ntia": "ntia",
    "woke": "woke",
    "genesis": "genesis",
    "rescission": "rescissions",
    "rescissions": "rescissions",
}


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if len(w) > 2 and w not in _STOP}


def named_documents(
    question: str, docs: dict[str, dict[str, Any]], by_identifier: dict[str, str] | None = None, min_score: float = 2.0
) -> list[tuple[str, float]]:
    """[(source, score)] of the documents the question names, best first; empty when it names none.

    An identifier of a document in the corpus names it; otherwise a month/year, a kind word and title
    words add up, and a document needs `min_score` (e.g. a date plus a kind, or two rare title words).
    Beside documents named by identifier, only documents also named by month and year are added.
    """
    q = question.lower()
    by_identifier = by_identifier or {}
    out: dict[str, float] = {}
    for ident in identifiers_in(question) + identifiers_in(re.sub(r"\beo\s*(1\d{4})", r"EO \1", q)):
        src = by_identifier.get(ident) or next((s for s, d in docs.items() if ident in d.get("identifiers", [])), None)
        if src:
            out[src] = max(out.get(src, 0.0), IDENTIFIER_SCORE)
    by_id = sorted(out.items(), key=lambda x: -x[1])
    out = {}
    months = [(MONTHS[m.group(1)], m.group(2)) for m in re.finditer(r"\b(" + "|".join(MONTHS) + r")\s+(\d{4})\b", q)]
    years = set(re.findall(r"\b(20\d\d)\b", q))
    qwords = _words(q)
    # how many documents share a title word: a word in one title names it, one in many does not
    df: dict[str, int] = {}
    for d in docs.values():
        for w in _words(d.get("title") or ""):
            df[w] = df.get(w, 0) + 1
    for src, d in docs.items():
        score = 0.0
        date = d.get("date") or ""
        dated = bool(months) and any(date.startswith(f"{y}-{m:02d}") for m, y in months)
        if dated:
            score += 1.5
        elif years and date[:4] in years and not months:
            score += 0.5
        kind = d.get("kind") or ""
        if kind in _KIND_WORDS and re.search(_KIND_WORDS[kind], q):
            score += 1.0
        elif re.search(_KIND_WORDS["omb memorandum"], q) and any(m.startswith("M-") for m in d.get("mentions", [])):
            score += 1.0  # a fact sheet or statement about OMB memos stands in for memos not in the corpus
        title = " ".join([d.get("title") or "", src.rsplit("/", 1)[-1].replace("-", " ")])
        for w in qwords & _words(title):
            score += 1.5 / df.get(w, 1) if df.get(w) else 0.5
        if "ntia" in q and src.startswith("ntia/") or "nist" in q and src.startswith("nist/"):
            score += 1.0
        # beside a document named by number, only one also named by its month ("the July 2025 order ... EO 14141")
        if score >= min_score and (dated or not by_id):
            out[src] = score
    ranked = sorted(((s, x) for s, x in out.items() if s not in dict(by_id)), key=lambda x: -x[1])
    if ranked:  # keep only those close to the best: a question names one or two documents
        best = ranked[0][1]
        ranked = [x for x in ranked if x[1] >= best - 0.75]
    return (by_id + ranked)[:3]


def named_places(k: int, named: list[tuple[str, float]]) -> int:
    """How many of k places a question's named documents take first: all but one when it names a
    single document by its identifier ("under OMB memo M-24-10 ...": the answer is in that document,
    often several passages down), else half (a name guessed from title words or a date may be wrong,
    and a question naming two documents needs room for both). The last place stays open for another
    document: a question may name one document and ask about what it points to."""
    if len(named) == 1 and named[0][1] >= IDENTIFIER_SCORE:
        return max(1, k - 1)
    return max(1, (k + 1) // 2)


def policy_search(retriever: Any, queries: list[str], k: int, filters: Any, **kw: Any) -> list[list[Any]]:
    """Retriever.search with the policy rules: with `retrieval.as_of`, only documents in force that day
    (and issued by then; `include_revoked` keeps revoked ones), except documents the question names,
    which are kept and marked by the answer's status notes; and a named document's passages first."""
    from dataclasses import replace

    from rag.index.status import parse_as_of

    s = retriever.settings.retrieval
    store = kw.get("store") or retriever.store
    view = store.policy
    as_of = parse_as_of(s.as_of)
    found = [named_documents(q, view.docs, view.by_identifier) if s.prefer_named and view.docs else [] for q in queries]
    named = [[src for src, _ in f] for f in found]
    per_query = list(filters) if isinstance(filters, list) else [filters] * len(queries)
    user = list(per_query)  # a user's own source filter is obeyed as given (no as-of, no named documents)
    if as_of and view.docs:
        ok = (
            {src for src in view.docs if view.status(src, as_of)["status"] != "not yet issued"}
            if s.include_revoked
            else view.in_force(as_of)
        )
        per_query = [
            f if f and "source" in f else {**(f or {}), "source": sorted(ok | set(n))}
            for f, n in zip(per_query, named, strict=True)
        ]
    base = retriever.search(queries, k, per_query, use_policy=False, **kw)
    out = []
    for q, hits, n, f, scored in zip(queries, base, named, user, found, strict=True):
        if n and not (f and "source" in f):
            own = retriever.search([q], k, [{**(f or {}), "source": n}], use_policy=False, **kw)[0]
            first = own[: named_places(k, scored)]
            seen = {p.chunk.chunk_id for p in first}
            rest = [p for p in hits + own if p.chunk.chunk_id not in seen and not seen.add(p.chunk.chunk_id)]  # type: ignore[func-returns-value]
            # marked for the answer stage: a sentence of the document the question names is preferred there too
            hits = [replace(p, rank=i + 1, scores={**p.scores, "named": 1.0} if p.chunk.source in n else p.scores)
                    for i, p in enumerate((first + rest)[:k])]
        out.append(hits)
    return out
