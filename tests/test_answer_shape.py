"""The shape of answers: question types, answer spans, what may be quoted, summaries, and no invented facts.

Passages are built from real corpus text (line breaks as the loaders give them), so the headings,
captions, lead-ins and footnote numbers that spoiled extractive answers are the real ones.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import passage

from rag.answer.attribution import attribute
from rag.answer.evidence import (
    clean_sentence,
    is_leadin,
    not_quotable,
    passage_sentences,
    passage_units,
    strip_footnote_marker,
)
from rag.answer.extractive import context_before, extractive
from rag.answer.facts import (
    extract_facts,
    missing_facts,
    parse_date,
    parse_number,
    strip_quotation_marks,
    unfound_quotations,
)
from rag.answer.markers import render
from rag.answer.qtypes import (
    agent_spans,
    classify,
    date_spans,
    identifier_spans,
    name_spans,
    number_spans,
)
from rag.answer.spans import answer_spans, counts_asked, past_event_question, scored_answer_spans
from rag.types import AnswerSentence, Passage


def P(text: str, source: str = "doc.md", n: int = 0, title: str = "Doc", section: str = "Sec", ordinal: int | None = None) -> Passage:
    return passage(text, chunk_id=f"c{n}{source}", doc_id="d" + source, source=source, title=title,
                   ordinal=n if ordinal is None else ordinal, page=n + 1, section=section, rank=n + 1)


# -- real corpus text ------------------------------------------------------------------------

NTIA_DATES = """models for which the model weights are
widely available, as well as policy and
regulatory recommendations pertaining
to those models.
DATES: Written comments must be
received on or before March 27, 2024.
ADDRESSES: All electronic public
comments on this action, identified by
Regulations.gov docket number NTIA–
2023–0009, may be submitted through
the Federal e-Rulemaking Portal at
https://www.regulations.gov. The docket
established for this request for comment
can be found at www.Regulations.gov,
NTIA–2023–0009."""

NTIA_QUESTIONS = """Instructions for Commenters
Through this Request for Comment,
we hope to gather information on the
following questions. These are not
exhaustive, and commenters are invited
to provide input on relevant questions
not asked below. Commenters are not
required to respond to all questions.
When responding to one or more of the
questions below, please note in the text
of your response the number of the
question to which you are responding.
Questions
1. How should NTIA define ‘‘open’’ or
‘‘widely available’’ when thinking about
foundation models and model weights?
a. Is there evidence or historical
examples suggesting that weights of
models similar to currently-closed AI
systems will, or will not, likely become
widely available? If so, what are they?"""

OMB_SECTION5 = """III. REPORTING ON DETERMINATIONS, EXTENSIONS, AND WAIVERS FROM
SECTION 5 OF OMB MEMORANDUM M-24-10
The following guidance provides the mechanisms for Federal agencies to report and certify the ongoing
validity of the determinations granted under Section 5(b) of OMB Memorandum M-24-10 and report on
any extensions and waivers granted under Section 5(c)(iii) of that guidance. Agencies are to refrain from
reporting any information whose sharing would be inconsistent with applicable law and governmentwide
policy, such as the exemptions from public disclosure provided in 5 U.S.C. § 552.
a. Reporting on Determinations"""

M2410_OVERVIEW = """1. OVERVIEW
While AI is improving operations and service delivery across the Federal Government,
agencies must effectively manage its use. As such, this memorandum establishes new agency
requirements and guidance for AI governance, innovation, and risk management, including
through specific minimum risk management practices for uses of AI that impact the rights and
safety of the public.
Strengthening AI Governance. Managing AI risk and promoting AI innovation requires
effective AI governance. As required by Executive Order 14110, each agency must designate a
Chief AI Officer (CAIO) within 60 days of the date of the issuance of this memorandum. This
memorandum describes the roles, responsibilities, seniority, position, and reporting structures for
agency CAIOs, including expanded reporting through agency AI use case inventories."""

RMF_FIG5 = """Fig. 5. Functions organize AI risk management activities at their highest level to govern, map,
measure, and manage AI risks. Governance is designed to be a cross-cutting function to inform
and be infused throughout the other three functions.
Risk management should be continuous, timely, and performed throughout the AI system
lifecycle dimensions."""

RMF_OECD = """The OECD has developed a framework for classifying AI lifecycle activities according to
five key socio-technical dimensions, each with properties relevant for AI policy and gover-
nance, including risk management [OECD (2022) OECD Framework for the Classification
of AI systems — OECD Digital Economy Papers]. Figure 2 shows these dimensions,
slightly modified by NIST for purposes of this framework."""

RMF_DEVELOPMENT = """Additional resources related to the Framework are included in the AI RMF Playbook,
which is available via the NIST AI RMF website:
https://www.nist.gov/itl/ai-risk-management-framework.
Development of the AI RMF by NIST in collaboration with the private and public sec-
tors is directed and consistent with its broader AI efforts called for by the National AI
Initiative Act of 2020, the National Security Commission on Artificial Intelligence recom-
mendations, and the Plan for Federal Engagement in Developing Technical Standards and
Related Tools."""

RMF_OVERVIEW = """The Framework is divided into two parts. Part 1 discusses how organizations can frame
the risks related to AI and describes the intended audience. Next, AI risks and trustworthi-
ness are analyzed, outlining the characteristics of trustworthy AI systems, which include

