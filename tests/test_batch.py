from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rag.answer.answerer import Answerer
from rag.errors import ConfigError
from rag.jobs.batch import ResultWriter, check_items, read_input, run_batch
from rag.retrieve.retriever import Retriever
from rag.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = [
    "What must drone operators hold?",
    "How often are fracture-critical members inspected?",
    "When must agencies inventory cryptographic systems?",
    "What is the recipe for sourdough bread?",
    "Which utilities are eligible for drought grants?",
    "What does the grid report recommend?",
]


@pytest.fixture()
def answerer(built_fixture_index, embedder):
    s = Settings(index=built_fixture_index[1], answer={"mode": "extractive"})
    return Answerer(Retriever.open(s, embedder), s)


def test_read_each_input_format(tmp_path):
    (tmp_path / "q.txt").write_text("First question?\n\n  Second question?  \n")
    assert [(i.id, i.question) for i in read_input(tmp_path / "q.txt")] == [("q1", "First question?"), ("q3", "Second question?")]

    (tmp_path / "q.csv").write_text("ID,Question,analyst\na1,What is A?,kim\n,What is B?,lee\na3,,max\n")
    items = read_input(tmp_path / "q.csv")
    assert [(i.id, i.question, i.extra, i.error) for i in items] == [
        ("a1", "What is A?", {"analyst": "kim"}, None), ("row3", "What is B?", {"analyst": "lee"}, None), ("a3", "", {"analyst": "max"}, "empty question")]

    import openpyxl

    wb = openpyxl.Workbook()
    wb.active.append(["question", "topic"])
    wb.active.append(["What is C?", "grid"])
    wb.save(tmp_path / "q.xlsx")
    assert [(i.id, i.question, i.extra) for i in read_input(tmp_path / "q.xlsx")] == [("row2", "What is C?", {"topic": "grid"})]

    (tmp_path / "q.jsonl").write_text('{"id": "x1", "question": "What is D?", "team": "t"}\n{broken\n{"id": "x3"}\n')
    items = read_input(tmp_path / "q.jsonl")
    assert items[0].extra == {"team": "t"} and "invalid JSON" in items[1].error and "question" in items[2].error

    (tmp_path / "nocol.csv").write_text("query\nWhat?\n")
    with pytest.raises(ConfigError, match="'question' column"):
        read_input(tmp_path / "nocol.csv")
    with pytest.raises(ConfigError, match="unsupported input"):
        read_input(tmp_path / "q.pdf")


def test_duplicates_reported():
    from rag.jobs.batch import BatchItem

    items = [BatchItem("a", "Same question?"), BatchItem("a", "same   QUESTION?"), BatchItem("c", "")]
    items[2].error = "empty question"
    warnings, dups = check_items(items)
    assert dups == 1 and items[1].id == "a#2"
    assert any("duplicate id" in w for w in warnings) and any("duplicate of question a" in w for w in warnings)


@pytest.mark.parametrize("ext", [".jsonl", ".csv", ".xlsx"])
def test_batch_outputs(answerer, tmp_path, ext):
    inp = tmp_path / "q.jsonl"
    inp.write_text("".join(json.dumps({"id": f"q{i}", "question": q, "topic": f"t{i}"}) + "\n" for i, q in enumerate(QUESTIONS)) + "{bad\n")
    out = tmp_path / f"answers{ext}"
    items = read_input(inp)
    summary = run_batch(answerer, items, ResultWriter(out, resume=False), batch_size=4)
    assert summary.answered + summary.refused == len(QUESTIONS) and summary.bad_rows == 1 and summary.failed == 0
    assert summary.refused >= 1  # the sourdough question
    assert "questions/min" in summary.line()
    if ext == ".jsonl":
        recs = [json.loads(x) for x in out.read_text().splitlines()]
        good = [r for r in recs if not r.get("error")]
        assert {"question", "answer", "refused", "citations", "passages", "timings", "id", "input"} <= set(good[0])
        drone = next(r for r in good if r["id"] == "q0")
        assert drone["citations"][0]["source"] == "reports/farm-guidance.docx" and drone["input"] == {"topic": "t0"}
        # same answer as `rag ask`
        single = answerer.ask(QUESTIONS[0])
        assert drone["answer"] == single.text
    elif ext == ".csv":
        rows = list(csv.DictReader(out.open()))
        drone = next(r for r in rows if r["id"] == "q0")
        assert drone["refused"] == "False" and "Farm Drone Guidance p.1" in drone["citations"] and drone["topic"] == "t0"
    else:
        import openpyxl

        rows = list(openpyxl.load_workbook(out).active.iter_rows(values_only=True))
        assert rows[0][:4] == ("id", "question", "answer", "refused") and len(rows) == len(QUESTIONS) + 2
        assert not out.with_name(out.name + ".partial.jsonl").exists()
    with pytest.raises(ConfigError, match="--resume"):
        ResultWriter(out, resume=False)


