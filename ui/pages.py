"""The source viewer: a citation opens its PDF page (rendered, the quote highlighted) or, for Markdown,
HTML, text and DOCX sources, the document's text scrolled to the passage. Plus the link to the original.

`locate` and `text_view_html` are pure; `viewer_html` asks the service for the page image or the text.
"""

from __future__ import annotations

import base64
from typing import Any

from .messages import friendly
from .render import esc

CONTEXT_CHARS = 20_000  # of a long text document shown around the passage


def locate(answers: list[dict[str, Any]], key: str) -> dict[str, Any] | None:
    """The source a click names: "turn:n" (citation n of that answer) or "turn:pR" (retrieved passage of rank R).

    Returns {source, title, page, page_end, quote, char_start, char_end, source_url, n} or None.
    """
    try:
        turn_s, what = str(key).split(":", 1)
        d = answers[int(turn_s)]
    except (ValueError, IndexError, TypeError):
        return None
    passages = d.get("passages") or []
    if what.startswith("p"):
        p = next((p for p in passages if str(p.get("rank")) == what[1:]), None)
        return None if p is None else _target(p, p, p.get("span_text") or "", None)
    c = next((c for c in d.get("citations") or [] if str(c.get("n")) == what), None)
    if c is None:
        return None
    p = next((p for p in passages if p.get("chunk_id") == c.get("chunk_id")), {})
    return _target(c, p, c.get("quote") or "", c.get("n"))


def _target(ref: dict[str, Any], passage: dict[str, Any], quote: str, n: Any) -> dict[str, Any]:
    """What a click opens: the cited (or retrieved) source, located by its passage's characters."""
    return {
        "source": ref["source"],
        "title": ref.get("title"),
        "page": ref.get("page"),
        "page_end": ref.get("page_end"),
        "quote": quote,
        "char_start": passage.get("char_start"),
        "char_end": passage.get("char_end"),
        "source_url": ref.get("source_url") or passage.get("source_url"),
        "n": n,
    }


def _link(url: str | None) -> str:
    if url and url.startswith(("https://", "http://")):
        return f'<a class="source-url" href="{esc(url)}" target="_blank" rel="noopener noreferrer">original: {esc(url)}</a>'
    return '<span class="source-url">no link to the original recorded for this document</span>'


def _head(loc: dict[str, Any], where: str) -> str:
    n = f"[{loc['n']}] " if loc.get("n") else ""
    return (
        f'<div class="viewer-head"><b>{n}{esc(loc.get("title") or loc["source"])}</b> · {where}<br>'
        f"<small>{esc(loc['source'])}</small> · {_link(loc.get('source_url'))}</div>"
    )


def page_view_html(loc: dict[str, Any], image: Any) -> str:
    """HTML for a rendered PDF page (`image`: a PageImage)."""
    data = base64.b64encode(image.png).decode("ascii")
    note = (
        "the quoted span is highlighted"
        if image.found
        else "the quoted span could not be located on this page's text layer; the cited page is shown"
    )
    return (
        f'<div class="viewer pdf" data-source="{esc(loc["source"])}" data-page="{image.page}" '
        f'data-highlights="{len(image.boxes)}">'
        + _head(loc, f"page {image.page} of {image.pages} · <small>{note}</small>")
        + f'<img alt="page {image.page} of {esc(loc["source"])}" src="data:image/png;base64,{data}" '
        f'width="{image.width}" height="{image.height}"></div>'
    )


def text_view_html(loc: dict[str, Any], text: str) -> str:
    """HTML for a text document with the passage marked (id="passage-here", scrolled to by the page)."""
    a, b = loc.get("char_start"), loc.get("char_end")
    if not isinstance(a, int) or not isinstance(b, int) or not (0 <= a < b <= len(text)):
        a = b = -1
        quote = " ".join(str(loc.get("quote") or "").split())
        if quote and quote in " ".join(text.split()):
            at = text.find(quote.split()[0])
            a, b = at, at + len(quote)
    if a < 0:
        body = esc(text[:CONTEXT_CHARS])
        where = "the passage could not be located; the document's start is shown"
    else:
        lo, hi = max(0, a - CONTEXT_CHARS // 2), min(len(text), b + CONTEXT_CHARS // 2)
        body = (
            ("…" if lo else "")
            + esc(text[lo:a])
            + '<mark id="passage-here">'
            + esc(text[a:b])
            + "</mark>"
            + esc(text[b:hi])
            + ("…" if hi < len(text) else "")
        )
        where = "opened at the passage"
    return (
        f'<div class="viewer text" data-source="{esc(loc["source"])}">'
        + _head(loc, where)
        + f'<div class="doc-text">{body}</div></div>'
    )


def viewer_html(service: Any, answers: list[dict[str, Any]], key: str) -> str:
    """What the viewer shows for a clicked citation or passage (a friendly message when it cannot)."""
    loc = locate(answers, key)
    if loc is None:
        return (
            '<div class="viewer"><i>That source belongs to an answer that is no longer in this conversation.</i></div>'
        )
    try:
        info = service.document(loc["source"])
        loc["source_url"] = loc.get("source_url") or info.source_url
        if info.file_type == "pdf" and loc.get("page"):
            image = service.page_image(loc["source"], int(loc["page"]), loc.get("quote") or "", loc.get("page_end"))
            return page_view_html(loc, image)
        return text_view_html(loc, service.document_text(loc["source"]))
    except Exception as e:  # a removed document, an unreadable file: say so, keep the page alive
        what, todo, detail = friendly(e)
        if "not in the index" in str(e) or "no longer" in str(e):
            what, todo = "This document is no longer available.", "It was removed from the index or the corpus folder."
        return f'<div class="viewer">{_head(loc, "not available")}<p><b>{esc(what)}</b> {esc(todo)}</p><small>{esc(detail)}</small></div>'
