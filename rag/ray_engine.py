"""Optional Ray engine (`pip install 'policy-rag[ray]'`): the same index builds and batch answers, run
on a Ray cluster, or on a local Ray instance started here when no address is given.

- Index build: Ray Data reads and chunks the changed files in parallel (tasks), then embeds the chunk
  texts with `map_batches` on an actor pool (each actor loads the embedder once; GPUs where the
  cluster has them). The driver merges documents, chunks and vectors into the same index format; the
  incremental rules (what changed, vector reuse, atomic publish) are the local engine's.
- Batch: questions are split across actors that each open the index and load the models once.

Workers import `rag`, so install policy-rag on every node of a remote cluster.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, IngestError

_started_here = False


def ensure_ray(address: str | None = None) -> Any:
    """Connect to the cluster at `address`, or start a local instance (tests and CI)."""
    global _started_here
    try:
        import ray
        import ray.data
    except ImportError:
        raise ConfigError("the Ray engine needs Ray: pip install 'policy-rag[ray]'") from None
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        if address:
            kwargs["address"] = address
        else:
            # logical CPUs above the physical count, so tasks and actors can share a small machine
            kwargs["num_cpus"] = max(4, 2 * (os.cpu_count() or 2))
        ray.init(**kwargs)
        _started_here = not address
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    return ray


def shutdown() -> None:
    global _started_here
    if _started_here:
        import ray

        ray.shutdown()
        _started_here = False


def _gpus_per_actor() -> float:
    import ray

    return 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0


# ---------------------------------------------------------------------------------------------
# Index build


def _load_and_chunk(row: dict[str, Any]) -> dict[str, Any]:
    """Ray task: one file -> its document row and chunks (as JSON), or the error."""
    from .chunk import ChunkConfig, chunk_document
    from .ingest import Limits, load_safely

    cfg = ChunkConfig(**json.loads(row["cfg"]))
    limits = Limits(**json.loads(row["limits"]))
    try:
        doc = load_safely(Path(row["path"]), Path(row["corpus"]), limits, meta=json.loads(row["meta"]) or None)
    except IngestError as e:
        return {"source": row["source"], "error": json.dumps([e.path, e.reason, e.kind]), "doc": "", "chunks": ""}
    chunks = chunk_document(doc, _token_spans(row["model"]), cfg)
    d = {"source": doc.source, "doc_id": doc.doc_id, "title": doc.title, "date": doc.date, "source_url": doc.source_url,
         "file_type": doc.file_type, "pages": doc.page_count, "has_pages": int(doc.has_pages), "sha256": doc.sha256}
    return {"source": row["source"], "error": "", "doc": json.dumps(d), "chunks": json.dumps([asdict(c) for c in chunks])}


_SPANS: dict[str, Any] = {}


def _token_spans(model: str) -> Any:
    """The embedder's tokenizer alone (no model weights, no torch), once per worker process."""
    if model not in _SPANS:
        from transformers import AutoTokenizer

        from .embed import TokenizerSpans, resolve_embedding_model

        _SPANS[model] = TokenizerSpans(AutoTokenizer.from_pretrained(resolve_embedding_model(model)))
    return _SPANS[model]


