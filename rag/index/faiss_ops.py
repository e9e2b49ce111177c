"""FAISS decisions of a build: which index kind (`auto`), when to rebuild, and removals that stay in place.

`auto` is flat (exact, ~1 ms at 10k chunks) below `faiss.auto_ivf_chunks` and IVF above it: measured by
benchmarks/bench_scale.py (RESULTS.md, Scale), flat search reads every vector, ~10 ms per query on an idle
core at 100k and ~1-2 s at 1M, while IVF (nprobe 16) answers in under a millisecond with recall@10 1.0 of
exact on that data and builds in about HNSW's time with far less memory. An IVF index is updated in place
(new vectors added, removed ones taken out) and retrained only when the corpus has grown or shrunk far
from the size it was trained at; HNSW cannot remove vectors, so a removal rebuilds it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rag.index.layout import faiss_ids, new_faiss_index
from rag.settings import Settings

RETRAIN_FACTOR = 2.0  # IVF clusters hold ~2x (or ~1/2) the vectors they were sized for: train again
HYSTERESIS = 0.8  # an auto index that went IVF stays IVF down to 0.8x the threshold (no flip-flop rebuilds)


def resolve_kind(settings: Settings, n_chunks: int, current: str | None = None) -> str:
    """The concrete FAISS kind for `n_chunks` chunks (`current`: the kind the index has now)."""
    f = settings.faiss
    if f.kind != "auto":
        return f.kind
    at = f.auto_ivf_chunks
    if current == "ivf" and n_chunks >= HYSTERESIS * at:
        return "ivf"
    return "ivf" if n_chunks >= at else "flat"


def needs_retrain(kind: str, n_chunks: int, trained_n: int) -> bool:
    """An IVF index trained for a corpus of `trained_n` chunks that now holds `n_chunks`."""
    if kind != "ivf" or trained_n <= 0:
        return kind == "ivf"
    return n_chunks > RETRAIN_FACTOR * trained_n or n_chunks * RETRAIN_FACTOR < trained_n


def remove_ids(index: Any, ids: np.ndarray) -> None:
    """Remove vectors by FAISS id from an IndexIDMap2 of any kind.

    For IVF, IndexIDMap2.remove_ids alone corrupts the index: IVF keeps the internal positions stored in its
    lists while the id map compacts, so later hits name the wrong chunks. Here the lists' positions are
    renumbered to the compacted map.
    """
    import faiss

    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if not len(ids):
        return
    base = faiss.downcast_index(index.index)
    if not isinstance(base, faiss.IndexIVF):
        index.remove_ids(ids)
        return
    id_map = faiss_ids(index)
    drop = np.isin(id_map, ids)
    if not drop.any():
        return
    had_map = base.direct_map.type != faiss.DirectMap.NoMap
    if had_map:  # an array direct map cannot remove; it is made again below
        base.set_direct_map_type(faiss.DirectMap.NoMap)
    base.remove_ids(faiss.IDSelectorBatch(np.flatnonzero(drop).astype(np.int64)))
    new_pos = (np.cumsum(~drop) - 1).astype(np.int64)  # old internal position -> new one
    lists = base.invlists
    for no in range(base.nlist):
        if size := lists.list_size(no):
            stored = faiss.rev_swig_ptr(lists.get_ids(no), size)  # a view on the list's ids (ArrayInvertedLists)
            stored[:] = new_pos[stored]
    faiss.copy_array_to_vector(id_map[~drop], index.id_map)
    index.ntotal = base.ntotal
    index.construct_rev_map()
    if had_map:
        base.make_direct_map()


def rebuild_faiss(writer: Any, settings: Settings, dim: int, kind: str | None = None) -> Any:
    """A FAISS index of `kind` (default: the settings', resolved for the rows' count) from the stored vectors."""
    f = settings.faiss
    n = writer.count_chunks()
    kind = kind or resolve_kind(settings, n)
    index = new_faiss_index(kind, dim, hnsw_m=f.hnsw_m, nlist=f.ivf_nlist, n_hint=n)
    if kind == "ivf" and n:
        import faiss

        ivf = faiss.downcast_index(index.index)
        sample = np.concatenate([v for _, v in writer.iter_vectors()])  # IVF trains on the vectors
        if len(sample) > 100_000:
            sample = sample[np.random.default_rng(0).choice(len(sample), 100_000, replace=False)]
        ivf.train(sample)
    for ids, vecs in writer.iter_vectors():
        index.add_with_ids(vecs, ids)
    return index
