"""Writing the next generation: rows and vectors into a temp folder, then an atomic publish."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import IndexCorruptError
from rag.faults import checkpoint
from rag.index.layout import (
    BM25_DIR,
    BM25_IDS,
    CURRENT,
    FAISS_FILE,
    MANIFEST,
    SCHEMA,
    SQLITE,
    current_generation,
    fsync_dir,
    fsync_file,
    prune_generations,
)
from rag.types import Chunk


class GenerationWriter:
    """Builds the next generation in a temp folder, then publishes it atomically."""

    def __init__(self, index_dir: Path, base: Path | None) -> None:
        self.index_dir = index_dir  # tmp-* left by a killed build go in prune_generations after publishing
        self.tmp = index_dir / f"tmp-{os.getpid()}-{int(time.time() * 1000)}"
        self.tmp.mkdir(parents=True)
        self.base = base
        self.gone: set[int] = set()  # FAISS ids deleted in this build (their BM25 rows die)
        self.new: set[int] = set()  # FAISS ids added in this build (a new BM25 segment)
        if base is not None:  # a published generation is never written again: a byte copy is a consistent one
            clone_file(base / SQLITE, self.tmp / SQLITE)
        self.db = sqlite3.connect(self.tmp / SQLITE)
        self.db.execute("PRAGMA journal_mode=OFF")
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.executescript(SCHEMA)

    # rows ---------------------------------------------------------------------------------

    def take_vectors_of(self, sources: Sequence[str]) -> dict[str, np.ndarray]:
        """text_hash -> vector for the chunks of these documents (the embedding cache)."""
        return self._vectors_where("source", sources)

    def lookup_vectors(self, text_hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """text_hash -> vector for the texts already embedded in this generation."""
        return self._vectors_where("text_hash", text_hashes)

    def _vectors_where(self, column: str, values: Sequence[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for i in range(0, len(values), 500):  # SQLite caps the number of bound parameters
            part = list(values[i : i + 500])
            marks = ",".join("?" * len(part))
            for h, blob in self.db.execute(f"SELECT text_hash, vector FROM chunks WHERE {column} IN ({marks})", part):
                out[h] = np.frombuffer(blob, dtype=np.float32)
        return out

    def delete_documents(self, sources: Sequence[str]) -> np.ndarray:
        """Remove documents and their chunks; returns the FAISS ids removed."""
        removed: list[int] = []
        for i in range(0, len(sources), 500):
            part = list(sources[i : i + 500])
            marks = ",".join("?" * len(part))
            removed += [r[0] for r in self.db.execute(f"SELECT faiss_id FROM chunks WHERE source IN ({marks})", part)]
            self.db.execute(f"DELETE FROM chunks WHERE source IN ({marks})", part)
            self.db.execute(f"DELETE FROM documents WHERE source IN ({marks})", part)
        self.gone.update(removed)
        self.new.difference_update(removed)
        return np.array(removed, dtype=np.int64)

    def has_document(self, source: str) -> bool:
        return self.db.execute("SELECT 1 FROM documents WHERE source = ?", (source,)).fetchone() is not None

    def primary_of(self, doc_id: str, source: str) -> str | None:
        """The other source whose chunks already hold this content (same bytes, so the same chunk ids), if any."""
        row = self.db.execute("SELECT source FROM documents WHERE doc_id = ? AND n_chunks > 0 AND source != ? ORDER BY source LIMIT 1",
                              (doc_id, source)).fetchone()
        return None if row is None else str(row[0])

    def with_duplicates(self, sources: Sequence[str]) -> list[str]:
        """Those of `sources` whose content is also recorded under another name (a duplicate row)."""
        out: list[str] = []
        for i in range(0, len(sources), 500):
            part = list(sources[i : i + 500])
            out += [str(r[0]) for r in self.db.execute(
                f"SELECT source FROM documents p WHERE source IN ({','.join('?' * len(part))}) AND n_chunks > 0 AND EXISTS "
                "(SELECT 1 FROM documents d WHERE d.doc_id = p.doc_id AND d.n_chunks = 0)", part)]
        return out

    def orphaned_duplicates(self) -> list[tuple[str, int, int]]:
        """(source, size, mtime_ns) of duplicates whose indexed twin is gone: they must be indexed themselves."""
        return [(str(r[0]), int(r[1] or 0), int(r[2] or 0)) for r in self.db.execute(
            "SELECT source, size, mtime_ns FROM documents d WHERE n_chunks = 0 AND NOT EXISTS "
            "(SELECT 1 FROM documents p WHERE p.doc_id = d.doc_id AND p.n_chunks > 0) ORDER BY source")]

    def copy_document(self, other_db: Path, source: str) -> bool:
        """Copy a document's rows (vectors included) from another generation's SQLite; as a duplicate row when its
        content is already indexed here. False when that generation does not hold it."""
        cols = "source, doc_id, title, date, source_url, file_type, pages, has_pages, sha256, size, mtime_ns"
        chunk_cols = ("faiss_id, chunk_id, doc_id, source, ordinal, text, char_start, char_end, page, page_end, section, "
                      "n_tokens, embed_text, text_hash, vector")
        self.db.execute("ATTACH DATABASE ? AS other", (str(other_db),))
        try:
            row = self.db.execute("SELECT doc_id, n_chunks FROM other.documents WHERE source = ?", (source,)).fetchone()
            if row is None:
                return False
            alias = not row[1] or self.primary_of(row[0], source) is not None
            self.db.execute(f"INSERT OR REPLACE INTO documents ({cols}, n_chunks) SELECT {cols}, "
                            f"{'0' if alias else 'n_chunks'} FROM other.documents WHERE source = ?", (source,))
            if not alias:
                self.db.execute(f"INSERT INTO chunks ({chunk_cols}) SELECT {chunk_cols} FROM other.chunks WHERE source = ?",
                                (source,))
                self.new.update(r[0] for r in self.db.execute("SELECT faiss_id FROM other.chunks WHERE source = ?", (source,)))
            return True
        finally:
            self.db.commit()
            self.db.execute("DETACH DATABASE other")

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
        self.new.update(ids.tolist())
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
        # sizes of the data files, so `index status` and a build notice a truncated or replaced file by a stat
        files = [SQLITE, FAISS_FILE, BM25_IDS] + [f"{BM25_DIR}/{f.name}" for f in sorted((self.tmp / BM25_DIR).iterdir())]
        manifest = {**manifest, "files": {name: (self.tmp / name).stat().st_size for name in files}}
        (self.tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=False))
        checkpoint("publish.manifest_written")
        for name in (SQLITE, FAISS_FILE, MANIFEST, BM25_IDS):
            fsync_file(self.tmp / name)
        for f in (self.tmp / BM25_DIR).iterdir():
            fsync_file(f)
        fsync_dir(self.tmp / BM25_DIR)  # its entries: new segments and links to the base's
        fsync_dir(self.tmp)
        checkpoint("publish.fsynced")
        try:
            previous = current_generation(self.index_dir)
        except IndexCorruptError:  # a damaged CURRENT is what this (full) build replaces
            previous = None
        gens = sorted(p.name for p in self.index_dir.glob("gen-*"))
        n = (int(gens[-1].split("-")[1]) + 1) if gens else 1
        final = self.index_dir / f"gen-{n:06d}"
        os.rename(self.tmp, final)
        checkpoint("publish.generation_renamed")
        cur_tmp = self.index_dir / f"{CURRENT}.tmp"
        cur_tmp.write_text(final.name + "\n")
        fsync_file(cur_tmp)
        checkpoint("publish.current_tmp_written")
        os.replace(cur_tmp, self.index_dir / CURRENT)
        fsync_dir(self.index_dir)
        checkpoint("publish.current_swapped")
        prune_generations(self.index_dir, previous)
        return final

    def _write_bm25(self) -> None:
        """BM25 of the new generation: the base's segments linked, a segment for the new chunks (rag.index.bm25)."""
        from rag.index.bm25 import write_lexical

        base_dir = None if self.base is None else self.base / BM25_DIR
        ids = write_lexical(self.tmp / BM25_DIR, self.db, base_dir, self.gone, self.new)
        np.save(self.tmp / BM25_IDS, ids, allow_pickle=False)

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.db.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def clone_file(src: Path, dst: Path) -> None:
    """Copy a file: a reflink where the filesystem shares blocks (btrfs, xfs), else an in-kernel copy."""
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        try:
            fcntl.ioctl(fo.fileno(), 0x40049409, fi.fileno())  # FICLONE
            return
        except OSError:
            pass
    shutil.copyfile(src, dst)
