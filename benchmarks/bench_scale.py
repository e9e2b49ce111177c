"""Scale benchmark: 10k / 100k / 1M synthetic policy-like chunks through the real index store.

    .venv/bin/python benchmarks/bench_scale.py --sizes 10000 100000 1000000 --kinds flat hnsw ivf ivfpq

How it avoids embedding a million chunks: the vectors are *given*. They are drawn from a clustered
distribution shaped like MiniLM chunk embeddings (unit vectors around a few thousand topic directions,
each chunk a noisy mix of its document's topic and a section direction), the texts are synthetic
policy-like sentences (agencies, identifiers, dates, numbers). Queries are fresh draws from the same
topics, so recall@10 is measured against exact search on the same vectors. What embedding would cost
is extrapolated from the per-chunk embedding time measured by `benchmarks/bench_backend.py`.

Each (size, stage) runs in a child process so its peak RSS is its own. Stages:
- store: SQLite rows + vectors (GenerationWriter.add_chunks), BM25, publish (the real writer), flat FAISS;
- kind (flat, hnsw, ivf): FAISS built by `rag.index.build.rebuild_faiss` from the SQLite rows (the real
  build step), written, opened by IndexStore; search p50/p95 through `IndexStore.search` and through the raw
  `faiss.Index.search` (ratio in one run); recall@10 vs exact; then an incremental add of one document
  and removal of one, the way an incremental `rag index build` does them (byte copy of the previous
  generation's SQLite, FAISS add/remove in place (HNSW rebuilt on removal), BM25 segments linked plus one
  new segment, identity/relations of the new document, the id check, publish), with its ratio to the
  full store build;
- ivfpq: raw FAISS IVF-PQ (not a store kind today) for the memory/recall trade-off.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import machine  # noqa: E402

DIM = 384
DOC_CHUNKS = 40  # chunks per synthetic document
TOPICS = 2000
NOISE = 1.0  # norm of the per-chunk noise (topic + section directions have norm ~1.1)
WORDS = [
    "agency",
    "agencies",
    "shall",
    "must",
    "should",
    "artificial",
    "intelligence",
    "system",
    "systems",
    "model",
    "models",
    "risk",
    "risks",
    "safety",
    "security",
    "rights",
    "impact",
    "assessment",
    "testing",
    "evaluation",
    "procurement",
    "acquisition",
    "federal",
    "government",
    "department",
    "office",
    "memorandum",
    "order",
    "section",
    "guidance",
    "policy",
    "standards",
    "framework",
    "transparency",
    "accountability",
    "civil",
    "privacy",
    "data",
    "training",
    "deployment",
    "use",
    "uses",
    "covered",
    "high-impact",
    "waiver",
    "chief",
    "officer",
    "plan",
    "plans",
    "report",
    "reports",
    "within",
    "days",
    "after",
    "date",
    "public",
    "inventory",
    "management",
    "oversight",
    "human",
    "review",
    "monitoring",
    "incident",
    "vendor",
    "contract",
    "contracts",
    "national",
    "critical",
    "infrastructure",
    "workforce",
    "research",
    "development",
    "innovation",
    "governance",
    "board",
    "council",
]
AGENCIES = ["OMB", "NIST", "DHS", "DOE", "DOD", "OSTP", "GSA", "OPM", "DOC", "HHS", "FTC", "CISA"]


# -- synthetic data -------------------------------------------------------------------------------


def topic_matrix(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = rng.standard_normal((TOPICS, DIM)).astype(np.float32)
    return t / np.linalg.norm(t, axis=1, keepdims=True)


def vectors(start: int, n: int, topics: np.ndarray, seed: int = 1) -> np.ndarray:
    """Chunk vectors start..start+n (deterministic per chunk block): topic + section + noise, unit length."""
    out = np.empty((n, DIM), np.float32)
    for b0 in range(0, n, 50_000):
        i0 = start + b0
        m = min(50_000, n - b0)
        rng = np.random.default_rng([seed, i0])
        doc = np.arange(i0, i0 + m) // DOC_CHUNKS
        t = topics[(doc * 7919) % TOPICS]
        sec = topics[(doc * 31 + np.arange(i0, i0 + m) // 8) % TOPICS]
        v = t + 0.5 * sec + NOISE * rng.standard_normal((m, DIM)).astype(np.float32) / np.sqrt(DIM)
        out[b0 : b0 + m] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def queries(n: int, topics: np.ndarray, seed: int = 99) -> np.ndarray:
    """Questions aimed at a section of one of the first 250 documents (the rest are distractors)."""
    rng = np.random.default_rng(seed)
    i = rng.integers(0, 10_000, n)
    doc = i // DOC_CHUNKS
    t = topics[(doc * 7919) % TOPICS] + 0.5 * topics[(doc * 31 + i // 8) % TOPICS]
    v = t + NOISE * rng.standard_normal((n, DIM)).astype(np.float32) / np.sqrt(DIM)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def text(i: int) -> str:
    rng = np.random.default_rng(i)
    words = [WORDS[j] for j in rng.integers(0, len(WORDS), 140)]
    ag = AGENCIES[i % len(AGENCIES)]
    words[5] = f"{ag} M-{20 + i % 6}-{i % 40:02d}"
    words[40] = f"Sec. {1 + i % 12}.{i % 9}"
    words[80] = f"within {30 + i % 335} days"
    return " ".join(words).capitalize() + "."


def chunks_of_doc(d: int, tag: str = "") -> list:
    from rag.types import Chunk, content_hash

    out = []
    for o in range(DOC_CHUNKS):
        i = d * DOC_CHUNKS + o
        t = text(i) + tag
        out.append(
            Chunk(
                chunk_id=content_hash(f"doc{d}{tag}", str(o), length=20),
                doc_id=f"doc{d:07d}{tag}",
                source=f"synthetic/doc{d:07d}{tag}.txt",
                title=f"Synthetic policy document {d}",
                ordinal=o,
                text=t,
                char_start=o * 1000,
                char_end=o * 1000 + len(t),
                page=1 + o // 3,
                page_end=1 + o // 3,
                section=f"Sec. {1 + o // 8}",
                n_tokens=180,
                embed_text=f"Synthetic policy document {d} > Sec. {1 + o // 8}\n{t}",
            )
        )
    return out


def doc_row(d: int, tag: str = "") -> dict:
    return {
        "source": f"synthetic/doc{d:07d}{tag}.txt",
        "doc_id": f"doc{d:07d}{tag}",
        "title": f"Synthetic policy document {d}",
        "date": "2025-01-01",
        "source_url": None,
        "file_type": "txt",
        "pages": 14,
        "has_pages": 1,
        "sha256": f"{d:064x}",
        "size": 40_000,
        "mtime_ns": 0,
        "n_chunks": DOC_CHUNKS,
    }


# -- helpers --------------------------------------------------------------------------------------


def cpu_s() -> float:
    """CPU seconds (user + sys) of this process: unlike wall time, not inflated by other work on the machine."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def du_mb(p: Path) -> float:
    if p.is_file():
        return p.stat().st_size / 2**20
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) / 2**20


