from __future__ import annotations

import json
import math

import pytest

from rag.jobs.datasets import load_jsonl, load_squad
from rag.jobs.metrics import (
    average_precision_at_k,
    chunk_matches,
    contains_answer,
    exact_match,
    items_within_words,
    mrr,
    ndcg_at_k,
    recall_at_k,
    recall_within_words,
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


def test_key_fact_is_a_normalised_containment():
    answer = 'March 27, 2024 [2]: "Written comments must be received on or before March 27, 2024."'
    assert contains_answer(answer, ["march 27 2024"]) == 1.0
    assert contains_answer(answer, ["the Chief AI Officer", "March 27, 2024"]) == 1.0
    assert contains_answer(answer, ["March 28, 2024"]) == 0.0
    assert contains_answer("Over 10,000 comments", ["0,000"]) == 0.0  # whole words only
    assert contains_answer("develop new export controls on semiconductor manufacturing sub-systems.", ["manufacturing subsystems"]) == 1.0
    assert contains_answer("over a seven-week span", ["seven week"]) == 1.0
    assert contains_answer("over a seven-week span", ["sevenweeks"]) == 0.0
    assert contains_answer("anything", []) == 0.0


def test_chunk_matches():
    gold = "A PFP Operator offering an exit facility on a Private Financing Platform must provide the following information to its PFP Clients"
    assert chunk_matches("Intro. " + gold + " More.", [gold])
    assert chunk_matches("Previous rule text. A PFP Operator offering an exit facility on a Private Financing Platform must", [gold])
    assert not chunk_matches("Something else entirely about banking licences and capital.", [gold])
    assert chunk_matches("We share your email address with partners.", [], ["email address"])
    assert chunk_matches("secure the grid's sub-systems against attack", [], ["subsystems"])  # a reflowed PDF's hyphen
    assert not chunk_matches("secure the grid's systems", [], ["subsystems"])


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


def test_recall_within_word_budget():
    # a long first hit eats the budget: the gold passage at rank 2 is never read within 400 words
    assert recall_within_words([False, True], [500, 50], 400) == 0.0
    assert recall_within_words([False, True], [500, 50], 600) == 1.0
    # the first item always counts, even when it alone is over the budget
    assert recall_within_words([True, False], [900, 10], 400) == 1.0 and items_within_words([900, 10], 400) == 1
    # an item counts only if all its words fit; reading stops there (a later, shorter item is not read)
    assert items_within_words([100, 300], 400) == 2 and recall_within_words([False, True], [100, 300], 400) == 1.0
    assert recall_within_words([False, False, True], [100, 350, 10], 400) == 0.0
    assert items_within_words([], 400) == 0 and recall_within_words([], [], 400) == 0.0
    # bigger chunks earn nothing extra: the same ranking with longer chunks reads fewer of them
    assert recall_at_k([False, False, True], 10) == 1.0
    assert recall_within_words([False, False, True], [100, 100, 100], 400) == 1.0
    assert recall_within_words([False, False, True], [300, 300, 300], 400) == 0.0
    # only the top k are read
    assert recall_within_words([False] * 10 + [True], [1] * 11, 400, k=10) == 0.0
    # a focused span: its words are what is read, and it counts only if the span itself is a hit
    assert retrieval_metrics([([True], 1, [50], [False])], word_budgets=(400,))["recall@10w400"] == 0.0
    m = retrieval_metrics([([False, True], 1, [500, 50]), ([True], 1, [100])], ks=(1, 5, 10), word_budgets=(400, 600))
    assert m["recall@10"] == 1.0 and m["recall@10w400"] == 0.5 and m["recall@10w600"] == 1.0
    assert m["words_per_hit"] == pytest.approx(650 / 3)
    assert "words_per_hit" not in retrieval_metrics([([True], 1)], word_budgets=(400,))  # rows without words: as before


def test_rerank_modes_need_a_reranker():
    from rag.errors import ConfigError
    from rag.jobs.evaluate import check_modes, parse_mode
    from rag.settings import Settings

    assert parse_mode("hybrid") == ("hybrid", False) and parse_mode("bm25+rerank") == ("bm25", True)
    with pytest.raises(ConfigError, match="unknown retrieval mode"):
        parse_mode("hybrid+magic")
    with pytest.raises(ConfigError, match="retrieval.reranker"):
        check_modes(["dense", "dense+rerank"], Settings(retrieval={"reranker": None}))
    check_modes(["dense+rerank"], Settings(retrieval={"reranker": "some/cross-encoder"}))


def _mini_squad(tmp_path):
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
    return f


def test_rag_eval_end_to_end(cli, tmp_path, capsys, monkeypatch):

    monkeypatch.setenv("RAG_CACHE_DIR", str(tmp_path / "cache"))
    f = _mini_squad(tmp_path)
    out = tmp_path / "report"
    code, stdout, err = cli(capsys, "eval", str(f), "--format", "squad", "--mode", "dense", "--mode", "hybrid",
                                "--answers", "--answer-mode", "extractive", "-o", str(out))
    assert code == 0, err
    assert "eval mini: dense: R@5" in stdout
    assert "hybrid: R@5 1.000 R@10 1.000 R@10w400 1.000 R@10w600 1.000 MRR" in stdout  # default budgets
    for name in ("report.md", "metrics.json", "per_question.jsonl", "recall_at_k.png", "score_distribution.png"):
        assert (out / name).stat().st_size > 0, name
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["retrieval"]) == {"dense", "hybrid"} and m["retrieval"]["hybrid"]["recall@5"] == 1.0
    assert m["word_budgets"] == [400, 600] and "first passage" in m["word_budget_rule"]
    for mode in ("dense", "hybrid"):
        r = m["retrieval"][mode]
        assert r["recall@10w400"] <= r["recall@10"] and 5 < r["words_per_hit"] < 40 and r["ms_per_question"] > 0
        assert "rerank_ms_per_question" not in r
    a = m["answers"]["extractive"]
    assert a["questions"] == 7 and a["f1"] > 0.3 and a["refusal_accuracy"] is not None  # 6 + 1 cross-policy unanswerable
    assert 0 < a["key_fact"] <= 1 and a["answers_citing_gold_doc"] is not None
    rows = [json.loads(x) for x in (out / "per_question.jsonl").read_text().splitlines()]
    assert any(r.get("answer_mode") == "extractive" and not r["answerable"] for r in rows)
    assert all(len(r["words"]) == len(r["hits"]) for r in rows if "mode" in r)
    report = (out / "report.md").read_text()
    assert "| hybrid |" in report and "Worst 10 questions" in report and "![recall@k](recall_at_k.png)" in report
    assert "recall@10 ≤400 words" in report and "recall@10 ≤600 words" in report and "Reranking" not in report
    assert "key fact" in report and "answers citing a gold doc" in report


