"""Retrieval over an IndexStore: dense (FAISS) search, batched for many queries, with filters."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError
from .settings import Settings
from .store import IndexStore
from .types import Passage

Filters = dict[str, list[str]]


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


@dataclass
class Retriever:
    store: IndexStore
    embedder: object  # rag.embed.Embedder (duck-typed so tests may pass a small one)

    @classmethod
    def open(cls, settings: Settings, embedder: object | None = None) -> Retriever:
        store = IndexStore.open(
            Path(settings.index), settings.embedding_model, settings.chunk_config()
        )
        store.set_search_params(settings.hnsw_ef_search, settings.ivf_nprobe)
        if embedder is None:
            from .embed import get_embedder

            embedder = get_embedder(
                settings.embedding_model, settings.device, settings.embed_batch_size
            )
        return cls(store, embedder)

    def refresh(self) -> bool:
        """Follow a newer generation if a build published one. True if it switched."""
        if not self.store.is_stale():
            return False
        new = IndexStore.open(self.store.index_dir)
        new.set_search_params(128, 16)
        old, self.store = self.store, new
        old.close()
        return True

    def dense(
        self,
        queries: Sequence[str],
        k: int = 5,
        filters: Sequence[Filters | None] | Filters | None = None,
    ) -> list[list[Passage]]:
        """Top-k passages for each query; one batched encode and one FAISS call per filter group."""
        if not queries:
            return []
        per_query = list(filters) if isinstance(filters, list) else [filters] * len(queries)  # type: ignore[list-item]
        clean = [re.sub(r"\s+", " ", q).strip() for q in queries]
        vecs = self.embedder.encode(clean)  # type: ignore[attr-defined]
        results: list[list[Passage]] = [[] for _ in queries]
        groups: dict[str, list[int]] = {}
        for i, f in enumerate(per_query):
            key = repr(sorted((f or {}).items()))
            groups.setdefault(key, []).append(i)
        for idxs in groups.values():
            allowed = self.store.ids_matching(per_query[idxs[0]])
            scores, ids = self.store.search(vecs[idxs], k, allowed)
            chunks = self.store.chunks(ids.ravel().tolist())
            for row, qi in enumerate(idxs):
                hits = []
                for s, fid in zip(scores[row], ids[row], strict=True):
                    c = chunks.get(int(fid))
                    if c is not None:
                        hits.append(Passage(chunk=c, score=float(s), rank=len(hits) + 1))
                results[qi] = hits
        return results
