"""Issue 15, finding 6: `rag batch --resume` must never lose, skip or corrupt answers.

A fake answerer stands in for the models: these tests are about the output file, not the answers.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from rag.errors import ConfigError
from rag.jobs.batch import BatchItem, ResultWriter, check_items, read_input, run_batch
from rag.service import RagService
from rag.settings import Settings


class _Answer:
    refused = False

    def __init__(self, q: str) -> None:
        self.q = q

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.q,
            "answer": f"answer to {self.q}",
            "refused": False,
            "produced_by": "extractive",
            "citations": [],
            "timings": {"total_s": 0.0},
        }


class FakeAnswerer:
    def __init__(self) -> None:
        self.asked: list[str] = []

    def ask_many(self, questions: list[str], **_: Any) -> list[Any]:
        self.asked += questions
        return [_Answer(q) for q in questions]


def _run(inp: Path, out: Path, resume: bool) -> tuple[Any, FakeAnswerer]:
    items = read_input(inp)
    check_items(items)
    fake = FakeAnswerer()
    return run_batch(fake, items, ResultWriter(out, resume, source=inp), batch_size=2), fake


@pytest.mark.parametrize("ext", [".csv", ".jsonl"])
def test_output_same_as_input_refused(tmp_path, ext):
    inp = tmp_path / f"q{ext}"
    body = "id,question\na,What is A?\n" if ext == ".csv" else '{"id": "a", "question": "What is A?"}\n'
    inp.write_text(body)
    for out in (inp, tmp_path / "sub" / ".." / inp.name):
        for resume in (True, False):
            with pytest.raises(ConfigError, match="same file as the input"):
                ResultWriter(out, resume, source=inp)
    assert inp.read_text() == body  # untouched


def test_output_same_as_input_refused_through_the_service(tmp_path):
    inp = tmp_path / "q.csv"
    inp.write_text("id,question\na,What is A?\n")
    svc = RagService(Settings(index=tmp_path / "index", corpus=tmp_path / "corpus"))
    with pytest.raises(ConfigError, match="same file as the input"):
        svc.batch(inp, inp, resume=True)
    assert inp.read_text() == "id,question\na,What is A?\n"


def test_resume_into_csv_with_other_columns_refused(tmp_path):
    inp = tmp_path / "q.csv"
    inp.write_text("id,question\na,What is A?\nb,What is B?\n")
    out = tmp_path / "other.csv"
    out.write_text("name,score\nkim,3\n")
    with pytest.raises(ConfigError, match="columns"):
        ResultWriter(out, True, source=inp)
    assert out.read_text() == "name,score\nkim,3\n"


def test_resume_csv_missing_an_input_column_refused(tmp_path):
    inp = tmp_path / "q.csv"
    inp.write_text("id,question\na,What is A?\n")
    out = tmp_path / "a.csv"
    _run(inp, out, False)
    inp.write_text("id,question,team\na,What is A?,x\nb,What is B?,y\n")  # a column the output has no place for
    with pytest.raises(ConfigError, match="team"):
        _run(inp, out, True)


@pytest.mark.parametrize(
    "content,match",
    [
        ('{"id": "a", "question": "What is A?"}\n', "not a batch output"),  # an input file, not answers
        ('{"id": "a", "answer": "x", "refused": false}\n[1, 2]\n', "line 2"),
        ('"just a string"\n', "line 1"),
    ],
)
def test_resume_into_jsonl_that_is_not_an_output_refused(tmp_path, content, match):
    inp = tmp_path / "q.txt"
    inp.write_text("What is A?\n")
    out = tmp_path / "a.jsonl"
    out.write_text(content)
    with pytest.raises(ConfigError, match=match):
        ResultWriter(out, True, source=inp)
    assert out.read_text() == content


def test_resume_jsonl_with_non_object_line_is_one_line_error_in_cli(cli, capsys, tmp_path):
    inp = tmp_path / "q.txt"
    inp.write_text("What is A?\n")
    out = tmp_path / "a.jsonl"
    out.write_text("[1, 2]\n")
    code, _, err = cli(capsys, "batch", str(inp), "--output", str(out), "--resume", "--index", str(tmp_path / "index"))
    assert code == 2 and "Traceback" not in err and "a.jsonl" in err and "line 1" in err


def test_resume_into_xlsx_with_other_columns_refused(tmp_path):
    import openpyxl

    inp = tmp_path / "q.txt"
    inp.write_text("What is A?\n")
    out = tmp_path / "a.xlsx"
    wb = openpyxl.Workbook()
    wb.active.append(["name", "score"])
    wb.active.append(["kim", 3])
    wb.save(out)
    with pytest.raises(ConfigError, match="columns"):
        ResultWriter(out, True, source=inp)


def test_unique_id_renaming_never_collides():
    items = [BatchItem(i, f"Question {n}?") for n, i in enumerate(["a", "a", "a#2", "a"])]
    warnings, _ = check_items(items)
    ids = [it.id for it in items]
    assert len(set(ids)) == 4 and ids[0] == "a" and ids[2] == "a#2"
    assert ids == ["a", "a#3", "a#2", "a#4"]
    again = [BatchItem(i, f"Question {n}?") for n, i in enumerate(["a", "a", "a#2", "a"])]
    check_items(again)
    assert [it.id for it in again] == ids  # stable: a resume sees the same ids


def test_resume_answers_every_question_with_colliding_ids(tmp_path):
    inp = tmp_path / "q.csv"
    inp.write_text("id,question\na,Q one?\na,Q two?\na#2,Q three?\na,Q four?\n")
    out = tmp_path / "a.jsonl"
    inp_part = tmp_path / "part.csv"
    inp_part.write_text("id,question\na,Q one?\na,Q two?\n")
    # first run answers only the first two rows (as if killed), the resume must answer the other two
    items = read_input(inp)
    check_items(items)
    writer = ResultWriter(out, False, source=inp)
    run_batch(FakeAnswerer(), items[:2], writer)
    summary, fake = _run(inp, out, True)
    assert sorted(fake.asked) == ["Q four?", "Q three?"] and summary.skipped_done == 2
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["question"] for r in recs) == ["Q four?", "Q one?", "Q three?", "Q two?"]
    assert len({r["id"] for r in recs}) == 4


@pytest.mark.parametrize("ext", [".jsonl", ".csv", ".xlsx"])
def test_bad_rows_journaled_once(tmp_path, ext):
    inp = tmp_path / "q.csv"
    inp.write_text("id,question\na,What is A?\nb,\nc,What is C?\n")
    out = tmp_path / f"a{ext}"
    first, _ = _run(inp, out, False)
    assert first.bad_rows == 1 and first.answered == 2
    for _ in range(2):
        again, fake = _run(inp, out, True)
        assert fake.asked == [] and again.skipped_done == 3 and again.answered == 0
    recs = list(ResultWriter(out, True, source=inp).records())
    assert [r["id"] for r in recs].count("b") == 1 and len(recs) == 3
    if ext == ".csv":
        with open(out, newline="") as f:
            assert len(list(csv.DictReader(f))) == 3
