"""The self-describing index: FAISS vectors + SQLite chunk rows + manifest.json, in generations.

Layout of an index folder::

    index/CURRENT          name of the live generation (replaced atomically)
    index/gen-000007/      manifest.json, chunks.sqlite, faiss.index
    index/.build.lock      held by the one build that may run at a time

A build writes a complete new generation beside the live one and then swaps CURRENT with
os.replace, so a crash or a kill at any point leaves the previous generation fully usable, and a
reader never sees a half-written index. Vectors are also kept in SQLite, so the FAISS file can always
be rebuilt and checked against the rows.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import IndexCorruptError, IndexMismatchError, IndexMissingError, RagError
from .faults import checkpoint
from .types import Chunk

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
"""

_CHUNK_COLS = "c.faiss_id, c.chunk_id, c.doc_id, c.source, c.ordinal, c.text, c.char_start, c.char_end, c.page, c.page_end, c.section, c.n_tokens, c.embed_text, d.title, d.date"


def _row_to_chunk(r: Sequence[Any]) -> Chunk:
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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


# ---------------------------------------------------------------------------------------------
# Reading


def current_generation(index_dir: Path) -> Path | None:
    cur = index_dir / CURRENT
    try:
        name = cur.read_text().strip()
    except FileNotFoundError:
        return None
    gen = index_dir / name
    return gen if gen.is_dir() else None


