"""Issue 13, item 6: questions comparing two documents or two dates, answered side by side.

Pure tests of the detection (question + document identities -> the two sides, or None); a fixture corpus
(an order revoked by another; a memo superseded by one known only from a fact sheet) for the answer's
blocks, the relation line and its citation, and what the corpus lacks; a slow test on the shipped corpus.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest

from rag.answer.compare import _period, comparison_sides, fill_periods, pair_relations, topic_of

EO = "executive order"
DOCS = {
    "a.md": {"title": "Alpha Widgets Order", "date": "2020-01-02", "kind": EO, "identifiers": ["EO 15001"]},
    "b.md": {"title": "Beta Widgets Order", "date": "2021-03-04", "kind": EO, "identifiers": ["EO 15002"]},
    "m.md": {
        "title": "M-20-01: Widget Procurement",
        "date": "2020-05-01",
        "kind": "omb memorandum",
        "identifiers": ["M-20-01"],
    },
    "fs.md": {
        "title": "Fact Sheet: New Widget Policies",
        "date": "2021-06-01",
        "kind": "fact sheet",
        "identifiers": [],
        "mentions": ["M-20-01", "M-21-05"],
    },
}
RELATIONS = [
    {
        "source": "b.md",
        "type": "revokes",
        "target": {"identifier": "EO 15001"},
        "target_source": "a.md",
        "sentence": "Executive Order 15001 of January 2, 2020 (Alpha Widgets Order), is hereby revoked.",
        "page": 1,
    },
    {
        "source": "fs.md",
        "type": "supersedes",
        "subject": "M-21-05",
        "target": {"identifier": "M-20-01"},
        "target_source": "m.md",
        "sentence": "Today OMB issued a revised widget policy.",
        "page": 1,
    },
]


def _sides(q):
    got = comparison_sides(q, DOCS, None, RELATIONS)
    return None if got is None else [(s.kind, s.sources, s.missing) for s in got]


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        # two orders by number, earlier first whatever the wording's order
        ("What did EO 15002 change about EO 15001?", [("document", ("a.md",), ()), ("document", ("b.md",), ())]),
        (
            "What is the difference between EO 15001 and EO 15002 on widgets?",
            [("document", ("a.md",), ()), ("document", ("b.md",), ())],
        ),
        (
            "How does executive order 15002 differ from eo 15001?",
            [("document", ("a.md",), ()), ("document", ("b.md",), ())],
        ),
        ("EO 15002 vs. EO 15001", [("document", ("a.md",), ()), ("document", ("b.md",), ())]),
        # a memo replaced by one whose text is not in the corpus, named by date and kind: the fact sheet stands in
        (
            "How did the widget rules change from M-20-01 to the June 2021 policies?",
            [("document", ("m.md",), ()), ("document", ("fs.md",), ("M-21-05",))],
        ),
        (
            "How does M-21-05 differ from M-20-01?",
            [("document", ("m.md",), ()), ("document", ("fs.md",), ("M-21-05",))],
        ),
        # two dates
        ("How did widget policy change between 2020 and 2021?", [("period", (), ()), ("period", (), ())]),
        # a document and a title
        (
            "Compare the Alpha widgets order with the Beta widgets order",
            [("document", ("a.md",), ()), ("document", ("b.md",), ())],
        ),
    ],
)
def test_comparison_questions_find_their_two_sides(question, expected):
    assert _sides(question) == expected


@pytest.mark.parametrize(
    "question",
    [
        "What does EO 15001 require of agencies?",  # one document, no change asked
        "Which order revoked EO 15001?",  # about a change, but one side
        "How did agency widget rules change?",  # a change, no sides named
        "What changed in EO 15001?",
        "Compare the costs and benefits of widgets.",  # 'compare', but neither part names a document or date
        "What did EO 15001 and EO 15002 require?",  # two documents, no comparison asked
        "How did widget policy change between 2020 and 2020?",  # the same period twice
    ],
)
def test_other_questions_are_not_comparisons(question):
    assert _sides(question) is None


def test_periods_topic_and_relations():
    assert _period("2024") == ("2024", "2024-01-01", "2024-12-31")
    assert _period("April 2025")[1:] == ("2025-04-01", "2025-04-30")
    assert _period("December 2025")[1:] == ("2025-12-01", "2025-12-31")
    assert _period("mid-2024")[1:] == ("2024-05-01", "2024-08-31")
    assert _period("January 20, 2025")[1:] == ("2025-01-20", "2025-01-20")
    assert _period("from 2024 to 2025") is None
    a, b = comparison_sides("How did widget policy change between 2020 and 2021?", DOCS, None, RELATIONS)

    def status(src, day):  # A revoked on 2021-03-04
        return {"status": "revoked" if src == "a.md" and day >= "2021-03-04" else "in force"}

    a, b = fill_periods((a, b), DOCS, status)
    assert a.sources == ("a.md", "m.md") and b.sources == ("b.md", "fs.md")
    # A, issued in 2020, is kept on the 2020 side: in force then, revoked by the end of 2021
    a2, _ = fill_periods(comparison_sides("What changed from 2019 to 2021?", DOCS, None, RELATIONS), DOCS, status)
    assert a2.sources == ("a.md",)
    sides = comparison_sides(
        "How did OMB's rules for widget use change from M-20-01 to the June 2021 policies?", DOCS, None, RELATIONS
    )
    assert topic_of("How did OMB's rules for widget use change from M-20-01 to the June 2021 policies?", sides) == (
        "OMB's rules widget use"
    )
    q = "Compare the Beta widgets order with the Alpha widgets order on safety tests"
    sides = comparison_sides(q, DOCS, None, RELATIONS)
    assert [s.label for s in sides] == ["the Alpha widgets order", "the Beta widgets order"]
    assert topic_of(q, sides) == "safety tests"  # what follows "on" after a named document is the topic
    assert (
        topic_of(
            "What did EO 15002 change about EO 15001?",
            comparison_sides("What did EO 15002 change about EO 15001?", DOCS, None, RELATIONS),
        )
        is None
    )

    class View:  # what pair_relations reads of rag.index.status.PolicyView
        docs, relations = DOCS, RELATIONS

        @staticmethod
        def relation_date(r):
            return DOCS[r["source"]]["date"]

    rels = pair_relations(
        View, *comparison_sides("How does M-21-05 differ from M-20-01?", DOCS, None, RELATIONS), "2026-01-01"
    )
    assert [(r["type"], r.get("subject")) for r in rels] == [("supersedes", "M-21-05")]
    assert (
        pair_relations(
            View, *comparison_sides("How does M-21-05 differ from M-20-01?", DOCS, None, RELATIONS), "2021-01-01"
        )
        == []
    )  # as of a day before the change


# -- a fixture corpus ---------------------------------------------------------------------------

ORDER = "By the authority vested in me as President by the Constitution, it is hereby ordered as follows:\n\n"
CORPUS = {
    "a.md": (
        "2020-01-02",
        "Alpha Widgets Order",
        "Executive Order 15001 of January 2, 2020\n\n"
        + ORDER
        + "Section 1. Widget registration. Agencies shall register every widget with the Widget Office within 30 days. "
        "Each registration shall list the widget's owner and its safety test results.\n\n"
        "Sec. 2. Widget safety. Agencies shall test every widget for safety before use and report failures to "
        "the Widget Office within 10 days.\n",
    ),
    "b.md": (
        "2021-03-04",
        "Beta Widgets Order",
        "Executive Order 15002 of March 4, 2021\n\n"
        + ORDER
        + "Sec. 1. Revocation. Executive Order 15001 of January 2, 2020 (Alpha Widgets Order), is hereby revoked.\n\n"
        "Sec. 2. Widget registration. Agencies may register widgets once a year instead of within 30 days. "
        "Widget safety tests are voluntary for low-risk widgets.\n",
    ),
    "m.md": (
        "2020-05-01",
        "M-20-01: Widget Procurement",
        "May 1, 2020\n\nM-20-01\n\nMEMORANDUM FOR THE HEADS OF "
        "EXECUTIVE DEPARTMENTS AND AGENCIES\n\nAgencies must buy widgets only from vendors that publish widget "
        "safety test results. Agencies must keep an inventory of purchased widgets.\n",
    ),
    "fs.md": (
        "2021-06-01",
        "Fact Sheet: New Widget Policies",
        "Today the Office of Management and Budget issued a "
        "revised widget policy, M-21-05, that replaces the widget procurement rules. Agencies will buy widgets "
        "from any vendor and no longer need to keep a widget inventory.\n",
    ),
}
META = """fs.md:
  relations:
    - type: supersedes
      subject: M-21-05
      target: M-20-01
      quote: "Today the Office of Management and Budget issued a revised widget policy, M-21-05, that replaces the widget procurement rules."
