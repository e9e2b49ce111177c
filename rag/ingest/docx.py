"""DOCX loader (python-docx), with the zip container checked for bombs first."""

from __future__ import annotations

import io
import re
import zipfile
from typing import Any

from rag.errors import IngestError
from rag.ingest.files import Limits
from rag.ingest.structure import clean_text, detect_headings
from rag.types import Heading


def check_zip(data: bytes, rel: str, limits: Limits) -> None:
    if not data.startswith(b"PK"):
        raise IngestError(rel, "not a DOCX (not a zip container)", "corrupt")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            infos = z.infolist()
            total = sum(i.file_size for i in infos)
            names = {i.filename for i in infos}
    except zipfile.BadZipFile as e:
        raise IngestError(rel, f"corrupt DOCX ({e})", "corrupt") from None
    if total > limits.max_unzipped_bytes:
        raise IngestError(
            rel, f"DOCX unpacks to {total / 1e6:.0f} MB, over the limit (zip bomb?)", "too_large"
        )
    if "word/document.xml" not in names:
        if "EncryptedPackage" in names:
            raise IngestError(rel, "encrypted DOCX (password required)", "encrypted")
        raise IngestError(rel, "not a DOCX (no word/document.xml)", "corrupt")


def load_docx(data: bytes, rel: str, limits: Limits) -> dict[str, Any]:
    if data.startswith(b"\xd0\xcf\x11\xe0"):
        raise IngestError(
            rel, "encrypted or legacy .doc file (OLE container), not a DOCX", "encrypted"
        )
    check_zip(data, rel, limits)
    import docx

    try:
        d = docx.Document(io.BytesIO(data))
    except Exception as e:
        raise IngestError(rel, f"corrupt DOCX ({e})", "corrupt") from None
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    out: list[str] = []
    headings: list[Heading] = []
    pos = 0
    for item in d.iter_inner_content():
        if isinstance(item, Paragraph):
            txt = clean_text(item.text)
            if not txt:
                continue
            style = (item.style.name if item.style is not None else "") or ""
            m = re.match(r"Heading (\d)", style)
            if m or style == "Title":
                headings.append(Heading(pos, int(m.group(1)) if m else 1, txt))
            out.append(txt)
            pos += len(txt) + 2
        elif isinstance(item, Table):
            rows = []
            for row in item.rows:
                cells = []
                for c in row.cells:
                    t = clean_text(c.text).replace("\n", " ")
                    if not cells or cells[-1] != t:  # merged cells repeat
                        cells.append(t)
                rows.append(" | ".join(cells))
            txt = "\n".join(r for r in rows if r.strip(" |"))
            if txt:
                out.append(txt)
                pos += len(txt) + 2
    text = "\n\n".join(out)
    cp = d.core_properties
    return {
        "text": text,
        "page_starts": (0,),
        "headings": tuple(detect_headings(text, headings, heuristic=not headings)),
        "title": (cp.title or "").strip(),
        "date": cp.created.date().isoformat() if cp.created else None,
        "has_pages": False,
    }
