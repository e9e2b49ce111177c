"""Loaders: turn a file into a Document (text + page starts + headings + metadata).

Every loader fails with an IngestError naming the file and the reason, so a build can skip one bad
file, report it, and go on. Formats are checked by content (magic bytes), not only by extension.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import re
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import IngestError
from .types import Document, Heading

SUPPORTED_EXTENSIONS = {
    ".pdf": "pdf",
    ".md": "md",
    ".markdown": "md",
    ".html": "html",
    ".htm": "html",
    ".txt": "txt",
    ".text": "txt",
    ".docx": "docx",
}
METADATA_FILE = "metadata.yaml"
DEFAULT_IGNORE = ("SOURCES.md", METADATA_FILE)
_META_KEYS = ("title", "date", "source_url")
_DATE_IN_NAME = re.compile(r"(?<!\d)((?:19|20)\d\d-[01]\d-[0-3]\d)(?!\d)")


@dataclass(frozen=True)
class Limits:
    """Per-file bounds on time and memory (from settings)."""

    max_bytes: int = 100 * 1024 * 1024
    max_pages: int = 5000
    max_unzipped_bytes: int = 200 * 1024 * 1024
    timeout_s: float = 120.0  # per file, enforced by the isolated loader (0 = none)
    max_memory_mb: int = 4096  # address space of the loader process (0 = no cap)
    isolate: bool = True  # load in a child process: a parser crash or hang costs one file
    max_text_chars: int = 50_000_000  # extracted text (a 5000-page PDF holds ~15M): bounds chunking and memory after


# ---------------------------------------------------------------------------------------------
# Discovery


def discover(
    root: Path, ignore: tuple[str, ...] = DEFAULT_IGNORE
) -> tuple[list[Path], list[IngestError]]:
    """Files under `root` to index, sorted, and the files skipped with why.

    Hidden files and folders are skipped silently; symlinks are never followed out of the corpus.
    """
    root = root.resolve()
    files: list[Path] = []
    skipped: list[IngestError] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or name in ignore:
                continue
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                try:
                    target = path.resolve(strict=True)
                except (OSError, RuntimeError):  # dangling or a loop
                    skipped.append(IngestError(rel, "broken symlink (dangling or a loop); not followed", "unsupported"))
                    continue
                if not target.is_relative_to(root):
                    skipped.append(
                        IngestError(
                            rel, "symlink points outside the corpus; not followed", "unsupported"
                        )
                    )
                    continue
            if path.suffix.lower() not in SUPPORTED_EXTENSIONS:
                skipped.append(
                    IngestError(
                        rel, f"unsupported file type '{path.suffix or name}'", "unsupported"
                    )
                )
                continue
            files.append(path)
    return files, skipped


def relative_source(path: Path, root: Path) -> str:
    """The document's `source`: its path relative to the corpus root, forward slashes."""
    for p, r in (
        (Path(os.path.abspath(path)), Path(os.path.abspath(root))),
        (path.resolve(), root.resolve()),
    ):
        try:
            return p.relative_to(r).as_posix()
        except ValueError:
            continue
    return path.name


def load_corpus_metadata(root: Path) -> dict[str, dict[str, str]]:
    """Optional `metadata.yaml` at the corpus root: {relative path: {title, date, source_url}}.

    It overrides what a loader finds, for files that carry no usable title or date (many PDFs).
    """
    path = root / METADATA_FILE
    if not path.is_file():
        return {}
    import yaml

    from .errors import ConfigError

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of file path -> {{title, date, source_url}}")
    out: dict[str, dict[str, str]] = {}
    for src, entry in data.items():
        if not isinstance(entry, dict) or set(entry) - set(_META_KEYS):
            raise ConfigError(
                f"{path}: entry '{src}' must be a mapping with keys among {', '.join(_META_KEYS)}"
            )
        out[str(src)] = {k: str(v) for k, v in entry.items() if v is not None}
    return out


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# Text helpers (pure)


