"""The Typer apps and the option types the commands share; settings from flags; the service door."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

app = typer.Typer(add_completion=False, no_args_is_help=True, help="policy-rag: cited answers from policy documents.")
index_app = typer.Typer(no_args_is_help=True, help="Build and inspect the index.")
config_app = typer.Typer(no_args_is_help=True, help="Show the settings in force.")
train_app = typer.Typer(no_args_is_help=True, help="Train the models the package ships.")
app.add_typer(index_app, name="index")
app.add_typer(config_app, name="config")
app.add_typer(train_app, name="train")

CorpusOpt = Annotated[Path | None, typer.Option("--corpus", help="Corpus folder (default: corpus/).")]
IndexOpt = Annotated[Path | None, typer.Option("--index", help="Index folder (default: index/).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
EngineOpt = Annotated[str, typer.Option("--engine", help="local | ray (pip install 'policy-rag[ray]').")]
AddressOpt = Annotated[str | None, typer.Option("--address", help="Ray cluster address (default: start a local Ray instance).")]
WorkersOpt = Annotated[int | None, typer.Option("--workers", min=1, help="Ray actors (default: half the CPU cores, at most 4).")]
FilterOpt = Annotated[list[str] | None, typer.Option("--filter", help="KEY=VALUE on source/title/doc_id/date (repeatable).")]
RerankerOpt = Annotated[str | None, typer.Option("--reranker", help="CrossEncoder (HF id or folder) to rerank hits; 'none' turns it off.")]
ExpandOpt = Annotated[int | None, typer.Option("--expand", help="Attach this many neighbouring chunks to each hit (context).")]
DedupeOpt = Annotated[bool | None, typer.Option("--dedupe/--no-dedupe", help="Drop hits overlapping a better hit.")]


def settings(**dotted: Any) -> Any:
    """Settings with the given flags on top ("retrieval.top_k": 8; None = flag not given)."""
    from rag.settings import load_settings

    return load_settings(**dotted)


def service(s: Any) -> Any:
    from rag.service import RagService

    return RagService(s)


def retrieval_flags(reranker: str | None, expand: int | None, dedupe: bool | None) -> dict[str, Any]:
    return {"retrieval.expand_neighbours": expand, "retrieval.dedupe": dedupe, "retrieval.reranker": reranker}