valid and reliable, safe, secure and resilient, accountable and transparent, explainable and
interpretable, privacy enhanced, and fair with their harmful biases managed."""

PLAN_OPEN = """Encourage Open-Source and Open-Weight AI
Open-source and open-weight AI models are made freely available by developers for anyone
in the world to download and modify. Models distributed this way have unique value for
innovation because startups can use them flexibly without being dependent on a closed model
provider. They also benefit commercial and government adoption of AI because many
businesses and governments have sensitive data that they cannot send to closed model
vendors. And they are essential for academic research, which often relies on access to the
weights and training data of a model to perform scientifically rigorous experiments.
We need to ensure America has leading open models founded on American values. Opensource and open-weight models could become global standards in some areas of business and
in academic research worldwide. For that reason, they also have geostrategic value. While the
decision of whether and how to release an open or closed model is fundamentally up to the
developer, the Federal government should create a supportive environment for open models.
Recommended Policy Actions"""

PLAN_OPEN_ACTIONS = """• Partner with leading technology companies to increase the research community’s
access to world-class private sector computing, models, data, and software resources
as part of the NAIRR pilot.
• Build the foundations for a lean and sustainable NAIRR operations capability that can
connect an increasing number of researchers and educators across the country to
critical AI resources.
• Led by DOC through the National Telecommunications and Information Administration
(NTIA), convene stakeholders to help drive adoption of open-source and open-weight
models by small and medium-sized businesses."""

PLAN_FOOTNOTE = """• Led by the Department of the Treasury, issue guidance clarifying that many AI literacy
and AI skill development programs may qualify as eligible educational assistance under
Section 132 of the Internal Revenue Code, given AI’s widespread impact reshaping the
tasks and skills required across industries and occupations.
9 In applicable situations, this
will enable employers to offer tax-free reimbursement for AI-related training and help
scale private-sector investment in AI skill development, preserving jobs for American
workers."""

SECTION = "Pillar I: Accelerate AI Innovation > Encourage Open-Source and Open-Weight AI"


# -- question types ---------------------------------------------------------------------------

@pytest.mark.parametrize("question,qtype", [
    ("When were NTIA comments due?", "when"),
    ("By what date did NTIA need written comments on dual-use foundation models with widely available weights?", "when"),
    ("In which year did BigScience first publish its responsible AI license?", "when"),  # a preposition before the wh-word
    ("In what month and year did the grassroots lab behind GPT-J come into being?", "when"),
    ("By what year does NIST plan a formal, community-informed review of its AI risk framework?", "when"),
    ("What is the OSI's annual operating budget?", "how_many"),  # three words between "the" and the quantity
    ("On what date was OMB's AI governance memo M-24-10 signed out?", "when"),
    ("What was the deadline for most agencies to hand OMB their 2024 lists of AI applications in use?", "when"),
    ("When will NIST review the AI RMF with formal input from the AI community?", "when"),
    ("Trump's January 23, 2025 AI order tells officials to comb through actions taken under the Biden AI order it revoked. "
     "When had that Biden order been signed?", "when"),
    ("Which agency developed the AI Risk Management Framework?", "who"),
    ("Who chairs the AI education task force that Trump created in April 2025?", "who"),
    ("Which NTIA staffer should people contact with questions about the agency's consultation on openly released model weights?", "who"),
    ("Under OMB's March 2024 AI memo, who is supposed to lead the AI governance board at each big agency?", "who"),
    ("The Energy Secretary runs the Genesis Mission inside DOE, but which White House adviser provides overall leadership?", "who"),
    ("Within how many days must each agency designate a Chief AI Officer under M-24-10?", "how_many"),
    ("How many public comments did OSTP publish on the AI Action Plan RFI?", "how_many"),
    ("How much new electrical load must a facility add before the July 2025 permitting order's data center definition applies?", "how_many"),
    ("Under the data center permitting order, below what share of a project's total cost is federal funding presumed not to give control?", "how_many"),
    ("How often must an agency's full AI governance board, deputy secretary included, meet under M-24-10?", "how_many"),
    ("What compute threshold triggers reporting requirements for models under Executive Order 14110?", "how_many"),
    ("What must agencies designate under OMB memo M-24-10?", "which"),
    ("Which executive order did the January 20, 2025 rescissions revoke concerning safe, secure, and trustworthy AI?", "which"),
    ("Which regulations.gov docket number collects comments on the NTIA open weights request?", "which"),
    ("What platform does the Secretary of Energy establish for the Genesis Mission?", "which"),
    ("What minimum grade does M-24-10 set for the CAIO at agencies outside the CFO Act list?", "which"),
    ("What does the Action Plan say about open-weight models?", "summary"),
    ("What does the AI Action Plan say about open-source and open-weight AI models?", "summary"),
    ("Summarize the Genesis Mission order.", "summary"),
    ("What are the recommended policy actions on open-weight AI?", "summary"),
    ("How does the Action Plan propose to handle the power grid?", "summary"),
    ("What does the Action Plan recommend on export controls for semiconductor manufacturing?", "summary"),
    ("Is the AI RMF mandatory for private companies?", "yesno"),
    ("Does M-24-10 apply to the Intelligence Community?", "yesno"),
    ("Why does the Genesis Mission order invoke the Manhattan Project?", "other"),
    ("What are the three pillars of America's AI Action Plan?", "other"),
    ("What is the Genesis Mission?", "other"),
    ("What must drone operators hold and keep?", "other"),
])
def test_question_types(question, qtype):
    assert classify(question) == qtype


# -- span detectors ---------------------------------------------------------------------------

def texts(spans):
    return [s.text for s in spans]


def test_date_spans_in_many_formats():
    assert texts(date_spans("DATES: Written comments must be received on or before March 27, 2024.")) == ["March 27, 2024"]
    assert texts(date_spans("Federal Register / Vol. 89, No. 38 / Monday, February 26, 2024 / Notices")) == ["Monday, February 26, 2024"]
    assert texts(date_spans("Each agency must designate a Chief AI Officer (CAIO) within 60 days of the date of the issuance.")) == ["within 60 days"]
    assert texts(date_spans("By December 1, 2024, agency CAIOs must recertify and report the full list.")) == ["December 1, 2024"]
    assert texts(date_spans("Congress appropriated funds in fiscal year 2025 and the report is due 2024-03-27.")) == ["fiscal year 2025", "2024-03-27"]
    assert texts(date_spans("a review is expected to take place no later than 2028.")) == ["no later than 2028"]
    assert texts(date_spans("This publication is available free of charge. January 2023")) == ["January 2023"]
    assert texts(date_spans("Comments were submitted over a seven-week span and closed on March 15th, ranging in topics.")) == ["March 15th"]
    assert texts(date_spans("August 14th, 2024 The Advancing American AI Act")) == ["August 14th, 2024"]
    assert date_spans("docket number NTIA–2023–0009 under Executive Order 14110") == []  # digits in identifiers are no dates


def test_number_spans_keep_units_and_skip_identifiers():
    s = "a facility that requires greater than 100 megawatts (MW) of new load and a sponsor committed at least $500 million"
    assert texts(number_spans(s)) == ["greater than 100 megawatts", "at least $500 million"]
    assert texts(number_spans("The White House published over 10,000 public comments.")) == ["over 10,000"]
    assert texts(number_spans("less than 50 percent of total project costs")) == ["less than 50 percent"]
    assert texts(number_spans("AISI shall pursue testing of at least two frontier AI models prior to deployment.")) == ["at least two frontier AI models"]
    assert texts(number_spans("contains at least tens of billions of parameters")) == ["at least tens of billions of parameters"]
    assert texts(number_spans("The full Board must convene on at least a semi-annual basis.")) == ["semi-annual"]
    assert texts(number_spans("Comments were submitted over a seven-week span.")) == ["seven-week"]
    assert number_spans("Under M-24-10, Executive Order 14110 and 89 FR 14059, see Sec. 4.6 and NIST AI 100-1.") == []
    assert number_spans("9 In applicable situations, this will enable employers to offer reimbursement.") == []  # a footnote marker
    # a spelled number counts only a plural noun, not a verb or pronoun that ends in s ("One thing that is ...")
    assert number_spans("One commonality is that the licenses restrict use.") == []
    assert number_spans("One thing that is important to keep in mind regarding countries") == []


def test_a_bare_number_run_into_a_name_or_bracket_is_weak():
    """PDF text runs footnote markers, section numbers and addresses into sentences ("... a model poses 37 Microsoft
    is a founding member", "a 501(c)(3) research organization"): such a bare number is no answer (weight below
    extractive.MIN_LEAD), while a number followed by a word, a unit or an acronym's plural keeps its weight."""
    weights = lambda s: {x.text: x.weight for x in number_spans(s)}  # noqa: E731
    assert weights("instruments for determining that a model poses 37 Microsoft is a founding member")["37"] < 0.55
    assert weights("EleutherAI is a 501(c)(3) research organization")["501"] < 0.55
    # a number closing a name ("Llama 2", "Phase 2") is part of it; a sentence's first word ("The 40") is not a name
    assert weights("Meta said Llama 2 outperforms others on most benchmarks")["2 outperforms"] < 0.55
    assert weights("Llama 2 outperforms GPT-3 on many benchmarks")["2 outperforms"] < 0.55
    assert weights("The 40 experts met twice") == {"40 experts": 1.0}
    assert weights("Exports Program. (a) Within 90 days of the date of this order") == {"90 days": 1.0}
    # a possessive owns its number, and "100B" is a magnitude ("Yandex’s 100B parameter language model")
    assert weights("the notable addition of Russia due to Yandex’s 100B parameter language model.") == {"100B": 1.0}
    assert weights("the lab trained Yandex’s 100 models") == {"100 models": 1.0}
    assert weights("Over 350 people were involved") == {"Over 350 people": 1.0}
    # "several" counts nothing: no answer to "how many evaluations ...?", while "two" and "tens of thousands" are
    assert weights("However, several evaluations of various models have not shown risk")["several evaluations"] < 0.55
    assert weights("We ran two evaluations and read tens of thousands of papers") == {"two evaluations": 1.0, "tens of thousands of papers": 1.0}
    assert weights("Contents Executive Summary 3 Part A 2.1 The limits of current approaches")["2.1"] < 0.55
    assert weights("The study found 669 of the policies aimed at modernization.")["669"] == 1.0
    assert weights("Over 100+ million developers use the platform.")["Over 100"] == 1.0
    assert weights("The cluster was trained on 2,048 GPUs over two months.")["2,048 GPUs"] == 1.0


