"""`rag index build`: plan -> load -> chunk -> embed -> write -> publish.

Only what changed is processed: the plan compares the corpus with the manifest; unchanged chunks
(same embed text) reuse their vectors. Streaming: files are loaded one at a time and chunks embedded
in bounded batches, so a build never holds the whole corpus's text. Every step passes crash
checkpoints (`rag.faults`), and nothing is visible to readers until the atomic publish.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import IndexCorruptError, IngestError, RagError
from rag.faults import checkpoint
from rag.index.chunk import ChunkConfig, chunk_document, chunk_signature
from rag.index.faiss_ops import needs_retrain, rebuild_faiss, remove_ids, resolve_kind
from rag.index.layout import SQLITE, build_lock, current_generation, faiss_ids, new_faiss_index, prune_generations
from rag.index.manifest import DocumentEntry, EmbeddingInfo, Manifest, vector_kind
from rag.index.plan import FileState, Plan, plan_corpus
from rag.index.reader import generation_problems
from rag.index.report import BuildReporter, BuildResult, NullReporter
from rag.index.status import policy_stale
from rag.index.status import sync as policy_sync
from rag.index.writer import GenerationWriter
from rag.ingest.files import Limits
from rag.ingest.sandbox import load_safely
from rag.settings import Settings
from rag.types import Chunk, Document

ENGINES = ("local", "ray")


def limits_from(settings: Settings) -> Limits:
    i = settings.ingest
    return Limits(max_bytes=int(i.max_file_mb * 1024 * 1024), max_pages=i.max_pages, timeout_s=i.load_timeout_s,
                  max_memory_mb=i.max_load_memory_mb, isolate=i.isolate)


def chunk_config_for(settings: Settings, max_seq_length: int, special_tokens: int) -> ChunkConfig:
    c = settings.chunking
    return ChunkConfig(chunk_tokens=c.tokens, overlap=c.overlap, max_header_tokens=c.max_header_tokens,
                       max_seq_length=max_seq_length, special_tokens=special_tokens)


@dataclass
class Loaded:
    """One planned file after the load and chunk steps: its document row and chunks, or why it failed."""

    kind: str  # add | update
    file: FileState
    fields: dict[str, Any] | None
    chunks: list[Chunk]
    error: IngestError | None = None


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
    if engine not in ENGINES:
        raise RagError(f"unknown engine '{engine}' (use local or ray)")
    corpus = Path(settings.corpus)
    if not corpus.is_dir():
        raise RagError(f"corpus folder {corpus} does not exist")
    build = _Build(settings, reporter or NullReporter(), embedder, flush_chunks, engine, workers, full)
    with build_lock(Path(settings.index)):
        checkpoint("build.locked")
        return build.run()


@dataclass
class _Build:
    settings: Settings
    rep: BuildReporter
    embedder: Any
    flush_chunks: int
    engine: str
    workers: int | None
    full: bool
    result: BuildResult = field(default_factory=BuildResult)
    previous: tuple[Path, Manifest] | None = None  # --full: the generation a failed file's rows are kept from
    kind: str = "flat"  # the FAISS kind this build writes (faiss.kind, `auto` resolved by the chunk count)
    trained_n: int = 0  # IVF: the chunk count its clusters were trained for
    t0: float = field(default_factory=time.perf_counter)

    @property
    def corpus(self) -> Path:
        return Path(self.settings.corpus)

    @property
    def index_dir(self) -> Path:
        return Path(self.settings.index)

    # -- the steps -------------------------------------------------------------------------

    def run(self) -> BuildResult:
        manifest, plan = self.plan()
        if manifest is not None:
            self.check_base(manifest)
        elif self.full:
            self.previous = self.keepable_generation()
        self.kind = resolve_kind(self.settings, manifest.n_chunks if manifest else 0, manifest.faiss_kind if manifest else None)
        kind_changed = manifest is not None and manifest.faiss_kind != self.kind
        self.trained_n = int(manifest.faiss.get("ivf_trained_n", 0)) if manifest is not None and not kind_changed else 0
        if manifest is not None and not (plan.changed or kind_changed):
            if policy_stale(current_generation(self.index_dir), plan.metadata):
                return self.sync_policy(manifest, plan)
            return self.up_to_date(manifest)
        emb = self.embedder
        if emb is None:
            from rag.index.embed import embedder_for

            emb = embedder_for(self.settings)
        if manifest is not None and not self.full:
            manifest.check_vectors(vector_kind(emb), self.index_dir)  # an incremental build adds to these vectors
        base = None if (self.full or manifest is None) else current_generation(self.index_dir)
        writer = GenerationWriter(self.index_dir, base)
        checkpoint("build.writer_ready")
        try:
            old_ids, cache = self.delete(writer, plan)
            # updated in place when possible (faiss_ops); a kind change, or a removal from HNSW, rebuilds from the rows
            f = self.kind
            rebuild = (base is None or kind_changed or (f == "hnsw" and (len(old_ids) > 0 or bool(plan.update)))
                       or (f == "ivf" and not self.trained_n))  # an IVF of unknown (older version) or no training
            index = None if rebuild else self.base_faiss(base, old_ids)  # type: ignore[arg-type]
            sink = _Sink(writer, emb, cache, self.result, self.rep, base is not None, index, rebuild, self.settings, self.kind)
            cfg = chunk_config_for(self.settings, emb.max_seq_length, emb.special_tokens)
            self.rep.start(len(plan.add) + len(plan.update))
            for item in self.load_and_chunk(plan, cfg, emb.token_spans(), cache, writer, sink.fresh):
                self.write_document(writer, item, sink)
                if len(sink.pending) >= self.flush_chunks:
                    sink.flush()
            for item in self.orphans(writer, plan, cfg, emb.token_spans()):
                self.write_document(writer, item, sink)
            sink.flush()
            index = self.finish_faiss(writer, sink, emb.dimension)
            self.result.policy_synced = policy_sync(writer.db, plan.metadata)  # identity and relations of new/changed documents (issue 13)
            new = self.manifest(writer, index, emb, plan)
            self.refuse_empty(new)
            checkpoint("build.before_publish")
            final = writer.publish(index, new.to_dict())
        except BaseException:
            writer.abort()
            raise
        self.result.generation = final.name
        self.result.index_id = new.index_id
        self.result.seconds = time.perf_counter() - self.t0
        return self.result

    def sync_policy(self, manifest: Manifest, plan: Plan) -> BuildResult:
        """Only the identity/relations tables lag (an index built before them, an older extractor): a new
        generation with the rows, vectors and FAISS index copied as they are and those tables rewritten."""
        self.rep.stage("updating document identity and relations")
        base = current_generation(self.index_dir)
        writer = GenerationWriter(self.index_dir, base)
        try:
            index = self.base_faiss(base, np.zeros(0, dtype=np.int64))  # type: ignore[arg-type]
            self.result.policy_synced = policy_sync(writer.db, plan.metadata)
            new = self.manifest(writer, index, manifest.embedding, plan)
            checkpoint("build.before_publish")
            final = writer.publish(index, new.to_dict())
        except BaseException:
            writer.abort()
            raise
        self.result.generation, self.result.index_id = final.name, new.index_id
        return self.result

    def plan(self) -> tuple[Manifest | None, Plan]:
        manifest = None if self.full else Manifest.read(self.index_dir)
        if manifest is not None:
            manifest.check_compatible(self.settings.embedding.model, chunk_signature(self.settings.chunking), self.index_dir)
        plan = plan_corpus(self.corpus, manifest, self.full)
        for e in plan.skipped:
            self.rep.file_skipped(e)
        self.result.skipped.extend(plan.skipped)
        self.result.unchanged = plan.unchanged
        return manifest, plan

    def check_base(self, manifest: Manifest) -> None:
        """An incremental build extends the live generation: refuse one whose files are damaged."""
        gen = current_generation(self.index_dir)
        problems = generation_problems(gen, manifest) if gen is not None else []
        if problems:
            raise IndexCorruptError(f"the index at {self.index_dir} is damaged ({problems[0]}); nothing was changed; "
                                    "run `rag index build --full` to rebuild it")

    def keepable_generation(self) -> tuple[Path, Manifest] | None:
        """For --full: the live generation, when it is sound and built with the settings in force, so a file that
        no longer loads keeps its indexed version there too (a damaged or incompatible one is simply replaced)."""
        try:
            old = Manifest.read(self.index_dir)
            gen = current_generation(self.index_dir)
            if old is None or gen is None or generation_problems(gen, old):
                return None
            old.check_compatible(self.settings.embedding.model, chunk_signature(self.settings.chunking), self.index_dir)
            from rag.index.embed import vectors_for

            old.check_vectors(vector_kind(self.embedder) if self.embedder is not None else vectors_for(self.settings), self.index_dir)
        except RagError:
            return None
        return gen, old

    def refuse_empty(self, new: Manifest) -> None:
        """A build in which every file failed must not replace an index that holds documents with an empty one."""
        if new.n_documents or not (self.result.skipped or self.result.kept):
            return
        try:
            old = Manifest.read(self.index_dir)
        except RagError:
            old = None
        if old is not None and old.n_documents:
            first = (self.result.skipped or self.result.kept)[0]
            raise RagError(f"every file failed to load ({len(self.result.skipped) + len(self.result.kept)}, e.g. {first}); "
                           f"the index at {self.index_dir} was left as it was ({old.n_documents} documents)")

    def up_to_date(self, manifest: Manifest) -> BuildResult:
        prune_generations(self.index_dir)  # what a build killed after publishing left behind
        r = self.result
        r.documents_total, r.chunks_total = manifest.n_documents, manifest.n_chunks
        r.generation = current_generation(self.index_dir).name  # type: ignore[union-attr]
        r.index_id = manifest.index_id
        r.seconds = time.perf_counter() - self.t0
        return r

    def delete(self, writer: GenerationWriter, plan: Plan) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Drop removed documents; keep the vectors of changed ones as a cache. A changed document's old rows
        stay until its new version has loaded (`write_document`), so a file that fails keeps its indexed version."""
        # keyed by text hash; a removed document's vectors too when a duplicate of it will be indexed in its place
        cache = writer.take_vectors_of([f.source for f in plan.update] + writer.with_duplicates(plan.removed))
        old_ids = writer.delete_documents(plan.removed)
        self.result.removed = plan.removed
        checkpoint("build.deleted")
        return old_ids, cache

    def base_faiss(self, base: Path, old_ids: np.ndarray) -> Any:
        import faiss

        index = faiss.read_index(str(base / "faiss.index"))
        remove_ids(index, old_ids)
        return index

    def load_and_chunk(self, plan: Plan, cfg: ChunkConfig, tokenize: Any, cache: dict[str, np.ndarray],
                       writer: GenerationWriter, fresh: set[str]) -> Iterator[Loaded]:
        """One `Loaded` per planned file, in order; streaming with the local engine.

        With the Ray engine, files are loaded and chunked by Ray tasks and the new chunk texts embedded
        by an actor pool; their vectors go into `cache` (and their hashes into `fresh`), so the embed
        step that follows embeds nothing more.
        """
        states = [("add", fs) for fs in plan.add] + [("update", fs) for fs in plan.update]
        limits = limits_from(self.settings)
        if self.engine == "local":
            for kind, fs in states:
                try:
                    doc = load_safely(fs.path, self.corpus, limits, meta=plan.metadata.get(fs.source))
                except IngestError as e:
                    yield Loaded(kind, fs, None, [], e)
                    continue
                yield Loaded(kind, fs, document_fields(doc), chunk_document(doc, tokenize, cfg))
            return
        from rag.index import ray_build

        results = ray_build.load_and_chunk([fs for _, fs in states], self.corpus, plan.metadata, limits, cfg, self.settings, self.workers)
        wanted = {c.text_hash: c.embed_text for _, _, chunks, _ in results for c in chunks if c.text_hash not in cache}
        if wanted:
            cache.update(writer.lookup_vectors(list(wanted)))
            todo = {h: t for h, t in wanted.items() if h not in cache}
            cache.update(ray_build.embed_texts(todo, self.settings, self.workers))
            fresh.update(todo)
        for (kind, _), (fs, fields, chunks, err) in zip(states, results, strict=True):
            yield Loaded(kind, fs, fields, chunks, err)

    def write_document(self, writer: GenerationWriter, item: Loaded, sink: _Sink) -> None:
        error = item.error
        if error is None and not item.chunks:
            error = IngestError(item.file.source, "no text to index after cleaning", "empty")
        src = item.file.source
        if error is not None:
            kept = item.kind == "update" and writer.has_document(src)  # nothing indexed is lost to a broken update
            if not kept and item.kind == "add" and self.previous is not None and src in self.previous[1].documents:
                kept = writer.copy_document(self.previous[0] / SQLITE, src)  # --full: the last good version
            if kept:
                self.result.kept.append(error)
                self.rep.stage(f"kept previous version of {src}: {error.reason}")
            else:
                writer.delete_documents([src])  # a promoted duplicate whose file no longer loads
                self.result.skipped.append(error)
                self.rep.file_skipped(error)
            return
        assert item.fields is not None
        # the ids of chunks come from the file's bytes: the same bytes under a second name are indexed once
        primary = writer.primary_of(item.fields["doc_id"], src)
        if item.kind == "update":
            sink.drop(writer.delete_documents([src]))
        n = 0 if primary is not None else len(item.chunks)
        writer.add_document({**item.fields, "size": item.file.size, "mtime_ns": item.file.mtime_ns, "n_chunks": n})
        checkpoint("build.document_loaded")
        if primary is not None:
            self.result.duplicates[src] = primary
        else:
            sink.pending.extend(item.chunks)
        (self.result.added if item.kind == "add" else self.result.updated).append(src)
        self.rep.file_done(src, n)

    def orphans(self, writer: GenerationWriter, plan: Plan, cfg: ChunkConfig, tokenize: Any) -> Iterator[Loaded]:
        """Duplicates whose indexed twin was removed or changed in this build: loaded again and indexed themselves."""
        limits = limits_from(self.settings)
        for src, size, mtime_ns in writer.orphaned_duplicates():
            fs = FileState(self.corpus / src, src, size, mtime_ns)
            try:
                doc = load_safely(fs.path, self.corpus, limits, meta=plan.metadata.get(src))
            except IngestError as e:
                yield Loaded("promote", fs, None, [], e)
                continue
            yield Loaded("update", fs, document_fields(doc), chunk_document(doc, tokenize, cfg))

    def finish_faiss(self, writer: GenerationWriter, sink: _Sink, dim: int) -> Any:
        """The FAISS index of the new generation, checked against the rows before anything is published."""
        n_chunks = writer.count_chunks()
        final = resolve_kind(self.settings, n_chunks, self.kind)  # `auto` crossing its threshold in this build
        if sink.rebuild or final != self.kind or needs_retrain(final, n_chunks, self.trained_n):
            self.kind, self.trained_n = final, n_chunks if final == "ivf" else 0
            self.rep.stage(f"building {final} FAISS index")
            index = rebuild_faiss(writer, self.settings, dim, final)
            checkpoint("build.faiss_rebuilt")
        else:
            index = sink.index if sink.index is not None else new_faiss_index(final, dim, hnsw_m=self.settings.faiss.hnsw_m)
        if index.ntotal != n_chunks or (
            n_chunks and set(faiss_ids(index).tolist()) != {c for (c,) in writer.db.execute("SELECT faiss_id FROM chunks")}
        ):
            raise RagError(f"internal error: FAISS holds {index.ntotal} vectors for {n_chunks} chunks; nothing was published; "
                           "run `rag index build --full`")
        return index

    def manifest(self, writer: GenerationWriter, index: Any, emb: Any, plan: Plan) -> Manifest:
        docs = writer.documents_rows()
        r = self.result
        r.documents_total, r.chunks_total = len(docs), writer.count_chunks()
        r.seconds = time.perf_counter() - self.t0
        primaries = {d["doc_id"]: src for src, d in docs.items() if d["n_chunks"]}
        entries = {
            src: DocumentEntry(doc_id=d["doc_id"], sha256=d["sha256"], size=d["size"], mtime_ns=d["mtime_ns"], title=d["title"],
                               date=d["date"], pages=d["pages"], chunks=d["n_chunks"], file_type=d["file_type"],
                               meta=plan.metadata.get(src) or None,
                               duplicate_of=None if d["n_chunks"] else primaries.get(d["doc_id"]))
            for src, d in docs.items()
        }
        f = self.settings.faiss
        return Manifest(
            index_id=uuid.uuid4().hex[:16],
            built_at=datetime.now(UTC).isoformat(timespec="seconds"),
            build_seconds=round(r.seconds, 3),
            embedding=EmbeddingInfo(model=self.settings.embedding.model, dimension=emb.dimension, max_seq_length=emb.max_seq_length,
                                    vectors=vector_kind(emb)),
            chunking=chunk_signature(self.settings.chunking),
            faiss={"type": self.kind, "hnsw_m": f.hnsw_m, **({"ivf_trained_n": self.trained_n} if self.kind == "ivf" else {})},
            corpus=str(self.corpus.resolve()),
            documents=entries,
            counts={"documents": len(docs), "chunks": r.chunks_total},
            last_build={k: v for k, v in r.to_dict().items() if k not in ("generation", "index_id")},
        )


