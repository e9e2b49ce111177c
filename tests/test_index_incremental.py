"""Incremental index updates (issue 16): BM25 in segments scores exactly as a full rebuild, base segments are
shared by hard links, small segments merge, older bm25s generations still read; IVF removals in place;
`faiss.kind = auto` switches from flat to IVF at its threshold."""

from __future__ import annotations

import shutil
import sqlite3

import numpy as np
import pytest

from rag.index import bm25 as seg
from rag.index.build import build_index
from rag.index.faiss_ops import needs_retrain, remove_ids, resolve_kind
from rag.index.layout import BM25_DIR, current_generation, faiss_ids
from rag.index.manifest import read_manifest
from rag.index.reader import IndexStore
from rag.settings import Settings

QUERIES = [
    "remote pilot certificate spray logs",
    "grid interconnection queue",
    "lighthouse keeper beacons",
    "quantum upgrades congress",
    "bridges inspection",
]


def _docs(n: int, seed: int = 0) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(200)]
    return [[words[j % 200] for j in rng.zipf(1.3, rng.integers(0, 30))] for _ in range(n)]


def test_segments_score_as_bm25s_and_as_a_rebuild():
    import bm25s

    docs, ids = _docs(1500), np.arange(1500, dtype=np.int64) * 7 + 3
    ref = bm25s.BM25()
    ref.index([d or ["∅"] for d in docs], show_progress=False)
    whole = seg.SegmentedBM25([seg.build_segment(ids, docs)], [np.zeros(1500, bool)])
    q = ["w1", "w4", "w4", "w60", "absent"]
    assert np.allclose(whole.get_scores(q), ref.get_scores([t for t in q if t in ref.vocab_dict]), atol=1e-6)
    # two segments with dead rows == one segment built over the live rows only
    a, b = seg.build_segment(ids[:900], docs[:900]), seg.build_segment(ids[900:], docs[900:])
    dead = np.zeros(900, bool)
    dead[[0, 17, 899]] = True
    split = seg.SegmentedBM25([a, b], [dead, np.zeros(600, bool)])
    live = [i for i in range(1500) if i >= 900 or not dead[i]]
    rebuilt = seg.SegmentedBM25([seg.build_segment(ids[live], [docs[i] for i in live])], [np.zeros(len(live), bool)])
    assert np.array_equal(split.ids(), ids[live])
    assert np.allclose(split.get_scores(q), rebuilt.get_scores(q), atol=1e-6)
    merged = seg.merge_segments([a, b], [dead, np.zeros(600, bool)])
    assert np.array_equal(merged.ids, ids[live])
    assert np.allclose(
        seg.SegmentedBM25([merged], [np.zeros(len(live), bool)]).get_scores(q), rebuilt.get_scores(q), atol=1e-6
    )
    assert "w1" in split.vocab_dict and "absent" not in split.vocab_dict


def test_many_small_additions_merge_into_few_segments(tmp_path):
    """Forty one-document builds: tiered merging keeps the segment count logarithmic, scores stay exact."""
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE chunks (faiss_id INTEGER PRIMARY KEY, embed_text TEXT)")
    docs = [" ".join(d) for d in _docs(4000, seed=1)]
    db.executemany("INSERT INTO chunks VALUES (?, ?)", [(i, docs[i]) for i in range(3000)])
    prev = tmp_path / "g0"
    seg.write_lexical(prev, db, None, set(), set())
    for g in range(1, 41):
        new = set(range(3000 + (g - 1) * 25, 3000 + g * 25))
        db.executemany("INSERT INTO chunks VALUES (?, ?)", [(i, docs[i]) for i in sorted(new)])
        gone = {g * 11} if g % 3 == 0 else set()
        db.executemany("DELETE FROM chunks WHERE faiss_id = ?", [(i,) for i in gone])
        out = tmp_path / f"g{g}"
        ids = seg.write_lexical(out, db, prev, gone, new)
        shutil.rmtree(prev)  # the old generation pruned: the new one keeps its own links
        prev = out
    segs, dead = seg.load_segments(prev)
    assert len(segs) <= 6
    rows = db.execute("SELECT faiss_id, embed_text FROM chunks ORDER BY faiss_id").fetchall()
    assert sorted(ids.tolist()) == [r[0] for r in rows]
    from rag.text.lexical import lexical_tokens

    full = seg.SegmentedBM25(
        [seg.build_segment([r[0] for r in rows], [lexical_tokens(r[1]) for r in rows])], [np.zeros(len(rows), bool)]
    )
    inc = seg.SegmentedBM25(segs, dead)
    order = np.argsort(inc.ids())
    for q in (["w2"], ["w3", "w9", "w150"], ["w199", "w0"]):
        assert np.allclose(inc.get_scores(q)[order], full.get_scores(q), atol=1e-5)