def test_agent_and_name_spans():
    s = "The Assistant to the President and Deputy Chief of Staff for Policy shall serve as Chair of the White House AI Council."
    assert texts(agent_spans(s))[0] == "Assistant to the President and Deputy Chief of Staff for Policy"
    assert "Secretary of Energy" in texts(agent_spans("The Secretary of Energy shall establish the American Science and Security Platform."))
    assert "NIST" in texts(agent_spans("Development of the AI RMF by NIST in collaboration with the private and public sectors."))
    assert {"NTIA", "Department of Commerce"} <= set(texts(agent_spans("NTIA, within the Department of Commerce, seeks comment.")))
    assert "Travis Hall" in texts(agent_spans("Please direct questions regarding this Request for Comment to Travis Hall at thall@ntia.gov."))
    assert "AI" not in texts(agent_spans("AI systems are socio-technical."))
    assert texts(identifier_spans("Under M-24-10, EO 14110, Executive Order 14179, 89 FR 14059, Sec. 4.6, Section 5(c), NIST AI 100-1 "
                                  "and docket NTIA–2023–0009, at least a GS-15.")) == [
        "M-24-10", "EO 14110", "Executive Order 14179", "89 FR 14059", "Sec. 4.6", "Section 5(c)", "NIST AI 100-1", "NTIA–2023–0009", "GS-15"]
    names = texts(name_spans("These functions – GOVERN, MAP, MEASURE, and MANAGE – are broken down further."))
    assert {"GOVERN", "MAP", "MEASURE", "MANAGE"} <= set(names)


