"""The OpenVINO backend (rag/index/backends_openvino.py): which backend `auto` picks, a clear error without openvino,
scores and vectors that agree with fp32 ONNX Runtime, the compiled-blob cache, and the vectors the manifest records."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rag.errors import IndexMismatchError, ModelLoadError
from rag.index import backends_onnx, backends_openvino
from rag.index.embed import choose_embedding_backend, get_embedder, resolve_embedding_model, vectors_for
from rag.index.manifest import EmbeddingInfo, Manifest
from rag.retrieve.rerank import SHIPPED_SCORER, Reranker, choose_rerank_backend
from rag.settings import DEFAULT_EMBEDDING_MODEL, default_cache_dir, load_settings

needs_ov = pytest.mark.skipif(
    not (backends_openvino.openvino_available() and backends_onnx.onnx_available()), reason="openvino not installed"
)
MINILM = Path(resolve_embedding_model(DEFAULT_EMBEDDING_MODEL))
QUESTION = "What must agencies designate under OMB memo M-24-10?"
PASSAGES = [
    "Each agency must designate a Chief AI Officer within 60 days of the issuance of this memorandum.",
    "Written comments must be received on or before March 27, 2024.",
    "The framework is organized around four functions: govern, map, measure and manage.",
    "Agencies are encouraged to share their AI use case inventories with the public every year. " * 12,
]


# -- selection ---------------------------------------------------------------------------------------


def test_auto_prefers_openvino_on_a_bf16_cpu_and_torch_on_cuda(monkeypatch):
    monkeypatch.setattr(backends_onnx, "cuda_present", lambda: False)
    monkeypatch.setattr(backends_onnx, "onnx_available", lambda: True)
    monkeypatch.setattr(backends_openvino, "openvino_preferred", lambda: True)
    assert choose_embedding_backend(DEFAULT_EMBEDDING_MODEL, "auto", "auto") == "openvino"
    assert choose_embedding_backend(DEFAULT_EMBEDDING_MODEL, "cpu", "auto", quantize=True) == "onnx"  # int8 = ORT
    assert choose_rerank_backend(str(SHIPPED_SCORER), "cpu", "auto") == "openvino"
    assert choose_rerank_backend(str(SHIPPED_SCORER), "cpu", "auto", quantize=True) == "onnx"  # int8 = ORT
    assert Reranker("evidence-scorer", "cpu", quantize=True).backend == "onnx"
    # explicit choices are kept, a GPU keeps torch, a hub id cannot be exported offline
    assert choose_embedding_backend(DEFAULT_EMBEDDING_MODEL, "cpu", "onnx") == "onnx"
    assert choose_rerank_backend(str(SHIPPED_SCORER), "cpu", "torch") == "torch"
    assert choose_embedding_backend(DEFAULT_EMBEDDING_MODEL, "cuda", "auto") == "torch"
    assert choose_rerank_backend(str(SHIPPED_SCORER), "cuda:0", "auto") == "torch"
    assert choose_rerank_backend("cross-encoder/some-hub-model", "cpu", "auto") == "torch"
    monkeypatch.setattr(backends_onnx, "cuda_present", lambda: True)
    assert choose_embedding_backend(DEFAULT_EMBEDDING_MODEL, "auto", "auto") == "torch"
    monkeypatch.setattr(backends_onnx, "cuda_present", lambda: False)
    # a CPU without bf16 (or no openvino): ONNX Runtime, as before
    monkeypatch.setattr(backends_openvino, "openvino_preferred", lambda: False)
    assert choose_embedding_backend(DEFAULT_EMBEDDING_MODEL, "cpu", "auto") == "onnx"
    assert choose_rerank_backend(str(SHIPPED_SCORER), "cpu", "auto") == "onnx"


def test_openvino_asked_for_but_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(backends_openvino, "openvino_available", lambda: False)
    with pytest.raises(ModelLoadError, match="embedding.backend = openvino.*pip install openvino"):
        choose_embedding_backend(DEFAULT_EMBEDDING_MODEL, "cpu", "openvino")
    with pytest.raises(ModelLoadError, match="rerank_backend = openvino.*pip install openvino"):
        choose_rerank_backend(str(SHIPPED_SCORER), "cpu", "openvino")
    with pytest.raises(ModelLoadError, match="runs on the CPU"):
        choose_rerank_backend(str(SHIPPED_SCORER), "cuda", "openvino")
    monkeypatch.setattr(backends_openvino, "_cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    backends_openvino.cpu_has_bf16.cache_clear()
    try:
        assert not backends_openvino.openvino_preferred()  # auto never picks what is not installed
        assert not backends_openvino.cpu_has_bf16()
    finally:
        backends_openvino.cpu_has_bf16.cache_clear()


def test_bf16_is_chosen_only_where_the_cpu_has_it(monkeypatch):
    monkeypatch.setattr(backends_openvino, "_cpu_flags", lambda: {"avx2", "avx512f"})  # no bf16: no openvino import
    backends_openvino.cpu_has_bf16.cache_clear()
    try:
        assert backends_openvino.cpu_has_bf16() is False
        assert backends_openvino.resolve_precision("auto") == "f32"
        with pytest.raises(ModelLoadError, match="no native BF16"):
            backends_openvino.resolve_precision("bf16")
        with pytest.raises(ModelLoadError, match="unknown openvino precision"):
            backends_openvino.resolve_precision("fp8")
    finally:
        backends_openvino.cpu_has_bf16.cache_clear()


def test_openvino_is_imported_only_when_used():
    code = (
        "import sys; import rag.index.embed, rag.retrieve.rerank, rag.index.backends_openvino, rag.service; "
        "from rag.index.embed import choose_embedding_backend as c; c('sentence-transformers/all-MiniLM-L6-v2', "
        "'cpu', 'onnx'); print('openvino' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"


# -- the real models ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ov_cache(tmp_path_factory):
    """A cache dir holding the library's fp32 exports (copied from the default cache when there, else exported
    here), so that OpenVINO's compiled blobs are made fresh in this test."""
    cache = tmp_path_factory.mktemp("ovcache")
    for folder, kind in ((SHIPPED_SCORER, "score"), (MINILM, "embed")):
        src = backends_onnx.exported(folder, kind, default_cache_dir())
        dst = cache / "onnx" / src.parent.name / "model.onnx"
        dst.parent.mkdir(parents=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)
    return cache


