"""Question shapes whose answer is a kind of sentence rather than a span: a reason, a definition, a list.

Similarity prefers the sentence that restates a question's words. For three shapes of question the
answer has a recognisable form that the restating sentence usually lacks:

- "Why does the plan call for X?" / "For what purpose ...?" is answered by a sentence that gives a
  cause or purpose ("because many businesses have sensitive data", "in order to", "so that", "to
  ensure"), or states the benefit, risk or need behind X ("there can be substantial benefits ...,
  but also substantial security risks"), not by the recommended action that names X again;
- "How does the order define X?" / "What is meant by X?" by the definition ("The term “AI data
  center” means ...");
- "Which kinds of state laws ...?" / "What are the two principles?" by a list (a lead-in with its
  items), which `evidence.passage_units` keeps together as one unit.

Each shape gives a unit of that form a small bonus on the extractive ranking (chosen on the calibrate
half of eval/paraphrased.jsonl and eval/shipped.jsonl); the unit must still be near the best match.
Pure functions, regexes only, like `qtypes`.
"""

from __future__ import annotations

import re

from rag.answer.qtypes import MONTHS
from rag.answer.qtypes import question_core as _core

CAUSE_BONUS = 0.25  # a sentence giving a cause or purpose ("because", "so that"), for a "why" question
REASON_BONUS = 0.1  # one naming a benefit, risk or need, for a "why" question
DEFINITION_BONUS = 0.15  # a definition, for a "define" question
LIST_BONUS = 0.1  # a lead-in with its items, for a "which kinds" question

_WHY_Q = re.compile(
    r"^(?:and |so |but )?why\b|\bfor what (?:purpose|reason)s?\b|\bwhat (?:is|was|are|were) the (?:main |stated |key )?"
    r"(?:purpose|reason|rationale|motivation|justification|goal)s? (?:of|for|behind)\b|\bwhat (?:reasons?|rationale|justification)\b"
    r"|\bhow (?:does|do|did) .{2,80}? justify\b",
    re.I,
)
_CAUSE = re.compile(
    r"\b(?:because|since(?! (?:19|20)\d\d)|so that|in order to|as a result|given that|owing to|thereby)\b", re.I
)
_REASON = re.compile(
    r"\b(?:to (?:ensure|help|protect|prevent|promote|enable|reduce|address|avoid|maintain|preserve|secure)|"
    r"benefits?|beneficial|advantages?|risks?|threats?|harms?|cannot|can ?not|unable|urgen(?:t|cy)|essential|"
    r"imperative|necessary|critical to|vital|need(?:s|ed)? to|requires?|poorly understood|"
    r"allows?|enables?|helps?)\b",
    re.I,
)
_DEFINE_Q = re.compile(
    r"\bdefin(?:e|es|ed|ing|ition)\b|\bwhat is meant by\b|\bwhat (?:does|do) .{2,80}? mean\b|\bwhat counts as\b"
    r"|\bmeaning of\b",
    re.I,
)
_DEFINITION = re.compile(
    r"\bmeans\b|\bthe terms? [“\"‘']|\brefers? to\b|\b(?:is|are) defined as\b|\bdefined (?:as|to mean)\b|\bshall mean\b",
    re.I,
)
_LIST_Q = re.compile(
    r"\b(?:which|what) (?:kinds?|types?|sorts?|categories|classes|forms|examples|areas|elements|components) of\b"
    r"|^(?:what|which) (?:are|were) the (?:two|three|four|five|six|seven|eight|nine|ten|\d+)\b",
    re.I,
)


def shape(question: str) -> str | None:
    """ "why", "definition", "list" or None."""
    q = _core(question)
    if _WHY_Q.search(q):
        return "why"
    if _DEFINE_Q.search(q):
        return "definition"
    if _LIST_Q.search(q):
        return "list"
    return None


def shape_bonus(kind: str | None, text: str, unit_kind: str) -> float:
    """The bonus a unit of `text` (of evidence unit kind `unit_kind`) earns for a question of shape `kind`."""
    if kind == "why":
        return CAUSE_BONUS if _CAUSE.search(text) else (REASON_BONUS if _REASON.search(text) else 0.0)
    if kind == "definition":
        return DEFINITION_BONUS if _DEFINITION.search(text) else 0.0
    if kind == "list":
        return LIST_BONUS if unit_kind == "list" else 0.0
    return 0.0


_MASTHEAD = re.compile(r"(?:\b[A-Z] ){3,}|\bMEMORANDUM FOR\b|^\s*(?:FROM|SUBJECT|TO|MEMORANDUM):|\bSUBJECT:")


def is_masthead(text: str) -> bool:
    """A memo's letterhead or address block ("T H E DI RE C T O R ... MEMORANDUM FOR THE HEADS OF ...
    FROM: ... SUBJECT: ..."), which PDF extraction runs into the first sentence: never an answer."""
    return bool(_MASTHEAD.search(text))


# ---------------------------------------------------------------------------------------------
# Dates the question pins, and deadlines

DEADLINE_WINDOW = 0.4  # a deadline question quotes the best sentence with a deadline this far below the best unit
EXACT_DATE_BONUS = 0.2  # a unit holding a full date the question states ("By March 15, 2025, what must ...?")

_DEADLINE_Q = re.compile(
    r"^(?:by|until) when\b|\bby what (?:date|time|day|month|year)\b|\bdeadlines?\b|\bdue\b|\bno later than\b|\bhow soon\b",
    re.I,
)
_DEADLINE_BEFORE = re.compile(
    r"(?:\bby|\bbefore|\bno later than|\bnot later than|\bon or before|\buntil|\bthrough|\bdue(?: on| by)?|\bdeadline (?:of|is))"
    r"(?:\s+the end of)?\s*$",
    re.I,
)


def deadline_question(question: str) -> bool:
    """ "By when ...?", "By what date ...?", "What is the deadline ...?": the answer is a deadline."""
    return bool(_DEADLINE_Q.search(_core(question)))


def is_deadline(text: str, span: str) -> bool:
    """Is `span` (a date found in `text`) a deadline: "by March 27, 2024", "on or before ...", "within 60 days"?
    An event's date ("On October 30, 2023, the President signed ...") is not."""
    i = text.find(span)
    if i < 0:
        return False
    return span.lower().startswith("within") or bool(_DEADLINE_BEFORE.search(text[max(0, i - 30) : i]))


_FULL_DATE = re.compile(
    rf"\b(?:{MONTHS})\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+(?:19|20)\d{{2}}\b|\b(?:19|20)\d{{2}}-[01]\d-[0-3]\d\b", re.I
)


def _norm_date(text: str) -> str:
    return " ".join(re.sub(r"(?<=\d)(?:st|nd|rd|th)\b", "", text.lower().replace(",", " ")).split())


def pinned_dates(question: str) -> list[str]:
    """The full dates a question states ("By March 15, 2025, what must ...?" -> "march 15 2025"), normalised.
    A sentence holding one is about that step; "By March 31, 2025" in the next paragraph is not."""
    return [_norm_date(m.group(0)) for m in _FULL_DATE.finditer(question)]


def holds_date(text: str, dates: list[str]) -> bool:
    """Does the text state one of the (normalised) dates?"""
    norm = _norm_date(text)
    return any(d in norm for d in dates)
