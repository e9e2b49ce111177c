"""Batch answering on Ray (`rag batch --engine ray`): questions are split across actors that each open
the index and load the models once; records and resume rules are the local engine's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from rag.index.ray_build import ensure_ray, gpus_per_actor, pool_size

# ---------------------------------------------------------------------------------------------
# Batch answering


class _AnswerActor:
    def __init__(self, settings_json: str, mode: str | None, k: int | None, model: str | None, filters_json: str, batch_size: int) -> None:
        from rag.answer.answerer import Answerer
        from rag.retrieve.retriever import Retriever
        from rag.settings import Settings

        self.settings = Settings.model_validate_json(settings_json)
        self.answerer = Answerer(Retriever.open(self.settings), self.settings)
        self.kw = {"mode": mode, "k": k, "model": model, "filters": json.loads(filters_json) or None, "batch_size": batch_size}

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from rag.jobs.batch import BatchItem, error_record, result_record

        items = [BatchItem(id=str(i), question=str(q), extra=json.loads(e)) for i, q, e in zip(batch["id"], batch["question"], batch["extra"], strict=True)]
        answers = self.answerer.ask_many([it.question for it in items], **self.kw)
        recs = []
        for it, a in zip(items, answers, strict=True):
            recs.append(json.dumps(error_record(it, f"{type(a).__name__}: {a}") if isinstance(a, Exception) else result_record(it, a), ensure_ascii=False))
        return {"record": recs}


def answer_items(items: Sequence[Any], settings: Any, *, mode: str | None, k: int | None, model: str | None, filters: Any,
                 batch_size: int, workers: int | None = None) -> Iterator[dict[str, Any]]:
    """Result records for `items`, streamed back as actors finish them (order not guaranteed)."""
    import ray.data

    ensure_ray()
    if not items:
        return
    n = pool_size(workers)
    ds = ray.data.from_items([{"id": it.id, "question": it.question, "extra": json.dumps(it.extra, ensure_ascii=False, default=str)} for it in items])
    out = ds.map_batches(
        _AnswerActor,
        fn_constructor_kwargs={"settings_json": settings.model_dump_json(), "mode": mode, "k": k, "model": model,
                               "filters_json": json.dumps(filters or {}), "batch_size": batch_size},
        batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=n), num_cpus=1, num_gpus=gpus_per_actor(),
    )
    for b in out.iter_batches(batch_size=1, batch_format="numpy"):
        for rec in b["record"]:
            yield json.loads(str(rec))


def run_batch_ray(items: Sequence[Any], writer: Any, settings: Any, *, batch_size: int, filters: Any, mode: str | None,
                  k: int | None, model: str | None, workers: int | None = None,
                  on_progress: Callable[[int, int, int], None] | None = None) -> Any:
    """`rag batch --engine ray`: same records and resume rules as the local engine."""
    import time

    from rag.jobs.batch import BatchSummary, start_run

    summary = BatchSummary()
    t0 = time.perf_counter()
    todo = start_run(items, writer, summary)
    for done, rec in enumerate(answer_items(todo, settings, mode=mode, k=k, model=model, filters=filters, batch_size=batch_size, workers=workers), 1):
        if rec.get("error"):
            summary.failed += 1
        elif rec.get("refused"):
            summary.refused += 1
        else:
            summary.answered += 1
        writer.append(rec)
        if on_progress:
            on_progress(done, len(todo), summary.failed)
    writer.finish()
    summary.seconds = time.perf_counter() - t0
    return summary
