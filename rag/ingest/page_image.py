"""The cited page itself: a PDF page rendered with pypdfium2, the quoted span highlighted.

A reader who doubts a citation wants the page as printed, not our extracted text. The quote is found in
the page's own text layer by comparing letters and digits only (lower-cased), so the line breaks,
hyphenation and spacing our ingest cleaned up do not stop the match; its character boxes become the
highlight rectangles.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from rag.errors import IngestError


@dataclass(frozen=True)
class PageImage:
    """A rendered page (PNG bytes) and where the quote was highlighted on it (pixel boxes)."""

    png: bytes
    page: int  # 1-based page shown
    pages: int  # pages in the document
    width: int
    height: int
    boxes: tuple[tuple[int, int, int, int], ...]  # (left, top, right, bottom) in image pixels
    found: bool  # the quote (or its head and tail) was found on this page


def _normalized(text: str) -> tuple[str, list[int]]:
    """Letters and digits of `text`, lower-cased, with the offset each came from."""
    chars: list[str] = []
    where: list[int] = []
    for i, ch in enumerate(text):
        if ch.isalnum():
            chars.append(ch.lower())
            where.append(i)
    return "".join(chars), where


def find_span(page_text: str, quote: str, edge_words: int = 6) -> tuple[int, int] | None:
    """[start, end) of `quote` in `page_text`, ignoring everything but letters and digits.

    When the whole quote is not there (a footnote number our cleanup removed, a quote that runs onto
    the next page), its first and last few words bound the span; failing that, its longest prefix of
    at least four words that is found.
    """
    norm, where = _normalized(page_text)
    words = [w for w in ("".join(c for c in w if c.isalnum()).lower() for w in quote.split()) if w]
    if not words or not norm:
        return None
    target = "".join(words)
    at = norm.find(target)
    if at >= 0:
        return where[at], where[at + len(target) - 1] + 1
    if len(words) > 2 * edge_words:
        head, tail = "".join(words[:edge_words]), "".join(words[-edge_words:])
        a = norm.find(head)
        if a >= 0:
            b = norm.find(tail, a + len(head))
            if b >= 0 and b - a < 2 * len(target):
                return where[a], where[b + len(tail) - 1] + 1
    for n in range(len(words) - 1, 3, -1):
        prefix = "".join(words[:n])
        at = norm.find(prefix)
        if at >= 0:
            return where[at], where[at + len(prefix) - 1] + 1
    return None


def _boxes(textpage: object, start: int, end: int, page_height: float, scale: float) -> list[tuple[int, int, int, int]]:
    out = []
    n = textpage.count_rects(start, end - start)  # type: ignore[attr-defined]
    for i in range(n):
        left, bottom, right, top = textpage.get_rect(i)  # type: ignore[attr-defined]
        box = (
            int(left * scale) - 2,
            int((page_height - top) * scale) - 2,
            int(right * scale) + 2,
            int((page_height - bottom) * scale) + 2,
        )
        last = out[-1] if out else None
        if last and abs(last[1] - box[1]) <= 6 and box[0] >= last[0]:  # same line: one band, not a box per word
            out[-1] = (last[0], min(last[1], box[1]), max(last[2], box[2]), max(last[3], box[3]))
        else:
            out.append(box)
    return out


def render_page(
    path: Path, page: int, quote: str = "", *, also_pages: tuple[int, ...] = (), scale: float = 1.5
) -> PageImage:
    """Render page `page` (1-based) of the PDF at `path` with `quote` highlighted.

    `also_pages`: further pages the quote may be on (a passage spanning pages); the first page holding
    the quote is shown, else `page` without a highlight.
    """
    import pypdfium2 as pdfium
    from PIL import Image, ImageDraw

    try:
        pdf = pdfium.PdfDocument(str(path))
    except Exception as e:  # pdfium raises its own error types for broken files
        raise IngestError(str(path), f"cannot open the PDF ({type(e).__name__})", "corrupt") from None
    try:
        n_pages = len(pdf)
        if not 1 <= page <= n_pages:
            raise IngestError(str(path), f"page {page} does not exist (the PDF has {n_pages} pages)", "error")
        chosen, span = page, None
        if quote.strip():
            for p in dict.fromkeys((page, *also_pages)):
                if not 1 <= p <= n_pages:
                    continue
                textpage = pdf[p - 1].get_textpage()
                text = textpage.get_text_range()
                if len(text) != textpage.count_chars():  # offsets would not line up with the char boxes
                    continue
                span = find_span(text, quote)
                if span:
                    chosen = p
                    break
        pg = pdf[chosen - 1]
        height = pg.get_height()
        image = pg.render(scale=scale).to_pil().convert("RGB")
        boxes: list[tuple[int, int, int, int]] = []
        if span:
            boxes = _boxes(pg.get_textpage(), span[0], span[1], height, scale)
            overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
            draw = ImageDraw.Draw(overlay)
            for b in boxes:
                draw.rectangle(b, fill=(253, 224, 71, 120))
                draw.line([(b[0], b[3]), (b[2], b[3])], fill=(217, 119, 6, 255), width=2)
            image = Image.alpha_composite(image.convert("RGBA"), overlay).convert("RGB")
        buf = io.BytesIO()
        image.save(buf, format="PNG", optimize=False)
        return PageImage(buf.getvalue(), chosen, n_pages, image.width, image.height, tuple(boxes), span is not None)
    finally:
        pdf.close()