KILL = r"""
import sys, time
from pathlib import Path
from rag.answer.answerer import Answerer
from rag.jobs.batch import ResultWriter, read_input, run_batch
from rag.retrieve.retriever import Retriever
from rag.settings import Settings
s = Settings(index=Path(sys.argv[1]), answer={"mode": "extractive"})
a = Answerer(Retriever.open(s), s)
orig = a.ask_many
def slow(*x, **k):
    time.sleep(0.4)
    return orig(*x, **k)
a.ask_many = slow
run_batch(a, read_input(Path(sys.argv[2])), ResultWriter(Path(sys.argv[3]), resume=len(sys.argv) > 4), batch_size=1)
"""


@pytest.mark.parametrize("ext", [".jsonl", ".csv"])
def test_resume_after_kill(built_fixture_index, answerer, tmp_path, ext):
    index = built_fixture_index[1]
    qs = [f"{q} (variant {i})" for i in range(3) for q in QUESTIONS]
    inp = tmp_path / "q.txt"
    inp.write_text("\n".join(qs) + "\n")
    out = tmp_path / f"out{ext}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([sys.executable, "-c", KILL, str(index), str(inp), str(out)], env=env)
    deadline = time.time() + 180
    while time.time() < deadline:
        if out.exists() and len(out.read_bytes().splitlines()) >= 5:
            break
        time.sleep(0.1)
    p.send_signal(signal.SIGKILL)
    p.wait()
    with open(out, "ab") as f:  # simulate a record torn mid-write by the kill
        f.write(b'{"id": "q9", "question": "torn' if ext == ".jsonl" else b"q9,torn row")
    before = len(list(ResultWriter(out, resume=True).records()))
    assert 3 <= before < len(qs)
    summary = run_batch(answerer, read_input(inp), ResultWriter(out, resume=True), batch_size=4)
    assert summary.skipped_done == before
    ids = [r["id"] for r in ResultWriter(out, resume=True).records()]
    assert sorted(ids) == sorted(f"q{i}" for i in range(1, len(qs) + 1))  # none lost, none twice


def test_ask_many_matches_ask_with_generation(fake_generator, built_fixture_index, embedder):

    s = Settings(index=built_fixture_index[1], answer={"mode": "auto"})
    a = Answerer(Retriever.open(s, embedder), s, generator=fake_generator("Operators must hold a remote pilot certificate [1]."))
    many = a.ask_many(QUESTIONS[:2], batch_size=2)
    for q, m in zip(QUESTIONS[:2], many, strict=True):
        single = a.ask(q)
        assert m.text == single.text and m.refused == single.refused and [c.n for c in m.citations] == [c.n for c in single.citations]


def test_cli_batch(cli, capsys, built_fixture_index, tmp_path):

    inp = tmp_path / "q.txt"
    inp.write_text("\n".join(QUESTIONS[:3]) + "\n" + QUESTIONS[0] + "\n")
    out = tmp_path / "a.jsonl"
    code, stdout, err = cli(capsys, "batch", str(inp), "-o", str(out), "--index", str(built_fixture_index[1]), "--answer-mode", "extractive")
    assert code == 0, err
    assert stdout.startswith("batch: ") and "1 duplicate questions" in stdout and "questions/min" in stdout
    assert "duplicate of question q1" in err
    assert len(out.read_text().splitlines()) == 4
    code, stdout, err = cli(capsys, "batch", str(inp), "-o", str(out), "--index", str(built_fixture_index[1]))
    assert code == 2 and "--resume" in err
