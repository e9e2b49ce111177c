from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import make_pdf

from rag.errors import IndexMismatchError
from rag.index.build import build_index
from rag.index.chunk import chunk_signature
from rag.index.manifest import Manifest, read_manifest
from rag.index.reader import IndexStore
from rag.retrieve.retriever import Retriever
from rag.settings import Settings

ROOT = Path(__file__).resolve().parent.parent



def _search(index: Path, embedder, q: str, k: int = 3):
    s = Settings(index=index)
    return Retriever.open(s, embedder).dense([q], k)[0]


def test_incremental_add_change_delete(counting_embedder, index_copy, embedder):
    corpus, index = index_copy
    s = Settings(corpus=corpus, index=index)
    before = read_manifest(index)
    gen_before = (index / "CURRENT").read_text()

    # no change: no embedding, no new generation, fast
    ce = counting_embedder(embedder)
    t0 = time.perf_counter()
    r = build_index(s, embedder=ce)
    assert not r.changed and ce.texts == [] and r.unchanged == 5
    assert time.perf_counter() - t0 < 2.0
    assert (index / "CURRENT").read_text() == gen_before

    # add one file, change one, delete one
    (corpus / "new-lighthouse.md").write_text("# Lighthouses\n\nThe lighthouse keeper program restores coastal beacons in Maine.\n")
    md = corpus / "plans/quantum-plan.md"
    md.write_text(md.read_text().replace("Congress appropriated funds for quantum-safe upgrades in fiscal year 2025.",
                                         "Congress rescinded the quantum upgrade money and moved it to zeppelin research."))
    (corpus / "web/bridges.html").unlink()
    ce = counting_embedder(embedder)
    r = build_index(s, embedder=ce)
    assert r.added == ["new-lighthouse.md"] and r.updated == ["plans/quantum-plan.md"] and r.removed == ["web/bridges.html"]
    # only the new file's chunks and the changed chunk of the changed file were embedded
    assert ce.texts and all(("lighthouse" in t.lower()) or ("zeppelin" in t) for t in ce.texts)
    assert r.chunks_reused >= 1  # unchanged chunks of the changed file kept their vectors
    after = read_manifest(index)
    assert set(after.documents) == set(before.documents) - {"web/bridges.html"} | {"new-lighthouse.md"}
    assert after.documents["plans/quantum-plan.md"].doc_id != before.documents["plans/quantum-plan.md"].doc_id

    hits = _search(index, embedder, "zeppelin research funding")
    assert hits[0].chunk.source == "plans/quantum-plan.md" and "zeppelin" in hits[0].chunk.text
    all_text = " ".join(c.text for c in IndexStore(index).iter_chunks())
    assert "quantum-safe upgrades" not in all_text  # old text gone
    assert "structurally deficient bridges" not in all_text  # deleted doc gone
    assert _search(index, embedder, "lighthouse keeper beacons")[0].chunk.source == "new-lighthouse.md"
    assert IndexStore(index).check() == []


def test_full_rebuild_and_faiss_kinds(index_copy, embedder):
    corpus, index = index_copy
    for kind in ("hnsw", "ivf", "flat"):
        s = Settings(corpus=corpus, index=index, faiss={"kind": kind})
        r = build_index(s, embedder=embedder)  # a kind change rebuilds FAISS from stored vectors
        assert r.chunks_embedded == 0
        store = IndexStore(index)
        assert store.manifest.faiss_kind == kind and store.check() == []
        hits = _search(index, embedder, "remote pilot certificate spray logs")
        assert hits[0].chunk.source == "reports/farm-guidance.docx"
    r = build_index(Settings(corpus=corpus, index=index), full=True, embedder=embedder)
    assert r.chunks_embedded == r.chunks_total and len(r.added) == 5