def clean_text(text: str) -> str:
    """Normalise newlines, re-join hyphenated line breaks and drop control characters."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = re.sub("[\ufffe\u00ad]\n?", "", text)  # pdfium soft hyphens
    text = text.replace("\u00a0", " ")
    text = re.sub(r"[\x00-\x08\x0b\x0e-\x1f\x7f]", "", text)
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip("\n ")


_NUMBERED = re.compile(r"^((?:\d+\.)+\d*|[IVXL]+\.|[A-Z]\.)\s+\S")
_LEGAL_SEC = re.compile(r"^(Sec(?:tion)?\.?\s*\d+[a-z]?\.)\s*([A-Z][^.\n]{2,90}?)\.(?:\s|$)")
_SUBSEC = re.compile(r"^(\d+\.\d+)\.?\s+([A-Z][^.\n]{2,90}?)\.(?:\s|$)")
_PILLAR = re.compile(r"^(Pillar|Part|Chapter|Appendix|Annex|Title)\s+[IVXLC\d]+[:.]?\s", re.I)
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
    if (
        not (3 <= len(s) <= 90)
        or not (s[0].isupper() or s[0].isdigit())
        or not any(c.isalpha() for c in s)
    ):
        return None
    if s[-1] in ",;:" or (s[-1] == "." and not _NUMBERED.match(s)):
        return None
    if prev.strip() and prev.strip()[-1] not in '.:;!?)”"' and not prev.strip().isupper():
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


def detect_headings(
    text: str, markup_headings: list[Heading] | None = None, heuristic: bool = True
) -> list[Heading]:
    """Headings from markup (if any) plus legal 'Sec. N.' paragraphs, plus line heuristics."""
    found: dict[int, Heading] = {h.char_start: h for h in markup_headings or []}
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


def _date_from_name(name: str) -> str | None:
    m = _DATE_IN_NAME.search(name)
    return m.group(1) if m else None


def _pdf_date(raw: str | None) -> str | None:
    m = re.match(r"D?:?(\d{4})(\d{2})(\d{2})", raw or "")
    return f"{m.group(1)}-{m.group(2)}-{m.group(3)}" if m else None


def _join_pages(pages: list[str]) -> tuple[str, tuple[int, ...]]:
    parts: list[str] = []
    starts: list[int] = []
    pos = 0
    for p in pages:
        starts.append(pos)
        parts.append(p)
        pos += len(p) + 2
    return "\n\n".join(parts), tuple(starts)


def _strip_running_lines(pages: list[list[str]]) -> list[list[str]]:
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


def _check_not_empty(data: bytes, rel: str) -> None:
    if not data.strip():
        raise IngestError(rel, "empty file", "empty")


def _load_pdf(data: bytes, rel: str, limits: Limits) -> dict[str, Any]:
    if not data.lstrip()[:5].startswith(b"%PDF"):
        raise IngestError(rel, "not a PDF (no %PDF header)", "corrupt")
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as e:
        msg = str(e)
        # pdfium's last-error code can be stale (left by the previous file), so look for /Encrypt too
        if "password" in msg.lower() and re.search(rb"/Encrypt\b", data[-65536:] + data[:65536]):
            raise IngestError(rel, "encrypted PDF (password required)", "encrypted") from None
        msg = re.sub(r"\s*\(PDFium: [^)]*\)", "", msg).rstrip(".")  # the code may be the previous file's
        raise IngestError(rel, f"corrupt PDF ({msg})", "corrupt") from None
    try:
        n = len(pdf)
        if n == 0:
            raise IngestError(rel, "PDF has no pages", "empty")
        if n > limits.max_pages:
            raise IngestError(
                rel,
                f"PDF has {n} pages, over the limit of {limits.max_pages} (max_pages)",
                "too_large",
            )
        raw_pages: list[list[str]] = []
        for i in range(n):
            page = pdf[i]
            tp = page.get_textpage()
            raw_pages.append(clean_text(tp.get_text_range()).split("\n"))
            tp.close()
            page.close()
        meta = pdf.get_metadata_dict()
        toc = []
        try:
            for bm in pdf.get_toc(max_depth=6):
                dest = bm.get_dest()
                idx = dest.get_index() if dest is not None else None
                if idx is not None and bm.get_title().strip():
                    toc.append((bm.level, bm.get_title().strip(), idx))
        except Exception:
            toc = []
    finally:
        pdf.close()
    pages = ["\n".join(lines).strip() for lines in _strip_running_lines(raw_pages)]
    text, starts = _join_pages(pages)
    if len(re.sub(r"\s", "", text)) < max(20, 5 * n):
        raise IngestError(
            rel, f"no extractable text in {n} page(s) (scanned PDF? run OCR first)", "no_text"
        )
    headings: list[Heading] = []
    if toc:
        for level, title, idx in toc:
            if not 0 <= idx < n:
                continue
            lo = starts[idx]
            hi = starts[idx + 1] if idx + 1 < n else len(text)
            pos = _find_title(text, title, lo, hi)
            if pos is not None:
                headings.append(Heading(pos, level + 1, title))
        headings = detect_headings(text, headings, heuristic=False)
    else:
        headings = detect_headings(text)
    title = (meta.get("Title") or "").strip()
    if not title or re.search(r"(microsoft word|untitled|\.docx?$|\.pdf$)", title, re.I):
        title = ""
    return {
        "text": text,
        "page_starts": starts,
        "headings": tuple(headings),
        "title": title,
        "date": _pdf_date(meta.get("CreationDate")),
        "has_pages": True,
    }


def _find_title(text: str, title: str, lo: int, hi: int) -> int | None:
    """Where a bookmark's title starts on its page (tolerant to whitespace and line wraps)."""
    words = re.findall(r"\w+", title)
    if not words:
        return None
    pattern = r"\W+".join(re.escape(w) for w in words)
    m = re.search(pattern, text[lo:hi], re.I)
    return lo + m.start() if m else None


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


