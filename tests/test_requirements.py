"""Quantity questions need a number of the thing they count (or an amount of money) in the passages."""

from __future__ import annotations

import pytest

from rag.answer.requirements import (
    compared_count,
    counted_thing,
    counts_thing,
    missing_answer_kind,
    named_class,
    names_thing,
)

GEOTHERMAL = ("(c) By March 15, 2025, the Secretary of the Interior shall, if possible, designate at least five regions composed "
              "of lands or subsurface areas managed by the Department of the Interior as Priority Geothermal Zones (PGZs).")
SITES = ("(a) By February 28, 2025, the Secretary of Defense and the Secretary of Energy shall, if possible, each identify a "
         "minimum of 3 sites on Federal land that may be suitable for a frontier AI data center.")
CAIO = "Within 60 days of the date of this memorandum, the head of each agency must designate a Chief AI Officer."
MONEY = "a Qualifying Project means a data center project that requires a capital investment of more than $500 million."


@pytest.mark.parametrize(("question", "thing"), [
    ("How many acres of federal land did Interior ultimately offer for AI computing sites?", "acres"),
    ("How many AI use cases did federal agencies report in their 2024 inventories in total?", "cases"),
    ("How many agencies had actually appointed CAIOs by the deadline?", "agencies"),
    ("Under the 2024 memo, how many frontier models was the institute expected to test?", "models"),
    ("For how many weeks could the public send in suggestions?", None),  # time is a duration question
    ("How many days does the order give the Secretary?", None),
    ("When were comments due?", None),
])
def test_the_counted_thing(question, thing):
    assert counted_thing(question) == thing


def test_a_count_needs_its_thing_near_the_number():
    assert counts_thing(GEOTHERMAL, "zones") and counts_thing(GEOTHERMAL, "regions")
    assert counts_thing(SITES, "sites")
    assert not counts_thing(SITES, "acres")  # "3 sites" and a date are no number of acres
    assert not counts_thing(CAIO, "agencies")  # "60 days ... each agency": a period, not a count of agencies


def test_near_topic_quantity_questions_find_nothing_to_quote():
    q = "How many acres of federal land did Interior ultimately offer for AI computing sites?"
    assert missing_answer_kind(q, [SITES, GEOTHERMAL]) == "number of acres"
    assert missing_answer_kind("How many agencies had appointed a Chief AI Officer by the deadline?", [CAIO]) == "number of agencies"
    assert missing_answer_kind("How much money has Congress appropriated for the mission?", [SITES, CAIO]) == "amount of money"
    assert missing_answer_kind("What salary range does the memo set for chief AI officers?", [CAIO]) == "amount of money"


def test_answerable_quantity_questions_pass():
    assert missing_answer_kind("How many priority geothermal zones did the order ask Interior to designate?", [SITES, GEOTHERMAL]) is None
    assert missing_answer_kind("What size of capital commitment makes a data center project qualify?", [MONEY]) is None
    assert missing_answer_kind("What is the budget for the project?", [MONEY]) is None
    assert missing_answer_kind("For how many weeks could the public comment?", [CAIO]) is None  # durations are not checked here
    assert missing_answer_kind("What does the order say about costs?", [CAIO]) is None  # not a quantity question


def test_the_answerer_refuses_with_the_missing_kind(built_fixture_index, embedder, fake_generator):
    from rag.answer.answerer import Answerer
    from rag.retrieve.retriever import Retriever
    from rag.settings import Settings

    s = Settings(index=built_fixture_index[1], answer={"mode": "extractive"})
    answerer = Answerer(Retriever.open(s, embedder), s, generator=fake_generator("unused [1]."))
    ok = answerer.ask("How many gigawatts of interconnection requests were waiting in the queue?")
    assert not ok.refused and "40 gigawatts" in ok.text
    near = answerer.ask("How many regional grid operators publish their interconnection queue data?")
    assert near.refused and near.record["evidence"]["missing"] == "number of operators"
    assert near.note == "the passages give no number of operators"
    assert near.passages  # the nearest passages are still shown


def test_a_second_look_below_the_top_k_finds_the_number(built_fixture_index, embedder, fake_generator):
    """The top passage has no number of gigawatts; the candidate below it does: answer from it, not refuse."""
    from rag.answer.answerer import Answerer
    from rag.retrieve.retriever import Retriever
    from rag.settings import Settings

    s = Settings(index=built_fixture_index[1], answer={"mode": "extractive"})
    answerer = Answerer(Retriever.open(s, embedder), s, generator=fake_generator("unused [1]."))
    a = answerer.ask("How many gigawatts of queue data should regional operators publish each month?", k=1)
    assert a.record["evidence"].get("second_look") and not a.refused
    assert "40 gigawatts" in a.text and len(a.passages) == 2


