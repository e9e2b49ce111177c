"""OpenVINO backend for the two encoder models (the embedder and the evidence scorer) on CPU, in bf16 where the
CPU computes it natively.

Why: on a CPU with BF16 instructions (AVX512_BF16 or AMX, which OpenVINO reports among the CPU's
OPTIMIZATION_CAPABILITIES), OpenVINO runs these BERT models in bf16 at 0.45-0.6x the CPU time of fp32
ONNX Runtime, with scores and vectors close to fp32 (held-out quality in benchmarks/RESULTS.md,
"Session 5: OpenVINO bf16"). Without BF16 it runs f32, at about ONNX Runtime's speed.

The model is the ONNX file that `backends_onnx.exported` made (same cache folder, same fingerprint), so
there is one export per model; OpenVINO compiles it for this CPU and keeps the compiled blob in
`<export folder>/openvino-<version>/` (its CACHE_DIR), so a later process imports the blob instead of compiling;
another version's blob folder is deleted when this version first caches there.
Tokenisation and batching (length-sorted, token-budget batches) are `OnnxEncoder`'s: only the runtime
differs. `import openvino` happens only when this backend is used (it costs ~0.3 s of a cold CLI).
"""

from __future__ import annotations

import importlib.util
import os
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import ModelLoadError
from rag.index.backends_onnx import OnnxEmbedder, OnnxEncoder

PRECISIONS = ("auto", "bf16", "f32")
INSTALL_HINT = "pip install openvino (or set the backend to onnx or torch)"


def openvino_available() -> bool:
    """Whether OpenVINO and the fast tokenizers are importable (without importing them)."""
    return importlib.util.find_spec("openvino") is not None and importlib.util.find_spec("tokenizers") is not None


def require_openvino(setting: str) -> None:
    """Refuse a setting that names the openvino backend where the package is missing, saying what to do."""
    if not openvino_available():
        raise ModelLoadError(f"{setting} = openvino, but openvino is not installed: {INSTALL_HINT}")


def fallback_backend(kind: str) -> str:
    """The runtime `auto` falls back to when `kind` fails to load: OpenVINO -> ONNX Runtime (if installed) -> torch."""
    from rag.index.backends_onnx import onnx_available

    return "onnx" if kind == "openvino" and onnx_available() else "torch"


@lru_cache(maxsize=1)
def _core() -> Any:
    try:
        import openvino as ov
    except ImportError as e:
        raise ModelLoadError(f"the openvino backend needs the openvino package ({e}); {INSTALL_HINT}") from None
    return ov.Core()


def _cpu_flags() -> set[str] | None:
    """The CPU's feature flags from /proc/cpuinfo (None where there is none, e.g. macOS)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


@lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """Whether OpenVINO's CPU plugin computes bf16 natively here (AVX512_BF16 / AMX): the case where it is faster.

    A Linux CPU whose flags lack both is answered without importing openvino (~0.3 s of a cold CLI)."""
    flags = _cpu_flags()
    if flags is not None and not flags & {"avx512_bf16", "amx_bf16"}:
        return False
    if not openvino_available():
        return False
    try:
        return "BF16" in _core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:
        return False


def resolve_precision(precision: str = "auto") -> str:
    """auto -> bf16 where the CPU reports BF16, else f32. bf16 asked for on a CPU without it is refused: OpenVINO
    would emulate it slowly or silently run f32, and the manifest would record the wrong vectors."""
    if precision not in PRECISIONS:
        raise ModelLoadError(f"unknown openvino precision '{precision}' (use {', '.join(PRECISIONS)})")
    if precision == "auto":
        return "bf16" if cpu_has_bf16() else "f32"
    if precision == "bf16" and not cpu_has_bf16():
        raise ModelLoadError(
            "openvino precision bf16: this CPU has no native BF16 (OPTIMIZATION_CAPABILITIES); use auto or f32"
        )
    return precision


def openvino_preferred() -> bool:
    """Whether `auto` should take OpenVINO over ONNX Runtime on this CPU: installed, and the CPU computes bf16.

    Measured (benchmarks/RESULTS.md, "Session 5: OpenVINO bf16"): with BF16 the scorer needs ~0.6x the time of ONNX
    Runtime fp32 and the embedder ~0.45x, held-out quality within 0.5 point; OpenVINO f32 alone runs at about ONNX
    Runtime's speed (scorer 1.08 vs 1.14 CPU s), not worth a second runtime.
    """
    return openvino_available() and cpu_has_bf16()


def blob_dir(export_folder: Path) -> Path:
    """Where this OpenVINO version keeps the compiled blobs of one export: `openvino-<version>/` beside it. A blob
    compiled by another version is never imported, so each version gets its own folder (see `prune_blobs`)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("openvino")
    except PackageNotFoundError:
        v = "unknown"
    return export_folder / f"openvino-{v}"


