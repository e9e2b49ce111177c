"""Loaders: turn a file into a Document (text + page starts + headings + metadata).

Every loader fails with an IngestError naming the file and the reason, so a build can skip one bad
file, report it, and go on. Formats are checked by content (magic bytes), not only by extension.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from rag.errors import IngestError
from rag.ingest.docx import load_docx
from rag.ingest.files import SUPPORTED_EXTENSIONS, Limits, relative_source
from rag.ingest.html import load_html
from rag.ingest.pdf import load_pdf
from rag.ingest.structure import check_not_empty, date_from_name
from rag.ingest.text_formats import load_md, load_txt
from rag.types import Document

_LOADERS = {
    "pdf": load_pdf,
    "txt": load_txt,
    "md": load_md,
    "html": load_html,
    "docx": load_docx,
}


# ---------------------------------------------------------------------------------------------
# Public API


def load_document(
    path: Path,
    root: Path,
    limits: Limits | None = None,
    data: bytes | None = None,
    meta: dict[str, str] | None = None,
    read_from: Path | None = None,
) -> Document:
    """Load one file into a Document, or raise IngestError naming the file and the reason.

    `meta` (from metadata.yaml) overrides the title, date and source_url found in the file. The bytes
    are `data`, else read (size-checked) from `read_from` (an upload not yet in the corpus), else from `path`.
    """
    limits = limits or Limits()
    rel = relative_source(path, root)
    kind = SUPPORTED_EXTENSIONS.get(path.suffix.lower())
    if kind is None:
        raise IngestError(rel, f"unsupported file type '{path.suffix or path.name}'", "unsupported")
    if data is None:
        src = read_from or path
        try:
            size = src.stat().st_size
            if size > limits.max_bytes:
                raise IngestError(
                    rel,
                    f"file is {size / 1e6:.1f} MB, over the limit of {limits.max_bytes / 1e6:.0f} MB (max_file_mb)",
                    "too_large",
                )
            data = src.read_bytes()
        except OSError as e:
            raise IngestError(rel, f"cannot read file ({e.strerror or e})", "error") from None
    check_not_empty(data, rel)
    try:
        fields = _LOADERS[kind](data, rel, limits)
    except IngestError:
        raise
    except (MemoryError, RecursionError) as e:
        raise IngestError(
            rel, f"file too complex to load ({type(e).__name__})", "too_large"
        ) from None
    except Exception as e:  # a parser bug must not abort the build
        raise IngestError(
            rel, f"cannot load {kind.upper()} ({type(e).__name__}: {e})", "corrupt"
        ) from None
    text = fields.pop("text")
    if len(text) > limits.max_text_chars:
        raise IngestError(
            rel, f"{len(text) / 1e6:.0f} million characters of text, over the limit of {limits.max_text_chars / 1e6:.0f} million "
            "(a decompression bomb?)", "too_large")
    if not text.strip():
        raise IngestError(rel, "no text found", "empty")
    headings = fields.pop("headings")
    title = fields.pop("title") or (headings[0].title if headings else "") or Path(rel).stem
    date = fields.pop("date", None)
    name_date = date_from_name(Path(rel).name)
    sha = hashlib.sha256(data).hexdigest()
    meta = meta or {}
    if meta.get("title"):
        title = meta["title"]
    if meta.get("date"):
        date, name_date = meta["date"], None
    if meta.get("source_url"):
        fields["source_url"] = meta["source_url"]
    return Document(
        doc_id=sha[:16],
        sha256=sha,
        source=rel,
        title=re.sub(r"\s+", " ", title)[:300],
        text=text,
        headings=headings,
        date=name_date if (name_date and kind == "pdf") else (date or name_date),
        file_type=kind,
        **fields,
    )