def test_refuses_model_or_chunk_mismatch(index_copy, embedder):
    corpus, index = index_copy
    with pytest.raises(IndexMismatchError, match=r"rag index build --full"):
        Retriever.open(Settings(index=index, chunking={"tokens": 120}), embedder)
    with pytest.raises(IndexMismatchError, match="embedding model"):
        IndexStore.open(index, "BAAI/bge-small-en-v1.5", chunk_signature(Settings().chunking))
    with pytest.raises(IndexMismatchError, match="--full"):
        build_index(Settings(corpus=corpus, index=index, chunking={"tokens": 120}), embedder=embedder)
    # --full with the new settings works and the index then opens with them
    build_index(Settings(corpus=corpus, index=index, chunking={"tokens": 120}), full=True, embedder=embedder)
    Retriever.open(Settings(index=index, chunking={"tokens": 120}), embedder)


class _Int8Labelled:
    """The shared embedder, reporting the vectors of an int8 ONNX embedder (what the manifest check reads)."""

    vectors = "int8-channel"

    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name):
        return getattr(self._inner, name)


def test_refuses_to_mix_int8_and_fp32_vectors(index_copy, embedder):
    corpus, index = index_copy
    int8 = _Int8Labelled(embedder)
    with pytest.raises(IndexMismatchError, match=r"holds fp32 embeddings, but the settings give int8-channel.*--full"):
        Retriever.open(Settings(index=index), int8)
    (corpus / "new-note.md").write_text("# Note\n\nCanal locks are inspected every spring by the harbour board.\n")
    with pytest.raises(IndexMismatchError, match="embedding.quantize"):
        build_index(Settings(corpus=corpus, index=index), embedder=int8)  # would add int8 rows to fp32 ones
    assert "new-note.md" not in IndexStore(index).manifest.documents  # nothing changed
    build_index(Settings(corpus=corpus, index=index), full=True, embedder=int8)
    assert IndexStore(index).manifest.embedding.vectors == "int8-channel"
    Retriever.open(Settings(index=index), int8)
    with pytest.raises(IndexMismatchError, match="holds int8-channel embeddings"):
        Retriever.open(Settings(index=index), embedder)
    from rag.index.embed import vectors_for
    from rag.service import RagService

    fp32 = Settings(index=index, corpus=corpus, embedding={"backend": "onnx"})
    assert vectors_for(fp32) == "fp32"
    assert vectors_for(Settings(embedding={"backend": "onnx", "quantize": True})) == "int8-channel"
    assert vectors_for(Settings(embedding={"backend": "torch", "quantize": True})) == "fp32"  # torch ignores quantize
    st = RagService(fp32).status()  # `rag index status` says so without loading a model
    assert not st["compatible_with_settings"] and "holds int8-channel embeddings" in st["problem"]
    old = IndexStore(index).manifest.to_dict()
    del old["embedding"]["vectors"]  # an index from before the field: not known, so not refused
    Manifest.from_dict(old).check_vectors("fp32", index)


def test_bad_file_skipped_and_nothing_lost(index_copy, embedder):
    corpus, index = index_copy
    n_before = len(IndexStore(index))
    (corpus / "broken.pdf").write_bytes(b"%PDF-1.4 garbage garbage")
    (corpus / "latin.txt").write_bytes("r\xe9sum\xe9".encode("latin-1"))
    (corpus / "scan.pdf").write_bytes(make_pdf([[]]))
    r = build_index(Settings(corpus=corpus, index=index), embedder=embedder)
    assert {e.path for e in r.skipped} == {"broken.pdf", "latin.txt", "scan.pdf"}
    assert "skipped" in r.summary() and len(IndexStore(index)) == n_before


def test_filters_and_batch_search(built_fixture_index, embedder):
    _, index = built_fixture_index
    r = Retriever.open(Settings(index=index), embedder)
    out = r.dense(["inspection reports", "inspection reports"], 5, [None, {"source": ["farm-guidance.docx"]}])
    assert out[0][0].chunk.source == "web/bridges.html"
    assert out[1] and all(p.chunk.source == "reports/farm-guidance.docx" for p in out[1])
    assert r.dense(["x"], 5, {"title": ["no such title"]}) == [[]]
    # scores are cosine similarities, sorted
    scores = [p.score for p in out[0]]
    assert scores == sorted(scores, reverse=True) and -1.0 <= scores[-1] <= 1.0


