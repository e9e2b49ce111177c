"""ONNX Runtime backend for the two encoder models (the embedder and the evidence scorer) on CPU.

Why: on a 2-core CPU, ONNX Runtime runs these small BERT models faster than torch eager, loads in a
fraction of a second, and with the `tokenizers` library needs neither torch nor transformers at
question time (the CLI's cold start is mostly those imports).

Each model is exported once from its local weights (torch.onnx, with the pooling and normalisation
of a sentence-transformers embedder, or the relevance logit of a cross-encoder, inside the graph)
and cached under `<cache_dir>/onnx/`, keyed by the weights' fingerprint; optional int8 dynamic
quantization is a second cached file made from the first. Export needs torch + transformers once.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import ModelLoadError

KINDS = ("embed", "score")


EMBED_INT8 = "channel"  # the embedder's int8 recipe (onnx_opt.INT8_RECIPES), recorded in manifests as "int8-channel"


def onnx_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("tokenizers") is not None


def cuda_present() -> bool:
    """Whether a CUDA device may be here, without importing torch (which takes seconds): no NVIDIA driver, no CUDA."""
    if os.path.exists("/proc/driver/nvidia/version") or any(Path("/dev").glob("nvidia[0-9]*")):
        try:
            import torch

            return bool(torch.cuda.is_available())
        except ImportError:
            return False
    return False


def _weights(folder: Path) -> Path:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return folder / name
    raise ModelLoadError(f"no model.safetensors or pytorch_model.bin in {folder}")


def fingerprint(folder: Path) -> str:
    """Weights + config identity: a retrained or replaced model gets a new export."""
    w = _weights(folder)
    h = hashlib.sha256()
    h.update((folder / "config.json").read_bytes() if (folder / "config.json").is_file() else b"")
    size = w.stat().st_size
    h.update(str(size).encode())
    with w.open("rb") as f:
        h.update(f.read(1 << 20))
        f.seek(max(0, size - (1 << 20)))
        h.update(f.read(1 << 20))
    return h.hexdigest()[:16]


def embedder_pooling(folder: Path) -> str | None:
    """'mean' or 'cls' for a sentence-transformers folder this backend can reproduce exactly; None otherwise."""
    modules = folder / "modules.json"
    if not modules.is_file():
        return None
    kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in json.loads(modules.read_text())]
    if kinds[:2] != ["Transformer", "Pooling"] or any(k not in ("Transformer", "Pooling", "Normalize") for k in kinds):
        return None
    pool = next(m for m in json.loads(modules.read_text()) if m.get("type", "").endswith("Pooling"))
    cfg = json.loads((folder / pool.get("path", "1_Pooling") / "config.json").read_text())
    if cfg.get("pooling_mode_mean_tokens"):
        return "mean"
    if cfg.get("pooling_mode_cls_token"):
        return "cls"
    return None


def exported(folder: Path, kind: str, cache_dir: Path, quantize: bool = False, *, int8: str = "dynamic") -> Path:
    """Path of the cached ONNX file for this model (exporting it first if needed).

    `quantize`: its int8 copy, made by the recipe `int8` (`onnx_opt.INT8_RECIPES`; `dynamic` is the original).
    """
    from rag.index.onnx_opt import int8_name, quantize_model

    folder = Path(folder)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", folder.name)[-60:]
    target = Path(cache_dir) / "onnx" / f"{slug}-{kind}-{fingerprint(folder)}"
    fp32 = target / "model.onnx"
    if not fp32.is_file():
        _export(folder, kind, fp32)
    if not quantize:
        return fp32
    out = target / int8_name(int8)
    if not out.is_file():
        quantize_model(fp32, out, int8)
    return out


def _export(folder: Path, kind: str, out: Path) -> None:
    try:
        import torch
        from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging
    except ImportError as e:
        raise ModelLoadError(f"exporting {folder} to ONNX needs torch and transformers: {e}") from None
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    tok = AutoTokenizer.from_pretrained(str(folder))
    if kind == "embed":
        pooling = embedder_pooling(folder)
        if pooling is None:
            raise ModelLoadError(
                f"{folder} is not a sentence-transformers model with mean or CLS pooling; use the torch backend"
            )
        base = AutoModel.from_pretrained(str(folder), dtype=torch.float32)

        class Wrapped(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.m = base

            def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
                h = self.m(
                    input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
                ).last_hidden_state
                if pooling == "cls":
                    v = h[:, 0]
                else:
                    m = attention_mask.unsqueeze(-1).to(h.dtype)
                    v = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
                return torch.nn.functional.normalize(v, p=2.0, dim=1)
    else:
        base = AutoModelForSequenceClassification.from_pretrained(str(folder), dtype=torch.float32)

        class Wrapped(torch.nn.Module):  # type: ignore[no-redef]
            def __init__(self) -> None:
                super().__init__()
                self.m = base

            def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
                return self.m(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits[
                    :, 0
                ]

    model = Wrapped().eval()
    enc = tok(["a short example", "another, somewhat longer example text"], padding=True, return_tensors="pt")
    if "token_type_ids" not in enc:
        enc["token_type_ids"] = torch.zeros_like(enc["input_ids"])
    args = (enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
    tmp = out.parent.with_name(out.parent.name + f".tmp-{os.getpid()}-{threading.get_ident()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with torch.inference_mode(), warnings.catch_warnings():
            # tracer notes about shape-dependent Python branches: the shapes are dynamic axes
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                args,
                str(tmp / out.name),
                input_names=["input_ids", "attention_mask", "token_type_ids"],
                output_names=["out"],
                dynamic_axes={n: {0: "batch", 1: "seq"} for n in ("input_ids", "attention_mask", "token_type_ids")}
                | {"out": {0: "batch"}},
                opset_version=17,
                dynamo=False,
            )
        out.parent.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(tmp, out.parent)
        except OSError:  # another process exported it first
            shutil.rmtree(tmp, ignore_errors=True)
    except Exception as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ModelLoadError(f"cannot export {folder} to ONNX: {type(e).__name__}: {str(e)[:300]}") from None


class OnnxEncoder:
    """An exported model + its fast tokenizer. Thread-safe (ONNX Runtime sessions are).

    `spin`: let ORT's threads spin-wait between operators (its default; off here: on a shared machine the
    spinning burns the CPU the other thread needs). `max_tokens`: `encode` batches (length-sorted) inputs
    while a batch's padded size stays within this many tokens, so short texts share a batch and long
    ones are not padded to each other (None: batches of `batch_size`). `int8`: the quantization recipe
    when `quantize`. `cache_graph`: keep ORT's optimized graph on disk for the next process (`onnx_opt`).
    """

    def __init__(
        self,
        folder: Path,
        kind: str,
        cache_dir: Path,
        max_length: int,
        quantize: bool = False,
        threads: int = 0,
        pair: bool = False,
        *,
        int8: str = "dynamic",
        spin: bool = False,
        max_tokens: int | None = None,
        cache_graph: bool = True,
    ) -> None:
        from tokenizers import Tokenizer

        self.path = exported(folder, kind, cache_dir, quantize, int8=int8)
        self.open(threads, spin, cache_graph)
        tj = Path(folder) / "tokenizer.json"
        if not tj.is_file():
            raise ModelLoadError(f"{folder} has no tokenizer.json (a fast tokenizer is needed for the ONNX backend)")
        self.plain = Tokenizer.from_file(str(tj))  # for counting and spans: no truncation, no padding
        self.plain.no_truncation()
        self.plain.no_padding()
        self.cut = Tokenizer.from_file(str(tj))  # truncated, not padded: `encode` pads each batch itself
        self.cut.enable_truncation(max_length, strategy="only_second" if pair else "longest_first")
        self.cut.no_padding()
        pad_id = self.cut.token_to_id("[PAD]")
        self.pad_id = 0 if pad_id is None else pad_id
        self._pad_token = "[PAD]" if pad_id is not None else "<pad>"
        self._tok: Any = None
        self._tj, self._max_length, self._pair = tj, max_length, pair
        self.quantized = quantize
        self.max_tokens = max_tokens

    def open(self, threads: int, spin: bool, cache_graph: bool) -> None:
        """Load `self.path` into the runtime (a subclass with another runtime replaces this and `infer`)."""
        from rag.index.onnx_opt import open_session

        try:
            self.session = open_session(self.path, threads, spin, cache_graph)
        except Exception as e:
            raise ModelLoadError(f"cannot open {self.path}: {e}; delete it to export again") from None
        self.inputs = {i.name for i in self.session.get_inputs()}

    def infer(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        """The model's output for one padded batch (the inputs the graph does not take are dropped)."""
        return self.session.run(None, {k: v for k, v in feed.items() if k in self.inputs})[0]

    @property
    def tok(self) -> Any:
        """A truncating and padding tokenizer for `run` (made on first use: parsing one costs ~30 ms of a cold CLI)."""
        if self._tok is None:
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(self._tj))
            tok.enable_truncation(self._max_length, strategy="only_second" if self._pair else "longest_first")
            tok.enable_padding(pad_id=self.pad_id, pad_token=self._pad_token)
            self._tok = tok
        return self._tok

    def run(self, encodings: Sequence[Any]) -> np.ndarray:
        feed = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        return self.infer(feed)

    def batches(self, lengths: Sequence[int], batch_size: int, max_tokens: int | None) -> list[np.ndarray]:
        """Indices of the inputs, longest first, cut into batches of at most `batch_size` inputs whose padded
        size (inputs x the first one's length) stays within `max_tokens` (a longer input goes alone)."""
        order = np.argsort(-np.asarray(lengths), kind="stable")
        out, i = [], 0
        while i < len(order):
            n = 1
            while (
                i + n < len(order)
                and n < batch_size
                and (max_tokens is None or (n + 1) * lengths[order[i]] <= max_tokens)
            ):
                n += 1
            out.append(order[i : i + n])
            i += n
        return out

    def encode(
        self, texts: Sequence[str], batch_size: int, pairs_with: str | None = None, max_tokens: int | None = -1
    ) -> np.ndarray:
        """Texts (or (pairs_with, text) pairs) through the model, length-sorted batches (see `batches`).

        `max_tokens` -1: the encoder's own (`self.max_tokens`). The outputs do not depend on the batching
        beyond float noise (padding is masked): tests/test_rerank_speed.py holds it to 1e-4.
        """
        if not texts:
            return np.zeros((0,), np.float32)
        enc = self.cut.encode_batch([(pairs_with, t) for t in texts] if pairs_with is not None else list(texts))
        lengths = [len(e.ids) for e in enc]
        outs, done = [], []
        for part in self.batches(lengths, batch_size, self.max_tokens if max_tokens == -1 else max_tokens):
            width = lengths[part[0]]
            ids = np.full((len(part), width), self.pad_id, np.int64)
            mask = np.zeros((len(part), width), np.int64)
            types = np.zeros((len(part), width), np.int64)
            for row, j in enumerate(part):
                n = lengths[j]
                ids[row, :n], mask[row, :n], types[row, :n] = enc[j].ids, 1, enc[j].type_ids
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            outs.append(self.infer(feed))
            done.append(part)
        res = np.concatenate(outs)
        back = np.empty_like(res)
        back[np.concatenate(done)] = res
        return back


