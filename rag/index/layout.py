"""The self-describing index on disk: FAISS vectors + SQLite chunk rows + manifest.json, in generations.

Layout of an index folder::

    index/CURRENT          name of the live generation (replaced atomically)
    index/gen-000007/      manifest.json, chunks.sqlite, faiss.index, bm25/, bm25_ids.npy
    index/.build.lock      held by the one build that may run at a time

A build writes a complete new generation beside the live one and then swaps CURRENT with
os.replace, so a crash or a kill at any point leaves the previous generation fully usable, and a
reader never sees a half-written index. Vectors are also kept in SQLite, so the FAISS file can always
be rebuilt and checked against the rows.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import ConfigError, IndexCorruptError, RagError
from rag.faults import checkpoint
from rag.types import Chunk

FORMAT_VERSION = 2  # 2: BM25 index beside FAISS
MANIFEST = "manifest.json"
SQLITE = "chunks.sqlite"
FAISS_FILE = "faiss.index"
CURRENT = "CURRENT"
BM25_DIR = "bm25"
BM25_IDS = "bm25_ids.npy"

SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    source TEXT PRIMARY KEY,
    doc_id TEXT NOT NULL,
    title TEXT NOT NULL,
    date TEXT,
    source_url TEXT,
    file_type TEXT,
    pages INTEGER,
    has_pages INTEGER,
    sha256 TEXT,
    size INTEGER,
    mtime_ns INTEGER,
    n_chunks INTEGER
);
CREATE TABLE IF NOT EXISTS chunks (
    faiss_id INTEGER PRIMARY KEY,
    chunk_id TEXT NOT NULL UNIQUE,
    doc_id TEXT NOT NULL,
    source TEXT NOT NULL,
    ordinal INTEGER NOT NULL,
    text TEXT NOT NULL,
    char_start INTEGER NOT NULL,
    char_end INTEGER NOT NULL,
    page INTEGER NOT NULL,
    page_end INTEGER NOT NULL,
    section TEXT NOT NULL,
    n_tokens INTEGER NOT NULL,
    embed_text TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_source ON chunks(source, ordinal);
CREATE INDEX IF NOT EXISTS chunks_hash ON chunks(text_hash);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id);
"""

CHUNK_COLS = "c.faiss_id, c.chunk_id, c.doc_id, c.source, c.ordinal, c.text, c.char_start, c.char_end, c.page, c.page_end, c.section, c.n_tokens, c.embed_text, d.title, d.date"


def row_to_chunk(r: Sequence[Any]) -> Chunk:
    return Chunk(
        chunk_id=r[1],
        doc_id=r[2],
        source=r[3],
        ordinal=r[4],
        text=r[5],
        char_start=r[6],
        char_end=r[7],
        page=r[8],
        page_end=r[9],
        section=r[10],
        n_tokens=r[11],
        embed_text=r[12],
        title=r[13],
        date=r[14],
    )


# ---------------------------------------------------------------------------------------------
# FAISS helpers


def new_faiss_index(
    kind: str, dim: int, *, hnsw_m: int = 32, nlist: int = 0, n_hint: int = 0
) -> Any:
    import faiss

    if kind == "flat":
        base = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        base = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        base.hnsw.efConstruction = 80
    elif kind == "ivf":
        nlist = nlist or max(1, min(65536, int(4 * np.sqrt(max(n_hint, 1))), n_hint // 39))
        base = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    else:
        raise RagError(f"unknown faiss_index '{kind}' (use flat, hnsw or ivf)")
    return faiss.IndexIDMap2(base)


def faiss_ids(index: Any) -> np.ndarray:
    import faiss

    return faiss.vector_to_array(index.id_map).astype(np.int64)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


# ---------------------------------------------------------------------------------------------
# Reading


def check_index_dir(index_dir: Path) -> None:
    """A path given as the index folder that is a file (or sits under one) is a bad setting, not a traceback."""
    p = Path(index_dir)
    for q in (p, *p.parents):
        if q.exists():
            if not q.is_dir():
                what = "is a file" if q == p else f"lies under {q}, which is a file"
                raise ConfigError(f"index folder {p} {what}, not a folder; pass --index a folder")
            return


def current_generation(index_dir: Path) -> Path | None:
    cur = index_dir / CURRENT
    try:
        name = cur.read_text().strip()
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        check_index_dir(index_dir)
        raise
    except (OSError, UnicodeDecodeError) as e:
        raise IndexCorruptError(f"cannot read {cur}: {e}; run `rag index build --full`") from None
    if not name.startswith("gen-") or "/" in name or "\\" in name:
        raise IndexCorruptError(f"{cur} names '{name[:80]}', not a generation; run `rag index build --full`")
    gen = index_dir / name
    return gen if gen.is_dir() else None


# ---------------------------------------------------------------------------------------------
# Writing a new generation


@contextlib.contextmanager
def build_lock(index_dir: Path) -> Iterator[None]:
    check_index_dir(index_dir)
    try:
        index_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create index folder {index_dir}: {e.strerror or e}") from None
    fd = os.open(index_dir / ".build.lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RagError(
                f"another build of {index_dir} is running; wait for it to finish"
            ) from None
        yield
    finally:
        os.close(fd)


def prune_generations(index_dir: Path, previous: Path | None = None) -> None:
    """Keep CURRENT's generation and the one before it (a reader that opened it keeps working);
    remove older ones, generations a killed build renamed but never published, and tmp-* folders.
    Call under the build lock."""
    current = current_generation(index_dir)
    if current is None:
        return
    if previous is None:
        older = sorted(p.name for p in index_dir.glob("gen-*") if p.name < current.name)
        previous = index_dir / older[-1] if older else None
    keep = {current.name} | ({previous.name} if previous is not None else set())
    for old in sorted(index_dir.glob("gen-*")) + sorted(index_dir.glob("tmp-*")):
        if old.name not in keep:
            shutil.rmtree(old, ignore_errors=True)
            checkpoint("publish.old_generation_removed")
