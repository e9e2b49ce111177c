"""Statements that change other documents ("... is hereby revoked", "shall revise M-24-10"), one per
sentence and target, with the sentence and its page.

Why sentence patterns and not a model: the statements that matter are formulaic legal language, a regex
is exact about which words triggered a relation (the quote shown to the user is the evidence), and the
result is measured against a hand-checked list (`rag`'s `eval/relations_gold.jsonl`, see
`benchmarks/relations_eval.py`). Targets are kept as written (identifier, date, title); they are resolved
to corpus documents when read (`rag.index.status`), so adding or removing a document changes the status
of the documents it names without re-reading them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from rag.ingest.identity import DATE_RE, identifiers_in, normalise_identifier, parse_date
from rag.text.sentences import split_sentences

RELATION_TYPES = ("revokes", "supersedes", "amends", "directs_revision", "directs_review", "implements")
# kinds whose words change other documents; a plan, fact sheet or statement only reports such changes
ISSUING_KINDS = ("executive order", "presidential memorandum", "omb memorandum", "guidance")

_REF = re.compile(
    r"(?P<eo>(?:Executive\s+Order|E\.\s?O\.|\bEO)\s*(?P<eo_n>1\d{4})(?:\s+of\s+(?P<eo_date>" + DATE_RE + r"))?"
    r"(?:\s*\((?P<eo_t1>[^()]{5,250})\)|[,:]?\s*[“\"](?P<eo_t2>[^”\"]{5,250})[”\"])?)"
    r"|(?P<pm>(?:Presidential|National\s+Security)\s+Memorandum\s+of\s+(?P<pm_date>"
    + DATE_RE
    + r")\s*\((?P<pm_t>[^()]{5,250})\))"
    r"|(?P<omb>\bM[-‐–]\s?\d{2}[-‐– ]\d{2,3}\b)"
    r"|(?P<fr>\b\d{2,3}\s+FR\s+\d{3,6}\b)"
    r"|(?P<nist>\bNIST\s+AI\s+\d{3}[-‐–]\d+\b)"
    r"|(?P<nsm>\b(?:NSM|National\s+Security\s+Memorandum)[-‐– ]\d{1,3}\b)"
)

_NEG = r"(?<!not )(?<!not to )(?<!n't )"
_VERBS: list[tuple[str, str, str]] = [  # (type, pattern, where the target stands: "after" the verb or "before" it)
    ("directs_revision", r"\bshall\b(?:\s+\w+){0,4}?\s+(?:revise|update|modify)\b", "after"),
    ("directs_review", r"\bshall\b(?:[\s,]+[\w,]+){0,8}?\s+(?:review|identify)\b", "after"),
    ("revokes", r"\b(?:is|are|be|been)\s+(?:hereby\s+)?(?:revoked|rescinded|repealed)\b", "before"),
    ("revokes", _NEG + r"\b(?:hereby\s+)?(?:revok(?:es?|ing)|rescind(?:s|ing)?|repeal(?:s|ing)?)\b", "after"),
    ("revokes", r"\brevocation\s+of\b", "after"),
    ("supersedes", r"\b(?:is|are|be|been)\s+(?:hereby\s+)?(?:superseded|replaced)\b", "before"),
    ("supersedes", _NEG + r"\b(?:supersedes?|replaces?)\b", "after"),
    ("amends", r"\b(?:is|are|be)\s+(?:hereby\s+)?amended\b(?!\s+by\s+subsequent)", "before"),
    ("amends", _NEG + r"\b(?:hereby\s+amends?|amends)\b", "after"),
]
_MAX_GAP = 120  # characters between a verb and its target ("shall revise OMB Memoranda M-24-10")
# a review is of the actions taken under a document: "review ... actions taken pursuant to the revoked EO 14110"
_REVIEW_OF = re.compile(r"(?:taken|conducted)\s+pursuant\s+to\s+(?:the\s+revoked\s+)?(?:section\s+\S+\s+of\s+)?$", re.I)
_SECTION_OF = r"\s*(?:(?:relevant\s+)?(?:Sections?|Sec\.|subsections?)\s+[\w.()–-]+(?:\s+and\s+[\w.()–-]+)?\s+of\s+)?(?:OMB\s+Memorand(?:um|a)\s+|the\s+)?$"
# cues that the writer carries out the named document; memoranda and guidance implement orders
_IMPLEMENTS_ANY = re.compile(
    r"\b(?:fulfills\s+the\s+directive\s+set\s+forth\s+in|in\s+furtherance\s+of(?:\s+the\s+activities\s+described\s+in)?)",
    re.I,
)
_IMPLEMENTS_GUIDANCE = re.compile(
    r"(?<!established )(?<!defined )(?<!created )(?<!issued )(?<!conducted )(?<!taken )\b(?:as\s+required\s+by|pursuant\s+to|consistent\s+with|as\s+provided\s+by|implementing)",
    re.I,
)
_LIST_ITEM = re.compile(r"^\s*(?:[-•·▪–*]|\(?[a-z0-9ivx]{1,4}\))\s")


def references(sentence: str) -> list[dict[str, Any]]:
    """The documents a sentence names: [{identifier, date, title, text, start, end}]. A title in
    parentheses or quotes belongs to its reference and is not searched for further references."""
    out = []
    for m in _REF.finditer(sentence):
        g = m.groupdict()
        if g["eo"]:
            ident, date, title = (
                f"EO {g['eo_n']}",
                parse_date(g["eo_date"] or ""),
                (g["eo_t1"] or g["eo_t2"] or "").strip(" ,."),
            )
        elif g["pm"]:
            ident, date, title = None, parse_date(g["pm_date"]), g["pm_t"].strip()
        else:
            found = identifiers_in(m.group(0))
            ident, date, title = (found[0] if found else normalise_identifier(m.group(0))), None, ""
        out.append(
            {
                "identifier": ident,
                "date": date,
                "title": title or None,
                "text": " ".join(m.group(0).split()),
                "start": m.start(),
                "end": m.end(),
            }
        )
    return out


def _blank_refs(sentence: str, refs: list[dict[str, Any]]) -> str:
    """The sentence with its references' own text (their titles: "Amending Executive Order 14007",
    "Revocation of Certain Presidential Actions") blanked, so verbs are looked for outside them."""
    chars = list(sentence)
    for r in refs:
        for i in range(r["start"], r["end"]):
            chars[i] = " " if not chars[i].isspace() else chars[i]
    return "".join(chars)


def classify(sentence: str, kind: str, refs: list[dict[str, Any]], inherited: str | None = None) -> list[str]:
    """The relation of the sentence's writer to each of `refs` ("none" when it only cites it)."""
    if kind not in ISSUING_KINDS:
        return ["none"] * len(refs)
    bare = _blank_refs(sentence, refs)
    types = [inherited or "none"] * len(refs)
    if inherited:
        return types
    for rtype, pat, where in _VERBS:
        for m in re.finditer(pat, bare, re.I):
            if re.search(r"\bnot\b[^.;:]{0,30}$", bare[: m.start()], re.I):
                continue  # "does not replace or supersede M-20-01"
            for i, r in enumerate(refs):
                if types[i] != "none":
                    continue
                if where == "after" and r["start"] >= m.end():
                    gap = bare[m.end() : r["start"]]
                    review = rtype == "directs_review"
                    if len(gap) > (3 if review else 1) * _MAX_GAP or re.search(r"[;:]", gap):
                        continue
                    if review and not _REVIEW_OF.search(sentence[: r["start"]]):
                        continue
                    # "the Director shall ... update or replace the guidance in EO 13960": an order to change it
                    ordered = rtype in ("revokes", "supersedes", "amends") and re.search(
                        r"\bshall\b", bare[: m.start()]
                    )
                    types[i] = "directs_revision" if ordered else rtype
                elif where == "before" and r["end"] <= m.start() and len(bare[r["end"] : m.start()]) <= _MAX_GAP:
                    types[i] = rtype
    cues = [_IMPLEMENTS_ANY] + ([_IMPLEMENTS_GUIDANCE] if kind in ("omb memorandum", "guidance") else [])
    for cue in cues:
        for m in cue.finditer(bare):
            for i, r in enumerate(refs):
                # the cue stands right before the reference ("as required by EO 14110", "consistent with
                # Section 10.1(b) of Executive Order 14110")
                if (
                    types[i] == "none"
                    and r["start"] >= m.end()
                    and re.match(_SECTION_OF, bare[m.end() : r["start"]], re.I)
                ):
                    types[i] = "implements"
    return types