def _pool(workers: int | None) -> int:
    return workers or max(1, min(4, (os.cpu_count() or 2) // 2))


class _EmbedActor:
    def __init__(self, model: str, device: str, batch_size: int) -> None:
        from .embed import get_embedder

        self.emb = get_embedder(model, device, batch_size)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        texts = [str(t) for t in batch["text"]]
        vecs = self.emb.encode(texts)
        return {"text_hash": batch["text_hash"], "vector": [v.tobytes() for v in vecs]}


def load_and_chunk(files: Sequence[Any], corpus: Path, metadata: dict[str, dict[str, str]], limits: Any, cfg: Any,
                   settings: Any, workers: int | None = None) -> list[tuple[Any, dict[str, Any] | None, list[Any], IngestError | None]]:
    """Load and chunk `files` with Ray tasks: [(file state, document fields, chunks, error)] in input order."""
    import ray.data

    from .types import Chunk

    ensure_ray()
    rows = [{"path": str(fs.path), "source": fs.source, "corpus": str(corpus), "meta": json.dumps(metadata.get(fs.source, {})),
             "cfg": json.dumps(asdict(cfg)), "limits": json.dumps(asdict(limits)), "model": settings.embedding_model} for fs in files]
    if not rows:
        return []
    ds = ray.data.from_items(rows).map(_load_and_chunk, num_cpus=0.5, compute=ray.data.TaskPoolStrategy(size=_pool(workers)))
    parsed = {r["source"]: r for r in ds.take_all()}
    out: list[tuple[Any, dict[str, Any] | None, list[Any], IngestError | None]] = []
    for fs in files:
        r = parsed[fs.source]
        if r["error"]:
            path, reason, kind = json.loads(r["error"])
            out.append((fs, None, [], IngestError(path, reason, kind)))
        else:
            out.append((fs, json.loads(r["doc"]), [Chunk(**c) for c in json.loads(r["chunks"])], None))
    return out


def embed_texts(texts: dict[str, str], settings: Any, workers: int | None = None) -> dict[str, np.ndarray]:
    """{text_hash: text} -> {text_hash: vector}, embedded by an actor pool (one model load per actor)."""
    import ray.data

    ensure_ray()
    if not texts:
        return {}
    n = _pool(workers)
    gpus = _gpus_per_actor()
    ds = ray.data.from_items([{"text_hash": h, "text": t} for h, t in texts.items()])
    emb_ds = ds.map_batches(
        _EmbedActor,
        fn_constructor_kwargs={"model": settings.embedding_model, "device": settings.device if gpus else "cpu", "batch_size": settings.embed_batch_size},
        batch_size=256, compute=ray.data.ActorPoolStrategy(size=n), num_cpus=1, num_gpus=gpus,
    )
    vectors: dict[str, np.ndarray] = {}
    for b in emb_ds.iter_batches(batch_size=1024, batch_format="numpy"):
        for h, v in zip(b["text_hash"], b["vector"], strict=True):
            vectors[str(h)] = np.frombuffer(bytes(v), dtype=np.float32)
    return vectors


# ---------------------------------------------------------------------------------------------
# Batch answering


class _AnswerActor:
    def __init__(self, settings_json: str, mode: str | None, k: int | None, model: str | None, filters_json: str, batch_size: int) -> None:
        from .answer import Answerer
        from .retrieve import Retriever
        from .settings import Settings

        self.settings = Settings.model_validate_json(settings_json)
        self.answerer = Answerer(Retriever.open(self.settings), self.settings)
        self.kw = {"mode": mode, "k": k, "model": model, "filters": json.loads(filters_json) or None, "batch_size": batch_size}

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from .batch import BatchItem, error_record, result_record

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
    n = _pool(workers)
    ds = ray.data.from_items([{"id": it.id, "question": it.question, "extra": json.dumps(it.extra, ensure_ascii=False, default=str)} for it in items])
    out = ds.map_batches(
        _AnswerActor,
        fn_constructor_kwargs={"settings_json": settings.model_dump_json(), "mode": mode, "k": k, "model": model,
                               "filters_json": json.dumps(filters or {}), "batch_size": batch_size},
        batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=n), num_cpus=1, num_gpus=_gpus_per_actor(),
    )
    for b in out.iter_batches(batch_size=1, batch_format="numpy"):
        for rec in b["record"]:
            yield json.loads(str(rec))


def run_batch_ray(items: Sequence[Any], writer: Any, settings: Any, *, batch_size: int, filters: Any, mode: str | None,
                  k: int | None, model: str | None, workers: int | None = None,
                  on_progress: Callable[[int, int, int], None] | None = None) -> Any:
    """`rag batch --engine ray`: same records and resume rules as the local engine."""
    import time

    from .batch import BatchSummary, start_run

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
