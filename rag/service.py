"""A long-lived service object for the UI (and any server): one loaded embedder, retriever and LLM,
questions answered concurrently, and document uploads/removals applied as incremental index builds
that never leave a reader with a half-written index.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .errors import ConfigError, IngestError
from .indexer import BuildReporter, BuildResult, build_index, limits_from, plan_changes
from .ingest import SUPPORTED_EXTENSIONS, discover, load_safely
from .settings import Settings

_SAFE = re.compile(r"[^A-Za-z0-9._ -]+")


def sanitize_filename(name: str) -> str:
    """A safe file name for an upload: no folders, no '..', no control or odd characters.

    Raises ConfigError when nothing usable is left or the type is not supported.
    """
    base = unicodedata.normalize("NFKC", str(name)).replace("\\", "/").split("/")[-1]
    base = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C")  # control/format chars
    base = _SAFE.sub("_", base).strip(" .")
    base = re.sub(r"\.{2,}", ".", base)
    base = re.sub(r"\s+", " ", base)
    stem, dot, ext = base.rpartition(".")
    if not dot or not stem:
        raise ConfigError(f"upload '{name}': no file name or extension left after cleaning")
    ext = ext.lower()
    if f".{ext}" not in SUPPORTED_EXTENSIONS:
        raise ConfigError(f"upload '{name}': unsupported type '.{ext}' (use PDF, DOCX, HTML, Markdown or text)")
    return f"{stem[:120]}.{ext}"


def check_upload_content(path: Path, name: str, max_bytes: int) -> None:
    """Type check by content, and size, before anything is written into the corpus."""
    size = path.stat().st_size
    if size > max_bytes:
        raise ConfigError(f"upload '{name}': {size / 1e6:.1f} MB, over the limit of {max_bytes / 1e6:.0f} MB")
    if size == 0:
        raise ConfigError(f"upload '{name}': empty file")
    head = path.read_bytes()[:8192]
    kind = SUPPORTED_EXTENSIONS[Path(name).suffix.lower()]
    if kind == "pdf" and not head.lstrip().startswith(b"%PDF"):
        raise ConfigError(f"upload '{name}': not a PDF (content does not start with %PDF)")
    if kind == "docx" and not head.startswith(b"PK"):
        raise ConfigError(f"upload '{name}': not a DOCX (content is not a zip container)")
    if kind in ("txt", "md", "html") and head[:2] not in (b"\xff\xfe", b"\xfe\xff"):  # UTF-16 BOM: the loader decodes
        if b"\x00" in head:
            raise ConfigError(f"upload '{name}': binary content in a text file")
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as e:
            if e.start < len(head) - 4:  # a multi-byte char cut at the 8 KiB boundary is fine
                raise ConfigError(f"upload '{name}': not UTF-8 text") from None


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def exposure_warning(host: str, has_auth: bool, share: bool = False) -> str | None:
    """What to shout when the UI is reachable by others without a password (None when it is not)."""
    if has_auth:
        return None
    if share:
        return ("a public Gradio share link without a password: anyone with the link can ask questions and add or "
                "remove documents. Set RAG_UI_USERNAME and RAG_UI_PASSWORD.")
    if host not in LOOPBACK:
        return (f"serving on {host} without a password: anyone who can reach this port can ask questions and add or "
                "remove documents. Set RAG_UI_USERNAME and RAG_UI_PASSWORD, or bind 127.0.0.1.")
    return None


class RagService:
    def __init__(self, settings: Settings, embedder: Any = None, generator: Any = None) -> None:
        from .answer import Answerer
        from .retrieve import Retriever

        self.settings = settings
        self.retriever = Retriever.open(settings, embedder)
        self.answerer = Answerer(self.retriever, settings, generator=generator)
        self._build_lock = threading.Lock()  # one index update at a time in this process

    @classmethod
    def start(cls, settings: Settings, reporter: BuildReporter | None = None, embedder: Any = None, generator: Any = None) -> RagService:
        """Build the index first if it is missing or stale, then load everything once."""
        if Path(settings.corpus).is_dir() and index_needs_build(settings):
            build_index(settings, reporter=reporter, embedder=embedder)
        return cls(settings, embedder=embedder, generator=generator)

    # -- reading ----------------------------------------------------------------------------

    def documents(self) -> list[Any]:
        self.retriever.refresh()
        return self.retriever.store.documents()

    def ask(self, question: str, **kw: Any) -> Any:
        self.retriever.refresh()
        return self.answerer.ask(question, **kw)

    # -- writing ----------------------------------------------------------------------------

    def add_files(self, uploads: Sequence[tuple[Path, str]], reporter: BuildReporter | None = None) -> tuple[BuildResult | None, list[str], list[str]]:
        """Copy uploads (temp path, original name) into the corpus and index them incrementally.

        Returns (build result, saved sources, rejection messages). A rejected upload never touches
        the corpus; a file that fails to load is removed again so the corpus stays indexable.
        """
        corpus = Path(self.settings.corpus)
        corpus.mkdir(parents=True, exist_ok=True)
        max_bytes = int(self.settings.max_file_mb * 1024 * 1024)
        saved: list[str] = []
        rejected: list[str] = []
        with self._build_lock:
            for tmp, name in uploads:
                try:
                    safe = sanitize_filename(name)
                    check_upload_content(Path(tmp), name, max_bytes)
                    target = corpus / "uploads" / safe
                    target.parent.mkdir(parents=True, exist_ok=True)
                    if target.exists():
                        stem, ext = target.stem, target.suffix
                        i = 2
                        while (target := target.with_name(f"{stem}-{i}{ext}")).exists():
                            i += 1
                    # parsed in the isolated loader: a hostile upload costs a child process, not the server
                    load_safely(target, corpus, limits_from(self.settings), read_from=Path(tmp))
                    part = target.with_name(f".{target.name}.part")
                    shutil.copyfile(tmp, part)
                    os.replace(part, target)
                    saved.append(target.relative_to(corpus).as_posix())
                except (ConfigError, IngestError) as e:
                    rejected.append(str(e))
            result = build_index(self.settings, reporter=reporter, embedder=self.retriever.embedder) if saved else None
        self.retriever.refresh()
        return result, saved, rejected

    def remove_document(self, source: str, reporter: BuildReporter | None = None) -> BuildResult:
        corpus = Path(self.settings.corpus).resolve()
        target = (corpus / source).resolve()
        if not target.is_relative_to(corpus) or target == corpus:
            raise ConfigError(f"'{source}' is not a document of the corpus")
        known = {d.source for d in self.retriever.store.documents()}
        if source not in known:
            raise ConfigError(f"'{source}' is not in the index")
        with self._build_lock:
            if target.is_file():
                target.unlink()
            result = build_index(self.settings, reporter=reporter, embedder=self.retriever.embedder)
        self.retriever.refresh()
        return result


def index_needs_build(settings: Settings) -> bool:
    from .store import read_manifest

    manifest = read_manifest(Path(settings.index))
    if manifest is None:
        return True
    files, _ = discover(Path(settings.corpus))
    add, upd, rem, _ = plan_changes(files, Path(settings.corpus), manifest, False)
    return bool(add or upd or rem)


class CallbackReporter:
    """Adapts build progress to a simple callback (fraction, message), e.g. gr.Progress."""

    def __init__(self, cb: Callable[[float, str], None]) -> None:
        self.cb = cb
        self.n = 0
        self.done = 0

    def start(self, n_files: int) -> None:
        self.n = max(n_files, 1)
        self.cb(0.0, f"indexing {n_files} file(s)")

    def file_done(self, source: str, n_chunks: int) -> None:
        self.done += 1
        self.cb(min(0.95, self.done / self.n * 0.9), f"{source}: {n_chunks} chunks")

    def file_skipped(self, error: IngestError) -> None:
        self.cb(min(0.95, self.done / max(self.n, 1) * 0.9), f"skipped {error.path}: {error.reason}")

    def embedded(self, n_chunks: int) -> None:
        self.cb(0.95, f"embedded {n_chunks} chunks")

    def stage(self, text: str) -> None:
        self.cb(0.97, text)


