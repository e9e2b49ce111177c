"""What a build has to do: compare the corpus folder with the manifest, hashing only files whose size or
mtime moved. Used by the build itself, by `rag index status` and by the service's start-up check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rag.errors import IngestError
from rag.index.manifest import Manifest
from rag.ingest.files import DEFAULT_IGNORE, discover, file_sha256, load_corpus_metadata, load_excluded, relative_source


@dataclass(frozen=True)
class FileState:
    path: Path
    source: str
    size: int
    mtime_ns: int


@dataclass
class Plan:
    add: list[FileState] = field(default_factory=list)
    update: list[FileState] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    skipped: list[IngestError] = field(default_factory=list)  # found by discovery (unsupported, unreadable)
    metadata: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.add or self.update or self.removed)

    def pending(self) -> dict[str, list[str]]:
        return {"added": [f.source for f in self.add], "changed": [f.source for f in self.update], "removed": list(self.removed)}


def plan_changes(
    files: list[Path],
    root: Path,
    manifest: Manifest | None,
    full: bool,
    metadata: dict[str, dict[str, str]] | None = None,
) -> Plan:
    """Files to add / update, sources removed, and the unchanged count.

    A file whose metadata.yaml entry changed counts as updated.
    """
    metadata = metadata if metadata is not None else load_corpus_metadata(root)
    docs = {} if (full or manifest is None) else manifest.documents
    plan = Plan(metadata=metadata)
    seen = set()
    for p in files:
        st = p.stat()
        fs = FileState(p, relative_source(p, root), st.st_size, st.st_mtime_ns)
        seen.add(fs.source)
        old = docs.get(fs.source)
        if old is None:
            plan.add.append(fs)
        elif (old.meta or {}) != metadata.get(fs.source, {}):
            plan.update.append(fs)
        elif old.size == fs.size and old.mtime_ns == fs.mtime_ns:
            plan.unchanged += 1
        elif old.size == fs.size and old.sha256 == file_sha256(p):
            plan.unchanged += 1  # touched, same bytes
        else:
            plan.update.append(fs)
    plan.removed = sorted(s for s in docs if s not in seen)
    return plan


def plan_corpus(corpus: Path, manifest: Manifest | None, full: bool = False) -> Plan:
    """Discover the corpus folder and plan against `manifest`."""
    files, skipped = discover(corpus, DEFAULT_IGNORE)
    excluded = load_excluded(corpus)  # removed from the index in the UI, file kept (a shipped document)
    if excluded:
        files = [f for f in files if relative_source(f, corpus) not in excluded]
    plan = plan_changes(files, corpus, manifest, full, load_corpus_metadata(corpus))
    plan.skipped = skipped
    return plan