class FastSpans:
    """text -> token character spans (special tokens excluded), like embed.TokenizerSpans, with `tokenizers`."""

    def __init__(self, tok: Any) -> None:
        self.tok = tok

    def __call__(self, text: str) -> Sequence[tuple[int, int]]:
        return self.many([text])[0]

    def many(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        if not texts:
            return []
        return [list(e.offsets) for e in self.tok.encode_batch(list(texts), add_special_tokens=False)]


class OnnxEmbedder:
    """The `Embedder` interface over ONNX Runtime (CPU); vectors match torch's to ~1e-6 in fp32."""

    backend = "onnx"

    def __init__(
        self,
        model_name: str,
        folder: Path,
        cache_dir: Path,
        batch_size: int = 64,
        quantize: bool = False,
        threads: int = 0,
        *,
        int8: str = EMBED_INT8,
    ) -> None:
        # int8 = "channel" (per-channel weights, embeddings fp32): on held-out PolicyQA/ObliQA its MRR@10 stays within
        # 0.4 point of fp32, where the per-tensor "dynamic" recipe lost 1.2-1.8 on ObliQA (benchmarks/bench_embed_quality.py)
        folder = Path(folder)
        cfg = (
            json.loads((folder / "sentence_bert_config.json").read_text())
            if (folder / "sentence_bert_config.json").is_file()
            else {}
        )
        self.max_seq_length = int(cfg.get("max_seq_length") or 512)
        self.enc = self.encoder(folder, cache_dir, quantize, threads, int8)
        self.model_name = model_name
        self.device = "cpu"
        self.batch_size = batch_size
        self.quantized = quantize
        self.backend = "onnx-int8" if quantize else "onnx"
        self.vectors = f"int8-{int8}" if quantize else "fp32"  # recorded in the index manifest (check_vectors)
        self.dimension = int(self.enc.encode(["x"], 1).shape[1])
        self.special_tokens = len(self.enc.plain.encode("x", add_special_tokens=True).ids) - len(
            self.enc.plain.encode("x", add_special_tokens=False).ids
        )

    def encoder(self, folder: Path, cache_dir: Path, quantize: bool, threads: int, int8: str) -> OnnxEncoder:
        """The runtime that computes the vectors (a subclass with another runtime replaces this)."""
        return OnnxEncoder(folder, "embed", cache_dir, self.max_seq_length, quantize, threads, int8=int8)

    def token_spans(self) -> FastSpans:
        return FastSpans(self.enc.plain)

    def count_tokens(self, text: str) -> int:
        return len(self.enc.plain.encode(text, add_special_tokens=False).ids)

    def encode(self, texts: Sequence[str], batch_size: int | None = None, show_progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vecs = self.enc.encode(list(texts), batch_size or self.batch_size)
        vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(vecs, dtype=np.float32)
