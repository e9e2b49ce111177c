"""The `rag` command: a thin layer over the library. Errors become one line and an exit code."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from .errors import ConfigError, IngestError, RagError

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="policy-rag: cited answers from policy documents.",
)
index_app = typer.Typer(no_args_is_help=True, help="Build and inspect the index.")
app.add_typer(index_app, name="index")

CorpusOpt = Annotated[
    Path | None, typer.Option("--corpus", help="Corpus folder (default: corpus/).")
]
IndexOpt = Annotated[Path | None, typer.Option("--index", help="Index folder (default: index/).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
EngineOpt = Annotated[str, typer.Option("--engine", help="local | ray (pip install 'policy-rag[ray]').")]
AddressOpt = Annotated[str | None, typer.Option("--address", help="Ray cluster address (default: start a local Ray instance).")]
WorkersOpt = Annotated[int | None, typer.Option("--workers", min=1, help="Ray actors (default: half the CPU cores, at most 4).")]


def _check_engine(engine: str, address: str | None) -> None:
    if engine not in ("local", "ray"):
        raise ConfigError(f"unknown --engine '{engine}' (use local or ray)")
    if engine == "ray":
        from .ray_engine import ensure_ray

        ensure_ray(address)
    elif address:
        raise ConfigError("--address needs --engine ray")
RerankerOpt = Annotated[str | None, typer.Option("--reranker", help="CrossEncoder (HF id or folder) to rerank hits; 'none' turns it off.")]
ExpandOpt = Annotated[int | None, typer.Option("--expand", help="Attach this many neighbouring chunks to each hit (context).")]
DedupeOpt = Annotated[bool | None, typer.Option("--dedupe/--no-dedupe", help="Drop hits overlapping a better hit.")]


def _retrieval_overrides(reranker: str | None, expand: int | None, dedupe: bool | None) -> dict[str, Any]:
    return {"expand_neighbours": expand, "dedupe": dedupe, "reranker": reranker}


def _settings(**kw: Any) -> Any:
    from .settings import load_settings

    return load_settings(**kw)


def _err_console() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


class RichReporter:
    """Progress bars for a build: files, then chunks embedded."""

    def __init__(self, quiet: bool = False) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = _err_console()
        self.quiet = quiet
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
            disable=quiet,
        )
        self.files = None
        self.chunks = None
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

    def file_skipped(self, error: IngestError) -> None:
        self.console.print(f"[yellow]skipped[/] {error.path}: {error.reason}", markup=True)
        if self.files is not None and error.kind != "unsupported":
            self.progress.update(self.files, advance=1)

    def embedded(self, n: int) -> None:
        self.progress.update(self.chunks, advance=n, info="embedded")

    def stage(self, text: str) -> None:
        self.console.print(text)


# ---------------------------------------------------------------------------------------------
# index


@index_app.command("build")
def index_build(
    corpus: CorpusOpt = None,
    index: IndexOpt = None,
    full: Annotated[bool, typer.Option("--full", help="Rebuild from scratch.")] = False,
    embedding_model: Annotated[
        str | None, typer.Option("--embedding-model", help="HF id or local folder.")
    ] = None,
    faiss_index: Annotated[str | None, typer.Option("--faiss", help="flat | hnsw | ivf")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Index new and changed files of the corpus; drop removed ones (atomic)."""
    from .indexer import build_index

    s = _settings(
        corpus=corpus, index=index, embedding_model=embedding_model, faiss_index=faiss_index
    )
    with RichReporter(quiet=quiet or as_json) as rep:
        result = build_index(s, full=full, reporter=rep)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=1))
    else:
        if not result.changed and result.generation:
            typer.echo("index is up to date. " + result.summary())
        else:
            typer.echo(result.summary())