def read_manifest(index_dir: Path) -> dict[str, Any] | None:
    gen = current_generation(index_dir)
    if gen is None:
        return None
    try:
        return json.loads((gen / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise IndexCorruptError(
            f"cannot read {gen / MANIFEST}: {e}; run `rag index build --full`"
        ) from None


def check_compatible(
    manifest: dict[str, Any], embedding_model: str, chunk_config: dict[str, Any], index_dir: Path
) -> None:
    """Refuse an index built with another embedding model or chunk settings."""
    if manifest.get("format_version") != FORMAT_VERSION:
        raise IndexMismatchError(
            f"index at {index_dir} has format version {manifest.get('format_version')}, this version reads {FORMAT_VERSION}; "
            f"run `rag index build --full`"
        )
    built_model = manifest["embedding"]["model"]
    if built_model != embedding_model:
        raise IndexMismatchError(
            f"index at {index_dir} was built with embedding model '{built_model}', but settings name '{embedding_model}'; "
            f"run `rag index build --full` to rebuild it (or set embedding_model back)"
        )
    built_chunks = manifest.get("chunking", {})
    if built_chunks != chunk_config:
        diff = {
            k: (built_chunks.get(k), v) for k, v in chunk_config.items() if built_chunks.get(k) != v
        }
        desc = ", ".join(f"{k}: index {a} vs settings {b}" for k, (a, b) in diff.items())
        raise IndexMismatchError(
            f"index at {index_dir} was built with other chunk settings ({desc}); run `rag index build --full` to rebuild it"
        )


@dataclass
class DocumentInfo:
    source: str
    doc_id: str
    title: str
    date: str | None
    source_url: str | None
    file_type: str
    pages: int
    has_pages: bool
    n_chunks: int


class _Rows(list):  # type: ignore[type-arg]
    def fetchall(self) -> list[Any]:
        return list(self)

    def fetchone(self) -> Any:
        return self[0] if self else None


class _LockedDB:
    """One read-only SQLite connection shared by threads: each query runs to completion under a lock."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    def execute(self, sql: str, args: Sequence[Any] = ()) -> _Rows:
        with self._lock:
            return _Rows(self._conn.execute(sql, args).fetchall())

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class IndexStore:
    """A read-only view of one generation. Cheap to reopen; `refresh()` follows CURRENT."""

    def __init__(self, index_dir: Path) -> None:
        self.index_dir = Path(index_dir)
        gen = current_generation(self.index_dir)
        if gen is None:
            raise IndexMissingError(f"no index at {self.index_dir}; run `rag index build` first")
        self.generation = gen
        try:
            self.manifest: dict[str, Any] = json.loads((gen / MANIFEST).read_text())
            import faiss

            self.faiss = faiss.read_index(str(gen / FAISS_FILE))
        except Exception as e:
            raise IndexCorruptError(
                f"cannot open index at {gen}: {e}; run `rag index build --full`"
            ) from None
        self.db = _LockedDB(sqlite3.connect(f"file:{gen / SQLITE}?mode=ro&immutable=1", uri=True, check_same_thread=False))
        self._apply_search_params()

    @classmethod
    def open(
        cls,
        index_dir: Path,
        embedding_model: str | None = None,
        chunk_config: dict[str, Any] | None = None,
    ) -> IndexStore:
        store = cls(index_dir)
        if embedding_model is not None and chunk_config is not None:
            check_compatible(store.manifest, embedding_model, chunk_config, store.index_dir)
        return store

    def _apply_search_params(self, ef_search: int = 128, nprobe: int = 16) -> None:
        import faiss

        base = faiss.downcast_index(self.faiss.index)
        if isinstance(base, faiss.IndexHNSWFlat):
            base.hnsw.efSearch = ef_search
        elif isinstance(base, faiss.IndexIVF):
            base.nprobe = nprobe
            base.make_direct_map()  # so vectors can be reconstructed by id

    @property
    def bm25(self) -> tuple[Any, np.ndarray]:
        """(bm25s model, FAISS id of each BM25 row), loaded on first use."""
        if getattr(self, "_bm25", None) is None:
            import bm25s

            try:
                model = bm25s.BM25.load(str(self.generation / BM25_DIR), allow_pickle=False, show_progress=False)
                ids = np.load(self.generation / BM25_IDS, allow_pickle=False)
            except Exception as e:
                raise IndexCorruptError(f"cannot open BM25 index in {self.generation}: {e}; run `rag index build --full`") from None
            self._bm25 = (model, ids)
            self._bm25_pos = {int(f): i for i, f in enumerate(ids)}
        return self._bm25

    def bm25_search(self, query: str, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, FAISS ids) of the top-k chunks by BM25; `allowed` restricts to those ids."""
        from .lexical import lexical_tokens

        model, ids = self.bm25
        vocab = model.vocab_dict
        toks = [t for t in lexical_tokens(query) if t in vocab]
        if not toks or len(ids) == 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        scores = model.get_scores(toks)
        if allowed is not None:
            mask = np.zeros(len(ids), dtype=bool)
            pos = [self._bm25_pos[int(a)] for a in allowed if int(a) in self._bm25_pos]
            mask[pos] = True
            scores = np.where(mask, scores, 0.0)
        k = min(k, int((scores > 0).sum()))
        if k <= 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return scores[top].astype(np.float32), ids[top]

    def set_search_params(self, ef_search: int, nprobe: int) -> None:
        self._apply_search_params(ef_search, nprobe)

    def is_stale(self) -> bool:
        return current_generation(self.index_dir) != self.generation

    def close(self) -> None:
        self.db.close()

    @property
    def index_id(self) -> str:
        return str(self.manifest.get("index_id", ""))

    @property
    def dimension(self) -> int:
        return int(self.manifest["embedding"]["dimension"])

    def __len__(self) -> int:
        return int(self.faiss.ntotal)

    # -- queries ---------------------------------------------------------------------------

    def documents(self) -> list[DocumentInfo]:
        rows = self.db.execute(
            "SELECT source, doc_id, title, date, source_url, file_type, pages, has_pages, n_chunks FROM documents ORDER BY source"
        ).fetchall()
        return [
            DocumentInfo(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bool(r[7]), r[8]) for r in rows
        ]

    def ids_matching(self, filters: dict[str, Sequence[str]] | None) -> np.ndarray | None:
        """FAISS ids of chunks whose document matches every filter key (any of its values).

        `source` and `title` match when equal or containing the value (case-insensitive); `doc_id`
        and `date` when equal or starting with it. None = no restriction.
        """
        if not filters:
            return None
        where, args = [], []
        for key, values in filters.items():
            if key not in ("source", "title", "doc_id", "date", "file_type"):
                raise RagError(
                    f"unknown filter key '{key}' (use source, title, doc_id, date or file_type)"
                )
            ors = []
            for v in values:
                if key in ("source", "title"):
                    ors.append(f"(d.{key} = ? OR instr(lower(d.{key}), lower(?)) > 0)")
                    args += [v, v]
                else:
                    ors.append(f"(d.{key} = ? OR d.{key} LIKE ? || '%')")
                    args += [v, v]
            where.append("(" + " OR ".join(ors) + ")")
        sql = f"SELECT c.faiss_id FROM chunks c JOIN documents d ON d.source = c.source WHERE {' AND '.join(where)}"
        return np.array([r[0] for r in self.db.execute(sql, args)], dtype=np.int64)

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Inner-product search; `allowed` restricts to those FAISS ids (exact over the subset)."""
        import faiss

        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim == 1:
            queries = queries[None, :]
        if queries.shape[1] != self.faiss.d:
            raise IndexMismatchError(
                f"query vectors have dimension {queries.shape[1]}, the index {self.faiss.d}; run `rag index build --full`"
            )
        if self.faiss.ntotal == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        if allowed is not None:
            if len(allowed) == 0:
                return np.zeros((len(queries), 0), np.float32), np.zeros(
                    (len(queries), 0), np.int64
                )
            if len(allowed) <= 20000:
                return self._search_subset(queries, k, allowed)
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed))
            scores, ids = self.faiss.search(queries, min(k, len(allowed)), params=params)
        else:
            scores, ids = self.faiss.search(queries, min(k, int(self.faiss.ntotal)))
        return scores, ids

    def _search_subset(
        self, queries: np.ndarray, k: int, allowed: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        vecs = self.vectors(allowed)
        sims = queries @ vecs.T
        k = min(k, len(allowed))
        top = (
            np.argpartition(-sims, k - 1, axis=1)[:, :k]
            if k < len(allowed)
            else np.tile(np.arange(len(allowed)), (len(queries), 1))
        )
        rows = np.arange(len(queries))[:, None]
        order = np.argsort(-sims[rows, top], axis=1, kind="stable")
        top = top[rows, order]
        return sims[rows, top].astype(np.float32), allowed[top]

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """Vectors by FAISS id from FAISS itself (IndexIDMap2 keeps the reverse map)."""
        return self.faiss.reconstruct_batch(np.ascontiguousarray(ids, dtype=np.int64))

    def chunks(self, ids: Iterable[int]) -> dict[int, Chunk]:
        ids = [int(i) for i in ids if int(i) >= 0]
        out: dict[int, Chunk] = {}
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            q = f"SELECT {_CHUNK_COLS} FROM chunks c JOIN documents d ON d.source = c.source WHERE c.faiss_id IN ({','.join('?' * len(part))})"
            for r in self.db.execute(q, part):
                out[int(r[0])] = _row_to_chunk(r)
        return out

    def neighbours(self, chunk: Chunk, before: int = 1, after: int = 1) -> list[Chunk]:
        q = f"SELECT {_CHUNK_COLS} FROM chunks c JOIN documents d ON d.source = c.source WHERE c.source = ? AND c.ordinal BETWEEN ? AND ? ORDER BY c.ordinal"
        return [
            _row_to_chunk(r)
            for r in self.db.execute(
                q, (chunk.source, chunk.ordinal - before, chunk.ordinal + after)
            )
        ]

    def iter_chunks(self, batch: int = 1000) -> Iterator[Chunk]:
        last_src, last_ord = "", -1
        while True:  # keyset pages, so no query holds the shared connection for long
            rows = self.db.execute(
                f"SELECT {_CHUNK_COLS} FROM chunks c JOIN documents d ON d.source = c.source "
                "WHERE (c.source, c.ordinal) > (?, ?) ORDER BY c.source, c.ordinal LIMIT ?",
                (last_src, last_ord, batch),
            )
            if not rows:
                return
            yield from (_row_to_chunk(r) for r in rows)
            last_src, last_ord = rows[-1][3], rows[-1][4]

    def check(self) -> list[str]:
        """Consistency problems (empty list = consistent): FAISS ids == SQLite rows == manifest."""
        problems = []
        ids_f = set(faiss_ids(self.faiss).tolist())
        if len(ids_f) != self.faiss.ntotal:
            problems.append(
                f"FAISS holds {self.faiss.ntotal} vectors but {len(ids_f)} distinct ids"
            )
        ids_s = {r[0] for r in self.db.execute("SELECT faiss_id FROM chunks")}
        if ids_f != ids_s:
            problems.append(
                f"FAISS ids and SQLite rows differ: {len(ids_f - ids_s)} only in FAISS, {len(ids_s - ids_f)} only in SQLite"
            )
        docs_m = self.manifest.get("documents", {})
        docs_s = {
            r[0]: (r[1], r[2])
            for r in self.db.execute("SELECT source, doc_id, n_chunks FROM documents")
        }
        if set(docs_m) != set(docs_s):
            problems.append(
                f"manifest and SQLite list different documents: {sorted(set(docs_m) ^ set(docs_s))[:5]}"
            )
        for src, (doc_id, n) in docs_s.items():
            m = docs_m.get(src)
            if m and (m.get("doc_id") != doc_id or m.get("chunks") != n):
                problems.append(
                    f"{src}: manifest says {m.get('chunks')} chunks / {m.get('doc_id')}, SQLite {n} / {doc_id}"
                )
        per_doc = dict(
            self.db.execute("SELECT source, count(*) FROM chunks GROUP BY source").fetchall()
        )
        for src, (_, n) in docs_s.items():
            if per_doc.get(src, 0) != n:
                problems.append(
                    f"{src}: documents row says {n} chunks, chunks table holds {per_doc.get(src, 0)}"
                )
        total = self.manifest.get("counts", {}).get("chunks")
        if total is not None and total != len(ids_s):
            problems.append(f"manifest counts {total} chunks, SQLite holds {len(ids_s)}")
        try:
            bm_ids = set(np.load(self.generation / BM25_IDS, allow_pickle=False).tolist())
            if bm_ids != ids_s:
                problems.append(f"BM25 rows and SQLite rows differ ({len(bm_ids ^ ids_s)} ids)")
        except OSError as e:
            problems.append(f"BM25 index missing: {e}")
        if self.faiss.d != self.dimension:
            problems.append(
                f"FAISS dimension {self.faiss.d} != manifest dimension {self.dimension}"
            )
        return problems


# ---------------------------------------------------------------------------------------------
# Writing a new generation


@contextlib.contextmanager
def build_lock(index_dir: Path) -> Iterator[None]:
    index_dir.mkdir(parents=True, exist_ok=True)
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


class GenerationWriter:
    """Builds the next generation in a temp folder, then publishes it atomically."""

    def __init__(self, index_dir: Path, base: Path | None) -> None:
        self.index_dir = index_dir  # tmp-* left by a killed build go in prune_generations after publishing
        self.tmp = index_dir / f"tmp-{os.getpid()}-{int(time.time() * 1000)}"
        self.tmp.mkdir(parents=True)
        if base is not None:
            src = sqlite3.connect(f"file:{base / SQLITE}?mode=ro", uri=True)
            dst = sqlite3.connect(self.tmp / SQLITE)
            with dst:
                src.backup(dst)
            src.close()
            dst.close()
        self.db = sqlite3.connect(self.tmp / SQLITE)
        self.db.execute("PRAGMA journal_mode=OFF")
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.executescript(SCHEMA)

    # rows ---------------------------------------------------------------------------------

    def take_vectors_of(self, sources: Sequence[str]) -> dict[str, np.ndarray]:
        """text_hash -> vector for the chunks of these documents (the embedding cache)."""
        cache: dict[str, np.ndarray] = {}
        for i in range(0, len(sources), 500):
            part = list(sources[i : i + 500])
            for h, blob in self.db.execute(
                f"SELECT text_hash, vector FROM chunks WHERE source IN ({','.join('?' * len(part))})",
                part,
            ):
                cache[h] = np.frombuffer(blob, dtype=np.float32)
        return cache

    def lookup_vectors(self, text_hashes: Sequence[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for i in range(0, len(text_hashes), 500):
            part = list(text_hashes[i : i + 500])
            for h, blob in self.db.execute(
                f"SELECT text_hash, vector FROM chunks WHERE text_hash IN ({','.join('?' * len(part))})",
                part,
            ):
                out[h] = np.frombuffer(blob, dtype=np.float32)
        return out

    def delete_documents(self, sources: Sequence[str]) -> np.ndarray:
        """Remove documents and their chunks; returns the FAISS ids removed."""
        removed: list[int] = []
        for i in range(0, len(sources), 500):
            part = list(sources[i : i + 500])
            marks = ",".join("?" * len(part))
            removed += [
                r[0]
                for r in self.db.execute(
                    f"SELECT faiss_id FROM chunks WHERE source IN ({marks})", part
                )
            ]
            self.db.execute(f"DELETE FROM chunks WHERE source IN ({marks})", part)
            self.db.execute(f"DELETE FROM documents WHERE source IN ({marks})", part)
        return np.array(removed, dtype=np.int64)

    def add_document(self, row: dict[str, Any]) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO documents (source, doc_id, title, date, source_url, file_type, pages, has_pages, sha256, size, mtime_ns, n_chunks)"
            " VALUES (:source, :doc_id, :title, :date, :source_url, :file_type, :pages, :has_pages, :sha256, :size, :mtime_ns, :n_chunks)",
            row,
        )

    def add_chunks(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> np.ndarray:
        ids = np.array([c.faiss_id for c in chunks], dtype=np.int64)
        self.db.executemany(
            "INSERT INTO chunks (faiss_id, chunk_id, doc_id, source, ordinal, text, char_start, char_end, page, page_end, section, n_tokens, embed_text, text_hash, vector)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                (
                    int(fid),
                    c.chunk_id,
                    c.doc_id,
                    c.source,
                    c.ordinal,
                    c.text,
                    c.char_start,
                    c.char_end,
                    c.page,
                    c.page_end,
                    c.section,
                    c.n_tokens,
                    c.embed_text,
                    c.text_hash,
                    np.ascontiguousarray(v, dtype=np.float32).tobytes(),
                )
                for fid, c, v in zip(ids, chunks, vectors, strict=True)
            ],
        )
        return ids

    def iter_vectors(self, batch: int = 8192) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        cur = self.db.execute("SELECT faiss_id, vector FROM chunks ORDER BY faiss_id")
        while rows := cur.fetchmany(batch):
            yield (
                np.array([r[0] for r in rows], dtype=np.int64),
                np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows]),
            )

    def count_chunks(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM chunks").fetchone()[0])

    def documents_rows(self) -> dict[str, dict[str, Any]]:
        cols = [
            "source",
            "doc_id",
            "title",
            "date",
            "source_url",
            "file_type",
            "pages",
            "has_pages",
            "sha256",
            "size",
            "mtime_ns",
            "n_chunks",
        ]
        rows = self.db.execute(
            f"SELECT {', '.join(cols)} FROM documents ORDER BY source"
        ).fetchall()
        return {r[0]: dict(zip(cols, r, strict=True)) for r in rows}

    # publish ------------------------------------------------------------------------------

    def publish(self, index: Any, manifest: dict[str, Any]) -> Path:
        """Write FAISS + manifest, fsync, rename into place and swap CURRENT atomically.

        A kill at any line leaves CURRENT naming a complete generation: the old one up to the
        os.replace, the new one after it. Leftovers (tmp-*, an unpublished gen-*) are removed by
        the next build.
        """
        import faiss

        self.db.commit()
        checkpoint("publish.sqlite_committed")
        self._write_bm25()
        checkpoint("publish.bm25_written")
        self.db.close()
        faiss.write_index(index, str(self.tmp / FAISS_FILE))
        checkpoint("publish.faiss_written")
        (self.tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=False))
        checkpoint("publish.manifest_written")
        for name in (SQLITE, FAISS_FILE, MANIFEST, BM25_IDS):
            _fsync_file(self.tmp / name)
        for f in (self.tmp / BM25_DIR).iterdir():
            _fsync_file(f)
        _fsync_dir(self.tmp)
        checkpoint("publish.fsynced")
        previous = current_generation(self.index_dir)
        gens = sorted(p.name for p in self.index_dir.glob("gen-*"))
        n = (int(gens[-1].split("-")[1]) + 1) if gens else 1
        final = self.index_dir / f"gen-{n:06d}"
        os.rename(self.tmp, final)
        checkpoint("publish.generation_renamed")
        cur_tmp = self.index_dir / f"{CURRENT}.tmp"
        cur_tmp.write_text(final.name + "\n")
        _fsync_file(cur_tmp)
        checkpoint("publish.current_tmp_written")
        os.replace(cur_tmp, self.index_dir / CURRENT)
        _fsync_dir(self.index_dir)
        checkpoint("publish.current_swapped")
        prune_generations(self.index_dir, previous)
        return final

    def _write_bm25(self) -> None:
        """BM25 over every chunk (title, section and text), rebuilt per generation: a few seconds at 14k chunks."""
        import bm25s

        from .lexical import lexical_tokens

        ids, docs = [], []
        for fid, text in self.db.execute("SELECT faiss_id, embed_text FROM chunks ORDER BY faiss_id"):
            ids.append(fid)
            docs.append(lexical_tokens(text) or ["∅"])
        bm = bm25s.BM25()
        if docs:
            bm.index(docs, show_progress=False)
        else:
            bm.index([["∅"]], show_progress=False)
        bm.save(str(self.tmp / BM25_DIR), show_progress=False)
        np.save(self.tmp / BM25_IDS, np.array(ids, dtype=np.int64), allow_pickle=False)

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.db.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
