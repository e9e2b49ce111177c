"""The faster ONNX scorer keeps its scores: token-budget batches, the saved optimized graph, no spin-waits,
and the int8 recipes quantize what they say (benchmarks/RESULTS.md, "Reranking 20 candidates per question")."""

from __future__ import annotations

import os

import numpy as np
import pytest

from rag.errors import ModelLoadError
from rag.index import backends_onnx, onnx_opt

pytestmark = pytest.mark.skipif(not backends_onnx.onnx_available(), reason="onnxruntime not installed")

QUESTION = "Who must each agency designate within 60 days?"
TEXTS = [
    "Within 60 days, the head of each agency must designate a Chief AI Officer who reports to the agency head.",
    "Agencies publish inventories.",
    "The order describes the general policy of the United States on artificial intelligence in some detail. " * 6,
    "NIST released the framework in January 2023 after a public comment period.",
    "Yes.",
    "It recalls earlier initiatives and the work of many offices across the executive branch over several years. " * 3,
]


def tiny_model(path, d=8, vocab=50):
    """input_ids -> embedding Gather -> two MatMul layers (one named like a BERT FFN down projection) -> ReduceMean."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(size=s).astype(np.float32), n)
        for n, s in (("emb", (vocab, d)), ("w1", (d, d)), ("b1", (d,)), ("w2", (d, d)))
    ]
    nodes = [
        helper.make_node("Gather", ["emb", "input_ids"], ["e"], name="/m/embeddings/Gather"),
        helper.make_node("MatMul", ["e", "w1"], ["h"], name="/m/layer.0/intermediate/dense/MatMul"),
        helper.make_node("Add", ["h", "b1"], ["hb"], name="/m/layer.0/intermediate/Add"),
        helper.make_node("Relu", ["hb"], ["r"], name="/m/layer.0/Relu"),
        helper.make_node("MatMul", ["r", "w2"], ["o"], name="/m/layer.0/output/dense/MatMul"),
        helper.make_node("ReduceMean", ["o"], ["out"], name="/m/ReduceMean", axes=[1, 2], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "s"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["b"])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def run(session, ids):
    return session.run(None, {"input_ids": np.asarray(ids, np.int64)})[0]


# -- batching --------------------------------------------------------------------------------------------


def test_batches_respect_the_token_budget():
    enc = backends_onnx.OnnxEncoder.__new__(backends_onnx.OnnxEncoder)
    lengths = [5, 100, 50, 50, 3, 120, 4, 6]
    parts = enc.batches(lengths, batch_size=3, max_tokens=110)
    flat = np.concatenate(parts)
    assert sorted(flat.tolist()) == list(range(len(lengths)))  # every input once
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)  # longest first
    for p in parts:
        assert len(p) <= 3
        assert len(p) == 1 or len(p) * lengths[p[0]] <= 110  # a longer input goes alone
    assert [len(p) for p in parts] == [1, 1, 2, 3, 1]
    assert [len(p) for p in enc.batches(lengths, 32, None)] == [8]  # no budget: batches of batch_size


@pytest.fixture(scope="module")
def scorer_path():
    from rag.retrieve.rerank import SHIPPED_SCORER
    from rag.settings import default_cache_dir

    return SHIPPED_SCORER, default_cache_dir()


def test_batched_scores_equal_unbatched(scorer_path):
    """However the pairs are batched (and padded), each pair's score is the same: the padding is masked."""
    from rag.retrieve.rerank import Reranker

    folder, cache = scorer_path
    ref = Reranker(str(folder), "cpu", backend="onnx", cache_dir=cache, batch_size=1).scores(QUESTION, TEXTS)
    for kw in ({"max_tokens": None, "batch_size": 32}, {"max_tokens": 64}, {}, {"spin": True, "cache_graph": False}):
        got = Reranker(str(folder), "cpu", backend="onnx", cache_dir=cache, **kw).scores(QUESTION, TEXTS)
        assert np.abs(got - ref).max() < 1e-4, kw
    assert int(np.argmax(ref)) == 0


# -- the session: saved optimized graph, no spinning ------------------------------------------------------