def test_rag_eval_word_budget_and_rerank_mode(cli, tmp_path, capsys, monkeypatch):
    """The shipped evidence scorer when the tree has one, else a CrossEncoder over the MiniLM folder (random
    head) as a stand-in: the code path is tested, not the ranking."""
    from rag.index.embed import resolve_embedding_model
    from rag.retrieve import rerank

    shipped = getattr(rerank, "SHIPPED_SCORER", None)
    model = str(shipped) if shipped is not None and shipped.is_dir() else resolve_embedding_model("default")

    monkeypatch.setenv("RAG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("RAG_RETRIEVAL__RERANKER", "none")
    f = _mini_squad(tmp_path)
    out = tmp_path / "report"
    code, _, err = cli(capsys, "eval", str(f), "--mode", "bm25+rerank", "-o", str(out))
    assert code != 0 and "retrieval.reranker" in err and "--reranker" in err
    code, _, err = cli(capsys, "eval", str(f), "--mode", "bm25+magic", "-o", str(out))
    assert code != 0 and "unknown --mode" in err
    assert not out.exists()

    code, stdout, err = cli(capsys, "eval", str(f), "--mode", "bm25", "--mode", "bm25+rerank", "--reranker", model,
                            "--word-budget", "12", "-o", str(out))
    assert code == 0, err
    assert "bm25+rerank: R@5" in stdout and "R@10w12" in stdout and "R@10w400" not in stdout and "(rerank " in stdout
    m = json.loads((out / "metrics.json").read_text())
    assert m["word_budgets"] == [12] and set(m["retrieval"]) == {"bm25", "bm25+rerank"}
    plain, rr = m["retrieval"]["bm25"], m["retrieval"]["bm25+rerank"]
    assert "recall@10w12" in plain and "recall@10w400" not in plain and "rerank_ms_per_question" not in plain
    assert rr["rerank_ms_per_question"] > 0 and rr["rerank_ms_p95"] >= 0 and rr["rerank_candidates"] == 20
    assert rr["recall@10"] == plain["recall@10"]  # reranking reorders the same candidates (all within the top 10 here)
    report = (out / "report.md").read_text()
    assert "| bm25+rerank |" in report and "Reranking with" in report and "recall@10 ≤12 words" in report


def test_eval_split_selects_the_questions_of_one_half(tmp_path):
    from rag.jobs.datasets import load_jsonl

    f = tmp_path / "q.jsonl"
    f.write_text('{"id": "a", "question": "x?", "split": "calibrate"}\n{"id": "b", "question": "y?", "split": "report"}\n')
    qs = load_jsonl(f).questions
    assert [q.split for q in qs] == ["calibrate", "report"]
