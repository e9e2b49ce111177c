"""BM25 in immutable segments, so adding or removing a document does not rebuild the whole lexical index.

A generation's `bm25/` folder holds `segments.json` (the segment files, in row order), one `seg-*.npz` per
segment (term-major postings: token, chunk row, term frequency; chunk lengths; FAISS ids) and `dead.npy`
(rows of removed chunks). Segment files never change once written: the next generation hard-links them
and writes only a segment for its new chunks and a new `dead.npy`, so publishing stays atomic (the old
generation keeps its own links) and an incremental build costs what it adds. Small segments are merged
(tiered, sizes grow ~4x) and a segment with many dead rows is rewritten, so a search visits few segments.

Scores are exact, not per-segment: document frequency, N and the average length are counted over the live
rows of all segments at query time, with the formula of bm25s' default (Lucene: idf = ln(1 + (N - df + 0.5)
/ (df + 0.5)), tf / (tf + k1 (1 - b + b dl / avgdl)), k1 1.5, b 0.75), so an incremental index scores as a
full rebuild does. Generations written before segments (a bm25s index) are still read (`LegacyBM25`).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import uuid
from array import array
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

K1, B = 1.5, 0.75
SEGMENTS = "segments.json"
DEAD = "dead.npy"
TIER = 4  # a segment is merged into the one before it while that one holds at most TIER times its rows
MAX_SEGMENTS = 12
REWRITE_DEAD = 0.3  # a segment with this share of dead rows is rewritten without them


class Segment:
    """One immutable slice of the lexical index; arrays are loaded from its file on first use."""

    def __init__(self, arrays: dict[str, np.ndarray] | None = None, path: Path | None = None) -> None:
        self.path = path
        self._a = arrays
        self._lookup: dict[str, int] | None = None

    def _get(self, key: str) -> np.ndarray:
        if self._a is None or key not in self._a:
            assert self.path is not None
            with np.load(self.path, allow_pickle=False) as z:
                self._a = {k: z[k] for k in z.files}
        return self._a[key]

    @property
    def ids(self) -> np.ndarray:
        if self._a is None and self.path is not None:  # only the ids: untouched segments of a build need no more
            with np.load(self.path, allow_pickle=False) as z:
                return z["ids"]
        return self._get("ids")

    @property
    def indptr(self) -> np.ndarray:
        return self._get("indptr")

    @property
    def rows(self) -> np.ndarray:
        return self._get("rows")

    @property
    def tf(self) -> np.ndarray:
        return self._get("tf")

    @property
    def doc_len(self) -> np.ndarray:
        return self._get("doc_len")

    @property
    def vocab(self) -> list[str]:
        raw = self._get("vocab").tobytes().decode("utf-8")
        return raw.split("\n") if raw else []

    def term(self, tok: str) -> int | None:
        if self._lookup is None:
            self._lookup = {t: i for i, t in enumerate(self.vocab)}
        return self._lookup.get(tok)

    def release(self, key: str) -> None:
        """Free an array a reader no longer needs (read again from the file if asked for)."""
        if self._a is not None and self.path is not None:
            self._a.pop(key, None)

    def save(self, path: Path) -> None:
        keys = ("vocab", "indptr", "rows", "tf", "doc_len", "ids")
        with open(path, "wb") as f:
            np.savez(f, **{k: self._get(k) for k in keys})
        self.path = path


def build_segment(ids: Sequence[int], docs: Iterable[list[str]]) -> Segment:
    """A segment over these chunks' tokens (a chunk without tokens counts as one placeholder token, as before)."""
    vocab: dict[str, int] = {}
    terms = array("l")  # 8 bytes a token (a list would hold a pointer and an int object)
    lens = array("l")
    for toks in docs:
        toks = toks or ["∅"]
        terms.extend([vocab.setdefault(t, len(vocab)) for t in toks])
        lens.append(len(toks))
    n = len(lens)
    if n != len(ids):
        raise ValueError(f"{n} token lists for {len(ids)} ids")
    doc_len = np.frombuffer(lens, dtype=np.int64).astype(np.int32) if n else np.zeros(0, np.int32)
    keys = np.frombuffer(terms, dtype=np.int64) * max(n, 1) if n else np.zeros(0, np.int64)
    keys += np.repeat(np.arange(n, dtype=np.int64), doc_len)
    del terms
    keys, tf = np.unique(keys, return_counts=True)  # sorted: term-major, rows ascending
    return _segment(list(vocab), keys // max(n, 1), keys % max(n, 1), tf, doc_len, np.asarray(ids, dtype=np.int64))


def _segment(
    vocab: list[str], terms: np.ndarray, rows: np.ndarray, tf: np.ndarray, doc_len: np.ndarray, ids: np.ndarray
) -> Segment:
    """From postings sorted by (term, row)."""
    indptr = np.zeros(len(vocab) + 1, dtype=np.int64)
    np.cumsum(np.bincount(terms, minlength=len(vocab)), out=indptr[1:])
    blob = np.frombuffer("\n".join(vocab).encode("utf-8"), dtype=np.uint8)
    return Segment(
        {
            "vocab": blob,
            "indptr": indptr,
            "rows": rows.astype(np.int32),
            "tf": tf.astype(np.float32),
            "doc_len": doc_len.astype(np.int32),
            "ids": ids.astype(np.int64),
        }
    )


def merge_segments(segs: Sequence[Segment], dead: Sequence[np.ndarray]) -> Segment:
    """One segment holding the live rows of `segs` in order (postings are moved, nothing is re-tokenized)."""
    vocab: dict[str, int] = {}
    parts_t, parts_r, parts_f, lens, ids = [], [], [], [], []
    offset = 0
    for seg, d in zip(segs, dead, strict=True):
        alive = ~d
        new_row = np.cumsum(alive) - 1 + offset
        local = np.array([vocab.setdefault(t, len(vocab)) for t in seg.vocab], dtype=np.int64)
        t = np.repeat(local, np.diff(seg.indptr))
        keep = alive[seg.rows]
        parts_t.append(t[keep])
        parts_r.append(new_row[seg.rows[keep]])
        parts_f.append(seg.tf[keep])
        lens.append(seg.doc_len[alive])
        ids.append(seg.ids[alive])
        offset += int(alive.sum())
    terms, rows = np.concatenate(parts_t), np.concatenate(parts_r)
    order = np.lexsort((rows, terms))
    used, terms = np.unique(terms[order], return_inverse=True)  # drop tokens only dead rows held
    names = list(vocab)
    return _segment(
        [names[i] for i in used],
        terms,
        rows[order],
        np.concatenate(parts_f)[order],
        np.concatenate(lens),
        np.concatenate(ids),
    )


# -- a generation's segments --------------------------------------------------------------------------


def has_segments(bm25_dir: Path) -> bool:
    return (bm25_dir / SEGMENTS).is_file()


def load_segments(bm25_dir: Path) -> tuple[list[Segment], list[np.ndarray]]:
    """The segments (arrays loaded lazily) and a dead-row mask per segment."""
    meta = json.loads((bm25_dir / SEGMENTS).read_text())
    segs = [Segment(path=bm25_dir / s["file"]) for s in meta["segments"]]
    sizes = [int(s["rows"]) for s in meta["segments"]]
    dead_pos = np.load(bm25_dir / DEAD, allow_pickle=False) if (bm25_dir / DEAD).is_file() else np.zeros(0, np.int64)
    masks, start = [], 0
    for n in sizes:
        m = np.zeros(n, dtype=bool)
        sel = dead_pos[(dead_pos >= start) & (dead_pos < start + n)] - start
        m[sel] = True
        masks.append(m)
        start += n
    return segs, masks


def write_lexical(
    out_dir: Path, db: sqlite3.Connection, base_dir: Path | None, gone: set[int], new: set[int]
) -> np.ndarray:
    """Write the new generation's BM25 into out_dir; returns the FAISS ids of its live rows, in row order.

    With a segmented base: base segments are linked, rows of `gone` chunks marked dead, the `new` chunks
    tokenized into one new segment, then small or mostly-dead segments merged. Otherwise (first build,
    --full, a base written before segments) every chunk is tokenized into one segment. A result that does
    not hold exactly the SQLite rows falls back to the full way, so the lexical index never drifts.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    n_rows = int(db.execute("SELECT count(*) FROM chunks").fetchone()[0])
    if base_dir is not None and has_segments(base_dir):
        segs, dead = load_segments(base_dir)
        gone_a = np.fromiter(gone, dtype=np.int64, count=len(gone))
        if len(gone_a):
            dead = [d | np.isin(s.ids, gone_a) for s, d in zip(segs, dead, strict=True)]
        if new:
            rows = _rows_of(db, sorted(new))
            segs.append(_tokenized(rows))
            dead.append(np.zeros(len(rows), dtype=bool))
        segs, dead = _compact(segs, dead)
        alive_ids = _save(out_dir, segs, dead)
        if len(alive_ids) == n_rows:
            return alive_ids
        shutil.rmtree(out_dir)
        out_dir.mkdir()
    seg = _tokenized(db.execute("SELECT faiss_id, embed_text FROM chunks ORDER BY faiss_id").fetchall())
    return _save(out_dir, [seg], [np.zeros(len(seg.ids), dtype=bool)])


def _rows_of(db: sqlite3.Connection, ids: list[int]) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for i in range(0, len(ids), 500):
        part = ids[i : i + 500]
        out += db.execute(
            f"SELECT faiss_id, embed_text FROM chunks WHERE faiss_id IN ({','.join('?' * len(part))}) "
            "ORDER BY faiss_id",
            part,
        ).fetchall()
    return out


def _tokenized(rows: Sequence[tuple[int, str]]) -> Segment:
    from rag.text.lexical import lexical_tokens

    return build_segment([r[0] for r in rows], (lexical_tokens(r[1]) for r in rows))


def _compact(segs: list[Segment], dead: list[np.ndarray]) -> tuple[list[Segment], list[np.ndarray]]:
    """Tiered merging: the last segment joins the one before while that is at most TIER times larger;
    mostly-dead segments are rewritten; never more than MAX_SEGMENTS."""
    segs, dead = list(segs), list(dead)
    for i, d in enumerate(dead):
        if len(d) and d.mean() >= REWRITE_DEAD:
            segs[i], dead[i] = merge_segments([segs[i]], [d]), np.zeros(int((~d).sum()), dtype=bool)
    while len(segs) >= 2 and ((~dead[-2]).sum() <= TIER * (~dead[-1]).sum() or len(segs) > MAX_SEGMENTS):
        m = merge_segments(segs[-2:], dead[-2:])
        segs[-2:], dead[-2:] = [m], [np.zeros(len(m.ids), dtype=bool)]
    keep = [i for i, d in enumerate(dead) if (~d).any()]  # a segment with no live rows is dropped
    return [segs[i] for i in keep], [dead[i] for i in keep]


def _save(out_dir: Path, segs: list[Segment], dead: list[np.ndarray]) -> np.ndarray:
    meta, dead_pos, alive_ids, start = [], [], [], 0
    for seg, d in zip(segs, dead, strict=True):
        if seg.path is not None and seg.path.parent != out_dir:  # unchanged: share the base's file
            target = out_dir / seg.path.name
            try:
                os.link(seg.path, target)
            except OSError:
                shutil.copyfile(seg.path, target)
        else:
            seg.save(out_dir / f"seg-{uuid.uuid4().hex[:12]}.npz")
        assert seg.path is not None
        ids = seg.ids
        meta.append({"file": seg.path.name, "rows": len(ids)})
        dead_pos.append(np.flatnonzero(d) + start)
        alive_ids.append(ids[~d])
        start += len(ids)
    np.save(out_dir / DEAD, np.concatenate(dead_pos) if dead_pos else np.zeros(0, np.int64), allow_pickle=False)
    (out_dir / SEGMENTS).write_text(json.dumps({"version": 1, "k1": K1, "b": B, "segments": meta}))
    return np.concatenate(alive_ids) if alive_ids else np.zeros(0, np.int64)


# -- searching ------------------------------------------------------------------------------------------


class _Vocab:
    """`token in vocab_dict`: the token occurs in a live row (what callers ask of bm25s' vocab_dict)."""

    def __init__(self, model: SegmentedBM25) -> None:
        self._m = model

    def __contains__(self, tok: object) -> bool:
        return isinstance(tok, str) and self._m.df(tok) > 0


class SegmentedBM25:
    """The live rows of a generation's segments scored as one BM25 index (rows in segment order)."""

    def __init__(self, segs: list[Segment], dead: list[np.ndarray]) -> None:
        self.segs = segs
        self.dead = [d if d.any() else None for d in dead]
        self.offsets = np.cumsum([0] + [len(d) for d in dead])
        lens = [s.doc_len if d is None else s.doc_len[~d] for s, d in zip(segs, self.dead, strict=True)]
        self.n_docs = int(sum(len(x) for x in lens))
        avgdl = float(sum(int(x.sum()) for x in lens)) / max(self.n_docs, 1)
        # the length-normalised tf of every posting, fixed for this generation (what bm25s precomputes too)
        self.tfc = []
        for s in segs:
            norm = K1 * ((1 - B) + B * s.doc_len / max(avgdl, 1e-9))
            self.tfc.append((s.tf / (s.tf + norm[s.rows])).astype(np.float32))
            s.release("tf")  # not needed again by a reader
        self.alive = None if all(d is None for d in self.dead) else np.flatnonzero(~np.concatenate(dead))
        self.vocab_dict = _Vocab(self)

    @classmethod
    def load(cls, bm25_dir: Path) -> SegmentedBM25:
        segs, dead = load_segments(bm25_dir)
        return cls(segs, dead)

    def ids(self) -> np.ndarray:
        parts = [s.ids if d is None else s.ids[~d] for s, d in zip(self.segs, self.dead, strict=True)]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def _postings(self, tok: str) -> list[tuple[int, np.ndarray, np.ndarray]]:
        out = []
        for i, s in enumerate(self.segs):
            t = s.term(tok)
            if t is not None:
                a, b = s.indptr[t], s.indptr[t + 1]
                out.append((i, s.rows[a:b], self.tfc[i][a:b]))
        return out

    def df(self, tok: str) -> int:
        return sum(
            len(r) - (0 if self.dead[i] is None else int(self.dead[i][r].sum())) for i, r, _ in self._postings(tok)
        )

    def get_scores(self, tokens: list[str]) -> np.ndarray:
        """One score per live row; a token given twice counts twice (as bm25s does)."""
        scores = np.zeros(int(self.offsets[-1]), dtype=np.float32)
        n = self.n_docs
        for tok in tokens:
            post = self._postings(tok)
            df = sum(len(r) - (0 if self.dead[i] is None else int(self.dead[i][r].sum())) for i, r, _ in post)
            if df == 0:
                continue
            idf = np.float32(np.log(1 + (n - df + 0.5) / (df + 0.5)))
            for i, r, tfc in post:
                scores[self.offsets[i] + r] += idf * tfc
        return scores if self.alive is None else scores[self.alive]


class LegacyBM25:
    """A bm25s index written by a version before segments; read as it is until the next build converts it."""

    def __init__(self, bm25_dir: Path) -> None:
        import bm25s

        self._m = bm25s.BM25.load(str(bm25_dir), allow_pickle=False, show_progress=False)
        self.vocab_dict = self._m.vocab_dict
        scores = getattr(self._m, "scores", None)
        self.n_docs = int(scores.get("num_docs", -1)) if isinstance(scores, dict) else -1

    def get_scores(self, tokens: list[str]) -> np.ndarray:
        return np.asarray(self._m.get_scores(tokens), dtype=np.float32)


def load_lexical(bm25_dir: Path) -> SegmentedBM25 | LegacyBM25:
    return SegmentedBM25.load(bm25_dir) if has_segments(bm25_dir) else LegacyBM25(bm25_dir)
