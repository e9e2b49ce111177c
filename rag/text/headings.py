"""Heading heuristics for text without markup (PDF, plain text).

Ingest uses them to find sections; the answer side uses them to keep headings out of quotes.
"""

from __future__ import annotations

import re

_NUMBERED = re.compile(r"^((?:\d+\.)+\d*|[IVXL]+\.|[A-Z]\.)\s+\S")
_LEGAL_SEC = re.compile(r"^(Sec(?:tion)?\.?\s*\d+[a-z]?\.)\s*([A-Z][^.\n]{2,90}?)\.(?:\s|$)")
_SUBSEC = re.compile(r"^(\d+\.\d+)\.?\s+([A-Z][^.\n]{2,90}?)\.(?:\s|$)")
_PILLAR = re.compile(r"^(Pillar|Part|Chapter|Appendix|Annex|Title)\s+[IVXLC\d]+[:.]?\s", re.I)
# memo header fields ("FROM: Shalanda D. Young"): they label the memo, not a section of it
MEMO_FIELD = re.compile(
    r"^\s*(?:FROM|TO|SUBJECT|SUBJ|DATE|RE|CC|THROUGH|THRU|ATTN|ATTENTION|From|To|Subject|Date|Through|Attention)\s*:"
    r"|^\s*(?:MEMORANDUM|Memorandum)\s+(?:FOR|for|TO|to)\b"
)
_LETTER_SPACED = re.compile(r"^(?:\S{1,2}\s+){4,}\S{0,2}$")  # letterhead set in spaced capitals ("T H E DI RE C T O R")


def is_memo_field(line: str) -> bool:
    """A memo header field or a letter-spaced letterhead line: never a heading or a section label."""
    s = line.strip()
    return bool(MEMO_FIELD.match(s) or _LETTER_SPACED.match(s))


_SMALL_WORDS = {
    "a",
    "an",
    "and",
    "as",
    "at",
    "by",
    "for",
    "from",
    "in",
    "of",
    "on",
    "or",
    "the",
    "to",
    "with",
    "vs",
    "via",
    "into",
    "its",
    "is",
}


def legal_section(paragraph: str) -> tuple[str, int] | None:
    """'Sec. 4.  Ensuring Safety.  (a) ...' -> ('Sec. 4. Ensuring Safety', 0); '4.6. Title. ...' -> level 1."""
    m = _LEGAL_SEC.match(paragraph)
    if m:
        return f"{m.group(1)} {m.group(2).strip()}", 0
    m = _SUBSEC.match(paragraph)
    if m and len(m.group(2).split()) <= 14:
        return f"{m.group(1)}. {m.group(2).strip()}", 1
    return None


def looks_like_heading(line: str, prev: str, nxt: str, prev_is_heading: bool = False) -> int | None:
    """Heuristic heading test for text without markup (PDF, plain text). Returns a level or None."""
    s = line.strip()
    if is_memo_field(s):
        return None
    if (
        not (3 <= len(s) <= 90)
        or not (s[0].isupper() or s[0].isdigit())
        or not any(c.isalpha() for c in s)
    ):
        return None
    if s[-1] in ",;:" or (s[-1] == "." and not _NUMBERED.match(s)):
        return None
    if prev.strip() and prev.strip()[-1] not in '.:;!?)”"' and not prev.strip().isupper() and not is_memo_field(prev):
        return None  # mid-sentence line wrap
    if nxt.strip() and not (nxt.strip()[0].isupper() or nxt.strip()[0] in '•(“"'):
        return None
    if _PILLAR.match(s):
        return 1
    words = re.findall(r"[A-Za-z][\w'’-]*", s)
    if not words or len(words) > 14:
        return None
    if _NUMBERED.match(s):
        depth = s.split()[0].rstrip(".").count(".")
        return 1 + min(depth, 3)
    if s.isupper() and len(words) >= 1 and len(s) >= 4:
        return 1
    big = [w for w in words if w.lower() not in _SMALL_WORDS]
    if big and sum(w[0].isupper() for w in big) / len(big) >= 0.8 and 2 <= len(words) <= 10:
        return 2
    if len(words) == 1 and len(s) <= 30 and s[0].isupper() and len(nxt.strip()) > 40:
        return 2
    return None
