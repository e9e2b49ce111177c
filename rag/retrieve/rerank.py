"""Cross-encoder reranking of the fused candidates: (question, passage) pairs scored jointly."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from rag.errors import ModelLoadError
from rag.types import Passage


class Reranker:
    """A sentence-transformers CrossEncoder (HF id or folder), loaded on first use."""

    def __init__(self, name: str, device: str | None = None) -> None:
        self.name = name
        self.device = device
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def model(self) -> Any:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    try:
                        from sentence_transformers import CrossEncoder

                        self._model = CrossEncoder(self.name, device=self.device)
                    except Exception as e:
                        raise ModelLoadError(f"cannot load reranker '{self.name}': {e}") from None
        return self._model

    def scores(self, query: str, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros(0, np.float32)
        return np.asarray(self.model.predict([(query, t) for t in texts], show_progress_bar=False), dtype=np.float32)

    def rerank(self, query: str, hits: Sequence[Passage]) -> list[Passage]:
        """Hits ordered by the cross-encoder's score (kept in `scores["rerank"]`)."""
        scores = self.scores(query, [p.chunk.text for p in hits])
        order = np.argsort(-scores, kind="stable")
        return [replace(hits[i], score=float(scores[i]), scores={**hits[i].scores, "rerank": float(scores[i])}) for i in order]
