from __future__ import annotations

import os
import shutil
import socket
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
    from rag.index.backends_onnx import onnx_available
    from rag.index.embed import get_embedder

    # fp32 vectors (ONNX Runtime, = torch's to 1e-7) are the suite's reference; on a bf16 CPU `auto` would pick
    # OpenVINO bf16, tested in tests/test_openvino_backend.py
    return get_embedder("sentence-transformers/all-MiniLM-L6-v2", "cpu", 32, "onnx" if onnx_available() else "auto")


@pytest.fixture(scope="session")
def tokenize(embedder):
    return embedder.token_spans()


@pytest.fixture()
def fixture_corpus(tmp_path) -> Path:
    return write_fixture_corpus(tmp_path / "corpus")


@pytest.fixture(scope="session")
def built_fixture_index(tmp_path_factory, embedder):
    """A fixture corpus and its index, built once; tests copy it before changing anything."""
    from rag.index.build import build_index
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
    from rag.index.build import build_index
    from rag.settings import Settings

    idx = tmp_path_factory.mktemp("shipped") / "index"
    s = Settings(corpus=ROOT / "corpus", index=idx)
    build_index(s, embedder=embedder)
    return s


# ---------------------------------------------------------------------------------------------
# Shared fakes and helpers (fixtures, so no test file imports another)

from rag.answer.generate import GenerationResult  # noqa: E402
from rag.cli import main  # noqa: E402
from rag.types import Answer, Chunk, Citation, Passage  # noqa: E402


class FakeGenerator:
    """Stands in for the LLM where a fixed draft makes the behaviour checkable."""

    name = "fake"

    def __init__(self, text: str) -> None:
        self.text = text
        self.calls = 0

    def generate(self, messages, max_new_tokens=256, on_token=None, **kw):
        self.calls += 1
        for w in self.text.split(" "):
            if on_token:
                on_token(w + " ")
        return GenerationResult(text=self.text, tokens=len(self.text.split()), prompt_tokens=100, first_token_s=0.01, generate_s=0.05)


class CountingEmbedder:
    """The real embedder, counting what it is asked to embed."""

    def __init__(self, inner):
        self.inner = inner
        self.texts: list[str] = []
        self.dimension = inner.dimension
        self.max_seq_length = inner.max_seq_length
        self.special_tokens = inner.special_tokens

    def token_spans(self):
        return self.inner.token_spans()

    def encode(self, texts, **kw):
        self.texts.extend(texts)
        return self.inner.encode(texts, **kw)


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    old = sys.argv
    sys.argv = ["rag", *args]
    code = 0
    try:
        main()
    except SystemExit as e:
        code = int(e.code or 0)
    finally:
        sys.argv = old
    out, err = capsys.readouterr()
    return code, out, err


def sample_answer(text="Agencies must act [1]. See also [7].", title="Plan <script>alert(1)</script>", passage_text="Agencies must act quickly & well."):
    c = Chunk(chunk_id="c1", doc_id="d", source="dir/plan.pdf", title=title, ordinal=0, text=passage_text, char_start=0,
              char_end=len(passage_text), page=7, page_end=7, section="Pillar I > Open <b>AI</b>", n_tokens=5, embed_text=passage_text, date="2025-07-23")
    p = Passage(chunk=c, score=0.9, rank=1, scores={"dense": 0.8})
    return Answer(question="q", text=text, refused=False, mode="auto", produced_by="generative",
                  citations=(Citation(1, p, "Agencies must act quickly", 0.81),), passages=(p,))


def _pick_free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def fake_generator():
    """The class of a stand-in LLM that writes a fixed draft: fake_generator("text [1].")."""
    return FakeGenerator


@pytest.fixture()
def counting_embedder():
    return CountingEmbedder


@pytest.fixture()
def cli():
    """cli(capsys, *args) -> (exit code, stdout, stderr), through the real entry point `rag.cli.main`."""
    return run_cli


@pytest.fixture()
def make_answer():
    """An Answer with one cited passage whose title/text/answer text a test chooses."""
    return sample_answer


@pytest.fixture(scope="session")
def free_port():
    """free_port() -> a port nobody listens on at 127.0.0.1."""
    return _pick_free_port
