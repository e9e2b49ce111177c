"""Near-topic unanswerables refused, and answers shaped by the question (issue 12).

A question the documents cannot answer retrieves passages on its topic; what they lack is its focus
(the thing it asks about), a number that is no span of time, or a date of the event it asks about.
And "why", "define" and "which kinds" questions are answered by a reason, a definition and a list.
Each refusal test has the matching answerable question beside it, still answered.
"""

from __future__ import annotations

import pytest
from helpers import passage

import rag.answer.shapes as shapes
from rag.answer.extractive import extractive
from rag.answer.focus import focus_words, missing_focus
from rag.answer.requirements import has_count, missing_answer_kind
from rag.answer.shapes import is_masthead, shape, shape_bonus
from rag.types import Passage


def P(text: str, source: str = "doc.md", ordinal: int = 0, section: str = "") -> Passage:
    return passage(
        text,
        chunk_id=f"{source}-{ordinal}",
        source=source,
        title=source,
        ordinal=ordinal,
        section=section,
        rank=ordinal + 1,
    )


PERMITTING = [
    "(d) “Qualifying Project” means a Data Center Project for which the Project Sponsor has committed at least "
    "$500 million in capital expenditures as determined by the Secretary of Commerce.",
    "For purposes of this order: (a) “Data Center Project” means a facility that requires greater than 100 megawatts "
    "(MW) of new load dedicated to AI inference, training, simulation, or synthetic data generation.",
]
GENESIS = [
    "Within 240 days of the date of this order, the Secretary shall review capabilities across the DOE national "
    "laboratories for robotic laboratories and production facilities.",
    "The Secretary shall ensure that the Mission draws on the expertise of engineers and scientists at the laboratories.",
]


@pytest.mark.parametrize(
    ("question", "focus"),
    [
        (
            "What tax credit percentage does the data center permitting order give to solar developers?",
            ["tax", "credit", "percentage"],
        ),
        (
            "What does the AI Action Plan say about subsidies for dairy farmers in Wisconsin?",
            ["subsidies", "dairy", "farmers", "Wisconsin"],
        ),
        (
            "What is the federal minimum wage for AI engineers under the Genesis Mission order?",
            ["minimum", "wage", "engineers"],
        ),
        # the phrase stops at its verb
        ("Which two revised OMB policies replaced the earlier AI guidance?", ["revised", "OMB", "policies"]),
        ("What size of capital commitment makes a project qualify?", ["capital", "commitment"]),  # "size" frames
        # a participle before its noun is part of the phrase
        ("What kinds of previously used land does the order ask EPA to find?", ["previously", "used", "land"]),
        ("When were comments due?", []),
    ],
)
def test_the_focus_of_a_question(question, focus):
    assert focus_words(question) == focus


def test_a_near_topic_question_whose_focus_no_passage_mentions_is_refused():
    q = "What tax credit percentage does the data center permitting order give to solar developers?"
    assert missing_focus(q, PERMITTING) == "tax credit percentage"
    assert missing_answer_kind(q, PERMITTING) == "mention of tax credit percentage"
    q = "What is the federal minimum wage for AI engineers under the Genesis Mission order?"
    assert missing_answer_kind(q, GENESIS) == "mention of minimum wage engineers"  # "engineers" alone is not half


def test_the_matching_answerable_questions_pass():
    # a paraphrase: "commitment" is not in the text, "capital" is: half the focus is there
    assert (
        missing_answer_kind("What size of capital commitment makes a data center project a qualifying one?", PERMITTING)
        is None
    )
    assert missing_answer_kind("What load in megawatts makes a facility a data center project?", PERMITTING) is None
    # a one-word focus is not checked
    assert missing_answer_kind("Which agency reviews the laboratories?", GENESIS) is None


LABOR = (
    "Promoting Registered Apprenticeships. (a) Within 120 days of the date of this order, the Secretary of Labor shall "
    "seek to increase participation in AI-related Registered Apprenticeships toward a national target."
)
CHALLENGES = (
    "The Secretary shall identify a list of at least 20 science and technology challenges of national importance."
)


