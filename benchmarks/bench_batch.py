"""Batch throughput and the Ray engine.

    .venv/bin/python benchmarks/bench_batch.py [--questions 100] [--gen-questions 12] [--obliqa-docs 10]

1. PolicyQA dev questions (scoped per policy): a sequential `Answerer.ask` loop (what a script calling
   `rag ask` per question does, minus process start-up) vs `rag batch`'s batched path, same answers.
2. Index build of ObliQA documents: local engine vs Ray engine at 1 and 2 workers on this machine.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._common import OBLIQA, SHARED, machine  # noqa: E402
from rag.answer.answerer import Answerer  # noqa: E402
from rag.index.build import build_index  # noqa: E402
from rag.index.embed import get_embedder  # noqa: E402
from rag.jobs.batch import BatchItem, ResultWriter, run_batch  # noqa: E402
from rag.jobs.datasets import export_obliqa, load_squad  # noqa: E402
from rag.retrieve.retriever import Retriever  # noqa: E402
from rag.settings import Settings  # noqa: E402


def throughput(work: Path, emb, n: int, mode: str, batch_size: int) -> None:
    pq = load_squad(SHARED / "eval/policyqa/dev.json", work / "pq-corpus")
    s = Settings(corpus=pq.corpus, index=work / "pq-index", answer={"mode": mode})
    build_index(s, embedder=emb)
    qs = random.Random(0).sample([q for q in pq.questions if q.answerable], n)
    answerer = Answerer(Retriever.open(s, emb), s)
    if mode != "extractive":
        answerer.generator()  # load once, outside the timings
    answerer.ask(qs[0].question, filters=qs[0].filter)  # warm-up
    t = time.perf_counter()
    seq = [answerer.ask(q.question, filters=q.filter) for q in qs]
    t_seq = time.perf_counter() - t
    # rag batch applies one filter to all questions; PolicyQA needs one per question, so group by policy
    out = work / f"batch-{mode}.jsonl"
    writer = ResultWriter(out, resume=False)
    t = time.perf_counter()
    by_policy: dict[str, list] = {}
    for q in qs:
        by_policy.setdefault(q.filter["source"][0], []).append(q)
    for src, group in by_policy.items():
        run_batch(answerer, [BatchItem(id=q.id, question=q.question) for q in group], writer, batch_size=batch_size, filters={"source": [src]})
    t_batch = time.perf_counter() - t
    recs = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    same = sum(recs[q.id]["answer"] == a.text for q, a in zip(qs, seq, strict=True))
    print(f"[{mode}] {n} PolicyQA questions: sequential ask loop {60 * n / t_seq:.1f} q/min ({t_seq:.1f} s), "
          f"batch (batch size {batch_size}) {60 * n / t_batch:.1f} q/min ({t_batch:.1f} s); speed-up x{t_seq / t_batch:.2f}; "
          f"identical answers {same}/{n}")


def ray_scaling(work: Path, emb, n_docs: int) -> None:
    from rag.index import ray_build as ray_engine

    full = export_obliqa(OBLIQA / "StructuredRegulatoryDocuments.zip", work / "ob-all")[0]
    corpus = work / "ob-sub"
    corpus.mkdir()
    for f in sorted(full.glob("*.md"))[:n_docs]:
        shutil.copy(f, corpus / f.name)
    t = time.perf_counter()
    r = build_index(Settings(corpus=corpus, index=work / "ob-local"), embedder=emb)
    t_local = time.perf_counter() - t
    print(f"[obliqa {n_docs} docs] local engine: {r.chunks_total} chunks in {t_local:.1f} s")
    ray_engine.ensure_ray()
    for w in (1, 2):
        t = time.perf_counter()
        r = build_index(Settings(corpus=corpus, index=work / f"ob-ray{w}"), embedder=emb, engine="ray", workers=w)
        dt = time.perf_counter() - t
        print(f"[obliqa {n_docs} docs] ray engine, {w} worker(s): {dt:.1f} s (x{t_local / dt:.2f} vs local)")
    ray_engine.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--questions", type=int, default=100)
    ap.add_argument("--gen-questions", type=int, default=12)
    ap.add_argument("--obliqa-docs", type=int, default=10)
    ap.add_argument("--skip-ray", action="store_true")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    emb = get_embedder("sentence-transformers/all-MiniLM-L6-v2", "cpu")
    work = Path(tempfile.mkdtemp(prefix="rag-batch-"))
    try:
        throughput(work, emb, args.questions, "extractive", 32)
        if args.gen_questions:
            throughput(work, emb, args.gen_questions, "auto", 4)
        if not args.skip_ray:
            ray_scaling(work, emb, args.obliqa_docs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
