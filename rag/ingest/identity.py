"""Who a document is: its kind, official identifiers and dates, read from its own text.

Policy questions name documents by number ("EO 14110", "M-24-10", "89 FR 14059") and ask what was in
force when; neither works unless each document knows its identifiers and dates. The text says most of it
(a Federal Register header, "Executive Order 14110 of October 30, 2023", "M-24-10 MEMORANDUM FOR", a
closing "THE WHITE HOUSE, January 20, 2025."); `corpus/metadata.yaml` adds what the text lacks (the
White House web pages of executive orders carry no EO number) via the keys kind, identifiers, signed,
published, effective. Pure functions of (title, head of text, metadata): cheap, deterministic, testable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date as _date
from typing import Any

KINDS = (
    "executive order",
    "omb memorandum",
    "presidential memorandum",
    "framework",
    "request for comment",
    "plan",
    "fact sheet",
    "statement",
    "guidance",
    "document",
)

MONTHS = {
    m: i + 1
    for i, m in enumerate(
        [
            "january",
            "february",
            "march",
            "april",
            "may",
            "june",
            "july",
            "august",
            "september",
            "october",
            "november",
            "december",
        ]
    )
}
MONTH_RE = r"(?:January|February|March|April|May|June|July|August|September|October|November|December)"
DATE_RE = MONTH_RE + r"\s+\d{1,2}(?:st|nd|rd|th)?,\s*\d{4}"

# official identifiers, each normalised to one spelling
_EO = re.compile(r"\b(?:Executive\s+Order|E\.\s?O\.|EO)\s*(?:No\.\s*)?(1[0-9]{4})\b")
_OMB = re.compile(r"\bM[-‐–]\s?(\d{2})[-‐– ](\d{2,3})\b")
_FR = re.compile(r"\b(\d{2,3})\s+FR\s+(\d{3,6})\b")
_NIST = re.compile(r"\bNIST\s+AI\s+(\d{3})[-‐–](\d+)\b")
_NSM = re.compile(r"\b(?:NSM|National\s+Security\s+Memorandum)[-‐– ](\d{1,3})\b")


def parse_date(text: str) -> str | None:
    """'October 30, 2023' / 'August 14th, 2024' -> '2023-10-30'; None if it is not a valid date."""
    m = re.search(r"(" + MONTH_RE + r")\s+(\d{1,2})(?:st|nd|rd|th)?,\s*(\d{4})", text)
    if not m:
        return None
    try:
        return _date(int(m.group(3)), MONTHS[m.group(1).lower()], int(m.group(2))).isoformat()
    except ValueError:
        return None


def identifiers_in(text: str) -> list[str]:
    """Every official identifier written in `text`, normalised ('EO 14110', 'M-24-10', '89 FR 14059')."""
    found: list[tuple[int, str]] = []
    found += [(m.start(), f"EO {m.group(1)}") for m in _EO.finditer(text)]
    found += [(m.start(), f"M-{m.group(1)}-{m.group(2)}") for m in _OMB.finditer(text)]
    found += [(m.start(), f"{m.group(1)} FR {m.group(2)}") for m in _FR.finditer(text)]
    found += [(m.start(), f"NIST AI {m.group(1)}-{m.group(2)}") for m in _NIST.finditer(text)]
    found += [(m.start(), f"NSM-{m.group(1)}") for m in _NSM.finditer(text)]
    out: list[str] = []
    for _, ident in sorted(found):
        if ident not in out:
            out.append(ident)
    return out


def normalise_identifier(raw: str) -> str:
    """A metadata.yaml or question spelling ('Executive Order 14110', 'm-24-10') -> the canonical one."""
    found = identifiers_in(raw.strip())
    if not found:
        upper = raw.strip()
        found = identifiers_in(upper.upper().replace("EXECUTIVE ORDER", "Executive Order"))
    return found[0] if found else " ".join(raw.split())


def _kind(title: str, head: str, source: str) -> str:
    t, h = title.lower(), head.lower()
    if "fact sheet" in t:
        return "fact sheet"
    if "request for comment" in t or "request for comments" in h[:3000] or "rfc" in source.lower().split("/")[-1]:
        return "request for comment"
    if re.search(r"\bm-\d\d-\d\d\b", t) or re.search(r"\bm-\d\d-\d\d\s+memorandum for\b", h[:3000]):
        return "omb memorandum"
    if "executive order" in t or ("by the authority vested in me as president" in h[:3000] and "ordered" in h[:3000]):
        return "executive order"
    if t.startswith("memorandum") or "national security memorandum" in t or "memorandum for the" in h[:1500]:
        return "presidential memorandum"
    if "framework" in t:
        return "framework"
    if "action plan" in t and "unveil" not in t and "comment" not in t:
        return "plan"
    if "guidance" in t or "instructions" in t:
        return "guidance"
    return "statement"


def _signed(text: str, kind: str) -> str | None:
    """The date an order or memorandum was signed: 'Executive Order N of DATE' in its header, else the
    closing 'THE WHITE HOUSE, DATE.', else a memorandum's dated header."""
    head = text[:3000]
    m = re.search(r"^[ \t]*Executive\s+Order\s+1\d{4}\s+of\s+(" + DATE_RE + ")", head[:700], re.M)
    if m:
        return parse_date(m.group(1))
    tail = text[-600:]
    m = re.search(r"THE WHITE HOUSE,?\s*(" + DATE_RE + ")", tail)
    if m:
        return parse_date(m.group(1))
    if kind in ("omb memorandum", "guidance"):
        m = re.search(DATE_RE, head[:1500])
        if m:
            return parse_date(m.group(0))
    return None