def _load_txt(data: bytes, rel: str, limits: Limits) -> dict[str, Any]:
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
            for lines in _strip_running_lines([p.split("\n") for p in pages])
        ]
    text, starts = _join_pages(pages)
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


def _load_md(data: bytes, rel: str, limits: Limits) -> dict[str, Any]:
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


_HTML_DROP = [
    "script",
    "style",
    "noscript",
    "nav",
    "header",
    "footer",
    "aside",
    "form",
    "iframe",
    "svg",
    "template",
    "button",
]
_HTML_BLOCKS = [
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "p",
    "li",
    "pre",
    "blockquote",
    "td",
    "th",
    "dt",
    "dd",
    "figcaption",
    "caption",
]


def _load_html(data: bytes, rel: str, limits: Limits) -> dict[str, Any]:
    from bs4 import BeautifulSoup

    if b"\x00" in data[:8192]:
        raise IngestError(rel, "binary content (NUL bytes) in an HTML file", "encoding")
    try:
        soup = BeautifulSoup(data, "lxml")
    except Exception as e:
        raise IngestError(rel, f"cannot parse HTML ({e})", "corrupt") from None
    page_title = soup.title.get_text(" ", strip=True) if soup.title else ""
    date = None
    for attrs in (
        {"property": "article:published_time"},
        {"name": "date"},
        {"name": "dcterms.date"},
    ):
        tag = soup.find("meta", attrs=attrs)
        if tag and tag.get("content"):
            date = str(tag["content"])[:10]
            break
    if not date and (t := soup.find("time")) and t.get("datetime"):
        date = str(t["datetime"])[:10]
    url_tag = soup.find("link", rel="canonical")
    for t in soup(_HTML_DROP):
        t.decompose()
    for t in soup.select(
        '[role="navigation"], [role="banner"], [role="contentinfo"], .cookie, #cookie-banner'
    ):
        t.decompose()
    root = (
        soup.find("main")
        or soup.find("article")
        or soup.find(attrs={"role": "main"})
        or soup.body
        or soup
    )
    out: list[str] = []
    headings: list[Heading] = []
    pos = 0
    blocks = root.find_all(_HTML_BLOCKS)
    block_set = set(map(id, blocks))
    for el in blocks:
        if any(id(a) in block_set for a in el.parents):
            continue
        txt = clean_text(el.get_text(" " if el.name != "pre" else "", strip=el.name != "pre"))
        txt = re.sub(r"[ \t]{2,}", " ", txt)
        if not txt:
            continue
        if el.name and el.name[0] == "h" and el.name[1:].isdigit():
            headings.append(Heading(pos, int(el.name[1]), txt))
        out.append(txt)
        pos += len(txt) + 2
    collected = sum(len(o) for o in out)
    full = clean_text(root.get_text("\n", strip=True))
    if collected < 0.5 * len(full):  # text in bare divs: fall back to lines
        out = [ln for ln in full.split("\n") if ln.strip()]
        headings = []
    text = "\n\n".join(out)
    return {
        "text": text,
        "page_starts": (0,),
        "headings": tuple(detect_headings(text, headings, heuristic=False)),
        "title": page_title or (headings[0].title if headings else ""),
        "date": date,
        "source_url": url_tag.get("href") if url_tag else None,
        "has_pages": False,
    }


