"""Pure formatting for the UI: answer Markdown with linked [n] markers, the sources panel HTML.

Everything that comes from a document or a model is HTML-escaped before it is placed in markup, so a
document cannot inject HTML or script into the page. The answer is shown as the library gives it
(citations already numbered 1..n in order of first use); what the UI adds is what a reader needs to
judge it: unsupported sentences marked, quotations found in no passage shown as unverified (never in
quotation marks), the retrieval query a follow-up was condensed to, and the model that wrote it.
"""

from __future__ import annotations

import html
import re
from typing import Any

_MARK = re.compile(r"\[(\d{1,3})\]")
_QUOTE = re.compile(r"“([^“”]{8,}?)”|\"([^\"]{8,}?)\"")

SUPPORT_TIP = ("support: how well this passage backs the sentence citing it (0-1: embedding similarity of the sentence "
               "to the passage's best sentence, and the share of its content words found there)")
RELEVANCE_TIP = ("relevance: the evidence scorer's estimated probability (0-1) that this passage answers the question; "
                 "passages are listed from most to least relevant")
SIMILARITY_TIP = ("similarity: cosine similarity (0-1) between the question and the passage embeddings; passages are listed "
                  "from most to least similar (values below 0 are shown as 0)")
UNSUPPORTED_TIP = "No retrieved passage supports this sentence: check it against the sources before relying on it."
UNVERIFIED_TIP = "The model put this in quotation marks, but no retrieved passage contains it: it is not a quotation."


def esc(text: Any) -> str:
    return html.escape(str(text if text is not None else ""), quote=True)


# HTML specials and Markdown syntax as character references: text from a document or a model is
# shown as written and can never become a link, image, emphasis or tag in the chat's Markdown
_MD_ESC = {ord(c): f"&#{ord(c)};" for c in "[]()\\`*_{}#+!|~>=:"} | {ord("<"): "&lt;", ord("&"): "&amp;", ord('"'): "&quot;", ord("'"): "&#39;"}


def md_esc(text: Any) -> str:
    return str(text if text is not None else "").translate(_MD_ESC)


def _letters(text: str) -> str:
    return "".join(ch.lower() for ch in text if ch.isalnum())


def passages_letters(ans: Any) -> str:
    """All retrieved text (passages and their context neighbours) as letters and digits, for quote checks."""
    parts = []
    for p in getattr(ans, "passages", ()) or ():
        parts.append(p.chunk.text)
        parts += [n.text for n in getattr(p, "neighbours", ()) or ()]
    return "\u0000".join(_letters(t) for t in parts)


def quote_found(quote: str, haystack: str) -> bool:
    q = _letters(quote)
    return bool(q) and q in haystack


def _unsupported_spans(text: str, sentences: Any) -> list[tuple[int, int]]:
    """Where in the answer text the sentences the library found unsupported are (in order)."""
    spans = []
    cursor = 0
    for s in sentences or ():
        body = s.text.strip().rstrip(".!?").strip()
        if not body:
            continue
        probe = body[: min(40, len(body))]
        at = text.find(probe, cursor)
        if at < 0:
            continue
        end = text.find(body, at)
        end = at + len(body) if end == at else at + len(probe)
        cursor = end
        if not s.supported:
            spans.append((at, end))
    return spans


def _inline(text: str, turn: int, valid: set[int], haystack: str, flagged: list[str]) -> str:
    """Escape a piece of answer text: [n] -> citation links, quotations checked against the passages."""
    out = []
    pos = 0
    for m in _QUOTE.finditer(text):
        inner = m.group(1) if m.group(1) is not None else m.group(2)
        if quote_found(inner, haystack):
            continue
        out.append(_markers(text[pos : m.start()], turn, valid))
        out.append(f'<span class="unverified-quote" title="{esc(UNVERIFIED_TIP)}">{_markers(inner, turn, valid)}</span>'
                   '<sup class="flag">unverified quote</sup>')
        flagged.append(inner)
        pos = m.end()
    out.append(_markers(text[pos:], turn, valid))
    return "".join(out)


