"""Printing for the terminal: build progress bars, hits, answers, status."""

from __future__ import annotations

from typing import Any

import typer


def err_console() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def note(text: str) -> None:
    """A plain line on stderr (legends, timings): no rich import on the search/ask path (0.02-0.05 CPU s of a cold command)."""
    typer.echo(text, err=True)


class RichReporter:
    """Progress bars for a build: files, then chunks embedded."""

    def __init__(self, quiet: bool = False) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = err_console()
        self.quiet = quiet
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                                 TimeElapsedColumn(), console=self.console, transient=False, disable=quiet)
        self.files: Any = None
        self.chunks: Any = None
        self.n_chunks = 0

    def __enter__(self) -> RichReporter:
        self.progress.__enter__()
        return self

    def __exit__(self, *a: Any) -> None:
        self.progress.__exit__(*a)

    def start(self, n_files: int) -> None:
        self.files = self.progress.add_task("files ", total=n_files, info="")
        self.chunks = self.progress.add_task("chunks", total=0, info="")

    def file_done(self, source: str, n_chunks: int) -> None:
        self.n_chunks += n_chunks
        self.progress.update(self.files, advance=1, info=source[-60:])
        self.progress.update(self.chunks, total=self.n_chunks)

    def file_skipped(self, error: Any) -> None:
        self.console.print(f"[yellow]skipped[/] {error.path}: {error.reason}", markup=True, soft_wrap=True)
        if self.files is not None and error.kind != "unsupported":
            self.progress.update(self.files, advance=1)

    def embedded(self, n: int) -> None:
        self.progress.update(self.chunks, advance=n, info="embedded")

    def stage(self, text: str) -> None:
        self.console.print(text, soft_wrap=True)


SCORE_LEGEND = ("similarity: cosine similarity of question and passage embeddings (0-1, below 0 shown as 0); "
                "relevance: the evidence scorer's probability that the passage answers the question")
SUPPORT_LEGEND = "support: how well the passage backs the sentences citing it (0-1)"
UNSUPPORTED_TAG = "[unsupported]"


def by_display_score(passages: Any) -> list[Any]:
    """Passages from the highest shown score down (retrieval rank breaks ties)."""
    return sorted(passages, key=lambda p: (-p.display_score[1], p.rank))


def _scores(p: Any, digits: int = 3) -> str:
    """The score the list is sorted by, then the similarity when that is another one."""
    name, value = p.display_score
    out = f"{name} {value:.{digits}f}"
    if name != "similarity":
        out += f", similarity {min(1.0, max(0.0, float(p.scores.get('dense', 0.0)))):.{digits}f}"
    return out


def _doc_tag(p: Any) -> str:
    """The passage's document identity and status when known, e.g. "  · EO 14110 · 2023-10-30 · revoked"."""
    tag = (getattr(p, "document", None) or {}).get("tag")
    return f"  · {tag}" if tag else ""


def print_hits(hits: list[Any]) -> None:
    if not hits:
        typer.echo("no passages found")
        return
    for p in by_display_score(hits):
        c = p.chunk
        snippet = " ".join(c.text.split())
        snippet = snippet[:280] + ("…" if len(snippet) > 280 else "")
        typer.echo(f"[{p.rank}] {c.label}  ({_scores(p)})")
        typer.echo(f"    {c.source}{_doc_tag(p)}")
        typer.echo(f"    {snippet}\n")
    note(f"[n] is the retrieval rank; {SCORE_LEGEND}")


def flag_unsupported(text: str, sentences: Any) -> tuple[str, list[str]]:
    """The answer text with "[unsupported]" after each sentence no passage backs, and the sentences that
    could not be found in the text to tag (to be listed apart)."""
    missing: list[str] = []
    for s in sentences:
        if s.supported:
            continue
        body = s.text.rstrip().rstrip(".!?")
        at = text.find(body) if body else -1
        if at < 0:
            missing.append(s.text)
            continue
        end = at + len(body)
        while end < len(text) and text[end] in ".!?”\"’)":
            end += 1
        if not text.startswith(" " + UNSUPPORTED_TAG, end):
            text = f"{text[:end]} {UNSUPPORTED_TAG}{text[end:]}"
    return text, missing