KILL_SCRIPT = r"""
import sys, time
from pathlib import Path
from rag.index.build import build_index
from rag.index.chunk import chunk_signature
from rag.settings import Settings
import rag.index.build as ix

orig = ix.chunk_document
def slow(*a, **k):
    print("CHUNKING", flush=True)
    time.sleep(0.5)
    return orig(*a, **k)
ix.chunk_document = slow
build_index(Settings(corpus=Path(sys.argv[1]), index=Path(sys.argv[2])), flush_chunks=1)
"""


def test_killed_build_leaves_previous_index_usable(index_copy, embedder, tmp_path):
    corpus, index = index_copy
    before = sorted(c.chunk_id for c in IndexStore(index).iter_chunks())
    for i in range(4):
        (corpus / f"extra-{i}.md").write_text(f"# Extra {i}\n\nAdditional memo number {i} about harbour dredging permits.\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(corpus), str(index)], stdout=subprocess.PIPE, env=env, text=True)
    seen = 0
    for line in proc.stdout:  # kill while it is in the middle of processing files
        seen += "CHUNKING" in line
        if seen == 3:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert list(index.glob("tmp-*"))  # the half-built generation was left behind...
    store = IndexStore(index)  # ...and the previous one still opens, checks and answers
    assert store.check() == []
    assert sorted(c.chunk_id for c in store.iter_chunks()) == before
    assert _search(index, embedder, "remote pilot certificate")[0].chunk.source == "reports/farm-guidance.docx"
    # the next build cleans up and completes the work
    r = build_index(Settings(corpus=corpus, index=index), embedder=embedder)
    assert len(r.added) == 4 and not list(index.glob("tmp-*"))
    assert _search(index, embedder, "harbour dredging permits")[0].chunk.source.startswith("extra-")


def test_crash_just_before_publish(index_copy, embedder):
    corpus, index = index_copy
    gen = (index / "CURRENT").read_text()
    (corpus / "late.md").write_text("# Late\n\nA late memo about snow removal budgets.\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAG_TEST_KILL_AT": "build.before_publish"}
    code = "from pathlib import Path; import sys; from rag.index.build import build_index; from rag.settings import Settings; build_index(Settings(corpus=Path(sys.argv[1]), index=Path(sys.argv[2])))"
    p = subprocess.run([sys.executable, "-c", code, str(corpus), str(index)], env=env, capture_output=True, timeout=300)
    assert p.returncode == -9  # SIGKILL at the checkpoint
    assert (index / "CURRENT").read_text() == gen and IndexStore(index).check() == []


def test_reader_survives_publish(index_copy, embedder):
    corpus, index = index_copy
    r = Retriever.open(Settings(index=index), embedder)
    old_gen = r.store.generation
    (corpus / "new.md").write_text("# Ferries\n\nFerry terminals get new electric charging berths.\n")
    build_index(Settings(corpus=corpus, index=index), embedder=embedder)
    assert r.dense(["remote pilot certificate"], 2)[0]  # the open reader still answers from its generation
    assert r.store.generation == old_gen and r.refresh()
    assert r.dense(["electric ferry charging berths"], 1)[0][0].chunk.source == "new.md"


def test_vectors_are_normalised_and_stored(built_fixture_index):
    _, index = built_fixture_index
    store = IndexStore(index)
    ids = np.array(sorted(store.chunks([int(i) for i in __import__("rag.index.layout", fromlist=["faiss_ids"]).faiss_ids(store.faiss)]).keys()))
    v = store.vectors(ids)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    m = json.loads((store.generation / "manifest.json").read_text())
    assert m["embedding"] == {"model": "sentence-transformers/all-MiniLM-L6-v2", "dimension": 384, "max_seq_length": 256,
                              "normalized": True, "metric": "inner_product", "vectors": "fp32"}
    assert m["chunking"]["chunk_tokens"] == 200 and set(m["documents"]) and m["counts"]["chunks"] == len(store)
