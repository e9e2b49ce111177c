"""Reading one generation of the index: chunk rows, dense search (FAISS), BM25, and a consistency check."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import IndexCorruptError, IndexMismatchError, IndexMissingError, RagError
from rag.index.layout import (
    BM25_DIR,
    BM25_IDS,
    CHUNK_COLS,
    FAISS_FILE,
    MANIFEST,
    SQLITE,
    current_generation,
    faiss_ids,
    row_to_chunk,
)
from rag.index.manifest import Manifest
from rag.types import Chunk


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
    duplicate_of: str | None = None  # same bytes as this source, whose chunks answer for both


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


def generation_problems(gen: Path, manifest: Manifest | None = None) -> list[str]:
    """Cheap file-level checks of one generation (empty list = its files open and agree on the chunk count).

    Used by `rag index status`, by `check` before the row-level comparison, and by a build before it
    extends a generation, so a truncated or missing file is reported as such, never as "up to date".
    """
    problems: list[str] = []
    missing = [n for n in (MANIFEST, SQLITE, FAISS_FILE, BM25_IDS) if not (gen / n).is_file()]
    if not (gen / BM25_DIR).is_dir() or not any((gen / BM25_DIR).iterdir()):
        missing.append(BM25_DIR + "/")
    if missing:
        return [f"{gen.name}: missing {', '.join(missing)}"]
    try:
        manifest = manifest or Manifest.load(gen / MANIFEST)
    except IndexCorruptError as e:
        return [str(e)]
    n = manifest.n_chunks
    sizes = {name: (gen / name).stat().st_size if (gen / name).is_file() else -1 for name in manifest.files}
    problems += [f"{name} is {size} bytes, {manifest.files[name]} when it was written (truncated or replaced)"
                 if size >= 0 else f"{name} is missing" for name, size in sizes.items() if size != manifest.files[name]]
    try:
        db = sqlite3.connect(f"file:{gen / SQLITE}?mode=ro&immutable=1", uri=True)
        try:
            n_rows = int(db.execute("SELECT count(*) FROM chunks").fetchone()[0])
            db.execute("SELECT count(*) FROM documents").fetchone()
        finally:
            db.close()
        if n_rows != n:
            problems.append(f"{SQLITE} holds {n_rows} chunks, the manifest {n}")
    except sqlite3.Error as e:
        problems.append(f"{SQLITE} cannot be read: {e}")
    if FAISS_FILE in sizes and not problems:
        return problems  # sizes as written: reading the whole FAISS file again is left to `index check`
    try:
        import faiss

        index = faiss.read_index(str(gen / FAISS_FILE))
        if index.ntotal != n:
            problems.append(f"{FAISS_FILE} holds {index.ntotal} vectors, the manifest {n} chunks")
        if index.d != manifest.embedding.dimension:
            problems.append(f"{FAISS_FILE} has dimension {index.d}, the manifest {manifest.embedding.dimension}")
    except Exception as e:  # faiss raises RuntimeError with a C++ trace for a truncated file
        problems.append(f"{FAISS_FILE} cannot be read ({faiss_reason(e)})")
    try:
        ids = np.load(gen / BM25_IDS, allow_pickle=False)
        if len(ids) != n:
            problems.append(f"{BM25_IDS} lists {len(ids)} chunks, the manifest {n}")
    except Exception as e:
        problems.append(f"{BM25_IDS} cannot be read: {e}")
    return problems


def faiss_reason(e: BaseException) -> str:
    """The readable tail of an error: faiss puts a C++ location and signature before the reason."""
    msg = " ".join(str(e).split())
    return msg.rsplit("Error: ", 1)[-1][-200:]


def bm25_problems(gen: Path, ids_s: set[int]) -> list[str]:
    """The BM25 index loads, has one live row per chunk, and its id list names the SQLite rows."""
    from rag.index.bm25 import SegmentedBM25, load_lexical

    try:
        model = load_lexical(gen / BM25_DIR)
        ids = np.load(gen / BM25_IDS, allow_pickle=False)
    except Exception as e:
        return [f"BM25 index cannot be loaded: {' '.join(str(e).split())[:200]}"]
    problems = []
    if len(ids) and model.n_docs != len(ids):
        problems.append(f"BM25 index holds {model.n_docs} rows, its id list {len(ids)}")
    if isinstance(model, SegmentedBM25) and not np.array_equal(model.ids(), ids):
        problems.append(f"BM25 segments and {BM25_IDS} list different chunks")
    bm_ids = set(ids.tolist())
    if bm_ids != ids_s:
        problems.append(f"BM25 rows and SQLite rows differ ({len(bm_ids ^ ids_s)} ids)")
    return problems


class IndexStore:
    """A read-only view of one generation. Cheap to reopen; `refresh()` follows CURRENT."""

    def __init__(self, index_dir: Path) -> None:
        self.index_dir = Path(index_dir)
        gen = current_generation(self.index_dir)
        if gen is None:
            raise IndexMissingError(f"no index at {self.index_dir}; run `rag index build` first")
        self.generation = gen
        try:
            self.manifest = Manifest.load(gen / MANIFEST)
            if not (gen / SQLITE).is_file():
                raise FileNotFoundError(f"{SQLITE} is missing")
            import faiss

            self.faiss = faiss.read_index(str(gen / FAISS_FILE))
            conn = sqlite3.connect(f"file:{gen / SQLITE}?mode=ro&immutable=1", uri=True, check_same_thread=False)
            conn.execute("SELECT 1 FROM documents JOIN chunks ON chunks.source = documents.source LIMIT 1").fetchall()
        except IndexCorruptError:
            raise
        except Exception as e:
            msg = faiss_reason(e)
            raise IndexCorruptError(
                f"cannot open index at {gen}: {msg}; run `rag index build --full`"
            ) from None
        self.db = _LockedDB(conn)
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
            store.manifest.check_compatible(embedding_model, chunk_config, store.index_dir)
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
            from rag.index.bm25 import load_lexical

            try:
                model = load_lexical(self.generation / BM25_DIR)
                ids = np.load(self.generation / BM25_IDS, allow_pickle=False)
            except Exception as e:
                raise IndexCorruptError(f"cannot open BM25 index in {self.generation}: {e}; run `rag index build --full`") from None
            self._bm25 = (model, ids)
            self._bm25_pos = {int(f): i for i, f in enumerate(ids)}
        return self._bm25

    def bm25_search(self, query: str, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, FAISS ids) of the top-k chunks by BM25; `allowed` restricts to those ids."""
        from rag.text.lexical import lexical_tokens

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
        return self.manifest.index_id

    @property
    def dimension(self) -> int:
        return self.manifest.embedding.dimension

    def __len__(self) -> int:
        return int(self.faiss.ntotal)

    # -- queries ---------------------------------------------------------------------------

    def documents(self) -> list[DocumentInfo]:
        rows = self.db.execute(
            "SELECT source, doc_id, title, date, source_url, file_type, pages, has_pages, n_chunks FROM documents ORDER BY source"
        ).fetchall()
        primaries = {r[1]: r[0] for r in rows if r[8]}
        return [
            DocumentInfo(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bool(r[7]), r[8], None if r[8] else primaries.get(r[1]))
            for r in rows
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
        # via doc_id, so a filter naming a duplicate's source finds the chunks indexed under its twin
        sql = (f"SELECT c.faiss_id FROM documents p JOIN chunks c ON c.source = p.source WHERE p.doc_id IN "
               f"(SELECT d.doc_id FROM documents d WHERE {' AND '.join(where)})")
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
            q = f"SELECT {CHUNK_COLS} FROM chunks c JOIN documents d ON d.source = c.source WHERE c.faiss_id IN ({','.join('?' * len(part))})"
            for r in self.db.execute(q, part):
                out[int(r[0])] = row_to_chunk(r)
        return out

    def neighbours(self, chunk: Chunk, before: int = 1, after: int = 1) -> list[Chunk]:
        q = f"SELECT {CHUNK_COLS} FROM chunks c JOIN documents d ON d.source = c.source WHERE c.source = ? AND c.ordinal BETWEEN ? AND ? ORDER BY c.ordinal"
        return [
            row_to_chunk(r)
            for r in self.db.execute(
                q, (chunk.source, chunk.ordinal - before, chunk.ordinal + after)
            )
        ]

    def iter_chunks(self, batch: int = 1000) -> Iterator[Chunk]:
        last_src, last_ord = "", -1
        while True:  # keyset pages, so no query holds the shared connection for long
            rows = self.db.execute(
                f"SELECT {CHUNK_COLS} FROM chunks c JOIN documents d ON d.source = c.source "
                "WHERE (c.source, c.ordinal) > (?, ?) ORDER BY c.source, c.ordinal LIMIT ?",
                (last_src, last_ord, batch),
            )
            if not rows:
                return
            yield from (row_to_chunk(r) for r in rows)
            last_src, last_ord = rows[-1][3], rows[-1][4]

    @property
    def policy(self) -> Any:
        """Identity, relations and status of this generation's documents (rag.index.status.PolicyView), read once."""
        if getattr(self, "_policy", None) is None:
            from rag.index.status import PolicyView

            self._policy = PolicyView.load(self.db)
        return self._policy

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
        docs_m = self.manifest.documents
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
            if m and (m.doc_id != doc_id or m.chunks != n):
                problems.append(
                    f"{src}: manifest says {m.chunks} chunks / {m.doc_id}, SQLite {n} / {doc_id}"
                )
        per_doc = dict(
            self.db.execute("SELECT source, count(*) FROM chunks GROUP BY source").fetchall()
        )
        for src, (_, n) in docs_s.items():
            if per_doc.get(src, 0) != n:
                problems.append(
                    f"{src}: documents row says {n} chunks, chunks table holds {per_doc.get(src, 0)}"
                )
        total = self.manifest.n_chunks
        if total != len(ids_s):
            problems.append(f"manifest counts {total} chunks, SQLite holds {len(ids_s)}")
        problems += bm25_problems(self.generation, ids_s)
        from rag.index.status import check as policy_check

        problems += policy_check(self.db)  # identity and relation rows (issue 13)
        if self.faiss.d != self.dimension:
            problems.append(
                f"FAISS dimension {self.faiss.d} != manifest dimension {self.dimension}"
            )
        return problems
