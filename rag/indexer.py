"""`rag index build`: compare the corpus with the manifest, process only what changed, publish.

Streaming: files are loaded one at a time and chunks are embedded in bounded batches, so a build
never holds the whole corpus's text. Unchanged chunks (same embed text) reuse their vectors.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .chunk import ChunkConfig, chunk_document
from .errors import IngestError, RagError
from .faults import checkpoint
from .ingest import (
    DEFAULT_IGNORE,
    Limits,
    discover,
    file_sha256,
    load_corpus_metadata,
    load_safely,
    relative_source,
)
from .settings import Settings
from .store import (
    FORMAT_VERSION,
    GenerationWriter,
    build_lock,
    check_compatible,
    current_generation,
    faiss_ids,
    new_faiss_index,
    prune_generations,
    read_manifest,
)
from .types import Chunk, Document


class BuildReporter(Protocol):
    """Progress hooks; the CLI draws bars from them, tests may record them."""

    def start(self, n_files: int) -> None: ...
    def file_done(self, source: str, n_chunks: int) -> None: ...
    def file_skipped(self, error: IngestError) -> None: ...
    def embedded(self, n_chunks: int) -> None: ...
    def stage(self, text: str) -> None: ...


class NullReporter:
    def start(self, n_files: int) -> None:
        pass

    def file_done(self, source: str, n_chunks: int) -> None:
        pass

    def file_skipped(self, error: IngestError) -> None:
        pass

    def embedded(self, n_chunks: int) -> None:
        pass

    def stage(self, text: str) -> None:
        pass


@dataclass
class BuildResult:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    skipped: list[IngestError] = field(default_factory=list)
    chunks_embedded: int = 0
    chunks_reused: int = 0
    chunks_total: int = 0
    documents_total: int = 0
    seconds: float = 0.0
    embed_seconds: float = 0.0  # inside the embedder's encode
    load_seconds: float = 0.0  # loading the embedding model (0 when it was already loaded)
    generation: str | None = None
    index_id: str | None = None

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)

    def summary(self) -> str:
        skipped = f", {len(self.skipped)} skipped" if self.skipped else ", 0 skipped"
        return (
            f"index: {len(self.added)} added, {len(self.updated)} updated, {len(self.removed)} removed, "
            f"{self.unchanged} unchanged{skipped} files; {self.chunks_embedded} chunks embedded"
            f" ({self.chunks_reused} reused); {self.documents_total} documents, {self.chunks_total} chunks in index; "
            f"{self.seconds:.1f} s"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "updated": self.updated,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "skipped": [
                {"source": e.path, "reason": e.reason, "kind": e.kind} for e in self.skipped
            ],
            "chunks_embedded": self.chunks_embedded,
            "chunks_reused": self.chunks_reused,
            "chunks_total": self.chunks_total,
            "documents_total": self.documents_total,
            "seconds": round(self.seconds, 3),
            "generation": self.generation,
            "index_id": self.index_id,
        }


def limits_from(settings: Settings) -> Limits:
    return Limits(max_bytes=int(settings.max_file_mb * 1024 * 1024), max_pages=settings.max_pages,
                  timeout_s=settings.load_timeout_s, max_memory_mb=settings.max_load_memory_mb,
                  isolate=settings.isolate_loaders)


@dataclass(frozen=True)
class FileState:
    path: Path
    source: str
    size: int
    mtime_ns: int


def plan_changes(
    files: list[Path],
    root: Path,
    manifest: dict[str, Any] | None,
    full: bool,
    metadata: dict[str, dict[str, str]] | None = None,
) -> tuple[list[FileState], list[FileState], list[str], int]:
    """(to_add, to_update, removed_sources, n_unchanged). Hashes only files whose size/mtime moved.

    A file whose metadata.yaml entry changed counts as updated.
    """
    metadata = metadata if metadata is not None else load_corpus_metadata(root)
    docs = {} if (full or manifest is None) else manifest.get("documents", {})
    add, update = [], []
    unchanged = 0
    seen = set()
    for p in files:
        st = p.stat()
        fs = FileState(p, relative_source(p, root), st.st_size, st.st_mtime_ns)
        seen.add(fs.source)
        old = docs.get(fs.source)
        if old is None:
            add.append(fs)
        elif (old.get("meta") or {}) != metadata.get(fs.source, {}):
            update.append(fs)
        elif old.get("size") == fs.size and old.get("mtime_ns") == fs.mtime_ns:
            unchanged += 1
        elif old.get("size") == fs.size and old.get("sha256") == file_sha256(p):
            unchanged += 1  # touched, same bytes
        else:
            update.append(fs)
    removed = sorted(s for s in docs if s not in seen)
    return add, update, removed, unchanged


def chunk_config_for(settings: Settings, max_seq_length: int, special_tokens: int) -> ChunkConfig:
    return ChunkConfig(
        chunk_tokens=settings.chunk_tokens,
        overlap=settings.chunk_overlap,
        max_header_tokens=settings.max_header_tokens,
        max_seq_length=max_seq_length,
        special_tokens=special_tokens,
    )


def build_index(
    settings: Settings,
    *,
    full: bool = False,
    reporter: BuildReporter | None = None,
    embedder: Any = None,
    flush_chunks: int = 2048,
    engine: str = "local",
    workers: int | None = None,
) -> BuildResult:
    """Bring the index at settings.index up to date with the corpus at settings.corpus."""
    rep = reporter or NullReporter()
    t0 = time.perf_counter()
    corpus = Path(settings.corpus)
    index_dir = Path(settings.index)
    if not corpus.is_dir():
        raise RagError(f"corpus folder {corpus} does not exist")
    result = BuildResult()
    with build_lock(index_dir):
        checkpoint("build.locked")
        manifest = read_manifest(index_dir) if not full else None
        if manifest is not None:
            check_compatible(manifest, settings.embedding_model, settings.chunk_config(), index_dir)
        files, skipped = discover(corpus, DEFAULT_IGNORE)
        for e in skipped:
            rep.file_skipped(e)
        result.skipped.extend(skipped)
        metadata = load_corpus_metadata(corpus)
        add, update, removed, unchanged = plan_changes(files, corpus, manifest, full, metadata)
        result.unchanged = unchanged
        faiss_kind_changed = (
            manifest is not None and manifest.get("faiss", {}).get("type") != settings.faiss_index
        )
        if not (add or update or removed or faiss_kind_changed) and manifest is not None:
            prune_generations(index_dir)  # what a build killed after publishing left behind
            result.documents_total = len(manifest.get("documents", {}))
            result.chunks_total = manifest.get("counts", {}).get("chunks", 0)
            result.generation = current_generation(index_dir).name  # type: ignore[union-attr]
            result.index_id = manifest.get("index_id")
            result.seconds = time.perf_counter() - t0
            return result

        from .embed import get_embedder

        emb = embedder or get_embedder(
            settings.embedding_model, settings.device, settings.embed_batch_size
        )
        cfg = chunk_config_for(settings, emb.max_seq_length, emb.special_tokens)
        tokenize = emb.token_spans()
        base = None if (full or manifest is None) else current_generation(index_dir)
        writer = GenerationWriter(index_dir, base)
        checkpoint("build.writer_ready")
        try:
            old_ids = writer.delete_documents(removed)
            # the vectors of documents about to be replaced, keyed by text hash
            cache = writer.take_vectors_of([f.source for f in update])
            old_ids = np.concatenate([old_ids, writer.delete_documents([f.source for f in update])])
            result.removed = removed
            checkpoint("build.deleted")

            import faiss

            rebuild = (
                base is None
                or settings.faiss_index == "ivf"
                or faiss_kind_changed
                or (settings.faiss_index == "hnsw" and len(old_ids) > 0)
            )
            if rebuild:
                index = None
            else:
                index = faiss.read_index(str(base / "faiss.index"))  # type: ignore[operator]
                if len(old_ids):
                    index.remove_ids(old_ids)

            pending: list[Chunk] = []
            fresh: set[str] = set()

            def flush() -> None:
                nonlocal index
                if not pending:
                    return
                hashes = [c.text_hash for c in pending]
                known = dict(cache)
                missing = [h for h in hashes if h not in known]
                if missing and base is not None:
                    known.update(writer.lookup_vectors(missing))
                todo = [i for i, h in enumerate(hashes) if h not in known]
                vecs = np.zeros((len(pending), emb.dimension), dtype=np.float32)
                if todo:
                    t_enc = time.perf_counter()
                    new = emb.encode([pending[i].embed_text for i in todo])
                    result.embed_seconds += time.perf_counter() - t_enc
                    vecs[todo] = new
                    rep.embedded(len(todo))
                for i, h in enumerate(hashes):
                    if h in known:
                        vecs[i] = known[h]
                n_fresh = sum(1 for h in hashes if h in fresh)  # embedded by the Ray engine for this build
                result.chunks_embedded += len(todo) + n_fresh
                result.chunks_reused += len(pending) - len(todo) - n_fresh
                checkpoint("build.embedded")
                ids = writer.add_chunks(pending, vecs)
                checkpoint("build.chunks_written")
                if not rebuild:
                    if index is None:
                        index = new_faiss_index(
                            settings.faiss_index, emb.dimension, hnsw_m=settings.hnsw_m
                        )
                    index.add_with_ids(vecs, ids)
                pending.clear()

            limits = limits_from(settings)
            rep.start(len(add) + len(update))
            states = [("add", fs) for fs in add] + [("update", fs) for fs in update]
            for kind, fs, doc_fields, chunks, err in _process(states, corpus, metadata, limits, cfg, tokenize, settings, engine, workers, cache, writer, fresh):
                if err is not None:
                    result.skipped.append(err)
                    rep.file_skipped(err)
                    continue
                if not chunks:
                    e = IngestError(fs.source, "no text to index after cleaning", "empty")
                    result.skipped.append(e)
                    rep.file_skipped(e)
                    continue
                writer.add_document(_doc_row(doc_fields, fs, len(chunks)))
                checkpoint("build.document_loaded")
                pending.extend(chunks)
                (result.added if kind == "add" else result.updated).append(fs.source)
                rep.file_done(fs.source, len(chunks))
                if len(pending) >= flush_chunks:
                    flush()
            flush()

            if rebuild:
                rep.stage(f"building {settings.faiss_index} FAISS index")
                index = _rebuild_faiss(writer, settings, emb.dimension)
                checkpoint("build.faiss_rebuilt")
            elif index is None:
                index = new_faiss_index(settings.faiss_index, emb.dimension, hnsw_m=settings.hnsw_m)

            docs = writer.documents_rows()
            n_chunks = writer.count_chunks()
            if index.ntotal != n_chunks or (
                n_chunks
                and set(faiss_ids(index).tolist())
                != {c for (c,) in writer.db.execute("SELECT faiss_id FROM chunks")}
            ):
                raise RagError(
                    f"internal error: FAISS holds {index.ntotal} vectors for {n_chunks} chunks; nothing was published"
                )
            built_at = datetime.now(UTC).isoformat(timespec="seconds")
            new_manifest = {
                "format_version": FORMAT_VERSION,
                "index_id": uuid.uuid4().hex[:16],
                "built_at": built_at,
                "build_seconds": None,
                "embedding": {
                    "model": settings.embedding_model,
                    "dimension": emb.dimension,
                    "max_seq_length": emb.max_seq_length,
                    "normalized": True,
                    "metric": "inner_product",
                },
                "chunking": settings.chunk_config(),
                "faiss": {"type": settings.faiss_index, "hnsw_m": settings.hnsw_m},
                "corpus": str(corpus.resolve()),
                "counts": {"documents": len(docs), "chunks": n_chunks},
                "documents": {
                    src: {
                        "doc_id": d["doc_id"],
                        "sha256": d["sha256"],
                        "size": d["size"],
                        "mtime_ns": d["mtime_ns"],
                        "title": d["title"],
                        "date": d["date"],
                        "pages": d["pages"],
                        "chunks": d["n_chunks"],
                        "file_type": d["file_type"],
                        **({"meta": metadata[src]} if metadata.get(src) else {}),
                    }
                    for src, d in docs.items()
                },
                "last_build": None,
            }
            result.seconds = time.perf_counter() - t0
            result.documents_total = len(docs)
            result.chunks_total = n_chunks
            new_manifest["build_seconds"] = round(result.seconds, 3)
            new_manifest["last_build"] = {
                k: v for k, v in result.to_dict().items() if k not in ("generation", "index_id")
            }
            if os.environ.get("RAG_TEST_CRASH_BEFORE_PUBLISH"):
                os._exit(99)  # test hook: die at the worst moment
            final = writer.publish(index, new_manifest)
            result.generation = final.name
            result.index_id = new_manifest["index_id"]
        except BaseException:
            writer.abort()
            raise
    result.seconds = time.perf_counter() - t0
    return result


def _doc_fields(doc: Document) -> dict[str, Any]:
    return {"source": doc.source, "doc_id": doc.doc_id, "title": doc.title, "date": doc.date, "source_url": doc.source_url,
            "file_type": doc.file_type, "pages": doc.page_count, "has_pages": int(doc.has_pages), "sha256": doc.sha256}


def _doc_row(fields: dict[str, Any], fs: FileState, n_chunks: int) -> dict[str, Any]:
    return {**fields, "size": fs.size, "mtime_ns": fs.mtime_ns, "n_chunks": n_chunks}  # sha256: of the loaded bytes


def _process(states: list[tuple[str, FileState]], corpus: Path, metadata: dict[str, dict[str, str]], limits: Limits, cfg: ChunkConfig,
             tokenize: Any, settings: Settings, engine: str, workers: int | None, cache: dict[str, np.ndarray],
             writer: GenerationWriter, fresh: set[str]) -> Iterator[tuple[str, FileState, dict[str, Any] | None, list[Chunk], IngestError | None]]:
    """(kind, file, document fields, chunks, error) per file, in order; streaming with the local engine.

    With the Ray engine, files are loaded and chunked by Ray tasks and the new chunk texts embedded by
    an actor pool; their vectors go into `cache` (and their hashes into `fresh`), so the flush that
    follows embeds nothing more.
    """
    if engine == "local":
        for kind, fs in states:
            try:
                doc = load_safely(fs.path, corpus, limits, meta=metadata.get(fs.source))
            except IngestError as e:
                yield kind, fs, None, [], e
                continue
            yield kind, fs, _doc_fields(doc), chunk_document(doc, tokenize, cfg), None
        return
    if engine != "ray":
        raise RagError(f"unknown engine '{engine}' (use local or ray)")
    from . import ray_engine

    results = ray_engine.load_and_chunk([fs for _, fs in states], corpus, metadata, limits, cfg, settings, workers)
    wanted = {c.text_hash: c.embed_text for _, _, chunks, _ in results for c in chunks if c.text_hash not in cache}
    if wanted:
        cache.update(writer.lookup_vectors(list(wanted)))
        todo = {h: t for h, t in wanted.items() if h not in cache}
        cache.update(ray_engine.embed_texts(todo, settings, workers))
        fresh.update(todo)
    for (kind, _), (fs, fields, chunks, err) in zip(states, results, strict=True):
        yield kind, fs, fields, chunks, err


def _rebuild_faiss(writer: GenerationWriter, settings: Settings, dim: int) -> Any:
    n = writer.count_chunks()
    index = new_faiss_index(
        settings.faiss_index, dim, hnsw_m=settings.hnsw_m, nlist=settings.ivf_nlist, n_hint=n
    )
    if settings.faiss_index == "ivf" and n:
        import faiss

        ivf = faiss.downcast_index(index.index)
        sample = np.concatenate([v for _, v in writer.iter_vectors()])  # IVF trains on the vectors
        if len(sample) > 100_000:
            sample = sample[np.random.default_rng(0).choice(len(sample), 100_000, replace=False)]
        ivf.train(sample)
    for ids, vecs in writer.iter_vectors():
        index.add_with_ids(vecs, ids)
    return index
