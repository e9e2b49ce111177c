"""Pure text helpers shared by the format loaders: cleaning, headings, pages, running headers."""

from __future__ import annotations

import re
from collections import Counter

from rag.errors import IngestError
from rag.ingest.reflow import line_width, reflow, vocabulary
from rag.text.headings import is_memo_field, legal_section, looks_like_heading
from rag.types import Heading

# Text helpers (pure)


def clean_text(text: str) -> str:
    """Normalise newlines and drop control characters.

    A soft hyphen at a line end (pdfium marks every line-end hyphen so) becomes "-" and a line break:
    `reflow` decides whether it splits a word or is a real hyphen; elsewhere it is invisible, dropped.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = re.sub("\ufffe[ \t]*\n?", "-\n", text)  # pdfium: a hyphen that ends a line (the break may be implied)
    text = re.sub("\u00ad[ \t]*(?=\n)", "-", text)
    text = text.replace("\u00ad", "")
    text = text.replace("\u00a0", " ")
    text = re.sub(r"[\x00-\x08\x0b\x0e-\x1f\x7f]", "", text)
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip("\n ")


def detect_headings(
    text: str, markup_headings: list[Heading] | None = None, heuristic: bool = True
) -> list[Heading]:
    """Headings from markup (if any) plus legal 'Sec. N.' paragraphs, plus line heuristics."""
    found: dict[int, Heading] = {h.char_start: h for h in markup_headings or [] if not is_memo_field(h.title)}
    base = max((h.level for h in markup_headings or []), default=0)
    lines = text.split("\n")
    offset = 0
    prev = ""
    prev_heading = False
    for i, line in enumerate(lines):
        start = offset
        offset += len(line) + 1
        stripped = line.strip()
        if not stripped:
            prev = ""
            continue
        lead = start + (len(line) - len(line.lstrip()))
        if lead in found:
            prev, prev_heading = line, True
            continue
        sec = legal_section(stripped)
        if sec and (not prev.strip() or prev.strip()[-1] in '.:;)”"' or prev.strip().isupper()):
            found[lead] = Heading(lead, base + 1 + sec[1], re.sub(r"\s+", " ", sec[0]))
        elif heuristic:
            nxt = lines[i + 1] if i + 1 < len(lines) else ""
            level = looks_like_heading(line, prev, nxt, prev_heading)
            if level is not None:
                found[lead] = Heading(lead, base + level, stripped)
        prev_heading = lead in found
        prev = line
    return [found[k] for k in sorted(found)]


_DATE_IN_NAME = re.compile(r"(?<!\d)((?:19|20)\d\d-[01]\d-[0-3]\d)(?!\d)")


def date_from_name(name: str) -> str | None:
    m = _DATE_IN_NAME.search(name)
    return m.group(1) if m else None


def pdf_date(raw: str | None) -> str | None:
    m = re.match(r"D?:?(\d{4})(\d{2})(\d{2})", raw or "")
    return f"{m.group(1)}-{m.group(2)}-{m.group(3)}" if m else None


def join_pages(pages: list[str], reflow_lines: bool = True) -> tuple[str, tuple[int, ...]]:
    """Pages -> one text and each page's start offset. Line-broken pages (PDF, text) are reflowed
    first (wrapped lines joined, hyphenation undone; see reflow.py) with the whole document's vocabulary."""
    if reflow_lines:
        words, compounds = vocabulary("\n".join(pages))
        width = line_width([ln for p in pages for ln in p.split("\n")])
        pages = [reflow(p, words, compounds, width) for p in pages]
    parts: list[str] = []
    starts: list[int] = []
    pos = 0
    for p in pages:
        starts.append(pos)
        parts.append(p)
        pos += len(p) + 2
    return "\n\n".join(parts), tuple(starts)


def strip_running_lines(pages: list[list[str]]) -> list[list[str]]:
    """Drop running headers/footers and bare page numbers that repeat at the top/bottom of pages."""
    if len(pages) < 4:
        return pages

    def key(line: str) -> str:
        return re.sub(r"\d+", "#", line.strip().lower())

    edge: Counter[str] = Counter()
    for lines in pages:
        nonempty = [ln for ln in lines if ln.strip()]
        edge.update({key(ln) for ln in nonempty[:2] + nonempty[-2:]})
    common = {k for k, c in edge.items() if c >= max(3, 0.4 * len(pages)) and k}
    common.add("#")
    out = []
    for lines in pages:
        idx = [i for i, ln in enumerate(lines) if ln.strip()]
        drop = {i for i in idx[:2] + idx[-2:] if key(lines[i]) in common}
        out.append([ln for i, ln in enumerate(lines) if i not in drop])
    return out


# ---------------------------------------------------------------------------------------------
# Format loaders: (path bytes) -> fields for Document


def check_not_empty(data: bytes, rel: str) -> None:
    if not data.strip():
        raise IngestError(rel, "empty file", "empty")
