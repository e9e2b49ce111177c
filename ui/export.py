"""Exports of an answer (or a whole conversation) with its numbered sources: Markdown, DOCX, clean text.

Pure functions over answer dicts (`Answer.to_dict()`, citations optionally carrying `source_url`), so
they are tested without a browser. An analyst pastes these into memos: the text carries the same [n]
markers as the answer and each source says document, page, section and the quoted span; sentences the
system found unsupported are listed, never passed off as sourced.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from typing import Any

_SPACES = re.compile(r"[ \t]+")


def _pages(c: dict[str, Any]) -> str:
    page, end = c.get("page"), c.get("page_end")
    if not page:
        return ""
    return f"p. {page}" if not end or end == page else f"pp. {page}-{end}"


def source_line(c: dict[str, Any]) -> str:
    """`Title, p. 7, § Section (date) — “quote” — source file <url>` for citation dict `c`."""
    bits = [str(c.get("title") or c.get("source") or "")]
    if _pages(c):
        bits.append(_pages(c))
    if c.get("section"):
        bits.append(f"§ {c['section']}")
    head = ", ".join(bits)
    if c.get("date"):
        head += f" ({c['date']})"
    quote = " ".join(str(c.get("quote") or "").split())
    line = head + (f" — “{quote.strip('“”')}”" if quote else "")
    line += f" — {c.get('source')}" if c.get("source") else ""
    if c.get("source_url"):
        line += f" <{c['source_url']}>"
    return line


def unsupported(d: dict[str, Any]) -> list[str]:
    return [s["text"] for s in d.get("sentences") or [] if not s.get("supported", True)]


def _answered_by(d: dict[str, Any]) -> str:
    if d.get("refused"):
        return "refused: the documents don't say"
    if d.get("produced_by") == "extractive":
        return "quoted from the documents (extractive, no language model)"
    return f"written by {d.get('model') or 'the language model'}, checked against the passages"


def _clean(text: str) -> str:
    return "\n".join(_SPACES.sub(" ", ln).strip() for ln in str(text or "").splitlines()).strip()


def answer_text(d: dict[str, Any], heading: bool = True) -> str:
    """Clean text to paste anywhere: question, answer with [n], numbered sources (no markup)."""
    out = [f"Q: {d.get('question', '')}"] if heading else []
    out.append(_clean(d.get("answer") or "") or "The documents don't say.")
    if d.get("note"):
        out.append(f"({_clean(d['note'])})")
    flagged = unsupported(d)
    if flagged:
        out.append("Not supported by the sources: " + " | ".join(flagged))
    if d.get("citations"):
        out.append("Sources:")
        out += [f"[{c['n']}] {source_line(c)}" for c in d["citations"]]
    out.append(f"Answer {_answered_by(d)}.")
    return "\n".join(out)


def _md_escape(text: str) -> str:
    return re.sub(r"([\\`*_{}<>#|])", r"\\\1", text)


def answer_markdown_doc(d: dict[str, Any], level: int = 2) -> str:
    """One answer as a Markdown section: the question as heading, the answer, its numbered sources."""
    h = "#" * level
    out = [f"{h} {_md_escape(str(d.get('question', '')))}", ""]
    out.append(_md_escape(_clean(d.get("answer") or "")) or "*The documents don't say.*")
    if d.get("note"):
        out += ["", f"*{_md_escape(_clean(d['note']))}*"]
    flagged = unsupported(d)
    if flagged:
        out += ["", "**Not supported by the sources:**", *[f"- {_md_escape(s)}" for s in flagged]]
    query = (d.get("record") or {}).get("retrieval_query")
    if d.get("citations"):
        out += ["", f"{h}# Sources", ""]
        out += [f"{c['n']}. {_md_escape(source_line(c))}" for c in d["citations"]]
    out += [
        "",
        f"<sub>Answer {_answered_by(d)}"
        + (f"; searched for “{_md_escape(query)}”" if query and query != d.get("question") else "")
        + ".</sub>",
        "",
    ]
    return "\n".join(out)


def conversation_markdown(answers: Sequence[dict[str, Any]], title: str = "policy-rag conversation") -> str:
    return "\n".join([f"# {title}", ""] + [answer_markdown_doc(d) for d in answers])


def conversation_text(answers: Sequence[dict[str, Any]]) -> str:
    return "\n\n".join(answer_text(d) for d in answers)


def to_docx(answers: Sequence[dict[str, Any]], title: str = "policy-rag answers") -> bytes:
    """A Word document: each question as a heading, the answer, 'Sources' as a numbered list."""
    from docx import Document
    from docx.shared import Pt

    doc = Document()
    doc.add_heading(title, level=0)
    for d in answers:
        doc.add_heading(str(d.get("question", "")), level=1)
        doc.add_paragraph(_clean(d.get("answer") or "") or "The documents don't say.")
        if d.get("note"):
            doc.add_paragraph(_clean(d["note"])).runs[0].italic = True
        flagged = unsupported(d)
        if flagged:
            p = doc.add_paragraph()
            p.add_run("Not supported by the sources: ").bold = True
            p.add_run(" | ".join(flagged))
        if d.get("citations"):
            doc.add_heading("Sources", level=2)
            for c in d["citations"]:
                doc.add_paragraph(f"[{c['n']}] {source_line(c)}", style="List Paragraph")
        foot = doc.add_paragraph().add_run(f"Answer {_answered_by(d)}.")
        foot.italic = True
        foot.font.size = Pt(8)
    buf = io.BytesIO()
    doc.save(buf)
    return buf.getvalue()


def with_urls(d: dict[str, Any], urls: dict[str, str | None]) -> dict[str, Any]:
    """The answer dict with each citation's `source_url` (from the documents list) added where known."""
    cites = [
        {**c, "source_url": c.get("source_url") or urls.get(c.get("source", ""))} for c in d.get("citations") or []
    ]
    return {**d, "citations": cites}
