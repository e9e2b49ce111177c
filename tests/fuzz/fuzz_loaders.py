"""Coverage-guided fuzzing of every loader with atheris (libFuzzer).

    python tests/fuzz/fuzz_loaders.py SEED_DIR -runs=20000 -max_total_time=300

The first input byte picks the format; the rest are the file's bytes. Any exception other than
IngestError, a hang (-timeout) or a crash of a C parser (pdfium, libxml2) is a finding. The seeds
are valid files of each format (tests/test_fuzz.py writes them).
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["rag", "bs4", "docx", "yaml"]):
    from rag.errors import IngestError
    from rag.ingest.files import Limits
    from rag.ingest.load import load_document

EXTS = [".pdf", ".docx", ".html", ".md", ".txt"]
LIMITS = Limits(max_pages=200, max_unzipped_bytes=20 * 1024 * 1024)


def one_input(data: bytes) -> None:
    if not data:
        return
    ext = EXTS[data[0] % len(EXTS)]
    try:
        doc = load_document(Path(f"fuzz{ext}"), Path("."), LIMITS, data=data[1:])
    except IngestError as e:
        if not str(e).startswith(f"fuzz{ext}: "):
            raise AssertionError(f"error does not name the file: {e}") from None
        return
    # a loaded document must be self-consistent, whatever the bytes were
    assert doc.text.strip(), "empty text"
    assert list(doc.page_starts) == sorted(doc.page_starts) and doc.page_starts[0] == 0
    assert all(0 <= p <= len(doc.text) for p in doc.page_starts)
    assert all(0 <= h.char_start <= len(doc.text) and 1 <= h.level <= 9 for h in doc.headings)
    assert doc.title.strip()


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
