"""The evidence scorer: a cross-encoder reading (question, passage) together.

It reranks the fused candidates, picks the span of a long hit that answers best, and gives a
calibrated probability that the evidence answers the question (the answer stage's refusal signal).
The default is the project's own model, trained from the shipped MiniLM weights (`rag train scorer`,
`rag/retrieve/models/evidence-scorer/MODEL_CARD.md`); any Hugging Face cross-encoder id or local
folder can replace it (`retrieval.reranker`).
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import ModelLoadError
from rag.text.lexical import lexical_tokens
from rag.text.sentences import split_sentences
from rag.types import Passage

SHIPPED_SCORER = Path(__file__).resolve().parent / "models" / "evidence-scorer"
MEMO_QUERIES = 16  # recent questions whose (text -> score) are kept: an answer scores the same pairs again
MEMO_TEXTS = 4096  # per question, at most
# ONNX batches: length-sorted pairs share a batch while its padded size stays within this many tokens: a
# chunk-sized pair (150-256 word pieces) runs alone, unpadded, and a sentence pool's short pairs a few to a call.
# Same scores as batches of 32; less CPU (smaller activations stay in cache, no padding): 1.55 -> 1.35 CPU s for
# 20 chunks, 3.95 -> 3.46 for 60 sentences (benchmarks/RESULTS.md, "Reranking 20 candidates per question").
BATCH_TOKENS = 256
_ALIASES = {"evidence-scorer", "shipped", "default"}


def resolve_reranker(name: str) -> str:
    return str(SHIPPED_SCORER) if name in _ALIASES else name


def _check_one_output(folder: Path) -> None:
    """Refuse a local model whose config has no single-output classification head (e.g. a bi-encoder)."""
    try:
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot load reranker '{folder}': {type(e).__name__}: {e}") from None
    labels = cfg.get("num_labels", len(cfg.get("id2label") or {}) or 2)  # transformers' default is 2
    heads = [a for a in cfg.get("architectures") or [] if a.endswith("ForSequenceClassification")]
    if labels != 1 or not heads:
        raise ModelLoadError(f"reranker '{folder}' has {labels if heads else 'no classification'} outputs; "
                             "a cross-encoder with one relevance output is needed")


def choose_rerank_backend(name: str, device: str = "cpu", backend: str = "auto", quantize: bool = False) -> str:
    """torch, onnx or openvino. auto, for a local sequence-classification folder with a fast tokenizer on the CPU:
    OpenVINO where it is installed and the CPU computes bf16 (~0.6x ONNX Runtime fp32's time, held-out quality
    within 0.5 point: benchmarks/RESULTS.md, "Session 5: OpenVINO bf16"), else ONNX Runtime (same scores as
    torch, faster; `quantize` (int8) keeps ONNX Runtime, whose recipe it is); torch on a GPU or for a hub id."""
    if backend not in ("auto", "torch", "onnx", "openvino"):
        raise ModelLoadError(f"unknown reranker backend '{backend}' (use auto, torch, onnx or openvino)")
    folder = Path(name)
    local = folder.is_dir() and (folder / "tokenizer.json").is_file() and (folder / "config.json").is_file()
    if backend in ("onnx", "openvino"):
        if device not in ("auto", "cpu"):
            raise ModelLoadError(f"the {backend} reranker backend runs on the CPU; device '{device}' needs backend torch")
        if not local:
            raise ModelLoadError(f"the {backend} reranker backend needs a local model folder with tokenizer.json; '{name}' is not one")
        if backend == "openvino":
            from rag.index.backends_openvino import require_openvino

            require_openvino("retrieval.rerank_backend")
        return backend
    if backend == "torch" or device not in ("auto", "cpu") or not local:
        return "torch"
    from rag.index.backends_onnx import onnx_available
    from rag.index.backends_openvino import openvino_preferred

    if not quantize and openvino_preferred():
        return "openvino"
    return "onnx" if onnx_available() else "torch"


def fuse(logits: np.ndarray, retrieval: Sequence[float], w: float) -> np.ndarray:
    """w * minmax(logits) + (1 - w) * minmax(retrieval scores): the ranking `rag train scorer` tunes w for."""
    logits = np.asarray(logits, dtype=np.float64)
    if w >= 1.0 or len(logits) < 2:
        return logits

    def mm(x: np.ndarray) -> np.ndarray:
        span = float(x.max() - x.min())
        return (x - x.min()) / span if span > 0 else np.zeros_like(x)

    return w * mm(logits) + (1.0 - w) * mm(np.asarray(retrieval, dtype=np.float64))


class Reranker:
    """A sequence-classification cross-encoder with one output (a relevance logit), loaded on first use.

    `scorer.json` beside the weights (written by `rag train scorer`) holds a Platt calibration
    (probability = sigmoid(a * logit + b)); other models get sigmoid(logit).
    With `window=True` a passage longer than the reader's window is read as its best-matching run of
    whole sentences (`fit`) rather than cut after `max_length` word pieces: the option for a shorter,
    faster `max_length` (held-out quality in benchmarks/RESULTS.md; off by default, as measured there).
    """

    def __init__(self, name: str, device: str | None = None, max_length: int = 256, batch_size: int = 32,
                 quantize: bool = False, backend: str = "auto", cache_dir: Path | None = None, window: bool = False,
                 *, int8: str = "dynamic", max_tokens: int | None = BATCH_TOKENS, spin: bool = False,
                 cache_graph: bool = True, precision: str = "auto") -> None:
        self.name = resolve_reranker(name)
        self.int8 = int8  # onnx: the int8 recipe when quantize (rag.index.onnx_opt.INT8_RECIPES)
        self.max_tokens = max_tokens  # onnx: padded tokens per batch (OnnxEncoder.batches)
        self.spin = spin  # onnx: ORT threads spin-wait between operators
        self.cache_graph = cache_graph  # onnx: reuse the optimized graph saved by an earlier process (onnx_opt)
        self.precision = precision  # openvino: auto (bf16 where the CPU has it) | bf16 | f32
        self.device = device or "cpu"
        self.max_length = max_length
        self.batch_size = batch_size
        self.quantize = quantize
        self.window = window
        self.backend = choose_rerank_backend(self.name, self.device, backend, quantize)
        self._auto = backend == "auto"  # may fall back to torch if the export fails
        self.cache_dir = cache_dir
        self._model: Any = None
        self._tok: Any = None
        self._onnx: Any = None
        self.calibration = (1.0, 0.0)
        self.fusion_weight = 1.0  # scorer.json's fusion.all (1: the cross-encoder's order alone)
        self._lock = threading.Lock()
        self._memo: OrderedDict[str, dict[str, float]] = OrderedDict()
        self._memo_lock = threading.Lock()

    def _load(self) -> None:
        if self._model is not None or self._onnx is not None:
            return
        with self._lock:
            if self._model is not None or self._onnx is not None:
                return
            self._read_calibration()
            if self.backend in ("onnx", "openvino"):
                _check_one_output(Path(self.name))  # as the torch path does: a bi-encoder folder is no cross-encoder
            while self.backend in ("onnx", "openvino"):
                try:
                    self._onnx = self._encoder()
                    return
                except (ModelLoadError, OSError) as e:
                    if not self._auto:
                        raise ModelLoadError(f"{self.backend} reranker backend: {e}") from None
                    import warnings

                    from rag.index.backends_openvino import fallback_backend

                    fallback = fallback_backend(self.backend)
                    warnings.warn(f"{self.backend} reranker backend unavailable ({e}); using {fallback}", stacklevel=2)
                    self.backend = fallback
            try:
                import torch
                from transformers import AutoModelForSequenceClassification, AutoTokenizer
                from transformers.utils import logging as hf_logging

                hf_logging.set_verbosity_error()
                tok = AutoTokenizer.from_pretrained(self.name)
                model = AutoModelForSequenceClassification.from_pretrained(self.name, dtype=torch.float32)
            except Exception as e:
                raise ModelLoadError(f"cannot load reranker '{self.name}': {type(e).__name__}: {e}") from None
            if model.config.num_labels != 1:
                raise ModelLoadError(f"reranker '{self.name}' has {model.config.num_labels} outputs; a cross-encoder with one relevance output is needed")
            model.eval()
            if self.quantize and self.device == "cpu":
                model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
            else:
                model.to(self.device)
            self._tok, self._model = tok, model

    def _encoder(self) -> Any:
        """The exported scorer in ONNX Runtime or OpenVINO (both `OnnxEncoder`s: same tokenizer and batching)."""
        from rag.settings import default_cache_dir

        cache = self.cache_dir or default_cache_dir()
        if self.backend == "openvino":
            from rag.index.backends_openvino import OpenVinoEncoder

            return OpenVinoEncoder(Path(self.name), "score", cache, self.max_length, pair=True,
                                   precision=self.precision, max_tokens=self.max_tokens)
        from rag.index.backends_onnx import OnnxEncoder

        return OnnxEncoder(Path(self.name), "score", cache, self.max_length, quantize=self.quantize, pair=True,
                           int8=self.int8, spin=self.spin, max_tokens=self.max_tokens, cache_graph=self.cache_graph)

    def _read_calibration(self) -> None:
        """Platt calibration and the fusion weight, from the `scorer.json` that `rag train scorer` writes.

        The fusion weight `w` was tuned on the scorer's validation documents: candidates are ordered by
        w * minmax(logit) + (1 - w) * minmax(retrieval score). An exact phrase that the retrievers found
        keeps a say where the cross-encoder alone ranks a topical neighbour first. Without the file: w = 1.
        """
        meta = Path(self.name) / "scorer.json"
        if meta.is_file():
            info = json.loads(meta.read_text())
            cal = info.get("calibration") or {}
            self.calibration = (float(cal.get("a", 1.0)), float(cal.get("b", 0.0)))
            w = (info.get("fusion") or {}).get("all", 1.0)
            self.fusion_weight = min(1.0, max(0.0, float(w)))

    def scores(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """Relevance logits, one per text (higher = more likely to answer the question)."""
        if not texts:
            return np.zeros(0, np.float32)
        self._load()
        # a question longer than the reader's window would fail truncation ("only_second"): it reads the start
        query = " ".join(query.split()[: max(8, self.max_length // 3)])
        if self.window:
            texts = self.fit(query, texts)
        # One answer reads the same pairs more than once (the second look and the sentence pool search again
        # and rerank the same candidates; a follow-up re-asks): each distinct pair is scored once per question.
        with self._memo_lock:
            memo = self._memo.pop(query, None) or {}
            self._memo[query] = memo
            while len(self._memo) > MEMO_QUERIES:
                self._memo.popitem(last=False)
            known = {t: memo[t] for t in texts if t in memo}
        todo = [t for t in dict.fromkeys(texts) if t not in known]
        if todo:
            fresh = dict(zip(todo, (float(x) for x in self._score(query, todo)), strict=True))
            known.update(fresh)
            with self._memo_lock:
                if len(memo) + len(fresh) > MEMO_TEXTS:
                    memo.clear()
                memo.update(fresh)
        return np.array([known[t] for t in texts], np.float32)

    def _score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        if self._onnx is not None:
            return self._onnx.encode(list(texts), self.batch_size, pairs_with=query).astype(np.float32)
        import torch

        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                part = list(texts[i : i + self.batch_size])
                enc = self._tok([query] * len(part), part, truncation="only_second", max_length=self.max_length,
                                padding=True, return_tensors="pt").to(self.device if not self.quantize else "cpu")
                out.append(self._model(**enc).logits[:, 0].float().cpu().numpy())
        return np.concatenate(out).astype(np.float32)

    def _count(self, texts: Sequence[str]) -> list[int]:
        """Word pieces of each text, special tokens not counted."""
        if self._onnx is not None:
            return [len(e.ids) for e in self._onnx.plain.encode_batch(list(texts), add_special_tokens=False)]
        return [len(ids) for ids in self._tok(list(texts), add_special_tokens=False)["input_ids"]]

    def fit(self, query: str, texts: Sequence[str]) -> list[str]:
        """Each text that would overflow the reader's window cut to the run of whole sentences that fits and
        holds the most of the question's words (weighted by how rare each is among these texts); others as given.

        Why: truncation reads only a long passage's start, so a shorter (faster) `max_length` would miss
        an answer near its end; the run is chosen lexically, which costs microseconds, not a model pass.
        No question word anywhere: the start, as truncation would read.
        """
        self._load()
        budget = self.max_length - self._count([query])[0] - 3  # [CLS] question [SEP] passage [SEP]
        lens = self._count(texts)
        long = [i for i, n in enumerate(lens) if n > budget]
        if not long or budget < 8:
            return list(texts)
        qterms = set(lexical_tokens(query))
        terms = [set(lexical_tokens(t)) for t in texts]
        idf = {w: math.log((len(texts) + 1) / (0.5 + sum(w in ts for ts in terms))) for w in qterms}
        out = list(texts)
        spans = {i: split_sentences(texts[i], 0, len(texts[i])) for i in long}
        flat = [texts[i][a:b] for i in long for a, b in spans[i]]
        sizes = iter(self._count(flat))
        for i in long:
            sp = spans[i]
            n = [next(sizes) for _ in sp]
            if len(sp) < 2:
                continue
            words = [set(lexical_tokens(texts[i][a:b])) & qterms for a, b in sp]
            best, best_score = (0, 1), -1.0
            for a in range(len(sp)):
                b, used = a + 1, n[a]
                while b < len(sp) and used + n[b] <= budget:
                    used += n[b]
                    b += 1
                score = sum(idf[w] for w in set().union(*words[a:b]))
                if score > best_score + 1e-9:
                    best, best_score = (a, b), score
            if best != (0, len(sp)):
                out[i] = texts[i][sp[best[0]][0] : sp[best[1] - 1][1]]
        return out

    def probability(self, logits: np.ndarray | float) -> np.ndarray:
        """Calibrated probability that a text holds the answer."""
        a, b = self.calibration
        return 1.0 / (1.0 + np.exp(-(a * np.asarray(logits, dtype=np.float64) + b)))

    def rerank(self, query: str, hits: Sequence[Passage]) -> list[Passage]:
        """Hits ordered by the cross-encoder's score fused with the retrieval score at the scorer's own weight
        (`fuse`; the logit is kept in `scores["rerank"]`, its probability in `scores["rerank_p"]`)."""
        scores = self.scores(query, [p.chunk.text for p in hits])
        probs = self.probability(scores)
        order = np.argsort(-fuse(scores, [p.scores.get("fused", p.score) for p in hits], self.fusion_weight), kind="stable")
        return [replace(hits[i], score=float(scores[i]),
                        scores={**hits[i].scores, "rerank": float(scores[i]), "rerank_p": float(probs[i])}) for i in order]

    def focus(self, query: str, hits: Sequence[Passage], max_words: int) -> list[Passage]:
        """For hits longer than `max_words`, the window of whole sentences (at most `max_words`, or one longer
        sentence) that scores best.

        The chunk stays what is cited; `Passage.span` marks the part shown first (and counted against a
        reader's word budget).
        """
        windows: list[tuple[int, int, int]] = []  # (hit index, start, end)
        for i, p in enumerate(hits):
            text = p.chunk.text
            if len(text.split()) <= max_words:
                continue
            spans = split_sentences(text, 0, len(text))
            sizes = [len(text[s:e].split()) for s, e in spans]
            for a in range(len(spans)):
                b, words = a + 1, sizes[a]  # a window holds at least one whole sentence, however long
                while b < len(spans) and words + sizes[b] <= max_words:
                    words += sizes[b]
                    b += 1
                windows.append((i, spans[a][0], spans[b - 1][1]))
        if not windows:
            return list(hits)
        scores = self.scores(query, [hits[i].chunk.text[a:b] for i, a, b in windows])
        best: dict[int, tuple[float, int, int]] = {}
        for (i, a, b), s in zip(windows, scores, strict=True):
            if i not in best or s > best[i][0]:
                best[i] = (float(s), a, b)
        return [replace(p, span=(best[i][1], best[i][2])) if i in best else p for i, p in enumerate(hits)]