def _lead_in(sentence: str, kind: str) -> str | None:
    """A list's lead-in ("The following executive actions are hereby revoked:") gives its items its relation."""
    if kind not in ISSUING_KINDS or not sentence.rstrip().endswith(":"):
        return None
    for rtype, pat, _ in _VERBS:
        if re.search(pat, sentence, re.I):
            return rtype
    return None


def extract_relations(
    text: str, kind: str, page_of: Callable[[int], int], own: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """Every sentence of `text` that names another document: one record per (sentence, reference),
    with its relation type or "none", the sentence, its page and char offset."""
    out: list[dict[str, Any]] = []
    lead: str | None = None
    lead_text = ""
    for s, e in split_sentences(text, 0, len(text)):
        sent = " ".join(text[s:e].split())
        is_item = bool(_LIST_ITEM.match(text[s:e]))
        if lead and not is_item:
            lead = None
        refs = [r for r in references(sentence=sent) if r["identifier"] not in own]
        if not refs:
            new_lead = _lead_in(sent, kind)
            if new_lead:
                lead, lead_text = new_lead, sent
            continue
        types = classify(sent, kind, refs, inherited=lead if is_item else None)
        quote = f"{lead_text} … {sent}" if lead and is_item else sent
        for r, t in zip(refs, types, strict=True):
            out.append(
                {
                    "type": t,
                    "target": {k: r[k] for k in ("identifier", "date", "title", "text")},
                    "sentence": quote,
                    "page": page_of(s),
                    "char_start": s,
                }
            )
    return out


def metadata_relations(
    meta: Mapping[str, Any] | None, text: str, page_of: Callable[[int], int]
) -> list[dict[str, Any]]:
    """Relations that metadata.yaml adds for a document whose text states them only indirectly, e.g. a
    fact sheet describing the memo that replaced M-24-10. Each names the passage (`quote`) that is its
    evidence; a quote not found in the text is kept with page None and reported by `rag index check`."""
    out = []
    for i, rel in enumerate((meta or {}).get("relations") or []):
        if not isinstance(rel, Mapping) or rel.get("type") not in RELATION_TYPES or not rel.get("target"):
            raise ValueError(f"relation {i + 1}: needs type (one of {', '.join(RELATION_TYPES)}) and target")
        quote = " ".join(str(rel.get("quote") or "").split())
        flat = " ".join(text.split())
        pos = flat.find(quote) if quote else -1
        page = None
        if pos >= 0:  # map the position in the whitespace-normalised text back to the original
            words_before = len(flat[:pos].split())
            m = re.match(r"\s*(?:\S+\s+){" + str(words_before) + "}", text)
            page = page_of(m.end() if m else 0)
        target = normalise_identifier(str(rel["target"]))
        out.append(
            {
                "type": rel["type"],
                "target": {"identifier": target, "date": None, "title": None, "text": str(rel["target"])},
                "sentence": quote,
                "page": page,
                "char_start": None,
                "from_metadata": True,
                **({"subject": normalise_identifier(str(rel["subject"]))} if rel.get("subject") else {}),
                **({"date": str(rel["date"])} if rel.get("date") else {}),
            }
        )
    return out