def test_answer_spans_skip_what_the_question_already_says():
    s = "As required by Executive Order 14110, each agency must designate a Chief AI Officer (CAIO) within 60 days."
    assert answer_spans(s, "What must agencies designate under OMB memo M-24-10?", "which")[0].text == "Chief AI Officer (CAIO)"
    s = "Development of the AI RMF by NIST in collaboration with the private and public sectors is directed."
    assert answer_spans(s, "Which agency developed the AI Risk Management Framework?", "who")[0].text == "NIST"
    assert answer_spans("The AI Risk Management Framework is voluntary.", "Who wrote the AI Risk Management Framework?", "who") == []
    s = ("(i) Within 180 days of the date of this memorandum and subject to private sector cooperation, AISI shall pursue voluntary "
         "preliminary testing of at least two frontier AI models prior to their public deployment.")
    q = "Under the October 2024 national security memorandum, how many frontier models was NIST's safety institute expected to test?"
    assert answer_spans(s, q, "how_many")[0].text == "at least two frontier AI models"  # what is counted, not "180 days"
    s = "Within 60 days of the issuance of this memorandum, the head of each agency must designate a CAIO."
    assert answer_spans(s, "Within how many days must each agency designate a CAIO?", "how_many")[0].text == "60 days"
    # a name's words are no answer slot: "Security – that the Trump Administration" is no reply to "... lead on AI security?"
    q = "What new hub for sharing threat intelligence about AI security does the Action Plan want Homeland Security to lead?"
    plan = ("The Plan identifies over 90 Federal policy actions across three pillars – Accelerating Innovation, and Leading in "
            "International Diplomacy and Security – that the Trump Administration will take in the coming weeks and months.")
    assert next(score for score, sp in scored_answer_spans(plan, q, "which") if sp.text == "Trump Administration") < 1.0
    # "how many weeks" counts weeks, not the 90 actions a sentence nearer the question's words counts
    q = "For how many weeks could the public send in suggestions for the AI plan?"
    weeks = scored_answer_spans("Comments were submitted over a seven-week span and closed on March 15th.", q, "how_many")
    actions = scored_answer_spans("The Plan identifies over 90 Federal policy actions across three pillars.", q, "how_many")
    assert weeks[0][1].text == "seven-week" and weeks[0][0] > actions[0][0]
    # a date whose month and year the question states is the question's own, not its answer
    q = "If a use could not meet the minimum practices in time for December 2024, by what date did the agency have to ask for more time?"
    assert [x.text for x in answer_spans("Agencies must meet the practices by December 1, 2024.", q, "when")] == []
    assert answer_spans("Such an extension request must be submitted to OMB by October 15, 2024.", q, "when")[0].text == "October 15, 2024"


# -- what may be quoted -----------------------------------------------------------------------

@pytest.mark.parametrize("text,reason", [
    ("SECTION 5 OF OMB MEMORANDUM M-24-10", "heading"),
    ("III. REPORTING ON DETERMINATIONS, EXTENSIONS, AND WAIVERS FROM", "heading"),
    ("Encourage Open-Source and Open-Weight AI", "heading"),
    ("Recommended Policy Actions", "fragment"),
    ("Sec. 3. Strengthening AI Governance.", "heading"),
    ("Fig. 5. Functions organize AI risk management activities at their highest level to govern, map, measure, and manage AI risks.", "caption"),
    ("Table 4: Categories and subcategories for the MANAGE function.", "caption"),
    ("How should NTIA define ‘‘open’’ or ‘‘widely available’’ when thinking about foundation models and model weights?", "question"),
    ("concentration implications of foundation models: The Invisible Hand of ChatGPT, Brookings Inst.", "fragment"),
    ("See, e.g., Jai Vipra and Anton Korinek, Market concentration implications, Brookings Inst. (2023) https://www.brookings.edu/x.", "citation"),
    # endnotes of comment letters: a quoted title, its publisher and date; a press release; a preprint
    ("“South Korea and France to Host Next Two AI Safety Summits,” Reuters, November 1, 2023.", "citation"),
    ("NIH Clinical Center releases dataset of 32,000 CT images, NIH press release (July 20, 2018).", "citation"),
    ("The pile: an 800gb dataset of diverse text for language modeling. arXiv: 2101.00027 [cs.CL].", "citation"),
    ("UK Department for Science, “International Scientific Report on Advanced AI Safety: Panel Members,” February 1, 2024.", "citation"),
    ("He called the plan “ambitious,” and agencies began work in March 2024.", None),
    ("See Arvind Narayanan and Says Kapoor, AI safety is not a model property, AI Snake Oil, Mar. 12, 2024, https://www.aisnakeoil.com/p/x.",
     "citation"),
    ("Seeing the risks identified in 2024, every agency must test its AI systems before use.", None),
    ("The next AI Safety Summits will be held in South Korea and France in 2024.", None),
])
def test_not_quotable(text, reason):
    assert not_quotable(clean_sentence(text)) == reason


