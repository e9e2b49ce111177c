"""Does an int8 ONNX embedder keep dense retrieval quality within 0.5 point of fp32, and how fast is it? (issue 16)

    .venv/bin/python benchmarks/bench_embed_quality.py [--sets policyqa obliqa] [--policyqa-docs test|all]
        [--obliqa-passages 0] [--variants fp32 int8-dyn int8-matmul ...] [--torch-passages 256]
        [--cache-dir DIR] [--threads 0] [--chunk 128]

Why: int8 dynamic quantization doubles the embedder's CPU throughput but moves its vectors (min cosine
0.91 to fp32), and fp32 ONNX equals torch fp32 to 1e-7, so fp32 ONNX is the reference. The variants are
all made here, from the library's fp32 export, into `--cache-dir` (the library's files are not touched):

- fp32: the library's export (`backends_onnx.exported`); int8-dyn: the library's own int8 file
  (`exported(..., quantize=True)`: `quantize_dynamic`, QInt8, default op types, so the embedding tables
  (Gather) are int8 too);
- int8-matmul: only the MatMuls with a weight (36: attention projections and FFN), embedding tables fp32;
- int8-pc: as int8-matmul, per-channel weight scales; int8-rr: as int8-matmul, reduce_range (7-bit);
- int8-ffn: only the 12 FFN MatMuls (intermediate/output dense; about 2/3 of the weight FLOPs);
- int8-mid: as int8-matmul without the first and last layer;
- int8-pc-noffn2 / int8-pc-edges: as int8-pc without the FFN down projections (the MatMul after GELU) /
  without the first and last layer (`rag.index.onnx_opt`'s channel-noffn2 / channel-edges recipes);
- openvino-bf16 / openvino-f32: the library's `OpenVinoEmbedder` (the fp32 export compiled by OpenVINO, with
  INFERENCE_PRECISION_HINT bf16 / f32; bf16 needs a CPU that reports BF16).

Data (the hit rule is the project's, `rag.jobs.scorer.data.is_hit` = `chunk_matches`; exact search over
normalised vectors, so a ranking is a sorted dot product):
- PolicyQA dev: units = paragraphs; retrieval restricted to the question's policy (as in `rag eval`'s
  scoped sets); questions with the same text in the same policy are one question whose gold is the union.
  `--policyqa-docs test`: the 6 held-out policies of the scorer's seed-13 split; `all`: all 20.
- ObliQA dev: the passages of the 10 held-out documents of the same split (`--obliqa-docs all`: of all
  40), pooled (no scope), and every question whose gold passages all lie in them. `--obliqa-passages N`
  keeps all gold passages plus a seeded sample of the others, N in all (0: every passage).

Memory: sessions run without ONNX Runtime's CPU arena unless `--arena` (seven variants held 15 GB with it).

Speed: passages sorted by length, cut into chunks of `--chunk`; every chunk is embedded by every variant
in turn (order rotated per chunk) in this process, so load from other processes hits all alike; CPU time
(user+sys of the process, all threads) and wall per variant, and the ratio to fp32 over the same chunks.
torch fp32 (sentence-transformers) joins the first `--torch-passages` passages only (it is slow, and its
vectors equal fp32 ONNX's). Mixed rows: queries by one variant against passages by another (an index
built by one backend, queried by another).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault(
    "OMP_WAIT_POLICY", "PASSIVE"
)  # torch's idle OpenMP threads would bill their spinning to the next variant

from benchmarks._common import OUT, SHARED, machine  # noqa: E402

VARIANTS = (
    "fp32",
    "int8-dyn",
    "int8-matmul",
    "int8-pc",
    "int8-rr",
    "int8-ffn",
    "int8-mid",
    "int8-pc-noffn2",
    "int8-pc-edges",
    "openvino-bf16",
    "openvino-f32",
)
METRICS = ("recall@1", "recall@5", "recall@10", "mrr@10")
FFN = re.compile(r"layer\.\d+/(intermediate|output)/dense/MatMul$")
FFN_DOWN = re.compile(r"layer\.\d+/output/dense/MatMul$")  # after GELU; not attention/output/dense
LAYER = re.compile(r"layer\.(\d+)/")


def weight_matmuls(model: Any) -> list[str]:
    """Names of the MatMul nodes whose second input is a weight (an initializer): the ones worth int8."""
    inits = {i.name for i in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and len(n.input) > 1 and n.input[1] in inits]


def variant_nodes(variant: str, names: list[str]) -> list[str] | None:
    """The MatMuls a variant quantizes (None: every quantizable node, as the library's int8 does)."""
    if variant in ("int8-dyn",):
        return None
    if variant == "int8-ffn":
        return [n for n in names if FFN.search(n)]
    if variant == "int8-pc-noffn2":
        return [n for n in names if not FFN_DOWN.search(n)]
    if variant in ("int8-mid", "int8-pc-edges"):
        layers = sorted({int(m.group(1)) for n in names if (m := LAYER.search(n))})
        edge = {layers[0], layers[-1]} if layers else set()
        return [n for n in names if (m := LAYER.search(n)) and int(m.group(1)) not in edge]
    return list(names)


def quantize_variant(fp32: Path, variant: str, out: Path) -> Path:
    """Write `variant` of the fp32 model to `out` (once); int8 weights, activations quantized per call."""
    if out.is_file():
        return out
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    nodes = variant_nodes(variant, weight_matmuls(onnx.load(str(fp32), load_external_data=False)))
    tmp = out.with_name(f"tmp-{os.getpid()}-{out.name}")
    out.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    level, root.level = root.level, logging.ERROR  # the "consider pre-processing" notice
    try:
        quantize_dynamic(
            str(fp32),
            str(tmp),
            op_types_to_quantize=None if nodes is None else ["MatMul"],
            nodes_to_quantize=nodes,
            per_channel=variant.startswith("int8-pc"),
            reduce_range=variant == "int8-rr",
            weight_type=QuantType.QInt8,
        )
    finally:
        root.setLevel(level)
    os.replace(tmp, out)
    return out


def embedders(
    variants: list[str], cache_dir: Path, threads: int, torch_too: bool, arena: bool = False
) -> dict[str, Any]:
    """One embedder per variant: the library's OnnxEmbedder (its tokenizer, batching, pooling, session
    options), with the session swapped for the variant's file; fp32 and int8-dyn are the library's own files.

    Without `arena` every session frees its buffers after each call: ONNX Runtime's CPU arena keeps each
    session's peak (batch 64 x 256 pieces: ~2 GB), and seven sessions in one process held 15 GB."""
    import onnxruntime as ort

    from rag.index.backends_onnx import OnnxEmbedder, exported
    from rag.index.embed import DEFAULT_EMBEDDING_MODEL, Embedder, resolve_embedding_model

    folder = Path(resolve_embedding_model(DEFAULT_EMBEDDING_MODEL))
    fp32 = exported(folder, "embed", cache_dir)
    out: dict[str, Any] = {}
    for v in variants:
        if v.startswith("openvino-"):  # the library's OpenVINO embedder (the same export, compiled by OpenVINO)
            from rag.index.backends_openvino import OpenVinoEmbedder

            out[v] = OpenVinoEmbedder(
                DEFAULT_EMBEDDING_MODEL, folder, cache_dir, 64, threads=threads, precision=v.split("-", 1)[1]
            )
            out[v].encode(["warm up"])
            continue
        e = OnnxEmbedder(DEFAULT_EMBEDDING_MODEL, folder, cache_dir, 64, quantize=v == "int8-dyn", threads=threads)
        path = e.enc.path if v in ("fp32", "int8-dyn") else quantize_variant(fp32, v, fp32.with_name(f"model-{v}.onnx"))
        if v not in ("fp32", "int8-dyn") or not arena:
            opts = ort.SessionOptions()  # the library's options (OnnxEncoder), optionally without the arena
            opts.intra_op_num_threads = threads or (os.cpu_count() or 1)
            opts.inter_op_num_threads = 1
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            opts.enable_cpu_mem_arena = arena
            e.enc.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            e.enc.path = path
        e.encode(["warm up"])
        out[v] = e
    if torch_too:
        import torch

        torch.set_num_threads(threads or (os.cpu_count() or 1))
        out["torch"] = Embedder(DEFAULT_EMBEDDING_MODEL, "cpu", 64)
        out["torch"].encode(["warm up"])
    return out


def cpu_s() -> float:
    r = os.times()
    return r.user + r.system


def embed_interleaved(
    embs: dict[str, Any], texts: list[str], chunk: int, torch_n: int, label: str
) -> tuple[dict, dict]:
    """Vectors of `texts` per variant, and per-variant CPU/wall seconds, chunk by chunk in rotated order."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    names = [v for v in embs if v != "torch"]
    vecs = {v: np.zeros((len(texts), 0), np.float32) for v in names}
    parts: dict[str, list] = {v: [] for v in names}
    t = {v: {"cpu": 0.0, "wall": 0.0, "passages": 0, "cpu_torch_chunks": 0.0} for v in embs}
    chunks = [order[i : i + chunk] for i in range(0, len(order), chunk)]
    # torch joins every k-th chunk (spread over lengths), about torch_n passages in all
    every = max(1, round(len(chunks) / max(1, torch_n / chunk))) if torch_n and "torch" in embs else 0
    tv: dict[str, list] = {"torch": [], "fp32": []}
    t0 = time.time()
    for ci, idx in enumerate(chunks):
        batch = [texts[i] for i in idx]
        with_torch = bool(every) and ci % every == 0
        run = names + (["torch"] if with_torch else [])
        run = run[ci % len(run) :] + run[: ci % len(run)]
        for v in run:
            c0, w0 = cpu_s(), time.perf_counter()
            x = embs[v].encode(batch)
            dc, dw = cpu_s() - c0, time.perf_counter() - w0
            t[v]["cpu"] += dc
            t[v]["wall"] += dw
            t[v]["passages"] += len(batch)
            if with_torch:
                if v in tv:
                    tv[v].append(x)
                if v != "torch":
                    t[v]["cpu_torch_chunks"] += dc
            if v != "torch":
                parts[v].append(x)
        if ci % 5 == 4 or ci == len(chunks) - 1:
            done = sum(len(c) for c in chunks[: ci + 1])
            print(
                f"  {label}: {done}/{len(texts)} passages, {time.time() - t0:.0f} s, load {os.getloadavg()[0]:.1f}",
                file=sys.stderr,
                flush=True,
            )
    flat = [i for c in chunks for i in c]
    for v in names:
        vecs[v] = np.empty((len(texts), parts[v][0].shape[1]), np.float32)
        vecs[v][flat] = np.concatenate(parts[v])
    if tv["torch"]:
        a, b = np.concatenate(tv["torch"]), np.concatenate(tv["fp32"])
        t["torch"]["min_cos_vs_fp32"] = float((a * b).sum(1).min())
    return vecs, t


def search(qv: np.ndarray, pv: np.ndarray, scopes: list[np.ndarray] | None, depth: int = 10) -> list[list[int]]:
    """Exact top-`depth` by dot product (vectors are normalised), each question within its scope if given."""
    if scopes is None:
        sims = qv @ pv.T
        return [np.argsort(-row, kind="stable")[:depth].tolist() for row in sims]
    out = []
    for i in range(len(qv)):
        cand = scopes[i]
        top = np.argsort(-(pv[cand] @ qv[i]), kind="stable")[:depth]
        out.append([int(cand[j]) for j in top])
    return out


def metrics(rankings: list[list[int]], hit) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """recall@1/5/10 (a hit among the top k) and MRR@10 in points (x100), and each question's values."""
    hits = [[hit(qi, u) for u in r[:10]] for qi, r in enumerate(rankings)]
    per = {f"recall@{k}": np.array([float(any(h[:k])) for h in hits]) for k in (1, 5, 10)}
    per["mrr@10"] = np.array([next((1.0 / (j + 1) for j, x in enumerate(h) if x), 0.0) for h in hits])
    return {k: 100.0 * float(v.mean()) if len(v) else 0.0 for k, v in per.items()}, per


def compare(m: dict, per: dict, ref: dict, per_ref: dict) -> dict:
    """Differences in points to the reference, each with a paired 95 % half-width (normal approximation
    over questions), and how many questions' reciprocal rank rose / fell."""
    out: dict[str, Any] = {}
    for k in METRICS:
        d = per[k] - per_ref[k]
        out[f"d_{k}"] = round(m[k] - ref[k], 2)
        out[f"ci_{k}"] = round(100 * 1.96 * float(d.std(ddof=1)) / np.sqrt(len(d)), 2) if len(d) > 1 else 0.0
    d = per["mrr@10"] - per_ref["mrr@10"]
    out["rr_better"], out["rr_worse"] = int((d > 1e-9).sum()), int((d < -1e-9).sum())
    return out


def holds(diffs: dict, tol: float = 0.5) -> bool:
    """The issue's rule on point estimates: no metric lower than fp32's by more than `tol` points (gains pass)."""
    return all(diffs[f"d_{k}"] >= -tol for k in METRICS)


def shown_to_hold(diffs: dict, tol: float = 0.5) -> bool:
    """Non-inferiority: even the low end of every metric's 95 % interval is within `tol` points."""
    return all(diffs[f"d_{k}"] - diffs[f"ci_{k}"] >= -tol for k in METRICS)


def overlap10(r: list[list[int]], ref: list[list[int]]) -> float:
    """Mean share of fp32's top 10 that a variant's top 10 keeps (ranking agreement, no labels needed)."""
    return float(
        np.mean([len(set(a[:10]) & set(b[:10])) / max(1, min(10, len(b))) for a, b in zip(r, ref, strict=True)])
    )


def load_set(name: str, a: argparse.Namespace) -> dict:
    """units (texts, docs), questions (texts, scope arrays or None) and a hit function, per the module doc."""
    from rag.jobs.scorer.data import SPLIT_SIZES, is_hit, load_obliqa, load_policyqa, question_split, split_docs

    if name == "policyqa":
        ds = load_policyqa(SHARED / "eval" / "policyqa" / "dev.json")
    else:
        ds = load_obliqa(SHARED / "eval" / "obliqa")
    split = split_docs({u.doc for u in ds.units}, *SPLIT_SIZES[ds.name])
    which = a.policyqa_docs if name == "policyqa" else a.obliqa_docs
    keep_docs = set(split["test"]) if which == "test" else {u.doc for u in ds.units}
    qs = [q for q in ds.questions if question_split(q, split) is not None and set(q.docs) <= keep_docs]
    if name == "policyqa":  # one question per (policy, text); gold = union of the group's
        groups: dict[str, Any] = {}
        for q in qs:
            g = groups.get(q.group)
            if g is None:
                groups[q.group] = q
            else:
                g.gold_texts = g.gold_texts + [t for t in q.gold_texts if t not in g.gold_texts]
                g.answers = g.answers + [t for t in q.answers if t not in g.answers]
                g.gold = sorted(set(g.gold) | set(q.gold))
        qs = list(groups.values())
    uids = [i for i, u in enumerate(ds.units) if u.doc in keep_docs]
    if name == "obliqa" and a.obliqa_passages and a.obliqa_passages < len(uids):
        gold = {g for q in qs for g in q.gold}
        rest = [i for i in uids if i not in gold]
        extra = random.Random(13).sample(rest, max(0, a.obliqa_passages - len(gold)))
        uids = sorted(gold | set(extra))
    units = [ds.units[i] for i in uids]
    docs = np.array([u.doc for u in units])
    scopes = [np.flatnonzero(docs == q.scope) for q in qs] if name == "policyqa" else None
    desc = (
        f"{name}: {len(set(docs))} documents ({'held-out test split' if keep_docs != {u.doc for u in ds.units} else 'all'}), "
        f"{len(units)} passages ({np.mean([u.words for u in units]):.0f} words mean), {len(qs)} questions"
        + (", retrieval within the question's policy" if scopes is not None else ", pooled retrieval")
    )
    return {
        "texts": [u.text for u in units],
        "queries": [q.text for q in qs],
        "scopes": scopes,
        "desc": desc,
        "hit": lambda qi, u: is_hit(qs[qi], units[u]),
    }


def speed_rows(timing: dict, pv: dict) -> dict:
    f = timing["fp32"]
    out = {}
    for v, t in timing.items():
        row = {
            "cpu_ms_per_passage": round(1000 * t["cpu"] / max(1, t["passages"]), 2),
            "wall_ms_per_passage": round(1000 * t["wall"] / max(1, t["passages"]), 2),
            "passages": t["passages"],
        }
        if v == "torch":
            row["fp32_onnx_over_torch_cpu"] = round(t["cpu"] / max(1e-9, f["cpu_torch_chunks"]), 2)
            row["min_cos_vs_fp32"] = round(t.get("min_cos_vs_fp32", float("nan")), 6)
        else:
            row["speed_vs_fp32_cpu"] = round(f["cpu"] / max(1e-9, t["cpu"]), 2)
            row["speed_vs_fp32_wall"] = round(f["wall"] / max(1e-9, t["wall"]), 2)
            if "torch" in timing and timing["torch"]["passages"]:
                row["speed_vs_torch_cpu_est"] = round(
                    timing["torch"]["cpu"] / max(1e-9, f["cpu_torch_chunks"]) * row["speed_vs_fp32_cpu"], 2
                )
            cos = (pv[v] * pv["fp32"]).sum(1)
            row["cos_vs_fp32_min"], row["cos_vs_fp32_mean"] = round(float(cos.min()), 4), round(float(cos.mean()), 4)
        out[v] = row
    return out


def run_set(name: str, embs: dict, a: argparse.Namespace) -> dict:
    s = load_set(name, a)
    print(s["desc"], file=sys.stderr, flush=True)
    vec_file = a.src.with_name(f"{a.src.stem}-{name}.npz")
    if a.from_vectors:  # re-score an earlier run's vectors; its speed table is kept as it was measured
        z = np.load(vec_file)
        pv = {k[2:]: z[k] for k in z.files if k.startswith("p_")}
        qv = {k[2:]: z[k] for k in z.files if k.startswith("q_")}
        if len(pv["fp32"]) != len(s["texts"]) or len(qv["fp32"]) != len(s["queries"]):
            raise SystemExit(
                f"{vec_file} was made for other data (passages {len(pv['fp32'])}, questions {len(qv['fp32'])})"
            )
        speed = json.loads(a.src.read_text())[name]["speed"]
    else:
        pv, timing = embed_interleaved(embs, s["texts"], a.chunk, a.torch_passages, name)
        qv = {v: e.encode(s["queries"]) for v, e in embs.items() if v != "torch"}
        speed = speed_rows(timing, pv)
        if a.save_vectors:  # to re-score without embedding again (--from-vectors)
            np.savez_compressed(
                vec_file, **{f"p_{v}": x for v, x in pv.items()}, **{f"q_{v}": x for v, x in qv.items()}
            )
    hitc: dict[tuple[int, int], bool] = {}

    def hit(qi: int, u: int) -> bool:
        if (qi, u) not in hitc:
            hitc[(qi, u)] = s["hit"](qi, u)
        return hitc[(qi, u)]

    names = ["fp32"] + [v for v in pv if v != "fp32"]
    combos = [(v, v) for v in names] + [(q, p) for v in names[1:] for q, p in (("fp32", v), (v, "fp32"))]
    rows: dict[str, Any] = {}
    ref_rank = search(qv["fp32"], pv["fp32"], s["scopes"])
    ref, per_ref = metrics(ref_rank, hit)
    for q, p in combos:
        key = q if q == p else f"query {q} / passages {p}"
        rank = ref_rank if key == "fp32" else search(qv[q], pv[p], s["scopes"])
        m, per = metrics(rank, hit)
        rows[key] = {k: round(x, 2) for k, x in m.items()}
        if key != "fp32":
            rows[key] |= compare(m, per, ref, per_ref)
            rows[key]["holds"], rows[key]["shown"] = holds(rows[key]), shown_to_hold(rows[key])
            rows[key]["overlap10"] = round(overlap10(rank, ref_rank), 3)
    return {"desc": s["desc"], "rows": rows, "speed": speed}


def table(name: str, r: dict) -> str:
    lines = [
        f"### {r['desc']}",
        "",
        "| variant (query / passages) | R@1 | R@5 | R@10 | MRR@10 | d R@1 | d R@5 | d R@10 | d MRR@10 "
        "| RR up/down | top-10 overlap | holds (point / 95%) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for k, m in r["rows"].items():
        if "d_mrr@10" in m:
            d = " | ".join(f"{m['d_' + x]:+.2f} +-{m['ci_' + x]:.2f}" for x in METRICS)
            tail = f"{m['rr_better']}/{m['rr_worse']} | {m['overlap10']:.3f} | {'yes' if m['holds'] else 'no'} / {'yes' if m['shown'] else 'no'}"
        else:
            d, tail = " | ".join(["(reference)"] + [""] * 3), " | 1 | "
        lines.append(
            f"| {k} | {m['recall@1']:.1f} | {m['recall@5']:.1f} | {m['recall@10']:.1f} | {m['mrr@10']:.2f} | {d} | {tail} |"
        )
    lines += [
        "",
        "| variant | CPU ms / passage | wall ms / passage | speed vs fp32 (CPU) | (wall) | vs torch (CPU, est.) | cos to fp32 min / mean |",
        "|---|---|---|---|---|---|---|",
    ]
    for v, s in r["speed"].items():
        if v == "torch":
            lines.append(
                f"| torch fp32 (on {s['passages']} of the passages) | {s['cpu_ms_per_passage']} | {s['wall_ms_per_passage']} | "
                f"onnx fp32 {s['fp32_onnx_over_torch_cpu']}x torch | | | {s['min_cos_vs_fp32']} |"
            )
        else:
            lines.append(
                f"| {v} | {s['cpu_ms_per_passage']} | {s['wall_ms_per_passage']} | {s['speed_vs_fp32_cpu']} | "
                f"{s['speed_vs_fp32_wall']} | {s.get('speed_vs_torch_cpu_est', '')} | "
                f"{s['cos_vs_fp32_min']} / {s['cos_vs_fp32_mean']} |"
            )
    return "\n".join(lines)


def verdict(results: dict) -> str:
    """Variants within 0.5 point of fp32 on every set (own vectors for queries and passages), fastest first:
    by the point estimates (the issue's rule) and by the 95 % intervals' low ends."""
    sets = [r for r in results.values() if isinstance(r, dict) and "rows" in r]
    out = []
    for rule, label in (("holds", "point estimates"), ("shown", "95% low ends")):
        ok = [
            v
            for v in sets[0]["rows"]
            if v != "fp32" and "/" not in v and all(r["rows"].get(v, {}).get(rule) for r in sets)
        ]
        speed = {v: min(r["speed"][v]["speed_vs_fp32_cpu"] for r in sets) for v in ok}
        ok.sort(key=lambda v: -speed[v])
        out.append(f"{label}: " + (", ".join(f"{v} ({speed[v]}x fp32 CPU, lowest over sets)" for v in ok) or "none"))
    return "within 0.5 point of fp32 on every set, by " + "; by ".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="+", choices=["policyqa", "obliqa"], default=["policyqa", "obliqa"])
    ap.add_argument("--policyqa-docs", choices=["test", "all"], default="test")
    ap.add_argument("--obliqa-docs", choices=["test", "all"], default="test")
    ap.add_argument("--obliqa-passages", type=int, default=0, help="0: every passage of the chosen documents")
    ap.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    ap.add_argument("--torch-passages", type=int, default=0, help="time torch fp32 on about this many passages")
    ap.add_argument("--chunk", type=int, default=128)
    ap.add_argument("--threads", type=int, default=0, help="0: the library's default (all cores)")
    ap.add_argument(
        "--arena",
        action="store_true",
        help="keep ONNX Runtime's CPU memory arena (the library's default; ~2 GB per variant)",
    )
    ap.add_argument("--cache-dir", type=Path, default=OUT / "embed_quality_cache")
    ap.add_argument("--out", type=Path, default=OUT / "embed_quality.json")
    ap.add_argument("--save-vectors", action="store_true", help="also write each set's vectors beside --out")
    ap.add_argument(
        "--from-vectors", action="store_true", help="re-score the vectors and speed saved by an earlier run"
    )
    a = ap.parse_args()
    variants = ["fp32"] + [v for v in a.variants if v != "fp32"]
    t0, c0 = time.time(), cpu_s()
    load0 = os.getloadavg()
    embs = {} if a.from_vectors else embedders(variants, a.cache_dir, a.threads, a.torch_passages > 0, a.arena)
    res: dict[str, Any] = {"_machine": machine(), "_args": {k: str(v) for k, v in vars(a).items()}}
    a.src = a.out  # where the vectors go (or, with --from-vectors, come from with the speed table)
    if a.from_vectors:
        a.out = a.out.with_name(a.out.stem + "-rescored.json")
    for name in a.sets:
        res[name] = run_set(name, embs, a)
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=1))
        print(table(name, res[name]) + "\n", flush=True)
    res["_verdict"] = verdict(res)
    res["_time"] = {
        "wall_s": round(time.time() - t0),
        "cpu_s": round(cpu_s() - c0),
        "load_start": [round(x, 1) for x in load0],
        "load_end": [round(x, 1) for x in os.getloadavg()],
    }
    a.out.write_text(json.dumps(res, indent=1))
    print(f"verdict: {res['_verdict']}\n{json.dumps(res['_time'])}", flush=True)


if __name__ == "__main__":
    main()
