from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_cli_build_status_search(cli, capsys, fixture_corpus, tmp_path, embedder):
    idx = tmp_path / "idx"
    code, out, err = cli(capsys, "index", "build", "--corpus", str(fixture_corpus), "--index", str(idx))
    assert code == 0, err
    summary = out.strip().splitlines()[-1]
    assert summary.startswith("index: 5 added, 0 updated, 0 removed") and "chunks in index" in summary

    code, out, _ = cli(capsys, "index", "build", "--corpus", str(fixture_corpus), "--index", str(idx))
    assert code == 0 and "up to date" in out and "0 chunks embedded" in out

    (fixture_corpus / "extra.md").write_text("# Extra\n\nSomething new about tide gauges.\n")
    code, out, _ = cli(capsys, "index", "status", "--corpus", str(fixture_corpus), "--index", str(idx), "--json")
    st = json.loads(out)
    assert st["documents"] == 5 and st["changed_since"]["added"] == ["extra.md"] and st["compatible_with_settings"]

    code, out, _ = cli(capsys, "search", "remote pilot certificate", "--index", str(idx), "-k", "2", "--json", "--reranker", "none")
    hits = json.loads(out)
    assert len(hits) == 2
    need = {"rank", "score", "chunk_id", "doc_id", "source", "title", "page", "page_end", "section", "char_start", "char_end", "text"}
    assert need <= set(hits[0])
    assert hits[0]["source"] == "reports/farm-guidance.docx" and hits[0]["section"] == "Operator Rules" and hits[0]["rank"] == 1

    code, out, _ = cli(capsys, "search", "interconnection queue", "--index", str(idx), "--filter", "source=grid-report.pdf")
    assert code == 0 and "Grid Modernization Report 2024, p. " in out and "reports/grid-report.pdf" in out and "similarity" in out

    code, out, _ = cli(capsys, "index", "check", "--index", str(idx))
    assert code == 0 and out.startswith("ok:")

    qfile = tmp_path / "q.jsonl"
    qfile.write_text('{"question": "spray logs", "filter": {"source": "farm-guidance.docx"}}\n{"question": "bridge inspection"}\n\n')
    code, out, _ = cli(capsys, "search", "--queries", str(qfile), "--index", str(idx), "-k", "1", "--reranker", "none")
    lines = [json.loads(x) for x in out.strip().splitlines()]
    assert [x["question"] for x in lines] == ["spray logs", "bridge inspection"]
    assert lines[0]["hits"][0]["source"] == "reports/farm-guidance.docx" and lines[1]["hits"][0]["source"] == "web/bridges.html"
    tfile = tmp_path / "q.txt"
    tfile.write_text("spray logs\nbridge inspection\n")
    code, out, _ = cli(capsys, "search", "--queries", str(tfile), "--index", str(idx), "-k", "3", "--reranker", "none")
    assert code == 0 and len(out.strip().splitlines()) == 2


@pytest.mark.parametrize(
    "args,code,words",
    [
        (["search", "x", "--filter", "nonsense"], 2, "KEY=VALUE"),
        (["search", "x", "--index", "/nonexistent/idx"], 3, "rag index build"),
        (["index", "build", "--corpus", "/nonexistent/corpus", "--index", "/tmp/x-idx"], 1, "does not exist"),
        (["search", "x", "-k", "0"], 2, "top_k"),
        (["index", "build", "--address", "auto", "--index", "/tmp/x-idx"], 2, "--engine ray"),
        (["index", "build", "--engine", "spark", "--index", "/tmp/x-idx"], 2, "local or ray"),
    ],
)
def test_cli_errors_are_one_line(cli, capsys, args, code, words):
    c, out, err = cli(capsys, *args)
    assert c == code
    assert words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cli_subprocess_mismatch_message(built_fixture_index, tmp_path):
    _, idx = built_fixture_index
    env = {**os.environ, "RAG_CHUNKING__TOKENS": "100", "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "rag.cli", "search", "anything", "--index", str(idx)],
                       env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 4
    assert "chunk_tokens: index 200 vs settings 100" in p.stderr and "rag index build --full" in p.stderr
    assert "Traceback" not in p.stderr


def test_settings_precedence(tmp_path, monkeypatch):
    from rag.settings import load_settings

    toml = tmp_path / "rag.toml"
    toml.write_text('index = "from-toml"\n[retrieval]\ntop_k = 7\n[chunking]\ntokens = 150\n')
    monkeypatch.setenv("RAG_CONFIG", str(toml))
    s = load_settings()
    assert (s.retrieval.top_k, s.chunking.tokens, str(s.index)) == (7, 150, "from-toml")
    monkeypatch.setenv("RAG_RETRIEVAL__TOP_K", "9")
    s = load_settings()
    assert (s.retrieval.top_k, s.chunking.tokens) == (9, 150)
    s = load_settings(**{"retrieval.top_k": 3, "index": None})
    assert (s.retrieval.top_k, str(s.index)) == (3, "from-toml")
    from rag.errors import ConfigError

    with pytest.raises(ConfigError, match="chunking.overlap"):
        load_settings(**{"chunking.tokens": 20, "chunking.overlap": 30})
    toml.write_text("[retrieval]\ntop_k = [broken")
    with pytest.raises(ConfigError, match="rag.toml"):
        load_settings()


@pytest.mark.parametrize("args", [["search", "-k", "abc", "x"], ["search", "x", "--no-such-flag"], ["eval", "x", "--limit", "abc"]])
def test_usage_errors_are_short_and_exit_2(cli, capsys, args):
    code, out, err = cli(capsys, *args)
    assert code == 2 and "Traceback" not in err and "Error" in err and len(err.strip().splitlines()) <= 4


def test_config_show_names_value_origin_and_env(cli, capsys, tmp_path, monkeypatch):
    toml = tmp_path / "rag.toml"
    toml.write_text('[answer]\nmode = "auto"\n[ui]\npassword = "hunter2"\nusername = "ana"\n')
    monkeypatch.setenv("RAG_CONFIG", str(toml))
    monkeypatch.setenv("RAG_RETRIEVAL__TOP_K", "9")
    code, out, _ = cli(capsys, "config", "show", "--json")
    assert code == 0
    rows = {r["key"]: r for r in json.loads(out)}
    assert rows["retrieval.top_k"]["value"] == 9 and rows["retrieval.top_k"]["origin"] == "env"
    assert rows["answer.mode"]["value"] == "auto" and rows["answer.mode"]["origin"] == str(toml)
    assert rows["chunking.tokens"]["origin"] == "default" and rows["chunking.tokens"]["env"] == "RAG_CHUNKING__TOKENS"
    assert rows["ui.password"]["value"] == "***" and "hunter2" not in out
    assert all(r["description"] for r in rows.values())
    code, out, _ = cli(capsys, "config", "show")
    assert code == 0 and "RAG_RETRIEVAL__TOP_K" in out and "[env]" in out


def test_index_check_exit_code_through_the_real_entry_point(index_copy):
    """`rag index check` on an inconsistent index exits 5 from the installed entry point, not only in-process."""
    _, idx = index_copy
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = [sys.executable, "-m", "rag.cli", "index", "check", "--index", str(idx)]
    assert subprocess.run(run, env=env, capture_output=True, text=True, timeout=120).returncode == 0
    gen = idx / (idx / "CURRENT").read_text().strip()
    (gen / "bm25_ids.npy").unlink()
    p = subprocess.run(run, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 5 and "BM25" in p.stdout