"""


@pytest.fixture(scope="module")
def compare_index(tmp_path_factory, embedder):
    from rag.index.build import build_index
    from rag.settings import Settings

    base = tmp_path_factory.mktemp("compare")
    corpus = base / "corpus"
    corpus.mkdir()
    for name, (date, title, body) in CORPUS.items():
        (corpus / name).write_text(f"---\ntitle: '{title}'\ndate: '{date}'\n---\n\n{body}", encoding="utf-8")
    (corpus / "metadata.yaml").write_text(META, encoding="utf-8")
    s = Settings(corpus=corpus, index=base / "index", retrieval={"reranker": None})
    build_index(s, embedder=embedder)
    return s


def _service(s, embedder, generator=None, **answer):
    from rag.service import RagService

    if answer:
        s = s.model_copy(update={"answer": s.answer.model_copy(update=answer)})
    return RagService(s, embedder=embedder, generator=generator)


def _markers(text):
    return [int(n) for n in re.findall(r"\[(\d+)\]", text)]


def test_side_by_side_blocks_relation_and_citations(compare_index, embedder):
    ans = _service(compare_index, embedder).ask(
        "What is the difference between EO 15001 and EO 15002 on widget registration?"
    )
    cmp = ans.comparison
    assert cmp and [s["sources"] for s in cmp["sides"]] == [["a.md"], ["b.md"]]
    assert not ans.refused and ans.produced_by == "extractive"
    head_a, head_b = (s["heading"] for s in cmp["sides"])
    assert head_a == "EO 15001 (executive order, 2020-01-02; revoked by EO 15002 on 2021-03-04)"
    assert head_b.startswith("EO 15002 (executive order, 2021-03-04; in force")
    assert ans.text.index(head_a) < ans.text.index(head_b) < ans.text.index("How they relate:")
    for side in cmp["sides"]:  # each block's points cite its own document's passages
        assert 2 <= side["points"] <= 4 and side["citations"]
        assert {ans.citations[n - 1].passage.chunk.source for n in side["citations"]} == set(side["sources"])
    rel = cmp["relations"][0]
    assert rel["text"] == "EO 15002 revoked EO 15001 on 2021-03-04" and f"{rel['text']} [{rel['n']}]." in ans.text
    cited = ans.citations[rel["n"] - 1]
    assert cited.passage.chunk.source == "b.md" and "is hereby revoked" in cited.passage.chunk.text
    # citations are real passages numbered 1..n in order of first use
    seen = list(dict.fromkeys(_markers(ans.text)))
    assert seen == list(range(1, len(ans.citations) + 1)) == [c.n for c in ans.citations]
    assert all(c.passage.chunk.chunk_id == ans.passages[c.n - 1].chunk.chunk_id for c in ans.citations)
    for c in ans.citations:
        assert c.quote and " ".join(c.quote.split())[:30] in " ".join(c.passage.chunk.text.split()), (
            c.quote,
            c.passage.chunk.text,
        )
    assert json.loads(json.dumps(ans.to_dict()))["comparison"]["sides"][1]["sources"] == ["b.md"]


def test_a_side_known_only_from_a_fact_sheet(compare_index, embedder):
    ans = _service(compare_index, embedder).ask(
        "How did the widget procurement rules change from M-20-01 to the June 2021 policies?"
    )
    cmp = ans.comparison
    assert cmp["sides"][0]["sources"] == ["m.md"] and cmp["sides"][1]["not_in_corpus"] == ["M-21-05"]
    assert cmp["sides"][0]["heading"].startswith(
        "M-20-01 (OMB memorandum, 2020-05-01; superseded by M-21-05 on 2021-06-01"
    )
    assert (
        "The June 2021 policies: M-21-05 (own text not in the corpus; known from Fact Sheet: New Widget Policies"
        in ans.text
    )
    assert (
        "What the corpus does not say:\n\n- The own text of M-21-05 is not in the corpus; the points above are from the fact "
        "sheet of 2021-06-01" in ans.text
    )
    rel = cmp["relations"][0]
    assert rel["text"].startswith("M-21-05 superseded M-20-01 on 2021-06-01, as Fact Sheet: New Widget Policies states")
    assert ans.citations[rel["n"] - 1].passage.chunk.source == "fs.md"


def test_dates_as_sides_and_a_date_with_no_document(compare_index, embedder):
    svc = _service(compare_index, embedder)
    ans = svc.ask("How did federal widget rules change between 2020 and 2021?")
    assert [s["kind"] for s in ans.comparison["sides"]] == ["period", "period"]
    assert set(ans.comparison["sides"][0]["sources"]) == {"a.md", "m.md"}
    points = [ln for ln in ans.text.splitlines() if ln.startswith("- ") and "“" in ln]
    assert points and all(re.match(r"- (EO 1500[12]|M-20-01|fact sheet of 2021-06-01): “", ln) for ln in points)
    ans = svc.ask("How did widget rules change from 2021 to 2024?")
    assert "- The corpus has no document from 2024." in ans.text and ans.comparison["sides"][1]["sources"] == []


def test_generative_mode_and_batch_give_the_same_side_by_side_without_the_model(
    compare_index, embedder, fake_generator
):
    q = "What did EO 15002 change about EO 15001?"
    gen = fake_generator("Widgets are fine [1].")
    svc = _service(compare_index, embedder, gen, mode="generative")
    one = svc.ask(q)
    assert one.comparison and gen.calls == 0 and one.mode == "generative" and one.produced_by == "extractive"
    many = svc.ask_many([q, "Within how many days must agencies register every widget?"])
    assert many[0].text == one.text and many[0].comparison["sides"] == one.comparison["sides"]
    assert many[1].comparison is None and "comparison" not in many[1].to_dict() and gen.calls == 1


def _same(a, b):
    def strip(d):
        return {k: v for k, v in d.items() if k not in ("timings", "record")}

    return strip(a.to_dict()) == strip(b.to_dict())


@pytest.mark.parametrize(
    "question",
    [
        "Within how many days must agencies register every widget with the Widget Office?",
        "Which order revoked EO 15001?",
        "How did the rules on widget safety tests change?",  # a change, but no two sides: an ordinary answer
    ],
)
def test_questions_that_compare_nothing_are_answered_as_before(compare_index, embedder, monkeypatch, question):
    from rag.answer import side_by_side

    svc = _service(compare_index, embedder)
    ans = svc.ask(question)
    assert ans.comparison is None and "comparison" not in ans.to_dict() and "comparison" not in ans.record
    monkeypatch.setattr(side_by_side, "compare_answer", lambda *a, **k: None)  # as before the side-by-side existed
    assert _same(ans, svc.ask(question))


def test_a_source_filter_wins_over_the_side_by_side(compare_index, embedder):
    filtered = _service(compare_index, embedder).ask(
        "What did EO 15002 change about EO 15001?", filters={"source": ["b.md"]}
    )
    assert filtered.comparison is None and {p.chunk.source for p in filtered.passages} == {"b.md"}


def test_cli_prints_the_blocks(compare_index, cli, capsys):
    idx = ["--index", str(compare_index.index), "--reranker", "none", "--answer-mode", "extractive", "--no-stream"]
    code, out, err = cli(capsys, "ask", "What did EO 15002 change about EO 15001?", *idx)
    assert code == 0, err
    assert out.startswith(
        "Side by side: EO 15001 and EO 15002.\n\n"
        "EO 15001 (executive order, 2020-01-02; revoked by EO 15002 on 2021-03-04):\n\n- “"
    )
    assert "How they relate:\n\n- EO 15002 revoked EO 15001 on 2021-03-04 [" in out and "Sources:" in out
    assert "Status: EO 15001 was revoked" not in out  # the relation is printed once, in the comparison
    code, out, err = cli(capsys, "ask", "What did EO 15001 require?", *idx)
    assert code == 0, err
    assert "Status: EO 15001 was revoked on 2021-03-04 by EO 15002" in out  # an ordinary answer keeps its note
    code, out, err = cli(
        capsys, "ask", "What did EO 15002 change about EO 15001?", "--as-of", "2020-06-01", "--json", *idx
    )
    assert code == 0, err
    ans = json.loads(out)
    assert ans["comparison"]["as_of"] == "2020-06-01" and ans["comparison"]["relations"] == []
    assert ans["comparison"]["sides"][0]["heading"] == "EO 15001 (executive order, 2020-01-02; in force on 2020-06-01)"
    assert (
        ans["comparison"]["sides"][1]["heading"]
        == "EO 15002 (executive order, 2021-03-04; not yet issued on 2020-06-01)"
    )
    assert "No document of the corpus states a relation between EO 15001 and EO 15002." in ans["answer"]


@pytest.mark.slow
def test_shipped_corpus_issue_examples(shipped_index, tmp_path):
    from rag.service import RagService

    idx = tmp_path / "index"
    shutil.copytree(shipped_index.index, idx)
    svc = RagService(shipped_index.model_copy(update={"index": idx}))
    m2410 = "omb/M-24-10-advancing-governance-innovation-risk-management-agency-use-of-ai.pdf"
    fact = "whitehouse/2025-04-07-fact-sheet-eliminating-barriers-for-federal-artificial-intelligence-use-and-procurement.md"
    ans = svc.ask("How did OMB's rules for agency AI use change from M-24-10 to the April 2025 policies?")
    a, b = ans.comparison["sides"]
    assert a["sources"] == [m2410] and b["sources"] == [fact] and b["not_in_corpus"] == ["M-25-21", "M-25-22"]
    assert a["heading"].startswith("M-24-10 (OMB memorandum, 2024-03-28; superseded by M-25-21 on 2025-04-07")
    for side in (a, b):
        assert side["citations"] and {ans.citations[n - 1].passage.chunk.source for n in side["citations"]} == set(
            side["sources"]
        )
    rels = {(r["by"], r["type"], r["target"]) for r in ans.comparison["relations"]}
    assert ("M-25-21", "supersedes", "M-24-10") in rels and ("EO 14179", "directs_revision", "M-24-10") in rels
    assert "The own text of M-25-21 and M-25-22 is not in the corpus" in ans.text
    eo14110 = "federal-register/2023-24283-eo-14110-safe-secure-trustworthy-ai.pdf"
    ans = svc.ask("What did EO 14179 change about EO 14110?")
    a, b = ans.comparison["sides"]
    assert a["sources"] == [eo14110] and b["identifiers"] == ["EO 14179"]
    assert a["heading"].startswith("EO 14110 (executive order, 2023-10-30; revoked by EO 14148 on 2025-01-20")
    rels = {r["text"]: r for r in ans.comparison["relations"]}
    assert "EO 14179 directed a review of actions taken under EO 14110 on 2025-01-23" in rels
    assert "EO 14148 revoked EO 14110 on 2025-01-20" in rels
    for r in rels.values():
        assert r["n"] and ans.citations[r["n"] - 1].passage.chunk.source == r["by_source"]