def cite_link(turn: int, n: int) -> str:
    return f'<a href="#src-{turn}-{n}" class="cite" data-cite="{turn}:{n}" title="open source [{n}]">[{n}]</a>'


def _markers(text: str, turn: int, valid: set[int]) -> str:
    parts = _MARK.split(text)  # text, marker number, text, ...
    return "".join(md_esc(x) if i % 2 == 0 else (cite_link(turn, int(x)) if int(x) in valid else "") for i, x in enumerate(parts))


def answered_by(ans: Any) -> str:
    """Which model (or none) produced the answer, in words."""
    if ans.produced_by == "refusal":
        return "no answer written (the system refused)"
    if ans.produced_by == "extractive":
        return "quoted from the documents (extractive, no language model)"
    return f"written by {ans.model or 'the language model'}, each sentence checked against the passages"


def answer_footer(ans: Any) -> str:
    record = getattr(ans, "record", None) or {}
    bits = []
    query = record.get("retrieval_query")
    if query and " ".join(str(query).split()) != " ".join(ans.question.split()):
        bits.append(f'searched for: “{md_esc(query)}”')
    bits.append(md_esc(answered_by(ans)))
    return '<div class="answer-foot"><small>' + " · ".join(bits) + "</small></div>"


def answer_markdown(ans: Any, turn: int = 0) -> str:
    """The chat message for an answer: escaped text, [n] linked to the source entry, flags, notes, footer."""
    if ans.refused:
        near = "".join(f"\n- {md_esc(p.chunk.label)}" for p in ans.passages[:3])
        why = f" ({md_esc(ans.note)})" if ans.note else ""
        return f"**The documents don't say.**{why}\n\nClosest passages:{near}\n\n{answer_footer(ans)}"
    valid = {c.n for c in ans.citations}
    haystack = passages_letters(ans)
    flagged: list[str] = []
    text = ans.text
    pieces = []
    pos = 0
    for a, b in _unsupported_spans(text, getattr(ans, "sentences", ())):
        pieces.append(_inline(text[pos:a], turn, valid, haystack, flagged))
        pieces.append(f'<span class="unsupported" title="{esc(UNSUPPORTED_TIP)}">{_inline(text[a:b], turn, valid, haystack, flagged)}'
                      '</span><sup class="flag">unsupported</sup>')
        pos = b
    pieces.append(_inline(text[pos:], turn, valid, haystack, flagged))
    body = "".join(pieces)
    if ans.produced_by == "extractive":
        body = "*Quoted from the documents:*" + ("\n\n" if body.startswith("- ") else " ") + body
    if ans.note:
        body += f"\n\n<small>{md_esc(ans.note)}</small>"
    return body + "\n\n" + answer_footer(ans)


def draft_markdown(draft: str) -> str:
    return f"<small>drafting… (unchecked)</small> {md_esc(draft)}"


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


def display_score(p: Any) -> tuple[str, float, str]:
    """(name, value in [0, 1], tooltip) of the score a passage is listed by: never negative."""
    scores = getattr(p, "scores", None) or {}
    if "rerank_p" in scores:
        return "relevance", min(1.0, max(0.0, float(scores["rerank_p"]))), RELEVANCE_TIP
    return "similarity", min(1.0, max(0.0, float(scores.get("dense", p.score)))), SIMILARITY_TIP


def ordered_passages(passages: Any) -> list[Any]:
    """Passages from the highest displayed score down (retrieval rank breaks ties)."""
    return sorted(passages, key=lambda p: (-display_score(p)[1], p.rank))


def _open_button(turn: int, n: int | None, ch: Any, key: str) -> str:
    label = "open page" if getattr(ch, "page", None) and str(ch.source).lower().endswith(".pdf") else "open in document"
    return f'<button class="open-src" data-cite="{esc(key)}" title="show the passage in its document">{label}</button>'