@dataclass
class _Sink:
    """The embed and write steps: chunks wait in `pending` until a flush embeds what the cache lacks
    and writes rows, vectors and (for in-place updates) FAISS entries."""

    writer: GenerationWriter
    emb: Any
    cache: dict[str, np.ndarray]
    result: BuildResult
    rep: BuildReporter
    has_base: bool
    index: Any
    rebuild: bool
    settings: Settings
    kind: str
    pending: list[Chunk] = field(default_factory=list)
    fresh: set[str] = field(default_factory=set)  # embedded by the Ray engine for this build

    def drop(self, ids: np.ndarray) -> None:
        """FAISS entries of a replaced document leave the in-place index (a rebuild reads the rows instead)."""
        if len(ids) and not self.rebuild and self.index is not None:
            remove_ids(self.index, ids)

    def flush(self) -> None:
        if not self.pending:
            return
        hashes = [c.text_hash for c in self.pending]
        known = dict(self.cache)
        missing = [h for h in hashes if h not in known]
        if missing and self.has_base:
            known.update(self.writer.lookup_vectors(missing))
        todo = [i for i, h in enumerate(hashes) if h not in known]
        vecs = np.zeros((len(self.pending), self.emb.dimension), dtype=np.float32)
        if todo:
            t_enc = time.perf_counter()
            vecs[todo] = self.emb.encode([self.pending[i].embed_text for i in todo])
            self.result.embed_seconds += time.perf_counter() - t_enc
            self.rep.embedded(len(todo))
        for i, h in enumerate(hashes):
            if h in known:
                vecs[i] = known[h]
        n_fresh = sum(1 for h in hashes if h in self.fresh)
        self.result.chunks_embedded += len(todo) + n_fresh
        self.result.chunks_reused += len(self.pending) - len(todo) - n_fresh
        checkpoint("build.embedded")
        ids = self.writer.add_chunks(self.pending, vecs)
        checkpoint("build.chunks_written")
        if not self.rebuild:
            if self.index is None:
                self.index = new_faiss_index(self.kind, self.emb.dimension, hnsw_m=self.settings.faiss.hnsw_m)
            self.index.add_with_ids(vecs, ids)
        self.pending.clear()


def document_fields(doc: Document) -> dict[str, Any]:
    """A loaded document's row in the documents table (size and mtime come from the plan)."""
    return {"source": doc.source, "doc_id": doc.doc_id, "title": doc.title, "date": doc.date, "source_url": doc.source_url,
            "file_type": doc.file_type, "pages": doc.page_count, "has_pages": int(doc.has_pages), "sha256": doc.sha256}
