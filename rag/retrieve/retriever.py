"""Retrieval: dense (FAISS) and BM25, fused by reciprocal rank fusion, then optional cross-encoder
rerank, de-duplication of overlapping chunks and neighbour expansion. Batched for many queries.

Every returned passage carries its dense cosine similarity to the query (`scores["dense"]`), also
when BM25 found it: the refusal threshold is calibrated on that one comparable number.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import ConfigError
from rag.index.chunk import chunk_signature
from rag.index.manifest import vector_kind
from rag.index.reader import IndexStore
from rag.retrieve.filters import Filters
from rag.retrieve.fusion import convex_fusion, dedupe, rrf
from rag.retrieve.rerank import Reranker
from rag.settings import Settings
from rag.types import Passage

MODES = ("dense", "bm25", "hybrid")


@dataclass
class Retriever:
    store: IndexStore
    embedder: Any  # rag.index.embed.Embedder (duck-typed so tests may wrap it)
    settings: Settings = field(default_factory=Settings)
    _reranker: Any = None
    _refresh_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    _scorer_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def open(cls, settings: Settings, embedder: Any | None = None) -> Retriever:
        store = IndexStore.open(Path(settings.index), settings.embedding.model, chunk_signature(settings.chunking))
        store.set_search_params(settings.faiss.hnsw_ef_search, settings.faiss.ivf_nprobe)
        _ = store.bm25  # now, while this generation's files surely exist
        if embedder is None:
            from rag.index.embed import embedder_for

            embedder = embedder_for(settings)
        store.manifest.check_vectors(vector_kind(embedder), store.index_dir)
        return cls(store, embedder, settings)

    def refresh(self) -> bool:
        """Follow a newer generation if a build published one. True if it switched.

        Readers that took `self.store` before the switch finish on their generation (its files
        stay open, and builds keep the previous generation on disk).
        """
        if not self.store.is_stale():
            return False
        with self._refresh_lock:
            if not self.store.is_stale():
                return False
            new = IndexStore.open(self.store.index_dir, self.settings.embedding.model, chunk_signature(self.settings.chunking))
            new.manifest.check_vectors(vector_kind(self.embedder), new.index_dir)
            new.set_search_params(self.settings.faiss.hnsw_ef_search, self.settings.faiss.ivf_nprobe)
            _ = new.bm25  # loaded before anyone reads it: a later build may delete this generation's files
            self.store = new  # the old generation closes when its last reader lets go of it
        return True

    # -- public API ------------------------------------------------------------------------

    def dense(self, queries: Sequence[str], k: int = 5, filters: Any = None) -> list[list[Passage]]:
        return self.search(queries, k, filters, mode="dense", rerank=False, dedupe_hits=False, expand=0)

    def search(
        self,
        queries: Sequence[str],
        k: int | None = None,
        filters: Sequence[Filters | None] | Filters | None = None,
        *,
        mode: str | None = None,
        rerank: bool | None = None,
        dedupe_hits: bool | None = None,
        expand: int | None = None,
        store: IndexStore | None = None,
        use_policy: bool = True,
    ) -> list[list[Passage]]:
        """Top-k passages for each query. One batched encode; FAISS and BM25 per filter group.

        Every read goes to one generation (`store`, default the current one), even if a build
        publishes a new one meanwhile: no passage mixes two generations' rows.
        """
        s = self.settings
        if use_policy and queries and (s.retrieval.as_of or s.retrieval.prefer_named):
            from rag.retrieve.docmatch import policy_search  # as-of filter, named-document preference (issue 13)

            return policy_search(self, list(queries), k or s.retrieval.top_k, filters, mode=mode, rerank=rerank,
                                 dedupe_hits=dedupe_hits, expand=expand, store=store)
        store = store or self.store
        k = k or s.retrieval.top_k
        mode = mode or s.retrieval.mode
        if mode not in MODES:
            raise ConfigError(f"unknown retrieval mode '{mode}' (use dense, bm25 or hybrid)")
        rerank = (s.retrieval.reranker is not None) if rerank is None else rerank
        dedupe_hits = s.retrieval.dedupe if dedupe_hits is None else dedupe_hits
        expand = s.retrieval.expand_neighbours if expand is None else expand
        if not queries:
            return []
        per_query = list(filters) if isinstance(filters, list) else [filters] * len(queries)
        clean = [re.sub(r"\s+", " ", q).strip() for q in queries]
        qvecs = self.embedder.encode(clean)
        n_cand = max(k, s.retrieval.candidates) if (mode == "hybrid" or rerank or dedupe_hits) else k
        results: list[list[Passage]] = [[] for _ in queries]
        groups: dict[str, list[int]] = {}
        for i, f in enumerate(per_query):
            groups.setdefault(repr(sorted((f or {}).items())), []).append(i)
        for idxs in groups.values():
            allowed = store.ids_matching(per_query[idxs[0]])
            dense_rank: list[list[int]] = [[] for _ in idxs]
            dense_scores: list[dict[int, float]] = [{} for _ in idxs]
            if mode in ("dense", "hybrid"):
                dsc, ids = store.search(qvecs[idxs], n_cand, allowed)
                dense_rank = [[int(x) for x in row if x >= 0] for row in ids]
                dense_scores = [{int(x): float(v) for x, v in zip(row, srow, strict=True) if x >= 0} for row, srow in zip(ids, dsc, strict=True)]
            for row, qi in enumerate(idxs):
                bm_rank: list[int] = []
                bm_scores: dict[int, float] = {}
                if mode in ("bm25", "hybrid"):
                    sc, ids = store.bm25_search(clean[qi], n_cand, allowed)
                    bm_rank = [int(x) for x in ids]
                    bm_scores = {int(i): float(v) for i, v in zip(ids, sc, strict=True)}
                if mode == "dense":
                    fused = [(i, 0.0) for i in dense_rank[row]]
                elif mode == "bm25":
                    fused = [(i, bm_scores[i]) for i in bm_rank]
                else:
                    # an exact reference ("M-24-10", "Sec. 4.6", "14110") found in the index is
                    # something embeddings blur and BM25 gets right: let BM25 count more then
                    ident = self._has_known_identifier(store, clean[qi])
                    if s.retrieval.fusion == "rrf":
                        fused = rrf([dense_rank[row], bm_rank], s.retrieval.rrf_k, [1.0, 2.0 if ident else 1.0])
                    else:
                        alpha = min(s.retrieval.fusion_alpha, 0.5) if ident else s.retrieval.fusion_alpha
                        fused = convex_fusion(dense_scores[row], bm_scores, alpha)
                results[qi] = self._passages(store, fused, qvecs[qi], bm_scores, dense_rank[row], bm_rank, mode)
        out = []
        for q, hits in zip(clean, results, strict=True):
            if rerank and hits:
                hits = self._rerank(q, hits[: s.retrieval.rerank_top])
            if dedupe_hits:
                hits = dedupe(hits)
            hits = [replace(p, rank=i + 1) for i, p in enumerate(hits[:k])]
            if rerank and hits and s.retrieval.focus_words:
                hits = self.scorer.focus(q, hits, s.retrieval.focus_words)
            if expand:
                hits = [replace(p, neighbours=tuple(c for c in store.neighbours(p.chunk, expand, expand) if c.chunk_id != p.chunk.chunk_id)) for p in hits]
            out.append(hits)
        return out

    # -- internals ---------------------------------------------------------------------------

    def _has_known_identifier(self, store: IndexStore, query: str) -> bool:
        from rag.text.lexical import identifiers

        vocab = store.bm25[0].vocab_dict
        return any(t in vocab for t in identifiers(query))

    def _passages(self, store: IndexStore, fused: list[tuple[int, float]], qvec: np.ndarray, bm: dict[int, float], dense_rank: list[int], bm_rank: list[int], mode: str) -> list[Passage]:
        if not fused:
            return []
        ids = [i for i, _ in fused]
        chunks = store.chunks(ids)
        cos = store.vectors(np.array(ids, dtype=np.int64)) @ qvec
        drank = {i: r + 1 for r, i in enumerate(dense_rank)}
        brank = {i: r + 1 for r, i in enumerate(bm_rank)}
        out = []
        for (fid, fscore), c in zip(fused, cos, strict=True):
            chunk = chunks.get(fid)
            if chunk is None:
                continue
            scores = {"dense": float(c)}
            if fid in bm:
                scores["bm25"] = bm[fid]
            if mode == "hybrid":
                scores["fused"] = fscore
                scores["dense_rank"] = float(drank.get(fid, 0))
                scores["bm25_rank"] = float(brank.get(fid, 0))
            main = float(c) if mode == "dense" else fscore
            out.append(Passage(chunk=chunk, score=main, rank=len(out) + 1, scores=scores))
        return out

    @property
    def scorer(self) -> Reranker | None:
        """The evidence scorer (cross-encoder) named by `retrieval.reranker`, loaded on first use; None when off."""
        r = self.settings.retrieval
        if r.reranker is None:
            return None
        if self._reranker is None:
            with self._scorer_lock:
                if self._reranker is None:
                    device = getattr(self.embedder, "device", None) or "cpu"
                    self._reranker = Reranker(r.reranker, str(device), max_length=r.rerank_max_length, quantize=r.rerank_quantize,
                                              backend=r.rerank_backend, cache_dir=Path(self.settings.cache_dir), int8=r.rerank_int8)
        return self._reranker

    def _rerank(self, query: str, hits: list[Passage]) -> list[Passage]:
        assert self.scorer is not None
        return self.scorer.rerank(query, hits)