def test_optimized_graph_is_saved_reused_and_invalidated(tmp_path, monkeypatch):
    import onnxruntime as ort

    src = tiny_model(tmp_path / "model.onnx")
    ids = [[1, 2, 3, 4], [5, 6, 7, 0]]
    plain = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    first = onnx_opt.open_session(src)
    saved = onnx_opt.optimized_path(src)
    assert saved.is_file() and saved != src
    assert not list(tmp_path.glob("tmp-*"))  # written atomically
    assert np.allclose(run(first, ids), run(plain, ids), atol=1e-5)

    opened: list[tuple[str, object]] = []
    real = ort.InferenceSession

    def spy(path, opts=None, **kw):
        opened.append((path, opts.graph_optimization_level))
        return real(path, opts, **kw)

    monkeypatch.setattr(ort, "InferenceSession", spy)
    again = onnx_opt.open_session(src)
    assert opened == [(str(saved), ort.GraphOptimizationLevel.ORT_DISABLE_ALL)]  # the saved graph, not re-optimized
    assert np.allclose(run(again, ids), run(first, ids), atol=1e-6)

    tiny_model(src, d=16)  # the model changes (a re-export): the old graph must not be used
    os.utime(src, ns=(saved.stat().st_mtime_ns + 10**9,) * 2)
    opened.clear()
    onnx_opt.open_session(src)
    assert opened[0][0] == str(src)
    assert not saved.exists()  # the stale graph is removed
    assert onnx_opt.optimized_path(src).is_file()

    saved = onnx_opt.optimized_path(src)
    saved.write_bytes(b"not a model")  # a damaged cache file is optimized again, not an error
    opened.clear()
    onnx_opt.open_session(src)
    assert [p for p, _ in opened] == [str(saved), str(src)]

    opened.clear()
    onnx_opt.open_session(src, cache=False)
    assert [p for p, _ in opened] == [str(src)]


def test_sessions_do_not_spin_unless_asked(tmp_path):
    src = tiny_model(tmp_path / "model.onnx")
    quiet = onnx_opt.open_session(src, threads=2)
    spinning = onnx_opt.open_session(src, threads=2, spin=True)
    key = "session.intra_op.allow_spinning"
    assert quiet.get_session_options().get_session_config_entry(key) == "0"
    assert spinning.get_session_options().get_session_config_entry(key) == "1"


# -- int8 recipes ---------------------------------------------------------------------------------------


def test_int8_recipes_quantize_what_they_name(tmp_path):
    import onnx

    src = tiny_model(tmp_path / "model.onnx")

    def ops(recipe):
        out = tmp_path / onnx_opt.int8_name(recipe)
        onnx_opt.quantize_model(src, out, recipe)
        m = onnx.load(str(out))
        float_inits = {i.name for i in m.graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
        return [n.op_type for n in m.graph.node], float_inits

    dyn, dyn_float = ops("dynamic")
    assert onnx_opt.int8_name("dynamic") == "model-int8.onnx"  # the old file name: existing caches stay valid
    assert dyn.count("MatMulInteger") == 2 and "emb" not in dyn_float  # embeddings quantized too
    chan, chan_float = ops("channel")
    assert chan.count("MatMulInteger") == 2 and "emb" in chan_float  # linear layers only
    noffn2, _ = ops("channel-noffn2")
    assert noffn2.count("MatMulInteger") == 1 and noffn2.count("MatMul") == 1  # the FFN down projection stays fp32
    with pytest.raises(ModelLoadError, match="unknown int8 recipe"):
        onnx_opt.int8_name("int4")


def test_int8_recipe_setting_is_validated(monkeypatch):
    from typing import get_args

    from rag.errors import ConfigError
    from rag.settings import RetrievalSettings, load_settings

    assert load_settings().retrieval.rerank_int8 == "dynamic"  # the default keeps the existing int8 file
    assert set(get_args(RetrievalSettings.model_fields["rerank_int8"].annotation)) == set(onnx_opt.INT8_RECIPES)
    monkeypatch.setenv("RAG_RETRIEVAL__RERANK_INT8", "channel")
    assert load_settings().retrieval.rerank_int8 == "channel"
    with pytest.raises(ConfigError, match="rerank_int8"):
        load_settings(**{"retrieval.rerank_int8": "int4"})