def _check_zip(data: bytes, rel: str, limits: Limits) -> None:
    if not data.startswith(b"PK"):
        raise IngestError(rel, "not a DOCX (not a zip container)", "corrupt")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            infos = z.infolist()
            total = sum(i.file_size for i in infos)
            names = {i.filename for i in infos}
    except zipfile.BadZipFile as e:
        raise IngestError(rel, f"corrupt DOCX ({e})", "corrupt") from None
    if total > limits.max_unzipped_bytes:
        raise IngestError(
            rel, f"DOCX unpacks to {total / 1e6:.0f} MB, over the limit (zip bomb?)", "too_large"
        )
    if "word/document.xml" not in names:
        if "EncryptedPackage" in names:
            raise IngestError(rel, "encrypted DOCX (password required)", "encrypted")
        raise IngestError(rel, "not a DOCX (no word/document.xml)", "corrupt")


def _load_docx(data: bytes, rel: str, limits: Limits) -> dict[str, Any]:
    if data.startswith(b"\xd0\xcf\x11\xe0"):
        raise IngestError(
            rel, "encrypted or legacy .doc file (OLE container), not a DOCX", "encrypted"
        )
    _check_zip(data, rel, limits)
    import docx

    try:
        d = docx.Document(io.BytesIO(data))
    except Exception as e:
        raise IngestError(rel, f"corrupt DOCX ({e})", "corrupt") from None
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    out: list[str] = []
    headings: list[Heading] = []
    pos = 0
    for item in d.iter_inner_content():
        if isinstance(item, Paragraph):
            txt = clean_text(item.text)
            if not txt:
                continue
            style = (item.style.name if item.style is not None else "") or ""
            m = re.match(r"Heading (\d)", style)
            if m or style == "Title":
                headings.append(Heading(pos, int(m.group(1)) if m else 1, txt))
            out.append(txt)
            pos += len(txt) + 2
        elif isinstance(item, Table):
            rows = []
            for row in item.rows:
                cells = []
                for c in row.cells:
                    t = clean_text(c.text).replace("\n", " ")
                    if not cells or cells[-1] != t:  # merged cells repeat
                        cells.append(t)
                rows.append(" | ".join(cells))
            txt = "\n".join(r for r in rows if r.strip(" |"))
            if txt:
                out.append(txt)
                pos += len(txt) + 2
    text = "\n\n".join(out)
    cp = d.core_properties
    return {
        "text": text,
        "page_starts": (0,),
        "headings": tuple(detect_headings(text, headings, heuristic=not headings)),
        "title": (cp.title or "").strip(),
        "date": cp.created.date().isoformat() if cp.created else None,
        "has_pages": False,
    }


_LOADERS = {
    "pdf": _load_pdf,
    "txt": _load_txt,
    "md": _load_md,
    "html": _load_html,
    "docx": _load_docx,
}


# ---------------------------------------------------------------------------------------------
# Public API


