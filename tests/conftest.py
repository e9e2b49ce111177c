from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).parent))

from helpers import write_fixture_corpus  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


@pytest.fixture(autouse=True)
def _isolate_config(monkeypatch, tmp_path_factory):
    """No stray rag.toml or RAG_* variable from the developer's shell leaks into a test."""
    for k in list(os.environ):
        if k.startswith("RAG_"):
            monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("RAG_CONFIG", str(tmp_path_factory.getbasetemp() / "no-such-rag.toml"))


@pytest.fixture(scope="session")
def embedder():
    from rag.embed import get_embedder

    return get_embedder("sentence-transformers/all-MiniLM-L6-v2", "cpu", 32)


@pytest.fixture(scope="session")
def tokenize(embedder):
    return embedder.token_spans()


@pytest.fixture()
def fixture_corpus(tmp_path) -> Path:
    return write_fixture_corpus(tmp_path / "corpus")


@pytest.fixture(scope="session")
def built_fixture_index(tmp_path_factory, embedder):
    """A fixture corpus and its index, built once; tests copy it before changing anything."""
    from rag.indexer import build_index
    from rag.settings import Settings

    base = tmp_path_factory.mktemp("built")
    corpus = write_fixture_corpus(base / "corpus")
    s = Settings(corpus=corpus, index=base / "index")
    build_index(s, embedder=embedder)
    return corpus, base / "index"


@pytest.fixture()
def index_copy(built_fixture_index, tmp_path):
    corpus, index = built_fixture_index
    c = tmp_path / "corpus"
    i = tmp_path / "index"
    shutil.copytree(corpus, c)
    shutil.copytree(index, i)
    # copytree keeps mtimes (copy2), so the copy is up to date with its manifest
    return c, i


@pytest.fixture(scope="session")
def shipped_index(tmp_path_factory, embedder):
    """The shipped corpus indexed once per session (about a minute on 2 cores)."""
    from rag.indexer import build_index
    from rag.settings import Settings

    idx = tmp_path_factory.mktemp("shipped") / "index"
    s = Settings(corpus=ROOT / "corpus", index=idx)
    build_index(s, embedder=embedder)
    return s