def test_incremental_build_equals_full_build(index_copy, embedder, tmp_path):
    corpus, index = index_copy
    s = Settings(corpus=corpus, index=index)
    g1 = current_generation(index)
    (corpus / "new-lighthouse.md").write_text(
        "# Lighthouses\n\nThe lighthouse keeper program restores coastal beacons.\n"
    )
    (corpus / "web/bridges.html").unlink()
    r = build_index(s, embedder=embedder)
    assert r.added == ["new-lighthouse.md"] and r.removed == ["web/bridges.html"]
    g2 = current_generation(index)
    shared = [f.name for f in (g1 / BM25_DIR).glob("seg-*.npz") if (g2 / BM25_DIR / f.name).exists()]
    assert shared and all((g2 / BM25_DIR / n).stat().st_ino == (g1 / BM25_DIR / n).stat().st_ino for n in shared)
    assert len(list((g2 / BM25_DIR).glob("seg-*.npz"))) >= 1 and (g2 / BM25_DIR / seg.DEAD).is_file()
    full_index = tmp_path / "full"
    build_index(Settings(corpus=corpus, index=full_index), embedder=embedder, full=True)
    inc, full = IndexStore(index), IndexStore(full_index)
    assert inc.check() == [] and full.check() == []
    for q in QUERIES:
        si, ii = inc.bm25_search(q, 10)
        sf, if_ = full.bm25_search(q, 10)
        assert ii.tolist() == if_.tolist() and np.allclose(si, sf, atol=1e-6), q


def test_legacy_bm25s_generation_is_read_and_converted(index_copy, embedder):
    import bm25s

    from rag.text.lexical import lexical_tokens

    corpus, index = index_copy
    gen = current_generation(index)
    store = IndexStore(index)
    want = [store.bm25_search(q, 5)[1].tolist() for q in QUERIES]
    ids = store.bm25[1]
    rows = dict(store.db.execute("SELECT faiss_id, embed_text FROM chunks").fetchall())
    store.close()
    shutil.rmtree(gen / BM25_DIR)  # what a build before segments wrote
    bm = bm25s.BM25()
    bm.index([lexical_tokens(rows[int(i)]) or ["∅"] for i in ids], show_progress=False)
    bm.save(str(gen / BM25_DIR), show_progress=False)
    m = read_manifest(index)
    import json

    d = json.loads((gen / "manifest.json").read_text())
    d["files"] = {k: v for k, v in d["files"].items() if not k.startswith(BM25_DIR + "/")}
    (gen / "manifest.json").write_text(json.dumps(d))
    legacy = IndexStore(index)
    assert [legacy.bm25_search(q, 5)[1].tolist() for q in QUERIES] == want and legacy.check() == []
    (corpus / "new-lighthouse.md").write_text(
        "# Lighthouses\n\nThe lighthouse keeper program restores coastal beacons.\n"
    )
    build_index(Settings(corpus=corpus, index=index), embedder=embedder)
    assert seg.has_segments(current_generation(index) / BM25_DIR) and IndexStore(index).check() == []
    assert m.n_chunks < read_manifest(index).n_chunks


