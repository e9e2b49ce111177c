"""The documents as the UI lists them: table rows, remove/filter choices, the first screen's overview,
and the removal rules (what is deleted, what is only taken out of the index). Pure functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from .render import md_esc

DOC_HEADERS = ["title", "date", "kind", "pages", "chunks", "source"]
DOC_WIDTHS = ["44%", "11%", "13%", "7%", "8%", "17%"]


def kind_of(d: Any) -> str:
    """The document's kind where the index knows it (executive order, memo, ...), else its file type."""
    kind = getattr(d, "kind", None)
    return str(kind).replace("_", " ") if kind else str(getattr(d, "file_type", "") or "").upper()


def status_label(status: Any) -> str:
    """'revoked by EO 14148 on 2025-01-20', 'in force', ... from a status dict (or a plain string)."""
    if not status:
        return ""
    if isinstance(status, str):
        return status
    if not isinstance(status, dict):
        return str(status)
    label = str(status.get("status") or "")
    if status.get("by"):
        label += f" by {status['by']}"
    if status.get("on"):
        label += f" on {status['on']}"
    return label


def status_of(d: Any) -> str:
    """The document's status once the index records it ('in force', 'revoked by ... on ...'); empty until then."""
    return status_label(getattr(d, "status", None))


def with_policy(docs: Sequence[Any], policy: Sequence[Any] | None) -> list[Any]:
    """The documents with `kind` and `status` from the index's policy view (rows keyed by source), where known."""
    rows = {}
    for r in policy or []:
        r = r if isinstance(r, dict) else vars(r)
        if r.get("source"):
            rows[r["source"]] = r
    out = []
    for d in docs:
        extra = rows.get(d.source, {})
        out.append(SimpleNamespace(**{**vars(d), **{k: extra[k] for k in ("kind", "status") if extra.get(k)}}))
    return out


def documents_rows(docs: Sequence[Any]) -> list[list[Any]]:
    rows = []
    for d in docs:
        title = d.title + (f" ({status_of(d)})" if status_of(d) else "")
        rows.append([title, d.date or "", kind_of(d), d.pages if d.has_pages else "", d.n_chunks, d.source])
    return rows


def doc_choices(docs: Sequence[Any]) -> list[tuple[str, str]]:
    """(label, source) pairs: the label names the document, the value is its source path."""
    return [(f"{d.title} — {d.source}", d.source) for d in docs]


def docs_version(docs: Sequence[Any]) -> str:
    """Changes when a document is added, removed or re-indexed: sessions compare it to refresh their lists."""
    return "|".join(f"{d.source}:{d.doc_id}:{d.n_chunks}" for d in docs)


def removal_plan(source: str, is_upload: bool) -> str:
    """What removing `source` will do, in words (shown before the user confirms)."""
    if is_upload:
        return (
            f"`{md_esc(source)}` is an upload: it is taken out of the index **and its file is deleted** from "
            "`corpus/uploads/`."
        )
    return (
        f"`{md_esc(source)}` is part of the corpus: it is taken out of the index only; **its file is not deleted** "
        "(it is listed in `corpus/.rag-exclude`; delete that line to index it again)."
    )


def confirm_name(source: str) -> str:
    """What the user types to confirm a removal: the file name without folders."""
    return source.rsplit("/", 1)[-1]


def removal_check(source: str | None, typed: str | None, indexed: set[str]) -> str | None:
    """Why a removal may not go ahead (None when it may): nothing chosen, gone already, name not typed."""
    if not source:
        return "Choose a document to remove first."
    if source not in indexed:
        return f"`{md_esc(source)}` is no longer in the index (someone removed it); nothing was changed."
    if (typed or "").strip() != confirm_name(source):
        return f"Type the file name `{md_esc(confirm_name(source))}` to confirm; nothing was removed."
    return None


def overview_markdown(docs: Sequence[Any], status: dict[str, Any] | None = None) -> str:
    """The first screen's 'what is indexed': counts, date range, the documents with dates (and status)."""
    if not docs:
        return "**No documents are indexed yet.** Add some in the Documents tab."
    dates = sorted(d.date for d in docs if d.date)
    span = f", dated {dates[0]} to {dates[-1]}" if dates else ""
    chunks = sum(d.n_chunks for d in docs)
    head = f"**{len(docs)} documents indexed** ({chunks} passages{span})"
    if status and status.get("built_at"):
        head += f" · index built {md_esc(str(status['built_at'])[:16])}"
    items = []
    for d in sorted(docs, key=lambda d: d.date or "", reverse=True):
        st = status_of(d)
        items.append(f"- {md_esc(d.date or 'undated')} · {md_esc(d.title)}" + (f" — *{md_esc(st)}*" if st else ""))
    return head + "\n\n" + "\n".join(items)