def settings_for(kind: str, index: Path):
    from rag.settings import Settings

    return Settings(index=index).with_overrides(**{"faiss.kind": kind})


def manifest_for(n_chunks: int, kind: str) -> dict:
    from rag.index.chunk import chunk_signature
    from rag.index.manifest import EmbeddingInfo, Manifest
    from rag.settings import DEFAULT_EMBEDDING_MODEL, Settings

    m = Manifest(
        index_id=f"scale{n_chunks}",
        built_at="2026-01-01T00:00:00",
        embedding=EmbeddingInfo(DEFAULT_EMBEDDING_MODEL, DIM, 256),
        chunking=chunk_signature(Settings().chunking),
        faiss={"type": kind, "hnsw_m": 32},
        corpus="synthetic",
        counts={"documents": n_chunks // DOC_CHUNKS, "chunks": n_chunks},
    )
    return m.to_dict()


class _Rows:
    """The two GenerationWriter methods rebuild_faiss needs, over a published generation's SQLite (read-only)."""

    def __init__(self, db_path: Path) -> None:
        import sqlite3

        self.db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)

    def count_chunks(self) -> int:
        from rag.index.writer import GenerationWriter

        return GenerationWriter.count_chunks(self)  # type: ignore[arg-type]

    def iter_vectors(self, batch: int = 8192):
        from rag.index.writer import GenerationWriter

        return GenerationWriter.iter_vectors(self, batch)  # type: ignore[arg-type]