def test_an_explicit_date_question_needs_a_calendar_date():
    relative = "Implementation. (a) Within 120 days of the date of this order, the Director of OMB shall issue guidance."
    signed = "March 28, 2024 M-24-10 MEMORANDUM FOR THE HEADS OF EXECUTIVE DEPARTMENTS AND AGENCIES"
    assert missing_answer_kind("On what date did OMB actually publish its guidance?", [relative]) == "calendar date"
    assert missing_answer_kind("On what date was memo M-24-10 signed?", [relative, signed]) is None
    assert missing_answer_kind("By what date were the sites to be picked?", ["(a) By February 28, 2025, the Secretary shall"]) is None
    assert missing_answer_kind("By when must agencies designate a Chief AI Officer?", [CAIO]) is None  # "when" alone: a period answers


EXPORTS = ("The Secretary of Commerce shall establish a program to support the export of full-stack American AI "
           "technology packages to allies and partner countries.")
PARTNERS = "The first packages will go to partner countries such as Japan and India, the Department said."


@pytest.mark.parametrize(("question", "kind"), [
    ("Which AI companies' models did NIST's safety institute test before release?", "companies"),
    ("Which countries were chosen as the first destinations for the packages?", "countries"),
    ("Which court was the first to adopt the proposed rule?", "court"),
    ("Which partner countries signed up first?", "countries"),
    ("Which office housed at NIST was industry's main contact?", None),  # agencies and offices: the who-detector's job
    ("Which kinds of state AI rules should a federal bill leave alone?", None),
    ("What pilot did NSM-25 tell DOE to launch?", None),
])
def test_the_named_class_a_which_question_asks_for(question, kind):
    assert named_class(question) == kind


def test_a_which_question_needs_an_instance_of_its_class():
    q = "Which countries were chosen as the first destinations for the packages?"
    assert missing_answer_kind(q, [EXPORTS]) == "named countries"  # "American", "Secretary of Commerce": no country named
    assert missing_answer_kind(q, [EXPORTS, PARTNERS]) is None
    assert names_thing("The rule was first adopted by the Supreme Court of Delaware.", "court", "Which court adopted the rule?")
    assert not names_thing("The United States will work with partner countries.", "countries", q)  # only the setting
    # an office is no named class (its focus, "office NIST", is checked: half of it is mentioned here)
    assert missing_answer_kind("Which office at NIST is the main contact?", [EXPORTS, "NIST will publish guidance."]) is None


@pytest.mark.parametrize(("question", "thing"), [
    ("Which federal agency listed the most AI applications in its 2024 inventory?", "applications"),
    ("Which state has the largest number of frontier data centers?", "centers"),
    ("Who filed the fewest comments on the NTIA request?", "comments"),
    ("Which agency oversees the most capable models?", None),  # an adjective's superlative compares no counts
    ("Which office is the most important for AI governance?", None),
    ("How many agencies listed the most use cases?", None),  # a how-many question has its own check
    ("What is the most common risk?", None),
])
def test_the_count_a_superlative_question_compares(question, thing):
    assert compared_count(question) == thing


def test_a_superlative_needs_counts_to_compare():
    q = "Which federal agency listed the most AI applications in its 2024 inventory?"
    inventory = ("(G) Covered agencies shall maintain an annual inventory of their high-impact AI use and AI systems and "
                 "provide updates on this inventory to agency heads and the APNSA.")
    assert missing_answer_kind(q, [inventory, CAIO]) == "number of applications to compare"
    counts = "The Department of Energy listed 180 AI applications, more than any other agency; NASA listed 90 applications."
    assert missing_answer_kind(q, [inventory, counts]) is None


# -- the quoted number must measure what the question asks (lead_fits) ---------------------------------

GITHUB = "100+ million developers around the world use GitHub to collaborate on and share software, including AI models."
FORBES = "Forbes recently surveyed 600 business owners using or planning to use AI and found that many planned to use it."
CSIS = "CSIS analysis of 669 policies finds that 43% of policies mentioning open source aimed to modernize IT."
GRANTS = "The lab runs a cybersecurity grant program that has awarded over $1 million to defenders so far."
SCALE = "The order directs NTIA to focus on models that contain at least tens of billions of parameters."


@pytest.mark.parametrize(("question", "measure"), [
    ("How many repositories has GitHub disabled for hosting malicious models?", "number of repositories"),
    ("What share of Fortune 500 firms have put open models into production?", "share or percentage"),
    ("What percentage of software includes open source code?", "share or percentage"),
    ("How much annual funding does the company ask Congress to give NIST?", "amount of money"),
    ("What penalty does Microsoft propose for developers who skip the risk assessment?", "penalty"),
    ("How many days does the order give the Secretary?", "span of time"),
    ("How long did the red-teaming exercise with the Royal Society last?", "span of time"),
    ("How long is the list of actions?", None),  # a length, not necessarily of time: not checked
    ("What compute threshold triggers the reporting requirements?", None),  # a threshold may be in any unit
    ("Who must designate a Chief AI Officer?", None),
])
def test_the_measure_a_quantity_question_asks_for(question, measure):
    from rag.answer.requirements import measure_asked

    assert measure_asked(question) == measure


