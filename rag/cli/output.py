"""Printing for the terminal: build progress bars, hits, answers, status."""

from __future__ import annotations

from typing import Any

import typer


def err_console() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


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
        self.console.print(f"[yellow]skipped[/] {error.path}: {error.reason}", markup=True)
        if self.files is not None and error.kind != "unsupported":
            self.progress.update(self.files, advance=1)

    def embedded(self, n: int) -> None:
        self.progress.update(self.chunks, advance=n, info="embedded")

    def stage(self, text: str) -> None:
        self.console.print(text)


def print_hits(hits: list[Any]) -> None:
    if not hits:
        typer.echo("no passages found")
    for p in hits:
        c = p.chunk
        snippet = " ".join(c.text.split())
        snippet = snippet[:280] + ("…" if len(snippet) > 280 else "")
        typer.echo(f"[{p.rank}] {c.label}  (similarity {p.scores.get('dense', p.score):.3f})")
        typer.echo(f"    {c.source}")
        typer.echo(f"    {snippet}\n")


def print_answer(ans: Any) -> None:
    typer.echo(ans.text)
    if ans.note and not ans.refused:
        typer.echo(f"({ans.note})")
    typer.echo("")
    if ans.refused:
        typer.echo("Nearest passages:")
        for p in ans.passages[:3]:
            typer.echo(f"  - {p.chunk.label} (similarity {p.scores.get('dense', p.score):.2f})")
            typer.echo(f"    {p.chunk.source}")
        return
    typer.echo("Sources:")
    for c in ans.citations:
        ch = c.passage.chunk
        pages = f"p. {ch.page}" if ch.page == ch.page_end else f"pp. {ch.page}-{ch.page_end}"
        typer.echo(f"  [{c.n}] {ch.title} — {pages}" + (f" — {ch.section}" if ch.section else ""))
        typer.echo(f"      {ch.source} (support {c.support:.2f})")
        quote = " ".join(c.quote.split())
        typer.echo(f"      “{quote[:400]}{'…' if len(quote) > 400 else ''}”")
    t = ans.timings
    line = f"retrieval {t.get('retrieve_s', 0):.2f} s"
    if "generate_s" in t:
        line += f", first token {t['first_token_s']:.1f} s, {t.get('tokens', 0)} tokens at {t.get('tokens_per_s', 0):.1f}/s"
    err_console().print(line, markup=False)


def print_status(info: dict[str, Any]) -> None:
    pending = info["changed_since"]
    n_pending = sum(len(v) for v in pending.values())
    typer.echo(f"index      {info['index']} ({info['generation']}, id {info['index_id']})")
    typer.echo(f"documents  {info['documents']}   chunks {info['chunks']}")
    typer.echo(f"model      {info['embedding_model']} ({info['dimension']} d, faiss {info['faiss']})")
    typer.echo(f"chunking   {info['chunking']['chunk_tokens']} tokens, overlap {info['chunking']['chunk_overlap']}")
    typer.echo(f"last build {info['built_at']} ({info['build_seconds']} s)")
    if n_pending:
        typer.echo(f"changed since: {len(pending['added'])} added, {len(pending['changed'])} changed, "
                   f"{len(pending['removed'])} removed; run `rag index build`")
        for k, v in pending.items():
            for src in v[:20]:
                typer.echo(f"  {k:8} {src}")
    else:
        typer.echo("changed since: none (up to date)")
    if info["problem"]:
        typer.echo(f"warning: {info['problem']}")
