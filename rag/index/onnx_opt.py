"""ONNX Runtime sessions that start fast and stay quiet, and the int8 recipes for the exported models.

Why a module of its own: `backends_onnx` exports the models; this one decides how a session runs them.

- **Optimized graph, saved once.** ONNX Runtime rewrites the graph (fusions of layer norms, GELU, matmul
  + bias) every time a session is created: 0.2-0.3 s of a cold CLI for each of the embedder and the scorer.
  The first session saves the rewritten graph beside the model; later ones load it with optimization off.
  The saved file is keyed by the source file's size and mtime and by the onnxruntime version, so a
  re-exported model or another runtime never loads a stale graph. It is written at the "extended" level,
  which holds no hardware-specific layout (the "all" level adds only NCHWc convolution layouts, which
  these BERT graphs do not use).
- **No spin-waiting.** ORT's intra-op threads spin between operators by default; on a shared 2-core
  machine the spinning thread burns the CPU the other needs (1.6-2x the CPU seconds per question at
  load 10). `spin=False` makes them sleep.
- **int8 recipes** (dynamic quantization, weights int8, activations quantized per call): `dynamic` is the
  original (every MatMul/Gemm/Gather weight, one scale per tensor, embeddings included); the others
  quantize only the encoder's linear layers (MatMul), with one scale per output channel, and keep the
  embeddings, the pooler and the classifier head in fp32; `channel-noffn2` also keeps every `output/dense`
  projection in fp32: the FFN down projections (the matmul after GELU, whose inputs have the largest
  outliers) and, by the same name pattern, the attention output projections (as measured).
  Held-out quality of each: benchmarks/RESULTS.md.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path
from typing import Any

INT8_RECIPES: dict[str, dict[str, Any]] = {
    "dynamic": {},
    "channel": {"per_channel": True, "op_types_to_quantize": ["MatMul"]},
    "channel-noffn2": {"per_channel": True, "op_types_to_quantize": ["MatMul"], "exclude": r"/output/dense/"},
    "channel-edges": {"per_channel": True, "op_types_to_quantize": ["MatMul"], "exclude": r"/layer\.(0|5)/"},
}


def int8_name(recipe: str) -> str:
    """File name of a recipe's int8 copy (the original recipe keeps its old name: existing caches stay valid)."""
    if recipe not in INT8_RECIPES:
        from rag.errors import ModelLoadError

        raise ModelLoadError(f"unknown int8 recipe '{recipe}' (use {', '.join(INT8_RECIPES)})")
    return "model-int8.onnx" if recipe == "dynamic" else f"model-int8-{recipe}.onnx"


def quantize_model(fp32: Path, out: Path, recipe: str = "dynamic") -> None:
    """Write the int8 copy of `fp32` made by `recipe` to `out` (atomically: a reader never sees half a file)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    spec = dict(INT8_RECIPES[recipe])
    exclude = spec.pop("exclude", None)
    if exclude:
        nodes = [n.name for n in onnx.load(str(fp32), load_external_data=False).graph.node]
        spec["nodes_to_exclude"] = [n for n in nodes if re.search(exclude, n)]
    tmp = out.with_name(f"tmp-{os.getpid()}-{threading.get_ident()}-{out.name}")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # quantize_dynamic logs a "consider pre-processing" notice at WARNING
    try:
        quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, **spec)
        os.replace(tmp, out)
    finally:
        root.setLevel(level)
        tmp.unlink(missing_ok=True)


def optimized_path(path: Path) -> Path:
    """Where the optimized graph of `path` is cached: keyed by the source's size + mtime and the ORT version."""
    import onnxruntime as ort

    st = path.stat()
    return path.with_name(f"{path.stem}.opt-{ort.__version__}-{st.st_size:x}-{st.st_mtime_ns:x}.onnx")


def session_options(threads: int = 0, spin: bool = False) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or (os.cpu_count() or 1)
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    opts.log_severity_level = 3  # the "hardware-specific optimizations" notice is for the "all" level only
    return opts


def open_session(path: Path, threads: int = 0, spin: bool = False, cache: bool = True) -> Any:
    """A CPU session for `path`, from its cached optimized graph when there is one (see the module notes).

    `cache=False`: optimize in memory every time, save nothing (the behaviour before the cache).
    """
    import onnxruntime as ort

    path = Path(path)
    providers = ["CPUExecutionProvider"]
    target = optimized_path(path) if cache else None
    if target is not None and target.is_file():
        opts = session_options(threads, spin)
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            return ort.InferenceSession(str(target), opts, providers=providers)
        except Exception:  # damaged or foreign file: optimize the source again below
            target.unlink(missing_ok=True)
    opts = session_options(threads, spin)
    tmp = None
    if target is not None and os.access(path.parent, os.W_OK):
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        tmp = target.with_name(f"tmp-{os.getpid()}-{threading.get_ident()}-{target.name}")
        opts.optimized_model_filepath = str(tmp)
    else:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), opts, providers=providers)
    if tmp is not None and target is not None:
        try:
            if tmp.is_file():
                for stale in path.parent.glob(f"{path.stem}.opt-*.onnx"):  # graphs of an older export or runtime
                    stale.unlink(missing_ok=True)
                os.replace(tmp, target)
        except OSError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    return session