def load_document(
    path: Path,
    root: Path,
    limits: Limits | None = None,
    data: bytes | None = None,
    meta: dict[str, str] | None = None,
    read_from: Path | None = None,
) -> Document:
    """Load one file into a Document, or raise IngestError naming the file and the reason.

    `meta` (from metadata.yaml) overrides the title, date and source_url found in the file. The bytes
    are `data`, else read (size-checked) from `read_from` (an upload not yet in the corpus), else from `path`.
    """
    limits = limits or Limits()
    rel = relative_source(path, root)
    kind = SUPPORTED_EXTENSIONS.get(path.suffix.lower())
    if kind is None:
        raise IngestError(rel, f"unsupported file type '{path.suffix or path.name}'", "unsupported")
    if data is None:
        src = read_from or path
        try:
            size = src.stat().st_size
            if size > limits.max_bytes:
                raise IngestError(
                    rel,
                    f"file is {size / 1e6:.1f} MB, over the limit of {limits.max_bytes / 1e6:.0f} MB (max_file_mb)",
                    "too_large",
                )
            data = src.read_bytes()
        except OSError as e:
            raise IngestError(rel, f"cannot read file ({e.strerror or e})", "error") from None
    _check_not_empty(data, rel)
    try:
        fields = _LOADERS[kind](data, rel, limits)
    except IngestError:
        raise
    except (MemoryError, RecursionError) as e:
        raise IngestError(
            rel, f"file too complex to load ({type(e).__name__})", "too_large"
        ) from None
    except Exception as e:  # a parser bug must not abort the build
        raise IngestError(
            rel, f"cannot load {kind.upper()} ({type(e).__name__}: {e})", "corrupt"
        ) from None
    text = fields.pop("text")
    if len(text) > limits.max_text_chars:
        raise IngestError(
            rel, f"{len(text) / 1e6:.0f} million characters of text, over the limit of {limits.max_text_chars / 1e6:.0f} million "
            "(a decompression bomb?)", "too_large")
    if not text.strip():
        raise IngestError(rel, "no text found", "empty")
    headings = fields.pop("headings")
    title = fields.pop("title") or (headings[0].title if headings else "") or Path(rel).stem
    date = fields.pop("date", None)
    name_date = _date_from_name(Path(rel).name)
    sha = hashlib.sha256(data).hexdigest()
    meta = meta or {}
    if meta.get("title"):
        title = meta["title"]
    if meta.get("date"):
        date, name_date = meta["date"], None
    if meta.get("source_url"):
        fields["source_url"] = meta["source_url"]
    return Document(
        doc_id=sha[:16],
        sha256=sha,
        source=rel,
        title=re.sub(r"\s+", " ", title)[:300],
        text=text,
        headings=headings,
        date=name_date if (name_date and kind == "pdf") else (date or name_date),
        file_type=kind,
        **fields,
    )


# ---------------------------------------------------------------------------------------------
# Isolation: parsers are C libraries (pdfium, libxml2) fed hostile bytes


def document_to_json(doc: Document) -> dict[str, Any]:
    d = dataclasses.asdict(doc)
    d["headings"] = [[h.char_start, h.level, h.title] for h in doc.headings]
    return d


def document_from_json(d: dict[str, Any]) -> Document:
    d = dict(d)
    d["headings"] = tuple(Heading(int(a), int(b), str(c)) for a, b, c in d["headings"])
    d["page_starts"] = tuple(int(x) for x in d["page_starts"])
    return Document(**d)


def _frame(obj: Any) -> bytes:
    body = json.dumps(obj, ensure_ascii=False).encode("utf-8")
    return struct.pack(">Q", len(body)) + body


