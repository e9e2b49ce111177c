"""`rag search`, `rag ask`, `rag batch`, `rag eval`, `rag serve`: parse flags, call the service, print."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from rag.cli.app import (
    AddressOpt,
    CorpusOpt,
    DedupeOpt,
    EngineOpt,
    ExpandOpt,
    FilterOpt,
    IndexOpt,
    JsonOpt,
    RerankerOpt,
    WorkersOpt,
    app,
    retrieval_flags,
    service,
    settings,
)
from rag.cli.output import RichReporter, err_console, print_answer, print_hits
from rag.errors import ConfigError

KOpt = Annotated[int | None, typer.Option("-k", "--top-k", help="Passages to return.")]
ModeOpt = Annotated[str | None, typer.Option("--mode", help="Retrieval: dense | bm25 | hybrid (default hybrid).")]
AnswerModeOpt = Annotated[str | None, typer.Option("--answer-mode", help="generative | extractive | auto.")]
AsOfOpt = Annotated[str | None, typer.Option("--as-of", help="Answer from the documents in force on this date (YYYY-MM-DD).")]
IncludeRevokedOpt = Annotated[bool | None, typer.Option("--include-revoked/--exclude-revoked", help="With --as-of: keep revoked documents (marked).")]
ModelOpt = Annotated[str | None, typer.Option("--model", help="LLM: smollm2 (default), an HF id, a folder or a .gguf file.")]


@app.command("search")
def search(
    question: Annotated[str | None, typer.Argument(help="The question or search text.")] = None,
    k: KOpt = None,
    filter_: FilterOpt = None,
    queries: Annotated[Path | None, typer.Option("--queries", help="File of queries: one a line, or JSONL with question/filter.")] = None,
    mode: ModeOpt = None,
    reranker: RerankerOpt = None,
    expand: ExpandOpt = None,
    dedupe: DedupeOpt = None,
    as_of: AsOfOpt = None,
    include_revoked: IncludeRevokedOpt = None,
    index: IndexOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Search the index; every hit cites document, page and section."""
    if (question is None) == (queries is None):
        raise ConfigError("give a QUESTION or --queries FILE (one of them)")
    s = settings(index=index, **{"retrieval.top_k": k, "retrieval.mode": mode, "retrieval.as_of": as_of,
                                 "retrieval.include_revoked": include_revoked}, **retrieval_flags(reranker, expand, dedupe))
    svc = service(s)
    if queries is not None:
        t0 = time.perf_counter()
        n = 0
        for q, hits in svc.search_file(queries, s.retrieval.top_k, filter_):
            typer.echo(json.dumps({"question": q, "hits": [h.to_dict() for h in hits]}, ensure_ascii=False))
            n += 1
        err_console().print(f"searched {n} queries in {time.perf_counter() - t0:.2f} s")
        return
    assert question is not None
    if not question.strip():
        raise ConfigError("the question is empty")
    hits = svc.search([question], s.retrieval.top_k, filter_)[0]
    if as_json:
        typer.echo(json.dumps([h.to_dict() for h in hits], indent=1, ensure_ascii=False))
    else:
        print_hits(hits)


@app.command("ask")
def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    k: Annotated[int | None, typer.Option("-k", "--top-k", help="Passages to retrieve.")] = None,
    filter_: FilterOpt = None,
    model: ModelOpt = None,
    answer_mode: AnswerModeOpt = None,
    mode: ModeOpt = None,
    reranker: RerankerOpt = None,
    expand: ExpandOpt = None,
    dedupe: DedupeOpt = None,
    stream: Annotated[bool, typer.Option("--stream/--no-stream", help="Show the model's draft as it is generated (stderr).")] = True,
    as_of: AsOfOpt = None,
    include_revoked: IncludeRevokedOpt = None,
    index: IndexOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Answer a question from the documents, citing passages; refuse when they don't say."""
    s = settings(index=index, **{"retrieval.top_k": k, "llm.model": model, "answer.mode": answer_mode, "retrieval.mode": mode,
                                 "retrieval.as_of": as_of, "retrieval.include_revoked": include_revoked},
                 **retrieval_flags(reranker, expand, dedupe))
    on_token = None
    if stream and not as_json and sys.stderr.isatty():
        def on_token(piece: str) -> None:
            sys.stderr.write(piece)
            sys.stderr.flush()
    ans = service(s).ask(question, filters=filter_, on_token=on_token)
    if on_token is not None and "generate_s" in ans.timings:
        sys.stderr.write("\n\n")
    if as_json:
        typer.echo(json.dumps(ans.to_dict(), indent=1, ensure_ascii=False))
    else:
        print_answer(ans)
        for note in unstated_notes(ans):
            typer.echo(f"Status: {note['text']}")
            if note.get("citation"):
                c = note["citation"]
                typer.echo(f"  {c['title']}, p. {c['page']}: “{c['quote'][:300]}”")


