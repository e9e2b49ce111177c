"""Crash safety: SIGKILL `rag index build` and `rag batch` at many points (every checkpoint of a
build, plus random moments between them) and prove that after each kill the index opens, passes
`rag index check`, answers, and the next run finishes the work with nothing lost or doubled.

The kills come from rag.faults (RAG_TEST_KILL_AT=N: the process SIGKILLs itself at its N-th
checkpoint) and from outside (SIGKILL at a random delay once the build holds its lock).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rag import faults
from rag.answer.answerer import Answerer
from rag.index.build import build_index
from rag.index.reader import IndexStore
from rag.ingest.files import discover, relative_source
from rag.jobs.batch import ResultWriter
from rag.retrieve.retriever import Retriever
from rag.settings import Settings

pytestmark = pytest.mark.crash

ROOT = Path(__file__).resolve().parent.parent
RAG = [sys.executable, "-m", "rag.cli"]


def _env(corpus: Path, index: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", RAG_CORPUS=str(corpus), RAG_INDEX=str(index),
               RAG_CONFIG=str(index.parent / "none.toml"), PYTHONPATH=str(ROOT))
    env.update(extra)
    return env


def _round(corpus: Path, i: int) -> None:
    """One round of edits: three files added, one changed, one deleted, so every build stage has work."""
    d = corpus / "rounds"
    d.mkdir(exist_ok=True)
    for j in range(3):
        (d / f"memo-{i}-{j}.md").write_text(
            f"# Bridge memo {i}-{j}\n\nMemo {i}-{j} orders inspections of {10 * i + j} county bridges"
            f" before winter {2020 + i}.\n\n## Funding\n\nInspection crews {i}{j} are paid from the state road fund.\n")
    (d / "changing.md").write_text(f"# Changing note\n\nRevision {i} of the note on salt storage sheds.\n")
    old = sorted(d.glob(f"memo-{i - 2}-*.md"))
    if old:
        old[0].unlink()


def _expected(corpus: Path) -> set[str]:
    files, _ = discover(corpus)
    return {relative_source(f, corpus) for f in files}


def _assert_usable(index: Path, embedder, allowed: list[set[str]]) -> set[str]:
    """Opens, is consistent (FAISS == SQLite == manifest == BM25), answers; its documents are
    exactly the state before or after the killed build, never a mix."""
    store = IndexStore(index)
    assert store.check() == [], store.check()
    docs = {d.source for d in store.documents()}
    assert docs in allowed, f"documents are neither the old nor the new state: {sorted(docs ^ allowed[0])[:6]}"
    s = Settings(index=index)
    r = Retriever.open(s, embedder)
    hits = r.search(["Which bridges must be inspected before winter?"], 5)[0]
    assert hits and all(h.chunk.chunk_id for h in hits)
    ans = Answerer(r, s).ask("What does the quantum readiness plan require?")
    assert not ans.refused and ans.citations
    known = {c.chunk_id for c in store.iter_chunks()}
    assert all(c.passage.chunk.chunk_id in known for c in ans.citations)
    return docs


def _assert_cli_check_passes(corpus: Path, index: Path, cwd: Path) -> None:
    """`rag index check` through the real entry point: exit 0 and its ok line (exit 5 lists problems)."""
    out = subprocess.run([*RAG, "index", "check"], env=_env(corpus, index), capture_output=True, text=True, cwd=cwd)
    assert out.returncode == 0 and out.stdout.startswith("ok: "), out.stdout + out.stderr


@pytest.mark.parametrize("damage", ["rows", "bm25", "faiss"])
def test_final_check_fails_on_a_corrupted_index(index_copy, tmp_path, damage):
    """The crash tests end with `_assert_cli_check_passes`: it must be able to fail (it once could not: exit 0
    with problems listed, so a corrupted index passed)."""
    import shutil
    import sqlite3

    corpus, index = index_copy
    _assert_cli_check_passes(corpus, index, tmp_path)
    gen = index / (index / "CURRENT").read_text().strip()
    if damage == "rows":
        db = sqlite3.connect(gen / "chunks.sqlite")
        db.execute("DELETE FROM chunks WHERE rowid = (SELECT min(rowid) FROM chunks)")
        db.commit()
        db.close()
    elif damage == "bm25":
        shutil.rmtree(gen / "bm25")
    else:
        (gen / "faiss.index").write_bytes((gen / "faiss.index").read_bytes()[:500])
    with pytest.raises(AssertionError, match="problem: "):
        _assert_cli_check_passes(corpus, index, tmp_path)


def _leftovers(index: Path) -> list[str]:
    return sorted(p.name for p in index.iterdir() if p.name.startswith("tmp-"))


def test_index_build_survives_sigkill_at_every_point(index_copy, embedder, tmp_path, monkeypatch, capsys):
    corpus, index = index_copy
    # 1. list the checkpoints of one round's build (in-process, traced)
    trace = tmp_path / "trace.txt"
    _round(corpus, 0)
    monkeypatch.setenv("RAG_TEST_CHECKPOINTS", str(trace))
    faults.reset()
    build_index(Settings(corpus=corpus, index=index), embedder=embedder)
    monkeypatch.delenv("RAG_TEST_CHECKPOINTS")
    names = [ln.split(" ", 1)[1] for ln in trace.read_text().splitlines()]
    assert len(names) >= 15, names

    rnd = random.Random(11)
    # +1: the traced build had one generation before it, later builds have two, so theirs prune one more
    plan: list[tuple[str, float]] = [("checkpoint", k) for k in range(1, len(names) + 2)]
    plan += [("random", rnd.uniform(0.0, 0.25)) for _ in range(5)]
    survived: list[str] = []
    for i, (how, where) in enumerate(plan, start=1):
        before = _expected(corpus)
        _round(corpus, i)
        after = _expected(corpus)
        trace_i = tmp_path / f"trace-{i}.txt"
        extra = {"RAG_TEST_CHECKPOINTS": str(trace_i)}
        if how == "checkpoint":
            extra["RAG_TEST_KILL_AT"] = str(int(where))
        p = subprocess.Popen([*RAG, "index", "build"], env=_env(corpus, index, **extra),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path)
        if how == "random":  # once the build holds the lock, kill it at a random moment
            deadline = time.time() + 120
            while time.time() < deadline and p.poll() is None and "build.writer_ready" not in (
                    trace_i.read_text() if trace_i.exists() else ""):
                time.sleep(0.01)
            time.sleep(where)
            p.send_signal(signal.SIGKILL)
        err = p.communicate(timeout=300)[1].decode(errors="replace")
        passed = trace_i.read_text().splitlines() if trace_i.exists() else []
        if p.returncode != -signal.SIGKILL:
            assert p.returncode == 0, err[-2000:]  # finished before the kill landed: fine, but not counted
        else:
            survived.append(f"{how}:{passed[-1].split(' ', 1)[1] if passed else 'before any checkpoint'}")
        _assert_usable(index, embedder, [before, after])
        # the next build completes the work and cleans up after the dead one
        res = build_index(Settings(corpus=corpus, index=index), embedder=embedder)
        assert res.skipped == []
        assert _assert_usable(index, embedder, [after]) == after
        assert _leftovers(index) == []
        assert len(list(index.glob("gen-*"))) <= 2
    # the CLI's own check agrees at the end
    _assert_cli_check_passes(corpus, index, tmp_path)
    with capsys.disabled():
        print(f"\nkill points survived: {len(survived)} ({len(set(survived))} distinct): {sorted(set(survived))}")
    assert len(survived) >= 20


def _batch(questions: Path, out: Path, index: Path, tmp_path: Path, kill_at: int | None) -> int:
    extra = {"RAG_TEST_KILL_AT": str(kill_at)} if kill_at else {}
    p = subprocess.run([*RAG, "batch", str(questions), "-o", str(out), "--resume", "--batch-size", "2",
                        "--index", str(index)], env=_env(index.parent / "corpus", index, **extra),
                       capture_output=True, text=True, cwd=tmp_path, timeout=300)
    return p.returncode


@pytest.mark.parametrize("ext,kills", [(".jsonl", [2, 3, 1, 6]), (".csv", [3, 4]), (".xlsx", [7, 15, 2])])
def test_batch_output_survives_sigkill(built_fixture_index, tmp_path, ext, kills):
    corpus, index = built_fixture_index
    qs = [f"What must drone operators hold? (copy {i})" for i in range(5)] + \
         [f"How many gigawatts of interconnection requests are queued? (copy {i})" for i in range(5)]
    questions = tmp_path / "q.txt"
    questions.write_text("\n".join(qs) + "\n")
    out = tmp_path / f"answers{ext}"
    rnd = random.Random(5)
    killed = 0
    for k in kills:
        rc = _batch(questions, out, index, tmp_path, k)
        if rc == -signal.SIGKILL:
            killed += 1
        recs = list(ResultWriter(out, resume=True).records())  # readable after every kill
        ids = [str(r["id"]) for r in recs]
        assert len(ids) == len(set(ids)), "a question answered twice"
        target = out.with_name(out.name + ".partial.jsonl") if ext == ".xlsx" else out
        if killed % 2 == 0 and target.exists() and target.stat().st_size > 50:  # and a torn tail, as a power cut leaves
            data = target.read_bytes()
            cut = len(data) - rnd.randint(1, 40)
            target.write_bytes(data[:cut])
    assert killed >= len(kills) - 1
    assert _batch(questions, out, index, tmp_path, None) == 0
    recs = list(ResultWriter(out, resume=True).records())
    assert sorted(str(r["id"]) for r in recs) == sorted(f"q{i}" for i in range(1, len(qs) + 1))
    store = IndexStore(index)
    known = {c.chunk_id for c in store.iter_chunks()}
    if ext == ".jsonl":  # full records: every citation names a chunk of the index
        cited = [c["chunk_id"] for r in recs for c in r.get("citations") or []]
        assert cited and set(cited) <= known
    if ext == ".xlsx":
        assert not out.with_name(out.name + ".partial.jsonl").exists()