def test_quotable_sentences_and_cleaning():
    assert not_quotable("Each agency must designate a Chief AI Officer within 60 days.") is None
    assert strip_footnote_marker("9 In applicable situations, this will enable employers") == "In applicable situations, this will enable employers"
    assert strip_footnote_marker("10See, e.g., Jai Vipra") == "See, e.g., Jai Vipra"
    assert strip_footnote_marker("Revoking Executive Order 1396012 of December 3, 2020") == "Revoking Executive Order 1396012 of December 3, 2020"
    assert strip_footnote_marker("1. OVERVIEW") == "1. OVERVIEW"
    assert clean_sentence("DATES: Written comments must be received on or before March 27, 2024.") == \
        "Written comments must be received on or before March 27, 2024."
    assert clean_sentence("• Led by DOC, develop new export controls on semiconductor manufacturing subsystems.").startswith("Led by DOC")
    assert is_leadin("outlining the characteristics of trustworthy AI systems, which include")
    assert is_leadin("To report on such waivers:") and not is_leadin("Agencies must act.")


def test_leadin_is_quoted_only_with_its_list():
    from rag.answer.evidence import evidence_sentences

    units = passage_units(evidence_sentences(RMF_OVERVIEW))
    lists = [u for u in units if u.kind == "list"]
    assert len(lists) == 1 and lists[0].text.endswith("fair with their harmful biases managed.")
    assert not any(u.text.rstrip().endswith("which include") for u in units)
    alone = passage_units(["Key policies in the AI Action Plan include:", "The Plan identifies over 90 Federal policy actions."])
    assert [u.text for u in alone] == ["The Plan identifies over 90 Federal policy actions."]


# -- extractive answers on real passages --------------------------------------------------------

def quoted(sents: list[AnswerSentence]) -> str:
    return " ".join(s.text for s in sents)


def test_when_question_puts_the_date_first(embedder):
    passages = [P(NTIA_QUESTIONS, "ntia.pdf", 0), P(NTIA_DATES, "ntia.pdf", 1)]
    sents, quotes, best = extractive("When were NTIA comments due?", passages, embedder)
    assert render(sents).startswith("March 27, 2024 [2]: “Written comments must be received on or before March 27, 2024.”")
    assert sents[0].citations == (2,) and sents[0].supported and best > 0.2
    assert "Written comments must be received" in quotes[2][0]
    assert "?" not in quoted(sents)  # a commenter question is no answer


def test_who_question_names_the_agency(embedder):
    passages = [P(RMF_FIG5, "rmf.txt", 0), P(RMF_OECD, "rmf.txt", 1), P(RMF_DEVELOPMENT, "rmf.txt", 2)]
    sents, _, _ = extractive("Which agency developed the AI Risk Management Framework?", passages, embedder)
    assert sents[0].text.startswith("NIST: “Development of the AI RMF by NIST") and sents[0].citations == (3,)
    assert "Fig. 5" not in quoted(sents)


def test_which_question_names_the_officer_and_never_quotes_a_heading(embedder):
    passages = [P(OMB_SECTION5, "omb-guidance.pdf", 0), P(M2410_OVERVIEW, "m-24-10.pdf", 1)]
    sents, _, _ = extractive("What must agencies designate under OMB memo M-24-10?", passages, embedder)
    assert sents[0].text.startswith("Chief AI Officer (CAIO): “") and sents[0].citations == (2,)
    assert "SECTION 5 OF" not in quoted(sents) and "OVERVIEW" not in quoted(sents)


EXTENSION = ("For a particular use of AI that cannot feasibly meet the minimum risk management practices in Section 5(c) of OMB "
             "Memorandum M-24-10 by December 1, 2024, an agency may request an extension of that deadline by up to one year. "
             "Such an extension request must be submitted to OMB by October 15, 2024. Agencies should describe the practices "
             "they cannot meet.")


def test_a_sentence_pointing_back_is_read_with_the_sentence_it_points_to(embedder):
    sents = passage_sentences(EXTENSION)
    units = passage_units(sents)
    assert context_before(sents, units[1]) == 0  # "Such an extension request ..." reads with the sentence before it
    assert context_before(sents, units[0]) is None and context_before(sents, units[2]) is None
    q = "If an agency could not bring a high-risk AI use up to the minimum safeguards in time for December 2024, by what date did it have to ask for more time?"
    sents_, _, _ = extractive(q, [P(EXTENSION, "instructions.pdf")], embedder)
    assert render(sents_).startswith("October 15, 2024 [1]: “Such an extension request")


