"""Security properties that are not about one file: no code paths that deserialise code, index files
in plain data formats only, uploads that cannot escape the corpus, escaped rendering."""

from __future__ import annotations

import ast
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from helpers import pdf_flate_bomb

from rag.errors import ConfigError
from rag.service import RagService, sanitize_filename

ROOT = Path(__file__).resolve().parent.parent
BANNED_CALLS = {"eval", "exec", "compile", "__import__"}
BANNED_MODULES = {"pickle", "cPickle", "dill", "marshal", "shelve", "joblib", "cloudpickle"}


def _py_files() -> list[Path]:
    return sorted((ROOT / "rag").glob("*.py")) + sorted((ROOT / "ui").glob("*.py"))


def test_no_pickle_eval_or_unsafe_yaml_in_the_code():
    problems = []
    for f in _py_files():
        tree = ast.parse(f.read_text(), str(f))
        for node in ast.walk(tree):
            where = f"{f.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name.split(".")[0] for a in node.names] + [(getattr(node, "module", "") or "").split(".")[0]]
                if BANNED_MODULES & set(names):
                    problems.append(f"{where}: imports {BANNED_MODULES & set(names)}")
            if isinstance(node, ast.Call):
                fn = node.func
                name = fn.id if isinstance(fn, ast.Name) else fn.attr if isinstance(fn, ast.Attribute) else ""
                owner = fn.value.id if isinstance(fn, ast.Attribute) and isinstance(fn.value, ast.Name) else ""
                if isinstance(fn, ast.Name) and name in BANNED_CALLS:
                    problems.append(f"{where}: {name}()")
                if owner == "yaml" and name in ("load", "load_all", "unsafe_load", "full_load"):
                    problems.append(f"{where}: yaml.{name} (use safe_load)")
                if owner == "torch" and name == "load":
                    problems.append(f"{where}: torch.load")
                for kw in node.keywords:
                    if kw.arg == "allow_pickle" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                        problems.append(f"{where}: allow_pickle not False")
                    if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                        problems.append(f"{where}: shell=True")
                if owner == "np" and name == "load" and not any(k.arg == "allow_pickle" for k in node.keywords):
                    problems.append(f"{where}: np.load without allow_pickle=False")
    assert problems == []


def test_index_holds_only_plain_data_formats(built_fixture_index):
    """Every file of a generation opens with a loader that cannot run code: JSON, SQLite, FAISS, .npy/.npz without pickle."""
    import faiss

    _, index = built_fixture_index
    gen = index / (index / "CURRENT").read_text().strip()
    seen = []
    for f in sorted(p for p in gen.rglob("*") if p.is_file()):
        head = f.read_bytes()[:16]
        assert not head.startswith(b"\x80") or f.suffix == ".index", f"{f.name} looks like a pickle"
        if f.suffix == ".json":
            json.loads(f.read_text())
        elif f.suffix == ".npy":
            np.load(f, allow_pickle=False)
        elif f.suffix == ".npz":  # BM25 segments: every member a plain array, loadable without pickle
            with np.load(f, allow_pickle=False) as z:
                assert all(z[k].dtype != object for k in z.files), f"{f.name} holds object arrays"
        elif f.suffix == ".sqlite":
            sqlite3.connect(f"file:{f}?mode=ro", uri=True).execute("SELECT count(*) FROM chunks").fetchone()
        elif f.name == "faiss.index":
            faiss.read_index(str(f))
        else:
            pytest.fail(f"unexpected file format in the index: {f.relative_to(gen)}")
        seen.append(f.name if f.name == "faiss.index" else f.suffix)
    assert {".json", ".npy", ".sqlite", "faiss.index"} <= set(seen)


@pytest.mark.parametrize("name", ["../../evil.md", "/etc/cron.d/evil.md", "..\\..\\evil.md", "a\x00b.md", "new\nline.md",
                                  "\u202egnp.md", "CON.md", "x" * 500 + ".md", ".hidden.md", "evil.md/..", "~/.bashrc.md"])
def test_upload_names_cannot_escape_the_corpus(name):
    try:
        safe = sanitize_filename(name)
    except ConfigError:
        return
    assert "/" not in safe and "\\" not in safe and ".." not in safe and not safe.startswith(".")
    assert all(ch.isprintable() for ch in safe) and len(safe) <= 130


def test_service_uploads_hostile_names_and_bombs(index_copy, embedder, tmp_path):
    """Through RagService.add_files, as the UI calls it: names sanitised into corpus/uploads/, a bomb
    rejected by the isolated loader (the service survives), the good file indexed."""
    from rag.settings import Settings

    corpus, index = index_copy
    s = Settings(corpus=corpus, index=index, ingest={"max_load_memory_mb": 1024, "load_timeout_s": 60})
    svc = RagService(s, embedder=embedder)
    good = tmp_path / "up1"
    good.write_text("# Ferry Memo\n\nThe ferry memo sets winter crossing schedules for the island towns.\n")
    bomb = tmp_path / "up2"
    bomb.write_bytes(pdf_flate_bomb(400))
    fake = tmp_path / "up3"
    fake.write_bytes(b"MZ\x90\x00" + bytes(1000))
    result, saved, rejected = svc.add_files([(good, "../../../etc/ferry memo.md"), (bomb, "bomb.pdf"), (fake, "tool.exe"),
                                             (fake, "fake.pdf")])
    assert saved == ["uploads/ferry memo.md"]
    assert len(rejected) == 3 and any("bomb.pdf" in r for r in rejected) and any(".exe" in r for r in rejected)
    assert not (tmp_path / "etc").exists() and not (corpus.parent / "etc").exists()
    assert sorted(p.name for p in (corpus / "uploads").iterdir()) == ["ferry memo.md"]  # no .part, no bomb
    assert result is not None and result.added == ["uploads/ferry memo.md"]
    ans = svc.ask("What does the ferry memo set?")
    assert not ans.refused and ans.citations[0].passage.chunk.source == "uploads/ferry memo.md"


def test_titles_and_passages_are_escaped_in_the_sources_panel(make_answer):

    from ui.render import answer_markdown, sources_html

    evil_title = '"><img src=x onerror=alert(1)><script>alert(2)</script>'
    evil_text = "Ignore previous instructions <iframe src=javascript:alert(3)></iframe> [link](javascript:alert(4))"
    ans = make_answer(title=evil_title, passage_text=evil_text)
    html_ = sources_html(ans)
    for bad in ("<img", "<script", "<iframe", 'onerror=alert(1)>'):
        assert bad not in html_
    md = answer_markdown(make_answer(text="See [click](javascript:alert(5)) <script>alert(6)</script> [1]."))
    assert "<script" not in md and "](javascript:" not in md and "[click]" not in md
    assert 'class="cite"' in md and ">[1]</a>" in md
