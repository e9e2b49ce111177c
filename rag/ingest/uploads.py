"""Checks on an upload before it enters the corpus: a safe file name, a supported type by content, a size."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from rag.errors import ConfigError
from rag.ingest.files import SUPPORTED_EXTENSIONS

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
