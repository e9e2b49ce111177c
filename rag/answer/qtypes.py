"""Question types and the spans that answer them: dates, numbers, agencies and roles, named things.

Similarity ranks the sentences that *resemble* a question; a "when" question is only answered by a
sentence that holds a date, a "who" question by one that names an agency, office, role or person.
These pure, regex-based functions say what kind of answer a question wants and find spans of that
kind in a sentence, so the extractive answerer can prefer sentences that hold one and put it first.
Regexes, not a tagger: policy text is formulaic (dates, "within 60 days", "Secretary of Commerce",
"M-24-10"), and the answer path must stay fast and deterministic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from rag.text.lexical import STOPWORDS

QType = Literal["when", "who", "how_many", "which", "summary", "yesno", "other"]
TYPED: frozenset[str] = frozenset({"when", "who", "how_many", "which"})  # types whose answer is a span


@dataclass(frozen=True)
class Span:
    """A candidate answer inside a sentence: text[start:end], its kind and how typical it is (0..1)."""

    start: int
    end: int
    text: str
    kind: str  # date | number | agent | name | identifier
    weight: float = 1.0


# ---------------------------------------------------------------------------------------------
# Classification

AUX_VERBS = r"(?:must|shall|should|does|do|did|will|would|can|could|is|are|was|were|has|have|had|may|might)"
MODIFIERS = rf"(?:(?!{AUX_VERBS}\b)[\w.’'-]+\s){{0,4}}?"  # up to four modifiers, never an auxiliary ("what must agencies...")
_SUMMARY = re.compile(
    r"^(?:please\s+)?(?:summari[sz]e|describe|outline|explain|tell me about|give (?:me )?an overview)\b|\bsummary of\b|\boverview of\b"
    r"|\b(?:main|key) points\b"
    r"|^what (?:does|do|did|will) .{2,120}? (?:say|state|propose|recommend|require|direct|provide|cover|contain|set out|"
    r"announce|plan)\s+(?:about|on|for|regarding|concerning|with respect to|to address)\b"
    r"|^what (?:are|were) the (?:main |key |major |[\w-]+ )?(?:recommend\w*|actions|policy actions|steps|measures|"
    r"provisions|priorities|goals|objectives|points)\b"
    r"|^how (?:does|do|did|will|would) .{2,120}? (?:address|handle|treat|approach|tackle|deal with)\b"
    r"|^what (?:does|do|did) .{2,120}? (?:propose|recommend)\b",
    re.I,
)
_WHEN = re.compile(
    rf"^(?:when|until when|by when|since when|how soon)\b|^(?:what|which) {MODIFIERS}(?:date|day|month|year|deadline|time ?frame)\b"
    r"|^(?:what|which) (?:is|was|were|are) the (?:[\w-]+ ){0,2}?(?:deadline|due date|date)\b|\bby what (?:date|time)\b"
    r"|^on what (?:date|day)\b"
    r"|^(?:in|on|by|during|until|through|from|since) (?:what|which) (?:[\w-]+ ){0,2}?(?:date|day|month|year|week|quarter)s?\b",
    re.I,
)
_QUANTITY = (r"(?:amount|number|percentage|percent|share|proportion|fraction|threshold|level|size|sum|quantity|price|"
             r"cost|budget|fine|penalty|dollar|salary|target|count|total|cap|limit|rate|age|length|duration)")
_HOW_MANY = re.compile(
    r"\bhow (?:many|much|long|big|large|often|frequently|far|high|old)\b"
    rf"|^(?:what|which) {MODIFIERS}{_QUANTITY}s?\b|^(?:what|which) (?:is|was|are|were) the (?:[\w’'-]+ ){{0,3}}?{_QUANTITY}\b"
    r"|\b(?:below|above|under|over) what\b",
    re.I,
)
_AGENT_NOUN = (r"(?:agency|agencies|office|offices|official|officials|officer|department|departments|secretary|council|"
               r"committee|board|body|bodies|institute|administration|bureau|commission|center|centre|adviser|advisor|"
               r"staffer|person|people|individual|organization|organisation|entity|unit|team|task force|group|"
               r"leader|lead|chair|head|director|administrator|authority|official)")
_WHO = re.compile(rf"^(?:who|whom|whose)\b|(?:^|[,;]\s*(?:but\s+|and\s+)?)(?:which|what) {MODIFIERS}{_AGENT_NOUN}s?\b|\bwho\b", re.I)
_ID_NUMBER = re.compile(r"\b(?:docket|order|document|case|serial|identification|section|publication|bill|report) number\b", re.I)
_NAMED_NOUN = (r"(?:order|executive order|memo|memorandum|program|programme|platform|plan|act|law|statute|framework|"
               r"docket|section|provision|report|initiative|effort|hub|resource|principles?|polic(?:y|ies)|pillars?|"
               r"functions?|challenge|mission|standard|guidance|guideline|tool|file format|format|web address|address|"
               r"identifier|name|title|term|code|document|grade|pilot|project|website|portal)")
_WHICH = re.compile(
    rf"^(?:which|what) {MODIFIERS}{_NAMED_NOUN}s?\b|\b(?:in|under|at) (?:what|which) \w+"
    r"|^what (?:must|shall|should|does|do|did|will|would|can) .{2,120}? (?:designate|establish|appoint|name|create|"
    r"launch|convene|set up|form|revoke|replace|rescind|publish|adopt)\w*\b",
    re.I,
)
_LIST = re.compile(r"^(?:what|which) (?:are|were) the (?:two|three|four|five|six|seven|eight|nine|ten|\d+)\b"
                   r"|^(?:which|what) (?:kinds?|types?|sorts?|categories|category) of\b|^what (?:is|was|are|were)\b", re.I)
_YESNO = re.compile(rf"^{AUX_VERBS}\b", re.I)
LEAD_CLAUSE = re.compile(
    r"^(?:(?:under|in|according to|per|for|by|on|as of|after|before|if|since|within|during)\b[^?]{0,160}?,\s*)+"
    r"(?=(?:what|which|who|whom|whose|how|when|where|why|is|are|does|do|did|can)\b)",
    re.I,
)


def last_question(question: str) -> str:
    """The sentence that asks ("Context. When had that order been signed?" -> the second), spaces normalised."""
    q = " ".join(question.split()).strip()
    parts = [p for p in re.split(r"(?<=[.?!])\s+", q) if p]
    return next((p for p in reversed(parts) if p.endswith("?")), q)


def question_core(question: str) -> str:
    """The asking sentence without its lead clause ("Under M-24-10, ..."): where shapes and focus phrases are read."""
    return LEAD_CLAUSE.sub("", last_question(question))


def classify(question: str) -> QType:
    """The kind of answer a question wants.

    Order matters: a summary request ("what does X say about Y") is never a span question; "within
    how many days" wants a number though it is about time; a list or definition question ("what are
    the three pillars", "what is the Genesis Mission") is answered by a sentence, not a span.
    """
    q = last_question(question)
    lead = LEAD_CLAUSE.sub("", q)
    if _SUMMARY.search(lead) or _SUMMARY.search(q):
        return "summary"
    if re.search(r"\bhow (?:many|much|long|often|big|large)\b", q, re.I):
        return "how_many"
    for rx, kind in ((_ID_NUMBER, "which"), (_WHEN, "when"), (_HOW_MANY, "how_many"), (_LIST, "other"), (_WHO, "who"), (_WHICH, "which")):
        if rx.search(lead):
            return kind  # type: ignore[return-value]
    if _YESNO.match(lead):
        return "yesno"
    return "other"


# ---------------------------------------------------------------------------------------------
# Span detectors

MONTHS = ("January|February|March|April|May|June|July|August|September|October|November|December|"
          r"Jan\.|Feb\.|Mar\.|Apr\.|Jun\.|Jul\.|Aug\.|Sept\.|Sep\.|Oct\.|Nov\.|Dec\.")
_WEEKDAY = r"(?:(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday),?\s+)?"
_DAY = r"\d{1,2}(?:st|nd|rd|th)?"
_WORDNUM = ("one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|"
            "seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred|a hundred|"
            "dozen|a dozen|several|tens|hundreds|thousands|millions|billions")
_NUM = r"(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"
_NUMWORD = rf"(?:{_NUM}|(?:{_WORDNUM})(?:-(?:one|two|three|four|five|six|seven|eight|nine))?)"
_PERIOD = r"(?:days?|weeks?|months?|years?|hours?|business days?|calendar days?)"

DATE_RE = re.compile(
    rf"\b{_WEEKDAY}(?:{MONTHS})\s+{_DAY},?\s+(?:19|20)\d{{2}}\b"  # March 27, 2024
    rf"|\b{_DAY}\s+(?:{MONTHS}),?\s+(?:19|20)\d{{2}}\b"  # 27 March 2024
    rf"|\b(?:{MONTHS})\s+(?:of\s+)?(?:19|20)\d{{2}}\b"  # March 2024
    rf"|\b(?:{MONTHS})\s+{_DAY}\b(?![,\s]*\d)"  # March 15
    rf"|\b{_DAY}\s+(?:{MONTHS})\b(?![,\s]*\d)"  # 30 June
    r"|\b(?:19|20)\d{2}-[01]\d-[0-3]\d\b|\b[01]?\d/[0-3]?\d/(?:19|20)?\d{2}\b"  # 2024-03-27, 3/27/2024
    r"|\b(?:fiscal year|FY)\s?(?:(?:19|20)\d{2}|\d{2})\b"  # fiscal year 2025, FY25
    rf"|\b(?:within|after|in|for)\s+(?:the\s+)?(?:first\s+)?{_NUMWORD}[\s-]+{_PERIOD}\b"  # within 60 days
    r"|\b(?:no|not) later than\s+(?:(?:19|20)\d{2}\b|the end of)",  # no later than 2028
    re.I,
)
_YEAR_RE = re.compile(r"\b(?:by|in|until|through|before|after|since|during|from|to|of|beginning|starting|end of)\s+(?:calendar year\s+)?"
                      r"((?:19|20)\d{2})\b(?![-–/]\d)", re.I)
_IDENT_RE = re.compile(
    r"\bM-\d{2}-\d{2}\b|\bM\d{2}-\d{2}\b"  # OMB memoranda
    r"|\b(?:Executive Order|E\.\s?O\.|EO)\s*(?:\(EO\)\s*)?(?:No\.\s*)?\d{5}\b"  # EO 14110
    r"|\b\d{1,3}\s*(?:FR|Fed\.\s*Reg\.)\s*\d{3,6}\b"  # 89 FR 14059
    r"|(?:\b[Ss]ec(?:tion)?\.?|§)\s*\d+(?:\.\d+)*(?:\([a-z0-9]{1,4}\))*"  # Sec. 4.6, Section 5(c)
    r"|\b[Ss]ubsection\s+\d+(?:\.\d+)*(?:\([a-z0-9]{1,4}\))*"
    r"|\bNIST(?:\s|\.)(?:AI|SP)(?:\s|\.)\d{3}-\d+\b"  # NIST AI 100-1
    r"|\b[A-Z]{2,6}[-–]\s?\d{4}[-–]\s?\d{4}\b"  # NTIA-2023-0009
    r"|\bPub(?:lic)?\.?\s*L(?:aw)?\.?\s*(?:No\.\s*)?\d{2,3}-\d{1,3}\b"  # Pub. L. No. 117-263
    r"|\b\d+\s+U\.S\.C\.(?:\s*§*\s*\d+\w*)?"  # 5 U.S.C. § 552
    r"|\bGS-\d{1,2}\b|\b(?:NSM|OMB Circular|Circular)[- ]?[A-Z]?-?\d{1,3}\b"
)
_FREQ_RE = re.compile(
    r"\b(?:semi-?annual(?:ly)?|bi-?annual(?:ly)?|annual(?:ly)?|quarterly|monthly|weekly|daily|biennial(?:ly)?|"
    rf"every\s+(?:{_NUMWORD}\s+)?(?:other\s+)?(?:days?|weeks?|months?|years?|hours?|minutes?|decades?)|each\s+(?:year|month|quarter|spring|fall))\b",
    re.I,
)
_QUAL = (r"(?:(?:at least|at most|more than|less than|fewer than|greater than|over|under|up to|approximately|about|"
         r"nearly|almost|roughly|no more than|no fewer than|no less than|a minimum of|a maximum of|in excess of)\s+)?")
_NUMBER_RE = re.compile(
    rf"{_QUAL}\$?{_NUM}(?:\s+(?:million|billion|trillion|thousand|hundred))?(?:\s*(?:%|percent\b|per cent\b))?"
    rf"|{_QUAL}\b(?:{_WORDNUM})(?:-(?:one|two|three|four|five|six|seven|eight|nine))?\b(?:\s+(?:million|billion|trillion|thousand|hundred))?"
    r"(?:\s*(?:%|percent\b))?",
    re.I,
)


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


UNITS = _words("day days week weeks month months year years hour hours minute minutes megawatts megawatt mw gw kw "
               "gigawatts gigawatt watts parameters entities operations flops flop people workers comments sites "
               "regions models challenges agencies states actions members times dollars percent miles acres decades")
_PLURAL_NUMS = _words("tens hundreds thousands millions billions dozens")
_NOT_PLURAL = r"(?:is|was|has|does|this|its|his|thus|as|us|yes|less|unless|across|always|perhaps|whereas)"  # end in s, count nothing
_SMALL = _words("a an and as at by for from in of on or the to with via into its their this that these those")


def _overlaps(a: tuple[int, int], taken: list[tuple[int, int]]) -> bool:
    return any(a[0] < e and s < a[1] for s, e in taken)


RELATIVE_DATE = 0.7  # the weight of a period counted from an event ("within 60 days"): a deadline, not a date


def date_spans(sentence: str) -> list[Span]:
    """Dates and deadlines: "March 27, 2024", "2024-03-27", "within 60 days", "fiscal year 2025", "no later than 2028"."""
    out: list[Span] = []
    for m in DATE_RE.finditer(sentence):
        txt = m.group(0)
        relative = txt.lower().startswith(("within", "after", "in ", "for "))
        out.append(Span(m.start(), m.end(), txt, "date", RELATIVE_DATE if relative else 1.0))
    for m in _YEAR_RE.finditer(sentence):
        if not _overlaps((m.start(1), m.end(1)), [(x.start, x.end) for x in out]):
            out.append(Span(m.start(1), m.end(1), m.group(1), "date", 0.6))
    return sorted(out, key=lambda x: x.start)


def identifier_spans(sentence: str) -> list[Span]:
    """Document identifiers: M-24-10, EO 14110, 89 FR 14059, Sec. 4.6, NIST AI 100-1, NTIA-2023-0009, GS-15."""
    return [Span(m.start(), m.end(), m.group(0).strip(), "identifier") for m in _IDENT_RE.finditer(sentence)]


# words that open a sentence or clause before a count ("Over 350 people", "The 40 experts"): not names
_STARTERS = STOPWORDS | _words("over around nearly almost some only just roughly approximately more less fewer up within "
                               "after before since his her every another additional further exactly now today below "
                               "above between among per least most")


def _closes_name(sentence: str, at: int) -> bool:
    """Does the number at `at` follow a capitalised word ("Llama 2", "Phase 2", "Gemini 1.5")? A capitalised
    function word ("The 40 experts", "(a) Within 90 days") or a month ("March 5") does not make one."""
    prev = re.search(r"([A-Za-z][\w’'-]*)[\s-]$", sentence[:at])
    word = prev.group(1) if prev else ""
    if not word or not word[0].isupper() or word.isupper() or re.fullmatch(MONTHS, word, re.I) or re.search(r"[’']s?$", word):
        return False  # (a possessive owns the number: "Yandex’s 100B parameter model")
    return word.lower() not in _STARTERS  # "The 40 experts", "(a) Within 90 days": no name


def number_spans(sentence: str) -> list[Span]:
    """Numbers, amounts, durations and frequencies, with their unit: "$500 million", "over 10,000", "60 days".

    Digits inside dates and identifiers, a leading footnote marker and list enumerators are not numbers.
    """
    taken = [(s.start, s.end) for s in date_spans(sentence) if s.weight == 1.0] + [(s.start, s.end) for s in identifier_spans(sentence)]
    lead = re.match(r"\s*(?:\(?\d{1,3}[.)]|\d{1,3}(?=\s+[A-Z]))\s*", sentence)  # "1." / "(2)" / footnote "9 In ..."
    if lead:
        taken.append((0, lead.end()))
    out: list[Span] = []
    for m in _FREQ_RE.finditer(sentence):
        if not _overlaps((m.start(), m.end()), taken):
            out.append(Span(m.start(), m.end(), m.group(0), "number", 0.8))
            taken.append((m.start(), m.end()))
    for m in _NUMBER_RE.finditer(sentence):
        a, b = m.start(), m.end()
        txt = m.group(0)
        glued = (a > 0 and sentence[a - 1] in "-–.§/") or (b < len(sentence) and sentence[b] in "-–/" and not sentence[b + 1 : b + 2].isalpha())
        t = txt.strip()
        if not t or glued or _overlaps((a, b), taken):
            continue  # part of an identifier or a range ("M-24-10", "2024-03"), or already taken
        if re.fullmatch(r"(?:19|20)\d{2}", t):
            continue  # a bare year is a date, not a count
        digits = any(c.isdigit() for c in txt)
        if digits and re.match(r"[BMKT](?![A-Za-z])", sentence[b:]):
            b += 1  # "100B parameter", "7B model": a magnitude suffix, not a run-in capital
        rest = sentence[b:]
        unit = re.match(r"(?:[\s-]+)([A-Za-z][\w-]*)", rest)
        noun = unit.group(1) if unit else ""
        if unit and (noun.lower() in UNITS or (noun.endswith("s") and noun.islower() and noun not in _SMALL) or re.fullmatch(r"[A-Z]{2,}s", noun)):
            b += unit.end()
        elif not digits:  # a spelled number counts only with its noun: "two frontier AI models", "tens of billions of parameters"
            word = txt.split()[-1].lower()
            m2 = re.match(r"\s+of\s+[a-z]\w*(?:\s+of\s+[a-z]\w*)?", rest) if word in _PLURAL_NUMS else \
                re.match(rf"(?:\s+(?!(?:of|the|and|or|to|in)\b)[\w-]+){{0,3}}?\s+(?!{_NOT_PLURAL}\b)[a-z][\w-]*s\b", rest)
            if not m2:
                continue
            b += m2.end()
        bare = b == m.end() and re.fullmatch(r"[\d,.]+", t)
        # no count (weight 0.4, never an answer lead): a bare small number is often an index; a bare number run into a
        # capitalised word, a bracket or another number ("poses 37 Microsoft is", "501(c)(3)", "2.1 Part A") is a
        # footnote, page, section or address; a number closing a name ("Llama 2 outperforms", "Phase 2 of") is part of
        # it; "several evaluations" counts nothing a reader asked "how many" for
        no_count = (bare and (re.fullmatch(r"\d{1,2}", t) or not re.match(r"\+?\s+[a-z]", sentence[b:]))) \
            or (re.fullmatch(r"\d+(?:\.\d+)?", t) and _closes_name(sentence, a)) or t.lower() == "several"
        out.append(Span(a, b, sentence[a:b].strip(), "number", 0.4 if no_count else 1.0))
        taken.append((a, b))
    for s in date_spans(sentence):  # "within 60 days" is also a duration
        if s.weight < 1.0 and not re.fullmatch(r"(?:19|20)\d{2}", s.text) and not _overlaps((s.start, s.end), [(x.start, x.end) for x in out]):
            out.append(Span(s.start, s.end, s.text, "number", 0.9))  # a bare year ("until 2036") is no duration nor count
    return sorted(out, key=lambda s: s.start)


ROLE_WORDS = _words(
    "Secretary Director Officer Officers Administrator Council Institute Agency Department Office Committee Board "
    "Commission Center Centre Administration Bureau Service Group Force President Chair Chairman Chairperson "
    "Advisor Adviser Assistant Coordinator Team Division Foundation Laboratory Laboratories Authority Corps Staff "
    "Cabinet Representative Commissioner General Counsel Head Lead Official Officials Agencies Departments "
    "Offices Fellows Panel Working Enforcement Attorney Congress Senate House Governors Governor"
)
AGENCY_ACRONYMS = _words(
    "NIST OMB NTIA DOE DHS DOC DOD DoD DOJ DOL DOS DOT DOI HHS OSTP NSF CAISI AISI FTC FCC GSA OPM USPTO BLS BEA "
    "ED NASA NSA CISA FDA EPA USDA APNSA NSC CAIO CAIOs OIRA CEQ FERC NRC ODNI IC USAID SBA EXIM DFC NEC NIH CDC "
    "CMS VA DARPA IARPA NAIRR"
)
_NOT_AGENTS = _words(
    "AI US U.S. U.S USA UK EU LLM LLMs RMF GPU GPUs IT EO FR CFO NEPA CSV IaaS R&D ML API PDF URL CTE GS FY MW GW HTML NSM "
    "OECD TEVV CBRN CBRNE DNA GAI FOIA II III IV I V VI TBD NW DC OK ID"
)
_LEAD_WORDS = _words(
    "The This That These Those Each Every All Any An A In On By For Under Within To Its Their Such It As If When Where "
    "While With Led Through Pursuant Consistent Section Sec Subject Following After Before Beginning Additionally "
    "Moreover However Also And Or Further Finally Agencies Agency Among Both Unless Upon Until From At Per Please "
    "Written Some Many Most New Our We Your"
)
_CAPWORD = r"(?:[A-Z][A-Za-z’'&.-]*|\d+(?:\.\d+)?(?=\s+[A-Z]))"
_RUN_RE = re.compile(rf"{_CAPWORD}(?:(?:\s+(?:of|for|and|the|on|to|in|&|de))*\s+{_CAPWORD})*(?:\s+\([A-Z][A-Za-z&-]{{1,10}}\))?")
_QUOTED_RE = re.compile(r"[“\"‘]([^”\"’]{2,80})[”\"’]")


def _trim_run(sentence: str, a: int, b: int) -> tuple[int, int]:
    """Drop sentence-initial function words and trailing connectors from a capitalised run."""
    words = list(re.finditer(r"\S+", sentence[a:b]))
    i = 0
    while i < len(words) - 1 and words[i].group(0).strip("(),") in _LEAD_WORDS:
        i += 1
    if i == len(words) - 1 and words[i].group(0) in _LEAD_WORDS:
        return a, a
    j = len(words)
    while j > i + 1 and words[j - 1].group(0).lower() in _SMALL:
        j -= 1
    return a + words[i].start(), a + words[j - 1].end()


def agent_spans(sentence: str) -> list[Span]:
    """Agencies, offices, roles and people: "Secretary of Commerce", "AI Safety Institute", "NIST", "Travis Hall".

    Weight 1.0 for a run holding a role word or a known agency acronym, 0.6 for another acronym,
    0.3 for any other capitalised run (a person, or just a name: no tagger can tell).
    """
    out: list[Span] = []
    idents = [(s.start, s.end) for s in identifier_spans(sentence)]
    runs: list[tuple[int, int]] = []
    for m in _RUN_RE.finditer(sentence):
        a = m.start()
        for cut in re.finditer(r"\s+to\s+", m.group(0)):  # "Request for Comment to Travis Hall": two names
            if not re.search(r"(?:Assistant|Advisor|Adviser|Counselor)$", m.group(0)[: cut.start()]):
                runs.append((a, m.start() + cut.start()))
                a = m.start() + cut.end()
        runs.append((a, m.end()))
    for ra, rb in runs:
        if _overlaps((ra, rb), idents):
            continue
        a, b = _trim_run(sentence, ra, rb)
        if b <= a:
            continue
        txt = sentence[a:b].rstrip(".,;:")
        b = a + len(txt)
        words = re.findall(r"[A-Za-z][A-Za-z’'&.-]*", txt)
        caps = [w.strip(".") for w in words if w[0].isupper()]
        if not caps:
            continue
        head = re.sub(r"\s*\([^)]*\)$", "", txt).split()[-1].strip(".,’'s")
        if any(w in ROLE_WORDS for w in caps) or head in AGENCY_ACRONYMS or "Chief" in caps:
            weight = 1.0
        elif any(w.strip("()") in AGENCY_ACRONYMS for w in caps):
            weight = 0.5  # "NIST AI RMF": a thing an agency made, not the agency
        elif len(caps) == 1 and caps[0].isupper() and 2 <= len(caps[0]) <= 6 and caps[0] not in _NOT_AGENTS:
            weight = 0.6
        elif len(caps) >= 2 and not all(w in _NOT_AGENTS for w in caps):
            weight = 0.3
        else:
            continue
        if a == 0 and len(caps) == 1 and weight < 1.0:
            continue  # a capitalised first word is just the start of the sentence
        out.append(Span(a, b, txt, "agent", weight))
    return out


def name_spans(sentence: str) -> list[Span]:
    """Named things: identifiers, quoted terms, capitalised multiword names, ALL-CAPS terms (GOVERN, MAP)."""
    out = identifier_spans(sentence)
    taken = [(s.start, s.end) for s in out]
    for m in _QUOTED_RE.finditer(sentence):
        if not _overlaps((m.start(1), m.end(1)), taken):
            out.append(Span(m.start(1), m.end(1), m.group(1), "name", 0.9))
            taken.append((m.start(1), m.end(1)))
    for s in agent_spans(sentence):
        if not _overlaps((s.start, s.end), taken):
            w = 0.9 if len(s.text.split()) >= 2 else (0.7 if s.weight >= 0.6 else 0.3)
            out.append(Span(s.start, s.end, s.text, "name", w))
            taken.append((s.start, s.end))
    for m in re.finditer(r"\b[A-Z]{3,}(?:-[A-Z]+)?\b", sentence):
        if not _overlaps((m.start(), m.end()), taken) and m.group(0) not in _NOT_AGENTS:
            out.append(Span(m.start(), m.end(), m.group(0), "name", 0.6))
    return sorted(out, key=lambda s: s.start)


_DETECTORS = {"when": date_spans, "who": agent_spans, "how_many": number_spans, "which": name_spans}


def spans_for(sentence: str, qtype: str) -> list[Span]:
    """All spans of the kind a question type wants (none for untyped questions)."""
    det = _DETECTORS.get(qtype)
    return det(sentence) if det else []
