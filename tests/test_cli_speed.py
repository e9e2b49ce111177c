"""A quick CLI: the command line imports no UI, cluster or plotting library, and on CPU the question path
(ONNX embedder and scorer, llama.cpp LLM) runs without importing torch at all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ["gradio", "ray", "matplotlib", "torch", "transformers", "sentence_transformers", "pandas"]


def _imported(code: str, env: dict | None = None) -> list[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
        env={**os.environ, **(env or {})},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_cli_loads_no_heavy_library():
    assert _imported("import rag.cli") == []


def test_question_path_modules_load_no_heavy_library():
    """Everything `rag search` / `rag ask` imports before a model is chosen."""
    code = (
        "import rag.cli, rag.service, rag.retrieve.retriever, rag.answer.answerer, rag.index.backends_onnx, "
        "rag.answer.backends_llamacpp, rag.answer.generate, rag.index.embed, rag.retrieve.rerank"
    )
    assert _imported(code) == []


@pytest.mark.slow
def test_cpu_search_and_extractive_answer_never_import_torch(tmp_path, built_fixture_index):
    """The real service path with the ONNX backends (exported beforehand, as the first run on a machine does)."""
    from rag.index.backends_onnx import onnx_available

    if not onnx_available():
        pytest.skip("onnxruntime not installed")
    from rag.index.embed import embedder_for
    from rag.retrieve.rerank import Reranker
    from rag.settings import Settings

    cache = tmp_path / "cache"
    s = Settings(cache_dir=cache).with_overrides(**{"embedding.backend": "onnx", "retrieval.rerank_backend": "onnx"})
    embedder_for(s)  # exports into `cache` (this process has torch)
    Reranker("evidence-scorer", "cpu", backend="onnx", cache_dir=cache)._load()
    _, index = built_fixture_index
    code = (
        f"from rag.service import RagService\nfrom rag.settings import load_settings\n"
        f"svc = RagService(load_settings(index={str(index)!r}))\n"
        f"hits = svc.search(['What must agencies report?'], 3)[0]\nassert hits\n"
        f"a = svc.ask('What must agencies report?', mode='extractive')\nassert a.text"
    )
    env = {
        "RAG_CACHE_DIR": str(cache),
        "RAG_EMBEDDING__BACKEND": "onnx",
        "RAG_RETRIEVAL__RERANK_BACKEND": "onnx",
        "RAG_CONFIG": str(tmp_path / "none.toml"),
        "HF_HUB_OFFLINE": "1",
    }
    assert _imported(code, env) == []
