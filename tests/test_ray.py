"""The Ray engine on a local Ray instance gives the same index and the same answers as the local engine."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("ray")

from rag.index.build import build_index  # noqa: E402
from rag.index.reader import IndexStore  # noqa: E402
from rag.jobs.batch import ResultWriter, read_input, run_batch  # noqa: E402
from rag.settings import Settings  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def ray_session():
    from rag.index import ray_build as ray_engine

    ray_engine.ensure_ray()
    yield
    ray_engine.shutdown()


def _rows(index):
    store = IndexStore(index)
    chunks = {c.chunk_id: c for c in store.iter_chunks()}
    from rag.index.layout import faiss_ids

    ids = faiss_ids(store.faiss)
    vecs = dict(zip(ids.tolist(), store.vectors(ids), strict=True))
    return store, chunks, vecs


def test_ray_index_build_matches_local(ray_session, built_fixture_index, embedder, tmp_path):
    corpus, local_index = built_fixture_index
    c = tmp_path / "corpus"
    shutil.copytree(corpus, c)
    (c / "broken.pdf").write_bytes(b"%PDF-1.4 nonsense")
    ray_index = tmp_path / "ray-index"
    # the Ray actors build their embedder from the settings: the same backend as the local fixture's (ONNX fp32)
    r = build_index(Settings(corpus=c, index=ray_index, embedding={"backend": "onnx"}), embedder=embedder, engine="ray", workers=1)
    assert len(r.added) == 5 and [e.path for e in r.skipped] == ["broken.pdf"] and r.chunks_embedded == r.chunks_total
    s_local, ch_local, v_local = _rows(local_index)
    s_ray, ch_ray, v_ray = _rows(ray_index)
    assert set(ch_local) == set(ch_ray)
    assert all(ch_local[k] == ch_ray[k] for k in ch_local)
    assert set(v_local) == set(v_ray)
    for fid, v in v_local.items():
        assert np.allclose(v, v_ray[fid], atol=1e-5)
    assert s_ray.check() == []
    assert {k: (d.doc_id, d.chunks, d.title) for k, d in s_local.manifest.documents.items()} == \
           {k: (d.doc_id, d.chunks, d.title) for k, d in s_ray.manifest.documents.items()}
    # incremental rules unchanged: a changed file re-embeds only its new text
    md = c / "plans/quantum-plan.md"
    md.write_text(md.read_text() + "\nA brand new closing paragraph about lattice-based signatures.\n")
    r2 = build_index(Settings(corpus=c, index=ray_index, embedding={"backend": "onnx"}), embedder=embedder, engine="ray", workers=1)
    assert r2.updated == ["plans/quantum-plan.md"] and 1 <= r2.chunks_embedded < r2.chunks_total and r2.chunks_reused >= 1


def test_ray_batch_matches_local(ray_session, built_fixture_index, embedder, tmp_path):
    from rag.answer.answerer import Answerer
    from rag.jobs.ray_batch import run_batch_ray
    from rag.retrieve.retriever import Retriever

    qs = ["What must drone operators hold?", "How often are fracture-critical members inspected?", "What is the recipe for sourdough bread?",
          "Which utilities are eligible for drought grants?"]
    inp = tmp_path / "q.jsonl"
    inp.write_text("".join(json.dumps({"id": f"x{i}", "question": q}) + "\n" for i, q in enumerate(qs)))
    s = Settings(index=built_fixture_index[1], answer={"mode": "extractive"})
    local_out, ray_out = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    run_batch(Answerer(Retriever.open(s, embedder), s), read_input(inp), ResultWriter(local_out, False), batch_size=2)
    summary = run_batch_ray(read_input(inp), ResultWriter(ray_out, False), s, batch_size=2, filters=None, mode=None, k=None,
                                       model=None, workers=1)
    assert summary.answered + summary.refused == len(qs) and summary.failed == 0

    def load(p):
        return {r["id"]: (r["answer"], r["refused"], [c["chunk_id"] for c in r["citations"]]) for r in map(json.loads, p.read_text().splitlines())}

    assert load(local_out) == load(ray_out)


def test_cli_index_build_with_the_ray_engine(ray_session, built_fixture_index, cli, capsys, tmp_path):
    """`rag index build --engine ray --address ... --workers N`, as the README documents it, through the real entry point."""
    import ray

    corpus, local_index = built_fixture_index
    idx = tmp_path / "cli-ray-index"
    address = ray.get_runtime_context().gcs_address  # the running local instance, named like a cluster's
    code, out, err = cli(capsys, "index", "build", "--corpus", str(corpus), "--index", str(idx), "--engine", "ray",
                         "--address", address, "--workers", "1", "--json")
    assert code == 0, err
    res = json.loads(out)
    assert len(res["added"]) == 5 and res["chunks_total"] == IndexStore(local_index).manifest.n_chunks
    assert IndexStore(idx).check() == []


def test_ray_embed_actor_uses_the_settings_backend(embedder):
    from rag.index.backends_onnx import OnnxEmbedder
    from rag.index.embed import Embedder
    from rag.index.ray_build import _EmbedActor

    assert isinstance(_EmbedActor("sentence-transformers/all-MiniLM-L6-v2", "cpu", 8, "onnx").emb, OnnxEmbedder)
    assert isinstance(_EmbedActor("sentence-transformers/all-MiniLM-L6-v2", "cpu", 8, "torch").emb, Embedder)
