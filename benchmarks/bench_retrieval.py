"""Retrieval quality: recall@1/5/10, MRR, nDCG@10, MAP@10 for dense, BM25 and hybrid on PolicyQA dev
(scoped per policy with a source filter) and ObliQA dev (whole 40-document corpus).

    .venv/bin/python benchmarks/bench_retrieval.py [--obliqa-limit N] [--skip-obliqa]
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._common import OBLIQA, SHARED, machine  # noqa: E402
from rag.index.build import build_index  # noqa: E402
from rag.index.embed import get_embedder  # noqa: E402
from rag.jobs.datasets import load_obliqa, load_squad  # noqa: E402
from rag.jobs.evaluate import evaluate_retrieval  # noqa: E402
from rag.retrieve.retriever import Retriever  # noqa: E402
from rag.settings import Settings  # noqa: E402


def table(name: str, results: dict[str, dict[str, float]]) -> None:
    cols = ["recall@1", "recall@5", "recall@10", "mrr", "ndcg@10", "map@10"]
    print(f"\n{name} ({int(next(iter(results.values()))['questions'])} questions)")
    print("| mode | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols))
    for mode, m in results.items():
        print(f"| {mode} | " + " | ".join(f"{m[c]:.3f}" for c in cols) + " |")


def run(name: str, evalset, work: Path, emb, limit: int | None) -> None:
    s = Settings(corpus=evalset.corpus, index=work / f"{name}-index")
    t = time.perf_counter()
    r = build_index(s, embedder=emb)
    print(f"[{name}] indexed {r.documents_total} docs, {r.chunks_total} chunks in {time.perf_counter() - t:.0f} s")
    qs = [q for q in evalset.questions if q.answerable]
    if limit and len(qs) > limit:
        qs = random.Random(0).sample(qs, limit)
    retriever = Retriever.open(s, emb)
    results = {}
    for mode in ("dense", "bm25", "hybrid"):
        t = time.perf_counter()
        results[mode], _ = evaluate_retrieval(retriever, qs, mode, k=10)
        print(f"[{name}] {mode}: {len(qs)} questions in {time.perf_counter() - t:.1f} s")
    table(name, results)
    best_single = max(results["dense"]["recall@10"], results["bm25"]["recall@10"])
    print(f"[{name}] hybrid recall@10 {results['hybrid']['recall@10']:.3f} vs better single {best_single:.3f} "
          f"({'meets' if results['hybrid']['recall@10'] >= best_single - 1e-9 else 'misses'} the goal hybrid >= better of the two)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--obliqa-limit", type=int, default=0, help="sample this many ObliQA questions (0 = all)")
    ap.add_argument("--policyqa-limit", type=int, default=0)
    ap.add_argument("--skip-obliqa", action="store_true")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    emb = get_embedder("sentence-transformers/all-MiniLM-L6-v2", "cpu")
    work = Path(tempfile.mkdtemp(prefix="rag-retr-"))
    try:
        pq = load_squad(SHARED / "eval/policyqa/dev.json", work / "policyqa-corpus")
        run("policyqa-dev", pq, work, emb, args.policyqa_limit or None)
        if not args.skip_obliqa:
            ob = load_obliqa(OBLIQA, work / "obliqa-corpus")
            run("obliqa-dev", ob, work, emb, args.obliqa_limit or None)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