# -- stages (each in its own process) ---------------------------------------------------------------


def stage_store(n: int, root: Path) -> dict:
    """SQLite rows + BM25 + flat FAISS through GenerationWriter.publish."""
    import faiss

    from rag.index.layout import SQLITE, new_faiss_index
    from rag.index.writer import GenerationWriter

    idx = root / f"n{n}" / "base"
    shutil.rmtree(idx, ignore_errors=True)
    idx.mkdir(parents=True)
    topics = topic_matrix()
    t0, c0 = time.perf_counter(), cpu_s()
    w = GenerationWriter(idx, None)
    index = new_faiss_index("flat", DIM)
    t_rows = t_vec = c_vec = 0.0
    for d in range(n // DOC_CHUNKS):
        if d % 2500 == 0 and d:
            print(
                f"  store n={n}: {d * DOC_CHUNKS} chunks, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True
            )
        ta, ca = time.perf_counter(), cpu_s()
        vec = vectors(d * DOC_CHUNKS, DOC_CHUNKS, topics)
        ch = chunks_of_doc(d)
        t_vec += time.perf_counter() - ta
        c_vec += cpu_s() - ca
        tb = time.perf_counter()
        w.add_document(doc_row(d))
        ids = w.add_chunks(ch, vec)
        index.add_with_ids(vec, ids)
        t_rows += time.perf_counter() - tb
    from rag.index.status import sync as policy_sync

    tpol = time.perf_counter()
    if not os.environ.get("RAG_BENCH_NO_POLICY"):  # --no-policy: a smaller full build, so a conservative ratio
        policy_sync(w.db, {})  # identity and relations of every document, as a full build does
    else:  # placeholder rows, so an incremental build extracts only its new document, as on a real index
        from rag.index.status import ensure_schema, fingerprint

        ensure_schema(w.db)
        w.db.executemany("INSERT INTO policy_docs VALUES (?, ?, ?)", [(doc_row(d)["source"], fingerprint(doc_row(d)["sha256"], None), "{}")
                                                                      for d in range(n // DOC_CHUNKS)])
    t_policy = time.perf_counter() - tpol
    tp = time.perf_counter()
    orig_bm25 = w._write_bm25
    bm = {}

    def timed_bm25() -> None:
        t = time.perf_counter()
        orig_bm25()
        bm["s"] = time.perf_counter() - t

    w._write_bm25 = timed_bm25  # type: ignore[method-assign]
    gen = w.publish(index, manifest_for(n, "flat"))
    t_pub = time.perf_counter() - tp
    total = time.perf_counter() - t0 - t_vec
    cpu_total = cpu_s() - c0 - c_vec  # the synthetic data's own making is not part of the build
    vec_bytes = (
        faiss.vector_to_array(faiss.downcast_index(index.index).codes).nbytes
        if hasattr(faiss.downcast_index(index.index), "codes")
        else n * DIM * 4
    )
    return {
        "stage": "store",
        "n": n,
        "build_s": round(total, 1),
        "build_cpu_s": round(cpu_total, 1),
        "rows_s": round(t_rows, 1),
        "bm25_s": round(bm.get("s", 0), 1),
        "policy_s": round(t_policy, 1),
        "publish_s": round(t_pub, 1),
        "sqlite_mb": round(du_mb(gen / SQLITE), 1),
        "faiss_mb": round(du_mb(gen / "faiss.index"), 1),
        "bm25_mb": round(du_mb(gen / "bm25"), 1),
        "vector_blobs_mb": round(n * DIM * 4 / 2**20, 1),
        "vector_blobs_f16_mb": round(n * DIM * 2 / 2**20, 1),
        "flat_codes_mb": round(vec_bytes / 2**20, 1),
        "peak_rss_mb": round(rss_mb()),
    }


CPU_MS: dict[str, float] = {}  # p50 CPU time of the last _latency run (load-independent, one thread)


def _latency(fn, qs) -> tuple[float, float]:
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(int(os.environ.get("RAG_BENCH_SEARCH_THREADS", "1")))
    times, cpu = [], []
    for q in qs:
        t, c = time.perf_counter(), time.thread_time()
        fn(q[None, :] if isinstance(q, np.ndarray) else q)
        times.append(time.perf_counter() - t)
        cpu.append(time.thread_time() - c)
    faiss.omp_set_num_threads(threads)
    CPU_MS["p50"] = float(np.percentile(cpu, 50) * 1000)
    return float(np.percentile(times, 50) * 1000), float(np.percentile(times, 95) * 1000)


def text_queries(n: int, seed: int = 7) -> list[str]:
    """Lexical questions: a few policy words and, every other time, an identifier (as users ask)."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        words = [WORDS[j] for j in rng.integers(0, len(WORDS), 5)]
        if k % 2:
            i = int(rng.integers(0, 10_000))
            words.append(f"{AGENCIES[i % len(AGENCIES)]} M-{20 + i % 6}-{i % 40:02d}")
        out.append(" ".join(words))
    return out


def _recall(ids: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a.tolist()) & set(b.tolist())) / len(b) for a, b in zip(ids, exact, strict=True)]))


def stage_kind(n: int, kind: str, root: Path, nq: int, incremental: bool) -> dict:
    import faiss

    from rag.index.faiss_ops import rebuild_faiss
    from rag.index.layout import FAISS_FILE, SQLITE, current_generation
    from rag.index.reader import IndexStore

    base_idx = root / f"n{n}" / "base"
    base_gen = current_generation(base_idx)
    assert base_gen is not None, "run the store stage first"
    qs = queries(nq, topic_matrix())
    # exact ground truth from the flat index of the store stage
    flat = faiss.read_index(str(base_gen / FAISS_FILE))
    _, exact = flat.search(qs, 10)
    del flat
    res: dict = {"stage": "kind", "n": n, "kind": kind}
    if kind == "ivfpq":
        return {**res, **_ivfpq(n, qs, exact, base_gen)}
    idx = root / f"n{n}" / kind  # a copy: the incremental add/remove below must not touch the base
    shutil.rmtree(idx, ignore_errors=True)
    shutil.copytree(base_idx, idx)
    if kind != "flat":
        gen = current_generation(idx)
        s = settings_for(kind, idx)
        t = time.perf_counter()
        index = rebuild_faiss(_Rows(gen / SQLITE), s, DIM)  # type: ignore[arg-type]
        res["faiss_build_s"] = round(time.perf_counter() - t, 1)
        faiss.write_index(index, str(gen / FAISS_FILE))
        m = json.loads((gen / "manifest.json").read_text())
        m["faiss"]["type"] = kind
        (gen / "manifest.json").write_text(json.dumps(m))
        del index
    gen = current_generation(idx)
    res["faiss_mb"] = round(du_mb(gen / FAISS_FILE), 1)
    t = time.perf_counter()
    store = IndexStore.open(idx)
    res["open_s"] = round(time.perf_counter() - t, 2)
    s = settings_for(kind, idx)
    store.set_search_params(s.faiss.hnsw_ef_search, s.faiss.ivf_nprobe)
    res["params"] = {"hnsw_ef_search": s.faiss.hnsw_ef_search, "ivf_nprobe": s.faiss.ivf_nprobe}
    _, ids = store.search(qs, 10)
    res["recall@10"] = round(_recall(ids, exact), 4)
    res["store_p50_ms"], res["store_p95_ms"] = (round(x, 2) for x in _latency(lambda q: store.search(q, 10), qs))
    res["store_cpu_p50_ms"] = round(CPU_MS["p50"], 2)
    res["raw_p50_ms"], res["raw_p95_ms"] = (round(x, 2) for x in _latency(lambda q: store.faiss.search(q, 10), qs))
    res["raw_cpu_p50_ms"] = round(CPU_MS["p50"], 2)
    if kind == "flat":  # BM25 (segments) on the same generation, top 50 as hybrid retrieval asks
        t = time.perf_counter()
        _ = store.bm25
        res["bm25_load_s"] = round(time.perf_counter() - t, 2)
        res["bm25_p50_ms"], res["bm25_p95_ms"] = (round(x, 2) for x in _latency(lambda q: store.bm25_search(q, 50), text_queries(nq)))
        res["bm25_cpu_p50_ms"] = round(CPU_MS["p50"], 2)
    if kind in ("hnsw", "ivf"):  # the recall/speed knob
        sweep = {}
        base = faiss.downcast_index(store.faiss.index)
        knob = ("efSearch", [32, 64, 128, 256]) if kind == "hnsw" else ("nprobe", [4, 8, 16, 32, 64])
        for v in knob[1]:
            if kind == "hnsw":
                base.hnsw.efSearch = v
            else:
                base.nprobe = v
            _, ids = store.faiss.search(qs, 10)
            p50, p95 = _latency(lambda q: store.faiss.search(q, 10), qs[: min(nq, 100)])
            sweep[f"{knob[0]}={v}"] = {
                "recall@10": round(_recall(ids, exact), 4),
                "p50_ms": round(p50, 2),
                "p95_ms": round(p95, 2),
            }
        res["sweep"] = sweep
    store.close()
    res["peak_rss_mb_search"] = round(rss_mb())
    if incremental:
        res.update(_incremental(n, kind, idx))
    res["peak_rss_mb"] = round(rss_mb())
    return res


def _ivfpq(n: int, qs: np.ndarray, exact: np.ndarray, gen: Path) -> dict:
    import faiss

    from rag.index.layout import SQLITE

    rows = _Rows(gen / SQLITE)
    ids, vecs = [], []
    for i, v in rows.iter_vectors():
        ids.append(i)
        vecs.append(v)
    x = np.concatenate(vecs)
    xid = np.concatenate(ids)
    del vecs
    nlist = max(1, min(65536, int(4 * np.sqrt(n)), n // 39))
    t = time.perf_counter()
    q = faiss.IndexFlatIP(DIM)
    pq = faiss.IndexIVFPQ(q, DIM, nlist, 48, 8, faiss.METRIC_INNER_PRODUCT)
    sample = x if n <= 50_000 else x[np.random.default_rng(0).choice(n, 50_000, replace=False)]
    pq.train(sample)
    refine = faiss.IndexRefineFlat(pq)  # PQ shortlist re-scored with the full vectors
    refine.add(x)  # positions; mapped back to FAISS ids with xid
    out: dict = {
        "faiss_build_s": round(time.perf_counter() - t, 1),
        "nlist": nlist,
        "pq": "48x8 bits (48 bytes/vector)",
    }
    path = gen.parent.parent / "ivfpq.index"
    faiss.write_index(pq, str(path))
    out["faiss_mb"] = round(du_mb(path), 1)
    path.unlink()
    sweep = {}
    for name, index, nprobe in (("pq", pq, 16), ("pq", pq, 64), ("pq+refine4", refine, 16), ("pq+refine4", refine, 64)):
        pq.nprobe = nprobe
        if index is refine:
            refine.k_factor = 4
        _, pos = index.search(qs, 10)
        got = np.where(pos >= 0, xid[np.clip(pos, 0, len(xid) - 1)], -1)
        p50, p95 = _latency(lambda v, index=index: index.search(v, 10), qs[:100])
        sweep[f"{name} nprobe={nprobe}"] = {
            "recall@10": round(_recall(got, exact), 4),
            "p50_ms": round(p50, 2),
            "p95_ms": round(p95, 2),
        }
    out["sweep"] = sweep
    out["peak_rss_mb"] = round(rss_mb())
    return out


def _incremental(n: int, kind: str, idx: Path) -> dict:
    """Add one document (40 chunks) and then remove one, step by step as an incremental `rag index build`."""
    import faiss

    from rag.index.faiss_ops import rebuild_faiss, remove_ids
    from rag.index.layout import FAISS_FILE, current_generation, faiss_ids
    from rag.index.status import sync as policy_sync
    from rag.index.writer import GenerationWriter

    topics = topic_matrix()
    out: dict = {}
    for op in ("add", "remove"):
        base = current_generation(idx)
        assert base is not None
        t0, c0 = time.perf_counter(), cpu_s()
        w = GenerationWriter(idx, base)
        t_copy = time.perf_counter() - t0
        s = settings_for(kind, idx)
        tf = time.perf_counter()
        rebuild = kind == "hnsw" and op == "remove"  # HNSW cannot remove (build.py's rule); ivf/flat in place
        index = None if rebuild else faiss.read_index(str(base / FAISS_FILE))
        if op == "add":
            d = n // DOC_CHUNKS + 1
            ch = chunks_of_doc(d, tag="new")
            vec = vectors(d * DOC_CHUNKS, DOC_CHUNKS, topics)
            w.add_document(doc_row(d, tag="new"))
            ids = w.add_chunks(ch, vec)
            if index is not None:
                index.add_with_ids(vec, ids)
        else:
            old = w.delete_documents(["synthetic/doc0000003.txt"])
            if index is not None:
                remove_ids(index, old)
        if rebuild:
            index = rebuild_faiss(w, s, DIM, kind)
        t_faiss = time.perf_counter() - tf
        tc = time.perf_counter()  # build.finish_faiss's check and the manifest's document rows
        assert set(faiss_ids(index).tolist()) == {c for (c,) in w.db.execute("SELECT faiss_id FROM chunks")}
        policy_sync(w.db, {})
        w.documents_rows()
        t_check = time.perf_counter() - tc
        tp = time.perf_counter()
        bm: dict = {}
        orig = w._write_bm25

        def timed_bm25(orig=orig, bm=bm) -> None:
            t = time.perf_counter()
            orig()
            bm["s"] = time.perf_counter() - t

        w._write_bm25 = timed_bm25  # type: ignore[method-assign]
        w.publish(index, manifest_for(n, kind))
        t_pub = time.perf_counter() - tp
        out[f"{op}_s"] = round(time.perf_counter() - t0, 2)
        out[f"{op}_cpu_s"] = round(cpu_s() - c0, 2)
        out[f"{op}_parts"] = {
            "sqlite_copy_s": round(t_copy, 2),
            "faiss_s": round(t_faiss, 2),
            "faiss_rebuilt": rebuild,
            "check_policy_docs_s": round(t_check, 2),
            "bm25_s": round(bm.get("s", 0), 2),
            "publish_incl_bm25_s": round(t_pub, 2),
        }
    return out


def stage_faiss_only(n: int, kind: str, nq: int) -> dict:
    """FAISS alone at sizes where the SQLite + BM25 store is too slow for this machine: vectors generated in
    memory, the index made by the store's own `new_faiss_index` and the build's IVF training rule (sample of
    at most 100k), searched with the reader's default parameters. Exact truth from a flat index."""
    import faiss

    from rag.index.layout import new_faiss_index
    from rag.settings import Settings

    topics = topic_matrix()
    t = time.perf_counter()
    x = vectors(0, n, topics)
    gen_s = time.perf_counter() - t
    ids = np.arange(1, n + 1, dtype=np.int64)
    qs = queries(nq, topics)
    res: dict = {"stage": "faiss-only", "n": n, "kind": kind, "vector_gen_s": round(gen_s, 1)}
    f = Settings().faiss
    t = time.perf_counter()
    index = new_faiss_index(kind, DIM, hnsw_m=f.hnsw_m, nlist=f.ivf_nlist, n_hint=n)
    if kind == "ivf":
        sample = x if n <= 100_000 else x[np.random.default_rng(0).choice(n, 100_000, replace=False)]
        faiss.downcast_index(index.index).train(sample)
        res["train_s"] = round(time.perf_counter() - t, 1)
    for i in range(0, n, 100_000):
        index.add_with_ids(x[i : i + 100_000], ids[i : i + 100_000])
    res["faiss_build_s"] = round(time.perf_counter() - t, 1)
    res["peak_rss_mb_after_build"] = round(rss_mb())
    exact_index = faiss.IndexFlatIP(DIM)
    exact_index.add(x)
    _, exact = exact_index.search(qs, 10)
    exact = exact + 1  # positions -> ids
    del exact_index
    base = faiss.downcast_index(index.index)
    if kind == "hnsw":
        base.hnsw.efSearch = f.hnsw_ef_search
    elif kind == "ivf":
        base.nprobe = f.ivf_nprobe
    _, got = index.search(qs, 10)
    res["recall@10"] = round(_recall(got, exact), 4)
    res["raw_p50_ms"], res["raw_p95_ms"] = (round(v, 2) for v in _latency(lambda q: index.search(q, 10), qs))
    if kind in ("hnsw", "ivf"):
        sweep = {}
        knob = ("efSearch", [64, 128, 256]) if kind == "hnsw" else ("nprobe", [8, 16, 32, 64, 128])
        for v in knob[1]:
            if kind == "hnsw":
                base.hnsw.efSearch = v
            else:
                base.nprobe = v
            _, got = index.search(qs, 10)
            p50, p95 = _latency(lambda q: index.search(q, 10), qs[:100])
            sweep[f"{knob[0]}={v}"] = {
                "recall@10": round(_recall(got, exact), 4),
                "p50_ms": round(p50, 2),
                "p95_ms": round(p95, 2),
            }
        res["sweep"] = sweep
    res["faiss_mb_in_memory"] = round(faiss.serialize_index(index).nbytes / 2**20, 1)
    res["peak_rss_mb"] = round(rss_mb())
    return res


# -- driver -----------------------------------------------------------------------------------------


def child(args: list[str], log: Path) -> dict:
    """Run one stage in a fresh process; its own peak RSS is in the result."""
    cmd = [sys.executable, __file__, "--stage", *args]
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    with log.open("a") as f:
        f.write(p.stderr)
    if p.returncode != 0:
        return {
            "stage": args[0],
            "args": args,
            "error": p.stderr.strip().splitlines()[-1:] or ["?"],
            "wall_s": round(time.perf_counter() - t, 1),
        }
    r = json.loads(p.stdout.strip().splitlines()[-1])
    r["wall_s"] = round(time.perf_counter() - t, 1)
    return r


FLAT_BUDGET_MS = 10.0  # half the 20 ms search goal: the rest is BM25, fusion and the row look-ups


def summary(rows: list[dict]) -> dict:
    """Incremental cost as a share of the full store build, and the measured flat -> IVF crossover:
    flat's CPU time per query grows linearly with n (it reads every vector), IVF's does not; `auto` should
    switch where flat would pass FLAT_BUDGET_MS while IVF keeps recall@10 >= 0.95."""
    out: dict = {"stage": "summary", "ratios": {}}
    builds = {r["n"]: r for r in rows if r.get("stage") == "store" and "build_s" in r}
    for r in rows:
        if r.get("stage") == "kind" and "add_s" in r and r["n"] in builds:
            b = builds[r["n"]]
            x = {"add_pct": round(100 * r["add_s"] / b["build_s"], 1), "remove_pct": round(100 * r["remove_s"] / b["build_s"], 1),
                 "add_pct_vs_build_without_policy": round(100 * r["add_s"] / (b["build_s"] - b.get("policy_s", 0)), 1)}
            if "add_cpu_s" in r and "build_cpu_s" in b:
                x["add_cpu_pct"] = round(100 * r["add_cpu_s"] / b["build_cpu_s"], 1)
                x["remove_cpu_pct"] = round(100 * r["remove_cpu_s"] / b["build_cpu_s"], 1)
            out["ratios"][f"{r['n']}:{r['kind']}"] = x
    flat = [(r["n"], r["raw_cpu_p50_ms"]) for r in rows if r.get("kind") == "flat" and "raw_cpu_p50_ms" in r]
    ivf_ok = [r["n"] for r in rows if r.get("kind") == "ivf" and r.get("recall@10", 0) >= 0.95]
    if flat:
        per_chunk = max(ms / n for n, ms in flat)  # the largest measured size dominates: memory-bound, linear
        out["flat_ms_per_100k"] = round(per_chunk * 100_000, 2)
        out["crossover_chunks"] = int(round(FLAT_BUDGET_MS / per_chunk, -4))
        out["ivf_recall_ok_at"] = sorted(ivf_ok)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--kinds", nargs="+", default=["flat", "hnsw", "ivf", "ivfpq"])
    ap.add_argument("--skip", nargs="*", default=[], help="size:kind pairs not to run (e.g. 1000000:hnsw)")
    ap.add_argument(
        "--incremental",
        nargs="*",
        default=["flat", "hnsw", "ivf"],
        help="kinds whose add/remove of one document is timed",
    )
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--root", type=Path, default=Path("/tmp/rag-scale"))
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out" / "scale.jsonl")
    ap.add_argument("--keep", action="store_true", help="keep the built indexes")
    ap.add_argument("--search-threads", type=int, default=1, help="FAISS threads while timing single queries")
    ap.add_argument(
        "--faiss-only",
        action="store_true",
        help="FAISS alone (no SQLite/BM25 store, no incremental): for 1M on 2 cores",
    )
    ap.add_argument("--no-policy", action="store_true", help="store stage: skip the identity/relations extraction "
                    "(~35 ms a document; leaves it out of the full build the incremental ratios are taken against)")
    ap.add_argument("--stage", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.stage:
        if a.stage[0] == "store":
            r = stage_store(int(a.stage[1]), Path(a.stage[2]))
        elif a.stage[0] == "faiss-only":
            r = stage_faiss_only(int(a.stage[1]), a.stage[2], int(a.stage[3]))
        else:
            r = stage_kind(int(a.stage[1]), a.stage[2], Path(a.stage[3]), int(a.stage[4]), a.stage[5] == "1")
        print(json.dumps(r))
        return
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 2))
    # on a shared machine spinning OpenMP threads turned 1 ms searches into 100-300 ms ones; passive waiting
    # costs little on idle cores. Single queries are timed on one thread (--search-threads), as a server
    # answering several users at once would run them.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ["RAG_BENCH_SEARCH_THREADS"] = str(a.search_threads)
    if a.no_policy:
        os.environ["RAG_BENCH_NO_POLICY"] = "1"
    a.out.parent.mkdir(parents=True, exist_ok=True)
    log = a.out.with_suffix(".log")
    print(f"# bench_scale on {machine()}; faiss threads {os.environ['OMP_NUM_THREADS']}")
    everything: list[dict] = []
    for n in a.sizes:
        if a.faiss_only:
            for kind in a.kinds:
                r = child(["faiss-only", str(n), kind, str(a.queries)], log)
                print(json.dumps(r), flush=True)
                with a.out.open("a") as f:
                    f.write(json.dumps({**r, "machine": machine()}) + "\n")
            continue
        rows = [child(["store", str(n), str(a.root)], log)]
        for kind in a.kinds:
            if f"{n}:{kind}" in a.skip:
                continue
            rows.append(
                child(["kind", str(n), kind, str(a.root), str(a.queries), "1" if kind in a.incremental else "0"], log)
            )
        for r in rows:
            print(json.dumps(r), flush=True)
            with a.out.open("a") as f:
                f.write(json.dumps({**r, "machine": machine()}) + "\n")
        everything += rows
        if not a.keep:
            shutil.rmtree(a.root / f"n{n}", ignore_errors=True)
    if everything:
        r = summary(everything)
        print(json.dumps(r), flush=True)
        with a.out.open("a") as f:
            f.write(json.dumps({**r, "load": os.getloadavg(), "machine": machine()}) + "\n")


if __name__ == "__main__":
    main()
