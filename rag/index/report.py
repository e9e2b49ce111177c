"""What a build tells its caller: progress hooks while it runs, a result when it is done."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from rag.errors import IngestError


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
    kept: list[IngestError] = field(default_factory=list)  # changed files that failed to load: old version kept
    duplicates: dict[str, str] = field(default_factory=dict)  # source -> the source whose chunks hold the same bytes
    chunks_embedded: int = 0
    chunks_reused: int = 0
    chunks_total: int = 0
    documents_total: int = 0
    seconds: float = 0.0
    embed_seconds: float = 0.0  # inside the embedder's encode
    load_seconds: float = 0.0  # loading the embedding model (0 when it was already loaded)
    generation: str | None = None
    index_id: str | None = None
    policy_synced: int = 0  # documents whose identity/relations were (re)read (issue 13)

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
            + (f"; identity and relations of {self.policy_synced} documents updated" if self.policy_synced and not self.changed else "")
            + "".join(f"; kept previous version of {e.path}: {e.reason}" for e in self.kept)
            + "".join(f"; {src} has the same content as {of} (indexed once)" for src, of in self.duplicates.items())
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
            "kept": [{"source": e.path, "reason": e.reason, "kind": e.kind} for e in self.kept],
            "duplicates": dict(self.duplicates),
            "chunks_embedded": self.chunks_embedded,
            "chunks_reused": self.chunks_reused,
            "chunks_total": self.chunks_total,
            "documents_total": self.documents_total,
            "seconds": round(self.seconds, 3),
            "generation": self.generation,
            "index_id": self.index_id,
            "policy_synced": self.policy_synced,
        }


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
