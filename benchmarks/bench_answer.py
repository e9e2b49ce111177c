"""Answering: refusal calibration, answer quality per mode, and generation speed vs bare generate.

    .venv/bin/python benchmarks/bench_answer.py [--index index/] [--gen-limit 20]

Uses eval/shipped.jsonl (questions written over the shipped corpus, 16 of them unanswerable).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._common import ROOT, machine  # noqa: E402
from rag.answer.answerer import Answerer  # noqa: E402
from rag.answer.prompts import build_messages  # noqa: E402
from rag.errors import RagError  # noqa: E402
from rag.index.build import build_index  # noqa: E402
from rag.index.embed import get_embedder  # noqa: E402
from rag.jobs.datasets import load_jsonl  # noqa: E402
from rag.jobs.metrics import token_f1  # noqa: E402
from rag.retrieve.retriever import Retriever  # noqa: E402
from rag.settings import Settings  # noqa: E402


def open_index(path: Path | None, emb) -> Settings:
    if path is not None:
        s = Settings(index=path)
        try:
            Retriever.open(s, emb)
            return s
        except RagError as e:
            print(f"({e}; building a fresh index)")
    s = Settings(corpus=ROOT / "corpus", index=Path(tempfile.mkdtemp(prefix="rag-ans-")) / "index")
    build_index(s, embedder=emb)
    return s


def calibrate(retriever: Retriever, qs) -> None:
    """Refusal signals on the question set: best dense similarity, and (with a scorer) its calibrated probability."""
    hits = retriever.search([q.question for q in qs], 5)
    scorer = retriever.scorer
    rows = []
    for q, h in zip(qs, hits, strict=True):
        p = max((x.scores.get("rerank_p", 0.0) for x in h), default=0.0) if scorer else None
        rows.append((q.answerable, max(x.scores["dense"] for x in h), p))
    n_a = sum(a for a, _, _ in rows)
    n_u = len(rows) - n_a
    print(f"\nrefusal calibration on {len(rows)} questions ({n_u} unanswerable)")
    print("| rule | threshold | unanswerable refused | answerable wrongly refused |")
    print("|---|---|---|---|")
    for t in (0.30, 0.35, 0.40, 0.45, 0.50):
        r_u = sum(1 for a, s, _ in rows if not a and s < t)
        r_a = sum(1 for a, s, _ in rows if a and s < t)
        print(f"| dense similarity < T | {t:.2f} | {r_u}/{n_u} ({r_u / max(1, n_u):.0%}) | {r_a}/{n_a} ({r_a / max(1, n_a):.0%}) |")
    if scorer:
        for t in (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5):
            r_u = sum(1 for a, _, p in rows if not a and p < t)
            r_a = sum(1 for a, _, p in rows if a and p < t)
            print(f"| scorer probability < T | {t:.2f} | {r_u}/{n_u} ({r_u / max(1, n_u):.0%}) | {r_a}/{n_a} ({r_a / max(1, n_a):.0%}) |")


def strip_markup(text: str) -> str:
    return re.sub(r"\[\d+\]|[“”]", "", text)


def quality(answerer: Answerer, qs, mode: str) -> dict:
    f1s, supported, right_doc, refused_u, refused_a, lat = [], [], [], 0, 0, []
    n_u = n_a = 0
    for q in qs:
        t = time.perf_counter()
        a = answerer.ask(q.question, mode=mode)
        lat.append(time.perf_counter() - t)
        if not q.answerable:
            n_u += 1
            refused_u += a.refused
            continue
        n_a += 1
        refused_a += a.refused
        f1s.append(0.0 if a.refused else token_f1(strip_markup(a.text), q.answers))
        if not a.refused:
            supported.append(sum(s.supported for s in a.sentences) / max(1, len(a.sentences)))
            right_doc.append(float(any(c.passage.chunk.source in q.gold_sources for c in a.citations)))
    m = {
        "mode": mode, "answerable": n_a, "unanswerable": n_u,
        "token_f1": statistics.mean(f1s) if f1s else 0.0,
        "supported_sentences": statistics.mean(supported) if supported else 0.0,
        "cites_right_document": statistics.mean(right_doc) if right_doc else 0.0,
        "refused_unanswerable": refused_u / n_u if n_u else 0.0,
        "refused_answerable": refused_a / n_a if n_a else 0.0,
        "latency_p50_s": statistics.median(lat),
    }
    return m


def generation_speed(answerer: Answerer, question: str, n_tokens: int = 64, reps: int = 3) -> None:
    import torch

    gen = answerer.generator()
    passages = answerer.retriever.search([question], 5)[0]
    messages = build_messages(question, passages)
    enc = gen.prompt_ids(messages)
    kw = dict(do_sample=False, temperature=None, top_p=None, top_k=None, repetition_penalty=1.1, pad_token_id=gen.tokenizer.pad_token_id)

    def bare(max_new: int) -> tuple[float, int]:
        t = time.perf_counter()
        with torch.inference_mode():
            out = gen.model.generate(**enc, max_new_tokens=max_new, min_new_tokens=max_new, **kw)
        return time.perf_counter() - t, int(out.shape[1] - enc["input_ids"].shape[1])

    bare(4)  # warm-up
    b_first = statistics.median(bare(1)[0] for _ in range(reps))
    b_runs = [bare(n_tokens) for _ in range(reps)]
    b_tps = statistics.median((n - 1) / (t - b_first) for t, n in b_runs)
    ours = []
    for _ in range(reps):
        stats: list[float] = []
        t = time.perf_counter()
        n = sum(1 for _ in gen.stream(messages, n_tokens, _stats=stats))
        ours.append((stats[0], time.perf_counter() - t, stats[2]))
        del n
    o_first = statistics.median(x[0] for x in ours)
    o_tps = statistics.median((x[2] - 1) / (x[1] - x[0]) for x in ours if x[2] > 1)
    print(f"\ngeneration ({gen.name}, {gen.device}, {gen.dtype}), prompt {enc['input_ids'].shape[1]} tokens, {n_tokens} new tokens, median of {reps}:")
    print(f"  bare model.generate: first token {b_first:.2f} s, {b_tps:.1f} tokens/s")
    print(f"  rag (streamed):      first token {o_first:.2f} s, {o_tps:.1f} tokens/s")
    print(f"  ratio ours/bare tokens/s = {o_tps / b_tps:.2f} (goal >= 0.95); first-token ratio bare/ours = {b_first / o_first:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--index", type=Path, default=ROOT / "index")
    ap.add_argument("--questions", type=Path, default=ROOT / "eval/shipped.jsonl")
    ap.add_argument("--gen-limit", type=int, default=20, help="answerable questions for generative/auto (all unanswerable are kept)")
    ap.add_argument("--skip-generation", action="store_true")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    emb = get_embedder("sentence-transformers/all-MiniLM-L6-v2", "cpu")
    s = open_index(args.index, emb)
    qs = load_jsonl(args.questions).questions
    answerer = Answerer(Retriever.open(s, emb), s)
    calibrate(answerer.retriever, qs)
    results = [quality(answerer, qs, "extractive")]
    if not args.skip_generation:
        sub = [q for q in qs if q.answerable][: args.gen_limit] + [q for q in qs if not q.answerable]
        ext_sub = quality(answerer, sub, "extractive")
        ext_sub["mode"] = f"extractive (same {len(sub)})"
        results.append(ext_sub)
        for mode in ("generative", "auto"):
            results.append(quality(answerer, sub, mode))
    cols = ["token_f1", "supported_sentences", "cites_right_document", "refused_unanswerable", "refused_answerable", "latency_p50_s"]
    print("\nanswer quality on eval/shipped.jsonl")
    print("| mode | answerable | unanswerable | " + " | ".join(cols) + " |")
    print("|---|---|---|" + "---|" * len(cols))
    for m in results:
        print(f"| {m['mode']} | {m['answerable']} | {m['unanswerable']} | " + " | ".join(f"{m[c]:.2f}" for c in cols) + " |")
    if not args.skip_generation:
        generation_speed(answerer, qs[0].question)
        t = time.perf_counter()
        a = answerer.ask(qs[0].question, mode="auto")
        print(f"\nend-to-end `auto` answer to one question on CPU (model loaded): {time.perf_counter() - t:.1f} s "
              f"(retrieval {a.timings['retrieve_s']:.2f} s, first token {a.timings.get('first_token_s', 0):.1f} s)")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
