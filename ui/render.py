"""Pure formatting for the UI: answer Markdown with linked [n] markers, the sources panel HTML.

Everything that comes from a document or a model is HTML-escaped before it is placed in markup, so a
document cannot inject HTML or script into the page.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from typing import Any

_MARK = re.compile(r"\[(\d{1,3})\]")


def esc(text: Any) -> str:
    return html.escape(str(text if text is not None else ""), quote=True)


# HTML specials and Markdown syntax as character references: text from a document or a model is
# shown as written and can never become a link, image, emphasis or tag in the chat's Markdown
_MD_ESC = {ord(c): f"&#{ord(c)};" for c in "[]()\\`*_{}#+!|~>=:"} | {ord("<"): "&lt;", ord("&"): "&amp;", ord('"'): "&quot;", ord("'"): "&#39;"}


def md_esc(text: Any) -> str:
    return str(text if text is not None else "").translate(_MD_ESC)


def answer_markdown(ans: Any) -> str:
    """The chat message for an answer: escaped text, [n] linked to the source entry, notes."""
    if ans.refused:
        near = "".join(f"\n- {md_esc(p.chunk.label)}" for p in ans.passages[:3])
        why = f" ({md_esc(ans.note)})" if ans.note else ""
        return f"**The documents don't say.**{why}\n\nClosest passages:{near}"
    valid = {c.n for c in ans.citations}
    parts = _MARK.split(ans.text)  # text, marker number, text, ...
    body = "".join(
        md_esc(x) if i % 2 == 0 else (f'<a href="#src-{x}" class="cite">[{x}]</a>' if int(x) in valid else "")
        for i, x in enumerate(parts)
    )
    if ans.produced_by == "extractive":
        body = "*Quoted from the documents:* " + body
    if ans.note:
        body += f"\n\n<small>{md_esc(ans.note)}</small>"
    return body


def draft_markdown(draft: str) -> str:
    return f"<small>drafting…</small> {md_esc(draft)}"


def _highlight(text: str, quote: str) -> str:
    """Escape `text`, wrapping the quoted span in <mark> (whitespace-tolerant match)."""
    if quote:
        words = quote.strip("“”\" ").split()
        if words:
            pattern = r"\s+".join(re.escape(w) for w in words)
            m = re.search(pattern, text)
            if m:
                return esc(text[: m.start()]) + "<mark>" + esc(m.group(0)) + "</mark>" + esc(text[m.end():])
    return esc(text)


def _meta(chunk: Any) -> str:
    pages = f"p. {chunk.page}" if chunk.page == chunk.page_end else f"pp. {chunk.page}–{chunk.page_end}"
    bits = [pages]
    if chunk.section:
        bits.append(esc(chunk.section))
    if chunk.date:
        bits.append(esc(chunk.date))
    return " · ".join(bits)


def sources_html(ans: Any) -> str:
    """Cited passages (with the supporting span highlighted), then the other retrieved passages."""
    if ans is None:
        return ""
    parts = ['<div class="sources">']
    cited_ids = set()
    if ans.citations:
        parts.append("<h4>Cited sources</h4>")
    for c in ans.citations:
        ch = c.passage.chunk
        cited_ids.add(ch.chunk_id)
        parts.append(
            f'<div class="src cited" id="src-{c.n}" data-source="{esc(ch.source)}" data-page="{ch.page}">'
            f'<div class="src-head"><b>[{c.n}] {esc(ch.title)}</b></div>'
            f'<div class="src-meta">{_meta(ch)} · support {c.support:.2f}</div>'
            f"<blockquote>{_highlight(ch.text, c.quote)}</blockquote>"
            f'<div class="src-path">{esc(ch.source)}</div></div>'
        )
    others = [p for p in ans.passages if p.chunk.chunk_id not in cited_ids]
    if others:
        parts.append("<h4>Other retrieved passages</h4>" if ans.citations else "<h4>Nearest passages</h4>")
    for p in others:
        ch = p.chunk
        sim = p.scores.get("dense", p.score)
        parts.append(
            f'<details class="src other" data-source="{esc(ch.source)}"><summary>{esc(ch.title)} — {_meta(ch)} · similarity {sim:.2f}</summary>'
            f"<blockquote>{esc(ch.text)}</blockquote>"
            f'<div class="src-path">{esc(ch.source)}</div></details>'
        )
    parts.append("</div>")
    return "".join(parts)


def timings_markdown(ans: Any) -> str:
    t = ans.timings
    s = f"retrieval {t.get('retrieve_s', 0):.2f} s"
    if "generate_s" in t:
        s += f" · first token {t.get('first_token_s', 0):.1f} s · {t.get('tokens', 0)} tokens at {t.get('tokens_per_s', 0):.1f}/s"
    s += f" · answer by {ans.produced_by}"
    return s


def documents_rows(docs: Sequence[Any]) -> list[list[Any]]:
    return [[d.title, d.date or "", d.pages if d.has_pages else "", d.n_chunks, d.source] for d in docs]


CSS = """
.sources .src { border-left: 3px solid #2563eb; padding: 4px 10px; margin: 8px 0; }
.sources .src.other { border-left-color: #9ca3af; }
.sources blockquote { margin: 4px 0; font-size: 0.92em; white-space: pre-wrap; }
.sources mark { background: #fde68a; }
.src-meta, .src-path { color: #6b7280; font-size: 0.85em; }
a.cite { text-decoration: none; font-weight: 600; }
"""
