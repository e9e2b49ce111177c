"""Checks on an upload before it enters the corpus: a safe file name, a supported type by content, a size."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import unicodedata
from collections.abc import Sequence
from pathlib import Path

from rag.errors import ConfigError, IngestError
from rag.ingest.files import SUPPORTED_EXTENSIONS, Limits, file_sha256
from rag.ingest.sandbox import load_safely

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


def upload_target(folder: Path, safe: str, taken: set[Path]) -> Path:
    """A free path for an upload: `name.ext`, else `name-2.ext`, ... (also free of this batch's other uploads)."""
    target = folder / safe
    stem, ext = target.stem, target.suffix
    i = 2
    while target.exists() or target in taken:
        target = folder / f"{stem}-{i}{ext}"
        i += 1
    return target


def refuse_duplicate(name: str, digest: str, known: dict[str, str]) -> None:
    """The same bytes are indexed once: a second copy under another name is refused, never written."""
    if digest in known:
        raise ConfigError(f"upload '{name}': the same content is already in the corpus as {known[digest]}; nothing was added")


def stage_uploads(uploads: Sequence[tuple[Path, str]], corpus: Path, known: dict[str, str], max_bytes: int,
                  limits: Limits) -> tuple[list[tuple[Path, Path]], list[str]]:
    """(temp file, target in corpus/uploads) for each acceptable upload, and a message for each refused one.

    Nothing is written: names are cleaned, types checked by content, the same bytes as a document in the corpus
    (`known`: sha256 -> source) or earlier in the batch refused, and each file parsed in the isolated loader (a
    hostile upload costs a child process, not the server).
    """
    staged: list[tuple[Path, Path]] = []
    rejected: list[str] = []
    for tmp, name in uploads:
        try:
            safe = sanitize_filename(name)
            check_upload_content(Path(tmp), name, max_bytes)
            digest = file_sha256(Path(tmp))
            refuse_duplicate(name, digest, known)
            target = upload_target(corpus / "uploads", safe, {t for _, t in staged})
            load_safely(target, corpus, limits, read_from=Path(tmp))
            known[digest] = target.relative_to(corpus).as_posix()
            staged.append((Path(tmp), target))
        except (ConfigError, IngestError) as e:
            rejected.append(str(e))
    return staged, rejected


def write_uploads(staged: list[tuple[Path, Path]]) -> list[Path]:
    """Copy (temp file, target) pairs into the corpus, each through a hidden .part file and an atomic rename.

    On any failure the files written so far are removed again and the error re-raised.
    """
    written: list[Path] = []
    try:
        for tmp, target in staged:
            target.parent.mkdir(parents=True, exist_ok=True)
            part = target.with_name(f".{target.name}.part")
            shutil.copyfile(tmp, part)
            os.replace(part, target)
            written.append(target)
    except BaseException:
        remove_files(written)
        raise
    return written


def remove_files(paths: list[Path]) -> None:
    """Roll back uploads written into the corpus (their index update failed)."""
    for p in paths:
        with contextlib.suppress(OSError):
            p.unlink()