def unstated_notes(ans: Any) -> list[dict[str, Any]]:
    """Status notes not already printed as a comparison's "How they relate" lines (same sentence quoted)."""
    def key(quote: str) -> str:
        return " ".join(quote.split())[:80]

    stated = {key(r.get("quote") or "") for r in (ans.comparison or {}).get("relations", [])}
    return [n for n in ans.status_notes if key((n.get("citation") or {}).get("quote") or "\0") not in stated]


@app.command("batch")
def batch(
    input_: Annotated[Path, typer.Argument(metavar="INPUT", help="Questions: .txt, .csv/.xlsx (question column), .jsonl.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Answers: .jsonl, .csv or .xlsx (format from the extension).")],
    resume: Annotated[bool, typer.Option("--resume", help="Skip ids already in OUTPUT.")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Questions retrieved and generated together.")] = 8,
    k: Annotated[int | None, typer.Option("-k", "--top-k", help="Passages per question.")] = None,
    filter_: Annotated[list[str] | None, typer.Option("--filter", help="KEY=VALUE (repeatable), for every question.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="LLM for generative/auto answers.")] = None,
    answer_mode: AnswerModeOpt = None,
    engine: EngineOpt = "local",
    address: AddressOpt = None,
    workers: WorkersOpt = None,
    as_of: AsOfOpt = None,
    include_revoked: IncludeRevokedOpt = None,
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

    s = settings(index=index, **{"retrieval.top_k": k, "llm.model": model, "answer.mode": answer_mode,
                                 "retrieval.as_of": as_of, "retrieval.include_revoked": include_revoked})
    console = err_console()
    with Progress(TextColumn("questions"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                  TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console) as prog:
        task = prog.add_task("batch", total=None, rate="")
        t0 = time.perf_counter()

        def on_start(todo: int, warnings: list[str]) -> None:
            for w in warnings[:50]:
                console.print(f"[yellow]note[/] {w}", markup=True)
            prog.update(task, total=todo)

        def on_progress(done: int, total: int, failed: int) -> None:
            rate = 60 * done / max(1e-9, time.perf_counter() - t0)
            prog.update(task, completed=done, rate=f"{rate:.1f}/min" + (f", {failed} failed" if failed else ""))

        summary = service(s).batch(input_, output, resume=resume, batch_size=batch_size, filters=filter_, engine=engine,
                                   address=address, workers=workers, on_start=on_start, on_progress=on_progress)
    typer.echo(summary.line() + f" -> {output}")


@app.command("eval")
def eval_cmd(
    dataset: Annotated[Path, typer.Argument(help="SQuAD json (e.g. PolicyQA), the ObliQA folder, or our JSONL.")],
    fmt: Annotated[str | None, typer.Option("--format", help="squad | obliqa | jsonl (guessed from the path).")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="Evaluate a deterministic sample of N questions.")] = None,
    mode: Annotated[list[str] | None, typer.Option("--mode", help="Retrieval mode(s): dense, bm25, hybrid, each optionally +rerank "
                                                   "(e.g. hybrid+rerank, needs a reranker) (repeatable).")] = None,
    word_budget: Annotated[list[int] | None, typer.Option("--word-budget", help="Also report recall within N words of retrieved "
                                                          "text, read in rank order (repeatable; default 400 and 600).")] = None,
    reranker: RerankerOpt = None,
    answers: Annotated[bool, typer.Option("--answers/--no-answers", help="Also generate and score answers (slow on CPU).")] = False,
    answer_mode: Annotated[list[str] | None, typer.Option("--answer-mode", help="Answer mode(s) with --answers (repeatable).")] = None,
    out: Annotated[Path | None, typer.Option("-o", "--out", help="Report folder (default reports/eval-NAME).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Sampling seed.")] = 0,
    split: Annotated[str | None, typer.Option("--split", help="Only the questions of this split (e.g. calibrate or report in eval/paraphrased.jsonl).")] = None,
    index: IndexOpt = None,
) -> None:
    """Measure retrieval, answers, citations and refusals on a question set; write report.md, JSON and plots."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    s = settings(index=index, **{"retrieval.reranker": reranker})
    modes = mode or ["hybrid"]
    for m in modes:
        base = m.removesuffix("+rerank")
        if base not in ("dense", "bm25", "hybrid"):
            raise ConfigError(f"unknown --mode '{m}' (use dense, bm25 or hybrid, each optionally +rerank)")
        if base != m and not s.retrieval.reranker:
            raise ConfigError(f"--mode {m} needs a reranker: set retrieval.reranker to a CrossEncoder (HF id or folder) "
                              "in rag.toml ([retrieval] reranker = ...), RAG_RETRIEVAL__RERANKER, or pass --reranker PATH")
    amodes = (answer_mode or [s.answer.mode]) if answers else []
    budgets = word_budget or [400, 600]
    if min(budgets) < 1:
        raise ConfigError(f"--word-budget must be at least 1 word (got {min(budgets)})")
    out = out or Path("reports") / f"eval-{dataset.stem}"
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err_console()) as prog:
        task = prog.add_task("evaluating", total=None)

        def progress(n: int, desc: str) -> None:
            prog.update(task, advance=n, description=desc)

        with RichReporter(quiet=True) as rep:
            written, metrics = service(s).evaluate(dataset, fmt, modes=modes, answer_modes=amodes, limit=limit, split=split, seed=seed,
                                                   out=out, reporter=rep, progress=progress, word_budgets=budgets)
    typer.echo(f"eval {metrics['dataset']}: " + "; ".join(_eval_summary(metrics)) + f" -> {written[0]}")


def _eval_summary(metrics: dict[str, Any]) -> list[str]:
    """One clause a mode: `hybrid: R@5 0.810 R@10 0.867 R@10w400 0.770 MRR 0.521 14 ms/q`."""
    def f(v: float | None) -> float:
        return float("nan") if v is None else v

    parts = []
    for m, v in metrics["retrieval"].items():
        budget = "".join(f" R@10w{b} {v[f'recall@10w{b}']:.3f}" for b in metrics.get("word_budgets", []) if f"recall@10w{b}" in v)
        ms = f" {v['ms_per_question']:.0f} ms/q" if "ms_per_question" in v else ""
        if "rerank_ms_per_question" in v:
            ms += f" (rerank {v['rerank_ms_per_question']:.0f})"
        parts.append(f"{m}: R@5 {v['recall@5']:.3f} R@10 {v['recall@10']:.3f}{budget} MRR {v['mrr']:.3f}{ms}")
    parts += [f"{m}: F1 {f(v['f1']):.3f} refusal acc {f(v['refusal_accuracy']):.2f}" for m, v in metrics["answers"].items()]
    return parts


@app.command("serve")
def serve(
    host: Annotated[str | None, typer.Option("--host", help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port (default 7860).")] = None,
    share: Annotated[bool, typer.Option("--share/--no-share", help="Gradio share link (needs internet).")] = False,
    corpus: CorpusOpt = None,
    as_of: AsOfOpt = None,
    include_revoked: IncludeRevokedOpt = None,
    index: IndexOpt = None,
) -> None:
    """Serve the chat UI: builds the index first if it is missing or stale, loads the models once."""
    from rag.service import RagService, exposure_warning

    s = settings(corpus=corpus, index=index, **{"ui.host": host, "ui.port": port, "retrieval.as_of": as_of,
                                                 "retrieval.include_revoked": include_revoked})
    auth = (s.ui.username, s.ui.password) if s.ui.username and s.ui.password else None
    if (s.ui.username is None) != (s.ui.password is None):
        raise ConfigError("set both ui.username and ui.password (RAG_UI__USERNAME / RAG_UI__PASSWORD), or neither")
    launch = _web_face()
    if warning := exposure_warning(s.ui.host, auth is not None, share):
        err_console().print(f"[bold red]WARNING:[/] {warning}", markup=True, highlight=False)
    with RichReporter() as rep:
        svc = RagService.start(s, reporter=rep)
    err_console().print(f"serving on http://{s.ui.host}:{s.ui.port} ({len(svc.docs())} documents)")
    launch(svc, s.ui.host, s.ui.port, share=share, auth=auth)


def _web_face() -> Any:
    """The web UI registers itself as the `web` face (entry point group `policy_rag.faces`), like a plugin:
    the library never imports its faces."""
    from importlib.metadata import entry_points

    found = [ep for ep in entry_points(group="policy_rag.faces") if ep.name == "web"]
    if not found:
        raise ConfigError("no web UI installed (the `ui` package registers it); reinstall with `bash install.sh`")
    return found[0].load()