class IsolatedLoader:
    """Loads files in a long-lived child process under a per-file timeout and an address-space cap.

    A PDF that sends pdfium into a loop, a nested structure that overflows a C stack, or a bomb that
    eats memory costs that one file (an IngestError) and a restarted child, never the build or the
    server. Results come back as JSON, not pickle: a child compromised by a hostile file cannot
    run code in the parent through the channel.
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def _start(self) -> subprocess.Popen[bytes]:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "rag.ingest", "--worker", json.dumps(dataclasses.asdict(self.limits))],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True,
            )
        return self.proc

    def _kill(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(OSError):
                self.proc.kill()
            with contextlib.suppress(Exception):
                self.proc.wait(timeout=10)
            for f in (self.proc.stdin, self.proc.stdout):
                with contextlib.suppress(Exception):
                    f.close()  # type: ignore[union-attr]
            self.proc = None

    def close(self) -> None:
        self._kill()

    def __enter__(self) -> IsolatedLoader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read_exact(self, fd: int, n: int, deadline: float | None) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([fd], [], [], wait)
            if not ready:
                raise TimeoutError
            part = os.read(fd, min(n - len(buf), 1 << 20))
            if not part:
                raise EOFError
            buf += part
        return bytes(buf)

    def load(self, path: Path, root: Path, meta: dict[str, str] | None = None, read_from: Path | None = None) -> Document:
        """Load `path` (named relative to `root`); `read_from` holds its bytes when they are elsewhere (an upload)."""
        rel = relative_source(path, root)
        with self._lock:
            proc = self._start()
            assert proc.stdin is not None and proc.stdout is not None
            deadline = time.monotonic() + self.limits.timeout_s if self.limits.timeout_s > 0 else None
            try:
                proc.stdin.write(_frame({"path": str(path), "root": str(root), "meta": meta,
                                         "read_from": str(read_from) if read_from else None}))
                proc.stdin.flush()
                fd = proc.stdout.fileno()
                (n,) = struct.unpack(">Q", self._read_exact(fd, 8, deadline))
                reply = json.loads(self._read_exact(fd, n, deadline))
            except TimeoutError:
                self._kill()
                raise IngestError(
                    rel, f"loading took longer than {self.limits.timeout_s:g} s (load_timeout_s); skipped", "timeout"
                ) from None
            except (EOFError, BrokenPipeError, OSError, ValueError):
                code = proc.poll()
                if code is None:
                    with contextlib.suppress(Exception):
                        code = proc.wait(timeout=5)
                self._kill()
                why = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
                if self.limits.max_memory_mb > 0:
                    why += f"; out of memory under the {self.limits.max_memory_mb} MB cap (max_load_memory_mb)?"
                raise IngestError(rel, f"the parser crashed on this file ({why}); skipped", "corrupt") from None
        if "error" in reply:
            e = reply["error"]
            raise IngestError(e["path"], e["reason"], e["kind"])
        return document_from_json(reply["document"])


def _worker_main(limits_json: str) -> None:
    """Child side of IsolatedLoader: frames in on stdin, frames out on stdout, until stdin closes."""
    limits = Limits(**json.loads(limits_json))
    parent = os.getppid()

    def watchdog() -> None:  # die with the parent, even mid-parse of a file that hangs (C calls release the GIL)
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watchdog, daemon=True).start()
    with contextlib.suppress(Exception):  # warm the parsers before the cap
        import bs4  # noqa: F401
        import docx  # noqa: F401
        import pypdfium2  # noqa: F401
    if limits.max_memory_mb > 0:
        import resource

        cap = limits.max_memory_mb * 1024 * 1024
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    sys.setrecursionlimit(5000)
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a chatty library must not corrupt the channel
    while True:
        head = inp.read(8)
        if len(head) < 8:
            return
        (n,) = struct.unpack(">Q", head)
        req = json.loads(inp.read(n))
        path, root = Path(req["path"]), Path(req["root"])
        read_from = Path(req["read_from"]) if req.get("read_from") else None
        try:
            doc = load_document(path, root, limits, meta=req.get("meta"), read_from=read_from)
            reply: dict[str, Any] = {"document": document_to_json(doc)}
        except IngestError as e:
            reply = {"error": {"path": e.path, "reason": e.reason, "kind": e.kind}}
        except MemoryError:
            reply = {"error": {"path": relative_source(path, root), "kind": "too_large",
                               "reason": f"file needs more than {limits.max_memory_mb} MB to load (max_load_memory_mb)"}}
        try:
            out.write(_frame(reply))
            out.flush()
        except MemoryError:
            os._exit(3)


_LOADERS_BY_LIMITS: dict[Limits, IsolatedLoader] = {}
_LOADERS_LOCK = threading.Lock()


def load_safely(path: Path, root: Path, limits: Limits | None = None, meta: dict[str, str] | None = None,
                read_from: Path | None = None) -> Document:
    """load_document under the limits' isolation: in a child process when `limits.isolate`."""
    limits = limits or Limits()
    if not limits.isolate:
        return load_document(path, root, limits, meta=meta, read_from=read_from)
    with _LOADERS_LOCK:
        loader = _LOADERS_BY_LIMITS.get(limits)
        if loader is None:
            loader = _LOADERS_BY_LIMITS[limits] = IsolatedLoader(limits)
    return loader.load(path, root, meta, read_from)


@atexit.register
def _close_loaders() -> None:
    for loader in list(_LOADERS_BY_LIMITS.values()):
        loader.close()


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--worker":
    _worker_main(sys.argv[2])
