"""Embedding throughput on an index's real chunks: our embedders against bare torch fp32.

The ratio issue 16 asks for ("embedding throughput >= 2x today's torch fp32") measured in one process on the
same chunks: torch fp32 (`SentenceTransformer.encode` through `rag.index.embed.Embedder`), the library's ONNX
Runtime fp32 embedder and its OpenVINO embedder (bf16 where the CPU computes bf16), interleaved per batch so
that load drifts hit all of them alike. CPU seconds of this process and wall time per backend, and the smallest
cosine of each backend's vectors to torch's. Quality on held-out questions: `bench_embed_quality.py`.

    .venv/bin/python benchmarks/bench_embed_speed.py --index index --n 512
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # torch's OpenMP threads idle like the ONNX sessions' (no spin)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmarks._common import machine  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", type=Path, default=Path("index"))
    ap.add_argument("--n", type=int, default=512, help="chunks drawn from the index (seed 0)")
    ap.add_argument("--batch-size", type=int, default=64)
    a = ap.parse_args()

    import torch

    from rag.index.backends_onnx import OnnxEmbedder
    from rag.index.backends_openvino import OpenVinoEmbedder, openvino_available
    from rag.index.embed import Embedder, resolve_embedding_model
    from rag.index.layout import faiss_ids
    from rag.index.reader import IndexStore
    from rag.settings import DEFAULT_EMBEDDING_MODEL, default_cache_dir

    torch.set_num_threads(os.cpu_count() or 1)
    store = IndexStore(a.index)
    chunks = store.chunks(sorted(int(i) for i in faiss_ids(store.faiss)))
    texts = [c.embed_text or c.text for c in chunks.values()]
    rng = np.random.default_rng(0)
    texts = [texts[i] for i in rng.choice(len(texts), min(a.n, len(texts)), replace=False)]
    folder, cache = Path(resolve_embedding_model(DEFAULT_EMBEDDING_MODEL)), default_cache_dir()
    embs = {"torch fp32": Embedder(DEFAULT_EMBEDDING_MODEL, "cpu", a.batch_size),
            "onnx fp32": OnnxEmbedder(DEFAULT_EMBEDDING_MODEL, folder, cache, a.batch_size)}
    if openvino_available():
        embs["openvino"] = OpenVinoEmbedder(DEFAULT_EMBEDDING_MODEL, folder, cache, a.batch_size)
    for e in embs.values():
        e.encode(["warm up"])
    names = list(embs)
    cpu = dict.fromkeys(names, 0.0)
    wall = dict.fromkeys(names, 0.0)
    out: dict[str, list[np.ndarray]] = {k: [] for k in names}
    for bi, i in enumerate(range(0, len(texts), a.batch_size)):
        batch = texts[i : i + a.batch_size]
        for k in names[bi % len(names) :] + names[: bi % len(names)]:  # a different backend goes first each batch
            t0, w0 = os.times(), time.perf_counter()
            out[k].append(np.asarray(embs[k].encode(batch)))
            t1 = os.times()
            cpu[k] += t1.user + t1.system - t0.user - t0.system
            wall[k] += time.perf_counter() - w0
    ref = np.concatenate(out["torch fp32"])
    pieces = np.mean([embs["onnx fp32"].count_tokens(t) for t in texts])
    print(f"# bench_embed_speed on {machine()}; {len(texts)} chunks of {a.index}, {pieces:.0f} word pieces mean; "
          f"load {os.getloadavg()[0]:.1f}")
    for k in names:
        v = np.concatenate(out[k])
        print(f"{k}: {1000 * cpu[k] / len(texts):.1f} CPU ms/chunk, {len(texts) / wall[k]:.1f} chunks/s; vs torch fp32 "
              f"{cpu['torch fp32'] / cpu[k]:.2f}x CPU, {wall['torch fp32'] / wall[k]:.2f}x wall; "
              f"min cosine to torch {float((v * ref).sum(1).min()):.5f}")


if __name__ == "__main__":
    main()
