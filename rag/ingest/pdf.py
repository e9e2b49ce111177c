"""PDF loader (pypdfium2): text per page, running headers dropped, title and date from the file."""

from __future__ import annotations

import math
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
            raw_pages.append(clean_text(_page_text(tp)).split("\n"))
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


def _page_text(tp: Any) -> str:
    """A page's text with footnote markers taken off the words they are glued to.

    A footnote marker is a run of digits set smaller than the text it follows ("Act,²" reads
    "Act,2"; "Executive Order 13960¹²" reads "1396012"); pdfium's font sizes tell it apart from
    digits of the same size ("EO 14110", "M-24-10" stay whole). A raised exponent of ten is written
    "10^26". A small number at the start of a line that goes on (a footnote's own number) is kept.
    Without font sizes (pdfium reports none, or the text does not line up) nothing is changed.
    """
    import pypdfium2.raw as pdfium_c

    text = tp.get_text_range()
    if len(text) != tp.count_chars():
        return text

    matrix = pdfium_c.FS_MATRIX()

    def size(i: int) -> float:
        """The character's printed size: font size times the text matrix's vertical scale (Federal
        Register PDFs set every font at size 1 and scale it by the matrix)."""
        base = float(pdfium_c.FPDFText_GetFontSize(tp, i))
        if pdfium_c.FPDFText_GetMatrix(tp, i, matrix):
            base *= math.hypot(matrix.c, matrix.d) or 1.0
        return base

    return drop_footnote_markers(text, size)


def drop_footnote_markers(text: str, size: Any) -> str:
    """`text` with small (superscript) digit runs handled as `_page_text` says; `size(i)` is the
    font size of character i (pure, so it is testable without a PDF)."""
    out: list[str] = []
    last = 0
    for m in re.finditer(r"\d+", text):
        a, b = m.span()
        j = a - 1
        while j >= 0 and text[j] in " \t\r\n":
            j -= 1
        if j < 0:
            continue
        ref = max(size(j), size(a))
        if ref <= 0:
            continue
        k = a
        while k < b and size(k) >= 0.8 * ref:
            k += 1
        if k == b or any(size(i) >= 0.8 * ref for i in range(k, b)) or b - k > 3:
            continue  # no small tail (or a mixed run): ordinary digits
        line_start = a == 0 or text[a - 1] in "\r\n"
        line_end = b == len(text) or text[b] in "\r\n"
        if k > a:  # "13960" + small "12": a marker glued to a number, or an exponent of ten
            base = text[a:k]
            if base == "10" and (a == 0 or not text[a - 1].isdigit()):
                out.append(text[last:k] + "^" + text[k:b])
                last = b
                continue
        elif not (j == a - 1 or (line_start and line_end)):
            continue  # after a space (ambiguous) or a footnote's own number at a line start: keep
        out.append(text[last:k])
        last = b
        if k == a and line_start and line_end:  # a marker alone on its line: drop the line break too
            while last < len(text) and text[last] in "\r\n":
                last += 1
    out.append(text[last:])
    return "".join(out)


def _find_title(text: str, title: str, lo: int, hi: int) -> int | None:
    """Where a bookmark's title starts on its page (tolerant to whitespace and line wraps)."""
    words = re.findall(r"\w+", title)
    if not words:
        return None
    pattern = r"\W+".join(re.escape(w) for w in words)
    m = re.search(pattern, text[lo:hi], re.I)
    return lo + m.start() if m else None
