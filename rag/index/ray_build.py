"""Optional Ray engine for index builds (`pip install 'policy-rag[ray]'`), on a Ray cluster or a local
Ray instance started here when no address is given.

Ray Data reads and chunks the changed files in parallel (tasks), then embeds the chunk texts with
`map_batches` on an actor pool (each actor loads the embedder once; GPUs where the cluster has them).
The driver merges documents, chunks and vectors into the same index format; the incremental rules
(what changed, vector reuse, atomic publish) are the local engine's.

Workers import `rag`, so install policy-rag on every node of a remote cluster.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import ConfigError, IngestError

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


def gpus_per_actor() -> float:
    import ray

    return 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0


# ---------------------------------------------------------------------------------------------
# Index build


def _load_and_chunk(row: dict[str, Any]) -> dict[str, Any]:
    """Ray task: one file -> its document row and chunks (as JSON), or the error."""
    from rag.index.chunk import ChunkConfig, chunk_document
    from rag.ingest.files import Limits
    from rag.ingest.sandbox import load_safely

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

        from rag.index.embed import TokenizerSpans, resolve_embedding_model

        _SPANS[model] = TokenizerSpans(AutoTokenizer.from_pretrained(resolve_embedding_model(model)))
    return _SPANS[model]


def pool_size(workers: int | None) -> int:
    return workers or max(1, min(4, (os.cpu_count() or 2) // 2))


class _EmbedActor:
    def __init__(self, model: str, device: str, batch_size: int, backend: str = "auto", cache_dir: str | None = None,
                 quantize: bool = False) -> None:
        from rag.index.embed import get_embedder

        # the settings' backend and quantization, as a local build uses: the manifest records those vectors' kind
        self.emb = get_embedder(model, device, batch_size, backend, Path(cache_dir) if cache_dir else None, quantize)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        texts = [str(t) for t in batch["text"]]
        vecs = self.emb.encode(texts)
        return {"text_hash": batch["text_hash"], "vector": [v.tobytes() for v in vecs]}


def load_and_chunk(files: Sequence[Any], corpus: Path, metadata: dict[str, dict[str, str]], limits: Any, cfg: Any,
                   settings: Any, workers: int | None = None) -> list[tuple[Any, dict[str, Any] | None, list[Any], IngestError | None]]:
    """Load and chunk `files` with Ray tasks: [(file state, document fields, chunks, error)] in input order."""
    import ray.data

    from rag.types import Chunk

    ensure_ray()
    rows = [{"path": str(fs.path), "source": fs.source, "corpus": str(corpus), "meta": json.dumps(metadata.get(fs.source, {})),
             "cfg": json.dumps(asdict(cfg)), "limits": json.dumps(asdict(limits)), "model": settings.embedding.model} for fs in files]
    if not rows:
        return []
    ds = ray.data.from_items(rows).map(_load_and_chunk, num_cpus=0.5, compute=ray.data.TaskPoolStrategy(size=pool_size(workers)))
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
    n = pool_size(workers)
    gpus = gpus_per_actor()
    ds = ray.data.from_items([{"text_hash": h, "text": t} for h, t in texts.items()])
    emb_ds = ds.map_batches(
        _EmbedActor,
        fn_constructor_kwargs={"model": settings.embedding.model, "device": settings.embedding.device if gpus else "cpu",
                               "batch_size": settings.embedding.batch_size, "backend": settings.embedding.backend,
                               "cache_dir": str(settings.cache_dir), "quantize": settings.embedding.quantize},
        batch_size=256, compute=ray.data.ActorPoolStrategy(size=n), num_cpus=1, num_gpus=gpus,
    )
    vectors: dict[str, np.ndarray] = {}
    for b in emb_ds.iter_batches(batch_size=1024, batch_format="numpy"):
        for h, v in zip(b["text_hash"], b["vector"], strict=True):
            vectors[str(h)] = np.frombuffer(bytes(v), dtype=np.float32)
    return vectors
