"""No invented facts: every date, number, identifier and quotation of a generated sentence must be
found in the passage it cites.

Embedding support measures how much a sentence *resembles* a passage, and a resemblance score
cannot see that "December 17, 2023" is not "March 28, 2024": an invented date scored 0.55 against
the 0.50 threshold. Facts are therefore checked exactly, after normalising what legitimately
varies between a passage and a faithful paraphrase of it: case, whitespace, dashes and PDF line
breaks, "Executive Order" / "E.O." / "EO", "Section" / "Sec." / "§", number formats (10,000 ==
10000 == "ten thousand", 50% == 50 percent, $500 million == 500,000,000) and date formats
(March 27, 2024 == 27 March 2024 == 2024-03-27).

Pure functions; a passage's facts are computed once per text (cached).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from rag.answer.qtypes import MONTHS, date_spans, identifier_spans, number_spans
from rag.text.lexical import lexical_tokens
from rag.types import Passage

_MONTH_NUM = {m[:3].lower(): i for i, m in enumerate(
    ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"], 1)}
_WORDS = {w: i for i, w in enumerate(("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
                                      "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
                                      "eighteen", "nineteen"))}
_WORDS.update({"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
               "hundred": 100, "dozen": 12})
_SCALE = {"thousand": 1e3, "million": 1e6, "billion": 1e9, "trillion": 1e12, "hundred": 1e2}
_VAGUE = frozenset({"several", "tens", "hundreds", "thousands", "millions", "billions", "dozens"})
_QUOTE_RE = re.compile(r"“([^”]{3,400})”|‘‘([^’]{3,400})’’|\"([^\"]{3,400})\"|''([^']{3,400})''")
_DASHES = str.maketrans({c: "-" for c in "‐‑‒–—―−"} | {"’": "'", "‘": "'", "“": '"', "”": '"', "\u00ad": ""})


@dataclass(frozen=True)
class Fact:
    """A checkable claim inside a sentence: its kind, its text as written, and its normalised key."""

    kind: str  # date | number | identifier | quote | term
    text: str
    key: object


def normalise(text: str) -> str:
    """Lower case, one kind of dash and quote, no line-break hyphens, one spelling of common references."""
    t = text.translate(_DASHES)
    t = re.sub(r"(\w)-\s*\n\s*(\w)", r"\1\2", t)  # "develop-\nment" -> "development"
    t = " ".join(t.split()).lower()
    t = re.sub(r"\s*-\s*(?=\d)", "-", t)  # "NTIA– 2023–0009" -> "ntia-2023-0009"
    t = re.sub(r"\bexecutive orders?\b\s*(?:\(eo\)\s*)?(?:no\.\s*)?|\be\.\s?o\.\s*|\beo\s+(?=\d)", "eo ", t)
    t = re.sub(r"\bsections?\b\.?\s*|\bsec\.\s*|§+\s*", "sec ", t)
    t = re.sub(r"\bfed\.\s*reg\.", "fr", t)
    t = re.sub(r"\bpub(?:lic)?\.?\s*l(?:aw)?\.?\s*(?:no\.\s*)?", "pl ", t)
    t = re.sub(r"\bnist[. ]ai[. ](\d)", r"nist ai \1", t)
    return t


def squash(text: str) -> str:
    """Letters and digits only: what survives any spacing, hyphenation or punctuation difference."""
    return re.sub(r"[^a-z0-9]", "", normalise(text))


# ---------------------------------------------------------------------------------------------
# Parsing


def parse_date(text: str) -> tuple[int | None, int | None, int | None] | None:
    """'March 27, 2024' / '27 March 2024' / '2024-03-27' / '3/27/2024' / 'March 2024' / 'March 15' / '2028'
    -> (year, month, day) with None for what is not said; None when it is no calendar date."""
    t = text.strip()
    m = re.search(r"\b((?:19|20)\d{2})-([01]\d)-([0-3]\d)\b", t)
    if m:
        return int(m.group(1)), int(m.group(2)), int(m.group(3))
    m = re.search(r"\b([01]?\d)/([0-3]?\d)/((?:19|20)?\d{2})\b", t)
    if m:
        y = int(m.group(3))
        return (y + 2000 if y < 100 else y), int(m.group(1)), int(m.group(2))
    month = re.search(rf"\b({MONTHS})", t, re.I)
    year = re.search(r"\b((?:19|20)\d{2})\b", t)
    if not month:
        if re.search(r"\b(?:fiscal year|fy)\b", t, re.I):
            fy = re.search(r"(\d{2,4})\s*$", t)
            return (2000 + int(fy.group(1)) % 100, None, None) if fy else None
        return (int(year.group(1)), None, None) if year else None
    mon = _MONTH_NUM[month.group(1)[:3].lower()]
    rest = (t[: month.start()] + " " + t[month.end():]).replace(year.group(1), " ") if year else t[: month.start()] + " " + t[month.end():]
    day = re.search(r"\b(\d{1,2})(?:st|nd|rd|th)?\b", rest)
    return (int(year.group(1)) if year else None), mon, (int(day.group(1)) if day else None)


def _word_value(word: str) -> float | None:
    w = word.lower().strip()
    if w in _WORDS:
        return float(_WORDS[w])
    parts = w.split("-")
    if len(parts) == 2 and parts[0] in _WORDS and parts[1] in _WORDS:
        return float(_WORDS[parts[0]] + _WORDS[parts[1]])
    return None


def parse_number(text: str) -> float | None:
    """'over 10,000' -> 10000; '$500 million' -> 5e8; '50 percent' -> 50; 'seven-week' -> 7; vague ('tens of') -> None."""
    t = text.lower().replace("a hundred", "one hundred")
    m = re.search(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?", t)
    if m:
        value = float(m.group(0).replace(",", ""))
        after = t[m.end():]
    else:
        words = re.findall(r"[a-z]+(?:-[a-z]+)?", t)
        for i, w in enumerate(words):
            if w in _VAGUE:
                return None
            v = _word_value(w) if _word_value(w) is not None else _word_value(w.split("-")[0])
            if v is not None:
                value, after = v, " ".join(words[i + 1 :])
                break
        else:
            return None
    sc = re.match(r"\s*(thousand|million|billion|trillion)\b", after)
    return value * _SCALE[sc.group(1)] if sc else value


# ---------------------------------------------------------------------------------------------
# Facts of a sentence, facts of a passage


def quotations(sentence: str, min_words: int = 3) -> list[tuple[int, int, str]]:
    """Quoted strings of `min_words`+ words: (start, end of the whole quotation incl. marks, inner text)."""
    out = []
    for m in _QUOTE_RE.finditer(sentence):
        inner = next(g for g in m.groups() if g is not None)
        if len(re.findall(r"\w+", inner)) >= min_words:
            out.append((m.start(), m.end(), inner))
    return out


def extract_facts(sentence: str) -> list[Fact]:
    """Quotations, identifiers, dates and numbers stated in a sentence (facts inside a quotation are the quotation's)."""
    facts: list[Fact] = []
    taken: list[tuple[int, int]] = []

    def free(a: int, b: int) -> bool:
        return not any(a < e and s < b for s, e in taken)

    for a, b, inner in quotations(sentence):
        facts.append(Fact("quote", inner, squash(inner)))
        taken.append((a, b))
    for s in identifier_spans(sentence):
        if free(s.start, s.end):
            facts.append(Fact("identifier", s.text, squash(s.text)))
            taken.append((s.start, s.end))
    for s in date_spans(sentence):
        d = parse_date(s.text) if free(s.start, s.end) and not s.text.lower().startswith(("within", "after", "in ", "for ")) else None
        if d is not None:
            facts.append(Fact("date", s.text, d))
            taken.append((s.start, s.end))
    for s in number_spans(sentence):
        if not free(s.start, s.end):
            continue
        v = parse_number(s.text)
        if v is not None:
            facts.append(Fact("number", s.text, v))
        elif not re.search(r"\d", s.text) and s.text.split()[0].lower() not in _VAGUE and re.search(r"annual|quarter|month|week|daily", s.text, re.I):
            facts.append(Fact("term", s.text, squash(re.sub(r"ly\b", "", s.text))))
    return facts


@dataclass(frozen=True)
class PassageFacts:
    """What a passage states, normalised once: its squashed text, its dates and its numbers."""

    squashed: str
    dates: tuple[tuple[int | None, int | None, int | None], ...]
    numbers: frozenset[float]
    section_numbers: frozenset[str]


@lru_cache(maxsize=512)
def passage_facts(text: str) -> PassageFacts:
    """Index a passage's text for fact checks (cached: a passage is checked against many sentences)."""
    flat = " ".join(text.translate(_DASHES).split())
    dates = tuple(d for s in date_spans(flat) if (d := parse_date(s.text)) is not None)
    nums: set[float] = set()
    for m in re.finditer(r"(?<![\w.])\$?(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)(?:\s+(thousand|million|billion|trillion))?", flat):
        v = float(m.group(1).replace(",", ""))
        nums.add(v)
        if m.group(2):
            nums.add(v * _SCALE[m.group(2)])
    for m in re.finditer(r"\d+", flat):  # digits glued to anything ("M-24-10", "60-day", "Order 1396012")
        nums.add(float(m.group(0)))
    for m in re.finditer(r"\b([a-z]+(?:-[a-z]+)?)\b(?:\s+(thousand|million|billion|trillion))?", flat.lower()):
        v = _word_value(m.group(1)) if _word_value(m.group(1)) is not None else _word_value(m.group(1).split("-")[0])
        if v is not None:
            nums.add(v * (_SCALE[m.group(2)] if m.group(2) else 1))
    secs = frozenset(m.group(0) for m in re.finditer(r"\d+(?:\.\d+)+|\d+(?:\([a-z0-9]{1,4}\))+", flat))
    return PassageFacts(squash(text), dates, frozenset(nums), secs)


def _date_found(d: tuple[int | None, int | None, int | None], pf: PassageFacts) -> bool:
    if d[1] is None and d[2] is None and d[0] is not None:  # a year: any mention of it will do
        return float(d[0]) in pf.numbers
    return any(all(x is None or x == y for x, y in zip(d, pd, strict=True)) for pd in pf.dates)


def fact_found(fact: Fact, pf: PassageFacts) -> bool:
    """Whether a passage states the fact (in whatever format)."""
    if fact.kind in ("quote", "term"):
        return bool(fact.key) and str(fact.key) in pf.squashed
    if fact.kind == "identifier":
        if str(fact.key) in pf.squashed:
            return True
        sec = re.search(r"(?:sec(?:tion)?\.?|§)\s*(\d+(?:\.\d+)*(?:\([a-z0-9]{1,4}\))*)", fact.text, re.I)
        if sec:  # "Sec. 4.6" where the passage only has the heading "4.6."
            return sec.group(1) in pf.section_numbers  # dotted or lettered numbers only: "5" alone proves nothing
        eo = re.search(r"\b(\d{5})\b", fact.text)
        return bool(eo) and float(eo.group(1)) in pf.numbers and bool(re.search(r"eo|order", fact.text, re.I))
    if fact.kind == "date":
        return _date_found(fact.key, pf)  # type: ignore[arg-type]
    if fact.kind == "number":
        v = float(fact.key)  # type: ignore[arg-type]
        return any(abs(v - x) <= 1e-9 * max(1.0, abs(v)) for x in pf.numbers)
    return True


def passage_text(p: Passage) -> str:
    """What a passage states for the fact check: its text, and what it is (title, section, date).

    A chunk of M-24-10 rarely repeats "M-24-10", yet a sentence citing it may name the memo.
    """
    c = p.chunk
    return "\n".join(x for x in (c.title, c.section, c.date or "", c.text) if x)


def missing_facts(sentence: str, passage_text: str, facts: list[Fact] | None = None) -> list[Fact]:
    """The sentence's facts that the passage does not state (empty: the sentence invents nothing)."""
    pf = passage_facts(passage_text)
    return [f for f in (extract_facts(sentence) if facts is None else facts) if not fact_found(f, pf)]


def unfound_quotations(sentence: str, passage_texts: list[str]) -> list[str]:
    """Quotations (3+ words) that occur in none of the passages: they must never be shown as quotations."""
    pfs = [passage_facts(t) for t in passage_texts]
    return [inner for _, _, inner in quotations(sentence) if not any(squash(inner) in pf.squashed for pf in pfs)]


def strip_quotation_marks(sentence: str, inners: list[str]) -> str:
    """Remove the quotation marks around the given quoted strings, keeping their words."""
    out = sentence
    for a, b, inner in reversed(quotations(sentence)):
        if inner in inners:
            out = out[:a] + inner + out[b:]
    return out


# ---------------------------------------------------------------------------------------------
# Key content: what a sentence is about must be in the passage it cites (issue 15)
#
# A sentence resembling a passage (same topic, same vocabulary) is not one the passage states: "The AI
# Action Plan says open-weight models should be allowed to exist as long as they meet certain criteria"
# scored 0.67 against an injected note that only named the plan and open models. So beside the fact
# check, a cited passage must name the sentence's entities and hold most of its content words.

_CAP_WORD = r"(?:[A-Z][A-Za-z0-9’'&-]*\.?|[A-Z]\.(?:[A-Z]\.)+)"
_CAP_RUN = re.compile(rf"{_CAP_WORD}(?:\s+(?:of|for|and|on|the|to|in|de|&)\s+{_CAP_WORD}|\s+{_CAP_WORD})*")
_ALIASES = ((re.compile(r"\bartificial intelligence\b", re.I), "AI"), (re.compile(r"\bunited states\b|\bu\.s\.(?=\s|$)", re.I), "US"))
# words that report a claim rather than make it: "the memo says/states/notes that ..."
_REPORTING = frozenset({"say", "said", "state", "stated", "note", "noted", "explain", "describe", "mention", "according",
                        "also", "document", "passage", "source", "text", "discus", "discusse", "outline", "emphasize"})
_LEADING = frozenset({"the", "a", "an", "this", "that", "these", "those", "it", "its", "in", "on", "under", "according",
                      "each", "every", "all", "any", "both", "for", "to", "by", "as", "at", "if", "when", "while", "after",
                      "before", "also", "however", "yes", "no", "per", "with", "from", "and", "or", "but", "so", "there"})
_MONTHS_DAYS = frozenset(m.lower().rstrip("\\.") for m in MONTHS.split("|")) | {"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"}


def _aliased(text: str) -> str:
    for pat, rep in _ALIASES:
        text = pat.sub(rep, text)
    return text


def entities(sentence: str) -> list[str]:
    """Names in a sentence: runs of capitalised words ("AI Action Plan", "Office of Management and Budget") and
    acronyms ("OMB"); a lone capitalised first word, months and days (dates are facts) are not names."""
    text = _aliased(sentence)
    out: list[str] = []
    for m in _CAP_RUN.finditer(text):
        words = m.group(0).split()
        while words and words[0].lower().strip(".") in _LEADING:
            words = words[1:]
        words = [w for w in words if w.lower().strip(".") not in _MONTHS_DAYS]
        if not words:
            continue
        name = " ".join(words)
        at_start = m.start() == len(text) - len(text.lstrip()) and len(words) == 1
        acronym = sum(c.isupper() for c in name) >= 2 and " " not in name
        if (at_start and not acronym) or len(squash(name)) < 2:
            continue
        out.append(name)
    return list(dict.fromkeys(out))


def _initials(name: str) -> str:
    return "".join(w[0] for w in name.split() if w[:1].isupper()).lower()


def entity_found(name: str, passage: str) -> bool:
    """The name, its acronym, or the name an acronym stands for, in the passage (spacing and case ignored)."""
    ptext = _aliased(passage)
    key = squash(name)
    if key and key in squash(ptext):
        return True
    if " " in name and len(_initials(name)) >= 2 and re.search(rf"\b{re.escape(_initials(name))}\b", ptext.lower()):
        return True
    if " " not in name and name.isupper():  # an acronym: a name in the passage with those initials
        return any(_initials(e) == name.lower() for e in entities(ptext) if " " in e)
    return False


def _stem(tok: str) -> str:
    return tok[:5] if tok.isalpha() else tok


def _claim_words(sentence: str) -> set[str]:
    """The claim's content words, one stem a word ("open-weight" counts once), without reporting words and
    without the words of its names (those are checked as entities)."""
    named = {w.lower() for e in entities(sentence) for w in e.split()}
    out: set[str] = set()
    for word in _aliased(sentence).split():
        toks = lexical_tokens(word)
        if toks and toks[0] not in _REPORTING and word.strip(".,;:!?()[]\"'“”‘’").lower() not in named:
            out.add(_stem(toks[0]))
    return out


def _passage_stems(text: str) -> set[str]:
    return {_stem(t) for t in lexical_tokens(_aliased(text))}


def content_share(sentence: str, passage: str) -> float:
    """Share of the claim's content words (claim_words) found in the passage."""
    words = _claim_words(sentence)
    return len(words & _passage_stems(passage)) / len(words) if words else 1.0


def key_content_gaps(sentence: str, passage: str, min_share: float) -> list[str]:
    """What the sentence claims that the passage does not hold: names it does not state, and too few of the
    sentence's content words (under `min_share`). Empty: the passage holds the sentence's key content."""
    gaps = [f"'{e}'" for e in entities(sentence) if not entity_found(e, passage)]
    share = content_share(sentence, passage)
    if share < min_share:
        gaps.append(f"{share:.0%} of its content words")
    return gaps
