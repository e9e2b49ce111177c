"""What a quantity question needs before any passage can answer it.

"How many acres did Interior offer?" is not answered by "By February 28, 2025" or "a minimum of 3
sites", and "How much money did Congress appropriate?" not by "within 90 days": a near-topic passage
full of other numbers is exactly what the similarity and the evidence scorer cannot tell apart from an
answer. So a count question whose counted thing is not a span of time needs a number *of that thing*
in the passages ("at least five regions ... as Priority Geothermal Zones", "two frontier AI models"),
and a money question needs an amount of money; likewise "which countries / companies / court" needs a
named country, company or court. When no sentence of the passages has one, the honest answer is that
the documents do not give it. The same holds for a quantity question answered only by spans of time
("what numerical target ...?" -> "within 120 days"), and for any question whose focus the passages
barely mention (`focus`: "what tax credit percentage ...?" over a permitting order's passages).
A number of the right kind somewhere is not enough either: the one quoted must measure what was asked
(`lead_fits`: "How many repositories ...?" is not answered by the "100" of "100+ million developers").
Pure functions, regexes only, like `qtypes`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from rag.answer.facts import parse_date
from rag.answer.focus import missing_focus
from rag.answer.qtypes import MONTHS, agent_spans, classify, date_spans, number_spans, question_core
from rag.answer.spans import counts_asked
from rag.text.lexical import lexical_tokens

UNIT_WINDOW = 20  # words after a number (in the passages, or the one quoted) within which the counted thing must be named
_TIME = frozenset(["second", "minute", "hour", "day", "week", "month", "year", "decade", "business", "calendar"])
_TIME_STEMS = frozenset(t[:5] for t in _TIME)  # as _stem gives them
_GENERIC = frozenset(
    [
        "time",
        "times",
        "percent",
        "percentage",
        "people",
        "person",
        "thing",
        "things",
        "item",
        "items",
        "way",
        "ways",
        "kind",
        "kinds",
        "type",
        "types",
    ]
)
_HOW_MANY = re.compile(r"\bhow many\s+((?:[A-Za-z][\w’'-]*\s+){0,4})", re.I)
_AUX = re.compile(
    r"^(?:must|shall|should|does|do|did|will|would|can|could|is|are|was|were|has|have|had|may|might|of|in|on|at|for|to|"
    r"under|by|from|with|the|a|an|that|which|were)$",
    re.I,
)
_MONEY_Q = re.compile(
    r"\b(?:how much (?:money|funding)|money|cost|costs|budget|budgets|fine|fines|salary|salaries|dollars?|"
    r"appropriat\w*|funding|price|spend(?:ing)?)\b",
    re.I,
)
_MONEY = re.compile(r"\$\s?\d|\b\d[\d,.]*\s*(?:million|billion|trillion)?\s*(?:dollars|USD)\b", re.I)


def _stem(word: str) -> str:
    toks = lexical_tokens(word)
    return toks[0][:5] if toks else ""


@lru_cache(maxsize=512)
def counted_thing(question: str) -> str | None:
    """The head noun a "how many" question counts ("how many AI use cases did" -> "cases"), or None
    when it counts time (days, weeks) or nothing specific."""
    m = _HOW_MANY.search(question)
    if not m:
        return None
    words = []
    for w in m.group(1).split():
        if _AUX.match(w):
            break
        words.append(w.strip("’'"))
    return _counted_head(words)


def _counted_head(words: list[str]) -> str | None:
    """The noun a counted phrase names: its first plural ("AI use cases" -> "cases"), else its last word;
    None when it is time (days, weeks) or a generic word."""
    if not words:
        return None
    plural = [w for w in words if w.lower().endswith("s") and not w.isupper() and len(w) > 3]
    head = (plural[0] if plural else words[-1]).lower()
    toks = lexical_tokens(head)
    return None if not toks or toks[0] in _TIME or toks[0] in _GENERIC else head


_SUPERLATIVE = re.compile(r"\b(?:the )?(?:most|fewest|largest number of|greatest number of|highest number of|smallest number of)\s+"
                          r"((?:[A-Za-z][\w’'-]*\s*){1,4})", re.I)
_ADJECTIVE = re.compile(r"(?:ble|ful|ive|ous|al|ic|ant|ent|ed|ing|ly|est|ary|ory|less|like)$", re.I)


def compared_count(question: str) -> str | None:
    """The thing a "which X ... the most Y" question compares counts of ("Which agency listed the most AI
    applications?" -> "applications"): only numbers of Y can tell, so a passage naming agencies without
    them does not answer. None for an adjective's superlative ("the most capable models") or no superlative."""
    if not re.match(r"(?:which|who)\b", question_core(question), re.I):
        return None  # "what is the most common risk?" asks for a kind, not a comparison of counts
    m = _SUPERLATIVE.search(question)
    if not m:
        return None
    words = []
    for w in m.group(1).split():
        core = w.strip("?,;:.’'")
        if not core or _AUX.match(core):
            break
        words.append(core)
    if not words or (not words[0].isupper() and _ADJECTIVE.search(words[0].lower()) and not words[0].lower().endswith("s")):
        return None
    return _counted_head(words)


def counts_thing(sentence: str, thing: str) -> bool:
    """Does the sentence hold a number of `thing` (named in the number's span or within UNIT_WINDOW words after it)?"""
    stem = _stem(thing)
    if not stem:
        return False
    for s in number_spans(sentence):
        if s.weight < 0.9 and not any(_stem(w) == stem for w in s.text.split()):
            continue  # a bare small number or a period ("within 60 days") counts nothing
        if {_stem(w) for w in s.text.split()} & _TIME_STEMS:
            continue
        if _names_after(sentence, s.start, s.end, stem):
            return True
    return False


def _names_after(sentence: str, start: int, end: int, stem: str) -> bool:
    """Is the thing (its stem) named in the number sentence[start:end] or within UNIT_WINDOW words after it?"""
    words = [*sentence[start:end].split(), *sentence[end:].split()[:UNIT_WINDOW]]
    return bool(stem) and any(_stem(w) == stem for w in words)  # no stem: a dash or bracket would match it


_TIME_Q = re.compile(r"\bhow (?:long|soon|often|frequently|old)\b|\b(?:days?|weeks?|months?|years?|hours?|deadline|duration|period|"
                     r"time ?frame|time|frequency|age|length|date|when)\b", re.I)


def has_count(sentence: str) -> bool:
    """A number that is no span of time, date or bare index: "$500 million", "at least 20 challenges", "100 MW"."""
    for s in number_spans(sentence):
        if s.weight >= 0.9 and not ({_stem(w) for w in s.text.split()} & _TIME_STEMS) and not _FREQ_WORDS.search(s.text):
            return True
    return False


_FREQ_WORDS = re.compile(r"annual|quarterly|monthly|weekly|daily|biennial|every|each", re.I)
_DATE_Q = re.compile(r"\b(?:on|by|as of)? ?(?:what|which) (?:exact |calendar )?(?:date|day)\b", re.I)
_CALENDAR = re.compile(rf"\b(?:{MONTHS})\b|\d{{1,2}}/\d{{1,2}}/\d{{2,4}}|\b(?:19|20)\d{{2}}-\d{{2}}-\d{{2}}\b", re.I)


def has_calendar_date(sentence: str) -> bool:
    """A date a calendar shows ("March 28, 2024", "January 2023", "2024-03-28"), not "within 120 days"."""
    return any(s.weight == 1.0 and _CALENDAR.search(s.text) for s in date_spans(sentence))


# Kinds of thing whose instances are proper names ("Which countries ...?" -> Japan, India; "which court" ->
# the Supreme Court). Agencies, offices and roles are not here: near-topic passages always name some, and
# the who-detector ranks them; documents, programs and provisions are not either (their names are spans
# the question often already holds).
_NAMED_CLASS = frozenset(
    [
        "country", "countries", "nation", "nations", "city", "cities", "company", "companies", "firm", "firms",
        "developer", "developers", "vendor", "vendors", "provider", "providers", "lab", "labs", "laboratory",
        "laboratories", "university", "universities", "college", "colleges", "court", "courts", "judge", "judges",
        "tribe", "tribes", "ally", "allies", "partner", "partners", "territory", "territories", "manufacturer",
        "manufacturers", "contractor", "contractors", "school", "schools", "hospital", "hospitals", "bank", "banks",
        "states",  # not "state": mostly "state law"
    ]
)
_WHICH_HEAD = re.compile(r"\b(?:which|what)\s+((?:[A-Za-z][\w’'.-]*\s+){0,4})", re.I)
# names that are the setting of almost any sentence here, not an instance of a class the question asks for
_SETTING = frozenset(["united", "state", "america", "american", "u.s", "us", "federal", "government", "national", "ai", "nation"])


def named_class(question: str) -> str | None:
    """The kind of named thing a "which X" question asks for, when its instances are proper names
    ("Which AI companies' models ...?" -> "companies", "Which court was ...?" -> "court"); else None."""
    for m in _WHICH_HEAD.finditer(question):
        words = []
        for w in m.group(1).split():
            if _AUX.match(w):
                break
            words.append(w.strip("’'.,"))
        found = [w.lower() for w in words if w.lower() in _NAMED_CLASS and not w.isupper()]
        if found:
            return found[-1]  # "which partner countries" asks for countries
    return None


def _singular(word: str) -> str:
    toks = lexical_tokens(word)
    return toks[0] if toks else ""


# what stands between a class word and a name that is one of its instances: "countries such as Japan",
# "companies, including OpenAI", "courts (the Delaware Supreme Court)"; "Japan and other countries"
_CUE_AFTER = re.compile(r"^[\s,]*(?:[\w’'-]+[\s,]+){0,3}?(?:such as|including|like|namely|e\.g\.,?|i\.e\.,?|:|\(|—|–)\s*(?:the\s+)?$", re.I)
_CUE_BEFORE = re.compile(r"^[\s,]*(?:(?:and|or|among|plus|as well as)\s+)?(?:(?:other|another|fellow|the)\s+)?(?:[A-Za-z-]+\s+)?$", re.I)


def names_thing(sentence: str, thing: str, question: str = "") -> bool:
    """Does the sentence name an instance of `thing`: a capitalised name (not one the question already
    holds, nor only the setting: "United States", "Federal Government") that contains the class word
    ("Supreme Court"), or that is no agency, office, role or acronym and is introduced as one ("partner
    countries such as Japan", "OpenAI and other companies")?"""
    cls = _singular(thing)
    if not cls:
        return False
    qtoks = set(lexical_tokens(question))
    mentions = [m for m in re.finditer(r"[\w’'-]+", sentence) if _singular(m.group(0)) == cls]
    for sp in agent_spans(sentence):
        toks = set(lexical_tokens(sp.text))
        if not toks or toks <= qtoks | _SETTING or sp.text.lower() in question.lower():
            continue
        if cls in toks:
            return True
        if sp.weight >= 0.6:
            continue  # an agency, office or role ("Secretary of State", "EDAG") is no country, company or court
        for m in mentions:
            if m.end() <= sp.start and _CUE_AFTER.match(sentence[m.end() : sp.start]):
                return True
            if sp.end <= m.start() and _CUE_BEFORE.match(sentence[sp.end : m.start()]):
                return True
    return False


_SHARE_Q = re.compile(r"\b(?:what|which|how (?:large|big|small)(?: an?)?)\s+(?:[\w-]+\s+){0,2}?(?:share|percentage|percent|proportion|"
                      r"fraction)\b|\bwhat %", re.I)
_SHARE = re.compile(r"%|\bper ?cent\b|\b(?:half|halves|thirds?|quarters?|fifths?|tenths?|majority|minority)\b"
                    r"|\b(?:\d+|one|two|three|four|five|six|seven|eight|nine|ten) (?:in|out of) (?:every )?\w+", re.I)
_PENALTY_Q = re.compile(r"\b(?:penalt(?:y|ies)|fines?|sanctions?)\b", re.I)
_PENALTY = re.compile(r"\b(?:penal\w*|fine[sd]?|sanction\w*|liab\w*|prosecut\w*|prison|imprison\w*|criminal|debar\w*|"
                      r"violat\w*|breach\w*)\b", re.I)
# money that someone pays or is given (an outlay), as opposed to money something is worth ("$8.8 trillion" of value,
# "$2.6 trillion in economic growth"): a question asking for an outlay is answered by an amount said to be paid
_OUTLAY = re.compile(r"\b(?:fund\w*|grant\w*|appropriat\w*|budget\w*|award\w*|prizes?|donat\w*|allocat\w*|invest\w*|"
                     r"spen[dt]\w*|costs?|costing|costly|price[sd]?|pric(?:ing|ey)|pa(?:y|ys|id|ying|yment\w*)|fees?|"
                     r"charg\w*|expens\w*|give[ns]?|gave|giving|salar\w*|subsid\w*|financ\w*|loans?|raise[ds]?)\b", re.I)
_DURATION_Q = re.compile(r"\bhow long\b(?! (?:is|are|was|were) the\b)|\bhow many (?:more )?(?:business |calendar )?"
                         r"(?:hours|days|weeks|months|years|decades)\b", re.I)
_MONEY_WORD = re.compile(r"\$|€|£|\b(?:dollars?|USD|euros?)\b", re.I)


@lru_cache(maxsize=512)  # asked once per answer span of every candidate unit
def measure_asked(question: str) -> str | None:
    """What the answer to a quantity question must measure, when the question says: a span of time ("how
    long", "how many weeks"), a number of the thing it counts ("how many repositories" -> "number of
    repositories"), an amount of money, a share, or a penalty; None for other quantity questions."""
    if classify(question) != "how_many":
        return None
    if _DURATION_Q.search(question):
        return "span of time"
    if _PENALTY_Q.search(question) and not re.search(r"\bhow many\b", question, re.I):
        return "penalty"
    if _SHARE_Q.search(question):
        return "share or percentage"
    thing = counted_thing(question)
    if thing:
        return f"number of {thing}"
    if re.search(r"\bhow much\b|^(?:what|which)\b", question, re.I) and _MONEY_Q.search(question):
        return "amount of money"
    return None


def lead_fits(question: str, sentence: str, lead: str) -> bool:
    """Does the answer span `lead`, found in `sentence`, measure what the quantity question asks for
    (`measure_asked`)? "How many repositories has GitHub disabled?" is not answered by "100" of "100+
    million developers", "What share of firms ...?" not by "600 business owners", "How much annual funding
    ...?" not by "32,000" CT images, "What penalty ...?" not by "tens of billions of parameters": a number of
    something else, however close its sentence, is no answer. True when the question asks for no such measure."""
    measure = measure_asked(question)
    if measure is None:
        return True
    at = sentence.find(lead)
    after = " ".join(sentence[at + len(lead):].split()[:3]) if at >= 0 else ""
    if measure == "span of time":  # "how long did the exercise last?" is not answered by "40 experts"
        return any(_stem(w) in _TIME_STEMS for w in f"{lead} {after}".replace("-", " ").split())
    if measure == "penalty":  # "$8.8 trillion" of value is no penalty: the sentence must speak of one
        return bool(_PENALTY.search(sentence))
    if measure == "share or percentage":
        return bool(_SHARE.search(f"{lead} {after}"))
    if measure == "amount of money":  # "how much funding ..." is not answered by "$2.6 trillion in economic growth"
        return bool(_MONEY_WORD.search(f"{lead} {after}")) and (not _OUTLAY.search(question) or bool(_OUTLAY.search(sentence)))
    if at < 0:
        return False  # "at least five regions ... as Priority Geothermal Zones": named within the window, as counts_thing reads it
    return counts_asked(sentence, lead, question) or _names_after(sentence, at, at + len(lead), _stem(counted_thing(question) or ""))


_FINE_DATE_Q = re.compile(r"\b(?:on|in) (?:what|which) (?:exact |calendar )?(?:date|day|month)\b|\b(?:what|which) month\b", re.I)
_YEAR_PIN_Q = re.compile(r"\b(?:month|day|date|week|season|quarter)s? (?:of|in|during) ((?:19|20)\d{2})\b", re.I)


@lru_cache(maxsize=512)
def date_fits(question: str, lead: str) -> bool:
    """Is the date `lead` as fine and in the year a when-question asks? "On what date / In which month did X
    happen?" is not answered by a bare year ("2019": it says nothing of the day or month asked, and is mostly
    the year of something else); "In which month of 2024 ...?" not by a date in another year ("2 November 2023").
    A relative span ("within 60 days") or a lead that is no calendar date is left to the other checks."""
    date = parse_date(lead)
    if date is None:
        return True
    year, month, _ = date
    if _FINE_DATE_Q.search(question) and year is not None and month is None:
        return False
    pin = _YEAR_PIN_Q.search(question)
    return not (pin and year is not None and year != int(pin.group(1)))


def missing_answer_kind(question: str, sentences: Iterable[str]) -> str | None:
    """What the question needs that no sentence holds ("number of acres", "amount of money", "calendar
    date" for an explicit "on what date" question, "named countries" for "which countries", a number
    that is no span of time for another quantity question), or None; failing those, the question's
    focus when the sentences mention less than half of it (`focus.missing_focus`).
    "When" alone is not checked: "within 60 days of this memorandum" answers "by when must agencies ...?"."""
    sentences = list(sentences)
    kind = _missing_kind(question, sentences)
    if kind is None and (focus := missing_focus(question, sentences)):
        return f"mention of {focus}"  # a near-topic question: its focus ("tax credit percentage") is in no passage
    return kind


def _missing_kind(question: str, sentences: list[str]) -> str | None:
    qtype = classify(question)
    thing = named_class(question) if qtype not in ("how_many", "when", "summary", "yesno") else None
    if thing and not any(names_thing(s, thing, question) for s in sentences):
        return f"named {thing}"
    compared = compared_count(question)
    if compared and not any(counts_thing(s, compared) for s in sentences):
        return f"number of {compared} to compare"
    if qtype == "when" and _DATE_Q.search(question):
        return None if any(has_calendar_date(s) for s in sentences) else "calendar date"
    if qtype != "how_many":
        return None
    thing = counted_thing(question)
    if thing and not any(counts_thing(s, thing) for s in sentences):
        return f"number of {thing}"
    money_q = bool(re.search(r"\bhow much\b|^(?:what|which)\b", question, re.I) and _MONEY_Q.search(question))
    if money_q and "how many" not in question.lower() and not any(_MONEY.search(s) for s in sentences):
        return "amount of money"
    if not thing and not _TIME_Q.search(question) and not any(has_count(s) for s in sentences):
        return "number other than a time span"  # "what numerical target ...?" is not answered by "within 120 days"
    return None