def prune_blobs(export_folder: Path, keep: Path) -> list[Path]:
    """Delete the blob folders other OpenVINO versions left beside an export (~90 MB each, never read again
    after an upgrade); returns what was removed. Called when this version starts caching there."""
    import shutil

    gone = [d for d in export_folder.glob("openvino*") if d.is_dir() and d != keep]
    for d in gone:
        shutil.rmtree(d, ignore_errors=True)
    return gone


def compile_config(threads: int, precision: str, cache_dir: Path) -> dict[str, Any]:
    """The CPU plugin's settings: our thread count, latency mode (one request at a time, all threads on it),
    threads not pinned to cores, the inference precision and where compiled blobs are kept.

    No pinning: the plugin pins its threads by default; on a shared machine a thread pinned to a core that another
    process holds stalls the other one at every layer (20 candidates of the scorer at load 5: 1.34 -> 0.94 s wall,
    0.89 -> 0.69 CPU s; the same reason as ONNX Runtime's spin-waits being off, `onnx_opt`)."""
    return {
        "INFERENCE_NUM_THREADS": int(threads or (os.cpu_count() or 1)),
        "PERFORMANCE_HINT": "LATENCY",
        "ENABLE_CPU_PINNING": False,
        "INFERENCE_PRECISION_HINT": precision,
        "CACHE_DIR": str(cache_dir),
    }


class OpenVinoEncoder(OnnxEncoder):
    """`OnnxEncoder` (tokenizer, length-sorted token-budget batches) with the exported model compiled by OpenVINO.

    Thread-safe: the compiled model is shared, each thread gets its own infer request.
    """

    def __init__(
        self,
        folder: Path,
        kind: str,
        cache_dir: Path,
        max_length: int,
        threads: int = 0,
        pair: bool = False,
        *,
        precision: str = "auto",
        max_tokens: int | None = None,
    ) -> None:
        self.precision = resolve_precision(precision)
        super().__init__(folder, kind, cache_dir, max_length, False, threads, pair, max_tokens=max_tokens)

    def open(self, threads: int, spin: bool, cache_graph: bool) -> None:
        """Compile `self.path` for the CPU (or import the blob an earlier process compiled into `blob_dir`)."""
        core = _core()
        self.blob_dir = blob_dir(self.path.parent)
        config = compile_config(threads, self.precision, self.blob_dir)
        if not cache_graph or not os.access(self.path.parent, os.W_OK):
            config.pop("CACHE_DIR")
        else:
            prune_blobs(self.path.parent, keep=self.blob_dir)
        try:
            self.compiled = core.compile_model(str(self.path), "CPU", config)
        except Exception as e:
            raise ModelLoadError(
                f"openvino cannot compile {self.path}: {type(e).__name__}: {str(e)[:300]}; "
                "delete the folder to export again, or set the backend to onnx"
            ) from None
        self.inputs = {p.get_any_name() for p in self.compiled.inputs}
        try:
            self.from_cache = bool(self.compiled.get_property("LOADED_FROM_CACHE"))
        except Exception:
            self.from_cache = False
        self._local = threading.local()

    def infer(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        req = getattr(self._local, "req", None)
        if req is None:
            req = self._local.req = self.compiled.create_infer_request()
        req.infer({k: v for k, v in feed.items() if k in self.inputs})
        return np.array(req.get_output_tensor(0).data, dtype=np.float32)  # a copy: the request reuses its buffer


class OpenVinoEmbedder(OnnxEmbedder):
    """The `Embedder` interface over OpenVINO (CPU). In bf16 the vectors differ from fp32 by ~1e-3 (cosine
    >= 0.9999), recorded as "bf16" in the index manifest (`manifest.check_vectors` says what mixes)."""

    def __init__(
        self,
        model_name: str,
        folder: Path,
        cache_dir: Path,
        batch_size: int = 64,
        threads: int = 0,
        *,
        precision: str = "auto",
    ) -> None:
        self.precision = resolve_precision(precision)
        super().__init__(model_name, folder, cache_dir, batch_size, False, threads)
        self.backend = f"openvino-{self.precision}"
        self.vectors = "bf16" if self.precision == "bf16" else "fp32"

    def encoder(self, folder: Path, cache_dir: Path, quantize: bool, threads: int, int8: str) -> OnnxEncoder:
        return OpenVinoEncoder(folder, "embed", cache_dir, self.max_seq_length, threads, precision=self.precision)