@index_app.command("status")
def index_status(
    corpus: CorpusOpt = None, index: IndexOpt = None, as_json: JsonOpt = False
) -> None:
    """Documents, chunks, model, last build, and files changed since."""
    from .indexer import plan_changes
    from .ingest import discover
    from .store import current_generation, read_manifest

    s = _settings(corpus=corpus, index=index)
    manifest = read_manifest(Path(s.index))
    if manifest is None:
        raise RagError(f"no index at {s.index}; run `rag index build`")
    pending: dict[str, list[str]] = {"added": [], "changed": [], "removed": []}
    if Path(s.corpus).is_dir():
        files, _ = discover(Path(s.corpus))
        add, upd, rem, _ = plan_changes(files, Path(s.corpus), manifest, False)
        pending = {
            "added": [f.source for f in add],
            "changed": [f.source for f in upd],
            "removed": rem,
        }
    compatible = True
    problem = None
    try:
        from .store import check_compatible

        check_compatible(manifest, s.embedding_model, s.chunk_config(), Path(s.index))
    except RagError as e:
        compatible, problem = False, str(e)
    info = {
        "index": str(s.index),
        "generation": current_generation(Path(s.index)).name,  # type: ignore[union-attr]
        "index_id": manifest.get("index_id"),
        "documents": manifest["counts"]["documents"],
        "chunks": manifest["counts"]["chunks"],
        "embedding_model": manifest["embedding"]["model"],
        "dimension": manifest["embedding"]["dimension"],
        "faiss": manifest["faiss"]["type"],
        "chunking": manifest["chunking"],
        "built_at": manifest.get("built_at"),
        "build_seconds": manifest.get("build_seconds"),
        "changed_since": pending,
        "compatible_with_settings": compatible,
        "problem": problem,
    }
    if as_json:
        typer.echo(json.dumps(info, indent=1))
        return
    n_pending = sum(len(v) for v in pending.values())
    typer.echo(f"index      {info['index']} ({info['generation']}, id {info['index_id']})")
    typer.echo(f"documents  {info['documents']}   chunks {info['chunks']}")
    typer.echo(
        f"model      {info['embedding_model']} ({info['dimension']} d, faiss {info['faiss']})"
    )
    typer.echo(
        f"chunking   {info['chunking']['chunk_tokens']} tokens, overlap {info['chunking']['chunk_overlap']}"
    )
    typer.echo(f"last build {info['built_at']} ({info['build_seconds']} s)")
    if n_pending:
        typer.echo(
            f"changed since: {len(pending['added'])} added, {len(pending['changed'])} changed, {len(pending['removed'])} removed; run `rag index build`"
        )
        for k, v in pending.items():
            for src in v[:20]:
                typer.echo(f"  {k:8} {src}")
    else:
        typer.echo("changed since: none (up to date)")
    if problem:
        typer.echo(f"warning: {problem}")


@index_app.command("check")
def index_check(index: IndexOpt = None, as_json: JsonOpt = False) -> None:
    """Consistency check: FAISS ids == SQLite rows == manifest."""
    from .store import IndexStore

    s = _settings(index=index)
    store = IndexStore(Path(s.index))
    problems = store.check()
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "ok": not problems,
                    "problems": problems,
                    "chunks": len(store),
                    "generation": store.generation.name,
                }
            )
        )
    elif problems:
        for p in problems:
            typer.echo(f"problem: {p}")
    else:
        typer.echo(
            f"ok: {store.generation.name}, {len(store)} chunks, {len(store.documents())} documents consistent"
        )
    if problems:
        raise typer.Exit(5)


# ---------------------------------------------------------------------------------------------
# search


def _read_queries(path: Path) -> list[tuple[str, Any]]:
    from .retrieve import normalise_filter_obj

    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read queries file {path}: {e}") from None
    out: list[tuple[str, Any]] = []
    jsonl = path.suffix.lower() in (".jsonl", ".json") or raw.lstrip().startswith("{")
    for n, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        if jsonl:
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{path}:{n}: not valid JSON ({e.msg})") from None
            q = obj.get("question") if isinstance(obj, dict) else None
            if not isinstance(q, str) or not q.strip():
                raise ConfigError(f'{path}:{n}: needs a non-empty "question" string')
            out.append((q, normalise_filter_obj(obj.get("filter"))))
        else:
            out.append((line.strip(), None))
    return out


