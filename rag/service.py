"""The one door to the library: `RagService`. The CLI, the web UI and scripts call it and nothing else.

It holds the settings and loads each model lazily and once (embedder and index reader on the first
search, the LLM on the first generative answer). Questions may be answered concurrently; document
uploads and removals are applied as incremental index builds that never leave a reader with a
half-written index (readers follow the new generation on their next question).
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from rag.answer.limits import check_k, check_model, check_question, check_request
from rag.answer.status_notes import identify_hits
from rag.errors import ConfigError, IndexCorruptError, IndexMissingError, RagError
from rag.index.build import ENGINES, build_index, limits_from
from rag.index.chunk import chunk_signature
from rag.index.layout import current_generation
from rag.index.manifest import Manifest
from rag.index.plan import plan_corpus
from rag.index.reader import DocumentInfo, IndexStore, generation_problems
from rag.index.report import BuildReporter, BuildResult, CallbackReporter
from rag.index.status import policy_stale, policy_summary
from rag.ingest.files import set_excluded
from rag.ingest.sandbox import load_safely
from rag.ingest.uploads import check_upload_content, remove_files, sanitize_filename, stage_uploads, write_uploads
from rag.retrieve.filters import as_filters
from rag.settings import Settings
from rag.types import Answer, Passage

__all__ = ["BuildResult", "CallbackReporter", "RagService", "check_upload_content", "exposure_warning", "sanitize_filename"]

LOOPBACK = ("127.0.0.1", "localhost", "::1")
UPLOADS = "uploads"  # the corpus subfolder uploads are written to (and the only one a removal deletes from)


def exposure_warning(host: str, has_auth: bool, share: bool = False) -> str | None:
    """What to shout when the UI is reachable by others without a password (None when it is not)."""
    if has_auth:
        return None
    if share:
        return ("a public Gradio share link without a password: anyone with the link can ask questions and add or "
                "remove documents. Set RAG_UI__USERNAME and RAG_UI__PASSWORD.")
    if host not in LOOPBACK:
        return (f"serving on {host} without a password: anyone who can reach this port can ask questions and add or "
                "remove documents. Set RAG_UI__USERNAME and RAG_UI__PASSWORD, or bind 127.0.0.1.")
    return None


class RagService:
    def __init__(self, settings: Settings, embedder: Any = None, generator: Any = None) -> None:
        self.settings = settings
        self._embedder = embedder
        self._generator = generator
        self._retriever: Any = None
        self._answerer: Any = None
        self._load_lock = threading.Lock()
        self._build_lock = threading.Lock()  # one index update at a time in this process

    @classmethod
    def start(cls, settings: Settings, reporter: BuildReporter | None = None, embedder: Any = None, generator: Any = None) -> RagService:
        """Build the index first if it is missing or stale, then load the reader and embedder once."""
        from rag.index.embed import resolve_device

        for device in (settings.embedding.device, settings.llm.device):  # a device this machine lacks: refused now
            resolve_device(device)
        service = cls(settings, embedder=embedder, generator=generator)
        if Path(settings.corpus).is_dir() and service.needs_build():
            service.build(reporter=reporter)
        _ = service.retriever
        return service

    # -- lazily loaded parts ---------------------------------------------------------------

    @property
    def retriever(self) -> Any:
        if self._retriever is None:
            with self._load_lock:
                if self._retriever is None:
                    from rag.retrieve.retriever import Retriever

                    self._retriever = Retriever.open(self.settings, self._embedder)
        return self._retriever

    @property
    def answerer(self) -> Any:
        if self._answerer is None:
            retriever = self.retriever
            with self._load_lock:
                if self._answerer is None:
                    from rag.answer.answerer import Answerer

                    self._answerer = Answerer(retriever, self.settings, generator=self._generator)
        return self._answerer

    def _fresh(self) -> None:
        """Follow a generation a build (here or in another process) published since the last call."""
        self.retriever.refresh()

    # -- questions -------------------------------------------------------------------------

    def search(self, queries: Sequence[str], k: int | None = None, filters: Any = None, *, mode: str | None = None) -> list[list[Passage]]:
        """Top-k passages for each query (filters: one for all, or one per query)."""
        flt = [as_filters(f) for f in filters] if isinstance(filters, list) and filters and not isinstance(filters[0], str) else as_filters(filters)
        [check_question(q, self.settings) for q in queries]
        self._fresh()
        hits = self.retriever.search(list(queries), check_k(k, self.settings) or self.settings.retrieval.top_k, flt, mode=mode)
        return identify_hits(hits, self.retriever.store, self.settings.retrieval.as_of)  # document identity (issue 13)

    def ask(self, question: str, **kw: Any) -> Answer:
        """One cited answer or a refusal. kw: history, filters, mode, k, model, retrieval_mode, on_token.
        Bounded here for UI, API and scripts alike (rag.answer.limits): question, k, allowed models, time."""
        check_request(self.settings, question, kw)
        kw["filters"] = as_filters(kw.get("filters"))  # a bad filter is reported before any model loads
        self._fresh()
        return self.answerer.ask(question, **kw)

    def ask_stream(self, question: str, cancel: threading.Event | None = None, **kw: Any) -> Iterator[tuple[str, Any]]:
        """Yields ("draft", text so far) while the model writes, then ("answer", Answer) or ("error", message).

        Setting `cancel` stops the model at its next token (the chat's Stop button): ("cancelled", "") ends the stream.
        """
        q: queue.Queue[tuple[str, Any]] = queue.Queue()
        draft: list[str] = []

        def on_token(piece: str) -> None:
            if cancel is not None and cancel.is_set():
                raise _Cancelled
            draft.append(piece)
            q.put(("draft", "".join(draft)))

        def run() -> None:
            try:
                q.put(("answer", self.ask(question, on_token=on_token, **kw)))
            except _Cancelled:
                q.put(("cancelled", ""))
            except RagError as e:
                q.put(("error", str(e)))
            except Exception as e:  # never leave the asker waiting on a dead thread
                q.put(("error", f"{type(e).__name__}: {e}"))

        threading.Thread(target=run, daemon=True).start()
        while True:
            try:
                kind, value = q.get(timeout=0.25)
            except queue.Empty:  # retrieval or scoring under way: a cancel ends the stream now, not at the next token
                if cancel is not None and cancel.is_set():
                    yield ("cancelled", "")
                    return
                continue
            if kind == "draft":
                while not q.empty():  # coalesce bursts of tokens
                    nxt = q.get()
                    if nxt[0] != "draft":
                        yield ("draft", value)
                        yield nxt
                        return
                    value = nxt[1]
            yield (kind, value)
            if kind != "draft":
                return

    def ask_many(self, questions: Sequence[str], **kw: Any) -> list[Answer | Exception]:
        """Many questions at once (batched retrieval and generation); a failed question yields its exception."""
        kw["k"], kw["model"] = check_k(kw.get("k"), self.settings), check_model(kw.get("model"), self.settings)
        [check_question(q, self.settings) for q in questions]
        self._fresh()
        return self.answerer.ask_many(questions, **kw)

    def search_file(self, path: Path, k: int | None = None, filters: Any = None, *, mode: str | None = None,
                    chunk: int = 256) -> Iterator[tuple[str, list[Passage]]]:
        """(question, hits) for each query of a file (one a line, or JSONL with question/filter), batched."""
        from rag.jobs.batch import read_queries

        base = as_filters(filters) or {}
        items = read_queries(Path(path))
        for start in range(0, len(items), chunk):
            part = items[start : start + chunk]
            merged = [{**base, **(f or {})} or None for _, f in part]
            for (q, _), hits in zip(part, self.search([q for q, _ in part], k, merged, mode=mode), strict=True):
                yield q, hits

    def batch(self, input_path: Path, output: Path, *, resume: bool = False, batch_size: int = 8, filters: Any = None,
              engine: str = "local", address: str | None = None, workers: int | None = None,
              on_start: Callable[[int, list[str]], None] | None = None,
              on_progress: Callable[[int, int, int], None] | None = None) -> Any:
        """Answer a question file into a JSONL/CSV/XLSX of cited answers (resumable); returns the BatchSummary.

        `on_start(questions to answer, warnings about the input)` is called before the first answer.
        """
        from rag.jobs.batch import ResultWriter, check_items, read_input, run_batch

        lim = self.settings.limits
        items = read_input(Path(input_path), max_rows=lim.max_batch_rows, max_unzipped_mb=lim.max_input_unzipped_mb,
                           max_question_chars=lim.max_question_chars)
        warnings, _ = check_items(items)
        writer = ResultWriter(Path(output), resume, source=Path(input_path))
        _check_engine(engine, address)
        if on_start:
            on_start(sum(1 for it in items if it.id not in writer.done and not it.error), warnings)
        flt = as_filters(filters)
        if engine == "ray":
            from rag.jobs.ray_batch import run_batch_ray

            summary = run_batch_ray(items, writer, self.settings, batch_size=batch_size, filters=flt, mode=None, k=None,
                                    model=None, workers=workers, on_progress=on_progress)
        else:
            self._fresh()
            summary = run_batch(self.answerer, items, writer, batch_size=batch_size, filters=flt, on_progress=on_progress)
        summary.duplicates = sum(1 for w in warnings if "duplicate of question" in w)
        return summary

    def evaluate(self, dataset: Path, fmt: str | None = None, **kw: Any) -> tuple[list[Path], dict[str, Any]]:
        """`rag eval`: returns the report's files and its metrics. kw: modes (dense, bm25, hybrid, each optionally
        '+rerank'), answer_modes, limit, seed, out, reporter, progress, word_budgets."""
        from rag.jobs.datasets import guess_format
        from rag.jobs.evaluate import run_eval

        if not Path(dataset).exists():
            raise ConfigError(f"dataset {dataset} does not exist")
        return run_eval(Path(dataset), fmt or guess_format(Path(dataset)), self.settings, embedder=self._embedder, **kw)

    # -- the index ---------------------------------------------------------------------------

    def docs(self) -> list[DocumentInfo]:
        self._fresh()
        return self.retriever.store.documents()

    def policy_docs(self, as_of: str | None = None) -> list[dict[str, Any]]:
        """Each document's identity, status as of a date (default today) and relations both ways (`rag docs`)."""
        from rag.index.status import parse_as_of

        as_of = parse_as_of(as_of)
        self._fresh()
        return self.retriever.store.policy.describe(as_of)  # type: ignore[no-any-return]

    def needs_build(self) -> bool:
        manifest = Manifest.read(Path(self.settings.index))
        plan = None if manifest is None else plan_corpus(Path(self.settings.corpus), manifest)
        return plan is None or plan.changed or policy_stale(current_generation(Path(self.settings.index)), plan.metadata)

    def build(self, *, full: bool = False, reporter: BuildReporter | None = None, engine: str = "local",
              address: str | None = None, workers: int | None = None) -> BuildResult:
        """Index new and changed files of the corpus, drop removed ones, publish atomically."""
        _check_engine(engine, address)
        with self._build_lock:
            result = build_index(self.settings, full=full, reporter=reporter, embedder=self._embedder or
                                 (self._retriever.embedder if self._retriever is not None else None), engine=engine, workers=workers)
        if self._retriever is not None:
            self._retriever.refresh()
        return result

    def status(self) -> dict[str, Any]:
        """What `rag index status` shows: counts, model, last build, pending changes, compatibility."""
        s = self.settings
        index_dir = Path(s.index)
        manifest = Manifest.read(index_dir)
        if manifest is None:
            raise IndexMissingError(f"no index at {index_dir}; run `rag index build`")
        pending: dict[str, list[str]] = {"added": [], "changed": [], "removed": []}
        if Path(s.corpus).is_dir():
            pending = plan_corpus(Path(s.corpus), manifest).pending()
        problem = None
        try:
            from rag.index.embed import vectors_for

            manifest.check_compatible(s.embedding.model, chunk_signature(s.chunking), index_dir)
            manifest.check_vectors(vectors_for(s), index_dir)
        except RagError as e:
            problem = str(e)
        return {
            "index": str(s.index),
            "generation": current_generation(index_dir).name,  # type: ignore[union-attr]
            "index_id": manifest.index_id,
            "documents": manifest.n_documents,
            "chunks": manifest.n_chunks,
            "embedding_model": manifest.embedding.model,
            "dimension": manifest.embedding.dimension,
            "faiss": manifest.faiss_kind,
            "chunking": manifest.chunking,
            "built_at": manifest.built_at,
            "build_seconds": manifest.build_seconds,
            "changed_since": pending,
            "compatible_with_settings": problem is None,
            "problem": problem,
            # files the index cannot be read from, and changed files whose previous version was kept
            "damaged": generation_problems(current_generation(index_dir), manifest),  # type: ignore[arg-type]
            "kept": [k for k in (manifest.last_build or {}).get("kept") or [] if k.get("source") in pending["changed"]],
            "duplicates": {src: d.duplicate_of for src, d in manifest.documents.items() if d.duplicate_of},
            "identity": policy_summary(current_generation(index_dir)),  # kinds, identifiers, status (issue 13)
        }

    def check(self) -> dict[str, Any]:
        """Consistency of the live generation: FAISS ids == SQLite rows == manifest == BM25."""
        index_dir = Path(self.settings.index)
        gen = current_generation(index_dir)
        if gen is None:
            raise IndexMissingError(f"no index at {index_dir}; run `rag index build`")
        problems = generation_problems(gen)  # missing or unreadable files first: the row checks need them
        try:
            store = IndexStore(index_dir)
        except IndexCorruptError as e:
            return {"ok": False, "problems": problems or [str(e)], "chunks": 0, "generation": gen.name, "documents": 0}
        problems += [p for p in store.check() if p not in problems]
        return {"ok": not problems, "problems": problems, "chunks": len(store), "generation": store.generation.name,
                "documents": len(store.documents())}

    # -- documents ---------------------------------------------------------------------------

    def add_files(self, uploads: Sequence[tuple[Path, str]], reporter: BuildReporter | None = None) -> tuple[BuildResult | None, list[str], list[str]]:
        """Copy uploads (temp path, original name) into the corpus and index them incrementally.

        Returns (build result, saved sources, rejection messages). A rejected upload (bad type, a file that
        does not load, the same bytes as a document already in the corpus) never touches the corpus; the
        accepted ones are removed again when the index update fails, so corpus and index never disagree.
        """
        corpus = Path(self.settings.corpus)
        corpus.mkdir(parents=True, exist_ok=True)
        with self._build_lock:
            manifest = Manifest.read(Path(self.settings.index))
            known = {d.sha256: src for src, d in (manifest.documents if manifest else {}).items()}
            staged, rejected = stage_uploads(uploads, corpus, known, int(self.settings.ingest.max_file_mb * 1024 * 1024),
                                             limits_from(self.settings))
            result = None
            if staged:
                written = write_uploads(staged)
                try:
                    result = build_index(self.settings, reporter=reporter, embedder=self.retriever.embedder)
                except BaseException:
                    remove_files(written)  # nothing was published: the corpus goes back to what the index holds
                    raise
                failed = {e.path for e in result.skipped}
                remove_files([t for t in written if t.relative_to(corpus).as_posix() in failed])
                rejected += [str(e) for e in result.skipped if e.path in {t.relative_to(corpus).as_posix() for t in written}]
            saved = [t.relative_to(corpus).as_posix() for _, t in staged if t.exists()]
        self.retriever.refresh()
        return result, saved, rejected

    def document(self, source: str) -> DocumentInfo:
        """The indexed document `source` (ConfigError naming it when it is not in the index)."""
        for d in self.docs():
            if d.source == source:
                return d
        raise ConfigError(f"'{source}' is not in the index")

    def _indexed_file(self, source: str) -> Path:
        corpus = Path(self.settings.corpus).resolve()
        path = (corpus / source).resolve()
        if not path.is_relative_to(corpus) or not path.is_file():
            raise ConfigError(f"the file of '{source}' is no longer in the corpus folder")
        return path

    def page_image(self, source: str, page: int, quote: str = "", page_end: int | None = None) -> Any:
        """A cited PDF page rendered (PNG in a PageImage) with `quote` highlighted; pages up to `page_end` are
        searched for the quote too (a passage spanning pages)."""
        from rag.ingest.page_image import render_page

        info = self.document(source)
        if info.file_type != "pdf":
            raise ConfigError(f"'{source}' is not a PDF: it has no printed pages to show")
        also = tuple(range(int(page) + 1, int(page_end or page) + 1))
        return render_page(self._indexed_file(source), int(page), quote, also_pages=also, scale=self.settings.ui.page_scale)

    def document_text(self, source: str) -> str:
        """The whole extracted text of an indexed document (passage offsets index into it), for showing a
        Markdown/HTML/text passage in its document."""
        self.document(source)
        corpus = Path(self.settings.corpus).resolve()
        return load_safely(self._indexed_file(source), corpus, limits_from(self.settings)).text

    @staticmethod
    def is_upload(source: str) -> bool:
        """Added through the UI (under corpus/uploads/): the only files a removal may delete."""
        return source.startswith(UPLOADS + "/") and ".." not in source.split("/")

    def remove_document(self, source: str, reporter: BuildReporter | None = None) -> BuildResult:
        """Take a document out of the index. Only an upload's file is deleted; any other document (a shipped
        one) is listed in the corpus's `.rag-exclude` and its file stays where it is."""
        corpus = Path(self.settings.corpus).resolve()
        target = (corpus / source).resolve()
        if not target.is_relative_to(corpus) or target == corpus:
            raise ConfigError(f"'{source}' is not a document of the corpus")
        if source not in {d.source for d in self.retriever.store.documents()}:
            raise ConfigError(f"'{source}' is not in the index")
        if not self.is_upload(source):
            with self._build_lock:
                set_excluded(corpus, source, True)
                try:
                    result = build_index(self.settings, reporter=reporter, embedder=self.retriever.embedder)
                except BaseException:
                    set_excluded(corpus, source, False)
                    raise
            self.retriever.refresh()
            return result
        with self._build_lock:
            # the file moves aside (hidden: never indexed) until the index without it is published, and comes back
            # if that fails: a removal never leaves a deleted file served, nor a file behind its removed entry
            aside = target.with_name(f".{target.name}.removing")
            if target.is_file():
                os.replace(target, aside)
            try:
                result = build_index(self.settings, reporter=reporter, embedder=self.retriever.embedder)
            except BaseException:
                if aside.exists() and not target.exists():
                    os.replace(aside, target)
                raise
            aside.unlink(missing_ok=True)
        self.retriever.refresh()
        return result

    # -- models --------------------------------------------------------------------------------

    def train_scorer(self, policyqa: Path, obliqa: Path, out: Path, **kw: Any) -> dict[str, Any]:
        """`rag train scorer`: train, evaluate and save the evidence scorer into `out`; returns its scorer.json.
        kw: seed, epochs, device (auto|cpu|cuda), max_minutes, limit, pseudo, progress(stage, done, total), and
        other recipe settings (max_length, batch_groups, ...); see rag.jobs.scorer.pipeline.train_scorer."""
        from rag.jobs.scorer import train_scorer

        return train_scorer(Path(policyqa), Path(obliqa), Path(out), **kw)


class _Cancelled(Exception):
    """Raised from the token callback to stop a generation the asker cancelled."""


def _check_engine(engine: str, address: str | None) -> None:
    if engine not in ENGINES:
        raise ConfigError(f"unknown --engine '{engine}' (use local or ray)")
    if engine == "ray":
        from rag.index.ray_build import ensure_ray

        ensure_ray(address)
    elif address:
        raise ConfigError("--address needs --engine ray")
