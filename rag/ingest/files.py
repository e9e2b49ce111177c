"""Which files make up a corpus, their metadata.yaml entries and hashes, and the per-file limits.

Every problem names the file, so a build can skip one bad file, report it, and go on.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from rag.errors import IngestError

SUPPORTED_EXTENSIONS = {
    ".pdf": "pdf",
    ".md": "md",
    ".markdown": "md",
    ".html": "html",
    ".htm": "html",
    ".txt": "txt",
    ".text": "txt",
    ".docx": "docx",
}
METADATA_FILE = "metadata.yaml"
DEFAULT_IGNORE = ("SOURCES.md", METADATA_FILE)
EXCLUDE_FILE = ".rag-exclude"  # sources removed from the index whose files stay (hidden: never indexed itself)


def load_excluded(root: Path) -> set[str]:
    """Sources listed in the corpus's `.rag-exclude` (one a line, `#` comments): kept on disk, never indexed.

    Removing a shipped document in the UI writes it here instead of deleting the file; deleting its line
    brings the document back on the next build.
    """
    path = root / EXCLUDE_FILE
    if not path.is_file():
        return set()
    lines = (ln.strip() for ln in path.read_text(encoding="utf-8", errors="replace").splitlines())
    return {ln for ln in lines if ln and not ln.startswith("#")}


def set_excluded(root: Path, source: str, excluded: bool) -> None:
    """Add `source` to (or take it off) the corpus's `.rag-exclude`, written atomically."""
    current = load_excluded(root)
    new = current | {source} if excluded else current - {source}
    if new == current:
        return
    path = root / EXCLUDE_FILE
    tmp = path.with_name(path.name + ".tmp")
    header = "# documents removed from the index; their files stay. Delete a line to index it again.\n"
    tmp.write_text(header + "".join(f"{s}\n" for s in sorted(new)), encoding="utf-8")
    os.replace(tmp, path)


_META_KEYS = ("title", "date", "source_url", "kind", "identifiers", "signed", "published", "effective", "relations")


@dataclass(frozen=True)
class Limits:
    """Per-file bounds on time and memory (from settings)."""

    max_bytes: int = 100 * 1024 * 1024
    max_pages: int = 5000
    max_unzipped_bytes: int = 200 * 1024 * 1024
    timeout_s: float = 120.0  # per file, enforced by the isolated loader (0 = none)
    max_memory_mb: int = 4096  # address space of the loader process (0 = no cap)
    isolate: bool = True  # load in a child process: a parser crash or hang costs one file
    max_text_chars: int = 50_000_000  # extracted text (a 5000-page PDF holds ~15M): bounds chunking and memory after


# ---------------------------------------------------------------------------------------------
# Discovery


def discover(
    root: Path, ignore: tuple[str, ...] = DEFAULT_IGNORE
) -> tuple[list[Path], list[IngestError]]:
    """Files under `root` to index, sorted, and the files skipped with why.

    Hidden files and folders are skipped silently; symlinks are never followed out of the corpus.
    """
    root = root.resolve()
    files: list[Path] = []
    skipped: list[IngestError] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or name in ignore:
                continue
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                try:
                    target = path.resolve(strict=True)
                except (OSError, RuntimeError):  # dangling or a loop
                    skipped.append(IngestError(rel, "broken symlink (dangling or a loop); not followed", "unsupported"))
                    continue
                if not target.is_relative_to(root):
                    skipped.append(
                        IngestError(
                            rel, "symlink points outside the corpus; not followed", "unsupported"
                        )
                    )
                    continue
            if path.suffix.lower() not in SUPPORTED_EXTENSIONS:
                skipped.append(
                    IngestError(
                        rel, f"unsupported file type '{path.suffix or name}'", "unsupported"
                    )
                )
                continue
            files.append(path)
    return files, skipped


def relative_source(path: Path, root: Path) -> str:
    """The document's `source`: its path relative to the corpus root, forward slashes."""
    for p, r in (
        (Path(os.path.abspath(path)), Path(os.path.abspath(root))),
        (path.resolve(), root.resolve()),
    ):
        try:
            return p.relative_to(r).as_posix()
        except ValueError:
            continue
    return path.name


def load_corpus_metadata(root: Path) -> dict[str, dict[str, str]]:
    """Optional `metadata.yaml` at the corpus root: {relative path: {title, date, source_url}}.

    It overrides what a loader finds, for files that carry no usable title or date (many PDFs).
    """
    path = root / METADATA_FILE
    if not path.is_file():
        return {}
    import yaml

    from rag.errors import ConfigError

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of file path -> {{title, date, source_url}}")
    out: dict[str, dict[str, str]] = {}
    for src, entry in data.items():
        if not isinstance(entry, dict) or set(entry) - set(_META_KEYS):
            raise ConfigError(
                f"{path}: entry '{src}' must be a mapping with keys among {', '.join(_META_KEYS)}"
            )
        # identifiers and relations (issue 13) stay lists; the rest are strings
        out[str(src)] = {k: (v if isinstance(v, list) else str(v)) for k, v in entry.items() if v is not None}
    return out


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
