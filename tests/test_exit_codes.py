"""Every documented exit code of the `rag` command, through the real entry point in a child process.

README: 0 ok, 1 anything else the user can fix, 2 bad setting or flag, 3 no index, 4 index built with
other settings, 5 index inconsistent or damaged, 6 model cannot be loaded. Errors are one line on
stderr, never a traceback. (CliRunner and in-process calls once hid that `index check` exited 0.)
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from rag.index.layout import current_generation

ROOT = Path(__file__).resolve().parent.parent
_SCRIPT = Path(sys.executable).with_name("rag")
RAG = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "rag.cli"]


def rag(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    e.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", RAG_CONFIG=str(cwd / "no-such-rag.toml"), **env)
    return subprocess.run([*RAG, *args], env=e, cwd=cwd, capture_output=True, text=True, timeout=300)


def one_line_error(p: subprocess.CompletedProcess[str]) -> bool:
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    return "Traceback" not in p.stderr and len(lines) == 1 and lines[0].startswith("error: ")


def test_0_ok(index_copy, tmp_path):
    _, index = index_copy
    p = rag("index", "check", "--index", str(index), cwd=tmp_path)
    assert p.returncode == 0 and p.stdout.startswith("ok: "), p.stderr


def test_1_user_error(tmp_path):
    p = rag(
        "index",
        "build",
        "-q",
        "--corpus",
        str(tmp_path / "no-corpus"),
        "--index",
        str(tmp_path / "index"),
        cwd=tmp_path,
    )
    assert p.returncode == 1 and one_line_error(p) and "no-corpus" in p.stderr, p.stderr


def test_2_bad_flag_or_setting(index_copy, tmp_path):
    corpus, index = index_copy
    p = rag("index", "status", "--no-such-flag", cwd=tmp_path)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    p = rag("index", "status", "--index", str(index), cwd=tmp_path, RAG_LLM__DEVICE="gpu7")
    assert p.returncode == 2 and one_line_error(p) and "llm.device" in p.stderr, p.stderr
    afile = tmp_path / "index.txt"
    afile.write_text("x")
    for args in (
        ["index", "status"],
        ["index", "check"],
        ["docs"],
        ["index", "build", "-q", "--corpus", str(corpus)],
        ["search", "bridges"],
    ):
        p = rag(*args, "--index", str(afile), cwd=tmp_path)
        assert p.returncode == 2 and one_line_error(p) and "is a file, not a folder" in p.stderr, (args, p.stderr)


@pytest.mark.slow  # loads torch and the embedder in the child: ~10 s alone, a minute on a busy machine
def test_2_device_this_machine_lacks(index_copy, tmp_path):
    import torch

    if torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    _, index = index_copy
    p = rag(
        "ask",
        "What must drone operators hold?",
        "--answer-mode",
        "generative",
        "--index",
        str(index),
        cwd=tmp_path,
        RAG_LLM__DEVICE="cuda:7",
    )
    assert p.returncode == 2 and one_line_error(p) and "cuda:7" in p.stderr and "not available" in p.stderr, p.stderr[
        -2000:
    ]


def test_3_no_index(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for args in (["index", "status"], ["index", "check"], ["docs"]):
        p = rag(*args, "--index", str(empty), cwd=tmp_path)
        assert p.returncode == 3 and one_line_error(p) and "rag index build" in p.stderr, (args, p.stderr)


def test_4_index_built_with_other_settings(index_copy, tmp_path):
    corpus, index = index_copy
    p = rag(
        "index", "build", "-q", "--corpus", str(corpus), "--index", str(index), cwd=tmp_path, RAG_CHUNKING__TOKENS="100"
    )
    assert p.returncode == 4 and one_line_error(p) and "--full" in p.stderr, p.stderr


def test_5_inconsistent_or_damaged_index(index_copy, tmp_path):
    corpus, index = index_copy
    gen = current_generation(index)
    assert gen is not None
    broken = tmp_path / "rows"
    shutil.copytree(index, broken)
    db = sqlite3.connect(broken / gen.name / "chunks.sqlite")
    db.execute("DELETE FROM chunks WHERE rowid IN (SELECT rowid FROM chunks LIMIT 2)")
    db.commit()
    db.close()
    p = rag("index", "check", "--index", str(broken), cwd=tmp_path)  # was: problem lines, exit 0
    assert p.returncode == 5 and "problem: FAISS ids and SQLite rows differ" in p.stdout, p.stdout + p.stderr
    p = rag("index", "check", "--json", "--index", str(broken), cwd=tmp_path)
    assert p.returncode == 5 and '"ok": false' in p.stdout

    no_bm25 = tmp_path / "bm25"
    shutil.copytree(index, no_bm25)
    shutil.rmtree(no_bm25 / gen.name / "bm25")
    p = rag("index", "check", "--index", str(no_bm25), cwd=tmp_path)  # was: ok
    assert p.returncode == 5 and "bm25" in p.stdout, p.stdout

    f = index / gen.name / "faiss.index"
    f.write_bytes(f.read_bytes()[:300])  # truncated
    p = rag("index", "status", "--corpus", str(corpus), "--index", str(index), cwd=tmp_path)  # was: up to date, exit 0
    assert p.returncode == 5 and "up to date" not in p.stdout and "damaged: faiss.index" in p.stdout, p.stdout
    p = rag("index", "check", "--index", str(index), cwd=tmp_path)
    assert p.returncode == 5 and "faiss.index cannot be read" in p.stdout


@pytest.mark.slow  # search and build load the embedder in the child
def test_5_damaged_index_search_and_build(index_copy, tmp_path):
    corpus, index = index_copy
    gen = current_generation(index)
    assert gen is not None
    f = index / gen.name / "faiss.index"
    f.write_bytes(f.read_bytes()[:300])  # truncated
    p = rag("search", "bridges", "--index", str(index), cwd=tmp_path)
    assert p.returncode == 5 and one_line_error(p) and "--full" in p.stderr, p.stderr
    (corpus / "notes/new.txt").write_text("A new note on culverts.\n")
    p = rag("index", "build", "-q", "--corpus", str(corpus), "--index", str(index), cwd=tmp_path)
    assert p.returncode == 5 and one_line_error(p) and "run `rag index build --full`" in p.stderr, p.stderr
    p = rag("index", "build", "-q", "--full", "--corpus", str(corpus), "--index", str(index), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert rag("index", "check", "--index", str(index), cwd=tmp_path).returncode == 0


@pytest.mark.slow  # imports torch and sentence-transformers in the child
def test_6_model_cannot_be_loaded(fixture_corpus, tmp_path):
    p = rag(
        "index",
        "build",
        "-q",
        "--corpus",
        str(fixture_corpus),
        "--index",
        str(tmp_path / "index"),
        "--embedding-model",
        str(tmp_path / "no-such-model"),
        cwd=tmp_path,
    )
    assert p.returncode == 6 and one_line_error(p) and "no-such-model" in p.stderr, p.stderr
