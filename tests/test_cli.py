from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rag.cli import main

ROOT = Path(__file__).resolve().parent.parent


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


def test_cli_build_status_search(capsys, fixture_corpus, tmp_path, embedder):
    idx = tmp_path / "idx"
    code, out, err = run_cli(capsys, "index", "build", "--corpus", str(fixture_corpus), "--index", str(idx))
    assert code == 0, err
    summary = out.strip().splitlines()[-1]
    assert summary.startswith("index: 5 added, 0 updated, 0 removed") and "chunks in index" in summary

    code, out, _ = run_cli(capsys, "index", "build", "--corpus", str(fixture_corpus), "--index", str(idx))
    assert code == 0 and "up to date" in out and "0 chunks embedded" in out

    (fixture_corpus / "extra.md").write_text("# Extra\n\nSomething new about tide gauges.\n")
    code, out, _ = run_cli(capsys, "index", "status", "--corpus", str(fixture_corpus), "--index", str(idx), "--json")
    st = json.loads(out)
    assert st["documents"] == 5 and st["changed_since"]["added"] == ["extra.md"] and st["compatible_with_settings"]

    code, out, _ = run_cli(capsys, "search", "remote pilot certificate", "--index", str(idx), "-k", "2", "--json")
    hits = json.loads(out)
    assert len(hits) == 2
    need = {"rank", "score", "chunk_id", "doc_id", "source", "title", "page", "page_end", "section", "char_start", "char_end", "text"}
    assert need <= set(hits[0])
    assert hits[0]["source"] == "reports/farm-guidance.docx" and hits[0]["section"] == "Operator Rules" and hits[0]["rank"] == 1

    code, out, _ = run_cli(capsys, "search", "interconnection queue", "--index", str(idx), "--filter", "source=grid-report.pdf")
    assert code == 0 and "Grid Modernization Report 2024, p. " in out and "reports/grid-report.pdf" in out and "similarity" in out

    code, out, _ = run_cli(capsys, "index", "check", "--index", str(idx))
    assert code == 0 and out.startswith("ok:")

    qfile = tmp_path / "q.jsonl"
    qfile.write_text('{"question": "spray logs", "filter": {"source": "farm-guidance.docx"}}\n{"question": "bridge inspection"}\n\n')
    code, out, _ = run_cli(capsys, "search", "--queries", str(qfile), "--index", str(idx), "-k", "1")
    lines = [json.loads(x) for x in out.strip().splitlines()]
    assert [x["question"] for x in lines] == ["spray logs", "bridge inspection"]
    assert lines[0]["hits"][0]["source"] == "reports/farm-guidance.docx" and lines[1]["hits"][0]["source"] == "web/bridges.html"
    tfile = tmp_path / "q.txt"
    tfile.write_text("spray logs\nbridge inspection\n")
    code, out, _ = run_cli(capsys, "search", "--queries", str(tfile), "--index", str(idx), "-k", "3")
    assert code == 0 and len(out.strip().splitlines()) == 2


@pytest.mark.parametrize(
    "args,code,words",
    [
        (["search", "x", "--filter", "nonsense"], 2, "KEY=VALUE"),
        (["search", "x", "--index", "/nonexistent/idx"], 3, "rag index build"),
        (["index", "build", "--corpus", "/nonexistent/corpus", "--index", "/tmp/x-idx"], 1, "does not exist"),
        (["search", "x", "-k", "0"], 2, "top_k"),
    ],
)
def test_cli_errors_are_one_line(capsys, args, code, words):
    c, out, err = run_cli(capsys, *args)
    assert c == code
    assert words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cli_subprocess_mismatch_message(built_fixture_index, tmp_path):
    _, idx = built_fixture_index
    env = {**os.environ, "RAG_CHUNK_TOKENS": "100", "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "rag.cli", "search", "anything", "--index", str(idx)],
                       env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 4
    assert "chunk_tokens: index 200 vs settings 100" in p.stderr and "rag index build --full" in p.stderr
    assert "Traceback" not in p.stderr


def test_settings_precedence(tmp_path, monkeypatch):
    from rag.settings import load_settings

    toml = tmp_path / "rag.toml"
    toml.write_text('top_k = 7\nchunk_tokens = 150\nindex = "from-toml"\n')
    monkeypatch.setenv("RAG_CONFIG", str(toml))
    s = load_settings()
    assert (s.top_k, s.chunk_tokens, str(s.index)) == (7, 150, "from-toml")
    monkeypatch.setenv("RAG_TOP_K", "9")
    s = load_settings()
    assert (s.top_k, s.chunk_tokens) == (9, 150)
    s = load_settings(top_k=3, index=None)
    assert (s.top_k, str(s.index)) == (3, "from-toml")
    from rag.errors import ConfigError

    with pytest.raises(ConfigError, match="chunk_overlap"):
        load_settings(chunk_tokens=20, chunk_overlap=30)
    toml.write_text("top_k = [broken")
    with pytest.raises(ConfigError, match="rag.toml"):
        load_settings()
