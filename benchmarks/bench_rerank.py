"""Reranking speed against held-out quality (issue 12: <= 0.4 s per question for 20 candidates on 2 cores).

    .venv/bin/python benchmarks/bench_rerank.py heldout [--questions 100] [--variants fp32-256 int8-128w ...]
                     [--split test|val] [--sets policyqa obliqa]
    .venv/bin/python benchmarks/bench_rerank.py latency --index /tmp/x/index [--questions 12] [--rounds 2]

Variants (`reranker`): `fp32-256`, `int8-256`, `int8.channel-256` (int8 recipe), `int8-128w` (128 pieces + window),
`ov.bf16-256` / `ov.f32-256` (OpenVINO, `rag.index.backends_openvino`, at that inference precision);
`+b32+spin` reproduces the reader before session 4 (batches of 32, spinning ORT threads). Choose on `--split val`,
report on test. `latency` also reports each variant's agreement with the first one named (max score diff,
same order, same top-1).

`heldout`: the scorer's held-out documents (seed-13 split of `rag train scorer`, test part only), a seeded
sample of questions per set, candidates = BM25 top 20 over chunk-like units (two consecutive paragraphs
of a document, ~135 words, like the project's ~148-word chunks, so a short `max_length` has to choose
what to read), each variant's ranking scored with the project's hit rule (`rank_metrics`). The variants
differ only in the reader: fp32 or int8 ONNX, `max_length`, and a long passage cut to its best sentence
window ("w", `Reranker.fit`) or truncated. Paired: every variant ranks the same candidates.

`latency`: hybrid top 20 of the project's index for eval/paraphrased.jsonl questions, then per question
no rerank vs each variant interleaved; CPU seconds of this process (all threads) and wall, p50, with the
load average printed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmarks._common import OUT, SHARED, machine  # noqa: E402

VARIANT = re.compile(r"^(fp32|int8|ov)(?:\.([a-z0-9-]+))?-(\d+)(w?)((?:\+[a-z]+\d*)*)$")


def reranker(variant: str, cache_dir: Path | None = None):
    """A Reranker named by a variant: `fp32-256`, `int8-128w`, `int8.channel-256` (an int8 recipe of
    rag.index.onnx_opt.INT8_RECIPES), `ov.bf16-256` / `ov.f32-256` (OpenVINO at that precision), with options `+b32` (plain batches of 32, no token budget: the batching
    before this session), `+t1024` (token budget per batch), `+spin` (ORT threads spin-wait: its default and
    the behaviour before), `+nocache` (no saved optimized graph). `fp32-256+b32+spin` = the old default."""
    from rag.retrieve.rerank import BATCH_TOKENS, Reranker
    from rag.settings import default_cache_dir

    m = VARIANT.match(variant)
    if not m:
        raise SystemExit(f"bad variant {variant!r} (e.g. fp32-256, int8-128w, int8.channel-256, fp32-256+b32+spin)")
    opts = {o[:1] if o[0] in "bt" else o: o[1:] for o in m.group(5).split("+") if o}
    if set(opts) - {"b", "t", "spin", "nocache"}:
        raise SystemExit(f"bad variant option in {variant!r} (+bN, +tN, +spin, +nocache)")
    ov = m.group(1) == "ov"
    return Reranker(
        "evidence-scorer",
        "cpu",
        max_length=int(m.group(3)),
        batch_size=int(opts.get("b") or 32),
        quantize=m.group(1) == "int8",
        backend="openvino" if ov else "onnx",
        precision=(m.group(2) or "auto") if ov else "auto",
        cache_dir=cache_dir or default_cache_dir(),
        window=bool(m.group(4)),
        int8=(m.group(2) or "dynamic") if not ov else "dynamic",
        max_tokens=None if "b" in opts else int(opts.get("t") or BATCH_TOKENS),
        spin="spin" in opts,
        cache_graph="nocache" not in opts,
    )


def chunk_units(ds):
    """Two consecutive paragraphs/passages of one document per unit (the last may be single)."""
    from rag.jobs.scorer.data import Unit

    by_doc: dict[str, list] = {}
    for u in ds.units:
        by_doc.setdefault(u.doc, []).append(u)
    out = []
    for doc, us in by_doc.items():
        for i in range(0, len(us), 2):
            text = "\n\n".join(u.text for u in us[i : i + 2])
            out.append(Unit(doc, text, len(text.split())))
    return out


def heldout(a: argparse.Namespace) -> dict:
    from rag.jobs.scorer.candidates import _bm25, _top
    from rag.jobs.scorer.data import SPLIT_SIZES, is_hit, load_obliqa, load_policyqa, question_split, split_docs
    from rag.jobs.scorer.evaluate import rank_metrics
    from rag.text.lexical import lexical_tokens

    cache_file = OUT / "rerank_heldout_scores.json"
    cache = json.loads(cache_file.read_text()) if cache_file.is_file() else {}
    results: dict = {}
    loaders = {
        "policyqa": lambda: load_policyqa(SHARED / "eval" / "policyqa" / "dev.json"),
        "obliqa": lambda: load_obliqa(SHARED / "eval" / "obliqa"),
    }
    for ds in (loaders[x]() for x in a.sets):
        n_test, n_val = SPLIT_SIZES[ds.name]
        split = split_docs({u.doc for u in ds.units}, n_test, n_val)
        units = chunk_units(ds) if a.units == "chunks" else ds.units
        seen, test = set(), []
        for q in ds.questions:
            if question_split(q, split) == a.split and (q.group or q.id) not in seen:
                seen.add(q.group or q.id)
                test.append(q)
        qs = random.Random(13).sample(test, min(a.questions, len(test)))
        bm = _bm25([u.text for u in units])
        docs = np.array([u.doc for u in units])
        cands = []
        for q in qs:
            toks = [t for t in lexical_tokens(q.text) if t in bm.vocab_dict]
            sc = np.asarray(bm.get_scores(toks)) if toks else np.zeros(len(units))
            if q.scope is not None:
                sc = np.where(docs == q.scope, sc, 0.0)
            k = min(a.depth, int((sc > 0).sum()))
            cands.append(_top(sc, k) if k else [])
        words = float(np.mean([units[i].words for c in cands for i in c]))
        results[ds.name] = {"questions": len(qs), "candidate_words_mean": round(words, 1), "variants": {}}
        for v in a.variants:
            key = f"{a.units}|{ds.name}|{v}|{a.depth}" + ("" if a.split == "test" else f"|{a.split}")
            got = cache.setdefault(key, {})
            todo = [(q, c) for q, c in zip(qs, cands, strict=True) if q.id not in got and c]
            if todo:
                r = reranker(v)
                t0, c0 = time.time(), time.process_time()
                for j, (q, c) in enumerate(todo):
                    got[q.id] = [float(x) for x in r.scores(q.text, [units[i].text for i in c])]
                    if j % 25 == 24:
                        cache_file.write_text(json.dumps(cache))
                        print(f"  {ds.name} {v}: {j + 1}/{len(todo)}", file=sys.stderr, flush=True)
                cache_file.write_text(json.dumps(cache))
                print(
                    f"{ds.name} {v}: {len(todo)} questions, {time.process_time() - c0:.0f} CPU s, {time.time() - t0:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
            rows = []
            for q, c in zip(qs, cands, strict=True):
                ranking = [c[t] for t in np.argsort(-np.asarray(got.get(q.id, [])), kind="stable")] if c else []
                rows.append(
                    {
                        "hits": [is_hit(q, units[i]) for i in ranking],
                        "found": [{i} & set(q.gold) for i in ranking],
                        "n_gold": max(1, len(q.gold_texts)),
                        "words": [units[i].words for i in ranking],
                    }
                )
            m = rank_metrics(rows, ds.k, ds.budget)
            results[ds.name]["variants"][v] = {
                x: m[x] for x in ("recall@1", "recall@5", "recall@10", "mrr@10", f"recall@{ds.budget}w")
            }
            print(ds.name, v, results[ds.name]["variants"][v], flush=True)
    return results


def latency(a: argparse.Namespace) -> dict:
    from rag.retrieve.retriever import Retriever
    from rag.settings import Settings

    qs = [
        json.loads(x)["question"]
        for x in (Path(__file__).resolve().parent.parent / "eval" / "paraphrased.jsonl").read_text().splitlines()
        if x.strip()
    ]
    qs = qs[:: max(1, len(qs) // a.questions)][: a.questions]
    s = Settings(index=str(a.index))
    r = Retriever.open(s)
    cands = [r.search([q], 20, mode="hybrid", rerank=False, dedupe_hits=False, use_policy=False)[0][:20] for q in qs]
    scorers = {v: reranker(v) for v in a.variants}
    for sc in scorers.values():
        sc.scores("warm up", ["warm up"])
    res: dict = {v: {"cpu": [], "wall": []} for v in ["no rerank", *a.variants]}
    load0 = os.getloadavg()
    first: dict[str, np.ndarray] = {}
    for _ in range(a.rounds):
        for q, hits in zip(qs, cands, strict=True):
            for v in res:
                c0, t0 = time.process_time(), time.perf_counter()
                if v != "no rerank":
                    scorers[v]._memo.clear()  # every round scores afresh (the memo would make round 2 free)
                    got = scorers[v].scores(q, [p.chunk.text for p in hits])
                    scorers[v].rerank(q, hits)  # as the retriever calls it (served from the memo just filled)
                res[v]["cpu"].append(time.process_time() - c0)
                res[v]["wall"].append(time.perf_counter() - t0)
                if v != "no rerank":
                    ref = first.setdefault(q, got)  # the first variant named is the reference
                    x = res[v]
                    x["max_diff"] = max(x.get("max_diff", 0.0), float(np.abs(got - ref).max()))
                    x["same_order"] = x.get("same_order", 0) + int(
                        (np.argsort(-got, kind="stable") == np.argsort(-ref, kind="stable")).all()
                    )
                    x["same_top1"] = x.get("same_top1", 0) + int(np.argmax(got) == np.argmax(ref))
    load1 = os.getloadavg()
    out = {
        v: {
            "cpu_s_p50": round(statistics.median(x["cpu"]), 3),
            "wall_s_p50": round(statistics.median(x["wall"]), 3),
            "wall_s_min": round(min(x["wall"]), 3),
            **{k: x[k] for k in ("max_diff", "same_order", "same_top1") if k in x},
        }
        for v, x in res.items()
    }
    out["_load"] = {"start": [round(x, 1) for x in load0], "end": [round(x, 1) for x in load1]}
    out["_candidates"] = {
        "questions": len(qs),
        "rounds": a.rounds,
        "words_mean": round(float(np.mean([len(p.chunk.text.split()) for h in cands for p in h])), 1),
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["heldout", "latency"])
    ap.add_argument("--questions", type=int, default=100)
    ap.add_argument("--variants", nargs="+", default=["fp32-256", "int8-256", "int8-128w", "int8-128"])
    ap.add_argument("--units", choices=["chunks", "paragraphs"], default="chunks")
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--index", type=Path, default=Path("index"))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument(
        "--split",
        choices=["test", "val"],
        default="test",
        help="heldout: the documents' part (choose on val, report test)",
    )
    ap.add_argument("--sets", nargs="+", default=["policyqa", "obliqa"], help="heldout: which QA sets")
    a = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    res = heldout(a) if a.what == "heldout" else latency(a)
    res["_machine"] = machine()
    (OUT / f"rerank_{a.what}{'' if a.split == 'test' else '_' + a.split}.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
