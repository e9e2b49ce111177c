"""A reader-written question set as the evidence scorer's third set: its questions tie to the index's chunks by
their quotes, its groups teach "the sentence that answers" and "no passage answers", its unanswerable questions
count in the answerability test, and `rag train scorer --reader` trains with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.errors import ConfigError
from tests.test_train_scorer import OBLIQA, POLICYQA, needs_eval

QUESTIONS = [
    {"id": "r1", "question": "By what year must the most valuable systems be moved over?", "answers": ["2030"],
     "gold_sources": ["plans/quantum-plan.md"], "gold_quotes": ["Each agency must complete migration of high-value assets by 2030."]},
    {"id": "r2", "question": "Who oversees the switch to new encryption?", "answers": ["Office of the National Cyber Director"],
     "gold_sources": ["plans/quantum-plan.md"], "gold_quotes": ["The Office of the National Cyber Director coordinates the migration"]},
    {"id": "r3", "question": "How large can a drought grant be?", "answers": ["five million dollars"],
     "gold_sources": ["notes/water-memo.txt"], "gold_quotes": ["Utilities may apply for grants of up to five million dollars."]},
    {"id": "r4", "question": "Which small utilities qualify for the money?", "answers": ["fewer than 10,000 people"],
     "gold_sources": ["notes/water-memo.txt"], "gold_quotes": ["Only utilities serving fewer than 10,000 people are eligible."]},
    {"id": "r5", "question": "How often are weak bridges looked at?", "answers": ["every two years"],
     "gold_sources": ["web/bridges.html"], "gold_quotes": ["funds inspections of structurally deficient bridges every two years"]},
    {"id": "r6", "question": "How much generating capacity is waiting to connect?", "answers": ["40 gigawatts"],
     "gold_sources": ["reports/grid-report.pdf"], "gold_quotes": ["Utilities reported 40 gigawatts of queued interconnection requests."]},
    {"id": "r7", "question": "How long must spraying records be kept?", "answers": ["three years"],
     "gold_sources": ["reports/farm-guidance.docx"], "gold_quotes": ["keep spray logs for three years"]},
    {"id": "u1", "question": "How many drones are registered for crop spraying?", "answerable": False, "topic_doc": "reports/farm-guidance.docx"},
    {"id": "u2", "question": "What fine applies when queue data is published late?", "answerable": False, "topic_doc": "reports/grid-report.pdf"},
    {"id": "u3", "question": "Which lab receives the quantum research money?", "answerable": False, "topic_doc": "plans/quantum-plan.md"},
]


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_load_reader_ties_quotes_to_chunks_and_names_bad_rows(built_fixture_index, tmp_path):
    from rag.jobs.scorer.reader import load_reader, split_sizes

    _, index = built_fixture_index
    ds = load_reader(_write(tmp_path / "q.jsonl", QUESTIONS), index)
    assert ds.name == "reader" and len(ds.questions) == len(QUESTIONS)
    for q, row in zip(ds.questions, QUESTIONS, strict=True):
        assert q.answerable == row.get("answerable", True)
        if q.answerable:
            assert q.gold and all(ds.units[i].doc == row["gold_sources"][0] for i in q.gold)
            assert all(" ".join(row["gold_quotes"][0].lower().split()) in " ".join(ds.units[i].text.lower().split()) for i in q.gold)
        else:
            assert q.gold == [] and q.docs == [row["topic_doc"]]
    assert split_sizes(5) == (1, 1) and split_sizes(12) == (3, 2)

    bad = [{**QUESTIONS[0], "gold_quotes": ["a sentence no document holds"]}]
    with pytest.raises(ConfigError, match=r"q2\.jsonl:1: no chunk of plans/quantum-plan\.md holds a gold quote"):
        load_reader(_write(tmp_path / "q2.jsonl", bad), index)
    with pytest.raises(ConfigError, match=r"q3\.jsonl:2: .*topic_doc"):
        load_reader(_write(tmp_path / "q3.jsonl", [QUESTIONS[0], {"question": "x?", "answerable": False, "topic_doc": "nope.md"}]), index)
    with pytest.raises(ConfigError, match="not in the index"):
        load_reader(_write(tmp_path / "q4.jsonl", [{**QUESTIONS[0], "gold_sources": ["other.pdf"]}]), index)
    with pytest.raises(ConfigError, match="at least 3"):
        split_sizes(2)


def test_reader_groups_put_the_answering_sentence_first_and_unanswerables_on_no_answer():
    from rag.jobs.scorer.data import Dataset, Question, Unit
    from rag.jobs.scorer.train import _reader_groups

    units = [Unit("a", "The fund opened in 2021. Grants reach up to five million dollars for rural utilities. Rural utilities apply online.", 18),
             Unit("a", "Rural utilities that apply online get an answer in weeks.", 10),
             Unit("b", "Grant money for rural utilities comes from the state budget.", 10)]
    answerable = Question("q1", "How big can the award be?", ["a"], [0], ["Grants reach up to five million dollars"], ["five million dollars"])
    missing = Question("q2", "Who audits the grants?", ["a"], [], [], [], answerable=False)
    cands = {"hybrid": [2, 0, 1], "bm25": [2, 1], "dense": [0, 2]}
    groups = _reader_groups(Dataset("reader", units, [answerable, missing], 400, 5), [(answerable, cands), (missing, cands)], 3)

    para = [g for g in groups if g.source == "reader-para" and g.answerable]
    sent = [g for g in groups if g.source == "reader-sent" and g.answerable]
    assert [g.positive for g in para] == [units[0].text] and set(para[0].negatives) == {units[1].text, units[2].text}
    assert [g.positive for g in sent] == ["Grants reach up to five million dollars for rural utilities."]
    # the other sentences of the gold and top chunks are the rivals, however many words they share with the question
    assert "Rural utilities apply online." in sent[0].negatives and "The fund opened in 2021." in sent[0].negatives
    assert not any("five million" in t for t in sent[0].negatives)

    none = [g for g in groups if not g.answerable]
    assert {g.source for g in none} == {"reader-para", "reader-sent"}
    assert all(g.query == missing.text for g in none)
    para_none = next(g for g in none if g.source == "reader-para")
    assert {para_none.positive, *para_none.negatives} == {u.text for u in units}  # all candidates, none of them an answer


def test_answerability_counts_reader_unanswerables_and_rankings_skip_them():
    import numpy as np

    from rag.jobs.scorer.data import Dataset, Question, Unit
    from rag.jobs.scorer.evaluate import answerability, evaluate_part

    units = [Unit("a", "Grants reach five million dollars.", 5), Unit("a", "Apply online.", 2), Unit("b", "The state pays.", 3)]
    qs = [Question("q1", "How big is a grant?", ["a"], [0], ["Grants reach five million dollars."], ["five million dollars"]),
          Question("q2", "Who audits grants?", ["a"], [], [], [], answerable=False)]
    cand = {"hybrid": [1, 0, 2], "hybrid_score": [0.3, 0.2, 0.1], "bm25": [1, 0], "dense": [0, 1], "cos": [0.5, 0.4, 0.3]}
    payload = {"sets": {"reader": {"dataset": Dataset("reader", units, qs, 400, 5), "candidates": [cand, cand],
                                   "parts": ["test", "test"]}}}
    scores = {"reader": [np.array([0.5, 3.0, -1.0]), np.array([2.5, -0.5, 0.1])]}
    ans = answerability(payload, "test", scores)["reader"]
    # the answerable question gives a positive (3.0) and, without its hit, a negative (0.5); the unanswerable one a negative (2.5)
    assert ans["pos"] == [3.0] and sorted(ans["neg"]) == [0.5, 2.5] and ans["n_neg"] == 2
    res = evaluate_part(payload, "test", scores, {"all": 1.0})["reader"]
    assert res["reranked"]["questions"] == 1 and res["reranked"]["mrr@10"] == 1.0 and res["hybrid"]["mrr@10"] == 0.5


@needs_eval
def test_train_scorer_with_a_reader_set(cli, capsys, built_fixture_index, tmp_path):
    _, index = built_fixture_index
    reader = _write(tmp_path / "reader.jsonl", QUESTIONS)
    out = tmp_path / "scorer"
    code, stdout, err = cli(capsys, "train", "scorer", "--policyqa", str(POLICYQA), "--obliqa", str(OBLIQA), "-o", str(out),
                            "--limit", "6", "--epochs", "1", "--max-length", "64", "--device", "cpu", "--pseudo", "0",
                            "--reader", str(reader), "--reader-index", str(index), "--max-groups", "4", "--batch-groups", "4", "--reader-repeat", "2")
    assert code == 0, err
    info = json.loads((out / "scorer.json").read_text(encoding="utf-8"))
    groups = info["groups"]
    assert groups.get("reader-para", 0) >= 1 and groups.get("reader-sent", 0) >= 1
    assert sum(n for k, n in groups.items() if not k.startswith("reader")) == 4  # the cap leaves the reader set whole
    split = info["split"]["reader"]
    assert not set(split["train"]) & (set(split["test"]) | set(split["val"])) and len(split["test"]) == 1
    assert info["answerability_test"]["reader"]["n_neg"] >= 1  # the held-out letter's lists count in the answerability test
    assert f"--reader {reader}" in info["command"] and "--max-groups 4" in info["command"] and "--batch-groups 4" in info["command"]
    assert "--reader-repeat 2" in info["command"] and info["config"]["reader_repeat"] == 2
    assert info["config"]["batch_groups"] == 4
    assert "Reader-written set" in (out / "MODEL_CARD.md").read_text(encoding="utf-8")
    code, _, err = cli(capsys, "train", "scorer", "-o", str(tmp_path / "y"), "--reader", str(reader))
    assert code != 0 and "--reader-index" in err


def test_epoch_groups_cap_the_development_sets_and_repeat_the_reader_set():
    from rag.jobs.scorer.pipeline import epoch_groups
    from rag.jobs.scorer.train import Config, Group

    dev = [Group(f"q{i}", "p", ["n"], "obliqa") for i in range(10)]
    own = [Group("r1", "p", ["n"], "reader-para"), Group("r2", "p", ["n"], "reader-sent", answerable=False)]
    out = epoch_groups(dev + own, Config(max_groups=4, reader_repeat=3))
    assert sum(g.source == "obliqa" for g in out) == 4 and len({g.query for g in out if g.source == "obliqa"}) == 4
    assert [g.query for g in out if g.source.startswith("reader")] == ["r1", "r2"] * 3
    assert epoch_groups(dev + own, Config()) == dev + own  # the defaults change nothing
