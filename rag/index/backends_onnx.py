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
import logging
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


def exported(folder: Path, kind: str, cache_dir: Path, quantize: bool = False) -> Path:
    """Path of the cached ONNX file for this model (exporting it first if needed)."""
    folder = Path(folder)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", folder.name)[-60:]
    target = Path(cache_dir) / "onnx" / f"{slug}-{kind}-{fingerprint(folder)}"
    fp32 = target / "model.onnx"
    if not fp32.is_file():
        _export(folder, kind, fp32)
    if not quantize:
        return fp32
    int8 = target / "model-int8.onnx"
    if not int8.is_file():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        tmp = int8.with_name(f"tmp-{os.getpid()}-{threading.get_ident()}-int8.onnx")
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # quantize_dynamic logs a "consider pre-processing" notice at WARNING
        try:
            quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8)
        finally:
            root.setLevel(level)
        os.replace(tmp, int8)
    return int8


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
    """An exported model + its fast tokenizer. Thread-safe (ONNX Runtime sessions are)."""

    def __init__(
        self,
        folder: Path,
        kind: str,
        cache_dir: Path,
        max_length: int,
        quantize: bool = False,
        threads: int = 0,
        pair: bool = False,
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.path = exported(folder, kind, cache_dir, quantize)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or (os.cpu_count() or 1)
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise ModelLoadError(f"cannot open {self.path}: {e}; delete it to export again") from None
        self.inputs = {i.name for i in self.session.get_inputs()}
        tj = Path(folder) / "tokenizer.json"
        if not tj.is_file():
            raise ModelLoadError(f"{folder} has no tokenizer.json (a fast tokenizer is needed for the ONNX backend)")
        self.plain = Tokenizer.from_file(str(tj))  # for counting and spans: no truncation, no padding
        self.plain.no_truncation()
        self.plain.no_padding()
        self.tok = Tokenizer.from_file(str(tj))
        self.tok.enable_truncation(max_length, strategy="only_second" if pair else "longest_first")
        pad_id = self.tok.token_to_id("[PAD]")
        self.tok.enable_padding(
            pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]" if pad_id is not None else "<pad>"
        )
        self.quantized = quantize

    def run(self, encodings: Sequence[Any]) -> np.ndarray:
        feed = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        return self.session.run(None, {k: v for k, v in feed.items() if k in self.inputs})[0]

    def encode(self, texts: Sequence[str], batch_size: int, pairs_with: str | None = None) -> np.ndarray:
        """Texts (or (pairs_with, text) pairs) through the model, longest first in batches (less padding)."""
        order = np.argsort([-len(t) for t in texts], kind="stable")
        outs: list[np.ndarray] = []
        for i in range(0, len(order), batch_size):
            part = [texts[j] for j in order[i : i + batch_size]]
            enc = self.tok.encode_batch([(pairs_with, t) for t in part] if pairs_with is not None else part)
            outs.append(self.run(enc))
        res = np.concatenate(outs) if outs else np.zeros((0,), np.float32)
        back = np.empty_like(res)
        back[order] = res
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
    ) -> None:
        folder = Path(folder)
        cfg = (
            json.loads((folder / "sentence_bert_config.json").read_text())
            if (folder / "sentence_bert_config.json").is_file()
            else {}
        )
        self.max_seq_length = int(cfg.get("max_seq_length") or 512)
        self.enc = OnnxEncoder(folder, "embed", cache_dir, self.max_seq_length, quantize, threads)
        self.model_name = model_name
        self.device = "cpu"
        self.batch_size = batch_size
        self.quantized = quantize
        self.backend = "onnx-int8" if quantize else "onnx"
        self.dimension = int(self.enc.run(self.enc.tok.encode_batch(["x"])).shape[1])
        self.special_tokens = len(self.enc.plain.encode("x", add_special_tokens=True).ids) - len(
            self.enc.plain.encode("x", add_special_tokens=False).ids
        )

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