TASK_FORCE = ("Within 30 days of the date of this order, the Attorney General shall establish an AI Litigation Task Force whose "
              "sole responsibility shall be to challenge State AI laws. By December 16, 2024, each agency must submit an inventory "
              "of its AI use cases. The Attorney General shall act consistent with Executive Order 12250 of November 2, 1980 "
              "(Leadership and Coordination of Nondiscrimination Laws).")


def test_a_year_after_to_is_a_date():
    assert [x.text for x in date_spans("an open source code policy dating back to 2016 that seeks to increase reuse")] == ["2016"]
    assert [x.text for x in date_spans("from 2019 to 2023")] == ["2019", "2023"]


def test_past_event_questions_want_a_reported_date():
    assert past_event_question("When did the Justice Department's litigation team file its first case against a state?")
    assert past_event_question("When had that Biden order been signed?")
    assert past_event_question("In which year did BigScience first publish its responsible AI license?")  # same, other words
    assert past_event_question("On what date did the European Parliament approve the AI Act?")
    assert not past_event_question("By what date did NTIA need written comments?")  # a deadline
    assert not past_event_question("On what date were agencies required to report?")
    for q in ("When did agencies have to designate a CAIO?", "When was the task force supposed to be set up?",
              "When were NTIA comments due?", "When must agencies submit extension requests?"):
        assert not past_event_question(q), q
    q = "When did the litigation team file its first case?"
    assert [s.text for s in answer_spans(TASK_FORCE, q, "when")] == []  # a period, a prescription, another order's date
    signed = "The order revoked Executive Order 14110 of October 30, 2023 (Safe, Secure, and Trustworthy AI)."
    assert answer_spans(signed, "When had the revoked order been signed?", "when")[0].text == "October 30, 2023"
    assert answer_spans(signed, "When did the agency first use the system?", "when") == []
    letter = "West Hollywood | CA | 90069-4109 | United States opensource.org March 27, 2024 Mr. Bertram Lee National Telecommunications"
    assert answer_spans(letter, "In what year did the executive director take up the post?", "when") == []  # the letter's own date
    reported = "On October 30, 2023, President Biden issued an Executive order on safe AI."
    assert answer_spans(reported, "When did the President issue the order on safe AI?", "when")[0].text == "October 30, 2023"


def test_a_past_event_the_documents_only_prescribe_is_not_answered(embedder):
    sents, _, _ = extractive("When did the Justice Department's AI litigation team file its first case against a state?",
                             [P(TASK_FORCE, "eo.md")], embedder)
    assert sents == []  # the order says when the task force must be set up, not when any case was filed
    sents, _, _ = extractive("Within how many days must the Attorney General establish the AI Litigation Task Force?",
                             [P(TASK_FORCE, "eo.md")], embedder)
    assert render(sents).startswith("30 days [1]")


def test_how_many_weeks_quotes_the_count_of_weeks(embedder):
    plan = P("The Plan identifies over 90 Federal policy actions across three pillars that the Trump Administration will take "
             "in the coming weeks and months.", "plan.md", 0)
    rfi = P("Comments were submitted over a seven-week span and closed on March 15th, ranging in topics from chip manufacturing "
            "to workforce training.", "rfi.md", 1)
    assert counts_asked(rfi.chunk.text, "seven-week", "For how many weeks could the public comment on the AI plan?")
    assert not counts_asked(plan.chunk.text, "over 90", "For how many weeks could the public comment on the AI plan?")
    assert not counts_asked(plan.chunk.text, "over 90", "How many were there?")
    sents, _, _ = extractive("For how many weeks could the public send in suggestions for Trump's AI plan?", [plan, rfi], embedder)
    assert render(sents).startswith("Seven-week [2]")


def test_how_many_question(embedder):
    sents, _, _ = extractive("Within how many days must each agency designate a Chief AI Officer?", [P(M2410_OVERVIEW, "m.pdf")], embedder)
    assert render(sents).startswith("60 days [1]: “As required by Executive Order 14110")


def test_headings_captions_leadins_and_footnote_numbers_are_never_quoted(embedder):
    passages = [P(OMB_SECTION5, "g.pdf", 0), P(RMF_FIG5, "rmf.txt", 1), P(RMF_OVERVIEW, "rmf.txt", 2), P(PLAN_FOOTNOTE, "plan.pdf", 3),
                P(PLAN_OPEN, "plan.pdf", 4), P(NTIA_QUESTIONS, "ntia.pdf", 5)]
    questions = ["What are the reporting requirements of Section 5 of OMB memorandum M-24-10?", "What do the functions of the AI RMF organize?",
                 "What are the characteristics of trustworthy AI systems?", "How will the Treasury guidance help employers with AI training?",
                 "Why are open-weight AI models valuable?", "What questions does NTIA ask commenters?"]
    for q in questions:
        sents, _, _ = extractive(q, passages, embedder, n_sentences=3)
        assert sents, q
        for s in sents:
            body = s.text.split("“", 1)[1]
            assert not body[:1].isdigit(), (q, s.text)  # no leading footnote number
            assert not_quotable(body.rstrip("”")) is None or s.text.startswith("- "), (q, s.text)
            for bad in ("SECTION 5 OF", "REPORTING ON", "Fig. 5", "Encourage Open-Source and Open-Weight AI", "Recommended Policy Actions",
                        "Instructions for Commenters"):
                assert bad not in s.text, (q, s.text)
            assert not s.text.rstrip("”").endswith(("which include", ":")), (q, s.text)
    sents, _, _ = extractive("How will the Treasury guidance help employers with AI training?", passages, embedder, n_sentences=3)
    assert "In applicable situations, this will enable employers" in quoted(sents)
    sents, _, _ = extractive("What are the characteristics of trustworthy AI systems?", passages, embedder, n_sentences=1)
    assert "which include valid and reliable, safe" in sents[0].text  # the lead-in with its list


