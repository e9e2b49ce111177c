"""PDF loader (pypdfium2): text per page, running headers dropped, title and date from the file."""

from __future__ import annotations

import re
from typing import Any

from rag.errors import IngestError
from rag.ingest.files import Limits
from rag.ingest.structure import clean_text, detect_headings, join_pages, pdf_date, strip_running_lines
from rag.types import Heading


def load_pdf(data: bytes, rel: str, limits: Limits) -> dict[str, Any]:
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
    pages = ["\n".join(lines).strip() for lines in strip_running_lines(raw_pages)]
    text, starts = join_pages(pages)
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
        "date": pdf_date(meta.get("CreationDate")),
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