def _published(text: str) -> str | None:
    """A Federal Register issue date in the page header ('Wednesday, November 1, 2023')."""
    m = re.search(r"Vol\.\s*\d+,\s*No\.\s*\d+\s*/?\s*\w+day,\s*(" + DATE_RE + ")", text[:1500])
    return parse_date(m.group(1)) if m else None


def _effective(text: str, signed: str | None) -> str | None:
    m = re.search(r"(?:effective|takes effect)\s+(?:on|as of)\s+(" + DATE_RE + ")", text, re.I)
    if m:
        return parse_date(m.group(1))
    return signed


def own_identifiers(title: str, head: str, kind: str) -> list[str]:
    """The identifiers a document carries for itself: those in its title, the number in its own
    'Executive Order N of DATE' header line, a memo number above 'MEMORANDUM FOR', the FR citation of
    a Federal Register printing. Identifiers merely cited in the text are not its own."""
    # in the title, only a leading "EO 14110:" / "OMB M-24-10:" or a trailing "(89 FR 14059)" names the
    # document itself; "Guidance ... per EO 14110" names another
    lead = title.split(":", 1)[0] if ":" in title else ""
    trail = m.group(1) if (m := re.search(r"\(([^()]*)\)\s*$", title)) else ""
    out = identifiers_in(lead) + identifiers_in(trail)
    m = re.search(r"^[ \t]*Executive\s+Order\s+(1\d{4})\s+of\s+" + DATE_RE, head[:700], re.M)
    if m and kind == "executive order":
        out.append(f"EO {m.group(1)}")
    m = re.search(r"\b(M-\d\d-\d\d)\s+MEMORANDUM\s+FOR\b", head[:3000])
    if m:
        out.append(m.group(1))
    m = re.search(r"NIST\s+AI\s+\d{3}-\d+", head[:400])
    if m:
        out += identifiers_in(m.group(0))
    seen: list[str] = []
    for x in out:
        if x not in seen:
            seen.append(x)
    return seen


def extract_identity(
    source: str, title: str, text: str, date: str | None, meta: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The identity of one document as a plain dict (stored as JSON in the index):
    {source, kind, identifiers, title, signed, published, effective, date, from_metadata: [keys]}."""
    head = text[:4000]
    kind = _kind(title, head, source)
    signed = _signed(text, kind)
    published = _published(text)
    ident = {
        "source": source,
        "kind": kind,
        "identifiers": own_identifiers(title, head, kind),
        "title": title,
        "signed": signed,
        "published": published,
        "effective": _effective(text, signed),
        "from_metadata": [],
    }
    meta = meta or {}
    for key in ("kind", "signed", "published", "effective"):
        if meta.get(key):
            ident[key] = str(meta[key])
            ident["from_metadata"].append(key)
    if meta.get("identifiers"):
        raw = meta["identifiers"]
        extra = [normalise_identifier(str(x)) for x in (raw if isinstance(raw, list) else [raw])]
        ident["identifiers"] = list(dict.fromkeys(ident["identifiers"] + extra))
        ident["from_metadata"].append("identifiers")
    # the date a document counts from: signed, else published, else the file's date
    ident["date"] = ident["signed"] or ident["published"] or date
    return ident
