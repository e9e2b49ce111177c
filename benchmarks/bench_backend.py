"""CPU inference backends, measured in one run: torch vs ONNX Runtime (fp32, int8) for the embedder and the
evidence scorer, transformers fp32 vs llama.cpp for the shipped SmolLM2 GGUF.

    .venv/bin/python benchmarks/bench_backend.py [--rounds 3] [--threads 2] [--skip llm]

Rounds are interleaved (torch, onnx, ... then again) so that load from other processes on a shared
machine hits every backend alike; the best round is reported beside the median. Agreement with torch
fp32 is printed too: vectors (max |difference|, min cosine), scores (max |difference|, top-1 agreement),
and greedy LLM text (the shared prefix).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmarks._common import OUT, machine  # noqa: E402

QUESTIONS = [
    json.loads(line)["question"]
    for line in (Path(__file__).resolve().parent.parent / "eval" / "paraphrased.jsonl").read_text().splitlines()
    if line.strip()
]


def passages(n: int) -> list[str]:
    """Chunk-sized policy-like passages (about 200 word pieces): the scale benchmark's synthetic text."""
    from benchmarks.bench_scale import text

    return [text(i) for i in range(n)]


def timed(fn, rounds: int) -> tuple[float, float, object]:
    times, out = [], None
    for _ in range(rounds):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), statistics.median(times), out