def test_ivf_removal_in_place_matches_exact():
    import faiss

    rng = np.random.default_rng(0)
    x = rng.standard_normal((3000, 16)).astype("float32")
    ids = np.arange(3000, dtype=np.int64) * 5 + 2
    ivf = faiss.IndexIDMap2(faiss.IndexIVFFlat(faiss.IndexFlatIP(16), 16, 24, faiss.METRIC_INNER_PRODUCT))
    faiss.downcast_index(ivf.index).train(x)
    ivf.add_with_ids(x, ids)
    faiss.downcast_index(ivf.index).nprobe = 24  # every list: exact, so it must equal flat
    faiss.downcast_index(ivf.index).make_direct_map()  # as the reader does
    remove_ids(ivf, ids[::4])
    ivf.add_with_ids(x[:7] * 2, np.arange(10**9, 10**9 + 7, dtype=np.int64))
    remove_ids(ivf, ids[500:700])
    keep = np.ones(3000, bool)
    keep[::4] = False
    keep[500:700] = False
    flat = faiss.IndexIDMap2(faiss.IndexFlatIP(16))
    flat.add_with_ids(x[keep], ids[keep])
    flat.add_with_ids(x[:7] * 2, np.arange(10**9, 10**9 + 7, dtype=np.int64))
    q = rng.standard_normal((40, 16)).astype("float32")
    assert np.array_equal(ivf.search(q, 8)[1], flat.search(q, 8)[1])
    assert set(faiss_ids(ivf).tolist()) == set(faiss_ids(flat).tolist())
    assert np.allclose(ivf.reconstruct_batch(ids[keep][:5]), x[keep][:5])


def test_auto_kind_rule():
    s = Settings(faiss={"kind": "auto", "auto_ivf_chunks": 1000})
    assert resolve_kind(s, 999) == "flat" and resolve_kind(s, 1000) == "ivf"
    assert resolve_kind(s, 900, current="ivf") == "ivf" and resolve_kind(s, 700, current="ivf") == "flat"
    assert resolve_kind(Settings(faiss={"kind": "hnsw"}), 10**7) == "hnsw"
    assert Settings().faiss.kind == "auto" and resolve_kind(Settings(), 99_999) == "flat"
    assert needs_retrain("ivf", 2100, 1000) and not needs_retrain("ivf", 1900, 1000) and not needs_retrain("flat", 5, 1)


@pytest.mark.parametrize("threshold,kind", [(10**6, "flat"), (3, "ivf")])
def test_auto_builds_the_measured_kind_and_updates_ivf_in_place(index_copy, embedder, threshold, kind):
    corpus, index = index_copy
    s = Settings(corpus=corpus, index=index, faiss={"kind": "auto", "auto_ivf_chunks": threshold})
    build_index(s, embedder=embedder)  # the fixture index is flat: ivf here is a kind change
    m = read_manifest(index)
    assert m.faiss_kind == kind and IndexStore(index).check() == []
    (corpus / "new-lighthouse.md").write_text(
        "# Lighthouses\n\nThe lighthouse keeper program restores coastal beacons.\n"
    )
    (corpus / "web/bridges.html").unlink()
    build_index(s, embedder=embedder)
    m2 = read_manifest(index)
    assert m2.faiss_kind == kind and IndexStore(index).check() == []
    if kind == "ivf":  # updated in place: the clusters trained for the first build's count are kept
        assert m2.faiss["ivf_trained_n"] == m.faiss["ivf_trained_n"] == m.n_chunks
    from rag.retrieve.retriever import Retriever

    hits = Retriever.open(s, embedder).dense(["lighthouse keeper beacons"], 3)[0]
    assert hits[0].chunk.source == "new-lighthouse.md"


def test_ivf_from_an_older_version_is_retrained_once(index_copy, embedder):
    """An IVF index whose manifest does not say what it was trained for is rebuilt, then updated in place."""
    import json

    corpus, index = index_copy
    s = Settings(corpus=corpus, index=index, faiss={"kind": "ivf"})
    build_index(s, embedder=embedder)
    gen = current_generation(index)
    d = json.loads((gen / "manifest.json").read_text())
    del d["faiss"]["ivf_trained_n"]
    (gen / "manifest.json").write_text(json.dumps(d))
    (corpus / "new-lighthouse.md").write_text(
        "# Lighthouses\n\nThe lighthouse keeper program restores coastal beacons.\n"
    )
    build_index(s, embedder=embedder)
    m = read_manifest(index)
    assert m.faiss["ivf_trained_n"] == m.n_chunks and IndexStore(index).check() == []