def _print_hits(hits: list[Any]) -> None:
    if not hits:
        typer.echo("no passages found")
    for p in hits:
        c = p.chunk
        snippet = " ".join(c.text.split())
        snippet = snippet[:280] + ("…" if len(snippet) > 280 else "")
        typer.echo(f"[{p.rank}] {c.label}  (similarity {p.scores.get('dense', p.score):.3f})")
        typer.echo(f"    {c.source}")
        typer.echo(f"    {snippet}\n")


@app.command("search")
def search(
    question: Annotated[str | None, typer.Argument(help="The question or search text.")] = None,
    k: Annotated[int | None, typer.Option("-k", "--top-k", help="Passages to return.")] = None,
    filter_: Annotated[
        list[str] | None,
        typer.Option("--filter", help="KEY=VALUE on source/title/doc_id/date (repeatable)."),
    ] = None,
    queries: Annotated[
        Path | None,
        typer.Option(
            "--queries", help="File of queries: one a line, or JSONL with question/filter."
        ),
    ] = None,
    mode: Annotated[str | None, typer.Option("--mode", help="dense | bm25 | hybrid (default hybrid).")] = None,
    reranker: RerankerOpt = None,
    expand: ExpandOpt = None,
    dedupe: DedupeOpt = None,
    index: IndexOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Search the index (dense retrieval); every hit cites document, page and section."""
    from .retrieve import Retriever, parse_filters

    if (question is None) == (queries is None):
        raise ConfigError("give a QUESTION or --queries FILE (one of them)")
    s = _settings(index=index, top_k=k, retrieval_mode=mode, **_retrieval_overrides(reranker, expand, dedupe))
    filters = parse_filters(filter_)
    retriever = Retriever.open(s)
    if queries is not None:
        items = _read_queries(queries)
        t0 = time.perf_counter()
        for start in range(0, len(items), 256):
            part = items[start : start + 256]
            merged = [{**filters, **(f or {})} or None for _, f in part]
            results = retriever.search([q for q, _ in part], s.top_k, merged)
            for (q, _), hits in zip(part, results, strict=True):
                typer.echo(
                    json.dumps(
                        {"question": q, "hits": [h.to_dict() for h in hits]}, ensure_ascii=False
                    )
                )
        _err_console().print(f"searched {len(items)} queries in {time.perf_counter() - t0:.2f} s")
        return
    assert question is not None
    if not question.strip():
        raise ConfigError("the question is empty")
    hits = retriever.search([question], s.top_k, filters or None)[0]
    if as_json:
        typer.echo(json.dumps([h.to_dict() for h in hits], indent=1, ensure_ascii=False))
    else:
        _print_hits(hits)


def _print_answer(ans: Any) -> None:
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
    _err_console().print(line, markup=False)


@app.command("ask")
def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    k: Annotated[int | None, typer.Option("-k", "--top-k", help="Passages to retrieve.")] = None,
    filter_: Annotated[list[str] | None, typer.Option("--filter", help="KEY=VALUE on source/title/doc_id/date (repeatable).")] = None,
    model: Annotated[str | None, typer.Option("--model", help="LLM: smollm2 (default), an HF id, a folder or a .gguf file.")] = None,
    answer_mode: Annotated[str | None, typer.Option("--answer-mode", help="generative | extractive | auto.")] = None,
    mode: Annotated[str | None, typer.Option("--mode", help="Retrieval: dense | bm25 | hybrid.")] = None,
    reranker: RerankerOpt = None,
    expand: ExpandOpt = None,
    dedupe: DedupeOpt = None,
    stream: Annotated[bool, typer.Option("--stream/--no-stream", help="Show the model's draft as it is generated (stderr).")] = True,
    index: IndexOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Answer a question from the documents, citing passages; refuse when they don't say."""
    from .answer import Answerer
    from .retrieve import Retriever, parse_filters

    s = _settings(index=index, top_k=k, llm_model=model, answer_mode=answer_mode, retrieval_mode=mode,
                  **_retrieval_overrides(reranker, expand, dedupe))
    filters = parse_filters(filter_)
    answerer = Answerer(Retriever.open(s), s)
    on_token = None
    if stream and not as_json and sys.stderr.isatty():
        def on_token(piece: str) -> None:
            sys.stderr.write(piece)
            sys.stderr.flush()
    ans = answerer.ask(question, filters=filters or None, on_token=on_token)
    if on_token is not None and "generate_s" in ans.timings:
        sys.stderr.write("\n\n")
    if as_json:
        typer.echo(json.dumps(ans.to_dict(), indent=1, ensure_ascii=False))
    else:
        _print_answer(ans)


@app.command("batch")
def batch(
    input_: Annotated[Path, typer.Argument(metavar="INPUT", help="Questions: .txt, .csv/.xlsx (question column), .jsonl.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Answers: .jsonl, .csv or .xlsx (format from the extension).")],
    resume: Annotated[bool, typer.Option("--resume", help="Skip ids already in OUTPUT.")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Questions retrieved and generated together.")] = 8,
    k: Annotated[int | None, typer.Option("-k", "--top-k", help="Passages per question.")] = None,
    filter_: Annotated[list[str] | None, typer.Option("--filter", help="KEY=VALUE (repeatable), for every question.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="LLM for generative/auto answers.")] = None,
    answer_mode: Annotated[str | None, typer.Option("--answer-mode", help="generative | extractive | auto.")] = None,
    engine: EngineOpt = "local",
    address: AddressOpt = None,
    workers: WorkersOpt = None,
    index: IndexOpt = None,
) -> None:
    """Answer a list of questions into a spreadsheet or JSONL of cited answers; resumable."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from .answer import Answerer
    from .batch import ResultWriter, check_items, read_input, run_batch
    from .retrieve import Retriever, parse_filters

    s = _settings(index=index, top_k=k, llm_model=model, answer_mode=answer_mode)
    items = read_input(input_)
    warnings, _ = check_items(items)
    console = _err_console()
    for w in warnings[:50]:
        console.print(f"[yellow]note[/] {w}", markup=True)
    writer = ResultWriter(output, resume)
    _check_engine(engine, address)
    filters = parse_filters(filter_) or None
    with Progress(TextColumn("questions"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                  TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console) as prog:
        todo = sum(1 for it in items if it.id not in writer.done and not it.error)
        task = prog.add_task("batch", total=todo, rate="")
        t0 = time.perf_counter()

        def on_progress(done: int, total: int, failed: int) -> None:
            rate = 60 * done / max(1e-9, time.perf_counter() - t0)
            prog.update(task, completed=done, rate=f"{rate:.1f}/min" + (f", {failed} failed" if failed else ""))

        if engine == "ray":
            from .ray_engine import run_batch_ray

            summary = run_batch_ray(items, writer, s, batch_size=batch_size, filters=filters, mode=None, k=None, model=None,
                                    workers=workers, on_progress=on_progress)
        else:
            answerer = Answerer(Retriever.open(s), s)
            summary = run_batch(answerer, items, writer, batch_size=batch_size, filters=filters, on_progress=on_progress)
    summary.duplicates = sum(1 for w in warnings if "duplicate of question" in w)
    typer.echo(summary.line() + f" -> {output}")


@app.command("eval")
def eval_cmd(
    dataset: Annotated[Path, typer.Argument(help="SQuAD json (e.g. PolicyQA), the ObliQA folder, or our JSONL.")],
    fmt: Annotated[str | None, typer.Option("--format", help="squad | obliqa | jsonl (guessed from the path).")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="Evaluate a deterministic sample of N questions.")] = None,
    mode: Annotated[list[str] | None, typer.Option("--mode", help="Retrieval mode(s): dense, bm25, hybrid (repeatable).")] = None,
    answers: Annotated[bool, typer.Option("--answers/--no-answers", help="Also generate and score answers (slow on CPU).")] = False,
    answer_mode: Annotated[list[str] | None, typer.Option("--answer-mode", help="Answer mode(s) with --answers (repeatable).")] = None,
    out: Annotated[Path | None, typer.Option("-o", "--out", help="Report folder (default reports/eval-NAME).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Sampling seed.")] = 0,
    index: IndexOpt = None,
) -> None:
    """Measure retrieval, answers, citations and refusals on a question set; write report.md, JSON and plots."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .evaluate import guess_format, run_eval

    s = _settings(index=index)
    if not dataset.exists():
        raise ConfigError(f"dataset {dataset} does not exist")
    modes = mode or ["hybrid"]
    for m in modes:
        if m not in ("dense", "bm25", "hybrid"):
            raise ConfigError(f"unknown --mode '{m}' (use dense, bm25 or hybrid)")
    amodes = (answer_mode or [s.answer_mode]) if answers else []
    out = out or Path("reports") / f"eval-{dataset.stem}"
    console = _err_console()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console) as prog:
        task = prog.add_task("evaluating", total=None)

        def progress(n: int, desc: str) -> None:
            prog.update(task, advance=n, description=desc)

        with RichReporter(quiet=True) as rep:
            written = run_eval(dataset, fmt or guess_format(dataset), s, modes=modes, answer_modes=amodes, limit=limit, seed=seed,
                               out=out, reporter=rep, progress=progress)
    import json as _json

    metrics = _json.loads((out / "metrics.json").read_text())
    parts = [f"{m}: R@5 {v['recall@5']:.3f} MRR {v['mrr']:.3f}" for m, v in metrics["retrieval"].items()]
    parts += [f"{m}: F1 {v['f1'] if v['f1'] is not None else float('nan'):.3f} refusal acc {v['refusal_accuracy'] if v['refusal_accuracy'] is not None else float('nan'):.2f}"
              for m, v in metrics["answers"].items()]
    typer.echo(f"eval {metrics['dataset']}: " + "; ".join(parts) + f" -> {written[0]}")


@app.command("serve")
def serve(
    host: Annotated[str | None, typer.Option("--host", help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port (default 7860).")] = None,
    share: Annotated[bool, typer.Option("--share/--no-share", help="Gradio share link (needs internet).")] = False,
    corpus: CorpusOpt = None,
    index: IndexOpt = None,
) -> None:
    """Serve the chat UI: builds the index first if it is missing or stale, loads the models once."""
    from ui.app import launch

    from .service import RagService, exposure_warning

    s = _settings(corpus=corpus, index=index, ui_host=host, ui_port=port)
    auth = (s.ui_username, s.ui_password) if s.ui_username and s.ui_password else None
    if (s.ui_username is None) != (s.ui_password is None):
        raise ConfigError("set both ui_username and ui_password (RAG_UI_USERNAME / RAG_UI_PASSWORD), or neither")
    if warning := exposure_warning(s.ui_host, auth is not None, share):
        _err_console().print(f"[bold red]WARNING:[/] {warning}", markup=True, highlight=False)
    with RichReporter() as rep:
        service = RagService.start(s, reporter=rep)
    _err_console().print(f"serving on http://{s.ui_host}:{s.ui_port} ({len(service.documents())} documents)")
    launch(service, s.ui_host, s.ui_port, share=share, auth=auth)


def main() -> None:
    import click

    try:
        app(standalone_mode=False)
    except RagError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)  # one line, never wrapped
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        sys.exit(130)
    except KeyboardInterrupt:
        _err_console().print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
