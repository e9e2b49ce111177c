"""`rag train scorer`: parse flags, call the service, show progress, print a one-line summary."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from rag.cli.app import service, settings, train_app
from rag.cli.output import err_console

EVAL = Path("..") / "shared" / "eval"  # the development sets' usual place beside the checkout


@train_app.command("scorer")
def train_scorer(
    policyqa: Annotated[Path, typer.Option("--policyqa", help="PolicyQA dev.json (SQuAD format).")] = EVAL / "policyqa" / "dev.json",
    obliqa: Annotated[Path, typer.Option("--obliqa", help="ObliQA folder (ObliQA_dev.json + StructuredRegulatoryDocuments.zip).")] = EVAL / "obliqa",
    out: Annotated[Path, typer.Option("-o", "--out", help="Model folder to write (prepared data cached in OUT/data).")] = Path("models") / "evidence-scorer",
    seed: Annotated[int, typer.Option("--seed", help="Split and sampling seed (13: the shipped model's).")] = 13,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Training epochs (the recipe: 4).")] = 4,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda. The full recipe takes ~4 min on an H100, 8-9 h on 2 CPU cores.")] = "auto",
    max_minutes: Annotated[float | None, typer.Option("--max-minutes", min=0.1, help="Stop training after this wall time (for a CPU run); then evaluate and save.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=3, help="Questions per set, in turn from train/validation/test documents (quick runs).")] = None,
    pseudo: Annotated[int, typer.Option("--pseudo", min=0, help="Inverse-cloze pseudo-query groups from ObliQA training documents (0: none).")] = 6000,
    max_length: Annotated[int, typer.Option("--max-length", min=16, help="Tokens per (question, text) pair (the recipe: 256).")] = 256,
    base: Annotated[Path | None, typer.Option("--base", help="Start from this folder: a bi-encoder (default: the shipped all-MiniLM-L6-v2) or a trained scorer to train further.")] = None,
    null_frac: Annotated[float, typer.Option("--null-frac", min=0.0, max=0.9, help="Share of groups shown without their answer, to be scored below the fixed 'no answer' level (0: the ranking-only recipe).")] = 0.0,
    swap: Annotated[int, typer.Option("--swap", min=0, help="Near-miss no-answer groups: a question's key word swapped for another question's (0: none).")] = 0,
    lr: Annotated[float, typer.Option("--lr", min=1e-7, max=1e-2, help="Encoder learning rate (the recipe: 7e-5).")] = 7e-5,
    reader: Annotated[Path | None, typer.Option("--reader", help="A reader-written question set (eval/paraphrased.jsonl format, topic_doc on unanswerables): a third set, split by document.")] = None,
    reader_index: Annotated[Path | None, typer.Option("--reader-index", help="The index of the --reader set's documents (rag index build --corpus DOCS --index DIR).")] = None,
    reader_repeat: Annotated[int, typer.Option("--reader-repeat", min=1, help="Show each --reader group this many times per epoch (a few hundred in-domain groups beside ~8.5k development-set groups).")] = 1,
    batch_groups: Annotated[int, typer.Option("--batch-groups", min=1, help="Groups per step (the recipe: 32, i.e. 256 pairs; a CPU with 24 GiB needs 8 or fewer at --max-length 256).")] = 32,
    max_groups: Annotated[int | None, typer.Option("--max-groups", min=1, help="Sample this many PolicyQA/ObliQA/pseudo groups (a --reader set's groups are all kept).")] = None,
) -> None:
    """Train the evidence scorer (cross-encoder) on PolicyQA + ObliQA dev, split by document; evaluate on held-out documents; save."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err_console()) as prog:
        task = prog.add_task("preparing data", total=None)

        def progress(stage: str, done: int, total: int | None) -> None:
            prog.update(task, description=stage, completed=done, total=total)

        info = service(settings()).train_scorer(policyqa, obliqa, out, seed=seed, epochs=epochs, device=device, max_minutes=max_minutes,
                                                limit=limit, pseudo=pseudo, max_length=max_length, progress=progress,
                                                base=str(base) if base else None, null_frac=null_frac, swap=swap, lr=lr,
                                                reader=reader, reader_index=reader_index, max_groups=max_groups, reader_repeat=reader_repeat,
                                                batch_groups=batch_groups)
    typer.echo(summary(info, out))


def summary(info: dict[str, Any], out: Path) -> str:
    """`scorer: 4 epochs, 272,544 pairs in 151 s on cuda; test (hybrid -> scorer) policyqa recall@5 0.505 -> 0.620, ... -> DIR`."""
    t = info["train"]
    parts = [f"{name} {m} {info['test'][name]['hybrid'][m]:.3f} -> {info['test'][name]['fused'][m]:.3f}"
             for name, metrics in info["headline"].items() for m in metrics]
    return (f"scorer: {len(t['history'])} epochs, {t['pairs']:,} pairs in {t['train_s']:.0f} s on {info['device']}; "
            f"test (hybrid -> scorer) {', '.join(parts)} -> {out}")