def test_summary_question_gives_several_cited_points_in_document_order(embedder):
    passages = [P(PLAN_OPEN_ACTIONS, "plan.pdf", 1, section=SECTION, ordinal=9), P(PLAN_OPEN, "plan.pdf", 0, section=SECTION, ordinal=8),
                P(NTIA_QUESTIONS, "ntia.pdf", 2)]
    sents, quotes, best = extractive("What does the Action Plan say about open-weight models?", passages, embedder)
    assert 3 <= len(sents) <= 6 and best > 0.3
    assert all(s.citations and s.citations[0] in (1, 2) and s.supported and s.text.startswith("- “") for s in sents)
    cited = [s.citations[0] for s in sents]
    assert cited == sorted(cited, reverse=True)  # passage 2 (ordinal 8) comes before passage 1 (ordinal 9)
    assert any("convene stakeholders" in s.text for s in sents)  # a recommended action is among the points
    text = render(sents)
    assert text.count("\n") == len(sents) - 1 and "Recommended Policy Actions" not in text and "Encourage Open-Source" not in text
    assert set(quotes) == set(cited)


def test_a_scorer_changes_the_choice(embedder):
    passages = [P(PLAN_OPEN, "plan.pdf", 0)]
    q = "Why do open-weight models matter?"
    plain, _, _ = extractive(q, passages, embedder, n_sentences=1)
    target = "For that reason, they also have geostrategic value."
    assert target not in plain[0].text

    def scorer(question: str, sentences):
        assert question == q and len(sentences) > 3
        return np.array([4.0 if s == target else -4.0 for s in sentences])

    sents, quotes, best = extractive(q, passages, embedder, n_sentences=1, scorer=scorer)
    assert sents[0].text == f"“{target}”" and best == 4.0 and quotes[1][0] == target


def test_existing_call_shapes_still_work(embedder):
    from rag.settings import AnswerSettings

    passages = [P(NTIA_DATES, "ntia.pdf")]
    sents, quotes, best = extractive("What is the docket number?", passages, embedder, n_sentences=1)
    assert len(sents) == 1 and isinstance(quotes, dict) and isinstance(best, float)
    sents, _, _ = extractive("What is the docket number?", passages, embedder, opts=AnswerSettings())
    assert sents


# -- rendering ---------------------------------------------------------------------------------

def test_render_puts_the_citation_after_the_answer_span():
    s = AnswerSentence("March 27, 2024: “Written comments must be received on or before March 27, 2024.”", (2,), 0.6, True)
    assert render([s]) == "March 27, 2024 [2]: “Written comments must be received on or before March 27, 2024.”"
    pts = [AnswerSentence("- “A point.”", (1,), 0.6, True), AnswerSentence("- “Another point.”", (2,), 0.6, True)]
    assert render(pts) == "- “A point.” [1]\n- “Another point.” [2]"
    assert render([AnswerSentence("“Quoted.”", (1,), 0.6, True)]) == "“Quoted.” [1]."


# -- no invented facts -------------------------------------------------------------------------

def test_fact_normalisation():
    assert parse_date("March 27, 2024") == parse_date("27 March 2024") == parse_date("2024-03-27") == parse_date("3/27/2024") == (2024, 3, 27)
    assert parse_date("Monday, February 26, 2024") == (2024, 2, 26) and parse_date("January 2023") == (2023, 1, None)
    assert parse_number("over 10,000") == parse_number("10000 comments") == parse_number("ten thousand") == 10000
    assert parse_number("$500 million") == parse_number("$500,000,000") == 5e8
    assert parse_number("50 percent") == parse_number("50%") == 50 and parse_number("seven-week") == 7
    assert parse_number("tens of billions of parameters") is None  # vague: nothing to check
    src = "As required by Executive Order 14110 and Sec. 4.6 of it, docket NTIA–\n2023–0009 (89 FR 14059) lists over 10,000 comments."
    for ok in ("EO 14110 applies.", "E.O. 14110 applies.", "Section 4.6 applies.", "Docket NTIA-2023-0009 applies.",
               "89 Fed. Reg. 14059 applies.", "It lists 10000 comments.", "It lists ten thousand comments."):
        assert missing_facts(ok, src) == [], ok
    for bad in ("EO 14179 applies.", "Section 4.7 applies.", "Docket NTIA-2023-0010 applies.", "It lists 12,000 comments."):
        assert missing_facts(bad, src), bad


