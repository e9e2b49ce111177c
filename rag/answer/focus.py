"""What a question is specifically about, and whether the passages mention it at all.

A near-topic question the documents cannot answer ("What tax credit percentage does the permitting
order give to solar developers?", "What does the Action Plan say about subsidies for dairy farmers?")
retrieves passages on its *topic* (the order, the plan), and the similarity, the evidence scorer and
the sentence choice all find something close to quote. What those passages lack is the question's
*focus*: the thing its wh-phrase asks for ("tax credit percentage") or the subject of a "say about"
request ("subsidies for dairy farmers in Wisconsin"). An earlier rule refused on any question word
absent from the corpus and refused plain paraphrases ("supposed", "shorthand"); this one looks only
at the focus phrase, ignores the words a reader uses for any question ("kind", "new", "specific") and
the document's own naming, and needs most of the focus missing from every retrieved passage.
Pure functions, regexes only, like `qtypes` and `requirements`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from rag.answer.qtypes import question_core
from rag.text.lexical import lexical_tokens


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# words that frame a question rather than name its focus ("which kinds of ...", "the new ...", "what size of ...")
_FRAME = _words(
    "kind kinds type types sort sorts form forms new current main key specific exact particular actual certain "
    "overall general first last final other various different such own one ones thing things way ways part parts "
    "example examples also just really exactly ultimately actually officially role roles size amount level number "
    "count total figure value"
)
# the setting of almost every question here, not its focus
_SETTING = _words("ai us u.s united states america american federal government national nation artificial intelligence")
_STOP_AT = re.compile(
    r"^(?:must|shall|should|does|do|did|will|would|can|could|is|are|was|were|has|have|had|may|might|under|in|according|"
    r"by|from|within|during|since|after|before|as|that|which|who|whom|when|where|if|per|to)$",
    re.I,
)
_WH = re.compile(
    r"\b(?:which|what)\s+(?!(?:is|are|was|were|does|do|did|must|shall|should|will|would|can|could|has|have|had)\b)"
    r"((?:[\w’'.-]+\s+){1,8})",
    re.I,
)
_WHAT_IS = re.compile(
    r"\b(?:what|which|who)\s+(?:is|are|was|were)\s+(?:the\s+|a\s+|an\s+)?((?:[\w’'.-]+\s*){1,8})", re.I
)
_ABOUT = re.compile(
    r"\b(?:say|says|said|state|states|stated|propose|recommend|do|does|plan)\s+(?:about|on|regarding|concerning|"
    r"with respect to)\s+(.{3,160}?)\??$",
    re.I,
)
# verbs that end a wh-phrase ("what size of capital commitment makes ...")
_VERBS = _words(
    "make makes give gives set sets require requires say says lead leads run runs provide provides serve serves "
    "count counts qualify qualifies get gets take takes go goes mean means need needs use uses cover covers "
    "include includes allow allows apply applies want wants ask asks call calls let lets led"
)
_SMALL = _words("the a an of for to on in at with and or its their his her this that these those any all each")
_NUMBER = re.compile(r"^(?:\d+|one|two|three|four|five|six|seven|eight|nine|ten|twelve|both|several|many)$")


def _stem(word: str) -> str:
    toks = lexical_tokens(word)
    if not toks:
        return ""
    t = toks[0]
    return t[:5] if t.isalpha() else t


def _words_until_stop(text: str, max_words: int) -> list[str]:
    out: list[str] = []
    for w in text.split():
        core = w.strip("?,;:.()“”\"'’")
        if not core or _STOP_AT.match(core):
            break
        out.append(core)
        if len(out) >= max_words or w.endswith((",", "?", ";")):
            break
    return out


def focus_words(question: str) -> list[str]:
    """The words naming what the question is specifically about: the wh-phrase ("what tax credit
    percentage" -> tax, credit, percentage), the noun phrase after "what is the ..." up to its setting
    ("the federal minimum wage for AI engineers under ..." -> minimum, wage, engineers),
    or the subject of a "say about" request. Frame words, small words and the setting ("AI", "US",
    "federal") are left out; [] when the question has no such phrase (then nothing is checked)."""
    q = question_core(question)
    words: list[str] = []
    m = _ABOUT.search(q)
    if m:
        words = [w.strip("?,;:.()“”\"'’") for w in m.group(1).split()]
    else:
        m = _WH.search(q)
        if m:
            words = _words_until_stop(m.group(1), 7)
        if not words:
            m = _WHAT_IS.search(q)
            words = _words_until_stop(m.group(1), 8) if m else []
    out: list[str] = []
    for i, w in enumerate(words):
        low, nxt = w.lower(), (words[i + 1].lower() if i + 1 < len(words) else "")
        participle = len(low) > 3 and low.endswith("ed") and (not nxt or nxt in _SMALL)  # not "previously used land"
        if out and (participle or low in _VERBS):
            break  # the phrase's verb: "which office housed at NIST", "two revised OMB policies replaced the ..."
        if not w or low in _SMALL or low in _FRAME or low in _SETTING or _NUMBER.match(low):
            continue
        out.append(w)
    return out


def _text_stems(text: str) -> set[str]:
    out: set[str] = set()
    for word in text.split():
        toks = lexical_tokens(word)
        out.update(t[:5] if t.isalpha() else t for t in toks)
    return out


def focus_coverage(question: str, texts: Iterable[str]) -> tuple[list[str], list[str]]:
    """(focus words, those found in none of the texts), compared by 5-letter stems ("engineers" ~ "engineering")."""
    focus = focus_words(question)
    stems = set().union(*(_text_stems(t) for t in texts)) if focus else set()
    missing = [w for w in focus if _stem(w) and _stem(w) not in stems]
    return focus, missing


MIN_FOCUS = 2  # a one-word focus ("which agency", "what date") is the question's kind, not its subject: not checked
FOCUS_SHARE = 0.5  # the passages must mention at least this share of the focus words


def missing_focus(question: str, texts: Iterable[str]) -> str | None:
    """The question's focus as a phrase ("tax credit percentage") when the texts together mention less
    than FOCUS_SHARE of its words, else None. Chosen on the calibrate half of eval/paraphrased.jsonl
    and eval/shipped.jsonl: every answerable question's passages (with the second look) mention at
    least half of its focus; near-topic unanswerables such as "minimum wage for engineers" none."""
    focus, missing = focus_coverage(question, texts)
    if len(focus) < MIN_FOCUS or len(focus) - len(missing) >= FOCUS_SHARE * len(focus):
        return None
    return " ".join(focus)
