"""What changed (issue 13, item 6): a question comparing two documents or two dates, answered side by side.

"How did OMB's rules for agency AI use change from M-24-10 to the April 2025 policies?" wants the
points of each document next to each other, the relation between them (who superseded whom, when, said
where) and what the corpus lacks (M-25-21's own text: only a fact sheet describes it). A generic answer
mixes the two documents' sentences and cannot say which side a point is from, so each side is retrieved
on its own (a source filter), scored with the extractive scorer, and the relation is read from the
relations table, never written by a model.

`comparison_sides` (question + the corpus's document identities -> the two sides, or None) is pure and
decides whether a question is a comparison at all; the rest are pure helpers of the answer, which
`rag.answer.side_by_side.compare_answer` builds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date as _date
from typing import Any

from rag.ingest.identity import MONTHS, identifiers_in, parse_date
from rag.retrieve.docmatch import named_documents

# a question about change or difference; "Which order revoked EO 14110?" names one thing and is no comparison
CUE = re.compile(
    r"\b(?:chang\w*|differ\w*|compar\w*|contrast\w*|versus|vs\.?|evolv\w*|shift\w*|side\s+by\s+side)(?!\w)", re.I
)
_END = r"\s*(?:[?.!]\s*)?$"
# where a question splits into its two sides; the first pattern whose two parts both resolve wins
_SPLITS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(p, re.I)
    for p in (
        r"\bfrom\s+(?P<a>.+?)\s+(?:to|until|through)\s+(?P<b>.+?)" + _END,
        r"\bbetween\s+(?P<a>.+?)\s+and\s+(?P<b>.+?)" + _END,
        r"\bcompar\w*\s+(?P<a>.+?)\s+(?:with|to|and|against)\s+(?P<b>.+?)" + _END,
        r"(?P<a>.+?)\s+(?:vs\.?|versus|compared\s+(?:with|to)|as\s+against)\s+(?P<b>.+?)" + _END,
        r"(?P<a>.+?)\s+differ\w*\s+(?:from|with)\s+(?P<b>.+?)" + _END,
        r"\b(?:what|how)\s+(?:did|does|do|has|have)\s+(?P<a>.+?)\s+chang\w*\s+(?:about|in|to|for|of|from)?\s*(?P<b>.+?)"
        + _END,
        r"(?P<a>.+?)\s+(?:and|or)\s+(?P<b>.+?)" + _END,  # "How do EO 14110 and EO 14179 differ on safety?"
    )
)
# a part of a comparison is known to name something: a little less evidence than a whole question suffices
SEGMENT_MIN_SCORE = 1.5
_PART = {"early": (1, 4), "mid": (5, 8), "late": (9, 12)}
_PERIOD = re.compile(
    r"\b(?:(?P<part>early|mid|late)[-\s]+)?(?:(?P<month>" + "|".join(MONTHS) + r")\s+)?(?P<year>(?:19|20)\d\d)\b", re.I
)
_FILLER = re.compile(r"(?:the|in|of|on|at|by|during|years?|end|start|beginning|as|it|was|were|stood|then|time)$", re.I)
# what a part of a question holds besides the name of its side ("How do the Genesis Mission order", "... differ")
_LEAD = re.compile(r"^(?:(?:how|what|which|when|did|does|do|has|have|is|are|was|were|compare)\s+)+", re.I)
_TAIL = re.compile(r"(?:\s+(?:differ\w*|chang\w*|compar\w*|vary|varies|evolv\w*))+$", re.I)
_MEMO_WORDS = re.compile(r"\b(?:omb|memo(?:randum|randa|s)?|polic(?:y|ies))\b", re.I)  # as docmatch's kind words
_MONTH_DAY = re.compile(r"\b(?:" + "|".join(MONTHS) + r")\s+\d{1,2}(?:st|nd|rd|th)?,\s*\d{4}\b", re.I)


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a document (or documents) of the corpus, identifiers whose own text is
    not in the corpus (with the documents that describe them), or a period of time."""

    label: str  # how the question names it: "M-24-10", "the April 2025 policies", "2024"
    kind: str  # "document" | "period"
    sources: tuple[str, ...] = ()  # corpus documents standing for it (for a period: filled in later)
    identifiers: tuple[str, ...] = ()  # identifiers it names or stands for
    missing: tuple[str, ...] = ()  # of those, the ones whose own text is not in the corpus
    period: tuple[str, str] | None = None  # first and last day of a period side
    date: str | None = None  # when it was issued (the earliest of its documents), or the period's start

    def names(self) -> set[str]:
        """Everything a relation may name it by: its documents and its identifiers."""
        return set(self.sources) | set(self.identifiers)