def test_a_number_of_something_else_is_no_answer():
    from rag.answer.requirements import lead_fits

    assert not lead_fits("How many repositories has GitHub disabled?", GITHUB, "100")
    assert lead_fits("How many developers use GitHub?", GITHUB, "100")  # "million developers" within the window
    # the thing counted may be named well after the number, as the requirement reads it too (UNIT_WINDOW)
    assert lead_fits("How many geothermal zones did the order ask Interior to designate?", GEOTHERMAL, "at least five regions")
    assert not lead_fits("What share of business owners plan to use AI for sales?", FORBES, "600 business")
    assert lead_fits("What share of policies aimed to modernize IT?", CSIS, "43%")
    assert not lead_fits("How much annual funding does it ask Congress to give NIST?", CSIS, "669 policies")
    assert lead_fits("How much money has the lab given out through its grants?", GRANTS, "over $1 million")
    assert not lead_fits("What penalty did NTIA propose for developers who publish dangerous weights?", SCALE, "at least tens of billions")
    assert lead_fits("What penalty does the bill set?", "Violators face a civil penalty of up to 10 percent of revenue.", "10 percent")
    # money paid or given (an outlay) is not money something is worth; a penalty needs a sentence that names one
    growth = "Foundation models may generate between $2.6 trillion to $4.4 trillion in economic growth."
    assert not lead_fits("How much annual funding does the lab ask Congress to give NIST?", growth, "$2.6 trillion")
    assert lead_fits("How much economic growth may foundation models generate?", growth, "$2.6 trillion")  # no outlay asked
    assert lead_fits("How much does spending on open source add to GDP?",
                     "Researchers estimated that investment in open source software was roughly $38 billion in 2019.", "roughly $38 billion")
    assert lead_fits("How much did the model cost to train?", "Training it cost around $1.6 million.", "around $1.6 million")
    value = "One study estimated the demand-side value of open source to be $8.8 trillion."
    assert not lead_fits("What penalty does the group propose for companies that violate license terms?", value, "$8.8 trillion")
    assert lead_fits("What penalty applies?", "Each violation may cost the provider up to $10,000.", "up to $10,000")
    assert lead_fits("How many days does the order give?", CAIO, "60 days")
    assert lead_fits("How long did the exercise last?", "Comments were submitted over a seven-week span.", "seven-week")
    assert not lead_fits("How long did the exercise last?", "Over 40 experts took part in the exercise.", "Over 40 experts")
    assert lead_fits("Who must designate a Chief AI Officer?", CAIO, "the head of each agency")  # no measure asked


def test_a_count_question_answered_only_by_other_counts_is_refused(embedder):
    """Near-topic passages full of numbers, none of the thing asked: the documents don't say (no quote of "100")."""
    from helpers import passage

    from rag.answer.extractive import extractive

    passages = [passage(GITHUB + " " + FORBES, chunk_id="gh-0", source="github.pdf", title="GitHub", ordinal=0, rank=1)]
    sents, quotes, _ = extractive("How many repositories has GitHub disabled for hosting malicious models?", passages, embedder)
    assert sents == [] and quotes == {}
    sents, _, _ = extractive("How many developers use GitHub to share software?", passages, embedder)
    assert sents and "100" in sents[0].text.split(":")[0]  # the count of developers is the lead


def test_the_answerer_names_the_measure_it_did_not_find(built_fixture_index, embedder, fake_generator):
    from rag.answer.answerer import Answerer
    from rag.retrieve.retriever import Retriever
    from rag.settings import Settings

    s = Settings(index=built_fixture_index[1], answer={"mode": "extractive"})
    answerer = Answerer(Retriever.open(s, embedder), s, generator=fake_generator("unused [1]."))
    a = answerer.ask("What share of the interconnection queue do solar projects make up?")
    assert a.refused and a.record["evidence"]["missing"] == "share or percentage"
    assert a.note == "the passages give no share or percentage"


@pytest.mark.parametrize(
    ("question", "lead", "fits"),
    [
        ("On what date did the lab publish the weights of its speech model?", "2019", False),  # a year, no day
        ("On what date did the co-founder testify before the committee?", "Feb. 6, 2024", True),
        ("In what month and year did the grassroots lab come into being?", "2019", False),
        ("In what month and year did the grassroots lab come into being?", "July 2020", True),
        ("In which month of 2024 was the summit scheduled to take place?", "2 November 2023", False),  # another year
        ("In which month of 2024 was the summit scheduled to take place?", "May 2024", True),
        ("When did the lab publish its license?", "2019", True),  # a year answers "when"
        ("By what date does the group want standards finalised?", "2028", True),  # "by 2028" is a deadline
        ("On what date must agencies designate a Chief AI Officer?", "within 60 days", True),  # no calendar date: other checks
    ],
)
def test_a_date_must_be_as_fine_and_in_the_year_the_question_asks(question, lead, fits):
    from rag.answer.requirements import date_fits

    assert date_fits(question, lead) is fits
