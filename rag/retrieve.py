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

from .errors import ConfigError, ModelLoadError
from .settings import Settings
from .store import IndexStore
from .types import Passage

Filters = dict[str, list[str]]
MODES = ("dense", "bm25", "hybrid")


def parse_filters(items: Sequence[str] | None) -> Filters:
    """['source=x.pdf', 'title=Plan'] -> {'source': ['x.pdf'], 'title': ['Plan']} (repeated keys OR)."""
    out: Filters = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"bad --filter '{item}': use KEY=VALUE, e.g. source=omb/M-24-10.pdf")
        k, v = item.split("=", 1)
        k, v = k.strip(), v.strip()
        if not k or not v:
            raise ConfigError(f"bad --filter '{item}': key and value must be non-empty")
        out.setdefault(k, []).append(v)
    return out


def normalise_filter_obj(obj: object) -> Filters:
    """A JSON filter object ({"source": "x"} or {"source": ["x", "y"]}) -> Filters."""
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise ConfigError(f"filter must be a JSON object, got {type(obj).__name__}")
    return {str(k): [str(x) for x in (v if isinstance(v, list) else [v])] for k, v in obj.items()}


def rrf(rankings: Sequence[Sequence[int]], k: int = 60, weights: Sequence[float] | None = None) -> list[tuple[int, float]]:
    """Weighted reciprocal rank fusion of id rankings -> [(id, score)] best first (ties keep first-seen order)."""
    scores: dict[int, float] = {}
    for n, ranking in enumerate(rankings):
        w = weights[n] if weights else 1.0
        for r, i in enumerate(ranking):
            scores[i] = scores.get(i, 0.0) + w / (k + r + 1)
    return sorted(scores.items(), key=lambda x: -x[1])


def convex_fusion(dense: dict[int, float], lexical: dict[int, float], alpha: float) -> list[tuple[int, float]]:
    """alpha * dense + (1 - alpha) * BM25, each min-max normalised over the query's candidates.

    Keeps dense's order where BM25 has nothing to say, while an exact lexical match lifts a passage.
    With alpha 0.8 it ties dense on PolicyQA but falls well behind BM25 on ObliQA; RRF stays within
    1-2 points of the better retriever on both, so RRF is the default (benchmarks/RESULTS.md).
    """

    def norm(x: dict[int, float]) -> dict[int, float]:
        if not x:
            return {}
        lo, hi = min(x.values()), max(x.values())
        return {k: (v - lo) / (hi - lo) if hi > lo else 1.0 for k, v in x.items()}

    dn, bn = norm(dense), norm(lexical)
    ids = list(dict.fromkeys([*dense, *lexical]))
    scores = {i: alpha * dn.get(i, 0.0) + (1 - alpha) * bn.get(i, 0.0) for i in ids}
    return sorted(scores.items(), key=lambda x: -x[1])


def dedupe(passages: Sequence[Passage]) -> list[Passage]:
    """Drop a passage whose span overlaps a better-ranked one of the same document by over half."""
    kept: list[Passage] = []
    for p in passages:
        c = p.chunk
        clash = False
        for q in kept:
            d = q.chunk
            if d.source == c.source:
                inter = min(c.char_end, d.char_end) - max(c.char_start, d.char_start)
                if inter > 0.5 * min(c.char_end - c.char_start, d.char_end - d.char_start):
                    clash = True
                    break
        if not clash:
            kept.append(p)
    return kept


@dataclass
class Retriever:
    store: IndexStore
    embedder: Any  # rag.embed.Embedder (duck-typed so tests may wrap it)
    settings: Settings = field(default_factory=Settings)
    _reranker: Any = None
    _refresh_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def open(cls, settings: Settings, embedder: Any | None = None) -> Retriever:
        store = IndexStore.open(Path(settings.index), settings.embedding_model, settings.chunk_config())
        store.set_search_params(settings.hnsw_ef_search, settings.ivf_nprobe)
        _ = store.bm25  # now, while this generation's files surely exist
        if embedder is None:
            from .embed import get_embedder

            embedder = get_embedder(settings.embedding_model, settings.device, settings.embed_batch_size)
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
            new = IndexStore.open(self.store.index_dir, self.settings.embedding_model, self.settings.chunk_config())
            new.set_search_params(self.settings.hnsw_ef_search, self.settings.ivf_nprobe)
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
    ) -> list[list[Passage]]:
        """Top-k passages for each query. One batched encode; FAISS and BM25 per filter group.

        Every read goes to one generation (`store`, default the current one), even if a build
        publishes a new one meanwhile: no passage mixes two generations' rows.
        """
        s = self.settings
        store = store or self.store
        k = k or s.top_k
        mode = mode or s.retrieval_mode
        if mode not in MODES:
            raise ConfigError(f"unknown retrieval mode '{mode}' (use dense, bm25 or hybrid)")
        rerank = (s.reranker is not None) if rerank is None else rerank
        dedupe_hits = s.dedupe if dedupe_hits is None else dedupe_hits
        expand = s.expand_neighbours if expand is None else expand
        if not queries:
            return []
        per_query = list(filters) if isinstance(filters, list) else [filters] * len(queries)
        clean = [re.sub(r"\s+", " ", q).strip() for q in queries]
        qvecs = self.embedder.encode(clean)
        n_cand = max(k, s.candidates) if (mode == "hybrid" or rerank or dedupe_hits) else k
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
                    if s.fusion == "rrf":
                        fused = rrf([dense_rank[row], bm_rank], s.rrf_k, [1.0, 2.0 if ident else 1.0])
                    else:
                        alpha = min(s.fusion_alpha, 0.5) if ident else s.fusion_alpha
                        fused = convex_fusion(dense_scores[row], bm_scores, alpha)
                results[qi] = self._passages(store, fused, qvecs[qi], bm_scores, dense_rank[row], bm_rank, mode)
        out = []
        for q, hits in zip(clean, results, strict=True):
            if rerank and hits:
                hits = self._rerank(q, hits[: s.rerank_top])
            if dedupe_hits:
                hits = dedupe(hits)
            hits = [replace(p, rank=i + 1) for i, p in enumerate(hits[:k])]
            if expand:
                hits = [replace(p, neighbours=tuple(c for c in store.neighbours(p.chunk, expand, expand) if c.chunk_id != p.chunk.chunk_id)) for p in hits]
            out.append(hits)
        return out

    # -- internals ---------------------------------------------------------------------------

    def _has_known_identifier(self, store: IndexStore, query: str) -> bool:
        from .lexical import identifiers

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

    def _rerank(self, query: str, hits: list[Passage]) -> list[Passage]:
        if self._reranker is None:
            try:
                from sentence_transformers import CrossEncoder

                self._reranker = CrossEncoder(self.settings.reranker, device=self.embedder.device if hasattr(self.embedder, "device") else None)
            except Exception as e:
                raise ModelLoadError(f"cannot load reranker '{self.settings.reranker}': {e}") from None
        scores = self._reranker.predict([(query, p.chunk.text) for p in hits], show_progress_bar=False)
        order = np.argsort(-np.asarray(scores), kind="stable")
        return [replace(hits[i], score=float(scores[i]), scores={**hits[i].scores, "rerank": float(scores[i])}) for i in order]