def bench_embed(rounds: int, threads: int, n: int) -> dict:
    import torch

    from rag.index.backends_onnx import OnnxEmbedder
    from rag.index.embed import Embedder, resolve_embedding_model
    from rag.settings import DEFAULT_EMBEDDING_MODEL, default_cache_dir

    torch.set_num_threads(threads)
    texts = passages(n)
    folder = Path(resolve_embedding_model(DEFAULT_EMBEDDING_MODEL))
    loads, models = {}, {}
    for name, make in (
        ("torch", lambda: Embedder(DEFAULT_EMBEDDING_MODEL, "cpu", 64)),
        ("onnx", lambda: OnnxEmbedder(DEFAULT_EMBEDDING_MODEL, folder, default_cache_dir(), 64, False, threads)),
        ("onnx-int8", lambda: OnnxEmbedder(DEFAULT_EMBEDDING_MODEL, folder, default_cache_dir(), 64, True, threads)),
    ):
        make()  # export/convert once outside the timing (cached afterwards)
        t = time.perf_counter()
        models[name] = make()
        loads[name] = time.perf_counter() - t
        models[name].encode(texts[:8])
    best = {k: [] for k in models}
    cpu = {k: [] for k in models}
    vecs = {}
    for _ in range(rounds):
        for name, m in models.items():
            t, c = time.perf_counter(), time.process_time()
            vecs[name] = m.encode(texts)
            best[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
    res = {}
    for name in models:
        cos = (vecs[name] * vecs["torch"]).sum(1)
        res[name] = {
            "passages_per_s_best": round(n / min(best[name]), 1),
            "passages_per_s_median": round(n / statistics.median(best[name]), 1),
            "cpu_ms_per_passage": round(1000 * min(cpu[name]) / n, 2),
            "load_s": round(loads[name], 2),
            "max_abs_diff_vs_torch": float(np.abs(vecs[name] - vecs["torch"]).max()),
            "min_cosine_vs_torch": round(float(cos.min()), 4),
        }
    for name in res:
        res[name]["speedup_vs_torch"] = round(res[name]["passages_per_s_best"] / res["torch"]["passages_per_s_best"], 2)
    return res


def bench_rerank(rounds: int, threads: int, nq: int, k: int = 20) -> dict:
    import torch

    from rag.retrieve.rerank import Reranker

    torch.set_num_threads(threads)
    texts = passages(k * 4)
    rng = np.random.default_rng(0)
    work = [(q, [texts[j] for j in rng.choice(len(texts), k, replace=False)]) for q in QUESTIONS[:nq]]
    models = {
        "torch": Reranker("evidence-scorer", "cpu", backend="torch"),
        "torch-int8": Reranker("evidence-scorer", "cpu", backend="torch", quantize=True),
        "onnx": Reranker("evidence-scorer", "cpu", backend="onnx"),
        "onnx-int8": Reranker("evidence-scorer", "cpu", backend="onnx", quantize=True),
    }
    loads = {}
    for name, m in models.items():
        t = time.perf_counter()
        m.scores(work[0][0], work[0][1][:2])
        loads[name] = time.perf_counter() - t
    per_q: dict[str, list[float]] = {k2: [] for k2 in models}
    cpu_q: dict[str, list[float]] = {k2: [] for k2 in models}
    scores: dict[str, list[np.ndarray]] = {k2: [] for k2 in models}
    for r in range(rounds):
        for name, m in models.items():
            for q, cands in work:
                t, c = time.perf_counter(), time.process_time()
                s = m.scores(q, cands)
                per_q[name].append(time.perf_counter() - t)
                cpu_q[name].append(time.process_time() - c)
                if r == 0:
                    scores[name].append(s)
    res: dict = {"no rerank": {"s_per_question_p50": 0.0}}
    for name in models:
        top1 = np.mean([np.argmax(a) == np.argmax(b) for a, b in zip(scores[name], scores["torch"], strict=True)])
        diff = max(float(np.abs(a - b).max()) for a, b in zip(scores[name], scores["torch"], strict=True))
        res[name] = {
            "s_per_question_p50": round(float(np.percentile(per_q[name], 50)), 3),
            "s_per_question_p95": round(float(np.percentile(per_q[name], 95)), 3),
            "s_per_question_min": round(float(np.min(per_q[name])), 3),
            "cpu_s_per_question_p50": round(float(np.percentile(cpu_q[name], 50)), 3),
            "first_call_s (load)": round(loads[name], 2),
            "top1_agreement_vs_torch": round(float(top1), 3),
            "max_abs_logit_diff_vs_torch": round(diff, 5),
        }
    return res


def bench_llm(rounds: int, threads: int, max_new: int) -> dict:
    from rag.answer.backends_llamacpp import LlamaCppGenerator
    from rag.answer.generate import Generator, shipped_gguf
    from rag.answer.prompts import build_messages
    from rag.types import Chunk, Passage

    ev = {
        1: ["Agencies must designate a Chief AI Officer within 60 days of the issuance of this memorandum."],
        2: ["The Chief AI Officer coordinates the agency's use of AI and manages its AI risks."],
    }
    ps = [
        Passage(
            chunk=Chunk(
                chunk_id=f"c{i}",
                doc_id="m2410",
                source="omb/m-24-10.pdf",
                title="OMB M-24-10",
                ordinal=i,
                text=" ".join(ev[i]),
                char_start=0,
                char_end=10,
                page=3 + i,
                page_end=3 + i,
                section="Sec. 3",
                n_tokens=30,
                embed_text="",
            ),
            score=1.0,
            rank=i,
        )
        for i in (1, 2)
    ]
    msgs = build_messages("Within how many days must agencies designate a Chief AI Officer?", ps, evidence=ev)
    t = time.perf_counter()
    torch_gen = Generator("smollm2", device="cpu", dtype="float32", threads=threads)
    load_torch = time.perf_counter() - t
    t = time.perf_counter()
    llama = LlamaCppGenerator(shipped_gguf(), name="smollm2", threads=threads)
    load_llama = time.perf_counter() - t
    runs: dict[str, list] = {"torch": [], "llamacpp": []}
    cpu: dict[str, list] = {"torch": [], "llamacpp": []}
    for _ in range(rounds):
        for name, g in (("torch", torch_gen), ("llamacpp", llama)):
            c = time.process_time()
            runs[name].append(g.generate(msgs, max_new))
            cpu[name].append(time.process_time() - c)
    res = {}
    for name, rs in runs.items():
        res[name] = {
            "tokens_per_s_best": round(max(r.tokens_per_s for r in rs), 1),
            "tokens_per_s_median": round(statistics.median(r.tokens_per_s for r in rs), 1),
            "first_token_s_best": round(min(r.first_token_s for r in rs), 3),
            "first_token_s_median": round(statistics.median(r.first_token_s for r in rs), 3),
            "cpu_s_per_answer_min": round(min(cpu[name]), 2),
            "prompt_tokens": rs[0].prompt_tokens,
            "new_tokens": rs[0].tokens,
            "text": rs[0].text[:160],
        }
    res["torch"]["load_s"] = round(load_torch, 2)
    res["llamacpp"]["load_s"] = round(load_llama, 2)
    a, b = res["torch"]["text"], res["llamacpp"]["text"]
    same = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    res["same_greedy_prefix_chars"] = same
    res["speedup_tokens_per_s"] = round(
        res["llamacpp"]["tokens_per_s_best"] / max(res["torch"]["tokens_per_s_best"], 1e-9), 2
    )
    return res


def bench_quality(index: Path, threads: int, limit: int, configs_wanted: list[str]) -> dict:
    """Retrieval (hybrid, hybrid+rerank) and extractive answers on eval/paraphrased.jsonl with each query-side
    backend, over one index (document vectors fixed): hit@1, hit@5, MRR@10 by gold source, and agreement with
    torch fp32 (same top-5, same answer text)."""
    import torch

    from rag.answer.answerer import Answerer
    from rag.index.embed import get_embedder
    from rag.index.reader import IndexStore
    from rag.retrieve.rerank import Reranker
    from rag.retrieve.retriever import Retriever
    from rag.settings import DEFAULT_EMBEDDING_MODEL, Settings, default_cache_dir

    torch.set_num_threads(threads)
    rows = [
        json.loads(line)
        for line in (Path(__file__).resolve().parent.parent / "eval" / "paraphrased.jsonl").read_text().splitlines()
        if line.strip()
    ]
    rows = rows[:limit] if limit else rows
    settings = Settings(index=index)
    store = IndexStore.open(index)  # no compatibility check: the same rows for every backend
    configs = {
        "torch": ("torch", False, "torch", False),
        "onnx": ("onnx", False, "onnx", False),
        "onnx-int8": ("onnx", True, "onnx", True),
        "onnx + int8 scorer": ("onnx", False, "onnx", True),
    }
    configs = {k: v for k, v in configs.items() if k in configs_wanted}
    first = next(iter(configs))  # the reference for agreement (torch, or onnx fp32 whose numbers equal torch's)
    res: dict = {"reference": first}
    ref: dict = {}
    for name, (eb, eq, rb, rq) in configs.items():
        emb = get_embedder(DEFAULT_EMBEDDING_MODEL, "cpu", 64, eb, default_cache_dir(), eq)
        r = Retriever(store, emb, settings)
        r._reranker = Reranker(
            settings.retrieval.reranker or "evidence-scorer",
            "cpu",
            max_length=settings.retrieval.rerank_max_length,
            quantize=rq,
            backend=rb,
        )
        ans = Answerer(r, settings)
        m: dict = {}
        t = time.perf_counter()
        for mode, rerank in (("hybrid", False), ("hybrid+rerank", True)):
            ranks, tops = [], []
            for row in rows:
                hits = r.search([row["question"]], 10, mode="hybrid", rerank=rerank, use_policy=False)[0]
                srcs = [h.chunk.source for h in hits]
                tops.append(srcs[:5])
                if row.get("gold_sources"):
                    gold = set(row["gold_sources"])
                    ranks.append(next((i + 1 for i, src in enumerate(srcs) if src in gold), 0))
            n = len(ranks)
            m[mode] = {
                "hit@1": round(100 * sum(1 for x in ranks if x == 1) / n, 1),
                "hit@5": round(100 * sum(1 for x in ranks if 0 < x <= 5) / n, 1),
                "mrr@10": round(100 * sum(1 / x for x in ranks if x) / n, 1),
            }
            if name == first:
                ref[mode] = tops
            else:
                m[mode]["same_top5_sources_%"] = round(
                    100 * np.mean([a == b for a, b in zip(tops, ref[mode], strict=True)]), 1
                )
        answers = [ans.ask(row["question"], mode="extractive") for row in rows]
        texts = [a.text for a in answers]
        if name == first:
            ref["answers"] = texts
        else:
            m["extractive_same_answer_%"] = round(
                100 * np.mean([a == b for a, b in zip(texts, ref["answers"], strict=True)]), 1
            )
        m["refusals"] = sum(
            1 for a in texts if "don't say" in a.lower() or "do not say" in a.lower() or "cannot answer" in a.lower()
        )
        m["seconds"] = round(time.perf_counter() - t, 1)
        res[name] = m
        print(json.dumps({name: m}), flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--passages", type=int, default=256)
    ap.add_argument("--questions", type=int, default=20)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--skip", nargs="*", default=[], choices=["embed", "rerank", "llm"])
    ap.add_argument(
        "--quality", type=Path, help="an index folder: also compare retrieval and extractive answers per backend"
    )
    ap.add_argument("--quality-limit", type=int, default=0, help="first N questions only (0 = all)")
    ap.add_argument("--quality-configs", nargs="+", default=["torch", "onnx", "onnx-int8", "onnx + int8 scorer"])
    ap.add_argument("--out", type=Path, default=OUT / "backend.json")
    a = ap.parse_args()
    print(f"# bench_backend on {machine()}; {a.threads} threads, {a.rounds} interleaved rounds")
    out: dict = {"machine": machine(), "threads": a.threads}
    if "embed" not in a.skip:
        out["embed"] = bench_embed(a.rounds, a.threads, a.passages)
        print(json.dumps({"embed": out["embed"]}, indent=1), flush=True)
    if "rerank" not in a.skip:
        out["rerank_20_candidates"] = bench_rerank(a.rounds, a.threads, a.questions)
        print(json.dumps({"rerank_20_candidates": out["rerank_20_candidates"]}, indent=1), flush=True)
    if "llm" not in a.skip:
        out["llm"] = bench_llm(a.rounds, a.threads, a.max_new_tokens)
        print(json.dumps({"llm": out["llm"]}, indent=1), flush=True)
    if a.quality:
        out["quality"] = bench_quality(a.quality, a.threads, a.quality_limit, a.quality_configs)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
