"""The evidence scorer: a cross-encoder (question, text) -> relevance, trained from the shipped
all-MiniLM-L6-v2 weights on PolicyQA dev + ObliQA dev, split by document with a fixed seed.

Why it is trained here: no reranker may be downloaded (offline installs), and the hybrid retriever
finds the right passage in its top 20-30 far more often than in its top 1-5; a model that reads the
question and the passage together can reorder those few. Modules: `data` (sets, split), `candidates`
(BM25 / dense / hybrid lists, pseudo-queries, the cache), `train` (groups, recipe, loop, save),
`evaluate` (metrics, fusion, answerability, calibration), `card` (MODEL_CARD.md), `pipeline` (all
of it in order). Entry point: `train_scorer` (what `rag train scorer` runs through the service).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def train_scorer(policyqa: Path, obliqa: Path, out: Path, **kw: Any) -> dict[str, Any]:
    """See `rag.jobs.scorer.pipeline.train_scorer` (imported on call: torch and friends load lazily)."""
    from rag.jobs.scorer.pipeline import train_scorer as run

    return run(policyqa, obliqa, out, **kw)


__all__ = ["train_scorer"]
