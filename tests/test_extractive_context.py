"""Answer-sentence choice beyond the sentence's own words (issue 12, item 2b/3; issue 14's follow-up).

A policy sentence often answers in the words of its heading or through an acronym the document
defined pages earlier ("i. Designating Chief AI Officers. Within 60 days ..., the head of each agency
must designate a CAIO."), and a "when" question is answered by the sentence with the deadline even
where a dateless sentence resembles the question more.
"""

from __future__ import annotations

from helpers import passage

from rag.answer.extractive import acronym_expansions, extractive, lexical_match
from rag.answer.qtypes import number_spans
from rag.answer.requirements import counts_thing
from rag.retrieve.docmatch import IDENTIFIER_SCORE, named_places
from rag.types import Passage


def P(text: str, source: str, ordinal: int = 0, section: str = "") -> Passage:
    return passage(text, chunk_id=f"{source}-{ordinal}", source=source, title=source, ordinal=ordinal, section=section,
                   rank=ordinal + 1)


M2410_CAIO = """CAIOs bear primary responsibility on behalf of the head of their agency for implementing this
memorandum and coordinating implementation with other agencies.

a. Actions

i. Designating Chief AI Officers. Within 60 days of the issuance of this memorandum, the
head of each agency must designate a CAIO. To ensure the CAIO can fulfill the responsibilities laid
out in this memorandum, agencies that have already designated a CAIO must evaluate whether they need
to provide that individual with additional authority."""

NSM_CAIO = """(A) Each covered agency shall have a Chief AI Officer who holds primary responsibility within that
agency, in coordination with other responsible officials, for managing the agency's use of AI,
promoting AI innovation within the agency, and managing risks from the agency's use of AI."""

EO_TASK_FORCE = """(b) Within 45 days of the date of this order, to coordinate rapid advances in the capacity of the
Federal AI workforce, the Assistant to the President and Deputy Chief of Staff for Policy shall convene
an AI and Technology Talent Task Force."""


def test_acronyms_are_read_in_full_both_ways():
    words = ["What", "must", "agencies", "do", "regarding", "Chief", "AI", "Officers?"]
    assert acronym_expansions("the head of each agency must designate a CAIO.", words) == {
        "caio": {"chief", "ai", "offic"}
    }
    assert acronym_expansions("CAIOs bear primary responsibility", words) == {"caio": {"chief", "ai", "offic"}}
    # skipping small words: "Economic Diplomacy Action Group" -> EDAG; one letter or one word is no acronym
    assert set(
        acronym_expansions("The EDAG shall coordinate", ["the", "Economic", "Diplomacy", "Action", "Group"])
    ) == {"edag"}
    assert acronym_expansions("AI systems", words) == {}
    assert acronym_expansions("designate a CAIO", ["Chief", "Information", "Officer"]) == {}
    # the question's acronym, the sentence's words
    with_acronym = lexical_match(
        "What minimum grade does M-24-10 set for the CAIO?", "each agency must designate a Chief AI Officer"
    )
    without = lexical_match(
        "What minimum grade does M-24-10 set for the CAIO?", "each agency must designate an officer"
    )
    assert with_acronym > without


def test_heading_context_counts_half():
    q = "Who designates Chief AI Officers?"
    bare = lexical_match(q, "The head of each agency must name one.")
    with_heading = lexical_match(q, "The head of each agency must name one.", "i. Designating Chief AI Officers.")
    in_sentence = lexical_match(q, "The head of each agency must designate Chief AI Officers.")
    assert bare < with_heading < in_sentence


def test_when_follow_up_quotes_the_deadline_of_the_named_memo(embedder):
    """After "What must agencies do under OMB memo M-24-10 regarding Chief AI Officers?", "By when?"
    is condensed with it; the answer is M-24-10's 60 days, not a dateless duty nor another order's 45 days."""
    query = "What must agencies do under OMB memo M-24-10 regarding Chief AI Officers? By when?"
    passages = [
        P(M2410_CAIO, "omb/M-24-10.pdf", 0, "3. STRENGTHENING ARTIFICIAL INTELLIGENCE GOVERNANCE"),
        P(NSM_CAIO, "nsm.md", 1, "4.2. Strengthening AI Governance and Risk Management"),
        P(EO_TASK_FORCE, "eo-14110.pdf", 2, "10.2. Increasing AI Talent in Government"),
    ]
    sents, quotes, _ = extractive(query, passages, embedder, qtype="when")
    assert sents[0].text.startswith("Within 60 days: “Within 60 days of the issuance of this memorandum")
    assert sents[0].citations == (1,) and "60 days" in quotes[1][0]


def test_a_when_question_without_any_date_keeps_the_plain_answer(embedder):
    passages = [P(NSM_CAIO, "nsm.md", 0)]
    sents, _, _ = extractive("By when must agencies have a Chief AI Officer?", passages, embedder)
    assert sents and sents[0].text.startswith("“(A) Each covered agency shall have a Chief AI Officer")


def test_a_document_named_by_identifier_takes_all_places_but_one():
    assert named_places(5, [("omb/M-24-10.pdf", IDENTIFIER_SCORE)]) == 4
    assert named_places(5, [("a.pdf", IDENTIFIER_SCORE), ("b.pdf", IDENTIFIER_SCORE)]) == 3  # two named: room for both
    assert named_places(5, [("plan.pdf", 3.0)]) == 3  # named by title words or a date: may be a wrong guess
    assert named_places(1, [("omb/M-24-10.pdf", IDENTIFIER_SCORE)]) == 1


def test_a_bare_year_is_no_count():
    """The "until 2036" in M-24-10's table of actions is no number of agencies (a how-many question about
    agencies was answered "2036" instead of being refused)."""
    spans = number_spans("3(a)(iii) 180 days and every two years thereafter until 2036 Each CFO Act Agency")
    assert "2036" not in [s.text for s in spans] and "180 days" in [s.text for s in spans]
    assert not counts_thing("every two years thereafter until 2036 Each CFO Act Agency Develop a strategy", "agencies")
