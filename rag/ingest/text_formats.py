"""Plain text and Markdown loaders (decoding by BOM and UTF-8, front matter, Markdown headings)."""

from __future__ import annotations

import re
from typing import Any

from rag.errors import IngestError
from rag.ingest.files import Limits
from rag.ingest.structure import clean_text, detect_headings, join_pages, strip_running_lines
from rag.types import Heading


def _decode(data: bytes, rel: str) -> str:
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):  # UTF-16 with a byte-order mark (Windows Notepad)
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as e:
            raise IngestError(rel, f"not valid UTF-16 ({e.reason} at offset {e.start})", "encoding") from None
    if b"\x00" in data[:8192]:
        raise IngestError(rel, "binary content (NUL bytes) in a text file", "encoding")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise IngestError(
            rel, f"not valid UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start})", "encoding"
        ) from None


def load_txt(data: bytes, rel: str, limits: Limits) -> dict[str, Any]:
    raw = _decode(data, rel)
    pages = [clean_text(p) for p in raw.split("\f")]
    if len(pages) > limits.max_pages:
        raise IngestError(
            rel,
            f"{len(pages)} pages, over the limit of {limits.max_pages} (max_pages)",
            "too_large",
        )
    if len(pages) >= 4:
        pages = [
            "\n".join(lines).strip()
            for lines in strip_running_lines([p.split("\n") for p in pages])
        ]
    text, starts = join_pages(pages)
    headings = detect_headings(text)
    return {
        "text": text,
        "page_starts": starts,
        "headings": tuple(headings),
        "title": "",
        "has_pages": "\f" in raw,
    }


_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n---[ \t]*\n", re.S)
_MD_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


def _md_inline(text: str) -> str:
    """Markdown/HTML inline markup to plain text (links keep their text)."""
    # every repetition is bounded: unbounded ones backtrack quadratically on hostile input ("[[[[...")
    text = re.sub(r"<br\s*/?>", "\n", text, flags=re.I)
    text = re.sub(r"<[^>\n]{1,500}>", "", text)
    text = re.sub(r"!\[([^\]\n]{0,500})\]\([^)\n]{0,1000}\)", r"\1", text)
    text = re.sub(r"\[([^\]\n]{1,500})\]\([^)\n]{0,1000}\)", r"\1", text)
    text = re.sub(r"(\*\*|__)(.{1,500}?)\1", r"\2", text)
    text = re.sub(r"(?<![\w*])\*(?!\s)(.{1,500}?)(?<!\s)\*(?![\w*])", r"\1", text)
    text = re.sub(r"`([^`]+)`", r"\1", text)
    import html

    return html.unescape(text)


_LIST_ITEM = re.compile(r"^\s*(?:[-*+•]|\d+[.)]|\([a-z0-9]{1,4}\))\s")


def _join_soft_breaks(lines: list[str]) -> str:
    """Markdown soft line breaks are spaces; list items and hard breaks stay on their own lines."""
    out: list[str] = []
    for line in lines:
        if (
            out
            and not _LIST_ITEM.match(line)
            and not out[-1].endswith("  ")
            and not line.startswith("|")
        ):
            out[-1] = out[-1].rstrip() + " " + line.strip()
        else:
            out.append(line)
    return "\n".join(out)


def load_md(data: bytes, rel: str, limits: Limits) -> dict[str, Any]:
    raw = _decode(data, rel).replace("\r\n", "\n")
    meta: dict[str, Any] = {}
    m = _FRONT_MATTER.match(raw)
    if m:
        import yaml

        try:
            loaded = yaml.safe_load(m.group(1))
            meta = loaded if isinstance(loaded, dict) else {}
        except yaml.YAMLError as e:
            raise IngestError(
                rel, f"invalid YAML front matter ({str(e).splitlines()[0]})", "corrupt"
            ) from None
        raw = raw[m.end() :]
    out: list[str] = []
    headings: list[Heading] = []
    pos = 0
    in_code = False
    buf: list[str] = []

    def emit(para: str) -> None:
        nonlocal pos
        if para.strip():
            out.append(para)
            pos += len(para) + 2

    def flush(code: bool) -> None:
        emit("\n".join(buf).strip() if code else clean_text(_md_inline(_join_soft_breaks(buf))))
        buf.clear()

    for line in raw.split("\n"):
        if line.strip().startswith("```"):
            flush(in_code)
            in_code = not in_code
            continue
        if in_code:
            buf.append(line)
            continue
        hm = _MD_HEADING.match(line)
        if hm:
            flush(False)
            title = clean_text(_md_inline(hm.group(2)))
            if title:
                headings.append(Heading(pos, len(hm.group(1)), title))
                emit(title)
        elif not line.strip() or re.match(r"^\s*(-{3,}|\*{3,}|_{3,})\s*$", line):
            flush(False)
        else:
            buf.append(line)
    flush(in_code)
    text = "\n\n".join(out)
    headings = detect_headings(text, headings, heuristic=False)
    date = meta.get("date") or meta.get("published_time")
    return {
        "text": text,
        "page_starts": (0,),
        "headings": tuple(headings),
        "title": str(meta.get("title") or "").strip(),
        "date": str(date)[:10] if date else None,
        "source_url": meta.get("source_url") or meta.get("url"),
        "has_pages": False,
    }
