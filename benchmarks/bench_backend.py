"""CPU inference backends, measured in one run: torch vs ONNX Runtime (fp32, int8) for the embedder and the
evidence scorer, transformers fp32 vs llama.cpp for the shipped SmolLM2 GGUF.

    .venv/bin/python benchmarks/bench_backend.py [--rounds 3] [--threads 2] [--skip llm]
    .venv/bin/python benchmarks/bench_backend.py --skip embed rerank --llm-index /tmp/me/index --rounds 2

The LLM section runs each backend in its own fresh process per round (as `rag ask` runs it: llama.cpp's and
torch's OpenMP runtimes in one process slow each other down, so one-process numbers are not the product's).

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


LLM_QUESTION = "Within how many days must agencies designate a Chief AI Officer?"
LLM_EVIDENCE = {
    1: ["Agencies must designate a Chief AI Officer within 60 days of the issuance of this memorandum."],
    2: ["The Chief AI Officer coordinates the agency's use of AI and manages its AI risks."],
}


def llm_prompts(index: Path | None, n: int) -> list[list[dict[str, str]]]:
    """The evidence-first prompts both backends answer: from retrieval over `index` for the first `n` answerable
    questions of eval/shipped.jsonl (as `rag ask --answer-mode auto` builds them), else one built-in prompt."""
    from rag.answer.prompts import build_messages
    from rag.types import Chunk, Passage

    if index is None:
        ps = [
            Passage(
                chunk=Chunk(
                    chunk_id=f"c{i}",
                    doc_id="m2410",
                    source="omb/m-24-10.pdf",
                    title="OMB M-24-10",
                    ordinal=i,
                    text=" ".join(LLM_EVIDENCE[i]),
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
        return [build_messages(LLM_QUESTION, ps, evidence=LLM_EVIDENCE)]
    from rag.answer.answerer import select_evidence
    from rag.answer.evidence import Evidence
    from rag.service import RagService
    from rag.settings import Settings

    s = Settings(index=index)
    svc = RagService(s)
    root = Path(__file__).resolve().parent.parent
    rows = [json.loads(line) for line in (root / "eval" / "shipped.jsonl").read_text().splitlines() if line.strip()]
    out = []
    for q in [r["question"] for r in rows if r.get("answerable")][:n]:
        passages = svc.search([q], s.retrieval.top_k)[0]
        emb = svc.retriever.embedder
        chosen = select_evidence(
            emb.encode([q])[0], Evidence(passages, emb), len(passages), s.answer.evidence_sentences
        )
        out.append(build_messages(q, passages, evidence=chosen))
    return out


def llm_child(backend: str, threads: int, max_new: int, prompts_file: Path) -> dict:
    """One fresh process, one backend, loaded as `rag ask` loads it (`get_generator`); answers every prompt."""
    import resource

    from rag.answer.generate import get_generator

    prompts = json.loads(prompts_file.read_text())
    t = time.perf_counter()
    c = time.process_time()
    gen = get_generator("smollm2", "cpu", "float32" if backend == "torch" else "auto", None, backend, threads)
    load = {"load_s": round(time.perf_counter() - t, 2), "load_cpu_s": round(time.process_time() - c, 2)}
    answers = []
    for msgs in prompts:
        c = time.process_time()
        r = gen.generate(msgs, max_new)
        answers.append(
            {
                "first_token_s": round(r.first_token_s, 3),
                "tokens_per_s": round(r.tokens_per_s, 2),
                "cpu_s": round(time.process_time() - c, 3),
                "tokens": r.tokens,
                "prompt_tokens": r.prompt_tokens,
                "cached_prompt_tokens": int(r.timings.get("cached_prompt_tokens", 0)),
                "text": r.text[:200],
            }
        )
    ru = resource.getrusage(resource.RUSAGE_SELF)
    mods = sorted(m for m in ("torch", "llama_cpp") if m in sys.modules)
    return {
        **load,
        "model_file": str(getattr(gen, "gguf", "") or gen.name),
        "answers": answers,
        "process_cpu_s": round(ru.ru_utime + ru.ru_stime, 2),
        "modules": mods,
    }


def bench_llm(
    rounds: int, threads: int, max_new: int, index: Path | None = None, n_prompts: int = 3, torch_passive: bool = False
) -> dict:
    """Each backend in its own fresh process per round (two OpenMP runtimes in one process slow each other down),
    rounds interleaved (llama.cpp first in odd rounds, torch first in even ones), the same prompts for both."""
    import subprocess
    import tempfile

    prompts = llm_prompts(index, n_prompts)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(prompts, f)
    runs: dict[str, list[dict]] = {"torch": [], "llamacpp": []}
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if torch_passive:  # torch's OpenMP threads spin too; on a loaded machine that, not the model, sets its speed
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    for r in range(rounds):
        for backend in ("llamacpp", "torch") if r % 2 == 0 else ("torch", "llamacpp"):
            cmd = [
                sys.executable,
                __file__,
                "--llm-child",
                backend,
                "--threads",
                str(threads),
                "--max-new-tokens",
                str(max_new),
                "--llm-prompts",
                f.name,
            ]
            p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parent.parent)
            if p.returncode != 0:
                raise SystemExit(f"{backend} child failed: {p.stderr[-800:]}")
            runs[backend].append(json.loads(p.stdout.strip().splitlines()[-1]))
            print(
                f"  round {r + 1} {backend}: load {runs[backend][-1]['load_s']} s, first tokens "
                f"{[a['first_token_s'] for a in runs[backend][-1]['answers']]}",
                flush=True,
            )
    Path(f.name).unlink(missing_ok=True)
    res: dict = {
        "omp_wait_policy": env.get("OMP_WAIT_POLICY", "default (llama.cpp backend: PASSIVE)"),
        "prompts": len(prompts),
        "prompt_tokens": [a["prompt_tokens"] for a in runs["llamacpp"][0]["answers"]],
        "max_new_tokens": max_new,
    }
    for name, rs in runs.items():
        ans = [a for run in rs for a in run["answers"]]
        res[name] = {
            "model_file": Path(rs[0]["model_file"]).name,
            "load_s_median": round(statistics.median(run["load_s"] for run in rs), 2),
            "load_cpu_s_median": round(statistics.median(run["load_cpu_s"] for run in rs), 2),
            "tokens_per_s_median": round(statistics.median(a["tokens_per_s"] for a in ans), 1),
            "tokens_per_s_best": round(max(a["tokens_per_s"] for a in ans), 1),
            "first_token_s_median": round(statistics.median(a["first_token_s"] for a in ans), 3),
            "first_token_s_best": round(min(a["first_token_s"] for a in ans), 3),
            "cpu_s_per_answer_median": round(statistics.median(a["cpu_s"] for a in ans), 2),
            "new_tokens_median": statistics.median(a["tokens"] for a in ans),
            "cached_prompt_tokens_median": statistics.median(a["cached_prompt_tokens"] for a in ans),
            "modules": rs[0]["modules"],
        }
    t, ll = res["torch"], res["llamacpp"]
    res["ratio_tokens_per_s_llamacpp_over_torch"] = round(
        ll["tokens_per_s_median"] / max(t["tokens_per_s_median"], 1e-9), 2
    )
    res["ratio_first_token_torch_over_llamacpp"] = round(
        t["first_token_s_median"] / max(ll["first_token_s_median"], 1e-9), 2
    )
    res["ratio_cpu_per_answer_torch_over_llamacpp"] = round(
        t["cpu_s_per_answer_median"] / max(ll["cpu_s_per_answer_median"], 1e-9), 2
    )
    shared = []
    for a, b in zip(runs["torch"][0]["answers"], runs["llamacpp"][0]["answers"], strict=True):
        x, y = a["text"], b["text"]
        shared.append(next((i for i, (u, v) in enumerate(zip(x, y, strict=False)) if u != v), min(len(x), len(y))))
    res["same_greedy_prefix_chars"] = shared
    res["texts"] = {k: [a["text"][:120] for a in rs[0]["answers"]] for k, rs in runs.items()}
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
    ap.add_argument(
        "--llm-index", type=Path, help="an index folder: LLM prompts from real retrieval (else one built-in)"
    )
    ap.add_argument("--llm-prompts-n", type=int, default=3, help="with --llm-index: questions of eval/shipped.jsonl")
    ap.add_argument("--torch-passive", action="store_true", help="OMP_WAIT_POLICY=PASSIVE for both LLM backends")
    ap.add_argument("--llm-child", choices=["torch", "llamacpp"], help=argparse.SUPPRESS)
    ap.add_argument("--llm-prompts", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=OUT / "backend.json")
    a = ap.parse_args()
    if a.llm_child:
        print(json.dumps(llm_child(a.llm_child, a.threads, a.max_new_tokens, a.llm_prompts)))
        return
    print(f"# bench_backend on {machine()}; {a.threads} threads, {a.rounds} interleaved rounds")
    out: dict = {"machine": machine(), "threads": a.threads}
    if "embed" not in a.skip:
        out["embed"] = bench_embed(a.rounds, a.threads, a.passages)
        print(json.dumps({"embed": out["embed"]}, indent=1), flush=True)
    if "rerank" not in a.skip:
        out["rerank_20_candidates"] = bench_rerank(a.rounds, a.threads, a.questions)
        print(json.dumps({"rerank_20_candidates": out["rerank_20_candidates"]}, indent=1), flush=True)
    if "llm" not in a.skip:
        out["llm"] = bench_llm(a.rounds, a.threads, a.max_new_tokens, a.llm_index, a.llm_prompts_n, a.torch_passive)
        print(json.dumps({"llm": out["llm"]}, indent=1), flush=True)
    if a.quality:
        out["quality"] = bench_quality(a.quality, a.threads, a.quality_limit, a.quality_configs)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