def _period(text: str) -> tuple[str, str, str] | None:
    """(label, first day, last day) of the one date or period a text names ("2024", "April 2025",
    "mid-2024", "January 20, 2025"); None when it names none or several."""
    day = _MONTH_DAY.search(text)
    if day and (iso := parse_date(day.group(0))):
        return day.group(0), iso, iso
    found = list(_PERIOD.finditer(text))
    if len(found) != 1:
        return None
    m = found[0]
    year = int(m.group("year"))
    if m.group("month"):
        mon = MONTHS[m.group("month").lower()]
        first, last = _date(year, mon, 1), _date(year + mon // 12, mon % 12 + 1, 1)
        return m.group(0), first.isoformat(), _date.fromordinal(last.toordinal() - 1).isoformat()
    lo, hi = _PART.get((m.group("part") or "").lower(), (1, 12))
    end = _date(year + hi // 12, hi % 12 + 1, 1)
    return m.group(0), _date(year, lo, 1).isoformat(), _date.fromordinal(end.toordinal() - 1).isoformat()


def _identifiers(text: str) -> list[str]:
    return list(
        dict.fromkeys(
            identifiers_in(text)
            + identifiers_in(re.sub(r"\b(?:executive\s+order|eo)\s*(1\d{4})", r"EO \1", text, flags=re.I))
        )
    )


def _describers(ident: str, docs: Mapping[str, Mapping[str, Any]], relations: Sequence[Mapping[str, Any]]) -> list[str]:
    """Corpus documents that say something about an identifier not in the corpus: those stating a change
    it made (metadata subject), else those naming it."""
    by_subject = [r["source"] for r in relations if r.get("subject") == ident]
    if by_subject:
        return list(dict.fromkeys(by_subject))
    named = [s for s, d in docs.items() if ident in (d.get("mentions") or [])]
    named += [r["source"] for r in relations if (r.get("target") or {}).get("identifier") == ident]
    return list(dict.fromkeys(by_subject + named))


def _date_of(sources: Sequence[str], docs: Mapping[str, Mapping[str, Any]]) -> str | None:
    return min((str(docs[s]["date"]) for s in sources if docs.get(s, {}).get("date")), default=None)


def _stand_ins(
    seg: str,
    src: str,
    docs: Mapping[str, Mapping[str, Any]],
    relations: Sequence[Mapping[str, Any]],
    in_corpus: set[str],
) -> list[str]:
    """The memos a fact sheet or statement stands for when the question asks for memos ("the April 2025
    policies" finds the fact sheet announcing M-25-21 and M-25-22, whose own text is not in the corpus)."""
    d = docs[src]
    if d.get("kind") == "omb memorandum" or not _MEMO_WORDS.search(seg):
        return []
    year = str(d.get("date") or "")[2:4]
    subjects = [r["subject"] for r in relations if r["source"] == src and r.get("subject")]
    named = [i for i in d.get("mentions") or [] if i.startswith(f"M-{year}-")] if year else []
    return [i for i in dict.fromkeys(subjects + named) if i not in in_corpus]


def _resolve(
    seg: str,
    docs: Mapping[str, Mapping[str, Any]],
    by_identifier: Mapping[str, str],
    relations: Sequence[Mapping[str, Any]],
) -> Side | None:
    """The side a part of the question names, or None."""
    seg = seg.strip(" ,;:?.!")
    if not seg:
        return None
    in_corpus = {i for d in docs.values() for i in d.get("identifiers") or []} | set(by_identifier)
    idents = _identifiers(seg)
    if idents:
        sources: list[str] = []
        missing: list[str] = []
        for ident in idents:
            src = by_identifier.get(ident) or next(
                (s for s, d in docs.items() if ident in (d.get("identifiers") or [])), None
            )
            if src:
                sources.append(src)
            else:
                missing.append(ident)
                sources += _describers(ident, docs, relations)
        sources = list(dict.fromkeys(sources))
        return Side(
            " and ".join(idents),
            "document",
            tuple(sources),
            tuple(idents),
            tuple(missing),
            None,
            _date_of(sources, docs),
        )
    period = _period(seg)
    rest = _MONTH_DAY.sub(" ", _PERIOD.sub(" ", seg)).lower().split()
    if period and all(_FILLER.match(w) for w in rest):  # "2024", "the end of 2024": a time, not a document
        return Side(period[0], "period", (), (), (), (period[1], period[2]), period[1])
    named = named_documents(seg, dict(docs), dict(by_identifier), min_score=SEGMENT_MIN_SCORE)
    if named:
        best = named[0][1]
        sources = [s for s, x in named if x >= best]
        label = _TAIL.sub("", _LEAD.sub("", seg)) or seg
        about = re.match(r"(.+?)\s+(?:on|about|regarding|concerning)\s+\S.*$", label, re.I)
        if (
            about
            and [
                x
                for x, _ in named_documents(
                    about.group(1), dict(docs), dict(by_identifier), min_score=SEGMENT_MIN_SCORE
                )[:1]
            ]
            == sources[:1]
        ):
            label = about.group(1)  # "the NTIA request for comment on open model weights": the rest is the topic
        stand = [i for s in sources for i in _stand_ins(seg, s, docs, relations, in_corpus)]
        return Side(
            label,
            "document",
            tuple(sources),
            tuple(dict.fromkeys(stand)),
            tuple(dict.fromkeys(stand)),
            None,
            _date_of(sources, docs),
        )
    if period:
        return Side(period[0], "period", (), (), (), (period[1], period[2]), period[1])
    return None


def comparison_sides(
    question: str,
    docs: Mapping[str, Mapping[str, Any]],
    by_identifier: Mapping[str, str] | None = None,
    relations: Sequence[Mapping[str, Any]] = (),
) -> tuple[Side, Side] | None:
    """The two sides a question compares, earlier first, or None when it compares nothing.

    `docs` are the corpus's document identities (source -> {title, date, kind, identifiers, mentions}) and
    `relations` its relations ({source, type, target, subject?}), as `rag.index.status.PolicyView` holds
    them. A comparison needs a word of change or difference and two different things named on either side
    of "from ... to", "between ... and", "compared with", "differ from", "what did X change about Y":
    documents by identifier, date, kind or title words, or periods ("2024", "April 2025").
    """
    q = " ".join(question.split())
    if not docs or not CUE.search(q):
        return None
    by_identifier = by_identifier or {}
    matched = False
    for pattern in _SPLITS:
        m = pattern.search(q)
        if not m or (matched and pattern is _SPLITS[-1]):  # "X and Y" only where no clearer split was found
            continue
        matched = True
        a = _resolve(m.group("a"), docs, by_identifier, relations)
        b = _resolve(m.group("b"), docs, by_identifier, relations) if a else None
        if a and b and (a.names(), a.period) != (b.names(), b.period):
            if a.date and b.date and b.date < a.date:
                a, b = b, a
            return a, b
    idents = _identifiers(q)  # no phrase to split at: two identifiers anywhere ("EO 14110 vs. EO 14179")
    if len(idents) >= 2:
        sides = [_resolve(i, docs, by_identifier, relations) for i in idents[:2]]
        if sides[0] and sides[1]:
            a, b = sorted(sides, key=lambda s: s.date or "9999")  # type: ignore[union-attr]
            return a, b
    return None


# -- the answer --------------------------------------------------------------------------------

MAX_RELATIONS = 4
_PAST = {
    "revokes": "revoked",
    "supersedes": "superseded",
    "amends": "amended",
    "implements": "carried out",
    "directs_revision": "directed the revision of",
    "directs_review": "directed a review of actions taken under",
}
_SCAFFOLD = re.compile(  # the words of a comparison question that are not its topic
    r"(?:how|what|which|did|does|do|has|have|is|are|was|were|the|a|an|of|from|to|between|and|compared?|comparison|with"
    r"|vs|versus|differ\w*|different|chang\w*|about|in|on|for|as|against|side|by|polic(?:y|ies)|documents?|orders?"
    r"|memos?|memorandum|executive)$",
    re.I,
)


def fill_periods(
    sides: tuple[Side, Side], docs: Mapping[str, Mapping[str, Any]], status: Any, as_of: str | None = None
) -> tuple[Side, Side]:
    """The documents of a period side: those issued in it (by `as_of`, when given); the earlier period also
    keeps the documents in force at its end that were revoked or superseded by the end of the later side."""
    out = list(sides)
    for i, s in enumerate(sides):
        if s.kind != "period" or s.period is None:
            continue
        lo, hi = s.period
        found = [src for src, d in docs.items() if d.get("date") and lo <= str(d["date"]) <= hi]
        other = sides[1 - i]
        later_end = other.period[1] if other.period else other.date
        if i == 0 and later_end and later_end > hi:
            found += [
                src
                for src in docs
                if status(src, hi)["status"] in ("in force", "amended")
                and status(src, later_end)["status"] in ("revoked", "superseded")
            ]
        found = [src for src in found if not as_of or str(docs[src].get("date") or "") <= as_of]
        found = sorted(dict.fromkeys(found), key=lambda x: (str(docs[x].get("date") or ""), x))
        out[i] = Side(s.label, s.kind, tuple(found), s.identifiers, s.missing, s.period, s.date)
    return out[0], out[1]


def topic_of(question: str, sides: Sequence[Side]) -> str | None:
    """What the question asks about, with the sides' names and the comparison's own words taken out
    ("OMB's rules for agency AI use"); None when little is left ("What did EO 14179 change about EO 14110?")."""
    t = question
    for s in sides:
        for name in (s.label, *s.identifiers):
            t = re.sub(re.escape(name), " ", t, flags=re.I)
    t = _MONTH_DAY.sub(" ", _PERIOD.sub(" ", t))
    words = [w for w in re.findall(r"[A-Za-z][\w’'-]*", t) if not _SCAFFOLD.match(w)]
    return " ".join(words) if len(words) >= 2 else None


def pair_relations(view: Any, a: Side, b: Side, today: str) -> list[dict[str, Any]]:
    """The relations that tie the two sides (either way), then those that changed either side's documents
    (revoked, superseded, amended, directed a revision), as of `today`; one per (who, what, whom), the
    fullest sentence stating it."""
    sa, sb = a.names(), b.names()
    direct: dict[tuple[str, str, str], dict[str, Any]] = {}
    other: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in view.relations:
        if r["type"] == "none" or (view.relation_date(r) or "") > today:
            continue
        actor = (
            {r["subject"]}
            if r.get("subject")
            else {r["source"], *view.docs.get(r["source"], {}).get("identifiers", [])}
        )
        target = {r.get("target_source"), (r.get("target") or {}).get("identifier")} - {None}
        key = (str(r.get("subject") or r["source"]), r["type"], str(r.get("target_source") or target))
        if (actor & sa and target & sb) or (actor & sb and target & sa):
            bucket = direct
        elif target & (sa | sb) and not actor & (sa | sb) and r["type"] not in ("implements", "directs_review"):
            bucket = other
        else:
            continue
        have = bucket.get(key)
        if have is None or _place(r) < _place(have):
            bucket[key] = r
    by_date = sorted(direct.values(), key=lambda r: view.relation_date(r) or "")
    return (by_date + sorted(other.values(), key=lambda r: view.relation_date(r) or ""))[:MAX_RELATIONS]


def _place(r: Mapping[str, Any]) -> tuple[int, int]:
    """Of several sentences stating one relation: the first page, then the fullest sentence."""
    return int(r.get("page") or 999), -len(r["sentence"])


def relation_text(view: Any, r: Mapping[str, Any]) -> str:
    """ "EO 14148 revoked EO 14110 on 2025-01-20" (a change stated by a describing document says so)."""
    actor = r.get("subject") or view.label(r["source"])
    target = (
        view.label(r.get("target_source"))
        if r.get("target_source")
        else (r["target"].get("identifier") or r["target"].get("text"))
    )
    text = f"{actor} {_PAST.get(r['type'], r['type'])} {target}"
    if r["type"] == "implements":
        text = f"{actor} carries out {target} (from {view.relation_date(r)})"
    elif view.relation_date(r):
        text += f" on {view.relation_date(r)}"
    if r.get("subject"):
        text += f", as {view.label(r['source'])} states"
    return text


def kind_name(kind: str | None) -> str:
    return (kind or "document").replace("omb ", "OMB ")


def short_label(view: Any, source: str) -> str:
    """A document named in a few words: its identifier, else its kind and date ("fact sheet of 2025-04-07")."""
    d = view.docs.get(source, {})
    if d.get("identifiers"):
        return str(view.label(source))
    return f"{kind_name(d.get('kind'))} of {d.get('date')}" if d.get("date") else str(view.label(source))


def status_text(view: Any, source: str, today: str, as_of: str | None) -> str:
    st = view.status(source, today)
    when = f" on {as_of}" if as_of else ""
    if st["status"] in ("revoked", "superseded", "amended"):
        return f"{st['status']} by {st['by']} on {st['on']}"
    if st["status"] == "not yet issued":
        return f"not yet issued{when}"
    return f"in force{when}"


def side_heading(view: Any, side: Side, today: str, as_of: str | None) -> str:
    """ "M-24-10 (OMB memorandum, 2024-03-28; superseded by M-25-21 on 2025-04-07)"; a side whose own text
    is not in the corpus says so and names the document it is known from; a period, its documents."""

    def doc(src: str, status: bool = True) -> str:
        d = view.docs.get(src, {})
        facts = ", ".join(str(x) for x in (kind_name(d.get("kind")), d.get("date")) if x)
        return f"{view.label(src)} ({facts}" + (f"; {status_text(view, src, today, as_of)})" if status else ")")

    if side.kind == "period":
        if not side.sources:
            return f"{side.label}: no document of the corpus is from then"
        names = ", ".join(short_label(view, s) for s in side.sources)
        lo, hi = side.period or ("", "")
        kept = any(not lo <= str(view.docs.get(s, {}).get("date") or lo) <= hi for s in side.sources)
        which = "issued then, or then in force and changed later" if kept else "issued then"
        return f"{side.label} (the corpus's documents {which}: {names})"
    own = [
        s
        for s in side.sources
        if not side.missing or set(view.docs.get(s, {}).get("identifiers") or []) & set(side.identifiers)
    ]
    parts = [doc(s) for s in own]
    if side.missing:
        via = [doc(s, status=False) for s in side.sources if s not in own]
        named = " and ".join(side.missing)
        lead = (
            named
            if side.label == " and ".join(side.identifiers)
            else f"{side.label[:1].upper()}{side.label[1:]}: {named}"
        )
        parts.append(
            f"{lead} (own text not in the corpus; "
            + (f"known from {', '.join(via)})" if via else "no document of the corpus describes it)")
        )
    return " and ".join(parts)