def test_fact_check_rejects_invented_facts_and_keeps_true_ones():
    src = M2410_OVERVIEW + "\nWritten comments must be received on or before March 27, 2024."
    assert missing_facts("Each agency must designate a Chief AI Officer within 60 days under Executive Order 14110.", src) == []
    assert missing_facts("Comments were due by 2024-03-27.", src) == []
    assert [f.text for f in missing_facts("Each agency must designate a Chief AI Officer by December 17, 2023.", src)] == ["December 17, 2023"]
    assert [f.text for f in missing_facts("Each agency must designate a Chief AI Officer within 90 days.", src)] == ["90 days"]
    assert [f.text for f in missing_facts("Executive Order 14179 requires a Chief AI Officer.", src)] == ["Executive Order 14179"]
    assert [f.text for f in missing_facts("This is required under M-24-18.", src)] == ["M-24-18"]
    assert missing_facts("The memo says agencies must “designate a Chief AI Officer (CAIO) within 60 days”.", src) == []
    invented = "The memo says “agencies shall appoint a Chief Robot Officer at once”."
    assert [f.kind for f in extract_facts(invented)] == ["quote"] and missing_facts(invented, src)
    assert unfound_quotations(invented, [src, NTIA_DATES]) == ["agencies shall appoint a Chief Robot Officer at once"]
    assert strip_quotation_marks(invented, unfound_quotations(invented, [src])) == \
        "The memo says agencies shall appoint a Chief Robot Officer at once."


def test_attribution_flags_invented_facts_whatever_their_support(embedder):
    passages = [P(M2410_OVERVIEW, "m-24-10.pdf", 0, title="OMB M-24-10: Advancing Governance"), P(NTIA_DATES, "ntia.pdf", 1)]
    draft = ("Each agency must designate a Chief AI Officer within 60 days of the issuance of this memorandum [1]. "
             "Each agency must designate a Chief AI Officer within 60 days of December 17, 2023 [1]. "
             "As required by Executive Order 14179, each agency must designate a Chief AI Officer [1]. "
             "Under M-24-10, each agency must designate a Chief AI Officer [1]. "
             "Written comments must be received on or before March 27, 2024 [2]. "
             "Written comments must be received on or before March 29, 2024 [2]. "
             "The memo says “each agency must appoint a Chief Robot Officer at once” [1].")
    failures: dict[int, list[str]] = {}
    sents, quotes = attribute(draft, passages, embedder, threshold=0.5, failures=failures)
    assert len(sents) == 7
    ok, bad_date, bad_eo, title_id, ntia_ok, ntia_bad, fake_quote = sents
    assert ok.supported and ok.citations == (1,)
    assert title_id.supported  # the memo's number is in the passage's title
    assert ntia_ok.supported and ntia_ok.citations == (2,)
    for s in (bad_date, bad_eo, ntia_bad, fake_quote):
        assert not s.supported and s.citations == ()
    assert bad_date.support >= 0.5  # the embedding alone would have accepted it
    assert failures[1] == ["December 17, 2023"] and failures[2] == ["Executive Order 14179"] and failures[5] == ["March 29, 2024"]
    assert "“" not in fake_quote.text and "Chief Robot Officer" in fake_quote.text  # never shown as a quotation
    assert 0 not in failures


def test_a_date_question_answered_only_by_a_bare_year_is_refused(embedder):
    """"On what date did X publish ...?" with passages holding only the year of another release: the documents don't
    say (no quote of "2019"); a passage with the full date answers it."""
    from helpers import passage

    from rag.answer.extractive import extractive

    year_only = "Ever since the lab faced the choice of how to release its language model in 2019, new releases were staged."
    p = [passage(year_only, chunk_id="y-0", source="letter.pdf", title="Letter", ordinal=0, rank=1)]
    sents, _, _ = extractive("On what date did the lab publish the weights of its speech recognition model?", p, embedder)
    assert sents == []
    dated = year_only + " The lab published the weights of its speech recognition model on September 21, 2022."
    p = [passage(dated, chunk_id="y-1", source="letter.pdf", title="Letter", ordinal=0, rank=1)]
    sents, _, _ = extractive("On what date did the lab publish the weights of its speech recognition model?", p, embedder)
    assert sents and sents[0].text.startswith("September 21, 2022")


def test_a_name_cut_at_a_hyphen_is_no_answer():
    """PDF text splits "GPT-3.5-Turbo and GPT-4" into a capitalised run "Turbo and GPT-": no who-answer."""
    from rag.answer.spans import scored_answer_spans

    s = ("For example, we recently partnered with Microsoft to disrupt the operations of a number of nation-state cyber "
         "threat actors who were abusing our GPT-3.5-Turbo and GPT-4 models to assist in cyberoffensive operations.")
    spans = [sp.text for _, sp in scored_answer_spans(s, "Which named nation-state hacking groups did OpenAI disrupt?", "who")]
    assert not any(t.rstrip().endswith("-") for t in spans)


def test_a_weak_number_is_no_lead_even_right_after_a_question_word():
    """A number of weight below 0.5 (a footnote marker, "Llama 2", "several") stays no answer although it sits where an
    answer usually does ("we had several motivations" for "How many times has ... been downloaded?")."""
    from rag.answer.spans import scored_answer_spans

    q = "How many times has GPT-J-6B been downloaded since its release?"
    assert scored_answer_spans("As we wrote at the time, we had several motivations for this new release.", q, "how_many") == []
    assert scored_answer_spans("Meta said Llama 2 outperforms GPT-3 on most benchmarks.", q, "how_many") == []
    assert [sp.text for _, sp in scored_answer_spans("It has been downloaded 25 million times.", q, "how_many")] == ["25 million times"]