def sources_html(ans: Any, turn: int = 0) -> str:
    """Cited passages (numbered, the supporting span highlighted), then the other retrieved passages by score."""
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
            f'<div class="src cited" id="src-{turn}-{c.n}" data-n="{c.n}" data-source="{esc(ch.source)}" data-page="{ch.page}">'
            f'<div class="src-head"><b>[{c.n}] {esc(ch.title)}</b> {_open_button(turn, c.n, ch, f"{turn}:{c.n}")}</div>'
            f'<div class="src-meta">{_meta(ch)} · <span class="score" title="{esc(SUPPORT_TIP)}">support {max(0.0, c.support):.2f} <sup class="tip">?</sup></span></div>'
            f"<blockquote>{_highlight(ch.text, c.quote)}</blockquote>"
            f'<div class="src-path">{esc(ch.source)}</div></div>'
        )
    others = [p for p in ordered_passages(ans.passages) if p.chunk.chunk_id not in cited_ids]
    if others:
        parts.append("<h4>Other retrieved passages</h4>" if ans.citations else "<h4>Nearest passages</h4>")
    for p in others:
        ch = p.chunk
        name, value, tip = display_score(p)
        parts.append(
            f'<details class="src other" data-source="{esc(ch.source)}" data-score="{value:.4f}"><summary>{esc(ch.title)} — {_meta(ch)} · '
            f'<span class="score" title="{esc(tip)}">{name} {value:.2f} <sup class="tip">?</sup></span></summary>'
            f"<blockquote>{esc(p.text)}</blockquote>"
            f'<div class="src-path">{esc(ch.source)} {_open_button(turn, None, ch, f"{turn}:p{p.rank}")}</div></details>'
        )
    parts.append("</div>")
    return "".join(parts)


def timings_markdown(ans: Any) -> str:
    t = ans.timings
    s = f"retrieval {t.get('retrieve_s', 0):.2f} s"
    if "generate_s" in t:
        s += f" · first token {t.get('first_token_s', 0):.1f} s · {t.get('tokens', 0)} tokens at {t.get('tokens_per_s', 0):.1f}/s"
    s += f" · {answered_by(ans)}"
    return s


MODE_HELP = {
    "extractive": "extractive: quotes the best-matching sentences of the documents, cited; no language model (fast, safest).",
    "generative": "generative: a language model writes the answer from the passages; every sentence is checked and unsupported ones are marked.",
    "auto": "auto: the language model writes, unsupported sentences are removed; with too little left, the extractive answer is given.",
}


CSS = """
.sources .src { border-left: 3px solid #2563eb; padding: 4px 10px; margin: 8px 0; }
.sources .src.other { border-left-color: #9ca3af; }
.sources blockquote { margin: 4px 0; font-size: 0.92em; white-space: pre-wrap; }
.sources mark { background: #fde68a; }
.src-meta, .src-path { color: #6b7280; font-size: 0.85em; }
.score { cursor: help; border-bottom: 1px dotted #6b7280; }
sup.tip { font-size: 0.7em; color: #2563eb; }
#export-file { max-height: 90px; }
button.open-src { font-size: 0.8em; padding: 0 6px; margin-left: 6px; border: 1px solid #93c5fd; border-radius: 4px; background: #eff6ff; cursor: pointer; }
a.cite { text-decoration: none; font-weight: 600; cursor: pointer; }
.unsupported { background: #fee2e2; text-decoration: underline wavy #dc2626; }
.unverified-quote { background: #ffedd5; font-style: italic; }
sup.flag { color: #b91c1c; font-size: 0.7em; margin-left: 2px; }
.answer-foot { color: #6b7280; margin-top: 4px; }
#cite-target, #cite-open { display: none !important; }
#page-view img { max-width: 100%; height: auto; border: 1px solid #d1d5db; display: block; margin: 6px auto; }
#page-view .doc-text { white-space: pre-wrap; max-height: 640px; overflow-y: auto; font-size: 0.9em; }
#docs-table table { table-layout: fixed; }
"""
