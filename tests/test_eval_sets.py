"""The committed question sets are what they claim: gold quotes found on their pages, answers in the
gold text, and (for the paraphrased set) no question copying a 4-word phrase of any document."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _checker():
    spec = importlib.util.spec_from_file_location("check_questions", ROOT / "eval" / "check_questions.py")
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["check_questions"] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def test_paraphrased_set_is_verified_against_the_corpus():
    problems = _checker().check_question_set(ROOT / "eval" / "paraphrased.jsonl", ROOT / "corpus")
    assert problems == []


def test_paraphrased_set_has_the_promised_shape():
    rows = [json.loads(line) for line in (ROOT / "eval" / "paraphrased.jsonl").read_text().splitlines() if line.strip()]
    unanswerable = [r for r in rows if not r["answerable"]]
    assert len(rows) >= 60 and len(unanswerable) >= 15
    for split in ("calibrate", "report"):
        part = [r for r in rows if r["split"] == split]
        assert sum(not r["answerable"] for r in part) >= 7 and sum(r["answerable"] for r in part) >= 20


def test_the_checker_catches_a_copied_phrase_and_a_wrong_quote(tmp_path):
    rows = [json.loads(line) for line in (ROOT / "eval" / "paraphrased.jsonl").read_text().splitlines() if line.strip()]
    bad = dict(next(r for r in rows if r["answerable"] and r["gold_quotes"]))
    bad["question"] = bad["gold_quotes"][0] + "?"  # copies the document's words
    bad["gold_quotes"] = ["a sentence that appears in no document of the corpus at all"]
    f = tmp_path / "bad.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in [*rows, {**bad, "id": "bad1"}]) + "\n")
    problems = _checker().check_question_set(f, ROOT / "corpus")
    assert any("bad1" in p and "shares phrase" in p for p in problems) and any("bad1" in p and "quote not found" in p for p in problems)


NTIA = ROOT.parent / "shared" / "extra" / "ntia-open-weights-comments"


@pytest.mark.skipif(not NTIA.is_dir(), reason="the NTIA comment letters are not in ../shared/extra")
def test_reader_training_set_is_verified_against_its_letters(tmp_path):
    """eval/ntia-reader.jsonl (the evidence scorer's reader-written set) is checked like the paraphrased set, by document:
    quotes on their pages, answers in the quotes, no 4-word run of the question's own letter, a topic_doc on every row."""
    check = _checker().check_question_set
    path = ROOT / "eval" / "ntia-reader.jsonl"
    assert check(path, NTIA, halves=False) == []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(rows) >= 200 and sum(not r["answerable"] for r in rows) >= 50
    assert len({r["topic_doc"] for r in rows}) >= 9
    bad = {**next(r for r in rows if not r["answerable"]), "id": "bad1", "topic_doc": "missing.pdf"}
    f = tmp_path / "bad.jsonl"
    f.write_text(path.read_text(encoding="utf-8") + json.dumps(bad) + "\n", encoding="utf-8")
    assert any(p.startswith("bad1: topic_doc") for p in check(f, NTIA, halves=False))