def print_answer(ans: Any) -> None:
    text, untagged = (ans.text, []) if ans.refused else flag_unsupported(ans.text, ans.sentences)
    typer.echo(text)
    for sent in untagged:
        typer.echo(f"{UNSUPPORTED_TAG} {sent}")
    if ans.note and not ans.refused:
        typer.echo(f"({ans.note})")
    if any(not s.supported for s in ans.sentences) and not ans.refused:
        typer.echo(f"({UNSUPPORTED_TAG}: no passage backs this sentence; do not rely on it)")
    typer.echo("")
    if ans.refused:
        typer.echo("Nearest passages:")
        for p in by_display_score(ans.passages)[:3]:
            typer.echo(f"  - {p.chunk.label} ({_scores(p, 2)})")
            typer.echo(f"    {p.chunk.source}{_doc_tag(p)}")
        note(SCORE_LEGEND)
        return
    typer.echo("Sources:")
    for c in ans.citations:
        ch = c.passage.chunk
        pages = f"p. {ch.page}" if ch.page == ch.page_end else f"pp. {ch.page}-{ch.page_end}"
        typer.echo(f"  [{c.n}] {ch.title} — {pages}" + (f" — {ch.section}" if ch.section else ""))
        typer.echo(f"      {ch.source}{_doc_tag(c.passage)} (support {max(0.0, c.support):.2f})")
        quote = " ".join(c.quote.split())
        typer.echo(f"      “{quote[:400]}{'…' if len(quote) > 400 else ''}”")
    if ans.citations:
        note(SUPPORT_LEGEND)
    t = ans.timings
    line = f"retrieval {t.get('retrieve_s', 0):.2f} s"
    if "generate_s" in t:
        line += f", first token {t['first_token_s']:.1f} s, {t.get('tokens', 0)} tokens at {t.get('tokens_per_s', 0):.1f}/s"
    note(line)


def print_status(info: dict[str, Any]) -> None:
    pending = info["changed_since"]
    n_pending = sum(len(v) for v in pending.values())
    typer.echo(f"index      {info['index']} ({info['generation']}, id {info['index_id']})")
    typer.echo(f"documents  {info['documents']}   chunks {info['chunks']}")
    typer.echo(f"model      {info['embedding_model']} ({info['dimension']} d, faiss {info['faiss']})")
    typer.echo(f"chunking   {info['chunking'].get('chunk_tokens')} tokens, overlap {info['chunking'].get('chunk_overlap')}")
    typer.echo(f"last build {info['built_at']} ({info['build_seconds']} s)")
    if n_pending:
        typer.echo(f"changed since: {len(pending['added'])} added, {len(pending['changed'])} changed, "
                   f"{len(pending['removed'])} removed; run `rag index build`")
        for k, v in pending.items():
            for src in v[:20]:
                typer.echo(f"  {k:8} {src}")
    elif not info.get("damaged"):
        typer.echo("changed since: none (up to date)")
    for k in info.get("kept") or []:
        typer.echo(f"kept previous version of {k['source']}: {k['reason']} (fix the file, then `rag index build`)")
    for src, of in (info.get("duplicates") or {}).items():
        typer.echo(f"duplicate  {src} (same content as {of}, indexed once)")
    for p in info.get("damaged") or []:
        typer.echo(f"damaged: {p}; run `rag index build --full`")
    ident = info.get("identity") or {}
    if ident.get("documents"):
        named = sum(bool(d["identifiers"]) for d in ident["documents"].values())
        typer.echo(f"identity   {named} of {len(ident['documents'])} documents with identifiers, {ident['relations']} relations (`rag docs`)")
        for src, d in ident["documents"].items():
            typer.echo(f"  {d['date'] or '—':10}  {d['kind'] or '':22}  {', '.join(d['identifiers']) or '—':24}  {src}")
        for src, why in ident["not_in_force"].items():
            typer.echo(f"not in force: {src}: {why}")
    if info["problem"]:
        typer.echo(f"warning: {info['problem']}")