@needs_ov
def test_openvino_scores_agree_with_onnx_fp32_and_the_blob_is_reused(ov_cache):
    onnx = Reranker("evidence-scorer", "cpu", backend="onnx", cache_dir=ov_cache).scores(QUESTION, PASSAGES)
    first = Reranker("evidence-scorer", "cpu", backend="openvino", cache_dir=ov_cache)
    got = first.scores(QUESTION, PASSAGES)
    assert first.backend == "openvino" and first._onnx.from_cache is False
    assert first._onnx.compiled.get_property("ENABLE_CPU_PINNING") is False  # shared cores: no pinned threads
    assert str(first._onnx.compiled.get_property("PERFORMANCE_HINT")).endswith("LATENCY")
    assert first._onnx.path.parent == next((ov_cache / "onnx").glob("evidence-scorer-score-*"))  # the ONNX export
    blobs = list(first._onnx.blob_dir.glob("*.blob"))
    assert blobs
    tol = 0.25 if first._onnx.precision == "bf16" else 1e-3  # bf16: ~3 significant digits of each logit
    assert np.abs(got - onnx).max() < tol
    assert list(np.argsort(-got)) == list(np.argsort(-onnx))  # the same ranking of the four passages
    again = Reranker("evidence-scorer", "cpu", backend="openvino", cache_dir=ov_cache)
    assert np.array_equal(again.scores(QUESTION, PASSAGES), got)
    assert again._onnx.from_cache is True  # the second load imports the compiled blob
    assert list(first._onnx.blob_dir.glob("*.blob")) == blobs


@needs_ov
def test_openvino_vectors_agree_with_onnx_fp32_and_are_recorded(ov_cache):
    from rag.index.backends_onnx import OnnxEmbedder
    from rag.index.backends_openvino import OpenVinoEmbedder

    ov = OpenVinoEmbedder(DEFAULT_EMBEDDING_MODEL, MINILM, ov_cache, 16)
    ref = OnnxEmbedder(DEFAULT_EMBEDDING_MODEL, MINILM, ov_cache, 16)
    texts = [QUESTION, *PASSAGES]
    a, b = ov.encode(texts), ref.encode(texts)
    assert a.shape == b.shape == (len(texts), ov.dimension) and a.dtype == np.float32
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert (a * b).sum(1).min() >= 0.999
    assert ov.count_tokens("Chief AI Officer") == ref.count_tokens("Chief AI Officer")
    bf16 = backends_openvino.cpu_has_bf16()
    assert (ov.backend, ov.vectors) == (("openvino-bf16", "bf16") if bf16 else ("openvino-f32", "fp32"))
    s = load_settings(**{"embedding.backend": "openvino"})
    assert vectors_for(s) == ov.vectors  # what `rag index status` compares, without loading a model
    e = get_embedder(DEFAULT_EMBEDDING_MODEL, "cpu", 16, "openvino", ov_cache)
    assert type(e) is OpenVinoEmbedder


def test_manifest_vectors_bf16_mix_with_fp32_but_not_with_int8(tmp_path):
    def manifest(vectors: str) -> Manifest:
        emb = EmbeddingInfo(model="m", dimension=384, max_seq_length=256, vectors=vectors)
        return Manifest(index_id="x", built_at="", embedding=emb, chunking={}, faiss={}, corpus="")

    manifest("fp32").check_vectors("bf16", tmp_path)
    manifest("bf16").check_vectors("fp32", tmp_path)
    manifest("bf16").check_vectors("bf16", tmp_path)
    manifest("").check_vectors("bf16", tmp_path)  # an index from before vectors were recorded
    with pytest.raises(IndexMismatchError, match="bf16.*int8-channel"):
        manifest("bf16").check_vectors("int8-channel", tmp_path)
    with pytest.raises(IndexMismatchError, match="int8-channel.*bf16"):
        manifest("int8-channel").check_vectors("bf16", tmp_path)
    assert Manifest.from_dict(manifest("bf16").to_dict()).embedding.vectors == "bf16"


def test_blobs_of_other_openvino_versions_are_pruned(tmp_path):
    from rag.index.backends_openvino import blob_dir, prune_blobs

    export = tmp_path / "model-score-abc"
    for old in ("openvino", "openvino-2024.0.0"):
        (export / old).mkdir(parents=True)
        (export / old / "x.blob").write_bytes(b"old")
    keep = blob_dir(export)
    assert keep.parent == export and keep.name.startswith("openvino-")
    keep.mkdir()
    (keep / "y.blob").write_bytes(b"new")
    assert sorted(d.name for d in prune_blobs(export, keep)) == ["openvino", "openvino-2024.0.0"]
    assert [d.name for d in export.iterdir()] == [keep.name] and (keep / "y.blob").exists()
