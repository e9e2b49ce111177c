from __future__ import annotations

import json
import math

import pytest

from rag.jobs.datasets import load_jsonl, load_squad
from rag.jobs.metrics import (
    average_precision_at_k,
    chunk_matches,
    exact_match,
    mrr,
    ndcg_at_k,
    recall_at_k,
    retrieval_metrics,
    token_f1,
)


def test_rank_metrics_hand_computed():
    hits = [False, True, False, True]
    assert recall_at_k(hits, 1) == 0.0 and recall_at_k(hits, 2) == 1.0
    assert mrr(hits) == 0.5 and mrr([]) == 0.0 and mrr([False, False]) == 0.0
    # DCG = 1/log2(3) + 1/log2(5); ideal for 2 relevant = 1 + 1/log2(3)
    assert ndcg_at_k(hits, 10, 2) == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3)))
    # AP@10 with 2 relevant: (1/2 + 2/4) / 2
    assert average_precision_at_k(hits, 10, 2) == pytest.approx(0.5)
    assert average_precision_at_k([True, True], 10, 4) == pytest.approx(0.5)  # half the gold items found
    # more retrieved hits than gold items (several chunks of one passage) stay within 0..1
    assert ndcg_at_k([True, True, True], 10, 1) == pytest.approx(1.0)
    assert average_precision_at_k([True, False, True], 10, 1) == pytest.approx((1 + 2 / 3) / 2)
    m = retrieval_metrics([([True], 1), ([False, False], 1)], ks=(1, 5))
    assert m["recall@1"] == 0.5 and m["mrr"] == 0.5 and m["questions"] == 2


def test_squad_answer_metrics():
    assert exact_match("The Paris", ["paris"]) == 1.0 and exact_match("Paris, France", ["Paris"]) == 0.0
    assert token_f1("paris france", ["Paris"]) == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert token_f1("", ["x"]) == 0.0 and token_f1("x", []) == 0.0


def test_chunk_matches():
    gold = "A PFP Operator offering an exit facility on a Private Financing Platform must provide the following information to its PFP Clients"
    assert chunk_matches("Intro. " + gold + " More.", [gold])
    assert chunk_matches("Previous rule text. A PFP Operator offering an exit facility on a Private Financing Platform must", [gold])
    assert not chunk_matches("Something else entirely about banking licences and capital.", [gold])
    assert chunk_matches("We share your email address with partners.", [], ["email address"])


def test_loaders(tmp_path):
    squad = {"data": [{"title": "Acme Privacy", "paragraphs": [{"context": "We collect your email address.", "qas": [
        {"id": "q1", "question": "What is collected?", "answers": [{"text": "email address", "answer_start": 16}]}]}]}]}
    p = tmp_path / "s.json"
    p.write_text(json.dumps(squad))
    es = load_squad(p, tmp_path / "corpus")
    assert es.questions[0].filter == {"source": ["acme-privacy.md"]} and es.questions[0].answers == ["email address"]
    assert "We collect your email address." in (tmp_path / "corpus/acme-privacy.md").read_text()
    j = tmp_path / "q.jsonl"
    j.write_text('{"question": "Q?", "answers": ["a"], "gold_sources": ["x.md"], "answerable": false}\n')
    q = load_jsonl(j).questions[0]
    assert q.question == "Q?" and not q.answerable and q.gold_sources == ["x.md"]
    from rag.errors import ConfigError

    j.write_text("{not json\n")
    with pytest.raises(ConfigError, match="q.jsonl:1"):
        load_jsonl(j)


def test_shipped_eval_set_is_well_formed():
    from pathlib import Path

    qs = load_jsonl(Path(__file__).resolve().parent.parent / "eval/shipped.jsonl").questions
    assert len(qs) >= 60 and sum(not q.answerable for q in qs) >= 15
    assert all(q.gold_sources and q.gold_passages for q in qs if q.answerable)


def test_rag_eval_end_to_end(cli, tmp_path, capsys, monkeypatch):

    monkeypatch.setenv("RAG_CACHE_DIR", str(tmp_path / "cache"))
    paras = {
        "Acme Privacy": ["We collect your email address and phone number when you register.",
                         "We share data with advertising partners only with your consent.",
                         "You may delete your account at any time from the settings page."],
        "Globex Privacy": ["Globex stores payment card numbers with a PCI-certified processor.",
                           "Cookies remember your language preference for one year.",
                           "Children under 13 may not use the Globex service."],
    }
    qs = {"Acme Privacy": [("What does Acme collect at registration?", "email address and phone number"),
                           ("When does Acme share data with advertisers?", "only with your consent"),
                           ("How can users delete their Acme account?", "from the settings page")],
          "Globex Privacy": [("Where are payment card numbers stored?", "PCI-certified processor"),
                             ("How long do cookies remember the language?", "one year"),
                             ("Who may not use the Globex service?", "Children under 13")]}
    data = {"data": [{"title": t, "paragraphs": [{"context": c, "qas": [
        {"id": f"{t[:4]}{i}{j}", "question": q, "answers": [{"text": a, "answer_start": c.find(a)}]}
        for j, (q, a) in enumerate(qs[t]) if a in c]} for i, c in enumerate(cs)]} for t, cs in paras.items()]}
    f = tmp_path / "mini.json"
    f.write_text(json.dumps(data))
    out = tmp_path / "report"
    code, stdout, err = cli(capsys, "eval", str(f), "--format", "squad", "--mode", "dense", "--mode", "hybrid",
                                "--answers", "--answer-mode", "extractive", "-o", str(out))
    assert code == 0, err
    assert "eval mini: dense: R@5" in stdout
    for name in ("report.md", "metrics.json", "per_question.jsonl", "recall_at_k.png", "score_distribution.png"):
        assert (out / name).stat().st_size > 0, name
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["retrieval"]) == {"dense", "hybrid"} and m["retrieval"]["hybrid"]["recall@5"] == 1.0
    a = m["answers"]["extractive"]
    assert a["questions"] == 7 and a["f1"] > 0.3 and a["refusal_accuracy"] is not None  # 6 + 1 cross-policy unanswerable
    rows = [json.loads(x) for x in (out / "per_question.jsonl").read_text().splitlines()]
    assert any(r.get("answer_mode") == "extractive" and not r["answerable"] for r in rows)
    report = (out / "report.md").read_text()
    assert "| hybrid |" in report and "Worst 10 questions" in report and "![recall@k](recall_at_k.png)" in report