def test_a_quantity_question_is_not_answered_by_a_span_of_time():
    q = "What numerical target did the Labor Department set for new AI apprenticeships under the education order?"
    assert not has_count(LABOR)
    assert missing_answer_kind(q, [LABOR]) == "number other than a time span"
    assert has_count(CHALLENGES)
    assert (
        missing_answer_kind("What minimum number of challenges must the Secretary list?", [LABOR, CHALLENGES]) is None
    )
    # a question about time is answered by one
    assert missing_answer_kind("How many days does the order give the Secretary of Labor?", [LABOR]) is None
    assert missing_answer_kind("What is the deadline for the Secretary of Labor?", [LABOR]) is None


NTIA = (
    "On October 30, 2023, President Biden signed the Executive order on Safe, Secure, and Trustworthy Development and "
    "Use of Artificial Intelligence. Written comments must be received on or before March 27, 2024."
)


def test_a_when_question_whose_dates_belong_to_other_events_is_refused(embedder):
    sents, quotes, _ = extractive(
        "When did NTIA hand the White House its final findings on open-weight models?", [P(NTIA)], embedder
    )
    assert sents == [] and quotes == {}


def test_the_matching_when_question_is_answered(embedder):
    sents, _, _ = extractive("By what date did NTIA need written comments?", [P(NTIA)], embedder)
    assert sents and sents[0].text.startswith("March 27, 2024: “Written comments")


@pytest.mark.parametrize(
    ("question", "form"),
    [
        (
            "Why does the Action Plan see open-weight models as useful for companies holding confidential information?",
            "why",
        ),
        ("For what purpose does the order create the Genesis Mission?", "why"),
        ("How does EO 14141 define a data facility dedicated to AI?", "definition"),
        ("What is meant by a frontier AI data center?", "definition"),
        ("Which kinds of state AI rules should a preemption bill leave alone?", "list"),
        ("What are the two Unbiased AI Principles?", "list"),
        ("Who leads the Genesis Mission?", None),
        ("How many sites must the Secretary identify?", None),
    ],
)
def test_question_shapes(question, form):
    assert shape(question) == form


def test_shape_bonuses():
    assert (
        shape_bonus("why", "They benefit adoption because many businesses have sensitive data.", "sentence")
        == shapes.CAUSE_BONUS
    )
    assert shape_bonus("why", "Open models carry substantial security risks.", "sentence") == shapes.REASON_BONUS
    assert shape_bonus("why", "Launch a technology development program.", "sentence") == 0.0
    assert (
        shape_bonus("definition", "The term “AI data center” means a data center used primarily for AI.", "sentence")
        > 0
    )
    assert shape_bonus("list", "laws relating to: (i) child safety; (ii) procurement", "list") > 0
    assert shape_bonus("list", "laws relating to child safety", "sentence") == 0.0
    assert shape_bonus(None, "because", "sentence") == 0.0


OPEN_WEIGHT = (
    "Encourage Open-Source and Open-Weight AI. Open-weight models are models that are released with their weights. "
    "Open-source and open-weight AI models are useful to companies and governments. "
    "They also benefit commercial and government adoption of AI because many businesses and governments have "
    "sensitive data that they cannot send to closed model vendors."
)


def test_a_why_question_quotes_the_reason(embedder, monkeypatch):
    q = "Why does the Action Plan see open-weight models as useful for companies and governments holding confidential information?"
    sents, _, _ = extractive(q, [P(OPEN_WEIGHT)], embedder, n_sentences=1)
    assert "because many businesses" in sents[0].text
    monkeypatch.setattr(shapes, "CAUSE_BONUS", 0.0)
    monkeypatch.setattr(shapes, "REASON_BONUS", 0.0)
    sents, _, _ = extractive(q, [P(OPEN_WEIGHT)], embedder, n_sentences=1)
    assert "because many businesses" not in sents[0].text  # without the shape, the restating sentence wins


