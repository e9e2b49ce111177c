"""`rag index build|status|check`, `rag docs`, `rag config show`."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from rag.cli.app import (
    AddressOpt,
    CorpusOpt,
    EngineOpt,
    IndexOpt,
    JsonOpt,
    WorkersOpt,
    app,
    config_app,
    index_app,
    service,
    settings,
)
from rag.cli.output import RichReporter, print_status


@index_app.command("build")
def index_build(
    corpus: CorpusOpt = None,
    index: IndexOpt = None,
    full: Annotated[bool, typer.Option("--full", help="Rebuild from scratch.")] = False,
    embedding_model: Annotated[str | None, typer.Option("--embedding-model", help="HF id or local folder.")] = None,
    faiss_index: Annotated[str | None, typer.Option("--faiss", help="auto | flat | hnsw | ivf")] = None,
    engine: EngineOpt = "local",
    address: AddressOpt = None,
    workers: WorkersOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Index new and changed files of the corpus; drop removed ones (atomic)."""
    s = settings(corpus=corpus, index=index, **{"embedding.model": embedding_model, "faiss.kind": faiss_index})
    with RichReporter(quiet=quiet or as_json) as rep:
        result = service(s).build(full=full, reporter=rep, engine=engine, address=address, workers=workers)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=1))
    elif not result.changed and result.generation and not result.kept and not result.policy_synced:
        typer.echo("index is up to date. " + result.summary())
    else:
        typer.echo(result.summary())


@index_app.command("status")
def index_status(corpus: CorpusOpt = None, index: IndexOpt = None, as_json: JsonOpt = False) -> None:
    """Documents, chunks, model, last build, and files changed since."""
    info = service(settings(corpus=corpus, index=index)).status()
    if as_json:
        typer.echo(json.dumps(info, indent=1))
    else:
        print_status(info)
    if info["damaged"]:  # a damaged index is never reported as up to date
        raise typer.Exit(5)


@index_app.command("check")
def index_check(index: IndexOpt = None, as_json: JsonOpt = False) -> None:
    """Consistency check: FAISS ids == SQLite rows == manifest == BM25 (exit code 5 when not)."""
    r = service(settings(index=index)).check()
    if as_json:
        typer.echo(json.dumps({k: r[k] for k in ("ok", "problems", "chunks", "generation")}))
    elif r["problems"]:
        for p in r["problems"]:
            typer.echo(f"problem: {p}")
    else:
        typer.echo(f"ok: {r['generation']}, {r['chunks']} chunks, {r['documents']} documents consistent")
    if r["problems"]:
        raise typer.Exit(5)


@app.command("docs")
def docs(index: IndexOpt = None, as_json: JsonOpt = False,
         as_of: Annotated[str | None, typer.Option("--as-of", help="Status on this date (YYYY-MM-DD; default today).")] = None) -> None:
    """The indexed documents: identifiers, kind, title, date, status, and the relations both ways."""
    rows = service(settings(index=index)).policy_docs(as_of)
    if as_json:
        typer.echo(json.dumps(rows, indent=1, ensure_ascii=False))
        return
    for d in rows:
        st = d["status"]
        status = st["status"] + (f" by {st['by']} on {st['on']}" if st.get("by") else "")
        typer.echo(f"{d['date'] or '—':10}  {d['kind'] or '':22}  {', '.join(d['identifiers']) or '—':22}  {status}")
        typer.echo(f"{'':12}{d['title'][:90]}")
        typer.echo(f"{'':12}{d['source']}")
        for r in d["relations"]:
            where = "" if r["in_corpus"] else " (not in the corpus)"
            typer.echo(f"{'':14}{r['type']} {r.get('subject', '') + ' -> ' if r.get('subject') else ''}{r['target']}{where}, p. {r['page']}: “{r['sentence'][:110]}”")
        for r in d["related_by"]:
            typer.echo(f"{'':14}{r['type']} by {r['by']} ({r['date']}), p. {r['page']}: “{r['sentence'][:110]}”")
    typer.echo(f"{len(rows)} documents")


@config_app.command("show")
def config_show(
    as_json: JsonOpt = False,
    describe_all: Annotated[bool, typer.Option("--describe/--no-describe", help="Print each setting's description.")] = True,
) -> None:
    """Every setting: its value, where it came from (default, rag.toml, env, flag), its env variable."""
    from rag.settings import describe

    rows = [{**r, "value": "***"} if r["key"] == "ui.password" and r["value"] else r for r in describe(settings())]
    if as_json:
        typer.echo(json.dumps(rows, indent=1, default=str))
        return
    width = max(len(r["key"]) for r in rows)
    for r in rows:
        typer.echo(f"{r['key']:<{width}}  {r['value']!s:<28} [{r['origin']}]  {r['env']}")
        if describe_all and r["description"]:
            typer.echo(f"{'':<{width}}  {r['description']}")