MEMO_HEAD = (
    "T H E DI RE C T O R March 28, 2024 M-24-10 MEMORANDUM FOR THE HEADS OF EXECUTIVE DEPARTMENTS AND AGENCIES "
    "FROM: Shalanda D. Young SUBJECT: Advancing Governance, Innovation, and Risk Management for Agency Use of "
    "Artificial Intelligence Artificial intelligence (AI) is one of the most powerful technologies of our time. "
    "Agencies must provide a human alternative to AI where an individual would rather opt out."
)


def test_a_letterhead_is_never_quoted(embedder):
    assert is_masthead(MEMO_HEAD) and not is_masthead("Agencies must provide a human alternative.")
    sents, _, _ = extractive(
        "What does M-24-10 require of agencies about Artificial Intelligence?", [P(MEMO_HEAD)], embedder
    )
    assert sents and not any("MEMORANDUM FOR" in s.text or "T H E" in s.text for s in sents)


NTIA_RFC = (
    "On October 30, 2023, President Biden issued an Executive order on AI that directed NTIA to issue a report on "
    "foundation models. Written comments must be received on or before March 27, 2024."
)


def test_a_deadline_question_quotes_the_deadline_not_an_event_date(embedder, monkeypatch):
    import rag.answer.extractive as ex

    q = "By what date did NTIA need written comments on dual-use foundation models with widely available weights?"
    sents, _, _ = extractive(q, [P(NTIA_RFC)], embedder, n_sentences=1)
    assert sents[0].text.startswith("March 27, 2024: “Written comments")
    # no deadline preference: the event date resembles the question more
    monkeypatch.setattr(ex, "DEADLINE_WINDOW", -5.0)
    sents, _, _ = extractive(q, [P(NTIA_RFC)], embedder, n_sentences=1)
    assert sents[0].text.startswith("October 30, 2023")


INFRA = (
    "(c) By June 30, 2025, the Secretary of Energy, in consultation with the Secretary of the Interior, shall identify "
    "sites under the order that the Secretary of the Interior deems suitable. "
    "(b) By March 15, 2025, the Secretary of the Interior shall designate at least five regions as Priority Geothermal Zones."
)


def test_a_date_the_question_states_pins_the_sentence(embedder, monkeypatch):
    import rag.answer.extractive as ex

    q = "By March 15, 2025, what must the Secretary of the Interior do under the order?"
    sents, _, _ = extractive(q, [P(INFRA)], embedder, n_sentences=1)
    assert "March 15, 2025" in sents[0].text
    monkeypatch.setattr(ex, "EXACT_DATE_BONUS", 0.0)
    sents, _, _ = extractive(q, [P(INFRA)], embedder, n_sentences=1)
    assert "June 30, 2025" in sents[0].text  # without it, the sentence with more of the question's words wins


def test_the_answerer_refuses_a_near_topic_question_and_answers_its_sibling(
    built_fixture_index, embedder, fake_generator
):
    from rag.answer.answerer import Answerer
    from rag.retrieve.retriever import Retriever
    from rag.settings import Settings

    # the similarity and scorer thresholds off: the focus alone must refuse
    s = Settings(
        index=built_fixture_index[1],
        answer={"mode": "extractive", "refusal_threshold": 0.2, "answerable_probability": 0.0},
    )
    answerer = Answerer(Retriever.open(s, embedder), s, generator=fake_generator("unused [1]."))
    near = answerer.ask("What tax credit percentage does the grid modernization report offer to storage developers?")
    assert near.refused and near.note == "the passages give no mention of tax credit percentage"
    assert near.passages  # the nearest passages are still shown
    ok = answerer.ask("What kind of interconnection studies does the grid modernization report recommend for storage?")
    assert not ok.refused and "faster interconnection studies" in ok.text
